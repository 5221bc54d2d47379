"""The fold of events into per-job deltas (sans-IO): the positional fast path answers as the dict path."""

from __future__ import annotations

import random

from engine.history import deltas_from_entries
from tests.history.events import entry


def _flat(fields: dict[bytes, bytes], shuffle: random.Random | None = None) -> list[bytes]:
    items = list(fields.items())
    if shuffle is not None:
        shuffle.shuffle(items)
    return [x for kv in items for x in kv]


def _batch() -> list[tuple[bytes, dict[bytes, bytes]]]:
    return [
        entry("a", "submitted", 1000, first=True, ref="r", client="c", parts=2, message_ids="m1,m2"),
        entry("a", "enroute", 1500),
        entry("a", "delivered", 2000, parts=2),
        entry("b", "rejected", 900, first=True, error="0x00000045", kind="marketing"),
        entry("c", "undeliverable", 5000, error="err:034"),
        entry("c", "submitted", 3000),  # out of order: earliest still wins
    ]


def test_flat_fields_in_the_engine_order_fold_like_the_dict_form() -> None:
    batch = _batch()
    by_dict = deltas_from_entries(batch)
    by_flat = deltas_from_entries([(eid, _flat(f)) for eid, f in batch])
    assert by_flat == by_dict
    a, b, c = by_dict
    assert (a.first_ms, a.submitted_ms, a.final_state, a.final_ms, a.parts) == (1000, 1000, "delivered", 2000, 2)
    assert a.events == {"submitted": 1000, "enroute": 1500, "delivered": 2000}
    assert (a.client, a.ref, a.message_ids, a.to_mask) == ("c", "r", "m1,m2", "+45******33")
    assert (b.final_state, b.errors, b.kind, b.submitted_ms) == ("rejected", {"rejected": "0x00000045"}, "marketing", None)
    assert (c.first_ms, c.submitted_ms, c.final_state, c.to_hash, c.client) == (3000, 3000, "undeliverable", "", "")


def test_any_field_order_and_extra_fields_give_the_same_deltas() -> None:
    batch = _batch()
    expected = deltas_from_entries(batch)
    rng = random.Random(7)
    for _ in range(50):
        shuffled = [(eid, _flat({**f, b"extra": b"x"} if rng.random() < 0.3 else f, rng)) for eid, f in batch]
        assert deltas_from_entries(shuffled) == expected


def test_entries_without_id_or_event_are_skipped() -> None:
    assert deltas_from_entries([(b"1-1", {b"event": b"submitted"}), (b"1-2", [b"id", b"x"])]) == []


def test_a_malformed_entry_is_skipped_and_changes_nothing() -> None:
    good = _batch()
    bad = [
        (b"9-1", {b"id": b"a", b"event": b"delivered", b"ts": b"soon"}),
        (b"9-2", {b"id": b"a", b"event": b"failed", b"ts": b"1", b"ref": b"\xff\xfe"}),
        (b"9-3", {b"id": b"z", b"event": b"submitted", b"ts": b"1", b"parts": b"two"}),
    ]
    assert deltas_from_entries(good + bad) == deltas_from_entries(good)


def test_an_entry_deleted_while_pending_or_not_in_pairs_is_skipped() -> None:
    """A reread of pending entries gives a deleted one with no fields (None); a list
    of odd length is no entry the engine writes: neither can stop the archive."""
    good = _batch()
    odd = (b"9-4", [b"id", b"a", b"event", b"failed", b"ts"])
    deleted = (b"9-5", None)
    assert deltas_from_entries([*good, odd, deleted]) == deltas_from_entries(good)


def test_a_delta_knows_whether_its_batch_held_the_jobs_first_event() -> None:
    batch = _batch()
    for deltas in (deltas_from_entries(batch), deltas_from_entries([(eid, _flat(f)) for eid, f in batch])):
        assert [(d.job_id, d.has_first) for d in deltas] == [("a", True), ("b", True), ("c", False)]
    shuffled = deltas_from_entries([(eid, _flat(f, random.Random(3))) for eid, f in batch])
    assert [d.has_first for d in shuffled] == [True, True, False]
