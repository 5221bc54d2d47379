"""hook_edits finds a hook's edits of receipt events by the writes it made (no copy
of every event): every way a hook can change a ReceiptEvent counts; the engine's own
stamp (retention_until) is not an edit."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

import pytest

from engine.receipt_hooks import ReceiptEvent, hook_edits, receipt_events
from privacy_hooks import BaseHook, StoredRecord, default_chain

NOW = 1_900_000_000.0
UNTIL = str(int(NOW) + 120 * 86400)  # the default retention of a job's events


def _fields(i: int) -> list[str]:
    return ["id", f"job-{i}", "ref", f"r{i}", "event", "delivered", "carrier", "c1", "parts", "1",
            "message_ids", f"m{i}", "error", "", "ts", "1"]


class _Edit(BaseHook):
    """Applies ``edit`` to the event at ``index`` (in on_events or in on_store)."""

    def __init__(self, index: int, edit: Callable[[MutableMapping[str, Any]], Any], *, on_store: bool = False) -> None:
        self.index, self.edit, self.in_store = index, edit, on_store

    def on_store_batch(self, records: Sequence[StoredRecord]) -> None:
        if self.in_store:
            fields = records[self.index].fields
            assert fields is not None
            self.edit(fields)

    def on_events(self, events: Sequence[MutableMapping[str, Any]]) -> None:
        if not self.in_store:
            self.edit(events[self.index])


def _run(hook: BaseHook, n: int = 3) -> tuple[list[tuple[str, str]], list[tuple[int, list[tuple[str, str]]]]]:
    fields = [_fields(i) for i in range(n)]
    events = receipt_events(fields)
    assert all(type(e) is ReceiptEvent for e in events)
    return hook_edits(default_chain(custom=[hook]), events, NOW, fields)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda e: e.__setitem__("ref", "x"), [("ref", "x")]),
        (lambda e: e.__delitem__("ref"), [("ref", "")]),
        (lambda e: e.pop("ref"), [("ref", "")]),
        (lambda e: e.update(client="k"), [("client", "k")]),
        (lambda e: e.update({"kind": "otp"}), [("kind", "otp")]),
        (lambda e: e.__ior__({"error": "e1"}), [("error", "e1")]),
        (lambda e: e.setdefault("to_mask", "+45****"), [("to_mask", "+45****")]),
        (lambda e: e.__setitem__("error", None), []),  # None where "" was: written as "", unchanged
        (lambda e: e.__setitem__("ref", "r1"), []),  # the same value: no edit
        (lambda e: e.__setitem__("event", "x"), []),  # not EVENT_EDITABLE: not written back
        (lambda e: e.clear(), [("ref", ""), ("error", "")]),  # removed: ""
    ],
)
def test_every_way_to_write_an_event_is_seen(edit: Callable[[MutableMapping[str, Any]], Any], expected: Any) -> None:
    common, edits = _run(_Edit(1, edit))
    assert common == [("retention_until", UNTIL)]
    assert edits == ([(2, expected)] if expected else [])


def test_an_edit_made_in_on_store_is_written_too() -> None:
    common, edits = _run(_Edit(0, lambda e: e.__setitem__("ref", "stored"), on_store=True))
    assert common == [("retention_until", UNTIL)] and edits == [(1, [("ref", "stored")])]


def test_the_engines_stamp_is_not_an_edit_and_every_event_has_it() -> None:
    seen: list[dict[str, Any]] = []

    class Look(BaseHook):
        def on_events(self, events: Sequence[MutableMapping[str, Any]]) -> None:
            seen.extend(dict(e) for e in events)

    common, edits = _run(Look())
    assert common == [("retention_until", UNTIL)] and edits == []
    assert [e["retention_until"] for e in seen] == [UNTIL] * 3
    assert [e["ref"] for e in seen] == ["r0", "r1", "r2"]


def test_a_write_to_an_event_of_another_batch_is_not_this_batchs_edit() -> None:
    kept: list[MutableMapping[str, Any]] = []

    class Keep(BaseHook):
        def on_events(self, events: Sequence[MutableMapping[str, Any]]) -> None:
            if kept:
                kept[0]["ref"] = "late"  # an event of the first batch, published already
            else:
                kept.append(events[0])

    chain = default_chain(custom=[Keep()])
    fields = [_fields(0)]
    assert hook_edits(chain, receipt_events(fields), NOW, fields)[1] == []
    fields = [_fields(5)]
    assert hook_edits(chain, receipt_events(fields), NOW, fields)[1] == []


def test_events_with_deadlines_of_their_own_get_them_each() -> None:
    class PerEvent(BaseHook):
        def on_store_batch(self, records: Sequence[StoredRecord]) -> None:
            for i, r in enumerate(records):
                r.retention_until = 100 + i

    common, edits = _run(PerEvent())
    assert common == [] and edits == [(i, [("retention_until", str(99 + i))]) for i in (1, 2, 3)]


def test_the_staged_field_lists_are_asked_for_only_when_a_hook_wrote() -> None:
    """The publish passes ``StagedBatch.event_lists`` (made on demand): without a write
    it is not called; with one, it is, and the edit is found against it."""
    fields = [_fields(i) for i in range(3)]
    asked: list[int] = []

    def lists() -> list[list[str]]:
        asked.append(1)
        return fields

    assert hook_edits(default_chain(custom=[BaseHook()]), receipt_events(fields), NOW, lists)[1] == []
    assert asked == []
    edit = _Edit(2, lambda e: e.__setitem__("ref", "new"))
    assert hook_edits(default_chain(custom=[edit]), receipt_events(fields), NOW, lists)[1] == [(3, [("ref", "new")])]
    assert asked == [1]
