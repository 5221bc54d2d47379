"""The privacy hook chain in a running engine: real Redis, real SMPP simulator over TCP.

A custom hook plugged in through ``[privacy] hooks`` must see every record and
event the engine writes through the chain (job outcomes, dead letters, held
jobs), may change their retention deadline (the stored ``retention_until`` and
the TTLs follow), and a raising hook fails closed: nothing of the batch is
written, the batch is tried again and its jobs end in the dead-letter stream
with code ``hook_failed`` — and no number reaches a log line.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from engine.config import ConfigError, settings_from_mapping
from engine.hook_chain import chain_for
from engine.keys import Keys
from privacy_hooks import HOOK_ATTEMPTS, configure_logging
from tests.engine.harness import make_settings, push, running, wait_events
from tests.privacy.hooks_for_tests import Recorder

HOOKS = "tests.privacy.hooks_for_tests"


@pytest.fixture
def clean_root() -> Iterator[None]:
    """Restore the root logger after configure_logging (pytest's handlers and their filters)."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    saved_filters = {handler: list(handler.filters) for handler in root.handlers}
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in saved[0]:
                root.removeHandler(handler)
                handler.close()
        for handler, filters in saved_filters.items():
            handler.filters[:] = filters
        root.setLevel(saved[1])
        logging.captureWarnings(False)


def _jobs(n: int, **extra: str) -> list[dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    return [{"id": f"{run}-{i}", "to": f"+4502{i:06d}", "text": f"Hello number {i}", **extra} for i in range(n)]


async def test_a_custom_hook_sees_every_record_and_event(redis_url: str, key_prefix: str) -> None:
    jobs = _jobs(400)
    run = jobs[0]["id"].split("-")[0]
    bad = [{"id": f"{run}-bad-{i}", "to": "12ab", "text": "x"} for i in range(20)]
    expired = [{"id": f"{run}-exp-{i}", "to": f"+4502777{i:03d}", "text": "x", "expires_at": "1000"} for i in range(5)]
    later = [{"id": f"{run}-later-{i}", "to": f"+4502888{i:03d}", "text": "x",
              "send_at": str(int(time.time()) + 3600)} for i in range(5)]
    async with running(redis_url, key_prefix, privacy={"hooks": [f"{HOOKS}:Recorder"]}) as (eng, _sim, _p, redis):
        hook = eng.pipeline.hooks.custom[0]
        assert isinstance(hook, Recorder)
        await push(redis, key_prefix, [*jobs[:200], *bad, *expired, *later, *jobs[200:]])
        await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        await wait_events(redis, key_prefix, {j["id"] for j in expired})
        k = Keys(key_prefix)
        # every event the engine wrote went through the chain: a job's first (outcome, dead
        # letter) and its receipt's (composed by the correlation script: two steps)
        written = [{kk.decode(): v.decode() for kk, v in f.items()} for _id, f in await redis.xrange(k.events)]
        assert all("retention_until" in ev for ev in written)
        assert len(written) == 2 * len(jobs) + len(expired)
        assert sorted(ev["id"] for ev in written if ev["event"] == "delivered") == sorted(j["id"] for j in jobs)
        seen = {(e["id"], e["event"]): e for e in hook.events}
        for ev in written:
            # the hook saw exactly what was written, field for field (a dead letter's `ts` is
            # the script's clock, a moment after the hook's)
            saw = seen[(ev["id"], ev["event"])]
            if ev["event"] == "expired":
                assert 0 <= int(ev.pop("ts")) - int(saw.pop("ts")) < 5000
            assert saw == ev
        stored_kinds: dict[str, set[str]] = {}
        for kind, fields, deadline in hook.stored:
            stored_kinds.setdefault(kind, set()).add(fields.get("id", ""))
            assert deadline > time.time() + 119 * 86400 or kind == "scheduled_job"
        assert stored_kinds["job"] == {j["id"] for j in jobs}
        assert stored_kinds["dead_letter"] >= {j["id"] for j in bad + expired}
        assert stored_kinds["scheduled_job"] == {j["id"] for j in later}
        assert hook.batches < len(jobs) / 4  # per batch, not per record
        # the dead letters were written as before the chain existed
        codes = {f[b"id"].decode(): f[b"code"] for _id, f in await redis.xrange(k.dead)}
        assert all(codes[j["id"]] == b"bad_number" for j in bad)


async def test_a_hook_changing_the_deadline_changes_what_is_stored(redis_url: str, key_prefix: str) -> None:
    jobs = _jobs(30, text="x" * 200)  # two parts: each job has a record in Redis (the receipts read it)
    run = jobs[0]["id"].split("-")[0]
    later = {"id": f"{run}-later", "to": "+4502999001", "text": "x", "send_at": str(int(time.time()) + 7200)}
    async with running(redis_url, key_prefix, privacy={"hooks": [f"{HOOKS}:OneHour"]}) as (_eng, _sim, _p, redis):
        k = Keys(key_prefix)
        before = int(time.time())
        await push(redis, key_prefix, [*jobs, later])
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False)
        after = int(time.time())
        for job in jobs:
            first = events[job["id"]][0]
            assert before + 3600 <= int(first["retention_until"]) <= after + 3600
            ttl = await redis.ttl(k.job(job["id"]))
            # the receipt's working copy never outlives the record's deadline (default: 2 x 72 h + grace)
            assert 0 < ttl <= 3600 or ttl == -2
        ttls = [await redis.ttl(key) async for key in redis.scan_iter(match=k.scheduled_job("*"))]
        assert ttls and all(0 < t <= 3600 for t in ttls)


async def test_deadlines_that_differ_within_a_batch_are_each_jobs_own(redis_url: str, key_prefix: str) -> None:
    # one record call per deadline; each job's first event carries its own deadline, and a
    # hook deleting the stamp from the event it is shown changes nothing written
    jobs = _jobs(30)
    async with running(redis_url, key_prefix, privacy={"hooks": [f"{HOOKS}:OddJobsOneHour"]}) as (_e, _s, _p, redis):
        before = int(time.time())
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False)
        after = int(time.time())
        for job in jobs:
            hours = 1 if job["id"][-1] in "13579" else 2
            first = events[job["id"]][0]
            assert first["event"] == "submitted"
            assert before + 3600 * hours <= int(first["retention_until"]) <= after + 3600 * hours, job["id"]


