"""Test harness for the engine: simulator + recording TCP proxy + engine + Redis.

The proxy sits on 127.0.0.1 between the engine's binds and the simulator and
decodes the ESME→SMSC byte stream with our own framer, so a test can check
the submit_sm PDUs that really went over the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from connectors.constants import CommandId
from connectors.framer import Framer, decode_frame
from connectors.pdu import SubmitSm
from connectors.simulator import Simulator, SimulatorConfig, start_simulator
from engine.app import Engine
from engine.config import Settings, settings_from_mapping
from engine.keys import shard_keys, shard_of

FINAL = frozenset({"delivered", "undeliverable", "expired", "rejected", "deleted", "unknown", "failed", "cancelled"})


class RecordingProxy:
    """TCP proxy on 127.0.0.1 that records the submit_sm PDUs passing upstream."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.submits: list[SubmitSm] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> RecordingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers |= {writer, up_writer}
        framer = Framer()

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bool) -> None:
            try:
                while data := await src.read(65536):
                    if record:
                        for frame in framer.feed(data):
                            if frame[0] == CommandId.SUBMIT_SM:
                                pdu = decode_frame(frame)
                                assert isinstance(pdu, SubmitSm)
                                self.submits.append(pdu)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


def make_settings(redis_url: str, prefix: str, port: int, **engine: Any) -> Settings:
    carrier = {"name": "sim", "port": port, "system_id": "test", "password": "pw", "binds": 2, "window": 32, "routes": [""]}
    carrier.update(engine.pop("carrier", {}))
    extra_carriers = engine.pop("extra_carriers", [])
    webhooks = engine.pop("webhooks", {})
    sections = {name: engine.pop(name) for name in ("clients", "inbound", "history", "privacy") if name in engine}
    redis_extra = engine.pop("redis", {})  # e.g. {"shards": 4}
    return settings_from_mapping(
        {
            "redis": {"url": redis_url, "prefix": prefix, **redis_extra},
            "engine": {"batch_size": 200, "block_ms": 20, "drain_timeout_s": 5.0, **engine},
            "admin": {"listen": ""},
            "webhooks": webhooks,
            "carriers": [carrier, *extra_carriers],
            **sections,
        },
        env={},
    )


async def wait_events(
    redis: Redis, prefix: str, job_ids: set[str], *, final: bool = True, timeout_s: float = 30.0, shards: int = 1,
) -> dict[str, list[dict[str, str]]]:
    """Read the events stream (every shard's) until every job in ``job_ids`` has a final
    event (or, with ``final=False``, any event). Returns events per job, in order."""
    events: dict[str, list[dict[str, str]]] = {}
    done: set[str] = set()
    positions = {k.events: "0" for k in shard_keys(prefix, shards)}
    deadline = time.monotonic() + timeout_s
    while not job_ids <= done:
        if time.monotonic() > deadline:
            missing = sorted(job_ids - done)[:5]
            raise AssertionError(f"timed out waiting for events of {len(job_ids - done)} job(s), e.g. {missing}")
        if len(positions) == 1:
            reply = await redis.xread(positions, count=1000, block=100)  # type: ignore[arg-type]
        else:  # a read per shard's stream (one slot each, as on a Cluster), pipelined
            pipe = redis.pipeline(transaction=False)
            for stream_name, position in positions.items():
                pipe.xread({stream_name: position}, count=1000)
            reply = [item for r in await pipe.execute() for item in (r or [])]
            if not any(entries for _s, entries in reply):
                await asyncio.sleep(0.02)
        for stream, entries in reply or []:
            for eid, f in entries:
                positions[stream.decode()] = eid.decode()
                ev = {k.decode(): v.decode() for k, v in f.items()}
                events.setdefault(ev["id"], []).append(ev)
                if ev["event"] in FINAL or not final:
                    done.add(ev["id"])
    return events


@contextlib.asynccontextmanager
async def running(
    redis_url: str, prefix: str, sim_config: SimulatorConfig | None = None, *, proxy: bool = True, **engine: Any
) -> AsyncIterator[tuple[Engine, Simulator, RecordingProxy | None, Redis]]:
    sim = await start_simulator(sim_config or SimulatorConfig(dlr=True))
    rec = await RecordingProxy(sim.port).start() if proxy else None
    settings = make_settings(redis_url, prefix, rec.port if rec else sim.port, **engine)
    eng = Engine(settings, redis_url)
    redis = Redis.from_url(redis_url)
    await eng.start()
    try:
        yield eng, sim, rec, redis
    finally:
        await eng.close()
        if rec is not None:
            await rec.close()
        await sim.close()
        await delete_prefix(redis, prefix)
        await redis.aclose()


async def delete_prefix(redis: Redis, prefix: str) -> None:
    """Remove every key a test wrote under its prefix."""
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 500):
        await redis.delete(*keys[i : i + 500])


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a `python -m engine.cli …` child: this checkout on its path."""
    import os
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    env.update(extra)
    return env


async def push(redis: Redis, prefix: str, jobs: list[dict[str, str]], lane: str = "jobs", *, shards: int = 1) -> None:
    """XADD ``jobs`` to ``lane``; with ``shards``, each to its id's shard (crc32 routing)."""
    all_keys = shard_keys(prefix, shards)
    pipe = redis.pipeline(transaction=False)
    for job in jobs:
        k = all_keys[shard_of(job["id"], shards)]
        stream = {"jobs": k.jobs, "jobs:high": k.jobs_high, "jobs:bulk": k.jobs_bulk}[lane]
        pipe.xadd(stream, job)  # type: ignore[arg-type]
    await pipe.execute()


async def get_mark(redis: Redis, keys: Any, job_id: str, window_s: int = 168 * 3600,
                   now_ms: int | None = None) -> bytes | None:
    """A job id's idempotency mark as the claims see it (engine/marks.py), None when it has none."""
    from engine.marks import read_marks

    (mark,) = await read_marks(redis, keys, [job_id], window_s, now_ms)
    return mark.encode() if mark else None


async def set_mark(redis: Redis, keys: Any, job_id: str, value: str, window_s: int = 168 * 3600,
                   now_ms: int | None = None) -> None:
    """Put ``value`` as a job id's mark (it must have none), as a claim or cancel would."""
    from engine.marks import take_marks

    assert await take_marks(redis, keys, [job_id], value, window_s, now_ms) == [True]


async def mark_bucket(redis: Redis, keys: Any, job_id: str, window_s: int = 168 * 3600,
                      now_ms: int | None = None) -> str:
    """The key of the bucket that holds (or would hold) a job id's mark in the current generation."""
    from engine.keys import marks_bucket_of, marks_hash

    now = int(time.time() * 1000) if now_ms is None else now_ms
    start = now // 1000 // window_s * window_s
    k = await redis.hget(keys.marks_generation(start), "k")
    assert k is not None, "no mark in this generation yet"
    return str(keys.marks_bucket(start, marks_bucket_of(marks_hash(job_id), int(k)), int(k)))
