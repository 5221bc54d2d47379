"""An apply call's arguments (`ReceiptStore._pack`, `_packed`) and its fast-path events
against a plain spelling of the rules: groups in order of first appearance, the token
over the call's RESP (no Redis: packing only). Kept for whoever speeds these up next
(a groupby/map version was tried and cost more: bench/RESULTS.md, "rcpt")."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from dlr.store import GROUP, ReceiptRecord, ReceiptStore
from engine.metrics import FastHistogram

_RECORDS = st.lists(
    st.builds(
        ReceiptRecord,
        st.text(alphabet="0123456789abcdefé-", min_size=1, max_size=12),
        st.sampled_from(["delivered", "undeliverable", "enroute", "accepted"]),
        st.booleans(),
        st.sampled_from(["", "err:034"]),
        st.sampled_from([1764806400000, 1764806400001]),
    ),
    max_size=40,
)


def _old_tail(chunk: list[ReceiptRecord]) -> tuple[list[bytes], list[ReceiptRecord]]:
    # (receipts received at different times share a group: their events' ts is the call's)
    groups: dict[tuple[bool, str, str], list[ReceiptRecord]] = {}
    for r in chunk:
        groups.setdefault((r.is_final, r.event, r.error), []).append(r)
    tail: list[bytes] = []
    ordered: list[ReceiptRecord] = []
    for (final, event, error), group in groups.items():
        tail += GROUP.build(final=b"1" if final else b"0", event=event.encode(), error=error.encode(),
                            count=b"%d" % len(group), ids=[r.message_id.encode() for r in group])
        ordered += group
    return tail, ordered


@settings(max_examples=300, deadline=None)
@given(records=_RECORDS, runs=st.integers(1, 4))
def test_groups_and_the_packed_call_are_as_before(records: list[ReceiptRecord], runs: int) -> None:
    chunk = records * runs  # repeated runs of equal keys, apart (first appearance decides)
    store = ReceiptStore(None, "t")
    head, tail, ordered = store._pack("c1", chunk, "apply", 1764806400005)
    assert (tail, ordered) == _old_tail(chunk)
    assert head[-1] == 1764806400005  # the call's now, the last argument before the token
    packed = store._packed(head, tail)
    body = b"".join([b"$%d\r\n%b\r\n" % (len(p), p) for p in tail])
    token = hashlib.sha1(store._head_resp(head[:-1]) + body).hexdigest()
    assert packed.endswith(b"$40\r\n" + token.encode() + b"\r\n" + body)
    assert store._call_token(head, tail) == token
    # the same call built later (a stalled batch sent again) has the same token
    later, later_tail, _o = store._pack("c1", chunk, "apply", 1764806409999)
    assert later[-1] == 1764806409999 and store._call_token(later, later_tail) == token


@given(values=st.lists(st.sampled_from([0.0, 0.004, 0.2, 7.5, 1e9]), max_size=30))
def test_observe_counted_is_observe_n_times(values: list[float]) -> None:
    one, counted = FastHistogram((0.01, 0.1, 1.0)), FastHistogram((0.01, 0.1, 1.0))
    for v in values:
        one.observe(v)
    for v in dict.fromkeys(values):
        counted.observe_counted(v, values.count(v))
    assert (counted.counts, counted.total) == (one.counts, one.total)
    assert abs(counted.sum - one.sum) <= 1e-9 * max(1.0, abs(one.sum))


@settings(max_examples=200, deadline=None)
@given(records=_RECORDS, runs=st.integers(1, 3))
def test_fast_events_of_a_reply_are_each_receipts_state(records: list[ReceiptRecord], runs: int) -> None:
    """A reply where every receipt took the fast path: one event per receipt, in order."""
    from dlr.store import _FINAL_STATE, BatchResult

    store = ReceiptStore(None, "t")
    _head, _tail, ordered = store._pack("c1", records * runs, "apply", 1764806400005)
    fast = [v for k in range(len(ordered)) for v in (f"job-{k}", "1764806400000")]
    result = BatchResult()
    store._read_apply(["f" * len(ordered), fast], "c1", ordered, result, True)
    assert result.fast_events == [_FINAL_STATE.get(r.event, "unknown") for r in ordered]
    assert result.fast_job_ids == fast[0::2] and result.applied == len(ordered)
