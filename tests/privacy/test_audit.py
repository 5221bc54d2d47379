"""AuditLog against a real Redis: fields, masking, trimming to the retention at write."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from privacy_hooks import keyed_hash
from privacy_hooks.audit import AuditLog


async def test_record_writes_action_ts_and_fields(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    audit = AuditLog(redis_client, f"{key_prefix}:audit")
    subject = keyed_hash(b"k", "+4512345678")
    before = int(time.time() * 1000)
    entry_id = await audit.record("erase", subject=subject, records=3, immediate=True, skip=None)
    entries = await audit.entries()
    assert entries[0][0] == entry_id
    fields = entries[0][1]
    assert fields["action"] == "erase"
    assert fields["subject"] == subject
    assert fields["records"] == "3"
    assert fields["immediate"] == "1"
    assert "skip" not in fields
    assert int(fields["ts"]) >= before
    assert audit.masked_fields == 0


async def test_numbers_are_never_written_in_clear(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    audit = AuditLog(redis_client, f"{key_prefix}:audit")
    await audit.record(
        "erase", to="+4512345678", note="asked by 4598765432 by phone", text="Hello Bob"
    )
    raw = await redis_client.xrange(f"{key_prefix}:audit")
    dump = repr(raw)
    assert "4512345678" not in dump and "4598765432" not in dump and "Hello Bob" not in dump
    fields = (await audit.entries())[0][1]
    assert fields["to"] == "+45******78"
    assert fields["note"] == "asked by 45******32 by phone"
    assert fields["text"] == "[redacted]"
    assert audit.masked_fields == 2


async def test_a_stream_entry_id_is_kept_but_a_number_in_its_field_is_masked(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    # An opt-out's audit entry names the inbound entry it came from: kept as written.
    audit = AuditLog(redis_client, f"{key_prefix}:audit")
    await audit.record("suppress_add", entry="1765000000123-7")
    await audit.record("suppress_add", entry="+4512345678")
    first, second = [fields for _id, fields in reversed(await audit.entries())]
    assert first["entry"] == "1765000000123-7"
    assert "4512345678" not in second["entry"]
    assert audit.masked_fields == 1


async def test_entries_older_than_retention_go_at_write(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    key = f"{key_prefix}:audit"
    day_ms = 86_400_000
    now_ms = int(time.time() * 1000)
    # Entries written long ago (explicit ids carry their unix ms).
    await redis_client.xadd(key, {"action": "ancient"}, id="1000-0")
    await redis_client.xadd(key, {"action": "old"}, id=f"{now_ms - 31 * day_ms}-0")
    await redis_client.xadd(key, {"action": "recent"}, id=f"{now_ms - 29 * day_ms}-0")
    audit = AuditLog(redis_client, key, retention_days=30)
    await audit.record("config_reload")
    actions = [fields["action"] for _, fields in await audit.entries()]
    assert actions == ["config_reload", "recent"]
    assert await redis_client.xlen(key) == 2
