"""Redis over TLS with an ACL user: a real redis-server started here, certificates made here.

The server listens only on a TLS port of 127.0.0.1 and knows the two users the
README's "Security" section shows (``sendgate-engine`` and ``sendgate-producer``,
with exactly those ACL rules, read from README.md so the documentation is
what is tested). The whole engine runs through it: jobs pushed by the
producer user are sent and their events published.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.exceptions import AuthenticationError, ConnectionError, NoPermissionError

from connectors.simulator import SimulatorConfig, start_simulator
from engine.app import Engine
from engine.config import ConfigError, settings_from_mapping
from engine.producer import Producer, SendJob
from engine.redis_client import redis_from_settings
from tests.engine.harness import wait_events
from tests.tls_certs import Pki, make_pki

ROOT = Path(__file__).resolve().parents[2]
ENGINE_PASSWORD = "engine-" + uuid.uuid4().hex
PRODUCER_PASSWORD = "producer-" + uuid.uuid4().hex


def readme_acl_rules() -> dict[str, str]:
    """The ``ACL SETUSER`` rules of the README, per user, password placeholder left in."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rules = dict(re.findall(r"^\s*ACL SETUSER (sendgate-\w+) (.+)$", text, re.MULTILINE))
    assert set(rules) == {"sendgate-engine", "sendgate-producer"}, "README.md lost its ACL examples"
    return rules


