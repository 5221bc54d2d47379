"""Suppression lists: the numbers a client may not send marketing to.

Why it looks like this: a list is a Redis SET per client
(``Keys.suppression``; jobs and inbound messages without a client share the
default list) of *keyed hashes* of numbers, never the numbers, so the list
itself holds no personal data in clear and ``claim.lua`` checks a marketing
job in the call that takes its idempotency mark (one SMISMEMBER per list and
up to 1,000 jobs)
(docs/contract.md §2.6). Opt-out keywords (engine/inbound_store.py), ``sendgate
suppress`` and the producer helper (``Producer.suppress``) all change it
through here or the same key, and every change writes an audit entry with the
subject as its hash.

``list`` can only show hashes: a number is found with ``check``.

With ``[redis] shards`` > 1 every shard holds its own copy of each list
(``P:{k}:suppress…``): ``claim.lua`` checks the copy of the job's own shard in
the call that takes its mark (one slot per call). Writes are rare and go to
every copy (a pipeline, the audit once); reads (``check``, ``list``) use shard
0's copy, which every write reaches first.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Iterable

from redis.asyncio import Redis

from engine.config import Settings
from engine.hook_chain import chain_for
from engine.job import normalise_number
from engine.keys import Keys, shard_keys
from privacy_hooks import HookChain, KeyedHasher
from privacy_hooks.audit import AuditLog

__all__ = ["SuppressionLists", "suppress_main"]


class SuppressionLists:
    """Add, remove and check numbers on clients' suppression lists (audited)."""

    def __init__(
        self, redis: Redis, prefix: str, hash_secret: str, audit_days: float = 730, *, shards: int = 1,
        hooks: HookChain | None = None,
    ) -> None:
        self.redis = redis
        self.hooks = hooks  # the privacy hook chain: custom hooks see each entry added
        self.shards: tuple[Keys, ...] = shard_keys(prefix, shards)
        self.keys = self.shards[0]
        self._hash = KeyedHasher(hash_secret.encode())
        self.audit = AuditLog(redis, self.keys.audit, audit_days)

    def hash(self, number: str) -> str:
        """The keyed hash a list holds for ``number``; ValueError if it is no E.164 number."""
        digits = normalise_number(number)
        if digits is None:
            raise ValueError("not an E.164 number")
        return self._hash(digits)

    async def add(self, numbers: Iterable[str], client: str = "", *, source: str = "api") -> int:
        """Put ``numbers`` on ``client``'s list; returns how many were not on it."""
        return await self._change(numbers, client, source, add=True)

    async def remove(self, numbers: Iterable[str], client: str = "", *, source: str = "api") -> int:
        """Take ``numbers`` off ``client``'s list; returns how many were on it."""
        return await self._change(numbers, client, source, add=False)

    async def _change(self, numbers: Iterable[str], client: str, source: str, *, add: bool) -> int:
        hashes = [self.hash(n) for n in numbers]
        if not hashes:
            return 0
        key = self.keys.suppression(client)
        if add and self.hooks is not None and self.hooks.has_custom:
            self.hooks.on_store_batch(
                "suppression", [{"client": client, "subject_hash": h, "source": source} for h in hashes], time.time()
            )
        changed = int(await (self.redis.sadd(key, *hashes) if add else self.redis.srem(key, *hashes)))
        if len(self.shards) > 1:  # the other shards' copies (claim.lua reads its own shard's)
            pipe = self.redis.pipeline(transaction=False)
            for keys in self.shards[1:]:
                other = keys.suppression(client)
                if add:
                    pipe.sadd(other, *hashes)
                else:
                    pipe.srem(other, *hashes)
            await pipe.execute()
        for h in hashes:
            await self.audit.record("suppress_add" if add else "suppress_remove", client=client, subject=h,
                                    source=source)
        return changed

    async def check(self, numbers: Iterable[str], client: str = "") -> list[bool]:
        """Whether each number is on ``client``'s list (one SMISMEMBER)."""
        hashes = [self.hash(n) for n in numbers]
        if not hashes:
            return []
        found = await self.redis.smismember(self.keys.suppression(client), hashes)
        return [bool(x) for x in found]

    async def hashes(self, client: str = "") -> AsyncIterator[str]:
        """Every hash on ``client``'s list (SSCAN)."""
        async for h in self.redis.sscan_iter(self.keys.suppression(client), count=1000):
            yield h.decode() if isinstance(h, bytes) else str(h)


async def suppress_main(settings: Settings, action: str, numbers: list[str], client: str) -> int:
    """``sendgate suppress add|remove|check|list``: prints counts, masked numbers and hashes."""
    from privacy_hooks import mask_number

    if not settings.redis.url:
        raise SystemExit("sendgate: suppress needs a Redis: set REDIS_URL or [redis] url")
    from engine.redis_client import redis_from_settings

    redis = redis_from_settings(settings)
    lists = SuppressionLists(redis, settings.redis.prefix, settings.privacy.hash_secret,
                             settings.privacy.retention_days.audit, shards=settings.redis.shards,
                             hooks=chain_for(settings))
    label = f"client {client!r}" if client else "the default list"
    try:
        if action in ("add", "remove", "check"):
            if not numbers:
                print(f"sendgate suppress {action}: give at least one number")
                return 2
            try:
                for number in numbers:
                    lists.hash(number)
            except ValueError:
                print(f"sendgate suppress {action}: not an E.164 number")
                return 2
        if action == "add":
            added = await lists.add(numbers, client, source="cli")
            print(f"added {added} number(s) to {label} ({len(numbers) - added} already on it)")
        elif action == "remove":
            removed = await lists.remove(numbers, client, source="cli")
            print(f"removed {removed} number(s) from {label} ({len(numbers) - removed} were not on it)")
        elif action == "check":
            found = await lists.check(numbers, client)
            for number, on in zip(numbers, found, strict=True):
                digits = normalise_number(number) or ""
                print(f"{mask_number('+' + digits)}\t{'suppressed' if on else 'not suppressed'}")
            return 0 if all(found) else 1
        else:
            count = 0
            async for h in lists.hashes(client):
                print(h)
                count += 1
            print(f"{count} number(s) on {label} (keyed hashes; check a number with `sendgate suppress check`)",
                  file=sys.stderr)
        return 0
    finally:
        await redis.aclose()
