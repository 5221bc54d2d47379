"""What the engine exports, and what a PromQL expression asks for.

The dashboard and the alert rules are only as good as the names they query:
a renamed metric or a typo gives an empty panel or an alert that can never
fire, and nothing complains. These helpers let the tests compare both sides:

- `exported()` builds the engine's real registry (`engine.metrics.Metrics`
  plus the two callback gauges `engine/app.py` registers) and reads back the
  sample names and label names of `generate_latest` output.
- `scan()` is a small PromQL lexer (not a full parser) that finds every
  metric selector, its matcher labels, the grouping labels (``by``, ``on``…),
  the functions called and which function each selector sits in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from connectors.pool import PoolStats
from engine.metrics import Metrics

# Labels Prometheus adds at scrape time (and `le` of histogram buckets is ours).
TARGET_LABELS = frozenset({"job", "instance"})

AGGREGATIONS = frozenset(
    {
        "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
        "quantile", "count_values", "group",
    }
)
FUNCTIONS = AGGREGATIONS | frozenset(
    {
        "rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear",
        "histogram_quantile", "absent", "absent_over_time", "clamp", "clamp_min",
        "clamp_max", "vector", "scalar", "time", "abs", "ceil", "floor", "round", "sort",
        "sort_desc", "label_replace", "label_join", "avg_over_time", "max_over_time",
        "min_over_time", "sum_over_time", "count_over_time", "quantile_over_time",
        "last_over_time", "changes", "resets", "timestamp", "sgn", "exp", "ln", "log2",
        "log10", "sqrt",
    }
)
COUNTER_FUNCTIONS = frozenset({"rate", "irate", "increase", "resets"})
GAUGE_FUNCTIONS = frozenset({"deriv", "delta", "idelta", "predict_linear"})
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})
# Samples that only go up (what rate() and increase() are for), per family type.
_COUNTER_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
}

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<var>\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[smhdwy]?)
    |(?P<punct>[(){}\[\],])
    |(?P<op>==|!=|=~|!~|>=|<=|[-+*/%^<>=])
    |(?P<space>\s+)
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    """An expression this lexer cannot make sense of."""


@dataclass
class Selector:
    """One metric selector, e.g. ``rate(sendgate_submits_total{result="ok"}[5m])``."""

    metric: str
    labels: set[str] = field(default_factory=set)
    inside: str = ""  # innermost function around it ("" at top level)


@dataclass
class Scan:
    """Everything `scan` found in one expression."""

    selectors: list[Selector] = field(default_factory=list)
    grouping_labels: set[str] = field(default_factory=set)
    functions: list[str] = field(default_factory=list)
    variables: set[str] = field(default_factory=set)
    quantile_groupings: list[set[str]] = field(default_factory=list)

    @property
    def metrics(self) -> set[str]:
        return {s.metric for s in self.selectors}


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise PromQLError(f"cannot read {expr[pos:pos + 20]!r} in {expr!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "space":
            out.append((kind, m.group()))
    return out


def _label_list(toks: list[tuple[str, str]], i: int) -> tuple[list[str], int]:
    """Labels of ``(a, b)`` starting at toks[i] == "("; returns them and the index after ")"."""
    if i >= len(toks) or toks[i][1] != "(":
        raise PromQLError("expected a label list")
    labels: list[str] = []
    i += 1
    while toks[i][1] != ")":
        kind, text = toks[i]
        if kind == "ident":
            labels.append(text)
        elif text != ",":
            raise PromQLError(f"unexpected {text!r} in a label list")
        i += 1
    return labels, i + 1


def _matchers(toks: list[tuple[str, str]], i: int, sel: Selector, found: Scan) -> int:
    """Matchers of ``{a="x", b=~"$var"}`` starting after "{"; returns the index after "}"."""
    while toks[i][1] != "}":
        kind, text = toks[i]
        if kind == "ident":
            sel.labels.add(text)
            op, value = toks[i + 1], toks[i + 2]
            if op[1] not in {"=", "!=", "=~", "!~"} or value[0] != "string":
                raise PromQLError(f"bad matcher after {text!r}")
            found.variables.update(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", value[1]))
            i += 3
        elif text == ",":
            i += 1
        else:
            raise PromQLError(f"unexpected {text!r} in a selector")
    return i + 1


def scan(expr: str) -> Scan:
    """Find the selectors, labels, functions and variables of a PromQL expression."""
    toks = _tokens(expr)
    found = Scan()
    # A stack of what each open "(" belongs to: a function name, or "" for plain
    # parentheses; used to tell which function a selector sits in.
    stack: list[str] = []
    # histogram_quantile calls whose grouping is still being collected: their stack depth.
    quantile_depths: list[tuple[int, set[str]]] = []
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "var":
            found.variables.add(text.strip("${}"))
            i += 1
        elif kind == "ident" and text in GROUPING:
            if nxt == "(":
                labels, i = _label_list(toks, i + 1)
                found.grouping_labels.update(labels)
                for _depth, grouping in quantile_depths:
                    grouping.update(labels)
            else:  # group_left without labels
                i += 1
        elif kind == "ident" and text in AGGREGATIONS and nxt in {"by", "without"}:
            # `sum by (a, b) (expr)`: the grouping comes before the parenthesis
            labels, j = _label_list(toks, i + 2)
            found.grouping_labels.update(labels)
            for _depth, grouping in quantile_depths:
                grouping.update(labels)
            if j >= len(toks) or toks[j][1] != "(":
                raise PromQLError(f"expected '(' after {text} {nxt} (...) in {expr!r}")
            found.functions.append(text)
            stack.append(text)
            i = j + 1
        elif kind == "ident" and text in KEYWORDS:
            i += 1
        elif kind == "ident" and nxt == "(":
            if text not in FUNCTIONS:
                raise PromQLError(f"unknown function {text!r} in {expr!r}")
            found.functions.append(text)
            stack.append(text)
            if text == "histogram_quantile":
                quantile_depths.append((len(stack), set()))
            i += 2
        elif kind == "ident":
            inside = next((f for f in reversed(stack) if f), "")
            sel = Selector(text, inside=inside)
            found.selectors.append(sel)
            i += 1
            if i < len(toks) and toks[i][1] == "{":
                i = _matchers(toks, i + 1, sel, found)
        elif text == "{":
            raise PromQLError(f"selector without a metric name in {expr!r}")
        elif text == "[":
            while toks[i][1] != "]":  # range or subquery: durations and $__rate_interval
                if toks[i][0] == "var":
                    found.variables.add(toks[i][1].strip("${}"))
                i += 1
            i += 1
        elif text == "(":
            stack.append("")
            i += 1
        elif text == ")":
            if not stack:
                raise PromQLError(f"unbalanced ')' in {expr!r}")
            if quantile_depths and quantile_depths[-1][0] == len(stack):
                found.quantile_groupings.append(quantile_depths.pop()[1])
            stack.pop()
            i += 1
        else:  # numbers, operators, commas, strings (e.g. label_replace arguments)
            i += 1
    if stack:
        raise PromQLError(f"unbalanced '(' in {expr!r}")
    return found


@dataclass(frozen=True)
class Exported:
    """The engine's metrics: sample name -> label names, and the counter/gauge kinds."""

    labels: dict[str, frozenset[str]]
    counters: frozenset[str]  # sample names a rate() applies to (*_total, *_bucket)
    gauges: frozenset[str]

    def problems(self, expr: str) -> list[str]:
        """Everything in `expr` that does not match what the engine exports."""
        found = scan(expr)
        out: list[str] = []
        known_labels: set[str] = set(TARGET_LABELS)
        for sel in found.selectors:
            if sel.metric == "up":
                known = frozenset(TARGET_LABELS)
            elif sel.metric in self.labels:
                known = self.labels[sel.metric] | TARGET_LABELS
            else:
                out.append(f"{sel.metric}: not exported by the engine")
                continue
            known_labels |= known
            for label in sorted(sel.labels - known):
                out.append(f"{sel.metric}: has no label {label!r}")
            if sel.inside in COUNTER_FUNCTIONS and sel.metric not in self.counters:
                out.append(f"{sel.inside}() of {sel.metric}, which is not a counter")
            if sel.inside in GAUGE_FUNCTIONS and sel.metric not in self.gauges:
                out.append(f"{sel.inside}() of {sel.metric}, which is not a gauge")
        for label in sorted(found.grouping_labels - known_labels):
            out.append(f"groups by {label!r}, a label of none of its metrics")
        for grouping in found.quantile_groupings:
            if "le" not in grouping:
                out.append("histogram_quantile over an aggregation that drops 'le'")
        if "histogram_quantile" in found.functions and not any(
            m.endswith("_bucket") for m in found.metrics
        ):
            out.append("histogram_quantile without a _bucket series")
        if not found.selectors:
            out.append("queries no metric")
        return out


