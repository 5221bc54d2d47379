"""config/grafana-dashboard.json: valid for Grafana, and every query asks for
metrics and labels the engine really exports."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ops.helpers import COMPOSE, CONFIG, DASHBOARD, PROMETHEUS, load_json, load_yaml, promtool
from tests.ops.promql import exported, scan

EXPORTED = exported()
DASH: dict[str, Any] = load_json(DASHBOARD)
# Variables Grafana defines itself.
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms"}
DS_REF = {"type": "prometheus", "uid": "${datasource}"}


def _panels() -> Iterator[dict[str, Any]]:
    for panel in DASH["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def _targets() -> list[tuple[str, str]]:
    return [
        (f"{panel['title']} / {target['refId']}", target["expr"])
        for panel in _panels()
        for target in panel.get("targets", [])
    ]


def _variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in DASH["templating"]["list"]}


def _label_values(query: str) -> tuple[str, str]:
    m = re.fullmatch(r"label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)", query.strip())
    assert m, f"variable query {query!r} is not label_values(selector, label)"
    return m.group(1), m.group(2)


def test_dashboard_metadata() -> None:
    assert DASH["schemaVersion"] >= 36
    assert DASH["uid"] == "sendgate"
    assert DASH["title"]
    assert DASH["id"] is None  # provisioned dashboards must not carry a database id
    assert "sendgate" in DASH["tags"]


def test_datasource_is_a_prometheus_variable() -> None:
    ds = _variables()["datasource"]
    assert ds["type"] == "datasource"
    assert ds["query"] == "prometheus"
    for panel in _panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DS_REF, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DS_REF, panel["title"]
    for var in _variables().values():
        if var["type"] == "query":
            assert var["datasource"] == DS_REF, var["name"]


@pytest.mark.parametrize(("where", "expr"), _targets())
def test_every_query_uses_exported_metrics_and_labels(where: str, expr: str) -> None:
    assert EXPORTED.problems(expr) == [], where
    defined = set(_variables()) | BUILTIN_VARIABLES
    assert scan(expr).variables <= defined, where


def test_up_queries_select_the_scrape_job_of_prometheus_yml() -> None:
    jobs = {c["job_name"] for c in load_yaml(PROMETHEUS)["scrape_configs"]}
    exprs = [e for _, e in _targets()] + [
        v["definition"] for v in _variables().values() if v["type"] == "query"
    ]
    up_jobs = {m for e in exprs for m in re.findall(r'\bup\{job="([^"]+)"', e)}
    assert up_jobs == {"sendgate"}
    assert up_jobs <= jobs


@pytest.mark.parametrize("name", ["instance", "carrier"])
def test_query_variables_read_exported_labels(name: str) -> None:
    var = _variables()[name]
    assert var["definition"] == var["query"]["query"]
    selector, label = _label_values(var["definition"])
    assert EXPORTED.problems(selector) == []
    metric = scan(selector).selectors[0].metric
    known = {"job", "instance"} | (EXPORTED.labels.get(metric, frozenset()))
    assert label in known
    assert var["multi"] and var["includeAll"] and var["allValue"] == ".*"


def test_panels_cover_the_observability_contract() -> None:
    """The brief: throughput, latency, receipts, failures, binds, flow, Redis, recovery."""
    queried = {m for _, e in _targets() for m in scan(e).metrics}
    required = {
        "sendgate_submits_total",
        "sendgate_events_total",
        "sendgate_jobs_consumed_total",
        "sendgate_submit_latency_seconds_bucket",
        "sendgate_receipt_latency_seconds_bucket",
        "sendgate_receipts_total",
        "sendgate_dead_letters_total",
        "sendgate_throttle_replies_total",
        "sendgate_binds_up",
        "sendgate_inflight",
        "sendgate_stream_lag",
        "sendgate_stream_pending",
        "sendgate_redis_errors_total",
        "sendgate_jobs_duplicate_total",
        "sendgate_jobs_reclaimed_total",
        "sendgate_lane_lag",
        "sendgate_lane_oldest_age_seconds",
        "sendgate_event_loop_lag_seconds",
        "sendgate_redis_rtt_seconds",
        "sendgate_segments_total",
        "sendgate_callbacks_total",
        "sendgate_inbound_total",
        "up",
    }
    assert required <= queried, required - queried
    # and nothing the engine exports is left off the dashboard
    unshown = {
        n for n in EXPORTED.labels
        if not n.endswith(("_sum", "_count")) and n not in queried
    }
    assert unshown == set()


@pytest.mark.parametrize("metric", ["sendgate_submit_latency_seconds_bucket", "sendgate_receipt_latency_seconds_bucket"])
def test_latency_panels_show_p50_p95_p99(metric: str) -> None:
    quantiles: set[str] = set()
    for _, expr in _targets():
        if metric in scan(expr).metrics:
            m = re.match(r"histogram_quantile\(([0-9.]+),", expr)
            assert m, expr
            quantiles.add(m.group(1))
    assert {"0.5", "0.95", "0.99"} <= quantiles


def test_panel_layout_is_sound() -> None:
    panels = list(_panels())
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
        if p["type"] != "row":
            assert p["targets"], p["title"]
            assert p["description"], p["title"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), p["title"]


def test_grafana_provisioning_loads_this_dashboard() -> None:
    provider = load_yaml(CONFIG / "grafana" / "dashboards" / "sendgate.yml")["providers"][0]
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    target = mounts["./config/grafana-dashboard.json"]
    assert target.rsplit("/", 1)[0] == provider["options"]["path"].rstrip("/")
    assert mounts["./config/grafana"] == "/etc/grafana/provisioning"
    assert provider["type"] == "file"

    datasources = load_yaml(CONFIG / "grafana" / "datasources" / "prometheus.yml")["datasources"]
    assert [d["type"] for d in datasources] == ["prometheus"]
    assert datasources[0]["url"] == "http://prometheus:9090"
    assert datasources[0]["isDefault"] is True


# Values Grafana would put in for the variables, so Prometheus can parse the queries.
_SUBSTITUTES = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "instance": ".*", "carrier": ".*"}


def _as_prometheus_sees_it(expr: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: _SUBSTITUTES[m.group(1)], expr)


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each query (variables filled in) as a recording rule: promtool parses them all."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": _as_prometheus_sees_it(expr)}
        for i, (_, expr) in enumerate(_targets())
    ]
    rule_file = tmp_path / "dashboard_rules.json"  # JSON is YAML
    rule_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool(), "check", "rules", str(rule_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
