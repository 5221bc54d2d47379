"""Suppression lists: marketing to a suppressed number is dead-lettered `suppressed`
with event `rejected` (checked in the claim script), transactional is sent; the
CLI and the producer helper manage the lists by keyed hash, audited."""

from __future__ import annotations

import subprocess
import sys

from redis.asyncio import Redis

from connectors.simulator import SimulatorConfig
from engine.keys import Keys
from engine.producer import Producer
from privacy_hooks import KeyedHasher
from tests.engine.harness import push, running, subprocess_env, wait_events

NUMBER = "+4512345678"
OTHER = "+4587654321"


async def test_marketing_to_a_suppressed_number_is_rejected_and_transactional_sent(
    redis_url: str, key_prefix: str
) -> None:
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), proxy=True) as (eng, _sim, rec, redis):
        producer = Producer(redis, key_prefix, hash_secret=eng.settings.privacy.hash_secret)
        assert await producer.suppress(NUMBER, "shop") is True
        assert await producer.suppress(NUMBER, "shop") is False  # already on it
        assert await producer.is_suppressed(NUMBER, "shop") and not await producer.is_suppressed(NUMBER)
        await push(redis, key_prefix, [
            {"id": "m1", "to": NUMBER, "text": "Sale!", "client": "shop", "kind": "marketing", "ref": "r1"},
            {"id": "t1", "to": NUMBER, "text": "Your code", "client": "shop"},  # transactional by default
            {"id": "m2", "to": OTHER, "text": "Sale!", "client": "shop", "kind": "marketing"},
            {"id": "m3", "to": NUMBER, "text": "Sale!", "kind": "marketing"},  # the default list: not on it
        ])
        events = await wait_events(redis, key_prefix, {"m1", "t1", "m2", "m3"}, final=False)
        assert [(e["event"], e["error"], e["ref"]) for e in events["m1"]] == [("rejected", "suppressed", "r1")]
        assert {k: v[-1]["event"] for k, v in events.items() if k != "m1"} == {
            "t1": "submitted", "m2": "submitted", "m3": "submitted"}
        dead = await redis.xrange(Keys(key_prefix).dead)
        assert [(f[b"id"], f[b"code"], f[b"kind"]) for _id, f in dead] == [(b"m1", b"suppressed", b"marketing")]
        assert b"opted out" in dead[0][1][b"reason"] and NUMBER[1:].encode() not in dead[0][1][b"reason"]
        assert rec is not None and sorted(p.short_message for p in rec.submits) == [b"Sale!", b"Sale!", b"Your code"]
        assert eng.metrics.dead_letters.labels("suppressed")._value.get() == 1  # type: ignore[attr-defined]
        # taken off the list: the next marketing job goes out
        assert await producer.unsuppress(NUMBER, "shop") is True
        await push(redis, key_prefix, [{"id": "m4", "to": NUMBER, "text": "Sale!", "client": "shop",
                                        "kind": "marketing"}])
        assert (await wait_events(redis, key_prefix, {"m4"}, final=False))["m4"][-1]["event"] == "submitted"
        audit = await redis.xrange(Keys(key_prefix).audit)
        assert [f[b"action"] for _id, f in audit] == [b"suppress_add", b"suppress_add", b"suppress_remove"]
        assert {f[b"subject"] for _id, f in audit} == {KeyedHasher(eng.settings.privacy.hash_secret)(NUMBER).encode()}


def test_suppress_cli_adds_checks_lists_and_removes(redis_url: str, key_prefix: str) -> None:
    env = subprocess_env(REDIS_URL=redis_url, SENDGATE_PREFIX=key_prefix, SENDGATE_HASH_SECRET="s3cret")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine.cli", "suppress", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    added = cli("add", "--client", "shop", NUMBER, OTHER)
    assert added.returncode == 0 and "added 2 number(s)" in added.stdout
    checked = cli("check", "--client", "shop", NUMBER, "+4511111111")
    assert checked.returncode == 1  # not every number is on it
    assert checked.stdout.splitlines() == ["+45******78\tsuppressed", "+45******11\tnot suppressed"]
    listed = cli("list", "--client", "shop")
    assert sorted(listed.stdout.split()) == sorted(KeyedHasher("s3cret")(n) for n in (NUMBER, OTHER))
    assert cli("remove", "--client", "shop", NUMBER).returncode == 0
    assert cli("check", "--client", "shop", OTHER).returncode == 0
    assert cli("check", "--client", "shop", NUMBER).returncode == 1
    assert cli("add", "not-a-number").returncode == 2
    for out in (added, checked, listed):  # never a number in clear
        assert "12345678" not in out.stdout + out.stderr and "87654321" not in out.stdout + out.stderr


async def test_suppression_keys_hold_no_number(redis_url: str, key_prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        producer = Producer(redis, key_prefix, hash_secret="k")
        await producer.suppress(NUMBER, "shop")
        await producer.suppress(NUMBER)
        names = [k.decode() async for k in redis.scan_iter(match=f"{key_prefix}:*")]
        members = [m for key in names if ":suppress" in key for m in await redis.smembers(key)]
        assert sorted(names) == sorted([f"{key_prefix}:audit", f"{key_prefix}:suppress", f"{key_prefix}:suppress:shop"])
        assert members and all(b"12345678" not in m for m in members)
    finally:
        await redis.aclose()


async def test_claim_checks_every_list_of_a_batch_in_chunks(redis_url: str, key_prefix: str) -> None:
    """claim.lua against a real Redis: a batch with marketing claims of three clients'
    lists (one with more than a chunk of 1,000 numbers) and transactional ones: exactly
    the listed numbers of each list come back `3`, every other claim `0`."""
    import msgspec

    from engine.scripts import ClaimBatch, ClaimJob, Script, claim_call

    k = Keys(key_prefix)
    redis = Redis.from_url(redis_url)
    try:
        await redis.xgroup_create(k.jobs, "g", id="0", mkstream=True)
        lists = {"": k.suppression(""), "a": k.suppression("a"), "b": k.suppression("b")}
        await redis.sadd(lists["a"], "h-a-7", "h-a-1100")
        await redis.sadd(lists["b"], "h-b-3")
        await redis.sadd(lists[""], "h-a-9")  # another list's number: not a hit for client a
        claims, expected = [], []
        for i in range(2400):  # a: 1,200 claims, b: 600, transactional: 600
            client = "a" if i % 2 == 0 else ("b" if i % 4 == 1 else "")
            n = i // 2 if client == "a" else i // 4
            if client == "":
                claims.append(ClaimJob(f"t-{i}", f"1-{i}", "", "", ""))
                expected.append(0)
                continue
            h = f"h-{client}-{n}"
            claims.append(ClaimJob(f"m-{i}", f"1-{i}", lists[client], h, ""))
            expected.append(3 if h in ("h-a-7", "h-a-1100", "h-b-3") else 0)
        ks, args = claim_call(k, k.jobs, "g", msgspec.json.encode(ClaimBatch(claims=claims, dead=[])),
                              1_700_000_000_000, 3600, 1000, False)
        assert await Script("claim")(redis, ks, args) == expected
        assert expected.count(3) == 3  # h-a-1100 is in the second chunk of list a
    finally:
        await redis.aclose()
