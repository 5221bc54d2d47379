"""`EventHold`: which events the archiver holds back until their job's final event (sans-IO)."""

from __future__ import annotations

from typing import Any

from engine.history.hold import EventHold
from tests.history.events import event_fields

T = 1_800_000_000_000


def _e(ms: int, job: str, event: str, seq: int = 0) -> list[Any]:
    fields = event_fields(job, event, ms, first=event == "submitted")
    return [b"%d-%d" % (ms, seq), [x for kv in fields.items() for x in kv]]


def _ids(batch: list[tuple[str, list[Any]]]) -> list[tuple[str, bytes]]:
    return [(stream, e[0]) for stream, es in batch for e in es]


def test_a_jobs_events_wait_for_its_final_event_however_many_rounds_later() -> None:
    hold = EventHold(hold_ms=10_000)
    a, b_sub, b_del, c = _e(T, "a", "submitted"), _e(T + 500, "b", "submitted"), _e(T + 600, "b", "delivered"), \
        _e(T + 900, "c", "enroute")
    old = _e(T - 20_000, "z", "submitted")  # already past the bound when read: written now
    out = hold.split([("s", [old, a, b_sub, b_del, c])], 0.0)
    assert _ids(out) == [("s", old[0]), ("s", b_sub[0]), ("s", b_del[0])]  # b's receipt is in the batch
    assert len(hold) == 2 and hold.added == 2 and hold.oldest_id() == a[0]
    # many rounds of other jobs, seconds of stream time: a and c wait on
    for k in range(1, 8):
        x_sub, x_del = _e(T + k * 1000, f"x{k}", "submitted"), _e(T + k * 1000 + 5, f"x{k}", "delivered")
        out = hold.split([("s", [x_sub, x_del])], 0.0)
        assert _ids(out) == [("s", x_sub[0]), ("s", x_del[0])]
    assert len(hold) == 2
    # c's final, 8 s after its enroute: c's events go together, before the batch's own
    c_fin, d = _e(T + 8900, "c", "delivered"), _e(T + 8950, "d", "submitted")
    out = hold.split([("s", [c_fin, d])], 0.0)
    assert _ids(out) == [("s", c[0]), ("s", c_fin[0])]
    assert len(hold) == 2 and hold.oldest_id() == a[0]  # a and d
    # a's accepted joins its held submitted; its final takes both
    a_acc = _e(T + 9000, "a", "accepted")
    assert hold.split([("s", [a_acc])], 0.0) == [("s", [])]
    a_fin = _e(T + 9500, "a", "undeliverable")
    out = hold.split([("s", [a_fin])], 0.0)
    assert _ids(out) == [("s", a[0]), ("s", a_acc[0]), ("s", a_fin[0])]
    assert len(hold) == 1 and hold.oldest_id() == d[0]


def test_the_time_bound_writes_what_waited_hold_ms_behind_the_newest_entry() -> None:
    hold = EventHold(hold_ms=3000)
    a, b = _e(T, "a", "submitted"), _e(T + 1000, "b", "submitted")
    assert hold.split([("s", [a, b])], 0.0) == [("s", [])]
    out = hold.split([("s", [_e(T + 3000, "q", "rejected")])], 0.0)  # exactly the bound: still held
    assert len(_ids(out)) == 1 and len(hold) == 2
    q2 = _e(T + 3001, "q2", "rejected")
    out = hold.split([("s", [q2])], 0.0)  # a is now more than 3 s behind: written, before the batch's
    assert _ids(out) == [("s", a[0]), ("s", q2[0])]
    assert len(hold) == 1
    # another stream's read moves the bound for every stream
    out = hold.split([("t", [_e(T + 4500, "r", "delivered")])], 0.0)
    assert _ids(out) == [("t", b"%d-0" % (T + 4500)), ("s", b[0])]
    assert len(hold) == 0


def test_on_a_quiet_stream_the_bound_moves_on_with_the_clock() -> None:
    hold = EventHold(hold_ms=2000)
    a = _e(T, "a", "submitted")
    assert hold.split([("s", [a])], 100.0) == [("s", [])]
    assert hold.split([("s", [])], 101.0) == [] and len(hold) == 1  # 1 s of nothing: held
    assert _ids(hold.split([("s", [])], 102.5)) == [("s", a[0])]  # 2.5 s of nothing: written
    assert len(hold) == 0
    assert hold.split([("s", [])], 200.0) == []


def test_the_count_bound_writes_the_oldest_jobs() -> None:
    hold = EventHold(hold_ms=60_000, max_entries=4)
    es = [_e(T + i, f"j{i}", "submitted") for i in range(6)]
    es.insert(2, _e(T + 1, "j1", "enroute", seq=1))  # j1 has two entries held
    out = hold.split([("s", es)], 0.0)
    # 7 held > 4: the oldest jobs leave whole (j0, then j1 with both of its entries)
    assert _ids(out) == [("s", es[0][0]), ("s", es[1][0]), ("s", es[2][0])]
    assert len(hold) == 4 and hold.oldest_id() == es[3][0]


def test_finals_other_layouts_str_ids_and_release_all() -> None:
    hold = EventHold(hold_ms=10_000)
    fin = _e(T, "f", "delivered")
    odd = [b"%d-1" % T, [b"event", b"submitted", b"id", b"x"]]  # not the engine's layout: written now
    sub = _e(T + 1, "h", "submitted")
    out = hold.split([("s", [fin, odd, sub])], 0.0)
    assert _ids(out) == [("s", fin[0]), ("s", odd[0])]
    # str ids (a parsed reply): nothing held, and what was held goes with them
    parsed = [f"{T + 2}-0", _e(T + 2, "p", "submitted")[1]]
    out = hold.split([("s", [parsed])], 0.0)
    assert _ids(out) == [("s", sub[0]), ("s", parsed[0])] and len(hold) == 0
    # release_all: each stream's held entries before that stream's new ones; others after
    hold.split([("s", [_e(T + 5, "u", "submitted")]), ("t", [_e(T + 6, "v", "submitted")])], 0.0)
    out = hold.release_all([("t", [fin])])
    assert _ids(out) == [("t", b"%d-0" % (T + 6)), ("t", fin[0]), ("s", b"%d-0" % (T + 5))]
    assert len(hold) == 0 and hold.release_all() == []


def test_jobs_written_by_their_final_leave_no_growing_queue() -> None:
    """Jobs written by their final leave the hold: nothing of them is kept until the
    time bound reaches them."""
    hold = EventHold(hold_ms=3_600_000)
    late: list[Any] = []
    for r in range(200):
        batch = [_e(T + r * 100 + i, f"j{r}-{i}", "submitted") for i in range(50)]
        batch += late  # the previous round's receipts
        batch.sort(key=lambda e: e[0])
        late = [_e(T + (r + 1) * 100 + 60 + i, f"j{r}-{i}", "delivered") for i in range(50)]
        out = hold.split([("s", batch)], 0.0)
        assert len(hold) == 50
        if r:
            assert len(_ids(out)) == 100  # the previous round's 50 jobs, each with its receipt
    assert len(hold._streams["s"]) == 50
