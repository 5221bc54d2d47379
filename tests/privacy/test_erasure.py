"""erase_subject against a real Redis: hide-and-restamp by default, delete with immediate."""

from __future__ import annotations

from typing import Any

import pytest

from privacy_hooks import BaseHook, HookChain, RetentionPolicy, keyed_hash
from privacy_hooks.audit import AuditLog
from privacy_hooks.erasure import (
    STRIPPED_FIELDS,
    ErasureResult,
    SubjectJob,
    client_subject,
    erase_subject,
)
from privacy_hooks.masking import mask_number
from tests.correlation import STAGED_END_MS, entry_ttl_ms, get_entry, put_entry

SECRET = b"test-secret"
NUMBER = "+4512345678"  # fake sample numbers
OTHER_NUMBER = "+4587654321"
NOW = 1_900_000_000.0
DAY = 86_400
POLICY = RetentionPolicy()


async def _first_event(redis: Any, prefix: str, job_id: str, number: str, client: str = "", **fields: Any) -> None:
    """The first event of a job, as engine/record.lua writes it: it describes the job
    (the keyed hash and mask of the number, the client) for the history archiver."""
    await redis.xadd(f"{prefix}:events", {
        "id": job_id, "ref": fields.get("ref", f"order-{job_id}"), "event": "submitted",
        "carrier": fields.get("carrier", "acme"), "parts": fields.get("parts", 2),
        "message_ids": fields.get("message_ids", f"{job_id}-m1,{job_id}-m2"), "error": "", "ts": int(NOW * 1000),
        "client": client, "kind": "transactional", "to_hash": keyed_hash(SECRET, number),
        "to_mask": mask_number(number), "encoding": "gsm7", "retention_until": int(NOW) + 120 * DAY,
    })


async def _submit(redis: Any, prefix: str, job_id: str, number: str, carrier: str = "acme") -> None:
    """What the engine's submit side writes for a job of two parts with a callback
    (see privacy_hooks.erasure): a job record, correlation entries, its first event."""
    subject = keyed_hash(SECRET, number)
    entry_id = await redis.xadd(
        f"{prefix}:jobs", {"id": job_id, "to": number, "text": "Hello Bob", "client": "shop"}
    )
    await redis.hset(
        f"{prefix}:job:{job_id}",
        mapping={
            "ref": f"order-{job_id}",
            "carrier": carrier,
            "client": "shop",
            "callback": "https://shop.example/cb",
            "parts": 2,
            "message_ids": f"{job_id}-m1,{job_id}-m2",
            "state": "submitted",
            "to_hash": subject,
            "src_key": f"{prefix}:jobs",
            "src_id": entry_id,
            "retention_until": int(NOW) + 3 * DAY,
        },
    )
    await redis.expire(f"{prefix}:job:{job_id}", 3 * DAY)
    for part, mid in enumerate((f"{job_id}-m1", f"{job_id}-m2"), 1):
        # jobs spread over three buckets: erasure finds entries in any of them
        end_ms = STAGED_END_MS + sum(map(ord, job_id)) % 3 * 1000
        await put_entry(redis, prefix, carrier, mid, f"{part}:0:{job_id}", end_ms=end_ms)
    await _first_event(redis, prefix, job_id, number, client="shop", carrier=carrier)


async def _text_of_everything(redis: Any, prefix: str) -> str:
    dump = []
    async for key in redis.scan_iter(match=f"{prefix}:*"):
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            dump.append(repr(await redis.hgetall(key)))
        elif kind == "stream":
            dump.append(repr(await redis.xrange(key)))
        elif kind == "string":
            dump.append(repr(await redis.get(key)))
        elif kind == "set":
            dump.append(repr(await redis.smembers(key)))
    return "\n".join(dump)


