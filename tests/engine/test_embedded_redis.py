"""The embedded Redis runs with its own settings (engine.embedded_redis.SERVER_SETTINGS)."""

from __future__ import annotations

import redis

from engine.embedded_redis import (
    SERVER_SETTINGS,
    EmbeddedRedis,
    server_settings_args,
)


def test_the_embedded_server_runs_with_its_settings() -> None:
    assert SERVER_SETTINGS  # what the rest of this test checks
    server = EmbeddedRedis().start()
    try:
        client = redis.Redis.from_url(server.url)
        try:
            for name, value in SERVER_SETTINGS:
                got = client.config_get(name)
                assert got, name
                assert str(next(iter(got.values()))) == value, (name, got)
            # and it still keeps nothing
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("appendonly") == {"appendonly": "no"}
        finally:
            client.close()
    finally:
        server.stop()


def test_settings_become_command_line_arguments() -> None:
    assert server_settings_args((("hz", "10"), ("lua-time-limit", "0"))) == ["--hz", "10", "--lua-time-limit", "0"]
    assert len(server_settings_args()) == 2 * len(SERVER_SETTINGS)
