"""A private 3-master Redis Cluster for the cluster tests (one per session).

Started by bench/cluster.py (the same code as `sendgate bench --cluster`) on
free 127.0.0.1 ports in a temporary directory, and stopped at the end of the
session — or, if the test process dies, by each server's watchdog. The tests
skip only when no redis-server here can run a cluster, and say why.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from bench.cluster import ClusterUnsupported, LocalCluster, cluster_support


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    why = cluster_support()
    if why:
        pytest.skip(f"no Redis Cluster possible here: {why}")
    try:
        cluster = LocalCluster(masters=3).start()
    except ClusterUnsupported as exc:
        pytest.skip(f"redis-server has no cluster support: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def tagged_prefix() -> str:
    """A prefix of its own for each test, a hash tag (one shard on a cluster: one slot)."""
    return "{sgc-" + uuid.uuid4().hex[:8] + "}"