async def test_default_erasure_hides_now_and_restamps(redis_client: Any, key_prefix: str) -> None:
    for i in range(3):
        await _submit(redis_client, key_prefix, f"j{i}", NUMBER)
    await _submit(redis_client, key_prefix, "other", OTHER_NUMBER)
    subject = keyed_hash(SECRET, NUMBER)

    result = await erase_subject(redis_client, key_prefix, subject, NOW, POLICY)

    assert (result.records, result.missing, result.payloads) == (3, 0, 3)
    assert result.retention_until == int(NOW) + 120 * DAY
    for i in range(3):
        key = f"{key_prefix}:job:j{i}"
        record = {k.decode(): v.decode() for k, v in (await redis_client.hgetall(key)).items()}
        assert record["erased"] == "1"
        assert record["erased_at"] == str(int(NOW))
        assert record["retention_until"] == str(int(NOW) + 120 * DAY)
        assert not set(STRIPPED_FIELDS) & record.keys()
        assert record["state"] == "submitted"  # operational fields stay
        assert record["carrier"] == "acme"
        # the policy's deadline is stamped; the hot record is not kept longer for it
        # (its TTL, the receipt wait, is shorter): the history row carries the rest
        ttl = await redis_client.ttl(key)
        assert 3 * DAY - 60 <= ttl <= 3 * DAY
        # Receipts still correlate until their own short TTL runs out.
        assert await get_entry(redis_client, key_prefix, "acme", f"j{i}-m1") == f"1:0:j{i}".encode()
    # Raw payloads with the number and text in clear are gone at once.
    entries = await redis_client.xrange(f"{key_prefix}:jobs")
    assert [e[1][b"id"] for e in entries] == [b"other"]
    # The subject's events are gone from Redis (the engine writes them to the history
    # store first, where a later immediate erasure finds the rows); the other's stay.
    assert [f[b"id"] for _i, f in await redis_client.xrange(f"{key_prefix}:events")] == [b"other"]
    assert result.events == 3 and result.jobs == 3
    # The other subject is untouched.
    other = await redis_client.hgetall(f"{key_prefix}:job:other")
    assert other[b"ref"] == b"order-other" and b"erased" not in other
    # Nothing of the subject is left in clear anywhere under the prefix.
    dump = await _text_of_everything(redis_client, key_prefix)
    assert "order-j0" not in dump
    assert dump.count("Hello Bob") == 1  # the other subject's payload
    assert NUMBER.lstrip("+") not in dump


async def test_audit_entry_has_hash_not_number(redis_client: Any, key_prefix: str) -> None:
    await _submit(redis_client, key_prefix, "j1", NUMBER)
    subject = keyed_hash(SECRET, NUMBER)
    result = await erase_subject(
        redis_client, key_prefix, subject, NOW, POLICY, requested_by="ops@example"
    )
    entries = await AuditLog(redis_client, f"{key_prefix}:audit").entries()
    assert len(entries) == 1
    entry_id, fields = entries[0]
    assert entry_id == result.audit_id
    assert fields["action"] == "erase"
    assert fields["subject"] == subject
    assert fields["mode"] == "policy"
    assert fields["records"] == "1"
    assert fields["requested_by"] == "ops@example"
    assert NUMBER.lstrip("+") not in repr(fields)


async def test_immediate_erasure_deletes(redis_client: Any, key_prefix: str) -> None:
    for i in range(2):
        await _submit(redis_client, key_prefix, f"j{i}", NUMBER)
    await _submit(redis_client, key_prefix, "other", OTHER_NUMBER)
    subject = keyed_hash(SECRET, NUMBER)
    seen: list[ErasureResult] = []

    class Notify(BaseHook):
        def on_erase(self, result: ErasureResult) -> None:
            seen.append(result)

    result = await erase_subject(
        redis_client, key_prefix, subject, NOW, POLICY, immediate=True, hooks=HookChain([Notify()])
    )
    assert (result.records, result.payloads, result.immediate) == (2, 2, True)
    assert seen == [result]
    for i in range(2):
        assert not await redis_client.exists(f"{key_prefix}:job:j{i}")
        assert await get_entry(redis_client, key_prefix, "acme", f"j{i}-m1") is None
        assert await get_entry(redis_client, key_prefix, "acme", f"j{i}-m2") is None
    assert [f[b"id"] for _i, f in await redis_client.xrange(f"{key_prefix}:events")] == [b"other"]
    assert await redis_client.exists(f"{key_prefix}:job:other")
    assert await get_entry(redis_client, key_prefix, "acme", "other-m1") == b"1:0:other"
    fields = (await AuditLog(redis_client, f"{key_prefix}:audit").entries())[0][1]
    assert fields["mode"] == "now"


async def test_policy_then_now_finds_the_hidden_records(redis_client: Any, key_prefix: str) -> None:
    await _submit(redis_client, key_prefix, "j1", NUMBER)
    subject = keyed_hash(SECRET, NUMBER)
    await erase_subject(redis_client, key_prefix, subject, NOW, POLICY)
    # the events are gone with the first erasure: the jobs come from the history store
    # (engine/erase.py), which finds hidden rows too
    result = await erase_subject(
        redis_client, key_prefix, subject, NOW + 60, POLICY, immediate=True,
        jobs=[SubjectJob("j1", "acme", "j1-m1,j1-m2")],
    )
    assert (result.records, result.payloads) == (1, 0)  # payload was already gone
    assert not await redis_client.exists(f"{key_prefix}:job:j1")