@dataclass
class TlsRedis:
    port: int
    pki: Pki

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tls_capable_server() -> str:
    """The first redis-server on PATH (or in /usr/bin, /usr/local/bin) built with TLS."""
    dirs = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/local/bin", "/usr/bin"]
    seen: set[str] = set()
    for d in dirs:
        server = shutil.which("redis-server", path=d) if d else None
        if server is None or os.path.realpath(server) in seen:
            continue
        seen.add(os.path.realpath(server))
        probe = subprocess.run(
            [server, "--tls-port", "0", "--port", "0", "--no-such-directive", "x"], capture_output=True, text=True, timeout=10
        )
        if "no-such-directive" in probe.stdout + probe.stderr:  # the TLS directive passed; the bogus one stopped it
            return server
    pytest.skip(f"no redis-server built with TLS found (tried {sorted(seen) or 'none'})")


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    server = _tls_capable_server()
    directory = tmp_path_factory.mktemp("redis-tls")
    pki = make_pki(directory / "pki")
    users = []
    for user, rule in readme_acl_rules().items():
        password = ENGINE_PASSWORD if user == "sendgate-engine" else PRODUCER_PASSWORD
        users.append(f"user {user} {rule.replace('>PASSWORD', '>' + password)}")
    port = _free_port()
    conf = directory / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "port 0", f"tls-port {port}", "bind 127.0.0.1", f"dir {directory}", 'save ""', "appendonly no",
                f"tls-cert-file {pki.server_cert}", f"tls-key-file {pki.server_key}",
                f"tls-ca-cert-file {pki.ca}", "tls-auth-clients optional",
                "user default off", *users, "",
            ]
        )
    )
    proc = subprocess.Popen([server, str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise AssertionError(f"redis-server with TLS did not start: {output[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("redis-server with TLS did not listen within 10 s") from None
                time.sleep(0.05)
        yield TlsRedis(port, pki)
    finally:
        proc.terminate()
        proc.wait(10)


def _settings(tls: TlsRedis, tmp_path: Path, **redis: str) -> object:
    secret = tmp_path / "redis-password"
    secret.write_text(ENGINE_PASSWORD + "\n")
    table = {"url": tls.url, "prefix": "sendgate", "username": "sendgate-engine",
             "password_file": str(secret), "tls_ca_file": str(tls.pki.ca), **redis}
    return settings_from_mapping({"redis": table}, env={})


async def test_tls_with_ca_and_acl_user(tls_redis: TlsRedis, tmp_path: Path) -> None:
    settings = _settings(tls_redis, tmp_path)
    redis = redis_from_settings(settings)  # type: ignore[arg-type]
    try:
        assert await redis.ping()
        await redis.set("sendgate:tls-check", b"1", ex=60)
        assert await redis.get("sendgate:tls-check") == b"1"
        with pytest.raises(NoPermissionError):  # least privilege: only the sendgate: keys
            await redis.set("other-app:key", b"1")
    finally:
        await redis.aclose()


async def test_tls_with_a_client_certificate(tls_redis: TlsRedis, tmp_path: Path) -> None:
    settings = _settings(
        tls_redis, tmp_path, tls_cert_file=str(tls_redis.pki.client_cert), tls_key_file=str(tls_redis.pki.client_key)
    )
    redis = redis_from_settings(settings)  # type: ignore[arg-type]
    try:
        assert await redis.ping()
    finally:
        await redis.aclose()


async def test_a_wrong_ca_is_refused_clearly(tls_redis: TlsRedis, tmp_path: Path) -> None:
    settings = _settings(tls_redis, tmp_path, tls_ca_file=str(tls_redis.pki.wrong_ca))
    redis = redis_from_settings(settings)  # type: ignore[arg-type]
    try:
        with pytest.raises(ConnectionError, match="certificate verify failed"):
            await redis.ping()
    finally:
        await redis.aclose()


async def test_a_wrong_password_is_refused(tls_redis: TlsRedis, tmp_path: Path) -> None:
    settings = _settings(tls_redis, tmp_path)
    redis = redis_from_settings(settings, password="wrong")  # type: ignore[arg-type]
    try:
        with pytest.raises(AuthenticationError):
            await redis.ping()
    finally:
        await redis.aclose()


def test_tls_files_need_a_rediss_url(tls_redis: TlsRedis) -> None:
    with pytest.raises(ConfigError, match=r"redis\.tls_ca_file: TLS needs a rediss:// URL"):
        settings_from_mapping(
            {"redis": {"url": f"redis://127.0.0.1:{tls_redis.port}", "tls_ca_file": str(tls_redis.pki.ca)}}, env={}
        )


async def test_the_engine_runs_over_tls_with_the_readme_acl(
    tls_redis: TlsRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Engine user for the engine, producer user for the jobs: every command either needs is allowed."""
    caplog.set_level(logging.WARNING)
    sim = await start_simulator(SimulatorConfig(dlr=True))
    secret = tmp_path / "engine-password"
    secret.write_text(ENGINE_PASSWORD)
    settings = settings_from_mapping(
        {
            "redis": {"url": tls_redis.url, "username": "sendgate-engine", "password_file": str(secret),
                      "tls_ca_file": str(tls_redis.pki.ca)},
            "engine": {"batch_size": 50, "block_ms": 20, "drain_timeout_s": 2.0},
            "admin": {"listen": ""},
            "history": {"url": f"sqlite:///{tmp_path / 'history.db'}"},
            "carriers": [{"name": "sim", "port": sim.port, "routes": [""], "tps": 1000}],
        },
        env={},
    )
    engine = Engine(settings, tls_redis.url)
    producer_settings = settings_from_mapping(
        {"redis": {"url": tls_redis.url, "username": "sendgate-producer", "password": PRODUCER_PASSWORD,
                   "tls_ca_file": str(tls_redis.pki.ca)}},
        env={},
    )
    producer = Producer(redis_from_settings(producer_settings), "sendgate")
    reader = redis_from_settings(settings)
    await engine.start()
    try:
        run = uuid.uuid4().hex[:8]
        ids = {f"tls-{run}-{i}" for i in range(20)}
        for i, job_id in enumerate(sorted(ids)):
            await producer.send(SendJob(id=job_id, to=f"+4520{i:06d}", text="over tls"))
        events = await wait_events(reader, "sendgate", ids)
        assert {evs[-1]["event"] for evs in events.values()} == {"delivered"}
        with pytest.raises(NoPermissionError):  # a producer reads no job records
            await producer.redis.get(f"sendgate:job:{run}")
        # what the maintenance loop does every few seconds (it would only log a refusal)
        groups = await engine.redis.xinfo_groups("sendgate:jobs")
        assert [g["name"] for g in groups] == [b"sendgate"]
        from engine.stream_trim import trim_streams

        await trim_streams(engine.redis, settings, approximate=True)
        await engine.audit.record("acl_check", actor="test")
    finally:
        await engine.close()
        await producer.aclose()
        await reader.aclose()
        await sim.close()
    refused = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or "NOPERM" in r.getMessage()]
    assert refused == []


async def test_the_archiver_over_tls_reads_through_redis_py(tls_redis: TlsRedis, tmp_path: Path) -> None:
    """The archiver's own reader (engine/history/raw_reader.py) has no TLS: over a
    ``rediss://`` URL it reads through redis-py, and archives every event."""
    from engine.history import open_store
    from engine.history.archiver import Archiver
    from tests.history.events import event_fields

    settings = _settings(tls_redis, tmp_path)
    redis = redis_from_settings(settings)  # type: ignore[arg-type]
    store = open_store(f"sqlite://{tmp_path / 'history.sqlite3'}")
    await store.migrate()
    stream = f"sendgate:tls-{uuid.uuid4().hex[:8]}:events"
    try:
        archiver = Archiver(redis, store, [stream], consumer="tls", batch_size=150, block_ms=20)
        assert archiver._raw is None
        await archiver.ensure_groups()
        pipe = redis.pipeline(transaction=False)
        for i in range(400):
            pipe.xadd(stream, event_fields(f"job-{i}", "submitted", 1_700_000_000_000 + i, first=True))  # type: ignore[arg-type]
        await pipe.execute()
        assert await archiver.drain() == 400
        assert await store.get("job-0") is not None and await store.get("job-399") is not None
    finally:
        await redis.delete(stream)
        await store.close()
        await redis.aclose()
