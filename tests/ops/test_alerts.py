"""config/alerts.yml: well-formed rules over metrics the engine exports;
promtool checks the syntax and runs the rule unit tests (tests/ops/alerts_test.yml)."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.ops.helpers import ALERTS, ALERTS_TEST, PROMETHEUS, ROOT, load_yaml, promtool
from tests.ops.promql import exported, scan

EXPORTED = exported()
GROUPS: list[dict[str, Any]] = load_yaml(ALERTS)["groups"]
RULES: list[dict[str, Any]] = [rule for group in GROUPS for rule in group["rules"]]
_DURATION = re.compile(r"^\d+[smhd]$")


def _rule_id(rule: dict[str, Any]) -> str:
    return str(rule.get("alert") or rule.get("record"))


def test_rule_names_are_unique_and_prefixed() -> None:
    names = [_rule_id(r) for r in RULES]
    assert len(names) == len(set(names))
    assert all(n.startswith("Sendgate") for n in names)
    assert len({g["name"] for g in GROUPS}) == len(GROUPS)


@pytest.mark.parametrize("rule", RULES, ids=_rule_id)
def test_rule_queries_exported_metrics(rule: dict[str, Any]) -> None:
    assert EXPORTED.problems(rule["expr"]) == []


@pytest.mark.parametrize("rule", RULES, ids=_rule_id)
def test_rule_has_severity_for_and_text(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert _DURATION.match(rule["for"])
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]


@pytest.mark.parametrize("rule", RULES, ids=_rule_id)
def test_annotations_use_labels_the_result_has(rule: dict[str, Any]) -> None:
    """`{{ $labels.x }}` must survive the aggregation: an aggregated rule keeps
    only its `by` labels; a plain selector keeps its metric's labels."""
    found = scan(rule["expr"])
    if found.grouping_labels:
        available = set(found.grouping_labels)
    else:
        available = {"job", "instance"}
        for metric in found.metrics:
            available |= EXPORTED.labels.get(metric, frozenset())
    text = " ".join(rule["annotations"].values())
    used = set(re.findall(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used <= available, used - available


def test_alerts_cover_the_operations_brief() -> None:
    queried: dict[str, set[str]] = {}
    for rule in RULES:
        for metric in scan(rule["expr"]).metrics:
            queried.setdefault(metric, set()).add(rule["alert"])
    for metric in [
        "up",
        "sendgate_binds_up",
        "sendgate_stream_lag",
        "sendgate_stream_pending",
        "sendgate_dead_letters_total",
        "sendgate_throttle_replies_total",
        "sendgate_submits_total",
        "sendgate_receipt_latency_seconds_bucket",
        "sendgate_redis_errors_total",
        # the operators' issue: engine behind, old high job, throttle storm,
        # receipt success dropping, callbacks failing
        "sendgate_lane_lag",
        "sendgate_lane_oldest_age_seconds",
        "sendgate_receipts_total",
        "sendgate_callbacks_total",
    ]:
        assert metric in queried, metric
    old_high = next(r for r in RULES if r["alert"] == "SendgateHighLaneOldJob")
    assert 'lane="high"' in old_high["expr"] and "> 30" in old_high["expr"]
    behind = next(r for r in RULES if r["alert"] == "SendgateEngineBehind")
    assert behind["for"] == "5m" and "deriv" in scan(behind["expr"]).functions
    no_binds = next(r for r in RULES if r["alert"] == "SendgateCarrierNoBindsUp")
    assert no_binds["for"] == "2m"
    assert "carrier" in scan(no_binds["expr"]).grouping_labels


def test_up_rules_select_the_scrape_job() -> None:
    jobs = {c["job_name"] for c in load_yaml(PROMETHEUS)["scrape_configs"]}
    up_jobs = {j for r in RULES for j in re.findall(r'\bup\{job="([^"]+)"', r["expr"])}
    assert up_jobs == {"sendgate"} and up_jobs <= jobs


def test_rule_unit_tests_use_exported_series() -> None:
    """The promtool unit tests must feed the names the engine exports, or they prove nothing."""
    tests = load_yaml(ALERTS_TEST)
    assert (ALERTS_TEST.parent / tests["rule_files"][0]).resolve() == ALERTS
    tested: set[str] = set()
    for case in tests["tests"]:
        for series in case["input_series"]:
            assert EXPORTED.problems(series["series"]) == [], series["series"]
        tested |= {t["alertname"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert tested == {r["alert"] for r in RULES}, "every alert has a case where it fires"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_check_rules() -> None:
    result = _run(promtool(), "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in result.stdout


def test_promtool_rule_unit_tests() -> None:
    result = _run(promtool(), "test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config() -> None:
    result = _run(promtool(), "check", "config", str(PROMETHEUS))
    assert result.returncode == 0, result.stdout + result.stderr
