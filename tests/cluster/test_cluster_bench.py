"""`sendgate bench --cluster`: the capacity arithmetic, and a small real run on its own cluster."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.cluster import cluster_support
from bench.cluster_bench import capacity, default_placement
from bench.e2e import main


def test_one_shard_uses_one_master_whatever_the_cluster_size() -> None:
    one = capacity(20.0, 20.0, cores=16, masters=9, shards=1)
    assert one["usable_masters"] == 1 and one["msgs_per_s_redis"] == 50_000 and one["bound_by"] == "redis"
    even = capacity(20.0, 20.0, cores=16, masters=3, shards=12)
    assert even["usable_masters"] == 3 and even["msgs_per_s_redis"] == 150_000
    assert even["engine_cores"] == 13 and even["msgs_per_s_engines"] == 650_000
    # 4 shards on 3 masters: the busiest holds 2, so the masters give 2 masters' worth.
    assert capacity(20.0, 20.0, cores=16, masters=3, shards=4)["usable_masters"] == 2
    assert capacity(50.0, 5.0, cores=16, masters=9, shards=9)["bound_by"] == "engines"
    # The tags {0}..{N-1} on an even slot split: 6 shards sit 1/3/2 on 3 masters.
    assert default_placement(6, 3) == [1, 3, 2] and sum(default_placement(36, 9)) == 36
    assert capacity(20.0, 20.0, cores=16, masters=3, shards=6, placement="default")["usable_masters"] == 2


@pytest.mark.slow
def test_bench_cluster_runs_each_engine_count_and_loses_nothing(tmp_path: Path) -> None:
    why = cluster_support()
    if why:
        pytest.skip(f"no Redis Cluster possible here: {why}")
    out = tmp_path / "cluster.json"
    rc = main(["--cluster", "--cluster-engines", "1,2", "--jobs", "400", "--quiet", "--timeout-s", "30",
               "--json", str(out)])
    result = json.loads(out.read_text())
    assert rc == 0, result
    assert [r["engines"] for r in result["runs"]] == [1, 2]
    for run in result["runs"]:
        assert run["lost"] == 0 and run["duplicates"] == 0
        assert run["engine_us_per_msg"] > 0 and run["redis_us_per_msg"] >= 0  # CPU ticks are 10 ms
        assert len(run["redis_cpu_share"]) == 3  # each master's CPU measured
        pids = run["result"]["pids"]
        alive = {n: p for n, p in pids.items() if os.path.exists(f"/proc/{p}")}
        assert not alive, alive  # engines, simulator and masters all gone
    assert result["capacity_model"]["models"][0]["masters"] == 3
