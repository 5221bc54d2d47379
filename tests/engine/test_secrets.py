"""Secrets from files and the environment; never shown by repr, /status or a config error."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest

from connectors.simulator import SimulatorConfig
from engine.admin import AdminServer
from engine.app import bind_config
from engine.config import ConfigError, carrier_password_env, redact_url, settings_from_mapping
from tests.engine.harness import running


def _file(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")
    return str(path)


def test_every_secret_may_come_from_a_file(tmp_path: Path) -> None:
    s = settings_from_mapping(
        {
            "redis": {"url": "redis://127.0.0.1/0", "password_file": _file(tmp_path, "r", "redis-pw")},
            "privacy": {"hash_secret_file": _file(tmp_path, "h", "hash-secret")},
            "webhooks": {"secret_file": _file(tmp_path, "w", "hook-secret")},
            "carriers": [{"name": "acme", "password_file": _file(tmp_path, "c", "bindpw")}],
        },
        env={},
    )
    assert (s.redis.password, s.privacy.hash_secret, s.webhooks.secret) == ("redis-pw", "hash-secret", "hook-secret")
    assert s.carriers[0].password == "bindpw" and bind_config(s.carriers[0]).password == "bindpw"


def test_the_environment_wins_over_a_file(tmp_path: Path) -> None:
    assert carrier_password_env("acme-eu.2") == "SENDGATE_CARRIER_ACME_EU_2_PASSWORD"
    s = settings_from_mapping(
        {
            "privacy": {"hash_secret_file": _file(tmp_path, "h", "from-file")},
            "carriers": [{"name": "acme-eu.2", "password_file": "/nonexistent"}],
        },
        env={"SENDGATE_CARRIER_ACME_EU_2_PASSWORD": "envpw", "SENDGATE_HASH_SECRET": "from-env",
             "SENDGATE_REDIS_PASSWORD": "redis-env"},
    )
    assert (s.carriers[0].password, s.privacy.hash_secret, s.redis.password) == ("envpw", "from-env", "redis-env")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"carriers": [{"name": "a", "password_file": "/nonexistent/pw"}]},
         "carriers[0].password_file: cannot read /nonexistent/pw: No such file or directory"),
        ({"carriers": [{"name": "a", "password": "pw", "password_file": "FILE"}]},
         "carriers[0].password_file: carriers[0].password is set too; keep one of them"),
        ({"privacy": {"hash_secret_file": "EMPTY"}}, "privacy.hash_secret_file: EMPTY is empty"),
        ({"webhooks": {"secret_file": "/nonexistent/w"}}, "webhooks.secret_file: cannot read /nonexistent/w"),
        ({"carriers": [{"name": "a", "password_file": "LONG"}]}, "carriers[0].password: at most 8 characters"),
    ],
)
def test_secret_file_errors_name_the_key_and_never_the_secret(
    tmp_path: Path, data: dict[str, object], message: str
) -> None:
    paths = {"FILE": _file(tmp_path, "f", "pw"), "EMPTY": _file(tmp_path, "e", ""),
             "LONG": _file(tmp_path, "l", "a-much-too-long-secret")}
    text = orjson.dumps(data).decode()
    for placeholder, path in paths.items():
        text = text.replace(f'"{placeholder}"', orjson.dumps(path).decode())
        message = message.replace(placeholder, path)
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(orjson.loads(text), env={})
    assert str(info.value).startswith(message)
    assert "a-much-too-long-secret" not in str(info.value)


def test_repr_and_str_show_no_secret(tmp_path: Path) -> None:
    s = settings_from_mapping(
        {
            "redis": {"url": "rediss://engine:url-pw@redis.example:6380/0", "password": "redis-pw"},
            "privacy": {"hash_secret": "hash-secret"},
            "webhooks": {"secret": "hook-secret"},
            "history": {"url": "postgresql://sendgate:pg-pw@db/sendgate"},
            "carriers": [{"name": "acme", "password": "bindpw"}],
        },
        env={},
    )
    for text in (repr(s), str(s), repr(s.carriers[0]), f"{s.redis}", repr(bind_config(s.carriers[0]))):
        for secret in ("url-pw", "redis-pw", "hash-secret", "hook-secret", "pg-pw", "bindpw"):
            assert secret not in text
    assert "rediss://engine:***@redis.example:6380/0" in repr(s)
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_the_admin_server_listens_on_loopback_by_default() -> None:
    assert settings_from_mapping({}, env={}).admin.listen == "127.0.0.1:9108"


async def test_status_and_readyz_hold_no_secret_and_no_number(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    password = "pw" + uuid.uuid4().hex[:6]
    carrier = {"password_file": _file(tmp_path, "pw", password), "password": ""}
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=True, password=password), carrier=carrier) as (
        engine, sim, _p, _redis,
    ):
        await sim.wait_for(lambda: sim.stats.binds >= 2)  # the password from the file was accepted
        admin = AdminServer("127.0.0.1:0", engine.metrics.registry, engine._ready, engine.status)
        await admin.start()
        try:
            port = admin.port
            async with aiohttp.ClientSession() as http:
                bodies = []
                for path in ("/status", "/readyz"):
                    async with http.get(f"http://127.0.0.1:{port}{path}") as resp:
                        bodies.append(await resp.text())
        finally:
            await admin.close()
    for body in bodies:
        assert password not in body and "hash_secret" not in body and "change-me" not in body
        assert "+45" not in body
    assert orjson.loads(bodies[0])["carriers"]["sim"]["binds_up"] == 2
    await asyncio.sleep(0)