async def test_a_hook_may_edit_the_fields_the_engine_takes_back(redis_url: str, key_prefix: str) -> None:
    jobs = _jobs(20, ref="order-1")
    async with running(redis_url, key_prefix, privacy={"hooks": [f"{HOOKS}:TagRef"]}) as (_eng, _sim, _p, redis):
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        for job in jobs:
            # the receipt's event is shown to the hook too (with the ref its first event was
            # written with) and written as the hook left it
            assert [e["ref"] for e in events[job["id"]]] == ["hooked-order-1", "hooked-hooked-order-1"]


async def test_a_batch_where_a_hook_edits_some_jobs_writes_each_as_left(redis_url: str, key_prefix: str) -> None:
    # the jobs no hook wrote are packed as without hooks; the edited ones carry their edit
    jobs = _jobs(40, ref="order-1")
    async with running(redis_url, key_prefix, privacy={"hooks": [f"{HOOKS}:TagSomeRefs"]}) as (_e, _s, _p, redis):
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        for job in jobs:
            expected = "hooked-order-1" if job["id"][-1] in "13579" else "order-1"
            assert events[job["id"]][0]["event"] == "submitted"
            assert [e["ref"] for e in events[job["id"]]] == [expected] * len(events[job["id"]]), job["id"]


async def test_a_raising_hook_fails_closed(redis_url: str, key_prefix: str, clean_root: None) -> None:
    jobs = _jobs(10)
    stream = io.StringIO()
    settings = make_settings(redis_url, key_prefix, 1, privacy={"hooks": [f"{HOOKS}:Raising"]})
    configure_logging("debug", "json", stream=stream, log_filter=chain_for(settings).log_filter())
    async with running(redis_url, key_prefix, privacy={"hooks": [f"{HOOKS}:Raising"]}) as (eng, sim, _p, redis):
        k = Keys(key_prefix)
        await push(redis, key_prefix, jobs)
        deadline = time.monotonic() + 60
        dead: dict[str, dict[bytes, bytes]] = {}
        while len(dead) < len(jobs) and time.monotonic() < deadline:
            dead = {f[b"id"].decode(): f for _id, f in await redis.xrange(k.dead)}
            await eng.pipeline.recorded_barrier(0.2)
        assert set(dead) == {j["id"] for j in jobs}
        for f in dead.values():
            assert f[b"code"] == b"hook_failed"
            assert f[b"reason"].startswith(b"privacy hook Raising failed in on_event")
            assert b"4502" not in f[b"reason"]
        # nothing of the batch was published: not one event of these jobs
        assert not [f for _id, f in await redis.xrange(k.events)]
        assert (await redis.xpending(k.jobs, "sendgate"))["pending"] == 0
        assert eng.metrics.hook_failures._value.get() >= HOOK_ATTEMPTS
        assert sim.stats.submits == len(jobs)  # sent before the outcome's batch: that is what failed
    text = stream.getvalue()
    assert "privacy hook Raising failed" in text
    for job in jobs:  # the hook's exception text held the number: it is nowhere
        assert job["to"][1:] not in text and job["to"][-6:] not in text


def test_a_raising_log_hook_drops_the_record(clean_root: None) -> None:
    settings = settings_from_mapping({"privacy": {"hooks": [f"{HOOKS}:RaisingOnLog"]}}, env={})
    chain = chain_for(settings)
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream, log_filter=chain.log_filter())
    logging.getLogger("sendgate.test").info("to %s", "+4512345678")
    assert stream.getvalue() == "" and chain.log_failures == 1


