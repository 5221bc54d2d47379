"""engine/keys.py owns every key name: the names are today's, a shard puts its
keys under one hash tag, the scripts create only keys the table knows, no Lua
spells a key fragment, and docs/INTERNALS.md's table is the module's."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from dlr.store import ReceiptRecord, ReceiptStore
from engine.inbound import InboundPart
from engine.keys import KEY_TABLE, Keys, Positions, key_table_markdown, lua_header
from engine.leases import LeaseManager
from engine.scripts import (
    ClaimBatch,
    ClaimJob,
    DeadLetter,
    ParkEntry,
    RecordBatch,
    RecordJob,
    RecordWait,
    RequeueEntry,
    Script,
    cancel_call,
    claim_call,
    inbound_call,
    inbound_sweep_call,
    park_call,
    payload_json,
    record_call,
    requeue_call,
    schedule_call,
)
from privacy_hooks.erasure import erase_subject
from privacy_hooks.retention import RetentionPolicy
from tests.engine.harness import delete_prefix
from tests.engine.test_leases import LeasePoolStub
from throttling.global_bucket import GlobalTokenBucket

ROOT = Path(__file__).resolve().parents[2]

# Today's names, spelled out: what a deployment's Redis holds must not move.
TODAY = {
    "jobs": "P:jobs",
    "jobs_high": "P:jobs:high",
    "jobs_bulk": "P:jobs:bulk",
    "events": "P:events",
    "inbound": "P:inbound",
    "dead": "P:dead",
    "scheduled": "P:scheduled",
    "backlog": "P:backlog",
    "dlr_due": "P:dlr:due",
    "dlr_unmatched": "P:dlr:unmatched",
    "dlr_staged": "P:dlr:staged",
    "dlr_invalid": "P:dlr:invalid",
    "audit": "P:audit",
    "callbacks_failed": "P:callbacks:failed",
    "clients_closed": "P:clients:closed",
    "job_prefix": "P:job:",
    "idem_prefix": "P:idem:",
    "marks_prefix": "P:marks:",
    "record_prefix": "P:record:",
    "scheduled_prefix": "P:scheduled:",
    "scheduled_id_prefix": "P:scheduled:id:",
    "park_prefix": "P:park:",
    "park_registry": "P:parks",
    "dlr_bucket_prefix": "P:dlr:c:",
    "dlr_index_prefix": "P:dlr:idx:",
    "dlr_dup_prefix": "P:dlr:dup:",
    "dlr_call_prefix": "P:dlr:call:",
    "tps_prefix": "P:tps:",
    "inbound_due": "P:inbound:due",
    "inbound_parts_prefix": "P:inbound:parts:",
    "suppress_default": "P:suppress",
    "suppress_prefix": "P:suppress:",
    "lease_prefix": "P:{lease}:",
}
FLEET = {"audit", "callbacks_failed", "clients_closed", "tps_prefix", "lease_prefix"}


def _samples(k: Keys) -> dict[str, str]:
    """Every per-job / per-carrier name, by the method that builds it."""
    return {
        "job": k.job("j:1"),
        "idem": k.idem("j:1"),
        "marks_legacy": k.marks_legacy(),
        "marks_generation": k.marks_generation(1764806400),
        "marks_bucket": k.marks_bucket(1764806400, 7, 2048),
        "marks_made": k.marks_made(1764806400),
        "record_memo": k.record_memo("t1"),
        "scheduled_job": k.scheduled_job("1-1"),
        "scheduled_id": k.scheduled_id("j:1"),
        "park": k.park("acme", "bulk"),
        "park_client": k.park("acme", "bulk", "shop"),
        "correlation_bucket": k.correlation_bucket("acme", 1700),
        "correlation_index": k.correlation_index("acme"),
        "dup_span": k.dup_span("acme", 42),
        "dup_span_legacy": k.dup_span_legacy(42),
        "call_memo": k.call_memo("f" * 40),
        "tps": k.tps("acme"),
        "inbound_parts": k.inbound_parts("acme", "ab" * 16, "8.7.3"),
        "inbound_waiting": k.inbound_waiting("ab" * 16),
        "suppression": k.suppression("shop"),
        "suppression_default": k.suppression(""),
        "bind_lease": k.bind_lease("acme", 1),
        "lease_fence": k.lease_fence("acme"),
    }


def test_shard_none_gives_todays_names() -> None:
    k = Keys("P")
    assert {name: getattr(k, name) for name in TODAY} == TODAY
    assert k.lanes() == ("P:jobs:high", "P:jobs", "P:jobs:bulk")
    assert _samples(k) == {
        "job": "P:job:j:1",
        "idem": "P:idem:j:1",
        "marks_legacy": "P:marks:legacy",
        "marks_generation": "P:marks:1764806400",
        "marks_bucket": "P:marks:1764806400:007",
        "marks_made": "P:marks:1764806400:made",
        "record_memo": "P:record:t1",
        "scheduled_job": "P:scheduled:1-1",
        "scheduled_id": "P:scheduled:id:j:1",
        "park": "P:park:acme:bulk",
        "park_client": "P:park:acme:bulk:shop",
        "correlation_bucket": "P:dlr:c:acme:1700",
        "correlation_index": "P:dlr:idx:acme",
        "dup_span": "P:dlr:dup:acme:42",
        "dup_span_legacy": "P:dlr:dup:42",
        "call_memo": "P:dlr:call:" + "f" * 40,
        "tps": "P:tps:acme",
        "inbound_parts": "P:inbound:parts:acme:" + "ab" * 16 + ":8.7.3",
        "inbound_waiting": "P:inbound:waiting:" + "ab" * 16,
        "suppression": "P:suppress:shop",
        "suppression_default": "P:suppress",
        "bind_lease": "P:{lease}:bind:acme:1",
        "lease_fence": "P:{lease}:fence:acme",
    }
    assert Keys() == Keys("sendgate") and Keys().jobs == "sendgate:jobs"


def test_a_shard_tags_its_own_keys_and_not_the_fleets() -> None:
    k = Keys("P", shard=3)
    for name, today in TODAY.items():
        expected = today if name in FLEET else "P:{3}" + today.removeprefix("P")
        assert getattr(k, name) == expected, name
    for name, key in _samples(k).items():
        fleet = {"tps": "P:tps:", "bind_lease": "P:{lease}:", "lease_fence": "P:{lease}:"}
        assert key.startswith(fleet.get(name, "P:{3}:")), key
    with pytest.raises(ValueError):
        Keys("P", shard=-1)
    with pytest.raises(AttributeError):
        k.jobs = "x"


@pytest.mark.parametrize("shard", [None, 7])
def test_every_name_the_module_builds_is_in_the_table(shard: int | None) -> None:
    k = Keys("P", shard=shard)
    fixed = [getattr(k, n) for n in TODAY if not n.endswith("_prefix")]
    described = {name: k.describe(key) for name, key in {**_samples(k), **{key: key for key in fixed}}.items()}
    assert all(described.values()), [n for n, d in described.items() if d is None]
    # and each row of the table is some name's: no row without a builder
    assert {d.pattern for d in described.values() if d} == {d.pattern for d in KEY_TABLE}
    assert k.describe("P:nothing") is None and k.describe(k.job_prefix) is None


def test_positions_name_both_sides() -> None:
    p = Positions("A", ("mode", "now"), rest="rest")
    assert p.lua() == "local A_MODE, A_NOW, A_REST = 1, 2, 3\n"
    assert p.build(now=5, mode="m", rest=["x", "y"]) == ["m", 5, "x", "y"]
    assert p.index("now") == 2 and p.index("rest") == 3
    with pytest.raises(TypeError):
        p.build(mode="m", rest=[])
    assert lua_header(4, Positions("G", ("a",), first=0)).startswith("local LAYOUT_VERSION = '4'\n")


# -- no Lua spells a key name -----------------------------------------------
_FRAGMENT = re.compile(
    r"""(['"])[^'"\n]*:(?:job|jobs|idem|dlr|subject|scheduled|events|dead|inbound|tps|audit|callbacks)\b[^'"\n]*\1"""
)


def _lua_sources() -> dict[str, str]:
    from privacy_hooks.erasure import _ERASE_ENTRIES
    from throttling.global_bucket import TAKE_SCRIPT

    found = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for pkg in ("engine", "dlr", "throttling",
             "privacy_hooks", "connectors", "bench") for p in (ROOT / pkg).rglob("*.lua")}
    found.update({"privacy_hooks/erasure.py _ERASE_ENTRIES": _ERASE_ENTRIES,
                  "throttling TAKE_SCRIPT": TAKE_SCRIPT})
    return found


def test_no_lua_spells_a_key_fragment() -> None:
    sources = _lua_sources()
    assert {"engine/record.lua", "engine/claim.lua", "dlr/correlate.lua"} <= sources.keys()
    offenders = {}
    for name, text in sources.items():
        code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())  # comments may name keys
        hits = [m.group(0) for m in _FRAGMENT.finditer(code)]
        if hits:
            offenders[name] = hits
    assert offenders == {}
    # the check itself bites
    assert _FRAGMENT.search("local k = prefix .. ':job:' .. id")


# -- what the scripts create, against a real Redis ----------------------------
async def _written(r: Any, prefix: str) -> set[str]:
    return {key.decode() async for key in r.scan_iter(match=f"{prefix}:*", count=1000)}


async def _exercise(r: Any, k: Keys) -> set[str]:
    """Run every script and Redis writer once under ``k``: the engine's four
    scripts, the receipt store's two modes (fast path, general path with a
    callback, the duplicate window, the sweep), parking, erasure, audit and a
    shared TPS bucket. Returns the keys seen before the sweep (it deletes the
    buckets) and at the end."""
    now_ms = int(time.time() * 1000)
    for lane in k.lanes():
        await r.xgroup_create(lane, "g", id="0", mkstream=True)
    entries = [(await r.xadd(k.jobs, {"id": f"j{i}", "to": "4501", "text": "x"})).decode() for i in range(4)]
    # a mark an engine of layout 10 left (an upgrade: the first claims then set P:marks:legacy
    # and read such marks for a window; on a small keyspace without one they set nothing)
    await r.set(k.idem("old-1"), "done", ex=60)
    # a duplicate span an engine of correlate layout 6 left (read for a window after the upgrade)
    await r.sadd(k.dup_span_legacy(now_ms // 60_000), "acme\x1fold-m")
    await r.expire(k.dup_span_legacy(now_ms // 60_000), 60)
    await r.xreadgroup("g", "c", {k.jobs: ">"}, count=4)
    # claim.lua: two claims and a dead letter
    claim = payload_json(ClaimBatch(
        claims=[ClaimJob("j0", entries[0]), ClaimJob("j1", entries[1])],
        dead=[DeadLetter(entry_id=entries[3], nfields=2, code="expired", reason="late", job_id="j3", ref="",
                         event="expired")],
    ))
    assert await Script("claim")(r, *claim_call(k, k.jobs, "g", claim, now_ms, 60, 1000, False, [b"to", b"1"])) == [0, 0]
    # record.lua: a fast-path job with a number hash and a client, a multipart one with a callback
    fast = RecordJob(job_id="j0", event="submitted", carrier="acme", parts=1, message_ids="m0", error="", ref="r",
                     client="shop", kind="transactional", callback="", to_hash="ab" * 16, to_mask="+45******01",
                     encoding="gsm7", corr="m0", expect=1, dlr_ids="")
    multi = RecordJob(job_id="j1", event="submitted", carrier="acme", parts=2, message_ids="m1,m2", error="",
                      ref="", client="", kind="transactional", callback="http://127.0.0.1:1/cb", to_hash="cd" * 16,
                      to_mask="+45******02", encoding="gsm7", corr=[["m1", 1], ["m2", 2]], expect=2, dlr_ids="")
    never = RecordJob(job_id="j4", event="submitted", carrier="acme", parts=1, message_ids="m4", error="", ref="",
                      client="", kind="transactional", callback="http://127.0.0.1:1/cb", to_hash="", to_mask="",
                      encoding="gsm7", corr=[["m4", 1]], expect=1, dlr_ids="")
    end_ms = now_ms - 1000  # already due: the sweep below takes it
    record = payload_json(RecordBatch(
        retention_until=now_ms // 1000 + 600,
        waits={"acme": RecordWait(end_ms=str(end_ms), expire_at_ms=str(now_ms + 600_000), record_ttl="600")},
        jobs=[fast, multi, never], acks=[entries[0], entries[1]],
    ))
    assert await Script("record")(r, *record_call(k, k.jobs, "g", record, now_ms, "t1")) == 3
    # requeue.lua and schedule.lua (a job held as the pipeline holds it)
    assert await Script("requeue")(r, *requeue_call(
        k.jobs, "g", payload_json([RequeueEntry(entries[2], 2)]), [b"id", b"j2"])) == 1
    await r.hset(k.scheduled_job("9-9"), mapping={"id": "j9", "lane": k.jobs_bulk})
    await r.zadd(k.scheduled, {"9-9": 1})
    await r.hset(k.scheduled_job("9-10"), mapping={"id": "j10", "lane": k.jobs_bulk})  # not due: stays
    await r.zadd(k.scheduled, {"9-10": now_ms + 3_600_000})
    assert await Script("schedule")(r, *schedule_call(k, now_ms, 10)) == 1
    # park.lua: a lane entry to a carrier's park stream and to a client's; cancel.lua on a held job
    for park in (k.park("acme", "bulk"), k.park("acme", "bulk", "shop")):
        await r.xgroup_create(park, "g", id="0", mkstream=True)
        await r.sadd(k.park_registry, park)  # as the pipeline registers its park streams
    parked = [(await r.xadd(k.jobs_bulk, {"id": f"p{i}", "to": "4501", "text": "x"})).decode() for i in range(2)]
    await r.xreadgroup("g", "c", {k.jobs_bulk: ">"}, count=10)  # (with the job schedule.lua released)
    assert await Script("park")(r, *park_call(
        k.jobs_bulk, [k.park("acme", "bulk"), k.park("acme", "bulk", "shop")], "g",
        payload_json([ParkEntry(parked[0], 2, 1), ParkEntry(parked[1], 2, 2)]), [b"id", b"p0", b"id", b"p1"])) == 2
    await r.set(k.scheduled_id("j10"), "9-10")  # as the pipeline indexes a held job
    await r.hset(k.backlog, mapping={"normal": 0})
    seen = await _written(r, k.prefix)
    assert await Script("cancel")(r, *cancel_call(k, "j10", 60, now_ms, 1000)) == [2, b""]
    # correlate.lua: the fast path, a general-path final with a callback (kept reply), the sweep
    store = ReceiptStore(r, k)
    done = await store.apply("acme", [ReceiptRecord(m, "delivered", True, "", now_ms) for m in ("m0", "m1", "m2")])
    assert done.applied == 3 and not done.unmatched and [e.job_id for e in done.finals] == ["j0", "j1"]
    finals, _more = await store.expire_overdue(now_ms + 1)
    assert [e.job_id for e in finals] == ["j4"]  # never had its receipt
    await store.park_unmatched("acme", [ReceiptRecord("zz", "delivered", True, "", now_ms)])
    # the privacy hooks' path: a batch staged (held here; its publish deletes it)
    from dlr.store import put_correlation

    await put_correlation(r, k, "acme", {"m9": f"={now_ms}\x1fM9\x1fr9\x1fj9"}, now_ms + 60_000, now_ms + 120_000)
    _counts, staged = await store.stage("acme", [ReceiptRecord("m9", "delivered", True, "", now_ms)])
    assert staged is not None
    seen |= await _written(r, k.prefix)
    assert await store.publish_staged(staged) == 1
    await store.park_invalid("acme", {"short_message": b"id:1 text:hi"}, "unparseable")
    # erasure (with its audit entry) and a carrier's shared TPS bucket
    result = await erase_subject(r, k, "cd" * 16, time.time(), RetentionPolicy())
    assert result.jobs == 1
    bucket = GlobalTokenBucket(r, k.tps("acme"), 100.0, burst=10)
    try:
        assert await bucket.take(1) == 1
    finally:
        await bucket.close()
    await r.xadd(k.callbacks_failed, {"id": "j1"})
    # inbound.lua: a single and one part of three (kept); the sweep publishes it partial
    parts = [InboundPart("", 1, 1, "hi", "4501", "1234", "acme", "", "ab" * 16, str(now_ms)),
             InboundPart("8.7.3", 1, 3, "part", "4501", "1234", "acme", "", "ab" * 16, str(now_ms))]
    published = await Script("inbound")(r, *inbound_call(k, payload_json(parts), 1000, 10, 1000, 1))
    assert [row[7] for row in published] == [b"0"]
    seen |= await _written(r, k.prefix)
    swept = await Script("inbound_sweep")(r, *inbound_sweep_call(k, now_ms + 2000, 10, 1000, 1))
    assert [row[7] for row in swept] == [b"1"]
    # suppression lists (sendgate suppress / opt-out keywords)
    await r.sadd(k.suppression("shop"), "ab" * 16)
    await r.sadd(k.suppression(""), "ab" * 16)
    # account closure (sendgate close-client)
    await r.hset(k.clients_closed, "shop", 1700000000)
    # a bind lease (engine/leases.py) and its carrier's fencing counter
    pool = LeasePoolStub(want=1)
    await LeaseManager(r, k, "e1", {"acme": (pool, 1, 5.0)}).tick()
    assert pool.leases() == [k.bind_lease("acme", 0)]
    return seen | await _written(r, k.prefix)


@pytest.mark.parametrize("shard", [None, 5])
async def test_the_scripts_write_only_names_of_the_table(redis_client: Any, key_prefix: str, shard: int | None) -> None:
    k = Keys(key_prefix, shard=shard)
    try:
        written = await _exercise(redis_client, k)
        rows = {key: k.describe(key) for key in sorted(written)}
        assert [key for key, row in rows.items() if row is None] == []
        if shard is not None:  # everything but the fleet's keys carries the shard's tag
            assert all(key.startswith(f"{key_prefix}:{{{shard}}}:") == (row.scope == "shard")
                       for key, row in rows.items() if row)
        # the run reached every kind of key the table lists
        assert {row.pattern for row in rows.values() if row} == {d.pattern for d in KEY_TABLE}
    finally:
        await delete_prefix(redis_client, key_prefix)


def test_internals_holds_the_key_table() -> None:
    """docs/INTERNALS.md's table is ``python -m engine.keys``'s output, verbatim."""
    text = (ROOT / "docs" / "INTERNALS.md").read_text(encoding="utf-8")
    assert key_table_markdown() in text
