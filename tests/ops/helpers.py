"""Paths and loaders shared by the operations-artifact tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
DASHBOARD = CONFIG / "grafana-dashboard.json"
ALERTS = CONFIG / "alerts.yml"
PROMETHEUS = CONFIG / "prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_TOML = CONFIG / "compose.toml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ALERTS_TEST = Path(__file__).resolve().parent / "alerts_test.yml"


def load_yaml(path: Path) -> Any:
    """Parsed YAML; skips the caller (or its whole module) when PyYAML is missing."""
    yaml = pytest.importorskip("yaml", reason="PyYAML (test extra) reads the compose, Prometheus and Grafana files")
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def promtool() -> str:
    """Path of promtool (Debian: `apt-get install prometheus`), or skip the test."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path
