"""Suppression lists: marketing to a suppressed number is dead-lettered `suppressed`
with event `rejected` (checked in the claim script), transactional is sent; the
CLI and the producer helper manage the lists by keyed hash, audited."""

from __future__ import annotations

import subprocess
import sys

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from connectors.simulator import SimulatorConfig
from engine.keys import Keys
from engine.marks import read_marks
from engine.producer import Producer
from privacy_hooks import KeyedHasher
from tests.engine.harness import push, running, set_mark, subprocess_env, wait_events

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


async def test_packed_marketing_claims_are_checked_per_list_after_the_payloads(
    redis_url: str, key_prefix: str
) -> None:
    """claim.lua with marketing claims packed (layout 10), against a real Redis: three
    lists' claims (one with more than a chunk of 1,000, one absent), a marketing claim and a
    transactional one in the payload, transactional claims packed. Answers: the
    payload's, then list by list, then the transactional ones; exactly the listed
    numbers of each list `3` (no mark taken), a listed number whose job holds its own
    mark already `2` (the mark wins: resent or reported, never dead-lettered twice)."""
    from engine.scripts import (
        ClaimBatch,
        ClaimJob,
        ClaimList,
        ClaimPacked,
        MarketingClaims,
        Script,
        claim_call,
    )
    from engine.scripts import payload_json as encode

    k = Keys(key_prefix)
    redis = Redis.from_url(redis_url)
    claim = Script("claim")
    try:
        await redis.xgroup_create(k.jobs, "g", id="0", mkstream=True)
        h = [f"{i:032x}" for i in range(2000)]  # hashes of one width, as the engine's
        await redis.sadd(k.suppression("a"), h[7], h[1100], h[1500])
        await redis.sadd(k.suppression("b"), h[1503])
        await redis.sadd(k.suppression(""), h[3])  # the default list: no hit for a or b
        # h[1500] is listed but its job holds its own mark (a claim repeated after a lost reply)
        await set_mark(redis, k, "m-a-1500", "s|9-9", 60, 1)
        payload_claims = [ClaimJob("m-json", "9-9", k.suppression("b"), h[1503], ""),  # listed: 3
                          ClaimJob("t-json", "1-1", "", "", "")]
        a, b = MarketingClaims(32), MarketingClaims(32)
        for i in range(1200):
            assert a.add_claim(f"m-a-{i}", f"2-{i}", "", h[i])
        assert a.add_claim("m-a-1500", "9-9", "", h[1500])  # its own mark: reclaimed
        for i in range(3, 1500, 300):
            assert b.add_claim(f"m-b-{i}", f"3-{i}", "r", h[i])
        assert b.add_claim("m-b-1503", "3-1503", "r", h[1503])
        assert not b.add_claim("m-short", "3-0", "", "abc")  # another width: for the payload
        none = MarketingClaims(32)  # a list that does not exist: nothing looked up, every claim new
        assert none.add_claim("m-c-7", "6-7", "", h[7]) and none.add_claim("m-c-1503", "6-8", "", h[1503])
        packed = ClaimPacked()
        assert packed.add(("t-0", "4-0", "")) and packed.add(("t-1", "4-1", ""))
        lists = [ClaimList(k.suppression("a"), a.count), ClaimList(k.suppression("c"), none.count),
                 ClaimList(k.suppression("b"), b.count)]
        a.extend(none)
        a.extend(b)
        payload = encode(ClaimBatch(claims=payload_claims, dead=[], lists=lists))
        answers = await claim(redis, *claim_call(k, k.jobs, "g", payload, 1, 60, 1000, False, (), packed, a))
        expected = [3, 0]  # the payload's
        expected += [3 if i in (7, 1100) else 0 for i in range(1200)] + [2]  # list a
        expected += [0, 0]  # list c (absent)
        expected += [0] * len(range(3, 1500, 300)) + [3]  # list b (h[3] is on the default list only)
        expected += [0, 0]  # transactional
        assert answers == expected
        marks = await read_marks(redis, k, ["m-a-7", "m-a-1100", "m-b-1503", "m-json"], 60, 1)
        assert marks == [""] * 4
        marks = await read_marks(redis, k, ["m-a-8", "m-b-3", "t-1", "t-json", "m-c-7"], 60, 1)
        assert all(marks), marks
        # lists that do not add up to the packed claims: refused before any mark is taken
        c = MarketingClaims(32)
        assert c.add_claim("m-x", "5-1", "", h[1])
        bad = encode(ClaimBatch(claims=[], dead=[], lists=[ClaimList(k.suppression("a"), 2)]))
        with pytest.raises(ResponseError, match="disagree"):
            await claim(redis, *claim_call(k, k.jobs, "g", bad, 1, 60, 1000, False, (), None, c))
        assert await read_marks(redis, k, ["m-x"], 60, 1) == [""]
    finally:
        await redis.aclose()


