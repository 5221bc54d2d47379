"""Data subject requests end to end: export (access), erasure of waiting jobs and streams, --dry-run.

Every record kind is seeded as the engine writes it, for a subject and another
number, in a real Redis and a real SQLite history store; then the command runs
and Redis is read back key by key.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from connectors.simulator import SimulatorConfig
from engine.config import Settings
from engine.erase import erase_main
from engine.history import deltas_from_entries, open_store
from engine.keys import Keys
from engine.subject_access import KINDS, export_main
from privacy_hooks import keyed_hash
from tests.engine.harness import make_settings, running, wait_events


def _numbers() -> tuple[str, str]:
    middle = f"{uuid.uuid4().int % 100_000:05d}"
    return f"+4505{middle}01", f"+4505{middle}02"


def _settings(redis_url: str, prefix: str, tmp_path: Any) -> Settings:
    s = make_settings(redis_url, prefix, 1)
    from engine.config import settings_from_mapping

    return settings_from_mapping(
        {"redis": {"url": redis_url, "prefix": prefix}, "history": {"url": f"sqlite:///{tmp_path / 'h.db'}"},
         "privacy": {"hash_secret": s.privacy.hash_secret}, "clients": [{"id": "shop"}],
         "carriers": [{"name": "sim", "port": 1, "system_id": "t", "password": "p", "routes": [""]}]}, env={})


async def _seed(redis: Redis, settings: Settings, run: str, number: str, tag: str) -> None:
    """One of each record for ``number``: history row (via its first event, archived), a
    later event still in the stream, a waiting job, a held job, a dead letter, an inbound
    message and a suppression entry."""
    k = Keys(settings.redis.prefix)
    secret = settings.privacy.hash_secret
    h = keyed_hash(secret.encode(), number)
    now = int(time.time() * 1000)
    first = {b"id": f"{run}-{tag}-sent".encode(), b"ref": b"R", b"event": b"submitted", b"carrier": b"sim",
             b"parts": b"1", b"message_ids": b"m1", b"error": b"", b"ts": str(now).encode(), b"client": b"shop",
             b"kind": b"transactional", b"to_hash": h.encode(), b"to_mask": b"+45*******01",
             b"encoding": b"gsm7", b"retention_until": str(now // 1000 + 120 * 86400).encode()}
    store = open_store(settings.history.url)
    try:
        await store.migrate()
        await store.write(deltas_from_entries([(b"1-0", first)]), now)
    finally:
        await store.close()
    await redis.xadd(k.events, first)  # type: ignore[arg-type]
    job = {"id": f"{run}-{tag}-wait", "to": number, "text": "waiting", "client": "shop"}
    await redis.xadd(k.jobs, job)  # type: ignore[arg-type]
    parked = {"id": f"{run}-{tag}-park", "to": number, "text": "parked"}
    await redis.xadd(k.park("sim", "normal"), parked)  # type: ignore[arg-type]
    held = {"id": f"{run}-{tag}-held", "to": number, "text": "later", "lane": k.jobs}
    await redis.hset(k.scheduled_job(f"{now}-{tag}"), mapping=held)  # type: ignore[arg-type]
    await redis.zadd(k.scheduled, {f"{now}-{tag}": now + 3_600_000})
    await redis.xadd(k.dead, {"id": f"{run}-{tag}-dead", "to": number, "text": "bad", "code": "invalid"})
    await redis.xadd(k.inbound, {"from": number[1:], "to": "1234", "text": "hi", "client": "shop",
                                 "from_hash": h})
    await redis.sadd(k.suppression("shop"), h)


async def _dump(redis: Redis, prefix: str) -> dict[str, Any]:
    """Every key under the prefix and what it holds (streams: their entries)."""
    out: dict[str, Any] = {}
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        t = (await redis.type(key)).decode()
        if t == "stream":
            out[key.decode()] = [(i, f) for i, f in await redis.xrange(key)]
        elif t == "hash":
            out[key.decode()] = await redis.hgetall(key)
        elif t == "set":
            out[key.decode()] = sorted(await redis.smembers(key))
        elif t == "zset":
            out[key.decode()] = await redis.zrange(key, 0, -1, withscores=True)
        else:
            out[key.decode()] = await redis.get(key)
    return out


def _holds(dump: dict[str, Any], needle: bytes) -> list[str]:
    return sorted(k for k, v in dump.items() if needle in repr(v).encode() or needle in k.encode())


async def test_erase_now_leaves_nothing_and_waiting_job_is_never_sent(
    redis_url: str, key_prefix: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """--now: no key under the prefix holds the number (the opt-out keeps its hash, by
    policy; the audit entry names the hash); the other number's records are all there;
    a copy of the waiting job an engine read before the erasure is acked, never sent."""
    run = uuid.uuid4().hex[:6]
    subject, other = _numbers()
    settings = _settings(redis_url, key_prefix, tmp_path)
    h = keyed_hash(settings.privacy.hash_secret.encode(), subject)
    redis = Redis.from_url(redis_url)
    try:
        await _seed(redis, settings, run, subject, "s")
        await _seed(redis, settings, run, other, "o")
        before = await _dump(redis, key_prefix)
        [copy] = [f for _i, f in await redis.xrange(Keys(key_prefix).jobs) if f[b"to"] == subject.encode()]
        assert await erase_main(settings, to=subject, client=None, now=True) == 0
        out = capsys.readouterr().out
        assert subject[1:] not in out and "5 waiting or held job(s), dead letter(s) and inbound" in out
        after = await _dump(redis, key_prefix)
        assert _holds(after, subject[1:].encode()) == []
        assert sorted(_holds(after, h.encode())) == sorted([f"{key_prefix}:suppress:shop", f"{key_prefix}:audit"])
        # the other subject: every record it had is still there
        other_digits = other[1:].encode()
        assert _holds(after, other_digits) == _holds(before, other_digits)
        assert len(_holds(after, other_digits)) == 5  # lane, park stream, held job, dead letter, inbound
        store = open_store(settings.history.url)
        try:
            assert await store.find(to_hash=h, hidden=True) == []
            assert len(await store.find(to_hash=keyed_hash(settings.privacy.hash_secret.encode(), other))) == 1
        finally:
            await store.close()
        [(_id, entry)] = await redis.xrange(f"{key_prefix}:audit")
        assert entry[b"action"] == b"erase" and entry[b"waiting_jobs"] == b"2" and entry[b"scheduled_jobs"] == b"1"
        assert entry[b"suppression"].startswith(b"kept")
        # an engine that read the waiting job before the erasure claims its copy now
        await redis.xadd(Keys(key_prefix).jobs, copy)  # type: ignore[arg-type]
        await redis.xadd(Keys(key_prefix).jobs, {"id": f"{run}-later", "to": other, "text": "after"})
        async with running(redis_url, key_prefix, SimulatorConfig(dlr=False)) as (engine, _sim, proxy, r):
            assert engine.settings.privacy.hash_secret == settings.privacy.hash_secret
            events = await wait_events(r, key_prefix, {f"{run}-later", f"{run}-o-wait"}, final=False)
            assert proxy is not None
            sent_to = {p.destination_addr for p in proxy.submits}
            assert subject[1:] not in {str(a).lstrip("+") for a in sent_to}
            assert f"{run}-s-wait" not in events
            for lane in Keys(key_prefix).lanes():
                info: Any = await r.xpending(lane, engine.settings.engine.group)
                assert info["pending"] == 0  # the copy was acked, as a duplicate
    finally:
        await redis.aclose()


async def test_policy_erasure_hides_and_stamps_deadline(redis_url: str, key_prefix: str, tmp_path: Any) -> None:
    """By policy the rows are hidden at once with the 60 + 60-day deadline, and what can
    be sent or holds the number in clear (waiting, held, dead letters, inbound) goes."""
    run = uuid.uuid4().hex[:6]
    subject, _other = _numbers()
    settings = _settings(redis_url, key_prefix, tmp_path)
    h = keyed_hash(settings.privacy.hash_secret.encode(), subject)
    redis = Redis.from_url(redis_url)
    try:
        await _seed(redis, settings, run, subject, "s")
        t0 = time.time()
        assert await erase_main(settings, to=subject, client=None, now=False) == 0
        store = open_store(settings.history.url)
        try:
            assert await store.find(to_hash=h) == []
            [row] = await store.find(to_hash=h, hidden=True)
            assert t0 + 120 * 86400 - 5 <= row.retention_until <= time.time() + 120 * 86400
        finally:
            await store.close()
        assert _holds(await _dump(redis, key_prefix), subject[1:].encode()) == []
        [(_id, entry)] = await redis.xrange(f"{key_prefix}:audit")
        assert entry[b"mode"] == b"policy" and abs(int(entry[b"retention_until"]) - (t0 + 120 * 86400)) < 5
    finally:
        await redis.aclose()


async def test_dry_run_changes_nothing(
    redis_url: str, key_prefix: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    run = uuid.uuid4().hex[:6]
    subject, other = _numbers()
    settings = _settings(redis_url, key_prefix, tmp_path)
    redis = Redis.from_url(redis_url)
    try:
        await _seed(redis, settings, run, subject, "s")
        await _seed(redis, settings, run, other, "o")
        before = await _dump(redis, key_prefix)
        assert await erase_main(settings, to=subject, client=None, now=True, dry_run=True) == 0
        out = capsys.readouterr().out
        counts = dict(line.split("\t") for line in out.splitlines() if "\t" in line)
        assert counts == {"history_row": "1", "job_record": "0", "event": "1", "waiting_job": "2",
                          "scheduled_job": "1", "dead_letter": "1", "inbound": "1", "inbound_history_row": "0", "inbound_part": "0",
                          "suppression": "1"}
        assert subject[1:] not in out and "nothing changed" in out
        assert await _dump(redis, key_prefix) == before
        store = open_store(settings.history.url)
        try:
            assert len(await store.find(to_hash=keyed_hash(settings.privacy.hash_secret.encode(), subject))) == 1
        finally:
            await store.close()
    finally:
        await redis.aclose()


async def test_export_returns_exactly_one_subject(redis_url: str, key_prefix: str, tmp_path: Any) -> None:
    run = uuid.uuid4().hex[:6]
    subject, other = _numbers()
    settings = _settings(redis_url, key_prefix, tmp_path)
    h = keyed_hash(settings.privacy.hash_secret.encode(), subject)
    redis = Redis.from_url(redis_url)
    lines: list[bytes] = []
    try:
        await _seed(redis, settings, run, subject, "s")
        await _seed(redis, settings, run, other, "o")
        assert await export_main(settings, to=subject, client=None, write=lines.append) == 0
        records = [orjson.loads(line) for line in lines]
        kinds = sorted(r["kind"] for r in records)
        assert kinds == sorted(["history_row", "event", "waiting_job", "waiting_job", "scheduled_job", "dead_letter",
                                "inbound", "suppression"])
        assert set(kinds) <= set(KINDS)
        blob = b"".join(lines)
        assert other[1:].encode() not in blob and f"{run}-o-".encode() not in blob
        assert subject[1:].encode() in blob  # the subject's own data, in clear: the point of access
        for r in records:  # each record is the subject's
            f = r.get("fields") or r.get("row") or r
            assert f.get("to", subject)[-len(subject) + 1:] == subject[1:] or f.get("to_hash") == h \
                or f.get("from_hash") == h or r["kind"] == "suppression" or r.get("to_hash") == h
        [(_id, entry)] = await redis.xrange(f"{key_prefix}:audit")
        assert entry[b"action"] == b"export" and entry[b"subject"] == h.encode()
        assert entry[b"n_waiting_job"] == b"2" and subject[1:].encode() not in repr(entry).encode()
    finally:
        await redis.aclose()


def test_cli_parses_the_subject_commands() -> None:
    from engine.cli import build_parser

    p = build_parser()
    a = p.parse_args(["erase", "--to", "+4500112233", "--now", "--dry-run", "--include-suppression"])
    assert (a.dry_run, a.include_suppression, a.now) == (True, True, True)
    assert p.parse_args(["export", "--client", "shop"]).client == "shop"
    assert p.parse_args(["close-client", "shop"]).client_id == "shop"
    assert p.parse_args(["reopen-client", "shop"]).command == "reopen-client"


async def test_include_suppression_needs_now(redis_url: str, key_prefix: str, tmp_path: Any,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    settings = _settings(redis_url, key_prefix, tmp_path)
    assert await erase_main(settings, to="+4500112233", client=None, now=False, include_suppression=True) == 2
    assert "needs --now" in capsys.readouterr().out


async def test_export_and_erase_by_client(redis_url: str, key_prefix: str, tmp_path: Any) -> None:
    """By client: the client's records of every number, and none of another client's."""
    run = uuid.uuid4().hex[:6]
    subject, other = _numbers()
    settings = _settings(redis_url, key_prefix, tmp_path)
    k = Keys(key_prefix)
    redis = Redis.from_url(redis_url)
    lines: list[bytes] = []
    try:
        await _seed(redis, settings, run, subject, "s")  # client shop: history row, event, waiting job, inbound
        await redis.xadd(k.jobs, {"id": f"{run}-x", "to": other, "text": "t", "client": "else"})
        assert await export_main(settings, to=None, client="shop", write=lines.append) == 0
        kinds = sorted(orjson.loads(line)["kind"] for line in lines)
        assert kinds == ["event", "history_row", "inbound", "suppression", "waiting_job"]
        assert other[1:].encode() not in b"".join(lines)
        assert await erase_main(settings, to=None, client="shop", now=True) == 0
        assert [f[b"client"] for _i, f in await redis.xrange(k.jobs)] == [b"else"]
        assert await redis.xlen(k.inbound) == 0
        assert await redis.exists(k.suppression("shop"))  # the client's opt-outs are kept by default
    finally:
        await redis.aclose()
