"""Every key a whole engine run leaves in Redis is accounted for by the retention policy.

Issue #21's test: "every key either has a TTL within its policy or is a stream
trimmed by its retention, or holds no personal data (say which in the contract
document)" — docs/contract.md §4, "What each key is, for the policy", holds the
same classes as ``POLICY`` below. The run: jobs awaiting receipts, multipart jobs
(job records), a job held for later, a dead letter, inbound messages and an
opt-out, a carrier with a shared TPS bucket and bind leases. Then every key
under the prefix is read back: a key with a TTL has one within its bound; a
stream is one the engines trim by its retention; a key kept without TTL holds
no number in clear (ids, keyed hashes, times). A row of the key table this
test does not classify fails it: a new key must say which it is.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

from connectors.simulator import SimulatorConfig
from engine.keys import KEY_TABLE, Keys
from tests.engine.harness import push, running, wait_events

DAY = 86_400
# pattern -> ("ttl", bound in s) | ("stream", why) | ("kept", why no personal data / why kept)
POLICY: dict[str, tuple[str, object]] = {
    "P:jobs": ("stream", "trimmed behind the group; payload retention"),
    "P:jobs:high": ("stream", "as P:jobs"),
    "P:jobs:bulk": ("stream", "as P:jobs"),
    "P:events": ("stream", "trimmed behind the archiver; events_keep_hours"),
    "P:dead": ("stream", "trimmed to the payload retention"),
    "P:inbound": ("stream", "trimmed to the message retention"),
    "P:park:<carrier>:<lane>": ("stream", "trimmed behind the group; payload retention"),
    "P:park:<carrier>:<lane>:<client>": ("stream", "as the lane's park stream"),
    "P:dlr:unmatched": ("stream", "trimmed to the message retention"),
    "P:dlr:invalid": ("stream", "trimmed to the message retention"),
    "P:audit": ("stream", "trimmed to the audit retention at each write"),
    "P:callbacks:failed": ("stream", "trimmed to the message retention"),
    "P:job:<job id>": ("ttl", 120 * DAY),
    # a generation of marks lives its window and the next, plus a margin of 300 s
    "P:marks:<generation>": ("ttl", 2 * 168 * 3600 + 300),
    "P:marks:<generation>:<bucket>": ("ttl", 2 * 168 * 3600 + 300),
    "P:marks:<generation>:made": ("ttl", 2 * 168 * 3600 + 300),
    "P:marks:legacy": ("ttl", 168 * 3600 + 300),
    "P:idem:<job id>": ("ttl", 168 * 3600),
    "P:record:<token>": ("ttl", 120),
    "P:scheduled:<entry id>": ("ttl", 60 * DAY),
    "P:scheduled:id:<job id>": ("ttl", 60 * DAY),
    "P:backlog": ("ttl", 60),
    "P:dlr:c:<carrier>:<end ms>": ("ttl", 120 * DAY),
    "P:dlr:dup:<carrier>:<span>": ("ttl", 2 * 3600),
    "P:dlr:dup:<span>": ("ttl", 2 * 3600),
    "P:dlr:call:<token>": ("ttl", 120),
    "P:tps:<carrier>": ("ttl", 60),
    "P:{lease}:bind:<carrier>:<slot>": ("ttl", 300),
    "P:inbound:parts:<carrier>:<sender hash>:<ref>": ("ttl", 2 * 3600),
    "P:inbound:waiting:<sender hash>": ("ttl", 2 * 3600),
    "P:scheduled": ("kept", "entry ids and times"),
    "P:parks": ("kept", "names of park streams"),
    "P:inbound:due": ("kept", "names of reassembly keys (carrier, keyed hash, reference), removed with them"),
    "P:dlr:idx:<carrier>": ("kept", "bucket end times"),
    "P:dlr:due": ("kept", "bucket end times and carrier names"),
    "P:dlr:staged": ("kept", "receipt events between the two calls of the privacy hooks' path: a field goes with "
                     "its publish (ms) or its parking; erasure drops a subject's; no number, no text"),
    "P:{lease}:fence:<carrier>": ("kept", "a counter"),
    "P:clients:closed": ("kept", "client ids and closure times"),
    "P:suppress": ("kept", "keyed hashes of opted-out numbers: kept while the opt-out stands (policy)"),
    "P:suppress:<client id>": ("kept", "as P:suppress; 60 days from an account's closure"),
}
HEX32 = re.compile(rb"[0-9a-f]{32}")


def test_every_row_of_the_key_table_is_classified() -> None:
    assert {d.pattern for d in KEY_TABLE} - set(POLICY) == set(), "classify the new key for the retention policy"
    assert set(POLICY) - {d.pattern for d in KEY_TABLE} == set()


async def test_every_key_of_a_run_has_its_retention(redis_url: str, key_prefix: str) -> None:
    run = uuid.uuid4().hex[:6]
    numbers = [f"+4504{i:06d}" for i in range(120)]
    jobs = [{"id": f"{run}-{i}", "to": n, "text": f"hello {i}", "client": "shop"} for i, n in enumerate(numbers[:100])]
    multipart = [{"id": f"{run}-m{i}", "to": n, "text": "long " * 50} for i, n in enumerate(numbers[100:110])]
    later = {"id": f"{run}-later", "to": numbers[110], "text": "later", "send_at": str(int(time.time()) + 3600)}
    bad = {"id": f"{run}-bad", "to": "12ab", "text": "x"}
    clients = [{"id": "shop", "numbers": ["1234"]}]
    carrier = {"tps": 1000, "max_binds": 2}
    # receipts a minute late: the run ends with correlation entries still waiting for them
    sim_config = SimulatorConfig(dlr=True, dlr_delay_ms=60_000)
    async with running(redis_url, key_prefix, sim_config, proxy=False, clients=clients,
                       carrier=carrier) as (_eng, sim, _p, redis):
        await push(redis, key_prefix, [*jobs, *multipart, later, bad])
        sim.send_inbound("4504999001", "1234", "Hi there")
        sim.send_inbound("4504999002", "1234", "STOP")
        await wait_events(redis, key_prefix, {j["id"] for j in jobs + multipart}, final=False)
        k = Keys(key_prefix)
        deadline = time.monotonic() + 15
        while await redis.xlen(k.inbound) < 2 or not await redis.exists(k.suppression("shop")):
            assert time.monotonic() < deadline, "inbound not stored"
            await asyncio.sleep(0.02)
        seen: dict[str, int] = {}
        for raw in [key async for key in redis.scan_iter(match=f"{key_prefix}:*", count=1000)]:
            key = raw.decode()
            doc = k.describe(key)
            assert doc is not None, f"{key}: not a row of the key table"
            kind, bound = POLICY[doc.pattern]
            seen[doc.pattern] = seen.get(doc.pattern, 0) + 1
            ttl = await redis.pttl(key)  # ms: a TPS bucket's is under a second
            if ttl == -2:  # gone since the scan (a TPS bucket lives under a second): nothing kept
                continue
            t = (await redis.type(key)).decode()
            if kind == "ttl":
                assert isinstance(bound, int) and 0 < ttl <= bound * 1000, f"{key}: TTL {ttl} ms, policy at most {bound} s"
            elif kind == "stream":
                assert t == "stream", f"{key}: {t}, expected a trimmed stream"
            else:
                assert ttl == -1 or ttl > 0
                dump = repr(await _contents(redis, key, t)).encode()
                for n in [*numbers, "+4504999001", "+4504999002"]:
                    assert n[1:].encode() not in dump, f"{key} holds a number in clear"
                if doc.pattern.startswith("P:suppress"):
                    assert all(HEX32.fullmatch(m) for m in await redis.smembers(key))
        # the run reached the kinds that matter for the policy
        for pattern in ("P:jobs", "P:events", "P:dead", "P:inbound", "P:job:<job id>", "P:marks:<generation>:<bucket>",
                        "P:scheduled:<entry id>", "P:scheduled", "P:dlr:c:<carrier>:<end ms>",
                        "P:suppress:<client id>", "P:audit", "P:{lease}:bind:<carrier>:<slot>", "P:tps:<carrier>"):
            assert seen.get(pattern), f"the run wrote no {pattern}"


async def _contents(redis: object, key: str, t: str) -> object:
    r = redis  # redis.asyncio.Redis
    if t == "hash":
        return await r.hgetall(key)  # type: ignore[attr-defined]
    if t == "set":
        return await r.smembers(key)  # type: ignore[attr-defined]
    if t == "zset":
        return await r.zrange(key, 0, -1, withscores=True)  # type: ignore[attr-defined]
    if t == "string":
        return await r.get(key)  # type: ignore[attr-defined]
    return await r.xrange(key)  # type: ignore[attr-defined]
