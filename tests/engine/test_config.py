from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError, load_settings, settings_from_mapping

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "sendgate.example.toml"


def test_example_config_loads_with_every_documented_key() -> None:
    s = load_settings(EXAMPLE, env={})
    assert s.redis.prefix == "sendgate"
    assert s.engine.batch_size == 500
    assert s.engine.gather_ms == 10
    c = s.carrier("acme")
    assert c.bind == "transceiver" and c.binds == 2 and c.window == 10
    assert c.routes == ("45", "46")
    assert c.encoding.concat == "udh8" and c.encoding.max_parts == 10
    assert s.privacy.retention_days.message == 120
    assert s.history.enabled and s.history.url == "" and s.history.group == "archiver"
    assert (s.history.archiver, s.history.settle_ms, s.history.nice, s.history.hold_s) == ("auto", 1000, 10, 10.0)


def test_example_config_lists_every_key_with_its_default() -> None:
    """README and docs/contract.md say the example lists every key: each field of each
    section is in it, as a key (the optional sections' as a commented ``# key =`` line),
    with the default the code has (a key added to the code and not to the example, or a
    default changed in one place only, fails here)."""
    import re
    import tomllib
    import typing

    import msgspec

    from engine.config import Settings

    text = EXAMPLE.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    commented = set(re.findall(r"^#\s*([a-z_]+)\s*=", text, flags=re.M))
    missing: list[str] = []
    wrong: list[str] = []

    def check(path: str, struct: type, given: dict[str, object]) -> None:
        for f in msgspec.structs.fields(struct):
            t = f.type
            if typing.get_origin(t) is tuple and hasattr(typing.get_args(t)[0], "__struct_fields__"):
                items = given.get(f.encode_name) or []
                check(f"{path}{f.encode_name}[]", typing.get_args(t)[0], items[0] if items else {})  # type: ignore[index]
                continue
            if hasattr(t, "__struct_fields__"):
                check(f"{path}{f.encode_name}.", t, given.get(f.encode_name, {}))  # type: ignore[arg-type]
                continue
            if f.encode_name in given:
                continue
            if f.encode_name not in commented:
                missing.append(path + f.encode_name)

    check("", Settings, data)
    assert not missing, f"keys missing from config/sendgate.example.toml: {missing}"
    # The values given are the defaults (the carrier's and [redis] url are examples).
    s, d = load_settings(EXAMPLE, env={}), settings_from_mapping({})
    for section in ("engine", "admin", "logging", "webhooks", "history", "inbound"):
        for f in msgspec.structs.fields(getattr(d, section)):
            if getattr(getattr(s, section), f.name) != getattr(getattr(d, section), f.name):
                wrong.append(f"{section}.{f.encode_name}")
    assert not wrong, f"example values that are not the defaults: {wrong}"


def test_defaults_without_file() -> None:
    s = load_settings(None, env={})
    assert s.redis.url == ""  # embedded Redis
    assert s.carriers == ()


def test_env_overrides() -> None:
    s = load_settings(EXAMPLE, env={"REDIS_URL": "redis://example:1/2", "SENDGATE_PREFIX": "x", "SENDGATE_LOG_LEVEL": "DEBUG"})
    assert s.redis.url == "redis://example:1/2"
    assert s.redis.prefix == "x"
    assert s.logging.level == "debug"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"carriers": [{"name": "a", "port": "x"}]}, "carriers[0].port"),
        ({"history": {"url": "mysql://h/db"}}, "history.url"),
        ({"history": {"keep_text": True}}, "history.text_key_file"),  # keep_text needs a key
        ({"history": {"keep_text": True, "text_key": "c2hvcnQ="}}, "history.text_key_file"),  # 5 bytes
        ({"history": {"batch_size": 0}}, "history.batch_size"),
        ({"history": {"group": ""}}, "history.group"),
        ({"history": {"settle_ms": -1}}, "history.settle_ms"),
        ({"history": {"hold_s": -1}}, "history.hold_s"),
        ({"history": {"hold_s": 301}}, "history.hold_s"),
        ({"history": {"nice": 20}}, "history.nice"),
        ({"history": {"archiver": "thread"}}, "history.archiver"),
        ({"carriers": [{"name": "a", "port": 0}]}, "carriers[0].port"),
        ({"carriers": [{"name": "a", "bind": "sideways"}]}, "carriers[0].bind"),
        ({"carriers": [{"name": "a", "password": "toolongpassword"}]}, "carriers[0].password"),
        ({"carriers": [{"name": "a", "fallback": "b"}]}, "carriers[0].fallback"),
        ({"carriers": [{"name": "a"}, {"name": "a"}]}, "carriers[1].name"),
        ({"carriers": [{"name": "a", "routes": ["4x"]}]}, "carriers[0].routes[0]"),
        ({"carriers": [{"name": "a", "encoding": {"concat": "zip"}}]}, "carriers[0].encoding.concat"),
        ({"engine": {"batch_size": 0}}, "engine.batch_size"),
        ({"engine": {"streams_maxlen": 0}}, "engine.streams_maxlen"),
        ({"engine": {"gather_ms": -1}}, "engine.gather_ms"),
        ({"engine": {"gather_ms": 201}}, "engine.gather_ms"),
        ({"engine": {"batchsize": 10}}, "engine"),
        ({"admin": {"listen": "nowhere"}}, "admin.listen"),
    ],
)
def test_errors_name_the_key_path(data: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(data, env={})
    assert str(info.value).startswith(path), str(info.value)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[redis\nurl=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, env={})


def test_lane_and_client_settings_are_checked_naming_the_key() -> None:
    import pytest

    from engine.config import ConfigError, settings_from_mapping

    ok = settings_from_mapping(
        {"engine": {"lane_weights": {"normal": 9, "bulk": 2}, "lookahead_s": 0.5, "lane_high_water": 1000},
         "carriers": [{"name": "a", "outage_fail_after_s": 30}], "clients": [{"id": "shop", "weight": 3}]},
        env={},
    )
    assert ok.engine.lane_weights == {"normal": 9, "bulk": 2} and ok.clients[0].weight == 3
    assert settings_from_mapping({}, env={}).engine.lane_weights == {"normal": 4, "bulk": 1}
    bad = {
        "engine.lane_weights.high": {"engine": {"lane_weights": {"high": 2}}},
        "engine.lane_weights.bulk": {"engine": {"lane_weights": {"bulk": 0}}},
        "engine.lookahead_s": {"engine": {"lookahead_s": 0}},
        "engine.lane_high_water": {"engine": {"lane_high_water": -1}},
        "carriers[0].outage_fail_after_s": {"carriers": [{"name": "a", "outage_fail_after_s": -1}]},
        "clients[0].weight": {"clients": [{"id": "shop", "weight": 0}]},
        "clients[0].id": {"clients": [{"id": "other"}]},
    }
    for path, data in bad.items():
        with pytest.raises(ConfigError, match=path.replace("[", r"\[").replace("]", r"\]")):
            settings_from_mapping(data, env={})
