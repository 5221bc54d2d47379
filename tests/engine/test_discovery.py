"""engine/discovery.py: which Redis a command uses, in the documented order."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import pytest

from engine.discovery import NoRedis, announce_run, local_runs, mask_url, resolve, withdraw_run


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Announcements of this test only (not of engines running elsewhere on the machine)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _config(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def test_mask_url_hides_the_password_only() -> None:
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert mask_url("redis://app:hunter2@redis.internal:6380/3") == "redis://app:***@redis.internal:6380/3"
    assert mask_url("rediss://:hunter2@h:6379/0") == "rediss://***@h:6379/0"
    assert "hunter2" not in mask_url("redis://default:hunter2@h")


def test_order_config_then_env_config_then_redis_url_then_local_run(tmp_path: Path, redis_url: str) -> None:
    cfg = _config(tmp_path, "a.toml", '[redis]\nurl = "redis://127.0.0.1:1/0"\nprefix = "a"\n')
    env_cfg = _config(tmp_path, "b.toml", '[redis]\nurl = "redis://127.0.0.1:2/0"\nprefix = "b"\n')
    run_cfg = _config(tmp_path, "run.toml", '[redis]\nprefix = "fromrun"\n')
    ann = announce_run(str(run_cfg), redis_url, "fromrun")
    try:
        env = {"SENDGATE_CONFIG": str(env_cfg), "REDIS_URL": "redis://127.0.0.1:3/0"}
        r = resolve(str(cfg), env={k: v for k, v in env.items() if k != "REDIS_URL"})
        assert (r.url, r.settings.redis.prefix, r.source) == ("redis://127.0.0.1:1/0", "a", f"[redis] url of -c {cfg}")
        r = resolve(None, env={"SENDGATE_CONFIG": str(env_cfg)})
        assert (r.url, r.settings.redis.prefix) == ("redis://127.0.0.1:2/0", "b")
        assert r.source == f"[redis] url of SENDGATE_CONFIG={env_cfg}"
        # REDIS_URL overrides a config's url (as for `sendgate run`), and says so.
        r = resolve(str(cfg), env={"REDIS_URL": "redis://127.0.0.1:3/0"})
        assert (r.url, r.source) == ("redis://127.0.0.1:3/0", "REDIS_URL")
        # No config given: REDIS_URL, an explicit choice, before any local run ...
        r = resolve(None, env={"REDIS_URL": "redis://127.0.0.1:3/0"})
        assert (r.url, r.source) == ("redis://127.0.0.1:3/0", "REDIS_URL")
        # ... and without it the local run, with its config's prefix.
        r = resolve(None, env={})
        assert (r.url, r.settings.redis.prefix) == (redis_url, "fromrun")
        assert r.source == f"the local `sendgate run` pid {os.getpid()}, config {run_cfg}"
        assert r.settings.redis.url == redis_url
        # A config naming no Redis takes the Redis of the run that read it.
        r = resolve(str(run_cfg), env={})
        assert r.url == redis_url and r.source == f"the `sendgate run` pid {os.getpid()} of -c {run_cfg}"
    finally:
        withdraw_run(ann)
    r = resolve(None, env={"REDIS_URL": "redis://127.0.0.1:3/0"})
    assert (r.url, r.source) == ("redis://127.0.0.1:3/0", "REDIS_URL")
    assert r.describe() == "using Redis at redis://127.0.0.1:3/0 (from REDIS_URL)"
    with pytest.raises(NoRedis, match="no Redis configured"):
        resolve(None, env={})


def test_announcement_of_a_process_that_is_gone_is_ignored_and_removed(private_tmp: Path, redis_url: str) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    pid = int(dead.stdout)
    directory = private_tmp / f"sendgate-{os.getuid()}"
    directory.mkdir(mode=0o700)
    stale = directory / f"run-{pid}.json"
    stale.write_bytes(orjson.dumps({"pid": pid, "config": "", "redis_url": redis_url, "prefix": "x", "started_at": 1}))
    assert local_runs() == []
    assert not stale.exists()
    with pytest.raises(NoRedis):
        resolve(None, env={})


def test_announcement_whose_redis_does_not_answer_is_skipped(private_tmp: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    ann = announce_run(None, f"redis://127.0.0.1:{port}/0", "x")
    try:
        assert local_runs() == []
        assert ann.exists()  # the process (this one) is alive: its file stays
    finally:
        withdraw_run(ann)
