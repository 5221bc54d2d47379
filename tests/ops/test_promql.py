"""The PromQL checker used on the dashboard and the alerts finds real mistakes."""

from __future__ import annotations

import pytest

from tests.ops.promql import PromQLError, exported, scan

EXPORTED = exported()


def test_exported_names_come_from_the_engine_registry() -> None:
    names = set(EXPORTED.labels)
    assert "sendgate_submits_total" in names  # Counter "sendgate_submits" -> *_total
    assert "sendgate_submit_latency_seconds_bucket" in names
    assert {"sendgate_binds_up", "sendgate_inflight"} <= EXPORTED.gauges  # engine/app.py gauges
    assert EXPORTED.labels["sendgate_submits_total"] == {"carrier", "result"}
    assert "le" in EXPORTED.labels["sendgate_receipt_latency_seconds_bucket"]
    assert not any(n.endswith("_created") for n in names)
    assert "sendgate_submits" not in names


def test_a_correct_expression_has_no_problems() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (carrier, le) '
        '(rate(sendgate_submit_latency_seconds_bucket{carrier=~"$carrier"}[$__rate_interval])))'
    )
    assert EXPORTED.problems(expr) == []
    found = scan(expr)
    assert found.metrics == {"sendgate_submit_latency_seconds_bucket"}
    assert found.variables == {"carrier", "__rate_interval"}
    assert found.quantile_groupings == [{"carrier", "le"}]


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(sendgate_submits[5m])", "sendgate_submits: not exported"),
        ('sendgate_binds_up{state="x"}', "has no label 'state'"),
        ("sum by (code) (sendgate_binds_up)", "groups by 'code'"),
        ("rate(sendgate_stream_lag[5m])", "not a counter"),
        ("deriv(sendgate_redis_errors_total[5m])", "not a gauge"),
        (
            "histogram_quantile(0.9, sum by (carrier) (rate(sendgate_submit_latency_seconds_bucket[5m])))",
            "drops 'le'",
        ),
        ("histogram_quantile(0.9, sendgate_submit_latency_seconds_sum)", "without a _bucket"),
        ("vector(1)", "queries no metric"),
        ("sendgate_jobs_duplicate_created", "not exported"),
    ],
)
def test_mistakes_are_reported(expr: str, problem: str) -> None:
    assert any(problem in p for p in EXPORTED.problems(expr)), EXPORTED.problems(expr)


@pytest.mark.parametrize("expr", ["ratee(sendgate_batches_total[5m])", "sum(sendgate_batches_total", "{job=\"x\"}"])
def test_unreadable_expressions_raise(expr: str) -> None:
    with pytest.raises(PromQLError):
        scan(expr)
