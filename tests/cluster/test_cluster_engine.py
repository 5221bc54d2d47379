"""Engines as real processes on a private 3-master Redis Cluster (``[redis] cluster = true``).

With one shard and a tagged prefix (``{sgc-…}``) every key of the run is on one
slot; with ``shards`` > 1 (an untagged prefix) each shard's keys are on the
slot of its tag ``{k}``, spread over the masters. Every call the engine, its
CLI commands, the producer helper, the archiver and the status sampler make
goes through redis-py's cluster client, which refuses a call across slots.
The simulator runs in the test process over TCP; a recording proxy per engine
counts every submit_sm on the wire, so "once" is checked on the wire.
"""

from __future__ import annotations

import signal
import socket
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
import pytest

from bench.cluster import LocalCluster
from connectors.simulator import SimulatorConfig, start_simulator
from engine.keys import Keys, shard_keys, shard_of
from engine.producer import Producer, SendJob
from engine.redis_client import is_cluster
from tests.cluster.fleet import EngineProc, fleet, until, write_config
from tests.engine.harness import RecordingProxy, push, wait_events


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _jobs(tag: str, n: int, base: str = "+4503", **extra: str) -> list[dict[str, str]]:
    # A destination per job: the proxies' records tell how often each was sent.
    return [{"id": f"{tag}-{i}", "to": f"{base}{i:06d}", "text": f"msg {i}", **extra} for i in range(n)]


def _clean(e: EngineProc, *numbers: str) -> None:
    text = bytes(e.stderr).decode(errors="replace")
    for number in numbers:
        assert number.lstrip("+") not in text  # no number in the log
    assert "msg 1" not in text  # no text either
    assert not e.errors(), e.errors()[:3]


def _prefix(tagged: str, shards: int) -> str:
    """One shard: the tagged prefix; shards: the same name without braces (each shard has its tag)."""
    return tagged if shards == 1 else tagged.strip("{}")


