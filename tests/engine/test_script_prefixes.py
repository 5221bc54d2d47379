"""Scripts build per-job keys from prefixes they are given (``P:job:<id>``,
``P:marks:<generation>:<bucket>``, ``P:idem:<id>``, ``P:dlr:c:…``, the scheduled jobs', the inbound parts'): with
``[redis] shards`` > 1 every such prefix must carry its call's shard tag, so a
key built from it lands on the slot of the call's declared KEYS (a Redis Cluster
refuses a script reaching another slot; on one Redis a wrong prefix would
silently write another shard's key). Checked for every script-call builder and
every shard, without a server: any ARGV that is a key of the prefix, built into
a key, hashes to the declared keys' slot."""

from __future__ import annotations

from typing import Any

import pytest

from dlr.store import ReceiptStore
from engine.keys import Keys, cluster_slot, shard_keys
from engine.scripts import (
    cancel_call,
    claim_call,
    handback_call,
    inbound_call,
    inbound_sweep_call,
    park_call,
    record_call,
    requeue_call,
    schedule_call,
)

PREFIX = "sgp"


def _calls(k: Keys) -> dict[str, tuple[list[str], list[Any]]]:
    store = ReceiptStore(None, k)
    return {
        "claim": claim_call(k, k.jobs, "g", b"{}", 1, 60, 1000, False),
        "record": record_call(k, k.jobs, "g", b"{}", 1, "t0"),
        "schedule": schedule_call(k, 1, 10),
        "cancel": cancel_call(k, "job-1", 60, 1, 1000),
        "inbound": inbound_call(k, b"[]", 1, 1, 1000, 1),
        "inbound_sweep": inbound_sweep_call(k, 1, 10, 1000, 1),
        "handback": handback_call(k, k.jobs, [k.park("sim", "normal", "")], "g", "c", b"[]", [], 60, 1),
        "park": park_call(k.jobs, [k.park("sim", "normal", "")], "g", b"[]", []),
        "requeue": requeue_call(k.jobs, "g", b"[]", []),
        "correlate": (list(store._script_keys), list(store._args("apply"))),
    }


# how many prefixes each script builds keys from (a new one must be added here, and checked)
_BUILDS = {"claim": 2, "record": 3, "schedule": 2, "cancel": 3, "inbound": 2, "inbound_sweep": 1, "handback": 2,
           "correlate": 5, "park": 0, "requeue": 0}


@pytest.mark.parametrize("shards", [1, 4])
def test_every_prefix_a_script_builds_keys_from_is_on_its_calls_slot(shards: int) -> None:
    prefix = PREFIX if shards > 1 else "{" + PREFIX + "}"
    for k in shard_keys(prefix, shards):
        base = k.prefix + ":"
        for name, (keys, args) in _calls(k).items():
            slots = {cluster_slot(key) for key in keys}
            assert len(slots) == 1, (name, keys)
            prefixes = [a for a in args if isinstance(a, str) and a.startswith(base) and a.endswith(":")]
            assert len(prefixes) == _BUILDS[name], (name, prefixes)
            for p in prefixes:
                assert cluster_slot(p + "job-1") in slots, (name, p, keys)


def test_a_prefix_of_another_shard_would_be_caught() -> None:
    k0, k1 = shard_keys(PREFIX, 4)[:2]
    assert cluster_slot(k1.idem_prefix + "job-1") != cluster_slot(k0.jobs)