def exported() -> Exported:
    """Build the engine's registry as `engine.app.Engine` does and read it back."""
    metrics = Metrics()
    metrics.add_carrier("acme")

    def one_carrier() -> list[tuple[list[str], float]]:
        return [(["acme"], 1.0)]

    # The two callback gauges engine/app.py (`Engine._register_gauges`) adds.
    metrics.register_gauge("sendgate_binds_up", "Binds currently bound, per carrier", ["carrier"], one_carrier)
    metrics.register_gauge("sendgate_inflight", "Parts queued or in flight, per carrier", ["carrier"], one_carrier)
    metrics.register_gauge(
        "sendgate_bind_inflight", "submit_sm awaiting their resp, per bind", ["carrier", "bind"],
        lambda: [(["acme", "acme-trx1"], 1.0)],
    )
    # The pools' counters (throttle replies), as `Engine.start` wires them.
    metrics.pool_stats["acme"] = PoolStats()

    class _Pool:  # the pool's flow-control state, read at scrape time (rate, window, reconnects)
        window = 32

        def rate_per_s(self) -> float:
            return 100.0

        def reconnects(self) -> dict[str, int]:
            return {"refused": 1}

    metrics.pools["acme"] = _Pool()
    # A labelled metric shows no sample (so no label names) until a child exists.
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase) and value._labelnames:
            value.labels(*("x" for _ in value._labelnames))

    text = generate_latest(metrics.registry).decode()
    labels: dict[str, set[str]] = {}
    counters: set[str] = set()
    gauges: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):  # creation timestamps, not for queries
                continue
            labels.setdefault(sample.name, set()).update(sample.labels)
            if sample.name.endswith(_COUNTER_SUFFIXES.get(family.type, ())):
                counters.add(sample.name)
            elif family.type == "gauge":
                gauges.add(sample.name)
    return Exported(
        labels={k: frozenset(v) for k, v in labels.items()},
        counters=frozenset(counters),
        gauges=frozenset(gauges),
    )
