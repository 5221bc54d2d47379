"""Engines as real processes on a private 3-master Redis Cluster (``[redis] cluster = true``).

One shard, a tagged prefix (``{sgc-…}``): every key of the run is on one slot,
and every call the engine, its CLI commands, the producer helper, the
archiver and the status sampler make goes through redis-py's cluster client.
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
from engine.keys import Keys
from engine.producer import Producer, SendJob
from engine.redis_client import is_cluster
from tests.cluster.fleet import EngineProc, fleet, until, write_config
from tests.engine.harness import RecordingProxy, push, wait_events


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _jobs(tag: str, n: int, **extra: str) -> list[dict[str, str]]:
    # A destination per job: the proxies' records tell how often each was sent.
    return [{"id": f"{tag}-{i}", "to": f"+4503{i:06d}", "text": f"msg {i}", **extra} for i in range(n)]


def _clean(e: EngineProc) -> None:
    text = bytes(e.stderr).decode(errors="replace")
    assert "4503000" not in text and "msg 1" not in text  # no number, no text in the log
    assert not e.errors(), e.errors()[:3]


@pytest.mark.slow
async def test_one_engine_on_the_cluster_sends_each_job_once_and_the_commands_work(
    redis_cluster: LocalCluster, tagged_prefix: str, tmp_path: Path
) -> None:
    sim = await start_simulator(SimulatorConfig(dlr=True))
    proxy = await RecordingProxy(sim.port).start()
    admin = f"127.0.0.1:{_free_port()}"
    url = redis_cluster.url
    config = write_config(tmp_path / "e.toml", url, tagged_prefix, proxy.port, admin_listen=admin,
                          carrier={"binds": 2})
    keys = Keys(tagged_prefix)
    try:
        async with fleet(tmp_path, url, tagged_prefix) as (f, redis):
            assert is_cluster(redis)
            engine = await f.spawn("one", config)
            # The producer helper in cluster mode, and a push by hand (redis-cli's way).
            producer = Producer.from_url(url, tagged_prefix, "cluster-test-secret", cluster=True)
            jobs = _jobs("one", 150)
            try:
                await producer.send_many(SendJob(id=j["id"], to=j["to"], text=j["text"]) for j in jobs[:50])
            finally:
                await producer.aclose()
            await push(redis, tagged_prefix, jobs[50:])
            bad = {"id": "one-bad", "to": "not-a-number", "text": "x"}
            await push(redis, tagged_prefix, [bad])
            events = await wait_events(redis, tagged_prefix, {j["id"] for j in jobs}, timeout_s=60)
            for job in jobs:
                names = [e["event"] for e in events[job["id"]]]
                assert names == ["submitted", "delivered"], (job["id"], names)
            sent = Counter(p.destination_addr for p in proxy.submits)
            assert len(sent) == len(jobs) and max(sent.values()) == 1
            dead = await until(lambda: redis.xrange(keys.dead), "the dead letter")  # no event for an invalid job
            assert [(d[b"id"], d[b"code"]) for _, d in dead] == [(b"one-bad", b"bad_number")]
            assert (await redis.xpending(keys.jobs, "sendgate"))["pending"] == 0

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
            code, out, err = await f.cli(config, "send", "--to", "+4503999001", "--text", "via cli", "--id", "cli-1",
                                         "--wait", "30")
            assert code == 0 and "delivered" in out, (out, err)
            code, out, err = await f.cli(config, "send", "--to", "+4503999002", "--text", "later", "--id", "cli-2",
                                         "--delay-s", "600")
            assert code == 0, err
            code, out, err = await f.cli(config, "cancel", "cli-2")
            assert code == 0 and "cancelled job cli-2" in out, (out, err)
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
                code, out, _ = await f.cli(config, "history", "--id", "one-7")
                return out if code == 0 and "delivered" in out else None

            await until(archived, "the archiver to write one-7's row", timeout_s=30)
            code, out, err = await f.cli(config, "export", "--to", "+4503000007")
            assert code == 0, err
            kinds = Counter(orjson.loads(line)["kind"] for line in out.splitlines() if line.startswith("{"))
            assert kinds["history_row"] == 1 and kinds["event"] >= 1, kinds
            code, out, err = await f.cli(config, "erase", "--to", "+4503000007")
            assert code == 0 and "erased" in out, (out, err)
            code, out, err = await f.cli(config, "purge")
            assert code == 0, (out, err)
            _clean(engine)
    finally:
        await proxy.close()
        await sim.close()


@pytest.mark.slow
async def test_two_engines_send_each_job_once_and_a_killed_one_loses_nothing(
    redis_cluster: LocalCluster, tagged_prefix: str, tmp_path: Path
) -> None:
    sim = await start_simulator(SimulatorConfig(dlr=True, latency_ms=20))
    proxies = [await RecordingProxy(sim.port).start() for _ in range(3)]
    url = redis_cluster.url
    run = uuid.uuid4().hex[:6]
    try:
        async with fleet(tmp_path, url, tagged_prefix) as (f, redis):
            configs = [write_config(tmp_path / f"{n}.toml", url, tagged_prefix, p.port, engine={"consumer": n})
                       for n, p in zip(("a", "b"), proxies, strict=False)]
            a = await f.spawn("a", configs[0])
            b = await f.spawn("b", configs[1])
            first = _jobs(f"two{run}", 300)
            await push(redis, tagged_prefix, first)
            events = await wait_events(redis, tagged_prefix, {j["id"] for j in first}, timeout_s=90)
            for job in first:
                assert [e["event"] for e in events[job["id"]]] == ["submitted", "delivered"], job["id"]
            per_engine = [len(p.submits) for p in proxies[:2]]
            assert sum(per_engine) == len(first) and min(per_engine) > 0, per_engine  # both took a share

            # Now a kills mid-run: b goes on, and c (short visibility) reclaims a's pending entries.
            for p in proxies:
                p.submits.clear()
            second = [{**j, "to": "+4504" + j["to"][5:]} for j in _jobs(f"kill{run}", 600)]
            await push(redis, tagged_prefix, second)
            await until(lambda: len(proxies[0].submits) >= 40, "a to send some")
            a.proc.send_signal(signal.SIGKILL)
            await a.proc.wait()
            c_config = write_config(tmp_path / "c.toml", url, tagged_prefix, proxies[2].port,
                                    engine={"consumer": "c", "visibility_timeout_s": 1.0, "claim_interval_s": 0.3})
            c = await f.spawn("c", c_config)
            events = await wait_events(redis, tagged_prefix, {j["id"] for j in second}, final=False, timeout_s=90)
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
            receipts = await wait_events(redis, tagged_prefix, survivors, timeout_s=60)
            finals = Counter(receipts[i][-1]["event"] for i in survivors)
            assert finals == {"delivered": len(survivors)}, finals
            # a's pending entries were reclaimed (by c: b's visibility timeout is the default 60 s) and acked.
            assert (await redis.xpending(Keys(tagged_prefix).jobs, "sendgate"))["pending"] == 0
            for e in (b, c):
                _clean(e)
    finally:
        for p in proxies:
            await p.close()
        await sim.close()