@pytest.mark.slow
@pytest.mark.parametrize("shards", [1, 4])
async def test_one_engine_on_the_cluster_sends_each_job_once_and_the_commands_work(
    redis_cluster: LocalCluster, tagged_prefix: str, tmp_path: Path, shards: int
) -> None:
    sim = await start_simulator(SimulatorConfig(dlr=True))
    proxy = await RecordingProxy(sim.port).start()
    admin = f"127.0.0.1:{_free_port()}"
    url = redis_cluster.url
    prefix = _prefix(tagged_prefix, shards)
    config = write_config(tmp_path / "e.toml", url, prefix, proxy.port, admin_listen=admin,
                          carrier={"binds": 2}, redis={"shards": shards})
    keys = Keys(prefix)
    every = shard_keys(prefix, shards)
    try:
        async with fleet(tmp_path, url, prefix) as (f, redis):
            assert is_cluster(redis)
            engine = await f.spawn("one", config)
            # The producer helper in cluster mode, and a push by hand (redis-cli's way).
            producer = Producer.from_url(url, prefix, "cluster-test-secret", cluster=True, shards=shards)
            # Ids and numbers of this run only: the session's engines share one history store.
            run = f"one{shards}x{uuid.uuid4().hex[:6]}"
            base = f"+4530{shards}"
            jobs = _jobs(run, 150, base)
            try:
                await producer.send_many(SendJob(id=j["id"], to=j["to"], text=j["text"]) for j in jobs[:50])
            finally:
                await producer.aclose()
            await push(redis, prefix, jobs[50:], shards=shards)
            bad = {"id": f"{run}-bad", "to": "not-a-number", "text": "x"}
            await push(redis, prefix, [bad], shards=shards)
            events = await wait_events(redis, prefix, {j["id"] for j in jobs}, timeout_s=60, shards=shards)
            for job in jobs:
                names = [e["event"] for e in events[job["id"]]]
                assert names == ["submitted", "delivered"], (job["id"], names)
            sent = Counter(p.destination_addr for p in proxy.submits)
            assert len(sent) == len(jobs) and max(sent.values()) == 1
            bad_keys = every[shard_of(f"{run}-bad", shards)]
            dead = await until(lambda: redis.xrange(bad_keys.dead), "the dead letter")  # no event for an invalid job
            assert [(d[b"id"], d[b"code"]) for _, d in dead] == [(f"{run}-bad".encode(), b"bad_number")]
            for k in every:
                assert (await redis.xpending(k.jobs, "sendgate"))["pending"] == 0

            # The status sampler (lanes, dead letters) and /metrics, read over HTTP.
            async with aiohttp.ClientSession() as http:
                async def lanes_sampled() -> dict[str, object] | None:
                    async with http.get(f"http://{admin}/status") as resp:
                        body = orjson.loads(await resp.read())
                    return body if body["samples"] >= 2 and body["dead_letters"]["recent"] else None

                status = await until(lanes_sampled, "the status sampler", timeout_s=20)
                assert status["redis"]["ok"] is True  # type: ignore[index]
                assert status["dead_letters"]["recent"] == [{"code": "bad_number", "count": 1}]  # type: ignore[index]
                assert set(status["lanes"]) == {"high", "normal", "bulk"}  # type: ignore[arg-type]
                async with http.get(f"http://{admin}/metrics") as resp:
                    metrics = await resp.text()
                assert 'sendgate_binds_up{carrier="sim"} 2.0' in metrics

            # The CLI commands, each a process of its own, on the same cluster.
            code, out, err = await f.cli(config, "send", "--to", "+4503999001", "--text", "via cli", "--id", f"{run}-cli1",
                                         "--wait", "30")
            assert code == 0 and "delivered" in out, (out, err)
            code, out, err = await f.cli(config, "send", "--to", "+4503999002", "--text", "later", "--id", f"{run}-cli2",
                                         "--delay-s", "600")
            assert code == 0, err
            code, out, err = await f.cli(config, "cancel", f"{run}-cli2")
            assert code == 0 and f"cancelled job {run}-cli2" in out, (out, err)
            code, out, err = await f.cli(config, "suppress", "add", "+4503999003", "--client", "acme")
            assert code == 0 and "added 1 number" in out, (out, err)
            code, out, err = await f.cli(config, "suppress", "check", "+4503999003", "--client", "acme")
            assert code == 0 and "\tsuppressed" in out, (out, err)
            code, out, err = await f.cli(config, "close-client", "acme")
            assert code == 0 and "client acme closed" in out, (out, err)
            assert await redis.hexists(keys.clients_closed, "acme")  # the engines reload it every 3 s
            code, out, err = await f.cli(config, "reopen-client", "acme")
            assert code == 0 and not await redis.hexists(keys.clients_closed, "acme"), (out, err)

            # History: the archiver (a consumer group on the events stream) wrote the rows.
            async def archived() -> str | None:
                code, out, _ = await f.cli(config, "history", "--id", f"{run}-7")
                return out if code == 0 and "delivered" in out else None

            await until(archived, "the archiver to write job 7's row", timeout_s=60)
            code, out, err = await f.cli(config, "archive", "--once")  # the archiver alone, every shard
            assert code == 0 and out.startswith("archived "), (out, err)
            code, out, err = await f.cli(config, "suppress", "list", "--client", "acme")
            assert code == 0 and "1 number(s) on" in err and len(out.split()) == 1, (out, err)
            code, out, err = await f.cli(config, "export", "--to", f"{base}000007")
            assert code == 0, err
            kinds = Counter(orjson.loads(line)["kind"] for line in out.splitlines() if line.startswith("{"))
            assert kinds["history_row"] == 1 and kinds["event"] >= 1, kinds
            code, out, err = await f.cli(config, "erase", "--to", f"{base}000007")
            assert code == 0 and "erased" in out, (out, err)
            code, out, err = await f.cli(config, "purge")
            assert code == 0, (out, err)
            _clean(engine, *(j["to"] for j in jobs))
    finally:
        await proxy.close()
        await sim.close()


SHARDS = 6  # two per master when the tags spread evenly


