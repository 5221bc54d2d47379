"""handback.lua: an engine fenced off a carrier (max_binds, every lease lost) gives the
jobs it holds back to their park streams — only entries still pending for it, claimed
ones with their idempotency marks — and a repeated call moves nothing twice."""

from __future__ import annotations

from typing import Any

from engine.keys import Keys, marks_hash
from engine.marks import read_marks
from engine.scripts import (
    ClaimBatch,
    ClaimJob,
    HandbackEntry,
    Script,
    claim_call,
    claim_mark,
    handback_call,
    payload_json,
)
from tests.engine.harness import mark_bucket

W = 3600  # the idempotency window in this test (s)
NOW = 1_764_806_400 * 1000 + 1_000_000  # ms, 1000 s into a generation


async def test_handback_moves_only_our_entries_and_gives_back_only_our_marks(
    redis_client: Any, key_prefix: str
) -> None:
    k = Keys(key_prefix)
    park = f"{key_prefix}:park:sim:1"
    await redis_client.xgroup_create(k.jobs, "g", id="0", mkstream=True)
    await redis_client.xgroup_create(park, "g", id="0", mkstream=True)
    fields = [{"id": f"j{i}", "to": "4501", "text": "x"} for i in range(4)]
    ids = [(await redis_client.xadd(k.jobs, f)).decode() for f in fields]  # type: ignore[arg-type]
    await redis_client.xreadgroup("g", "me", {k.jobs: ">"}, count=4)
    # j0, j1, j2 claimed by "me" (marks taken, as claim.lua takes them); j3 only read.
    claims = [ClaimJob(f"j{i}", ids[i]) for i in range(3)]
    claim_keys, claim_args = claim_call(k, k.jobs, "g", payload_json(ClaimBatch(claims=claims, dead=[])), NOW, W,
                                        1000, False)
    assert await Script("claim")(redis_client, claim_keys, claim_args) == [0, 0, 0]
    # j1's entry was taken over by another engine meanwhile (XAUTOCLAIM); j2's mark is
    # no longer its entry's (cancelled/erased/another entry): the entry moves, the mark stays.
    await redis_client.xclaim(k.jobs, "g", "other", 0, [ids[1]])
    await redis_client.hset(await mark_bucket(redis_client, k, "j2", W, NOW), "j2", "c")
    assert await read_marks(redis_client, k, ["j0", "j1", "j2"], W, NOW) == [claim_mark(ids[0]), claim_mark(ids[1]), "c"]

    entries = [
        HandbackEntry(ids[i], 6, 1, f"j{i}", claim_mark(ids[i]), marks_hash(f"j{i}")) if i < 3
        else HandbackEntry(ids[i], 6, 1, "")
        for i in range(4)
    ]
    flat = [x for f in fields for kv in f.items() for x in (kv[0].encode(), kv[1].encode())]
    call = handback_call(k, k.jobs, [park], "g", "me", payload_json(entries), flat, W, NOW + 5_000)
    script = Script("handback")
    assert await script(redis_client, *call) == [1, 0, 1, 1]

    moved = await redis_client.xrange(park)
    assert [f[b"id"] for _eid, f in moved] == [b"j0", b"j2", b"j3"]
    assert moved[0][1] == {b"id": b"j0", b"to": b"4501", b"text": b"x"}
    # j0 given back: the next claim takes it anew; j1 the other engine's now; j2 kept
    assert await read_marks(redis_client, k, ["j0", "j1", "j2"], W, NOW) == ["", claim_mark(ids[1]), "c"]
    pending = await redis_client.xpending_range(k.jobs, "g", "-", "+", 10)
    assert [(p["message_id"].decode(), p["consumer"].decode()) for p in pending] == [(ids[1], "other")]

    # A repeat (the reply lost) moves nothing twice.
    assert await script(redis_client, *call) == [0, 0, 0, 0]
    assert await redis_client.xlen(park) == 3
