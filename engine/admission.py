"""Admission order inside one carrier: lanes by priority and weight, clients by
deficit round robin. Sans-IO: no clock, no asyncio, no Redis.

Why here and not in the pipeline: the order in which a carrier's jobs in hand
are offered to its windows *is* the product's promise of priority and
fairness (docs/contract.md §2.5, README "Lanes"), and it is easiest to reason
about, test and measure (bench/micro/test_admission.py) as a plain data
structure.

Rules
-----
* ``high`` is always served first: while a high job is in hand, no normal or
  bulk job is popped.
* ``normal`` and ``bulk`` share what is left by weighted round robin
  (``[engine] lane_weights``, default 4:1): of every 5 pops while both have
  jobs, 4 are normal and 1 is bulk. A lane that is empty gives its turn away,
  so a lone bulk backlog runs at full speed and never starves.
* Inside a lane, clients take turns by deficit round robin: a client's turn
  lasts ``weight`` pops (``[[clients]] weight``, default 1); every client not
  configured shares one queue, ``other``, of the default weight. A job costs
  one pop whatever its parts (a turn is a share of jobs, not of PDUs).

Cost: a pop is a few deque and dict operations (~0.3 µs, bench/micro), and
with one lane and one client it is a single deque pop after two emptiness
checks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

__all__ = ["LANES", "OTHER", "CarrierQueue", "ClientQueue"]

T = TypeVar("T")

LANES = ("high", "normal", "bulk")
"""Lane names, highest priority first (their indexes are the lane numbers)."""

OTHER = "other"
"""The client class of every client that is not configured in ``[[clients]]``."""


class ClientQueue(Generic[T]):
    """The jobs of one lane, one FIFO per client class, popped by deficit round robin."""

    __slots__ = ("_active", "_credit", "_queues", "_weights", "n")

    def __init__(self, weights: Mapping[str, int]) -> None:
        self._weights = weights
        self._queues: dict[str, deque[T]] = {}
        self._active: deque[str] = deque()  # classes with jobs, in turn order
        self._credit = 0  # pops left in the turn of _active[0]
        self.n = 0

    def push(self, client: str, item: T) -> None:
        q = self._queues.get(client)
        if q is None:
            q = self._queues[client] = deque()
        if not q:
            self._active.append(client)
        q.append(item)
        self.n += 1

    def push_front(self, client: str, item: T) -> None:
        """Put back a job that was popped and not used (it keeps its place)."""
        q = self._queues.get(client)
        if q is None:
            q = self._queues[client] = deque()
        if not q:
            self._active.appendleft(client)
            self._credit = 0
        q.appendleft(item)
        self.n += 1

    def pop(self) -> T:
        """The next job by deficit round robin; the queue must not be empty."""
        active = self._active
        client = active[0]
        if self._credit <= 0:
            self._credit = self._weights.get(client, 1)
        q = self._queues[client]
        item = q.popleft()
        self.n -= 1
        self._credit -= 1
        if not q:
            active.popleft()
            self._credit = 0
        elif self._credit <= 0:
            active.rotate(-1)
        return item

    def pop_chunk(self, room: int, size: Callable[[T], int]) -> list[T]:
        """:meth:`pop` while the jobs' ``size`` fit ``room`` (at least one job):
        the first that does not fit is put back with :meth:`push_front`, the state
        left as that pop and push_front leave it. One call for the admitter's
        chunk, the same jobs in the same order as the pops (and the same later
        ones); the queue must not be empty."""
        out: list[T] = []
        append = out.append
        parts = 0
        active = self._active
        queues = self._queues
        weights = self._weights
        credit = self._credit
        n = self.n
        while n:
            client = active[0]
            if credit <= 0:
                credit = weights.get(client, 1)
            q = queues[client]
            item = q.popleft()
            n -= 1
            credit -= 1
            if not q:
                active.popleft()
                credit = 0
            elif credit <= 0:
                active.rotate(-1)
            k = size(item)
            if out and parts + k > room:  # push_front(client, item)
                if not q:
                    active.appendleft(client)
                    credit = 0
                q.appendleft(item)
                n += 1
                break
            append(item)
            parts += k
        self._credit = credit
        self.n = n
        return out

    def count(self, client: str) -> int:
        q = self._queues.get(client)
        return len(q) if q is not None else 0

    def __iter__(self) -> Iterator[T]:
        for q in self._queues.values():
            yield from q

    def clear(self) -> list[T]:
        """Remove and return every job (for hand-back on shutdown)."""
        out = [x for q in self._queues.values() for x in q]
        self._queues.clear()
        self._active.clear()
        self._credit = 0
        self.n = 0
        return out


class CarrierQueue(Generic[T]):
    """One carrier's jobs in hand: high first, normal/bulk by weight, clients by DRR."""

    __slots__ = ("_bulk_weight", "_left", "_normal_weight", "_turn", "lanes")

    def __init__(self, lane_weights: Mapping[str, int], client_weights: Mapping[str, int]) -> None:
        self.lanes: tuple[ClientQueue[T], ClientQueue[T], ClientQueue[T]] = (
            ClientQueue(client_weights), ClientQueue(client_weights), ClientQueue(client_weights)
        )
        self._normal_weight = max(1, int(lane_weights.get("normal", 4)))
        self._bulk_weight = max(1, int(lane_weights.get("bulk", 1)))
        self._turn = 1  # 1 normal, 2 bulk: whose weighted turn it is
        self._left = self._normal_weight

    def __len__(self) -> int:
        a, b, c = self.lanes
        return a.n + b.n + c.n

    def __bool__(self) -> bool:
        a, b, c = self.lanes
        return bool(a.n or b.n or c.n)

    def push(self, lane: int, client: str, item: T) -> None:
        self.lanes[lane].push(client, item)

    def push_front(self, lane: int, client: str, item: T) -> None:
        self.lanes[lane].push_front(client, item)

    def pop(self) -> tuple[int, T]:
        """``(lane, job)``, the next job to admit; the queue must not be empty."""
        high, normal, bulk = self.lanes
        if high.n:
            return 0, high.pop()
        if not bulk.n:
            return 1, normal.pop()
        if not normal.n:
            return 2, bulk.pop()
        # Both have jobs: weighted round robin.
        if self._left <= 0:
            if self._turn == 1:
                self._turn, self._left = 2, self._bulk_weight
            else:
                self._turn, self._left = 1, self._normal_weight
        self._left -= 1
        lane = self._turn
        return lane, self.lanes[lane].pop()

    def pop_chunk(self, room: int, size: Callable[[T], int], client_of: Callable[[T], str]) -> list[T]:
        """The admitter's step: :meth:`pop` jobs while their ``size`` fit ``room``
        (at least one); the first that does not fit goes back with
        :meth:`push_front` (under ``client_of(job)``, its lane). The same jobs, order
        and state as those calls one by one; with one lane holding jobs (the usual
        case) the lane pops them in one call. The queue must not be empty."""
        high, normal, bulk = self.lanes
        if bool(high.n) + bool(normal.n) + bool(bulk.n) == 1:  # one lane: no turn between lanes
            return (high if high.n else normal if normal.n else bulk).pop_chunk(room, size)
        out: list[T] = []
        parts = 0
        while self:
            lane, item = self.pop()
            k = size(item)
            if out and parts + k > room:
                self.push_front(lane, client_of(item), item)
                break
            out.append(item)
            parts += k
        return out

    def clear(self) -> list[T]:
        """Remove and return every job in hand (unclaimed), for hand-back."""
        return [x for q in self.lanes for x in q.clear()]
