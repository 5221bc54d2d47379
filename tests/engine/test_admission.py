"""engine.admission: high first, normal/bulk by weight, clients by deficit round robin (sans-IO)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from engine.admission import OTHER, CarrierQueue, ClientQueue


def _queue(normal: int = 4, bulk: int = 1, clients: dict[str, int] | None = None) -> CarrierQueue[str]:
    return CarrierQueue({"normal": normal, "bulk": bulk}, clients or {})


def test_high_is_always_first() -> None:
    q = _queue()
    for i in range(5):
        q.push(2, OTHER, f"b{i}")
        q.push(1, OTHER, f"n{i}")
    q.push(0, OTHER, "h0")
    assert q.pop() == (0, "h0")
    q.pop()
    q.push(0, OTHER, "h1")  # arriving later, still next
    assert q.pop() == (0, "h1")


def test_normal_and_bulk_share_by_weight_and_bulk_never_starves() -> None:
    q = _queue(4, 1)
    for _ in range(1000):
        q.push(1, OTHER, "n")
        q.push(2, OTHER, "b")
    first = Counter(q.pop()[1] for _ in range(500))
    assert first == {"n": 400, "b": 100}


def test_an_empty_lane_gives_its_turn_away() -> None:
    q = _queue(4, 1)
    for _ in range(10):
        q.push(2, OTHER, "b")
    assert [q.pop()[1] for _ in range(10)] == ["b"] * 10
    assert not q and len(q) == 0


def test_clients_share_a_lane_by_weight_in_fifo_order_each() -> None:
    q = ClientQueue({"a": 3, "b": 1})
    for i in range(40):
        q.push("a", f"a{i}")
    for i in range(40):
        q.push("b", f"b{i}")
    out = [q.pop() for _ in range(40)]
    assert Counter(x[0] for x in out) == {"a": 30, "b": 10}
    assert [x for x in out if x[0] == "a"] == [f"a{i}" for i in range(30)]  # FIFO inside a client
    assert out[:4] == ["a0", "a1", "a2", "b0"]


def test_push_front_puts_a_job_back_at_its_place() -> None:
    q = _queue()
    q.push(1, OTHER, "n0")
    q.push(1, OTHER, "n1")
    lane, job = q.pop()
    q.push_front(lane, OTHER, job)
    assert [q.pop()[1] for _ in range(2)] == ["n0", "n1"]


@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["a", "b", OTHER])), max_size=200))
def test_every_job_pushed_is_popped_once(pushes: list[tuple[int, str]]) -> None:
    q = CarrierQueue({"normal": 3, "bulk": 2}, {"a": 2, "b": 5})
    for i, (lane, client) in enumerate(pushes):
        q.push(lane, client, i)
    popped = []
    while q:
        lane, i = q.pop()
        assert pushes[i][0] == lane
        popped.append(i)
    assert sorted(popped) == list(range(len(pushes)))
    # within one lane and client, FIFO
    for key in set(pushes):
        mine = [i for i in popped if pushes[i] == key]
        assert mine == sorted(mine)


def test_clear_returns_everything() -> None:
    q = _queue()
    q.push(0, "x", "h")
    q.push(2, OTHER, "b")
    assert sorted(q.clear()) == ["b", "h"] and not q


def _reference_chunk(q: CarrierQueue[tuple[str, int, int]], room: int) -> list[tuple[str, int, int]]:
    """The admitter's loop before pop_chunk: pop, and push_front the first job that does not fit."""
    chunk: list[tuple[str, int, int]] = []
    parts = 0
    while q:
        lane, job = q.pop()
        if chunk and parts + job[1] > room:
            q.push_front(lane, job[0], job)
            break
        chunk.append(job)
        parts += job[1]
    return chunk


_step = st.one_of(
    st.tuples(st.just("push"), st.integers(0, 2), st.sampled_from(["a", "b", OTHER]), st.integers(1, 4)),
    st.tuples(st.just("chunk"), st.integers(0, 12)),
)


@given(st.lists(_step, max_size=80), st.integers(1, 5), st.integers(1, 3))
def test_pop_chunk_is_pop_and_push_front(steps: list[tuple], normal: int, a_weight: int) -> None:
    """pop_chunk gives the jobs the pop / push_front loop gives, and leaves the queue
    in the same state: every later chunk and the final drain agree too."""
    weights = {"a": a_weight, "b": 2}
    fast: CarrierQueue[tuple[str, int, int]] = CarrierQueue({"normal": normal, "bulk": 1}, weights)
    ref: CarrierQueue[tuple[str, int, int]] = CarrierQueue({"normal": normal, "bulk": 1}, weights)
    size = lambda job: job[1]  # noqa: E731
    client_of = lambda job: job[0]  # noqa: E731
    for i, step in enumerate(steps):
        if step[0] == "push":
            _, lane, client, parts = step
            for q in (fast, ref):
                q.push(lane, client, (client, parts, i))
        elif ref:
            assert fast.pop_chunk(step[1], size, client_of) == _reference_chunk(ref, step[1])
            assert len(fast) == len(ref)
    assert [fast.pop() for _ in range(len(fast))] == [ref.pop() for _ in range(len(ref))]


def test_pop_chunk_takes_one_job_even_if_it_does_not_fit() -> None:
    q = _queue()
    q.push(1, OTHER, ("x", 9))
    q.push(1, OTHER, ("y", 1))
    assert q.pop_chunk(3, lambda j: j[1], lambda j: OTHER) == [("x", 9)]
    assert q.pop_chunk(3, lambda j: j[1], lambda j: OTHER) == [("y", 1)]
    assert not q
