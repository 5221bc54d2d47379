"""``sendgate erase`` and ``sendgate purge``: the data subject's rights and retention, on demand.

``erase --to NUMBER`` / ``--client ID`` covers every record of that subject
(job records, correlation entries, raw job payloads) through the subject
indexes the record script maintains; by default the records are hidden at
once and re-stamped to disappear one message retention after the request,
``--now`` deletes them at once. Either way an audit entry is written, with
the subject as its keyed hash — never the number in clear.

``purge`` applies retention to the streams now (records with a TTL expire
by themselves): raw job payloads older than the payload retention, events,
dead letters and inbound messages older than the message retention.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from engine.config import Settings
from engine.keys import Keys
from engine.stream_trim import trim_streams
from privacy_hooks import RetentionPolicy, keyed_hash, mask_number
from privacy_hooks.audit import AuditLog
from privacy_hooks.erasure import client_subject, erase_subject

__all__ = ["erase_main", "purge_main", "retention_policy"]


def retention_policy(settings: Settings) -> RetentionPolicy:
    d = settings.privacy.retention_days
    return RetentionPolicy(
        message=d.message, payload=d.payload, activity_log=d.activity_log, audit=d.audit,
        dlr_wait_h=settings.privacy.dlr_wait_h,
    )


def _redis(settings: Settings) -> Redis:
    if not settings.redis.url:
        raise SystemExit("sendgate: erase/purge need a Redis: set REDIS_URL or [redis] url")
    from engine.redis_client import redis_from_settings

    return redis_from_settings(settings)


async def erase_main(settings: Settings, *, to: str | None, client: str | None, now: bool) -> int:
    """Erase one subject; prints a summary without the number in clear."""
    from engine.job import normalise_number

    redis = _redis(settings)
    prefix = settings.redis.prefix
    policy = retention_policy(settings)
    try:
        if to is not None:
            digits = normalise_number(to)
            if digits is None:
                print("sendgate erase: --to is not an E.164 number")
                return 2
            subject = keyed_hash(settings.privacy.hash_secret.encode(), digits)
            label = mask_number("+" + digits)
        else:
            assert client is not None
            subject = client_subject(client)
            label = f"client {client}"
        audit = AuditLog(redis, Keys(prefix).audit, policy.audit)
        result = await erase_subject(redis, prefix, subject, time.time(), policy, immediate=now, audit=audit,
                                     requested_by="cli")
        mode = "deleted" if now else "hidden, to disappear at retention"
        print(f"erased {label}: {result.records} record(s) {mode}, {result.payloads} raw payload(s) deleted; "
              f"audit entry {result.audit_id}")
        return 0
    finally:
        await redis.aclose()


async def purge_main(settings: Settings) -> int:
    """Trim streams past their retention now."""
    redis = _redis(settings)
    try:
        trimmed = await trim_streams(redis, settings, approximate=False)
        for stream, days, removed in trimmed:
            print(f"{stream}: {removed} entr{'y' if removed == 1 else 'ies'} past {days} days removed")
        audit = AuditLog(redis, Keys(settings.redis.prefix).audit, retention_policy(settings).audit)
        await audit.record(
            "purge", removed=sum(r for _s, _d, r in trimmed),
            # names without the prefix: "jobs=12,events=0,…" (a prefix is no subject, but may hold digits)
            streams=",".join(f"{stream.removeprefix(settings.redis.prefix + ':')}={removed}" for stream, _d, removed in trimmed),
        )
        return 0
    finally:
        await redis.aclose()
