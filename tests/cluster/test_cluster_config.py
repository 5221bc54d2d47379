"""``[redis] cluster``: what the settings accept and refuse, and the private cluster itself."""

from __future__ import annotations

import pytest

from bench.cluster import SLOTS, LocalCluster
from engine.config import ConfigError, has_hash_tag, settings_from_mapping
from engine.redis_client import cluster_from_url, is_cluster


def _settings(env: dict[str, str] | None = None, **redis: object) -> object:
    return settings_from_mapping({"redis": redis}, env=env or {})


def test_a_hash_tag_is_a_brace_pair_around_at_least_one_character() -> None:
    assert has_hash_tag("{sendgate}") and has_hash_tag("acme:{sg}") and has_hash_tag("{a}b{c}")
    assert not has_hash_tag("sendgate") and not has_hash_tag("{}sendgate") and not has_hash_tag("send{gate")
    assert not has_hash_tag("}x{")


def test_cluster_mode_with_one_shard_needs_a_tagged_prefix() -> None:
    with pytest.raises(ConfigError, match=r"redis\.prefix: 'sendgate' has no hash tag.*\{sendgate\}"):
        _settings(url="redis://127.0.0.1:7000", cluster=True)
    s = _settings(url="redis://127.0.0.1:7000", cluster=True, prefix="{sendgate}")
    assert s.redis.cluster and s.redis.prefix == "{sendgate}"  # type: ignore[attr-defined]


def test_cluster_mode_with_shards_takes_an_untagged_prefix() -> None:
    s = _settings(url="redis://127.0.0.1:7000", cluster=True, shards=6)
    assert s.redis.cluster and s.redis.shards == 6 and s.redis.prefix == "sendgate"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"redis\.prefix: no \{ or \} with redis\.shards > 1"):
        _settings(url="redis://127.0.0.1:7000", cluster=True, shards=6, prefix="{sendgate}")


def test_cluster_mode_refuses_another_database_and_no_url() -> None:
    with pytest.raises(ConfigError, match=r"redis\.url: a Redis Cluster has database 0 only, not /2"):
        _settings(url="redis://127.0.0.1:7000/2", cluster=True, prefix="{sg}")
    with pytest.raises(ConfigError, match=r"redis\.cluster: needs redis\.url"):
        _settings(cluster=True, prefix="{sg}")
    with pytest.raises(ConfigError, match=r"redis\.url: with redis\.cluster = true"):
        _settings(url="unix:///tmp/redis.sock", cluster=True, prefix="{sg}")
    assert _settings(url="redis://127.0.0.1:7000/0", cluster=True, prefix="{sg}").redis.cluster  # type: ignore[attr-defined]


def test_the_environment_turns_cluster_mode_on_with_redis_url_naming_a_node() -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:7001", "SENDGATE_REDIS_CLUSTER": "yes", "SENDGATE_PREFIX": "{p}"}
    s = _settings(env)
    assert s.redis.cluster and s.redis.url == "redis://127.0.0.1:7001"  # type: ignore[attr-defined]
    assert not _settings({"SENDGATE_REDIS_CLUSTER": "0"}).redis.cluster  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="SENDGATE_REDIS_CLUSTER: expected"):
        _settings({"SENDGATE_REDIS_CLUSTER": "maybe"})


def test_the_private_cluster_has_three_masters_covering_every_slot(redis_cluster: LocalCluster) -> None:
    import redis

    r = redis.Redis(host="127.0.0.1", port=redis_cluster.ports[1], decode_responses=True)
    try:
        info = r.execute_command("CLUSTER", "INFO")
        text = info if isinstance(info, str) else str(info)
        assert "cluster_state:ok" in text and f"cluster_slots_assigned:{SLOTS}" in text
        assert "cluster_size:3" in text
    finally:
        r.close()
    # Keys of different tags land on every master; one tag is one master.
    owners = {redis_cluster.master_of(f"{{t{i}}}:jobs") for i in range(30)}
    assert owners == set(redis_cluster.ports)
    assert len({redis_cluster.master_of(f"{{sendgate}}:{k}") for k in ("jobs", "events", "idem:x", "{lease}:b")}) == 1


async def test_the_cluster_client_follows_moved_from_any_node(redis_cluster: LocalCluster) -> None:
    keys = [f"{{m{i}}}:k" for i in range(8)]
    assert len({redis_cluster.master_of(k) for k in keys}) >= 2  # not all on the first node's slots
    for port in redis_cluster.ports:  # each node as the URL's: the client finds each slot's owner
        client = cluster_from_url(f"redis://127.0.0.1:{port}")
        assert is_cluster(client)
        try:
            for k in keys:
                await client.set(k, str(port), ex=30)
            assert await client.mget_nonatomic(*keys) == [str(port).encode()] * len(keys)  # split per slot by the client
        finally:
            await client.delete(*keys)
            await client.aclose()
