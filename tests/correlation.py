"""Test helpers for correlation entries (dlr/store.py: fields of per-carrier buckets)."""

from __future__ import annotations

import time
from typing import Any

from dlr.store import correlation_bucket, put_correlation
from engine.keys import Keys

SUBMITTED_MS = 1_700_000_000_000
DLR_WAIT_MS = 72 * 3600 * 1000
# The bucket of jobs submitted at SUBMITTED_MS with the default wait: where tests
# stage entries (the sweep takes it once its now_ms reaches it).
STAGED_END_MS = correlation_bucket(SUBMITTED_MS, DLR_WAIT_MS, 2 * DLR_WAIT_MS)[0]


async def put_entry(
    r: Any, prefix: str, carrier: str, mid: str, value: str, end_ms: int = STAGED_END_MS, ttl_ms: int = 3_600_000
) -> None:
    """Stage one correlation entry in the carrier's bucket ending at ``end_ms``
    (the bucket key lives ``ttl_ms`` of real time)."""
    await put_correlation(r, prefix, carrier, {mid: value}, end_ms, int(time.time() * 1000) + ttl_ms)


async def _bucket_of(r: Any, prefix: str, carrier: str, mid: str) -> str | None:
    """The key of the carrier's bucket that holds ``mid``, or None."""
    keys = Keys(prefix)
    for end in await r.zrange(keys.correlation_index(carrier), 0, -1):
        end = end.decode() if isinstance(end, bytes) else end
        bucket = keys.correlation_bucket(carrier, end)
        if await r.hexists(bucket, mid):
            return bucket
    return None


async def get_entry(r: Any, prefix: str, carrier: str, mid: str) -> bytes | None:
    """The entry of ``mid`` in any of the carrier's buckets, or None."""
    bucket = await _bucket_of(r, prefix, carrier, mid)
    if bucket is None:
        return None
    value = await r.hget(bucket, mid)
    return value if isinstance(value, bytes) else value.encode()


async def entry_ttl_ms(r: Any, prefix: str, carrier: str, mid: str) -> int:
    """PTTL of the bucket holding ``mid`` (-2 when no bucket holds it)."""
    bucket = await _bucket_of(r, prefix, carrier, mid)
    return -2 if bucket is None else int(await r.pttl(bucket))
