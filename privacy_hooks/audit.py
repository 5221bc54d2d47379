"""The audit log: a Redis stream of privacy-relevant actions, trimmed to its retention.

Why a stream: entries are append-only, ordered, carry their own timestamp
(the entry id is the server's unix ms), and any tool (``redis-cli XRANGE``)
can read them. Why trim at write: the audit log has a retention too
(docs/contract.md §4: 2 years); ``XADD … MINID = <now - retention>`` removes, in the
same command, every entry older than that, so no sweeper is needed and the
stream never holds an entry past its deadline by more than the time to the
next write. Exact trimming (``=``, not ``~``) because audit writes are rare
and "older than retention" must mean gone, not "gone when a node fills".

Entries: ``action`` (``erase``, ``config_load``, ``purge``,
``bind_credentials_refused``, …), ``ts`` (unix ms), ``actor`` (who did it:
``engine:<consumer>`` for the engine, ``<user>@<host>`` for a command, unless
the caller names one) and the caller's fields — counts, names, hashes. Subjects appear only as keyed
hashes: a field that nevertheless looks like a phone number is masked before
it is written (and counted in ``masked_fields``); text fields are replaced by
``[redacted]``.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from .masking import looks_like_number, mask_number, redact_text
from .redaction import NUMBER_FIELDS, REDACTED, TEXT_FIELDS

__all__ = ["AuditLog", "default_actor"]

_log = logging.getLogger(__name__)
_DAY_MS = 86_400_000
# Integer fields named like this are times, written as they are (a unix time looks like a number).
_TIME_SUFFIXES = ("_until", "_ms", "_at")
#: Fields that name a Redis stream entry (``<unix ms>-<seq>``), e.g. the inbound
#: message an opt-out came from: an entry id is no phone number.
_ENTRY_FIELDS = ("entry", "entry_id")
_ENTRY_ID = re.compile(r"[0-9]{13}-[0-9]{1,19}")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def default_actor() -> str:
    """``<user>@<host>`` of this process: the actor of an entry written by a command."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name (a container without /etc/passwd entry)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


class AuditLog:
    """Audit stream ``stream_key`` keeping ``retention_days`` of entries; ``actor`` is who writes them."""

    def __init__(
        self,
        redis: Redis,
        stream_key: str,
        retention_days: float = 730,
        *,
        clock: Callable[[], float] = time.time,
        actor: str = "",
    ) -> None:
        if retention_days <= 0:
            raise ValueError(f"privacy.retention_days.audit: expected > 0, got {retention_days!r}")
        self._redis = redis
        self.stream_key = stream_key
        self.retention_ms = int(retention_days * _DAY_MS)
        self._clock = clock
        self.actor = actor or default_actor()
        #: Fields that looked like a phone number and were masked before writing.
        self.masked_fields = 0

    def clean(self, name: str, value: Any) -> str:
        """The value of field ``name`` as it may be written to the audit stream."""
        if name in TEXT_FIELDS:
            return REDACTED
        text = _text(value)
        if isinstance(value, int) and not isinstance(value, bool) and name.endswith(_TIME_SUFFIXES):
            return text  # a time (unix s or ms) has ten or more digits, and is no phone number
        if name in _ENTRY_FIELDS and _ENTRY_ID.fullmatch(text):
            return text
        if name in NUMBER_FIELDS and any(c.isdigit() for c in text):
            self.masked_fields += 1
            _log.warning("audit field %s holds a phone number; written masked", name)
            return mask_number(text)
        if looks_like_number(text):
            self.masked_fields += 1
            _log.warning("audit field %s looks like a phone number; written masked", name)
            return redact_text(text)
        return text

    async def record(self, action: str, **fields: Any) -> str:
        """Append an entry (``action``, ``ts``, ``actor``, ``fields``; ``None`` values skipped); returns its id.

        An ``actor`` in ``fields`` replaces the log's own for this entry.
        """
        if not action:
            raise ValueError("audit action must not be empty")
        now_ms = int(self._clock() * 1000)
        entry: dict[str, str] = {"action": self.clean("action", action), "ts": str(now_ms), "actor": self.actor}
        for name, value in fields.items():
            if value is not None and name not in ("action", "ts"):
                entry[name] = self.clean(name, value)
        minid = max(0, now_ms - self.retention_ms)
        entry_id: Any = await self._redis.xadd(
            self.stream_key,
            entry,  # type: ignore[arg-type]
            minid=f"{minid}-0",
            approximate=False,
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def entries(self, count: int = 100) -> list[tuple[str, dict[str, str]]]:
        """The newest ``count`` entries, newest first, decoded."""
        rows: Any = await self._redis.xrevrange(self.stream_key, count=count)
        out: list[tuple[str, dict[str, str]]] = []
        for entry_id, raw in rows:
            out.append((_text(entry_id), {_text(k): _text(v) for k, v in raw.items()}))
        return out
