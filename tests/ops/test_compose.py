"""docker-compose.yml, config/compose.toml and config/prometheus.yml fit together.

Docker does not run on the test machine, so these tests check what compose
would be given: services and their wiring, the simulator's flags (parsed by
the simulator's own argument parser), the engine config (loaded by
`engine.config.load_settings`), mounts that exist, and host ports bound to
127.0.0.1 only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from connectors.simulator import build_parser as simulator_parser
from engine.config import AdminSettings, Settings, load_settings
from tests.ops.helpers import COMPOSE, COMPOSE_TOML, CONFIG, PROMETHEUS, ROOT, load_yaml

DOC: dict[str, Any] = load_yaml(COMPOSE)
SERVICES: dict[str, dict[str, Any]] = DOC["services"]


def _settings() -> Settings:
    return load_settings(COMPOSE_TOML, env={})  # no environment overrides


def _mounts(service: str) -> dict[str, str]:
    """Host path -> container path of a service's bind mounts."""
    out: dict[str, str] = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            out[source] = target
    return out


def test_the_stack_has_its_services() -> None:
    assert set(SERVICES) == {"redis", "simulator", "engine", "prometheus", "grafana"}
    assert SERVICES["redis"]["image"] == "redis:7-alpine"
    for name in ("engine", "simulator"):
        assert SERVICES[name]["build"]["dockerfile"] == "Dockerfile"
    assert set(SERVICES["engine"]["depends_on"]) == {"redis", "simulator"}
    for name in ("prometheus", "grafana"):
        assert ":" in SERVICES[name]["image"] and not SERVICES[name]["image"].endswith(":latest")


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_published_ports_are_bound_to_loopback(service: str) -> None:
    for port in SERVICES[service].get("ports", []):
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), (service, port)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_bind_mounts_exist_and_are_read_only(service: str) -> None:
    for volume in SERVICES[service].get("volumes", []):
        if volume.startswith("./"):
            assert (ROOT / volume.split(":")[0]).exists(), volume
            assert volume.endswith(":ro"), volume


def test_compose_config_loads_and_listens_inside_the_container_network() -> None:
    settings = _settings()
    assert settings.admin.listen == "0.0.0.0:9108"
    assert urlsplit(settings.redis.url).hostname == "redis"
    assert urlsplit(settings.redis.url).port == 6379
    assert [c.host for c in settings.carriers] == ["simulator"]
    assert settings.carriers[0].routes == ("",)  # default route: every job has a carrier


def test_the_default_admin_listen_stays_on_loopback() -> None:
    assert AdminSettings().listen.startswith("127.0.0.1:")
    example = load_settings(CONFIG / "sendgate.example.toml", env={})
    assert example.admin.listen.startswith("127.0.0.1:")


def test_engine_runs_the_mounted_compose_config() -> None:
    engine = SERVICES["engine"]
    command = engine["command"]
    assert command[:2] == ["run", "-c"]
    assert _mounts("engine")["./config/compose.toml"] == command[2]
    assert engine["environment"]["SENDGATE_CONFIG"] == command[2]
    assert "SENDGATE_HASH_SECRET" in engine["environment"]
    admin_port = _settings().admin.listen.rpartition(":")[2]
    assert f"127.0.0.1:{admin_port}:{admin_port}" in engine["ports"]
    assert int(engine["stop_grace_period"].rstrip("s")) > _settings().engine.drain_timeout_s


def test_simulator_flags_match_the_carrier_config() -> None:
    command = SERVICES["simulator"]["command"]
    assert command[0] == "simulate"
    args = simulator_parser().parse_args(command[1:])  # exits on an unknown flag
    carrier = _settings().carriers[0]
    assert args.host == "0.0.0.0"
    assert (args.port, args.system_id, args.password) == (carrier.port, carrier.system_id, carrier.password)
    assert f"127.0.0.1:{args.port}:{args.port}" in SERVICES["simulator"]["ports"]
    assert "simulator" in SERVICES  # the carrier host is this service's name


def test_redis_url_names_the_redis_service() -> None:
    assert urlsplit(_settings().redis.url).hostname in SERVICES


def test_prometheus_scrapes_the_engine_admin_port() -> None:
    prom = load_yaml(PROMETHEUS)
    job = next(c for c in prom["scrape_configs"] if c["job_name"] == "sendgate")
    port = _settings().admin.listen.rpartition(":")[2]
    assert job["static_configs"][0]["targets"] == [f"engine:{port}"]
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_prometheus_finds_its_rule_files_where_compose_mounts_them() -> None:
    prom = load_yaml(PROMETHEUS)
    mounts = _mounts("prometheus")
    config_target = mounts["./config/prometheus.yml"]
    assert f"--config.file={config_target}" in SERVICES["prometheus"]["command"]
    config_dir = Path(config_target).parent
    mounted = {Path(target): source for source, target in mounts.items()}
    for rule_file in prom["rule_files"]:
        assert (PROMETHEUS.parent / rule_file).exists()  # in the repository
        source = mounted[config_dir / rule_file]  # and in the container
        assert (ROOT / source).resolve() == (PROMETHEUS.parent / rule_file).resolve()


def test_grafana_datasource_points_at_the_prometheus_service() -> None:
    ds = load_yaml(CONFIG / "grafana" / "datasources" / "prometheus.yml")["datasources"][0]
    url = urlsplit(ds["url"])
    assert url.hostname in SERVICES and url.hostname == "prometheus"
    assert f"--web.listen-address=0.0.0.0:{url.port}" in SERVICES["prometheus"]["command"]
