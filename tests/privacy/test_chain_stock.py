"""A chain that starts with the stock defaults (RedactionHook, RetentionHook) does
their batch work once per batch; what the hooks after them see, and the deadlines,
are those of the defaults run one by one (a chain of subclasses of them: not stock)."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import pytest

from privacy_hooks import (
    BaseHook,
    HookChain,
    HookFailed,
    RedactionHook,
    RetentionHook,
    StoredRecord,
    default_chain,
)


class _Redaction(RedactionHook):
    pass


class _Retention(RetentionHook):
    pass


class _Look(BaseHook):
    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []
        self.events: list[dict[str, Any]] = []

    def on_store_batch(self, records: Sequence[StoredRecord]) -> None:
        self.records += [(r.kind, r.now_s, r.ttl_s, r.retention_until, r.fields) for r in records]

    def on_events(self, events: Sequence[MutableMapping[str, Any]]) -> None:
        self.events += [dict(e) for e in events]


def _chains() -> tuple[tuple[HookChain, _Look], tuple[HookChain, _Look]]:
    a, b = _Look(), _Look()
    stock = default_chain(custom=[a])
    plain = HookChain([_Redaction(), _Retention(stock.hooks[1].policy), b], defaults=2)  # type: ignore[attr-defined]
    assert stock.stock and not plain.stock
    return (stock, a), (plain, b)


@pytest.mark.parametrize("kind", ["job", "dead_letter", "scheduled_job", "audit"])
def test_the_stock_defaults_stamp_as_the_hooks_one_by_one(kind: str) -> None:
    (stock, a), (plain, b) = _chains()
    records = [{"id": "j1"}, {"id": "j2"}, None]
    assert stock.on_store_batch(kind, records, 1_900_000_000.7) == plain.on_store_batch(kind, records, 1_900_000_000.7)
    assert a.records == b.records and len(a.records) == 3
    assert stock.on_store_batch(kind, [], 1.0) == [] and a.records == b.records


def test_an_unknown_kind_fails_as_the_retention_hook_did() -> None:
    for chain, _ in _chains():
        with pytest.raises(HookFailed, match=r"Retention(Hook)? failed in on_store \(ValueError\)"):
            chain.on_store_batch("nonsense", [{}], 1.0)


def test_names_free_skips_only_the_stock_redaction() -> None:
    (stock, a), (plain, b) = _chains()
    event = {"id": "j1", "to": "+4512345678", "text": "hello"}  # not names_free: redacted
    for chain in (stock, plain):
        chain.on_events([dict(event)])
    assert a.events == b.events and "text" not in a.events[0] and "12345678" not in a.events[0]["to"]

    class Checked(RedactionHook):  # not the stock class: called whatever the caller says
        def on_events(self, events: Sequence[MutableMapping[str, Any]]) -> None:
            raise RuntimeError

    custom = HookChain([Checked(), stock.hooks[1], b], defaults=2)
    with pytest.raises(HookFailed):
        custom.on_events([{}], names_free=True)
    stock.on_events([{"id": "j2"}], names_free=True)
    assert a.events[-1] == {"id": "j2"}