async def test_many_jobs_in_batches_and_missing_records(redis_client: Any, key_prefix: str) -> None:
    subject = keyed_hash(SECRET, NUMBER)
    pipe = redis_client.pipeline(transaction=False)
    for i in range(57):
        pipe.hset(f"{key_prefix}:job:b{i}", mapping={"state": "delivered", "to_hash": subject})
    await pipe.execute()
    for i in range(57):
        await _first_event(redis_client, key_prefix, f"b{i}", NUMBER, parts=1, message_ids="")
    for i in range(5):  # jobs whose record is gone already (finished), still in the events
        await _first_event(redis_client, key_prefix, f"gone{i}", NUMBER, parts=1, message_ids="")
    result = await erase_subject(redis_client, key_prefix, subject, NOW, POLICY, batch=10)
    assert (result.records, result.missing, result.payloads) == (57, 5, 0)
    states = [await redis_client.hget(f"{key_prefix}:job:b{i}", "erased") for i in range(57)]
    assert states == [b"1"] * 57


async def test_client_subject_erases_the_whole_account(redis_client: Any, key_prefix: str) -> None:
    await _submit(redis_client, key_prefix, "j1", NUMBER)
    await _submit(redis_client, key_prefix, "j2", OTHER_NUMBER)
    result = await erase_subject(redis_client, key_prefix, client_subject("shop"), NOW, POLICY)
    assert result.records == 2
    assert await redis_client.hget(f"{key_prefix}:job:j2", "erased") == b"1"


async def test_unknown_subject_is_a_no_op_with_an_audit_entry(
    redis_client: Any, key_prefix: str
) -> None:
    result = await erase_subject(redis_client, key_prefix, "f" * 32, NOW, POLICY)
    assert (result.records, result.missing) == (0, 0)
    assert await redis_client.xlen(f"{key_prefix}:audit") == 1


@pytest.mark.parametrize("subject", [NUMBER, "4512345678", "", "client:", "ABC" * 11])
async def test_refuses_anything_but_a_hash_or_client(
    redis_client: Any, key_prefix: str, subject: str
) -> None:
    with pytest.raises(ValueError) as info:
        await erase_subject(redis_client, key_prefix, subject, NOW, POLICY)
    assert "4512345678" not in str(info.value)


def _normalize(carrier: str, message_id: str) -> list[str]:
    """The carrier's dlr_id_format as the engine applies it (here: lower case, no leading 0)."""
    return [message_id.lower().lstrip("0")]


async def _submit_single(redis: Any, prefix: str, job_id: str, raw_id: str, dlr_id: str) -> None:
    """A single-part job as the record script writes it: a fast-path correlation entry
    ("=<submitted>US<message_ids>US<ref>US<job id>"), keyed by the normalised id, and its
    first event; no job record."""
    await put_entry(redis, prefix, "acme", dlr_id, f"=5\x1f{raw_id}\x1forder-{job_id}\x1f{job_id}")
    await _first_event(redis, prefix, job_id, NUMBER, parts=1, message_ids=raw_id)


async def test_hiding_keeps_no_ref_in_correlation_entries(redis_client: Any, key_prefix: str) -> None:
    await _submit_single(redis_client, key_prefix, "s1", "00AB", "ab")
    result = await erase_subject(redis_client, key_prefix, keyed_hash(SECRET, NUMBER), NOW, POLICY,
                                 normalize=_normalize)
    assert (result.jobs, result.records, result.missing) == (1, 0, 1)
    # the fast form without its ref: the receipt still correlates; the bucket keeps its TTL
    assert await get_entry(redis_client, key_prefix, "acme", "ab") == b"=5\x1f00AB\x1f\x1fs1"
    assert 3_500_000 < await entry_ttl_ms(redis_client, key_prefix, "acme", "ab") <= 3_600_000
    assert "order-s1" not in await _text_of_everything(redis_client, key_prefix)


async def test_immediate_erasure_deletes_entries_by_normalised_id(redis_client: Any, key_prefix: str) -> None:
    await _submit_single(redis_client, key_prefix, "s2", "00CD", "cd")
    await erase_subject(redis_client, key_prefix, keyed_hash(SECRET, NUMBER), NOW, POLICY, immediate=True,
                        normalize=_normalize)
    assert await get_entry(redis_client, key_prefix, "acme", "cd") is None
    assert not await redis_client.exists(f"{key_prefix}:job:s2")
