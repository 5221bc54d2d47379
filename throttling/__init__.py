"""Rate limiting for sendgate: local and Redis-shared token buckets, backoff, AIMD.

* ``TokenBucket`` — sans-IO token bucket (``now`` passed in), one per bind or
  carrier; satisfies the bind pool's ``RateLimiter`` protocol.
* ``GlobalTokenBucket`` — a carrier's TPS limit across all engine processes
  sharing one Redis, leased in chunks and served locally.
* ``AdaptiveRate`` — AIMD: slows a bind down on ESME_RTHROTTLED and speeds it
  back up to the configured ceiling.
* ``Backoff`` — exponential backoff with jitter for retries and reconnects.
* ``CombinedLimiter`` — a bind's local (adaptive) bucket and the carrier's
  shared bucket as one ``RateLimiter``.

Imports only the standard library, redis and engine.keys (the key names).
Only the pure modules are re-exported here, so that importing
``throttling.bucket`` does not load redis (and asyncio with it): take
``GlobalTokenBucket``, ``tps_key`` and ``TAKE_SCRIPT`` from
``throttling.global_bucket``.
"""

from .adaptive import AdaptiveRate
from .backoff import Backoff, BackoffStrategy
from .bucket import TokenBucket, default_burst
from .combined import CombinedLimiter, RateLimiter

__all__ = [
    "AdaptiveRate",
    "Backoff",
    "BackoffStrategy",
    "CombinedLimiter",
    "RateLimiter",
    "TokenBucket",
    "default_burst",
]
