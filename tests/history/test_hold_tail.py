"""`_hold_tail`: which events of a batch the archiver holds back for the next one (sans-IO)."""

from __future__ import annotations

from typing import Any

from engine.history.archiver import _hold_tail, _with_carry
from tests.history.events import event_fields

T = 1_800_000_000_000


def _e(ms: int, job: str, event: str, seq: int = 0) -> list[Any]:
    fields = event_fields(job, event, ms, first=event == "submitted")
    return [b"%d-%d" % (ms, seq), [x for kv in fields.items() for x in kv]]


def _ids(batch: list[tuple[str, list[Any]]]) -> list[tuple[str, bytes]]:
    return [(stream, e[0]) for stream, es in batch for e in es]


def test_fresh_non_final_events_are_held_until_settle_ms_of_later_events() -> None:
    a, b_sub, b_del, c = _e(T, "a", "submitted"), _e(T + 500, "b", "submitted"), _e(T + 600, "b", "delivered"), \
        _e(T + 900, "c", "enroute")
    old = _e(T - 2000, "z", "submitted")  # long before the batch's newest: written now
    keep, held = _hold_tail([("s", [old, a, b_sub, b_del, c])], 1000)
    # b's receipt is in the batch: b is one row now; a and c wait for theirs
    assert _ids(keep) == [("s", old[0]), ("s", b_sub[0]), ("s", b_del[0])]
    assert _ids(held) == [("s", a[0]), ("s", c[0])]
    # next batch: a is now more than 1 s before the newest event: written; c still held
    d = _e(T + 1200, "d", "submitted")
    keep, held = _hold_tail([("s", [d])], 1000, held)
    assert _ids(keep) == [("s", a[0])]
    assert _ids(held) == [("s", c[0]), ("s", d[0])]
    # c's final comes: c goes with it (carried first), d waits on
    c_fin = _e(T + 1300, "c", "delivered")
    keep, held = _hold_tail([("s", [c_fin])], 1000, held)
    assert _ids(keep) == [("s", c[0]), ("s", c_fin[0])]
    assert _ids(held) == [("s", d[0])]
    # the same rounds with the carry merged as plain entries: the same split
    assert _hold_tail(_with_carry(held, [("s", [c_fin])]), 1000)[1] == held


def test_finals_other_layouts_and_other_streams() -> None:
    fin = _e(T, "f", "delivered")
    odd = [b"%d-1" % T, [b"event", b"submitted", b"id", b"x"]]  # not the engine's layout: written now
    other = _e(T - 5000, "o", "submitted")
    keep, held = _hold_tail([("s", [fin, odd]), ("t", [other])], 1000)
    assert _ids(keep) == [("s", fin[0]), ("s", odd[0]), ("t", other[0])]
    assert held == []
    # str ids (a parsed reply): nothing held
    keep, held = _hold_tail([("s", [[f"{T}-0", _e(T, "a", "submitted")[1]]])], 1000)
    assert held == []
    # the carry of a stream absent from the new read is kept
    merged = _with_carry([("u", [other])], [("s", [fin])])
    assert _ids(merged) == [("s", fin[0]), ("u", other[0])]