def test_the_default_chain_is_the_fast_path() -> None:
    settings = settings_from_mapping({}, env={})
    chain = chain_for(settings)
    assert not chain.has_custom and chain.defaults_only and chain_for(settings) is chain
    now = 1_900_000_000.5
    assert chain.on_store_batch("job", [{}, {}], now) == [1_900_000_000 + 120 * 86400] * 2
    assert chain.deadline("dead_letter", None, now) == 1_900_000_000 + 120 * 86400
    assert chain.deadline("scheduled_job", None, now) == 1_900_000_000 + 60 * 86400
    assert chain.deadline("suppression", None, now) == 0


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nope_such_module:X", r"privacy\.hooks\[1\]: cannot import module 'nope_such_module'"),
        (f"{HOOKS}:Missing", r"privacy\.hooks\[1\]: module '.*' has no class 'Missing'"),
        (f"{HOOKS}.Recorder", r"privacy\.hooks\[1\]: expected 'pkg\.module:Class'"),
        (f"{HOOKS}:NeedsArgument", r"privacy\.hooks\[1\]: .*could not be created"),
        (f"{HOOKS}:NotAHook", r"privacy\.hooks\[1\]: .*is not a privacy hook"),
    ],
)
def test_a_bad_hook_path_is_a_config_error(path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_mapping({"privacy": {"hooks": [f"{HOOKS}:Recorder", path]}}, env={})


async def test_erase_and_export_call_the_hooks(redis_url: str, key_prefix: str, tmp_path: Any) -> None:
    from engine.erase import erase_main
    from engine.subject_access import export_main

    number = "+4502123401"
    mapping = {"redis": {"url": redis_url, "prefix": key_prefix}, "history": {"url": f"sqlite:///{tmp_path / 'h.db'}"},
               "carriers": [{"name": "sim", "port": 1, "system_id": "t", "password": "p", "routes": [""]}]}
    settings = settings_from_mapping({**mapping, "privacy": {"hooks": [f"{HOOKS}:Recorder"]}}, env={})
    hook = chain_for(settings).custom[0]
    assert isinstance(hook, Recorder)
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        await redis.xadd(Keys(key_prefix).jobs, {"id": "j1", "to": number, "text": "hi"})
        lines: list[bytes] = []
        assert await export_main(settings, to=number, client=None, write=lines.append) == 0
        assert len(hook.exported) == 1 and hook.exported[0][1] == len(lines) == 1
        assert orjson.loads(lines[0])["kind"] == "waiting_job"
        assert await erase_main(settings, to=number, client=None, now=True) == 0
        assert len(hook.erased) == 1 and hook.erased[0].subject == hook.exported[0][0]
        # a raising on_export: nothing printed, the command fails
        failing = settings_from_mapping({**mapping, "privacy": {"hooks": [f"{HOOKS}:RaisingOnExport"]}}, env={})
        await redis.xadd(Keys(key_prefix).jobs, {"id": "j2", "to": number, "text": "hi"})
        out: list[bytes] = []
        assert await export_main(failing, to=number, client=None, write=out.append) == 1
        assert out == []
    finally:
        await redis.aclose()


async def test_inbound_parts_and_opt_outs_go_through_the_hooks(redis_url: str, key_prefix: str) -> None:
    from connectors.simulator import SimulatorConfig
    from privacy_hooks import KeyedHasher

    clients = [{"id": "shop", "numbers": ["1234"]}]
    hooks = {"hooks": [f"{HOOKS}:Recorder", f"{HOOKS}:OneHour"]}
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), proxy=False, clients=clients,
                       privacy=hooks) as (eng, sim, _p, redis):
        await sim.wait_for(lambda: len(sim.receivers()) >= 2)
        hook = eng.pipeline.hooks.custom[0]
        assert isinstance(hook, Recorder) and eng.receipts.inbound.hooks is eng.pipeline.hooks  # one chain
        before = int(time.time())
        sim.send_inbound("4512340001", "1234", "Hello there")
        sim.send_inbound("4512340002", "1234", "STOP")
        k = Keys(key_prefix)
        deadline = time.monotonic() + 15
        while await redis.xlen(k.inbound) < 2 or not await redis.scard(k.suppression("shop")):
            assert time.monotonic() < deadline, "inbound not stored"
            await asyncio.sleep(0.02)
        inbound = [{kk.decode(): v.decode() for kk, v in f.items()} for _id, f in await redis.xrange(k.inbound)]
        seen = [f for kind, f, _d in hook.stored if kind == "inbound"]
        assert sorted(f["text"] for f in seen) == sorted(m["text"] for m in inbound) == ["Hello there", "STOP"]
        # OneHour does not shorten inbound: the policy's deadline, 120 days
        assert all(int(m["retention_until"]) >= before + 120 * 86400 for m in inbound)
        entries = [f for kind, f, d in hook.stored if kind == "suppression"]
        assert entries == [{"client": "shop", "subject_hash": KeyedHasher(eng.settings.privacy.hash_secret)("4512340002"),
                            "source": "keyword"}]
