"""Reading the sealed message text of history rows (``[history] keep_text``).

The rows' ``text_enc`` column is read only here, for the two readers that may
show a text: ``sendgate history --show-text`` (audited) and ``sendgate export``
(the subject's own data). Both stores answer the same two queries; the text is
opened with the configured key(s) (engine/history/text_cipher.py). A row
hidden by an erasure has no ``text_enc`` any more (its ``hide`` clears it), a
deleted row has no row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.history.text_cipher import TextCipher, TextOpenError, inbound_aad, job_aad

__all__ = ["TextOpenError", "inbound_text_blobs", "job_text_blobs", "open_inbound_texts", "open_job_texts"]

_CHUNK = 500


async def job_text_blobs(store: Any, job_ids: Sequence[str]) -> dict[str, bytes]:
    """``job id -> text_enc`` of the rows that have one (visible or hidden)."""
    ids = list(dict.fromkeys(job_ids))
    out: dict[str, bytes] = {}
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        if store.dialect == "postgres":
            pool = await store._get_pool()
            rows = await pool.fetch(
                "SELECT job_id, text_enc FROM messages WHERE job_id = ANY($1::text[]) AND text_enc IS NOT NULL", chunk
            )
        else:
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT job_id, text_enc FROM messages WHERE job_id IN ({marks}) AND text_enc IS NOT NULL"
            rows = await store._call(lambda conn, sql=sql, chunk=chunk: conn.execute(sql, chunk).fetchall())
        out.update((r[0], bytes(r[1])) for r in rows)
    return out


async def inbound_text_blobs(store: Any, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], bytes]:
    """``(stream, entry id) -> text_enc`` of the inbound rows that have one."""
    out: dict[tuple[str, str], bytes] = {}
    keys = list(dict.fromkeys(keys))
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i : i + _CHUNK]
        if store.dialect == "postgres":
            pool = await store._get_pool()
            rows = await pool.fetch(
                "SELECT stream, entry_id, text_enc FROM inbound WHERE (stream, entry_id) IN "
                "(SELECT * FROM unnest($1::text[], $2::text[])) AND text_enc IS NOT NULL",
                [k[0] for k in chunk], [k[1] for k in chunk],
            )
        else:
            cond = " OR ".join("(stream = ? AND entry_id = ?)" for _ in chunk)
            sql = f"SELECT stream, entry_id, text_enc FROM inbound WHERE ({cond}) AND text_enc IS NOT NULL"
            params = [v for k in chunk for v in k]
            rows = await store._call(lambda conn, sql=sql, params=params: conn.execute(sql, params).fetchall())
        out.update(((r[0], r[1]), bytes(r[2])) for r in rows)
    return out


def open_job_texts(cipher: TextCipher, blobs: dict[str, bytes]) -> dict[str, str]:
    """Open each job's blob (its job id the associated data); raises `TextOpenError`."""
    return {jid: cipher.open(job_aad(jid), blob) for jid, blob in blobs.items()}


def open_inbound_texts(cipher: TextCipher, blobs: dict[tuple[str, str], bytes]) -> dict[tuple[str, str], str]:
    return {key: cipher.open(inbound_aad(key[1]), blob) for key, blob in blobs.items()}
