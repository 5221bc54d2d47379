"""The claim call's arguments for a batch of 500 jobs as the pipeline builds them
(``Pipeline._claims``, the payload, ``claim_call``): transactional and marketing
claims, both packed (per job: divide by 500). A marketing job's keyed hash is
taken here; a transactional job's after its claim, so it is added to that side."""

from __future__ import annotations

import time
from typing import Any

import pytest

from engine.pipeline import ClaimArgs


@pytest.mark.parametrize("kind", ["transactional", "marketing"])
def test_claim_arguments_of_500_jobs(benchmark: Any, kind: str) -> None:
    c = ClaimArgs("mb")
    entries = []
    for i in range(500):
        fields = {b"id": b"job-%d" % i, b"to": b"+45%08d" % (10000000 + i), b"text": b"Hello %d" % i}
        if kind == "marketing":
            fields[b"kind"] = b"marketing"
        entries.append((f"1700000000000-{i}", fields))
    jobs = c.jobs(entries, time.time())

    def build() -> int:
        for ij in jobs:
            ij.to_hash = ""
        _keys, args, all_packed = c.build(jobs)
        for ij in jobs:
            if not ij.to_hash:
                ij.to_hash = c.hash_number(ij.job.to)
        assert all_packed
        return len(args)

    assert benchmark(build) > 0
    assert all(len(ij.to_hash) == 32 for ij in jobs)
