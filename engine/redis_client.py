"""One way to build a Redis client from the settings: ACL user, password, TLS.

Why one function: the engine, ``sendgate send``, ``erase``, ``purge``,
``history`` and ``archive`` all talk to the same Redis, and every one of
them must honour ``[redis] username``/``password`` (Redis 6+ ACL users) and,
for ``rediss://`` URLs, the CA bundle and client certificate
(``tls_ca_file``, ``tls_cert_file``, ``tls_key_file``). A value in the
settings wins over the URL's own userinfo. Certificates are always
verified, host name included (redis-py's ``ssl_cert_reqs="required"``).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from engine.config import RedisSettings, Settings

__all__ = ["redis_from_settings", "redis_options"]


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

    ``extra`` keyword arguments of ``Redis.from_url`` win over those the settings give.
    """
    url = url if url is not None else settings.redis.url
    return Redis.from_url(url, **{**redis_options(settings.redis, url), **extra})