@pytest.mark.slow
async def test_two_engines_on_six_shards_send_each_job_once_and_a_killed_one_loses_nothing(
    redis_cluster: LocalCluster, tagged_prefix: str, tmp_path: Path
) -> None:
    sim = await start_simulator(SimulatorConfig(dlr=True, latency_ms=20))
    proxies = [await RecordingProxy(sim.port).start() for _ in range(3)]
    url = redis_cluster.url
    prefix = _prefix(tagged_prefix, SHARDS)
    every = shard_keys(prefix, SHARDS)
    run = uuid.uuid4().hex[:6]
    try:
        async with fleet(tmp_path, url, prefix) as (f, redis):
            configs = [write_config(tmp_path / f"{n}.toml", url, prefix, p.port, engine={"consumer": n},
                                    redis={"shards": SHARDS})
                       for n, p in zip(("a", "b"), proxies, strict=False)]
            masters = {redis_cluster.master_of(k.jobs) for k in every}
            assert masters == set(redis_cluster.ports), "the six shard tags do not cover the three masters"
            a = await f.spawn("a", configs[0])
            b = await f.spawn("b", configs[1])
            first = _jobs(f"two{run}", 300)
            await push(redis, prefix, first, shards=SHARDS)
            # A job pushed by hand to a shard that is not its id's: moved to its own, sent once.
            stray = {"id": f"stray{run}", "to": "+4505000001", "text": "wrong shard"}
            own = shard_of(stray["id"], SHARDS)
            await redis.xadd(every[(own + 1) % SHARDS].jobs, stray)  # type: ignore[arg-type]
            events = await wait_events(redis, prefix, {j["id"] for j in first} | {stray["id"]}, timeout_s=90,
                                       shards=SHARDS)
            for job in [*first, stray]:
                assert [e["event"] for e in events[job["id"]]] == ["submitted", "delivered"], job["id"]
            per_engine = [len(p.submits) for p in proxies[:2]]
            assert sum(per_engine) == len(first) + 1 and min(per_engine) > 0, per_engine  # both took a share
            stray_events = await redis.xrange(every[own].events)
            assert [e[b"event"] for _, e in stray_events if e[b"id"] == stray["id"].encode()] == [
                b"submitted", b"delivered"]  # its events are on its own shard
            # The jobs spread over every shard (events stay 5 min at least), the shards over every master.
            assert all([await redis.xlen(k.events) > 0 for k in every])
            held = redis_cluster.keys_per_master(f"{prefix}:*")
            assert all(n > 0 for n in held.values()), held  # every master holds some of the run's keys

            # Now a is killed mid-run: b goes on, and c (short visibility) reclaims a's pending entries.
            for p in proxies:
                p.submits.clear()
            second = [{**j, "to": "+4504" + j["to"][5:]} for j in _jobs(f"kill{run}", 600)]
            await push(redis, prefix, second, shards=SHARDS)
            await until(lambda: len(proxies[0].submits) >= 40, "a to send some")
            a.proc.send_signal(signal.SIGKILL)
            await a.proc.wait()
            c_config = write_config(tmp_path / "c.toml", url, prefix, proxies[2].port, redis={"shards": SHARDS},
                                    engine={"consumer": "c", "visibility_timeout_s": 1.0, "claim_interval_s": 0.3})
            c = await f.spawn("c", c_config)
            events = await wait_events(redis, prefix, {j["id"] for j in second}, final=False, timeout_s=90,
                                       shards=SHARDS)
            # Every job has its outcome, one each: submitted (then its receipt) or, for
            # the few a had written or was writing when it died, `unknown`.
            sent = Counter(p.destination_addr for px in proxies for p in px.submits)
            assert max(sent.values()) == 1  # never twice on the wire
            outcomes: Counter[str] = Counter()
            for job in second:
                first_event = events[job["id"]][0]["event"]
                outcomes[first_event] += 1
                assert first_event in ("submitted", "unknown"), (job["id"], first_event)
            assert outcomes["unknown"] <= 2 * 16  # at most the dead engine's window(s) in flight
            # Receipts: every job b or c submitted gets its own (those a submitted went with
            # a's connection: the simulator sends a receipt on the bind that took the job).
            via = {p.destination_addr: i for i, px in enumerate(proxies) for p in px.submits}
            survivors = {j["id"] for j in second
                         if events[j["id"]][0]["event"] == "submitted" and via[j["to"].lstrip("+")] != 0}
            assert len(survivors) > len(second) // 2
            receipts = await wait_events(redis, prefix, survivors, timeout_s=60, shards=SHARDS)
            finals = Counter(receipts[i][-1]["event"] for i in survivors)
            assert finals == {"delivered": len(survivors)}, finals
            # a's pending entries were reclaimed (by c: b's visibility timeout is the default 60 s) and acked.
            for k in every:
                assert (await redis.xpending(k.jobs, "sendgate"))["pending"] == 0
            for e in (b, c):
                _clean(e, *(j["to"] for j in first + second))
    finally:
        for p in proxies:
            await p.close()
        await sim.close()
