"""The cluster ACL users of docs/operating-cluster.md §6, installed on every node of the
private cluster: an engine runs as ``sendgate-engine`` and a producer pushes as
``sendgate-producer``; no node logs a refusal (ACL LOG) and the engine logs none."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path

import pytest
import redis
from redis.exceptions import NoPermissionError

from bench.cluster import LocalCluster
from connectors.simulator import SimulatorConfig, start_simulator
from engine.app import Engine
from engine.config import settings_from_mapping
from engine.producer import Producer, SendJob
from engine.redis_client import cluster_from_url, redis_from_settings
from tests.engine.harness import delete_prefix, wait_events

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "{sendgate}"  # the documented rules name this prefix


def cluster_acl_rules() -> dict[str, str]:
    text = (ROOT / "docs" / "operating-cluster.md").read_text(encoding="utf-8")
    rules = dict(re.findall(r"^ACL SETUSER (sendgate-\w+) (.+)$", text, re.MULTILINE))
    assert set(rules) == {"sendgate-engine", "sendgate-producer"}, "operating-cluster.md lost its ACL examples"
    return rules


def _on_every_node(cluster: LocalCluster, *command: str) -> list[object]:
    out = []
    for port in cluster.ports:
        r = redis.Redis(host="127.0.0.1", port=port)
        try:
            out.append(r.execute_command(*command))  # type: ignore[no-untyped-call]
        finally:
            r.close()
    return out


@pytest.mark.slow
async def test_the_documented_cluster_acl_users_run_an_engine_and_a_producer(
    redis_cluster: LocalCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    engine_pw, producer_pw = "e-" + uuid.uuid4().hex, "p-" + uuid.uuid4().hex
    rules = cluster_acl_rules()
    users = {"sendgate-engine": engine_pw, "sendgate-producer": producer_pw}
    for user, rule in rules.items():
        _on_every_node(redis_cluster, "ACL", "SETUSER", user, "reset", *rule.replace("PASSWORD", users[user]).split())
    _on_every_node(redis_cluster, "ACL", "LOG", "RESET")
    sim = await start_simulator(SimulatorConfig(dlr=True))
    settings = settings_from_mapping(
        {
            "redis": {"url": redis_cluster.url, "cluster": True, "prefix": PREFIX, "username": "sendgate-engine",
                      "password": engine_pw},
            "engine": {"batch_size": 50, "block_ms": 20, "drain_timeout_s": 2.0},
            "admin": {"listen": ""},
            "history": {"url": f"sqlite:///{tmp_path / 'history.db'}"},
            "carriers": [{"name": "sim", "port": sim.port, "routes": [""], "tps": 1000, "max_binds": 1,
                          "binds": 1}],
        },
        env={},
    )
    engine = Engine(settings, redis_cluster.url)
    host, port = redis_cluster.nodes[1]
    producer = Producer.from_url(f"redis://sendgate-producer:{producer_pw}@{host}:{port}", PREFIX, cluster=True)
    reader = redis_from_settings(settings)
    admin = cluster_from_url(redis_cluster.url)
    await engine.start()
    try:
        run = uuid.uuid4().hex[:8]
        ids = {f"acl-{run}-{i}" for i in range(20)}
        await producer.send_many(SendJob(id=i, to=f"+4520{n:06d}", text="as acl users") for n, i in enumerate(sorted(ids)))
        events = await wait_events(reader, PREFIX, ids)
        assert {evs[-1]["event"] for evs in events.values()} == {"delivered"}
        with pytest.raises(NoPermissionError):  # a producer reads no job records
            await producer.redis.get(f"{PREFIX}:job:{run}")
        from engine.stream_trim import trim_streams

        await trim_streams(engine.redis, settings, approximate=True)
        await engine.audit.record("acl_check", actor="test")
    finally:
        await engine.close()
        await producer.aclose()
        await reader.aclose()
        await sim.close()
        await delete_prefix(admin, PREFIX)
        await admin.aclose()
    logs = _on_every_node(redis_cluster, "ACL", "LOG")
    # One refusal is the test's own (the producer's GET of a job record).
    refused = [e for log in logs for e in log or []]  # type: ignore[attr-defined]
    assert len(refused) == 1 and b"sendgate-producer" in refused[0][b"username"], refused
    assert [r.getMessage() for r in caplog.records if "NOPERM" in r.getMessage() or r.levelno >= logging.ERROR] == []
    _on_every_node(redis_cluster, "ACL", "DELUSER", "sendgate-engine", "sendgate-producer")
