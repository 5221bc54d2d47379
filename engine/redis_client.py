"""One way to build a Redis client from the settings: ACL user, password, TLS.

Why one function: the engine, ``sendgate send``, ``erase``, ``purge``,
``history`` and ``archive`` all talk to the same Redis, and every one of
them must honour ``[redis] username``/``password`` (Redis 6+ ACL users) and,
for ``rediss://`` URLs, the CA bundle and client certificate
(``tls_ca_file``, ``tls_cert_file``, ``tls_key_file``). A value in the
settings wins over the URL's own userinfo. Certificates are always
verified, host name included (redis-py's ``ssl_cert_reqs="required"``).

**Redis Cluster** (``[redis] cluster = true``, docs/operating-cluster.md): the
same function returns redis-py's asyncio ``RedisCluster`` built from the URL
(any node; the others are discovered), which follows MOVED/ASK redirections
and reconnects by itself. It answers the commands the engine uses like a
plain ``Redis`` does — every script call, transaction and multi-stream read
the engine issues touches one slot (see the audit in that page) — so it is
typed as one. Where the two differ (a raw connection pool, a second client
on the same connections) the callers ask :func:`is_cluster` and
:func:`raw_reply_client`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from engine.config import RedisSettings, Settings

__all__ = ["cluster_from_url", "is_cluster", "raw_reply_client", "redis_from_settings", "redis_options"]

#: Attribute on a cluster client: how to build another client of the same cluster.
_FACTORY = "_sendgate_factory"


def redis_options(r: RedisSettings, url: str) -> dict[str, Any]:
    """Keyword arguments of ``Redis.from_url(url, …)`` for the ACL user and TLS of ``r``."""
    options: dict[str, Any] = {}
    if r.username:
        options["username"] = r.username
    if r.password:
        options["password"] = r.password
    if url.lower().startswith("rediss://"):
        options["ssl_cert_reqs"] = "required"
        options["ssl_check_hostname"] = True
        if r.tls_ca_file:
            options["ssl_ca_certs"] = r.tls_ca_file
        if r.tls_cert_file:
            options["ssl_certfile"] = r.tls_cert_file
            options["ssl_keyfile"] = r.tls_key_file
    return options


def redis_from_settings(settings: Settings, url: str | None = None, **extra: Any) -> Redis:
    """A ``redis.asyncio.Redis`` for ``url`` (default ``[redis] url``) with the settings' credentials and TLS.

    With ``[redis] cluster = true`` a ``RedisCluster`` (typed as ``Redis``; see the module doc).
    ``extra`` keyword arguments of ``Redis.from_url`` win over those the settings give.
    """
    url = url if url is not None else settings.redis.url
    options = {**redis_options(settings.redis, url), **extra}
    if settings.redis.cluster:
        return cluster_from_url(url, **options)
    return Redis.from_url(url, **options)


def cluster_from_url(url: str, **options: Any) -> Redis:
    """A ``RedisCluster`` client of the cluster that ``url``'s node belongs to (typed as ``Redis``).

    The URL names one node; its path must be empty or ``/0`` (a cluster has no other
    database). Blocking reads use the engine's own short blocks (``block_ms``), so the
    client keeps redis-py's cluster default socket timeout.
    """
    def make() -> RedisCluster:
        return RedisCluster.from_url(url, **options)

    client = make()
    setattr(client, _FACTORY, make)
    return cast(Redis, client)


def is_cluster(redis: Any) -> bool:
    """Whether ``redis`` is a Redis Cluster client (or a pipeline of one)."""
    return isinstance(redis, RedisCluster)


def raw_reply_client(redis: Redis, commands: Iterable[str], callback: Callable[..., Any]) -> Redis:
    """A client of the same Redis whose replies to ``commands`` go through ``callback`` (the raw reply).

    Plain Redis: a second client on ``redis``'s own connection pool. Cluster: a second
    cluster client built like ``redis`` (its own connections to each master).
    """
    if is_cluster(redis):
        factory: Callable[[], RedisCluster] | None = getattr(redis, _FACTORY, None)
        if factory is None:
            raise TypeError("raw_reply_client: a RedisCluster not built by engine.redis_client")
        cluster = factory()
        setattr(cluster, _FACTORY, factory)
        for command in commands:
            cluster.set_response_callback(command, callback)
        return cast(Redis, cluster)
    reader = Redis(connection_pool=redis.connection_pool)
    for command in commands:
        reader.set_response_callback(command, callback)
    return reader
