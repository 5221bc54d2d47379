"""Inbound messages in the history store: one row per inbound stream entry.

Why its own module: the inbound stream (``<prefix>:inbound``, docs/contract.md
§2.7) is archived by an archiver of its own (engine/history/inbound_archiver.py,
its own consumer group) into a table of its own (``inbound``, migration 0004),
next to the jobs' ``messages`` table and on the same store connection; the
jobs' archiver and store code stay as they are. This module is the fold
(stream entries → rows, sans-IO) and the table's statements for both
dialects, reached from any `HistoryStore` through :func:`inbound_table`.

Rules:

- one row per stream entry, keyed by (stream, entry id): archiving an entry
  again (a restart before the ack, another archiver's replay) inserts
  nothing, so a row is never doubled and an erased (hidden) row never comes
  back visible;
- ``day`` (the partition) is the UTC day of the entry id, so a replay lands
  on the same day;
- the sender is held as its keyed hash (``from_hash``, the stream's own) and
  its masked form, never in clear; ``to`` (the client's short code or
  number) is kept in clear when it is a short code (up to 6 digits) or one
  of the configured ``[[clients]] numbers``, masked otherwise (a number not
  declared as the client's own could be anyone's);
- the text is archived only with ``[history] keep_text``, sealed
  (AES-256-GCM, associated data ``inbound:<entry id>``,
  engine/history/text_cipher.py) in ``text_enc``; NULL otherwise;
- retention: ``retention_until`` is the entry's own stamp; whole days are
  dropped at the message retention (PostgreSQL: the day's partition
  ``inbound_pYYYYMMDD``; SQLite: a delete by day).
"""

from __future__ import annotations

import datetime as dt
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

import msgspec

from engine.history.store import LEDGER_KEEP_MS
from engine.history.text_cipher import TextCipher, inbound_aad
from privacy_hooks import mask_number

__all__ = [
    "INBOUND_COLUMNS",
    "InboundRecord",
    "InboundRow",
    "InboundTable",
    "inbound_group",
    "inbound_table",
    "records_from_entries",
    "to_for_history",
]

_DAY_MS = 86_400_000
_EPOCH = dt.date(1970, 1, 1)
#: Short codes are kept in clear (a service's address, not a person's).
SHORT_CODE_MAX_DIGITS = 6

#: Column order of an `InboundRecord` (the insert's order).
INBOUND_COLUMNS = (
    "stream", "entry_id", "day", "ts_ms", "from_hash", "from_mask", "to_addr", "client", "carrier",
    "parts", "total", "partial", "retention_until", "archived_ms", "text_enc",
)

InboundRecord = tuple[Any, ...]
"""One row to insert, in `INBOUND_COLUMNS` order (``day`` as days since the epoch)."""


class InboundRow(msgspec.Struct, kw_only=True):
    """One archived inbound message as the store answers it (no number in clear)."""

    stream: str
    entry_id: str
    day: str
    ts_ms: int
    from_hash: str
    from_mask: str
    to: str
    client: str
    carrier: str
    parts: int
    total: int
    partial: bool
    retention_until: int
    erased_ms: int = 0
    archived_ms: int = 0


def inbound_group(group: str) -> str:
    """The inbound archiver's consumer group, from ``[history] group``."""
    return f"{group}-inbound"


