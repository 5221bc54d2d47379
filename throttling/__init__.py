"""Rate limiting for sendgate: local and Redis-shared token buckets, backoff, AIMD.

* ``TokenBucket`` — sans-IO token bucket (``now`` passed in); satisfies the
  bind pool's ``RateLimiter`` protocol.
* ``GlobalTokenBucket`` — a carrier's TPS limit across all engine processes
  sharing one Redis, leased in chunks and served locally; at most ``tps`` in
  any second (``per_second``), with an adaptive limit below it that throttle
  replies cut for the whole fleet.
* ``AdaptiveRate`` — AIMD: multiplicative decrease on ESME_RTHROTTLED,
  additive recovery up to a ceiling; ``AimdSettings``, ``recovered_rate`` —
  the same schedule as settings and a closed form (the shared limit's).
* ``CarrierFlow`` — a carrier's adaptive window and rate in one engine, as the
  bind pool drives it; ``LocalAdaptiveLimiter`` — the rate of a carrier
  without a configured ``tps``.
* ``Backoff`` — exponential backoff with jitter for retries and reconnects.

Imports only the standard library, redis and engine.keys (the key names).
Only the pure modules are re-exported here, so that importing
``throttling.bucket`` does not load redis (and asyncio with it): take
``GlobalTokenBucket``, ``tps_key`` and the scripts from
``throttling.global_bucket``.
"""

from .adaptive import AdaptiveRate, AimdSettings, recovered_rate
from .backoff import Backoff, BackoffStrategy
from .bucket import TokenBucket, default_burst
from .flow import AdaptiveLimiter, CarrierFlow, LocalAdaptiveLimiter

__all__ = [
    "AdaptiveLimiter",
    "AdaptiveRate",
    "AimdSettings",
    "Backoff",
    "BackoffStrategy",
    "CarrierFlow",
    "LocalAdaptiveLimiter",
    "TokenBucket",
    "default_burst",
    "recovered_rate",
]
