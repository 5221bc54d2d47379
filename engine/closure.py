"""Account closure: ``sendgate close-client ID`` and ``reopen-client ID``.

Why this shape: closing an account must stop its sending at once across the
fleet without a round trip per message, and must put its records on the
policy's clock from the closure. So:

- the closure is one field of a fleet-global hash (``Keys.clients_closed``:
  client id -> closure unix s). Every engine reads the whole hash every few
  seconds (:func:`closed_clients`, one ``HGETALL``) and checks a job's
  ``client`` in memory; a job of a closed client is dead-lettered with code
  ``client_closed`` (event ``rejected``), held jobs too when their time comes;
- its records are re-stamped: the history store's visible rows (jobs and
  inbound messages) get
  ``retention_until`` = closure + the message retention (60 + 60 days), and
  its contacts — the client's suppression list — expire after the payload
  retention (60 days) unless the account is reopened;
- ``reopen-client`` removes the mark, puts the rows' deadline back to their
  normal one (first event + the message retention) and takes the expiry off
  the suppression list, if it is still there. What is gone stays gone.

Both write an audit entry (``client_close`` / ``client_reopen``) with counts.
The store still drops whole days at the message retention from their first
event (engine/history): a row's deadline never keeps it past its day's drop.
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from engine.config import Settings
from engine.history.inbound import inbound_table
from engine.keys import Keys, shard_keys
from privacy_hooks.audit import AuditLog

__all__ = ["close_client", "close_main", "closed_clients", "reopen_client"]


async def closed_clients(redis: Redis, keys: Keys) -> frozenset[str]:
    """The ids of every closed client (one HGETALL)."""
    raw: Any = await redis.hkeys(keys.clients_closed)
    return frozenset(k.decode() if isinstance(k, bytes) else str(k) for k in raw)


async def close_client(
    redis: Redis, settings: Settings, client: str, *, store: Any = None, now_s: float | None = None,
    actor: str = "",
) -> dict[str, Any]:
    """Close ``client``'s account (see the module docstring); returns what was done."""
    now = int(time.time() if now_s is None else now_s)
    keys = Keys(settings.redis.prefix)
    days = settings.privacy.retention_days
    message_ttl, contacts_ttl = int(days.message * 86400), int(days.payload * 86400)
    newly = int(await redis.hsetnx(keys.clients_closed, client, now))
    closed_at = int(await redis.hget(keys.clients_closed, client) or now)
    rows = inbound_rows = 0
    if store is not None:
        await store.migrate()
        rows = await store.restamp_client(client, retention_until=closed_at + message_ttl, message_ttl_s=message_ttl)
        inbound_rows = await inbound_table(store).restamp_client(
            client, retention_until=closed_at + message_ttl, message_ttl_s=message_ttl)
    # only an expiry the list does not have yet: closing twice does not push it back
    contacts = 0
    for shard in shard_keys(settings.redis.prefix, settings.redis.shards):  # every shard's copy of the list
        if int(await redis.ttl(shard.suppression(client))) == -1:  # a list without an expiry yet (-2: no list)
            contacts = max(contacts, int(await redis.expire(shard.suppression(client),
                                                            max(1, closed_at + contacts_ttl - now))))
    done = {"client": client, "closed_at": closed_at, "already_closed": 1 - newly, "history_rows": rows,
            "inbound_history_rows": inbound_rows,
            "retention_until": closed_at + message_ttl, "contacts_until": closed_at + contacts_ttl,
            "suppression_list": contacts}
    audit = AuditLog(redis, keys.audit, days.audit, actor=actor)
    done["audit_id"] = await audit.record("client_close", **done)
    return done


async def reopen_client(
    redis: Redis, settings: Settings, client: str, *, store: Any = None, actor: str = "",
) -> dict[str, Any]:
    """Reopen ``client``'s account: undo what :func:`close_client` did to what is still there."""
    keys = Keys(settings.redis.prefix)
    days = settings.privacy.retention_days
    message_ttl = int(days.message * 86400)
    was = int(await redis.hdel(keys.clients_closed, client))
    rows = inbound_rows = 0
    if store is not None:
        await store.migrate()
        rows = await store.restamp_client(client, retention_until=None, message_ttl_s=message_ttl)
        inbound_rows = await inbound_table(store).restamp_client(client, retention_until=None, message_ttl_s=message_ttl)
    contacts = 0
    for shard in shard_keys(settings.redis.prefix, settings.redis.shards):  # every shard's copy of the list
        contacts = max(contacts, int(await redis.persist(shard.suppression(client))))
    done = {"client": client, "was_closed": was, "history_rows": rows, "inbound_history_rows": inbound_rows,
            "suppression_list": contacts}
    audit = AuditLog(redis, keys.audit, days.audit, actor=actor)
    done["audit_id"] = await audit.record("client_reopen", **done)
    return done


async def close_main(settings: Settings, client: str, *, reopen: bool) -> int:
    """``sendgate close-client ID`` / ``reopen-client ID``: prints what was done."""
    from engine.erase import redis_for
    from engine.history.cli import store_for

    if not client:
        print("sendgate: the client id must not be empty")
        return 2
    redis = redis_for(settings)
    store = store_for(settings) if settings.history.enabled else None
    try:
        if reopen:
            r = await reopen_client(redis, settings, client, store=store)
            state = "reopened" if r["was_closed"] else "was not closed;"
            print(f"client {client} {state} {r['history_rows']} history row(s) and "
                  f"{r['inbound_history_rows']} inbound message(s) back to their normal deadline, "
                  f"suppression list {'kept' if r['suppression_list'] else 'unchanged'}; audit entry {r['audit_id']}")
        else:
            r = await close_client(redis, settings, client, store=store)
            print(f"client {client} closed at {r['closed_at']}{' (already)' if r['already_closed'] else ''}: "
                  f"new jobs are dead-lettered (client_closed); {r['history_rows']} history row(s) and "
                  f"{r['inbound_history_rows']} inbound message(s) re-stamped to "
                  f"{r['retention_until']}, contacts until {r['contacts_until']}; audit entry {r['audit_id']}")
        return 0
    finally:
        if store is not None:
            await store.close()
        await redis.aclose()
