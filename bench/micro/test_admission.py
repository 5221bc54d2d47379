"""Micro benchmarks of the admission scheduler (engine/admission.py): the cost per
job of queueing it in hand and popping it in lane/client order. Per job: the
figure divided by 1,000."""

from __future__ import annotations

from typing import Any

from engine.admission import OTHER, CarrierQueue

N = 1000


def _round(q: CarrierQueue[int], pushes: list[tuple[int, str]]) -> int:
    for i, (lane, client) in enumerate(pushes):
        q.push(lane, client, i)
    total = 0
    while q:
        total += q.pop()[1]
    return total


def test_admission_one_lane_one_client_1000_jobs(benchmark: Any) -> None:
    """What every deployment without [[clients]] pays: one deque push and pop, and the checks."""
    q: CarrierQueue[int] = CarrierQueue({"normal": 4, "bulk": 1}, {})
    pushes = [(1, OTHER)] * N
    assert benchmark(_round, q, pushes) == N * (N - 1) // 2


def test_admission_three_lanes_four_clients_1000_jobs(benchmark: Any) -> None:
    """Weighted lanes and deficit round robin between four clients (three configured)."""
    q: CarrierQueue[int] = CarrierQueue({"normal": 4, "bulk": 1}, {"a": 3, "b": 1, "c": 2})
    clients = ["a", "b", "c", OTHER]
    pushes = [(i % 3, clients[i % 4]) for i in range(N)]
    assert benchmark(_round, q, pushes) == N * (N - 1) // 2