async def test_a_mixed_batch_on_two_shards_rejects_exactly_the_suppressed_marketing(
    redis_url: str, key_prefix: str
) -> None:
    """The engine end to end with [redis] shards = 2: one read per shard of
    transactional jobs, marketing jobs of two clients (packed, grouped per list),
    marketing jobs that do not pack (a non-ASCII id, a ref of 300 characters: in the
    payload), some of them to listed numbers, interleaved. Exactly the marketing jobs
    to a number on their client's list are dead-lettered `suppressed` with event
    `rejected` (each on its own shard, checked against that shard's copy); every
    other job is sent once, transactional ones to listed numbers too."""
    from connectors.simulator import SimulatorConfig
    from engine.app import Engine
    from engine.keys import shard_keys, shard_of
    from tests.engine.harness import delete_prefix, make_settings, start_simulator

    shards = 2
    sim = await start_simulator(SimulatorConfig(dlr=False))
    redis = Redis.from_url(redis_url)
    settings = make_settings(redis_url, key_prefix, sim.port, redis={"shards": shards})
    producer = Producer(redis, key_prefix, hash_secret=settings.privacy.hash_secret, shards=shards)
    listed = {"shop": ["+4506000001", "+4506000002"], "news": ["+4506000003"]}
    try:
        for client, numbers in listed.items():
            for number in numbers:
                assert await producer.suppress(number, client)
        jobs: list[dict[str, str]] = []
        rejected: set[str] = set()
        for i in range(48):
            client = ("shop", "news", "")[i % 3]
            number = f"+45060000{i % 4:02d}"  # 00 on no list; 01, 02 on shop's; 03 on news's
            job = {"id": f"j{i}", "to": number, "text": f"offer {i}"}
            if client:
                job["client"] = client
            if i % 8 not in (1, 3):
                job["kind"] = "marketing"
            if i % 12 in (4, 9):
                job["id"] = f"jø{i}"  # non-ASCII: its claim goes in the payload
            if i % 12 == 6:
                job["ref"] = "r" * 300  # too long to pack: in the payload too
            if job.get("kind") == "marketing" and number in listed.get(client, ()):
                rejected.add(job["id"])
            jobs.append(job)
        by_shard = {s: sum(1 for j in jobs if shard_of(j["id"], shards) == s) for s in range(shards)}
        assert all(by_shard.values()) and rejected and len(rejected) < len(jobs)
        assert any(j.get("kind") != "marketing" and j["to"] in listed.get(j.get("client", ""), ()) for j in jobs)
        assert any("ø" in jid for jid in rejected) and any("ref" in j and j["id"] in rejected for j in jobs)
        await push(redis, key_prefix, jobs, shards=shards)
        eng = Engine(settings, redis_url)
        await eng.start()
        try:
            events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False, shards=shards)
        finally:
            await eng.close()
        got = {jid: [(e["event"], e["error"]) for e in evs] for jid, evs in events.items()}
        assert {jid for jid, evs in got.items() if evs == [("rejected", "suppressed")]} == rejected
        assert all(evs[-1][0] == "submitted" for jid, evs in got.items() if jid not in rejected)
        assert sim.stats.submits == len(jobs) - len(rejected)
        dead_ids: set[str] = set()
        for s, keys in enumerate(shard_keys(key_prefix, shards)):
            for _e, f in await redis.xrange(keys.dead):
                assert f[b"code"] == b"suppressed" and shard_of(f[b"id"].decode(), shards) == s
                dead_ids.add(f[b"id"].decode())
            assert (await redis.xpending(keys.jobs, settings.engine.group))["pending"] == 0
        assert dead_ids == rejected
    finally:
        await sim.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()
