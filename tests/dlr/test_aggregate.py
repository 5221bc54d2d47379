"""The aggregation rule, in Python and in the Lua script: the two must agree."""

from __future__ import annotations

import itertools
import time
from typing import Any

from dlr.aggregate import SEVERITY, aggregate, aggregate_error
from dlr.store import ReceiptRecord, ReceiptStore, put_correlation

STATES = ["delivered", "unknown", "deleted", "expired", "undeliverable", "rejected"]


def test_delivered_only_when_all_delivered() -> None:
    assert aggregate(["delivered"] * 4) == "delivered"
    assert aggregate(["delivered", "unknown", "delivered"]) == "unknown"


def test_worst_state_wins() -> None:
    assert aggregate(["expired", "rejected", "undeliverable"]) == "rejected"
    assert aggregate(["deleted", "expired"]) == "expired"
    assert aggregate(["unknown", "deleted"]) == "deleted"
    assert aggregate(["delivered", "bogus"]) == "unknown"
    assert aggregate([]) == "unknown"
    assert [s for s, _ in sorted(SEVERITY.items(), key=lambda kv: -kv[1])] == STATES[::-1]


def test_error_of_the_worst_part() -> None:
    states = ["undeliverable", "rejected", "rejected"]
    assert aggregate_error(states, ["err:001", "", "err:009"], "rejected") == "err:009"
    assert aggregate_error(states, ["err:001", "", ""], "rejected") == "err:001"
    assert aggregate_error(["delivered"], [""], "delivered") == ""


async def test_lua_agrees_with_python(redis_client: Any, key_prefix: str) -> None:
    store = ReceiptStore(redis_client, key_prefix)
    combos = list(itertools.product([*STATES, "bogus"], repeat=2))
    pipe = redis_client.pipeline(transaction=False)
    records = []
    entries = {}
    for j, combo in enumerate(combos):
        pipe.hset(f"{key_prefix}:job:{j}", mapping={"parts": 2, "message_ids": f"a{j},b{j}", "callback": "http://127.0.0.1/cb"})
        for n, state in enumerate(combo, start=1):
            mid = f"{'ab'[n - 1]}{j}"
            entries[mid] = f"{n}:1:{j}"
            records.append(ReceiptRecord(mid, state, True, f"err:{j}{n}", 5))
    await pipe.execute()
    await put_correlation(redis_client, key_prefix, "c", entries, 1, int(time.time() * 1000) + 60_000)
    result = await store.apply("c", records)
    assert len(result.finals) == len(combos)
    for event in result.finals:
        combo = combos[int(event.job_id)]
        expected = aggregate(combo)
        assert event.event == expected, combo
        errors = [f"err:{event.job_id}{n}" for n in (1, 2)]
        assert event.fields["error"] == aggregate_error(combo, errors, expected)
        if expected == "delivered":
            assert "part_states" not in event.fields
        else:
            assert event.fields["part_states"] == ",".join(combo)