def _s(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def to_for_history(to: str, own_numbers: Collection[str]) -> str:
    """``to`` as the history holds it: in clear when a short code or one of the client
    numbers configured (``own_numbers``, digits), else masked."""
    digits = to.lstrip("+")
    if digits.isdigit() and (len(digits) <= SHORT_CODE_MAX_DIGITS or digits in own_numbers):
        return digits
    return mask_number("+" + digits if digits.isdigit() else to)


def _from_mask(sender: str) -> str:
    digits = sender.lstrip("+")
    return mask_number("+" + digits) if digits.isdigit() else mask_number(sender)


def records_from_entries(
    batch: Iterable[tuple[str, Iterable[tuple[Any, Any]]]],
    now_ms: int,
    *,
    own_numbers: Collection[str] = (),
    hash_number: Callable[[str], str] | None = None,
    retention_s: int = 0,
    cipher: TextCipher | None = None,
) -> list[InboundRecord]:
    """Rows of inbound stream entries: ``batch`` is ``[(stream, [(entry id, fields), …]), …]``,
    fields a mapping (bytes or str) or the raw flat ``[name, value, …]`` list.

    ``hash_number``: hashes a sender whose entry has no ``from_hash`` (not written by
    this engine); ``retention_s``: the stamp of an entry without ``retention_until``
    (entry time + it); ``cipher``: ``[history] keep_text``, each text sealed (one
    nonce draw per batch), else ``text_enc`` None. An entry that cannot be read
    (an id that is no stream id) is skipped, so no entry stops the archive.
    """
    out: list[InboundRecord] = []
    texts: list[tuple[bytes, str]] = []
    for stream, entries in batch:
        for eid, raw in entries:
            if raw is None:
                continue
            if isinstance(raw, list):
                it = iter(raw)
                f: Mapping[Any, Any] = {_s(k): v for k, v in zip(it, it, strict=False)}
            else:
                f = {_s(k): v for k, v in raw.items()}
            entry_id = _s(eid)
            try:
                entry_ms = int(entry_id.partition("-")[0])
                ts = int(_s(f.get("ts")) or entry_ms)
                parts = int(_s(f.get("parts")) or 1)
                total = int(_s(f.get("total")) or parts)
                retention = int(_s(f.get("retention_until")) or 0) or (entry_ms // 1000 + retention_s)
                sender = _s(f.get("from"))
                from_hash = _s(f.get("from_hash"))
                if not from_hash and hash_number is not None and sender:
                    try:
                        from_hash = hash_number(sender)
                    except ValueError:  # no digits: an alphanumeric sender
                        from_hash = ""
                out.append((
                    stream, entry_id, entry_ms // _DAY_MS, ts, from_hash, _from_mask(sender) if sender else "",
                    to_for_history(_s(f.get("to")), own_numbers), _s(f.get("client")), _s(f.get("carrier")),
                    parts, total, _s(f.get("partial")) == "1", retention, now_ms, None,
                ))
                if cipher is not None:
                    texts.append((inbound_aad(entry_id), _s(f.get("text"))))
            except ValueError:  # not written by the engine (UnicodeDecodeError is one too)
                continue
    if cipher is not None and out:
        out = [(*r[:-1], blob) for r, blob in zip(out, cipher.seal_many(texts), strict=True)]
    return out


def _row(r: Sequence[Any]) -> InboundRow:
    day = r[2]
    return InboundRow(
        stream=r[0], entry_id=r[1], day=day.isoformat() if isinstance(day, dt.date) else str(day), ts_ms=r[3],
        from_hash=r[4], from_mask=r[5], to=r[6], client=r[7], carrier=r[8], parts=r[9], total=r[10],
        partial=bool(r[11]), retention_until=r[12], erased_ms=r[13], archived_ms=r[14],
    )


_SELECT_COLUMNS = (
    "stream, entry_id, day, ts_ms, from_hash, from_mask, to_addr, client, carrier, parts, total, partial, "
    "retention_until, erased_ms, archived_ms"
)


def _one_key(from_hash: str | None, client: str | None) -> tuple[str, str]:
    given = [(k, v) for k, v in (("from_hash", from_hash), ("client", client)) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of from_hash, client")
    return given[0]


class InboundTable(Protocol):
    """The ``inbound`` table of a history store (see the module docstring)."""

    async def write(self, records: Sequence[InboundRecord]) -> int:
        """Insert a batch in one transaction (entries already there: nothing); returns the records given."""

    async def find(
        self, *, from_hash: str | None = None, client: str | None = None, limit: int = 100,
        since_ms: int | None = None, hidden: bool = False,
    ) -> list[InboundRow]:
        """Rows of one sender (by hash) or client, newest first; ``hidden``: erased ones too."""

    async def erase(
        self, *, from_hash: str | None = None, client: str | None = None,
        entries: Iterable[tuple[str, str]] = (), now_ms: int | None = None,
    ) -> int:
        """Delete every row of a sender (by hash) or a client; returns the rows deleted.

        In the same transaction, under the inbound write lock, the (stream, entry id)
        of the rows deleted and ``entries`` (the subject's entries found in the inbound
        stream) go into the inbound erasure ledger: ``write`` deletes the rows of
        ledgered entries it wrote inside its own transaction, so an archiver batch read
        before the erasure and committed after it brings nothing back (migration 0007)."""

    async def hide(
        self, *, from_hash: str | None = None, client: str | None = None, now_ms: int, retention_until: int
    ) -> int:
        """Erasure by policy: ``from_mask`` blanked, left out of `find`, re-stamped."""

    async def restamp_client(self, client: str, *, retention_until: int | None, message_ttl_s: int) -> int:
        """Account closure / reopening, as `HistoryStore.restamp_client` for jobs."""

    async def drop_expired(self, now_s: float, retention_days: int) -> list[str]:
        """Remove every day past retention; returns the days removed (ISO)."""


# ------------------------------------------------------------------ PostgreSQL
_LOCK_INBOUND = 0x53474849  # "SGHI": serialises inbound batch writes and immediate erasures
_PG_LEDGER_ANY = "SELECT EXISTS (SELECT 1 FROM erasure_ledger_inbound)"
_PG_DROP_ERASED = (
    "DELETE FROM inbound i USING erasure_ledger_inbound l, unnest($1::text[], $2::text[]) AS b(stream, entry_id) "
    "WHERE i.stream = b.stream AND i.entry_id = b.entry_id AND l.stream = b.stream AND l.entry_id = b.entry_id"
)
_PG_INSERT = (
    f"INSERT INTO inbound ({', '.join(INBOUND_COLUMNS)}) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[], $5::text[], $6::text[], $7::text[], "
    "$8::text[], $9::text[], $10::int[], $11::int[], $12::bool[], $13::bigint[], $14::bigint[], $15::bytea[]) "
    "ON CONFLICT DO NOTHING"
)
_PG_PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'inbound'::regclass
"""


def _pg_partition(day: int) -> str:
    return "inbound_p" + (_EPOCH + dt.timedelta(days=day)).strftime("%Y%m%d")


def _pg_partition_day(name: str) -> int | None:
    try:
        return (dt.datetime.strptime(name[len("inbound_p"):], "%Y%m%d").date() - _EPOCH).days
    except ValueError:
        return None


def _count(status: str) -> int:
    return int(status.split()[-1])


class _PostgresInbound:
    def __init__(self, store: Any) -> None:
        self.store = store
        self._partitions: set[int] = set()

    async def _ensure_partitions(self, conn: Any, days: set[int]) -> None:
        if not days - self._partitions:
            return
        existing = {_pg_partition_day(r[0]) for r in await conn.fetch(_PG_PARTITIONS)}
        self._partitions |= {d for d in existing if d is not None}
        for day in sorted(days - self._partitions):
            lo, hi = _EPOCH + dt.timedelta(days=day), _EPOCH + dt.timedelta(days=day + 1)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_pg_partition(day)} PARTITION OF inbound "
                f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
            )
            self._partitions.add(day)

    async def _run(self, fn: Callable[[Any], Any]) -> Any:
        import asyncpg

        from engine.history.store import HistoryError, HistoryUnavailable

        try:
            pool = await self.store._get_pool()
            async with pool.acquire() as conn:
                return await fn(conn)
        except (TimeoutError, OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as err:
            raise HistoryUnavailable(f"postgres: {type(err).__name__}: {err}") from err
        except asyncpg.PostgresError as err:
            self._partitions.clear()  # e.g. a partition another process dropped: look again
            raise HistoryError(f"postgres: {type(err).__name__}: {err}") from err

    async def write(self, records: Sequence[InboundRecord]) -> int:
        if not records:
            return 0
        columns = [list(c) for c in zip(*records, strict=True)]
        columns[2] = [_EPOCH + dt.timedelta(days=d) for d in columns[2]]

        async def run(conn: Any) -> None:
            await self._ensure_partitions(conn, {r[2] for r in records})
            async with conn.transaction():
                await conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK_INBOUND})")
                await conn.execute(_PG_INSERT, *columns)
                if await conn.fetchval(_PG_LEDGER_ANY):  # rows of entries an erasure ledgered: gone
                    await conn.execute(_PG_DROP_ERASED, columns[0], columns[1])

        await self._run(run)
        return len(records)

    async def find(
        self, *, from_hash: str | None = None, client: str | None = None, limit: int = 100,
        since_ms: int | None = None, hidden: bool = False,
    ) -> list[InboundRow]:
        column, value = _one_key(from_hash, client)
        where = f"{column} = $1 AND ts_ms >= $3" + ("" if hidden else " AND erased_ms = 0")

        async def run(conn: Any) -> list[InboundRow]:
            rows = await conn.fetch(
                f"SELECT {_SELECT_COLUMNS} FROM inbound WHERE {where} ORDER BY ts_ms DESC, entry_id DESC LIMIT $2",
                value, limit, since_ms or 0,
            )
            return [_row(r) for r in rows]

        result: list[InboundRow] = await self._run(run)
        return result

    async def erase(
        self, *, from_hash: str | None = None, client: str | None = None,
        entries: Iterable[tuple[str, str]] = (), now_ms: int | None = None,
    ) -> int:
        column, value = _one_key(from_hash, client)
        now = int(time.time() * 1000) if now_ms is None else now_ms

        async def run(conn: Any) -> int:
            async with conn.transaction():
                await conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK_INBOUND})")
                deleted = await conn.fetch(f"DELETE FROM inbound WHERE {column} = $1 RETURNING stream, entry_id", value)
                ledger = sorted({*((r[0], r[1]) for r in deleted), *entries})
                if ledger:
                    await conn.execute(
                        "INSERT INTO erasure_ledger_inbound (stream, entry_id, erased_ms) "
                        "SELECT unnest($1::text[]), unnest($2::text[]), $3 "
                        "ON CONFLICT (stream, entry_id) DO UPDATE SET erased_ms = EXCLUDED.erased_ms",
                        [e[0] for e in ledger], [e[1] for e in ledger], now,
                    )
                await conn.execute("DELETE FROM erasure_ledger_inbound WHERE erased_ms < $1", now - LEDGER_KEEP_MS)
                return len(deleted)

        result: int = await self._run(run)
        return result

    async def hide(
        self, *, from_hash: str | None = None, client: str | None = None, now_ms: int, retention_until: int
    ) -> int:
        column, value = _one_key(from_hash, client)

        async def run(conn: Any) -> int:
            return _count(await conn.execute(
                f"UPDATE inbound SET erased_ms = $2, from_mask = '', text_enc = NULL, retention_until = $3 "
                f"WHERE {column} = $1 AND erased_ms = 0", value, now_ms, retention_until,
            ))

        result: int = await self._run(run)
        return result

    async def restamp_client(self, client: str, *, retention_until: int | None, message_ttl_s: int) -> int:
        async def run(conn: Any) -> int:
            if retention_until is None:
                return _count(await conn.execute(
                    "UPDATE inbound SET retention_until = ts_ms / 1000 + $2 WHERE client = $1 AND erased_ms = 0",
                    client, message_ttl_s,
                ))
            return _count(await conn.execute(
                "UPDATE inbound SET retention_until = $2 WHERE client = $1 AND erased_ms = 0", client, retention_until,
            ))

        result: int = await self._run(run)
        return result

    async def drop_expired(self, now_s: float, retention_days: int) -> list[str]:
        today = int(now_s // 86_400)
        cutoff = today - retention_days

        async def run(conn: Any) -> list[str]:
            dropped = []
            for r in await conn.fetch(_PG_PARTITIONS):
                day = _pg_partition_day(r[0])
                if day is not None and day < cutoff:
                    await conn.execute(f"DROP TABLE IF EXISTS {r[0]}")
                    self._partitions.discard(day)
                    dropped.append((_EPOCH + dt.timedelta(days=day)).isoformat())
            await self._ensure_partitions(conn, set(range(today - 1, today + 3)))
            return sorted(dropped)

        result: list[str] = await self._run(run)
        return result


# ---------------------------------------------------------------------- SQLite
_SQLITE_DROP_ERASED = (
    "DELETE FROM inbound WHERE stream = ? AND entry_id = ? "
    "AND EXISTS (SELECT 1 FROM erasure_ledger_inbound WHERE stream = ? AND entry_id = ?)"
)
_SQLITE_INSERT = (
    f"INSERT INTO inbound ({', '.join(INBOUND_COLUMNS)}) VALUES ({', '.join('?' * len(INBOUND_COLUMNS))}) "
    "ON CONFLICT (stream, entry_id) DO NOTHING"
)


class _SqliteInbound:
    def __init__(self, store: Any) -> None:
        self.store = store

    async def _call(self, fn: Callable[[Any], Any]) -> Any:
        return await self.store._call(fn)

    async def write(self, records: Sequence[InboundRecord]) -> int:
        if not records:
            return 0
        params = [(*r[:2], (_EPOCH + dt.timedelta(days=r[2])).isoformat(), *r[3:11], int(r[11]), *r[12:])
                  for r in records]

        def run(conn: Any) -> int:
            conn.execute("BEGIN IMMEDIATE")  # SQLite's one writer: the erasure's lock too
            try:
                conn.executemany(_SQLITE_INSERT, params)
                if conn.execute("SELECT 1 FROM erasure_ledger_inbound LIMIT 1").fetchone():
                    conn.executemany(_SQLITE_DROP_ERASED, [(r[0], r[1], r[0], r[1]) for r in records])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return len(params)

        result: int = await self._call(run)
        return result

    async def find(
        self, *, from_hash: str | None = None, client: str | None = None, limit: int = 100,
        since_ms: int | None = None, hidden: bool = False,
    ) -> list[InboundRow]:
        column, value = _one_key(from_hash, client)
        where = f"{column} = ? AND ts_ms >= ?" + ("" if hidden else " AND erased_ms = 0")

        def run(conn: Any) -> list[InboundRow]:
            cur = conn.execute(
                f"SELECT {_SELECT_COLUMNS} FROM inbound WHERE {where} ORDER BY ts_ms DESC, entry_id DESC LIMIT ?",
                (value, since_ms or 0, limit),
            )
            return [_row(r) for r in cur]

        result: list[InboundRow] = await self._call(run)
        return result

    async def erase(
        self, *, from_hash: str | None = None, client: str | None = None,
        entries: Iterable[tuple[str, str]] = (), now_ms: int | None = None,
    ) -> int:
        column, value = _one_key(from_hash, client)
        now = int(time.time() * 1000) if now_ms is None else now_ms
        extra = list(entries)

        def run(conn: Any) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # SELECT then DELETE in the one write transaction (no RETURNING: SQLite < 3.35)
                deleted = conn.execute(f"SELECT stream, entry_id FROM inbound WHERE {column} = ?", (value,)).fetchall()
                conn.execute(f"DELETE FROM inbound WHERE {column} = ?", (value,))
                ledger = sorted({*((r[0], r[1]) for r in deleted), *extra})
                conn.executemany(
                    "INSERT INTO erasure_ledger_inbound (stream, entry_id, erased_ms) VALUES (?, ?, ?) "
                    "ON CONFLICT (stream, entry_id) DO UPDATE SET erased_ms = excluded.erased_ms",
                    [(st, eid, now) for st, eid in ledger],
                )
                conn.execute("DELETE FROM erasure_ledger_inbound WHERE erased_ms < ?", (now - LEDGER_KEEP_MS,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return len(deleted)

        result: int = await self._call(run)
        return result

    async def hide(
        self, *, from_hash: str | None = None, client: str | None = None, now_ms: int, retention_until: int
    ) -> int:
        column, value = _one_key(from_hash, client)
        result: int = await self._call(lambda conn: conn.execute(
            f"UPDATE inbound SET erased_ms = ?, from_mask = '', text_enc = NULL, retention_until = ? "
            f"WHERE {column} = ? AND erased_ms = 0", (now_ms, retention_until, value),
        ).rowcount)
        return result

    async def restamp_client(self, client: str, *, retention_until: int | None, message_ttl_s: int) -> int:
        def run(conn: Any) -> int:
            if retention_until is None:
                return int(conn.execute(
                    "UPDATE inbound SET retention_until = ts_ms / 1000 + ? WHERE client = ? AND erased_ms = 0",
                    (message_ttl_s, client),
                ).rowcount)
            return int(conn.execute(
                "UPDATE inbound SET retention_until = ? WHERE client = ? AND erased_ms = 0", (retention_until, client)
            ).rowcount)

        result: int = await self._call(run)
        return result

    async def drop_expired(self, now_s: float, retention_days: int) -> list[str]:
        cutoff = (_EPOCH + dt.timedelta(days=int(now_s // 86_400) - retention_days)).isoformat()

        def run(conn: Any) -> list[str]:
            days = [d for (d,) in conn.execute("SELECT DISTINCT day FROM inbound WHERE day < ?", (cutoff,))]
            if days:
                conn.execute("DELETE FROM inbound WHERE day < ?", (cutoff,))
            return sorted(days)

        result: list[str] = await self._call(run)
        return result


_TABLES: weakref.WeakKeyDictionary[Any, InboundTable] = weakref.WeakKeyDictionary()


def inbound_table(store: Any) -> InboundTable:
    """The ``inbound`` table of ``store`` (a migrated `HistoryStore`), on its connections."""
    table = _TABLES.get(store)
    if table is None:
        table = _PostgresInbound(store) if store.dialect == "postgres" else _SqliteInbound(store)
        _TABLES[store] = table
    return table
