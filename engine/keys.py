"""Every Redis key name sendgate uses, built in one place, and the argument
positions its Lua scripts share with Python.

Why one module: the names are a contract between the engine's Python, its Lua
scripts, the receipt store (dlr), erasure (privacy_hooks) and the shared rate
limiter (throttling). Built in several places they drift; here they are
built once. So that the lower layers may import it, this module is a leaf: it
imports the standard library only (no other engine module), and ``engine``'s
``__init__`` stays trivially cheap.

Scripts never spell a key fragment (``':job:'``, ``':dlr:c:'``, …): they get
full keys in KEYS and, for the keys they build per job or per carrier, the
*prefix strings* below (``job_prefix`` = ``"P:job:"``) in ARGV, from the
Python that calls them. ``tests/engine/test_keys.py`` checks that every key the
scripts create matches a pattern of :data:`KEY_TABLE`, and that no ``.lua``
file holds a key fragment; docs/INTERNALS.md's key table is generated from
:data:`KEY_TABLE` (``python -m engine.keys``) and checked by that test.

Sharding (``[redis] shards = N``): ``Keys(prefix, shard=k)`` puts
every *shard-local* key (streams, job records, idempotency marks,
correlation buckets, the scheduled set, the dlr sorted sets and
streams) under ``<prefix>:{k}:`` — one hash tag per shard, so a shard's
scripts touch one Cluster slot — while *fleet-global* keys (the carriers'
shared TPS buckets, the audit stream, failed callbacks) stay under
``<prefix>:``. ``shard=None`` (``shards = 1``) gives every name exactly as
before. :func:`shard_of` is the routing rule every producer applies (a job's
shard is ``crc32(UTF-8 bytes of its id) mod N``), :func:`shard_keys` the
key sets of all shards, :func:`cluster_slot` the Cluster slot of a key (the
tests check that every script call stays on one).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = [
    "KEY_TABLE",
    "KeyDoc",
    "Keys",
    "Positions",
    "cluster_slot",
    "correlation_shard",
    "key_table_markdown",
    "lua_header",
    "marks_bucket_of",
    "marks_hash",
    "shard_keys",
    "shard_of",
]


def shard_of(job_id: str | bytes, shards: int) -> int:
    """The shard of a job: ``crc32(UTF-8 bytes of its id) mod shards`` (zlib's
    CRC-32, the unsigned value). The routing rule of docs/contract.md §2.1, the
    same in every language: ``zlib.crc32(b"order-42") % 4 == 2``."""
    if shards <= 1:
        return 0
    data = job_id if isinstance(job_id, bytes) else job_id.encode()
    return zlib.crc32(data) % shards


def marks_hash(job_id: str) -> int:
    """The hash that picks a job's idempotency-mark bucket: the CRC-32 of its id's UTF-8
    bytes, the same as :func:`shard_of`'s, computed here and passed to the scripts with
    each claim (no hashing in Lua; every caller of the marks uses this function). The
    bucket is its *top* bits (:func:`marks_bucket_of`), the shard its remainder mod N
    (with N a power of two, its low bits): the buckets of a generation are spread
    independently of the shard while log2(buckets) + log2(N) <= 32."""
    return zlib.crc32(job_id.encode())


def marks_bucket_of(marks_hash: int, buckets: int) -> int:
    """The bucket of a job (``marks_hash``: :func:`marks_hash`) in a generation of ``buckets``
    (a power of two): the hash's top log2(buckets) bits (engine/marks_lib.lua, the same)."""
    return marks_hash >> (32 - (buckets.bit_length() - 1))


def correlation_shard(carrier: str, message_id: str, shards: int) -> int:
    """Where a receipt's leftovers go when it matched nothing (``P:dlr:unmatched``
    of shard ``crc32("<carrier>:<message id>") mod shards``): spread, and found
    again from the carrier and the message id alone."""
    if shards <= 1:
        return 0
    return zlib.crc32(f"{carrier}:{message_id}".encode()) % shards


def shard_keys(prefix: str, shards: int) -> tuple[Keys, ...]:
    """The key sets of every shard: ``(Keys(prefix),)`` for one shard (today's
    names, no hash tag), else ``Keys(prefix, shard=k)`` for k in 0..shards-1."""
    if shards <= 1:
        return (Keys(prefix),)
    return tuple(Keys(prefix, shard=k) for k in range(shards))


def _crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), as Redis Cluster hashes keys."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def cluster_slot(key: str | bytes) -> int:
    """The Redis Cluster slot of ``key``: CRC16 of its hash tag (the text between
    the first ``{`` and the next ``}``, when not empty), else of the whole key, mod 16384."""
    data = key if isinstance(key, bytes) else key.encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return _crc16(data) % 16384


class KeyDoc(NamedTuple):
    """One row of the key table: what a key (or a family of keys) is."""

    pattern: str
    """The name with ``P`` for the base (prefix, plus ``:{k}`` on a shard for
    shard-local keys) and ``<...>`` for a variable part."""
    type: str
    holds: str
    writer: str
    ttl: str
    scope: str
    """``shard`` (under the shard's hash tag) or ``fleet`` (one for every shard)."""
    cost: str = ""
    """What it holds per message while it lives."""


#: Every key sendgate writes. The order is the documentation's (docs/INTERNALS.md,
#: "Redis keys", is this table: ``python -m engine.keys`` prints it). "Lives" says
#: how a key goes: an expiry, a trim (engine/stream_trim.py: by a consumer group's
#: position, or by age) or its writer's deletes. "Cost" is what it holds per
#: message while it lives (MEMORY USAGE on Redis 7, jemalloc; tests/engine/test_hot_state.py
#: checks what stays per finished job). Redis keeps only hot state: once a job's
#: receipts are in and its events archived, all that is left of it is its
#: idempotency mark.
KEY_TABLE: tuple[KeyDoc, ...] = (
    KeyDoc("P:jobs", "stream", "send jobs, normal priority (public contract)", "producers",
           "until the engine's group has acked them (trimmed by position once a minute), at most the payload "
           "retention", "shard", "the payload (~150 B) for seconds"),
    KeyDoc("P:jobs:high", "stream", "send jobs, high priority (public contract)", "producers",
           "as P:jobs", "shard", "as P:jobs"),
    KeyDoc("P:jobs:bulk", "stream", "send jobs, bulk priority (public contract)", "producers",
           "as P:jobs", "shard", "as P:jobs"),
    KeyDoc("P:events", "stream",
           "status events (public contract); a job's first event also carries to_hash, to_mask, encoding, client, "
           "kind, retention_until (the history row), and with [history] keep_text text_enc (the text sealed, base64)",
           "claim.lua, record.lua, correlate.lua",
           "until the history archiver's group has acked them and at least `events_min_keep_s`, at most "
           "`events_keep_hours` (trimmed once a minute); without history `events_keep_hours` and `streams_maxlen`",
           "shard", "~110 B per event (2 per job with a receipt) for minutes"),
    KeyDoc("P:dead", "stream", "dead letters: the job's fields, code, reason, entry (public contract)", "claim.lua",
           "MAXLEN ~ `streams_maxlen`; the payload retention", "shard", "per dead letter: its fields"),
    KeyDoc("P:inbound", "stream", "mobile-originated messages, reassembled (public contract; docs/contract.md §2.7)",
           "inbound.lua, inbound_sweep.lua",
           "the message retention (MINID); without history also MAXLEN ~ `streams_maxlen`, with history over "
           "`streams_maxlen` only what the inbound archiver's group has acked goes", "shard", "per inbound message"),
    KeyDoc("P:inbound:parts:<carrier>:<sender hash>:<ref>", "hash",
           "parts of a concatenated inbound message being reassembled: `<seq>` -> text, plus total, from, to, "
           "client, from_hash, first_ms (the sender only as a keyed hash in the name)",
           "inbound.lua", "twice the reassembly wait; when complete, replaced by a tombstone `done` (same TTL); deleted "
           "when published `partial` (inbound_sweep.lua)",
           "shard", "per inbound message in parts, while it waits"),
    KeyDoc("P:inbound:waiting:<sender hash>", "set",
           "the reassembly keys (P:inbound:parts:…) of one sender: erasure and export find the parts a subject has "
           "waiting by key (no scan)",
           "inbound.lua", "twice the reassembly wait (refreshed by each new set); members removed when published",
           "shard", "per sender with a message in parts waiting"),
    KeyDoc("P:inbound:due", "zset", "reassembly keys scored by the end of their wait (ms): the partial sweep's list",
           "inbound.lua", "member removed with its parts", "shard", "per inbound message in parts, while it waits"),
    KeyDoc("P:suppress", "set", "suppression list of jobs and inbound messages without a client: keyed hashes of "
           "numbers", "inbound.lua (opt-out keywords), sendgate suppress", "none (the client's choice)", "shard",
           "per opted-out number"),
    KeyDoc("P:suppress:<client id>", "set", "a client's suppression list: keyed hashes of numbers",
           "inbound.lua (opt-out keywords), sendgate suppress", "none (the client's choice)", "shard",
           "per opted-out number"),
    KeyDoc("P:job:<job id>", "hash",
           "a job record, only for jobs whose receipts read it (several parts, or a callback): parts, state, "
           "carrier, message_ids, submitted_ms, ref, callback, dlr_ids, expect, s:<n>/e:<n>, done (dlr/store.py)",
           "record.lua, correlate.lua, erasure",
           "the receipt wait twice over plus two bucket spans and `record_grace_s` (capped by the message "
           "retention); `record_grace_s` after its final event", "shard",
           "~250 B while awaiting receipts; none for a single-part job without callback"),
    KeyDoc("P:marks:<generation>", "hash",
           "a generation of idempotency marks (engine/marks_lib.lua): `k` its bucket count (fixed at its first "
           "mark, from the previous generation's `n`), `n` marks written, `b` buckets made; `<generation>` is its start, unix s, "
           "a multiple of the window", "claim.lua, cancel.lua, marks.lua (erasure)",
           "to the generation's start + 2 x `idempotency_hours` + a margin (min(300 s, a quarter window)): an EXPIRE "
           "set when it is made", "shard",
           "none per message (one per generation)"),
    KeyDoc("P:marks:<generation>:made", "string",
           "a bitmap of the generation's buckets: bit b set once bucket b is made with its EXPIRE (a claim reads it "
           "once per call, not at all once `b` of P:marks:<generation> reaches `k`, instead of an HLEN per mark)",
           "claim.lua, cancel.lua, marks.lua (erasure)", "as P:marks:<generation>", "shard",
           "none per message (k / 8 bytes a generation)"),
    KeyDoc("P:marks:<generation>:<bucket>", "hash",
           "idempotency marks of one bucket: job id -> the claiming entry `<ms>-<seq>` as the integer "
           "`<ms><seq in 6 digits>` (else `s\\|<entry id>`), `c` cancelled, `done`, `e` erased; bucket = the top "
           "log2(`k`) bits of crc32(job id) (engine.keys.marks_hash; the shard is its remainder mod N), in hex; a job's mark is seen for at least `idempotency_hours` (a claim reads the "
           "current and the previous generation)",
           "claim.lua, cancel.lua, marks.lua (erasure)",
           "as P:marks:<generation> (an EXPIRE set when the bucket is made)", "shard",
           "~65-80 B of used_memory per mark (a listpack field, 36-character id; 4-8 marks a bucket) for 1 to 2 windows: "
           "all that stays of a finished job"),
    KeyDoc("P:marks:legacy", "string",
           "`1` while idempotency marks of layout 10 and before (P:idem:<job id>) may still live: a new claim "
           "then also reads that key", "claim.lua, cancel.lua, marks.lua (when a generation is made without a "
           "predecessor: an upgrade, a fresh start, an idle window; on a keyspace of at most 5,000 keys "
           "only if a SCAN finds such a mark)",
           "one window + the margin", "shard", "none (one key)"),
    KeyDoc("P:idem:<job id>", "string",
           "an idempotency mark of layout 10 and before (the claiming entry as an integer, `s\\|<entry id>`, "
           "`c`, `done`, `e`): read and updated in place, never made now", "engines before layout 11",
           "its TTL (`idempotency_hours` from when it was taken)", "shard", "~165 B per mark until it expires"),
    KeyDoc("P:record:<token>", "string", "a record call's token: the same call repeated (reply lost) writes nothing",
           "record.lua", "2 min", "shard", "one per call (500 jobs), ~70 B"),
    KeyDoc("P:scheduled", "zset", "entry ids of jobs held until their send_at, scored by it (ms)",
           "engine/pipeline.py, schedule.lua", "members removed as released", "shard", "per held job"),
    KeyDoc("P:scheduled:<entry id>", "hash", "a held job's fields plus `lane`", "engine/pipeline.py, schedule.lua",
           "payload retention; deleted when released", "shard", "per held job: its fields"),
    KeyDoc("P:scheduled:id:<job id>", "string", "the entry id a held job is stored under (for `sendgate cancel`)",
           "engine/pipeline.py, cancel.lua, schedule.lua", "payload retention; deleted when released or cancelled",
           "shard", "per held job: an entry id"),
    KeyDoc("P:park:<carrier>:<lane>", "stream",
           "jobs of a lane read for a carrier that could not take them then (no bind up, its jobs in hand at their "
           "budget, or older jobs parked): the original fields, read back by the engines' group when it has room",
           "park.lua", "trimmed by the engine to the group's oldest unacknowledged entry; MINID trim to the payload "
           "retention", "shard", "per parked job: its fields"),
    KeyDoc("P:park:<carrier>:<lane>:<client>", "stream",
           "the same for one client configured in `[[clients]]` (so each client's backlog is read by its weight)",
           "park.lua", "trimmed by the engine to the group's oldest unacknowledged entry; MINID trim to the payload "
           "retention", "shard", "per parked job: its fields"),
    KeyDoc("P:parks", "set", "the names of this shard's park streams, added by each engine at its start: a later "
           "start finds the streams of carriers or clients no longer configured here (no keyspace SCAN)",
           "engine/pipeline.py (ensure_groups)", "none; a member whose stream is gone is removed at a start", "shard",
           "none (a member per park stream)"),
    KeyDoc("P:backlog", "hash",
           "each lane's backlog (unread + unacked + parked) as the engines last sampled it, `high_water`, `ts` "
           "(for Producer.backlog/ready)", "engine/app.py", "60 s, renewed by each sample", "shard", "none (a few fields)"),
    KeyDoc("P:dlr:c:<carrier>:<end ms>", "hash",
           "a correlation bucket: normalised id -> `<part>:<submitted_ms>:<job id>`, or for a single-part job "
           "without callback `=<submitted_ms>US<message_ids>US<ref>US<job id>` (the receipt's fast path: no job "
           "record); a field goes with its part's final receipt",
           "record.lua, correlate.lua, erasure (hiding blanks the ref of `=` entries)",
           "a field until its receipt; the bucket is deleted by the sweep at its end (the deadline: submit + "
           "dlr_wait capped by the message retention, rounded up to a 64th of the wait); TTL one wait later, never "
           "past its job records'", "shard", "~70 B per part until its receipt"),
    KeyDoc("P:dlr:idx:<carrier>", "zset", "the carrier's bucket ends (member = score = end ms)",
           "record.lua, correlate.lua (sweep)", "member removed with its bucket", "shard", "per bucket (64 per wait)"),
    KeyDoc("P:dlr:due", "zset", "`<end ms>:<carrier>` of every bucket, scored by its end: the sweep's work list",
           "record.lua, correlate.lua (sweep)", "member removed with its bucket", "shard", "per bucket"),
    KeyDoc("P:dlr:dup:<carrier>:<span>", "set",
           "the normalised ids of the carrier's entries retired during the span (a tenth of the duplicate window "
           "of Redis time; correlate layout 7)", "correlate.lua",
           "UNLINKed a window and a span after the span ends by the carrier's apply calls that retire "
           "entries (within three spans; else its TTL, a span later, frees it)", "shard",
           "~64 B per part for the duplicate window (10 min; 100,000 8-character ids on 6.2 and 7.0, the same "
           "as layout 6's tokens: the carrier's few more bytes fell in the same allocation)"),
    KeyDoc("P:dlr:dup:<span>", "set",
           "correlate layout 6's spans: tokens `<carrier>US<id>` of every carrier's entries retired during the "
           "span; never written now, read for receipts found in no carrier span while one of the window lives",
           "correlate.lua (engines of layout 6 and before)",
           "UNLINKed by the sweep a window and a span after the span ends; TTL a span later", "shard",
           "none now (gone a window and two spans after the last layout-6 engine stopped)"),
    KeyDoc("P:dlr:call:<token>", "string",
           "an apply call's reply (length-prefixed), kept only when it published an event for a callback",
           "correlate.lua", "2 min", "shard", "per call with callback events"),
    KeyDoc("P:dlr:staged", "hash",
           "with custom privacy hooks only: receipt events applied but not yet published, one field per batch "
           "(its call token) -> `<staged ms>:` then the events msgpack-packed (kinds, callbacks, submit times, "
           "fields); no phone number, no text", "correlate.lua (stage), dlr/publish_staged.lua, erasure",
           "a field until the hooks passed its events and they are published (ms), or parked hook_failed",
           "shard", "~200 B per staged event, for the milliseconds between the two calls"),
    KeyDoc("P:dlr:unmatched", "stream", "receipts that never matched a job", "dlr/store.py",
           "MAXLEN ~; the message retention", "shard", "per unmatched receipt"),
    KeyDoc("P:dlr:invalid", "stream", "receipts that could not be parsed (text and addresses removed)",
           "dlr/store.py", "MAXLEN ~; the message retention", "shard", "per invalid receipt"),
    KeyDoc("P:tps:<carrier>", "hash", "a carrier's TPS bucket shared by every engine: `t` tokens, `ts` time; "
           "after throttle replies `ar` the adaptive limit's last cut and `ac` its time",
           "throttling/global_bucket.py", "a full refill + 1 s after its last lease, or until the limit is back at tps",
           "fleet", "per carrier"),
    KeyDoc("P:{lease}:bind:<carrier>:<slot>", "string",
           "a bind lease (slot 0..max_binds-1): `<engine>:<fencing token>` of the engine that may hold that bind",
           "engine/leases.py", "`lease_ttl_s`, renewed by its holder every third of it; deleted on release",
           "fleet", "per carrier bind"),
    KeyDoc("P:{lease}:fence:<carrier>", "string", "a carrier's fencing counter: each lease granted takes the next",
           "engine/leases.py", "none (one integer per carrier)", "fleet", "per carrier"),
    KeyDoc("P:audit", "stream", "audit log of erasures and purges (subjects as keyed hashes)",
           "privacy_hooks/audit.py", "the audit retention", "fleet", "per audit entry"),
    KeyDoc("P:clients:closed", "hash", "closed client accounts: client id -> closure time (unix s); the engines "
           "dead-letter their new jobs (`client_closed`)", "sendgate close-client / reopen-client (engine/closure.py)",
           "until reopened (a field per closed client)", "fleet", "none per message"),
    KeyDoc("P:callbacks:failed", "stream", "webhook posts that failed every attempt", "dlr/webhook.py",
           "MAXLEN ~; the message retention", "fleet", "per failed callback"),
)


class Keys:
    """Key names under one prefix (and, later, one shard); immutable, build once.

    Attributes are plain strings computed here, so the hot paths read a slot
    instead of formatting a name.
    """

    __slots__ = (
        "audit",
        "backlog",
        "base",
        "callbacks_failed",
        "clients_closed",
        "dead",
        "dlr_bucket_prefix",
        "dlr_call_prefix",
        "dlr_due",
        "dlr_dup_prefix",
        "dlr_index_prefix",
        "dlr_invalid",
        "dlr_staged",
        "dlr_unmatched",
        "events",
        "idem_prefix",
        "inbound",
        "inbound_due",
        "inbound_parts_prefix",
        "inbound_waiting_prefix",
        "job_prefix",
        "jobs",
        "jobs_bulk",
        "jobs_high",
        "lease_prefix",
        "marks_prefix",
        "park_prefix",
        "park_registry",
        "prefix",
        "record_prefix",
        "scheduled",
        "scheduled_id_prefix",
        "scheduled_prefix",
        "shard",
        "suppress_default",
        "suppress_prefix",
        "tps_prefix",
    )

    prefix: str
    """The configured prefix (``[redis] prefix``)."""
    shard: int | None
    base: str
    """Where shard-local keys start: the prefix, or ``<prefix>:{<shard>}``."""
    jobs: str
    jobs_high: str
    jobs_bulk: str
    events: str
    inbound: str
    dead: str
    scheduled: str
    backlog: str
    dlr_due: str
    dlr_unmatched: str
    dlr_staged: str
    """``P:dlr:staged``: receipt events waiting for the privacy hooks (dlr/store.py, "Two steps")."""
    dlr_invalid: str
    audit: str
    callbacks_failed: str
    clients_closed: str
    """Closed client accounts (fleet-global hash: client id -> closure unix s)."""
    job_prefix: str
    idem_prefix: str
    """Idempotency marks of layout 10 and before (string keys), read for a window after the upgrade."""
    marks_prefix: str
    """Idempotency marks (engine/marks_lib.lua): generations and their buckets."""
    record_prefix: str
    scheduled_prefix: str
    scheduled_id_prefix: str
    park_prefix: str
    park_registry: str
    """``P:parks``: the shard's park streams ever configured (the orphan check reads it, no SCAN)."""
    dlr_bucket_prefix: str
    dlr_index_prefix: str
    dlr_dup_prefix: str
    dlr_call_prefix: str
    inbound_due: str
    inbound_parts_prefix: str
    inbound_waiting_prefix: str
    suppress_default: str
    """The suppression list of the default client ``""`` (``P:suppress``)."""
    suppress_prefix: str
    tps_prefix: str
    lease_prefix: str
    """``P:{lease}:``: bind leases and fencing counters, one hash tag for all (one script call)."""

    def __init__(self, prefix: str = "sendgate", shard: int | None = None) -> None:
        if shard is not None and (not isinstance(shard, int) or shard < 0):
            raise ValueError("shard must be a non-negative integer or None")
        base = prefix if shard is None else f"{prefix}:{{{shard}}}"
        values = {
            "prefix": prefix,
            "shard": shard,
            "base": base,
            # -- shard-local: public contract (docs/contract.md §2, "Redis")
            "jobs": f"{base}:jobs",
            "jobs_high": f"{base}:jobs:high",
            "jobs_bulk": f"{base}:jobs:bulk",
            "events": f"{base}:events",
            "inbound": f"{base}:inbound",
            "dead": f"{base}:dead",
            # -- shard-local: the engine's own records
            "scheduled": f"{base}:scheduled",
            "backlog": f"{base}:backlog",
            "park_registry": f"{base}:parks",
            "dlr_due": f"{base}:dlr:due",
            "dlr_unmatched": f"{base}:dlr:unmatched",
            "dlr_staged": f"{base}:dlr:staged",
            "dlr_invalid": f"{base}:dlr:invalid",
            "inbound_due": f"{base}:inbound:due",
            # Suppression lists are shard-local: claim.lua checks them in the
            # same call as the idempotency marks. With shards > 1 every shard
            # needs its copy (written to all) or a hash tag of its own: the
            # sharding work decides (docs/INTERNALS.md, "Inbound and opt-out").
            "suppress_default": f"{base}:suppress",
            # prefixes of per-job / per-carrier keys (what the scripts append to)
            "job_prefix": f"{base}:job:",
            "idem_prefix": f"{base}:idem:",
            "marks_prefix": f"{base}:marks:",
            "record_prefix": f"{base}:record:",
            "scheduled_prefix": f"{base}:scheduled:",
            "scheduled_id_prefix": f"{base}:scheduled:id:",
            "park_prefix": f"{base}:park:",
            "dlr_bucket_prefix": f"{base}:dlr:c:",
            "dlr_index_prefix": f"{base}:dlr:idx:",
            "dlr_dup_prefix": f"{base}:dlr:dup:",
            "dlr_call_prefix": f"{base}:dlr:call:",
            "inbound_parts_prefix": f"{base}:inbound:parts:",
            "inbound_waiting_prefix": f"{base}:inbound:waiting:",
            "suppress_prefix": f"{base}:suppress:",
            # -- fleet-global
            "audit": f"{prefix}:audit",
            "callbacks_failed": f"{prefix}:callbacks:failed",
            "clients_closed": f"{prefix}:clients:closed",
            "tps_prefix": f"{prefix}:tps:",
            "lease_prefix": f"{prefix}:{{lease}}:",
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Keys is immutable")

    def __repr__(self) -> str:
        return f"Keys({self.prefix!r}, shard={self.shard!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keys) and (self.prefix, self.shard) == (other.prefix, other.shard)

    def __hash__(self) -> int:
        return hash((self.prefix, self.shard))

    # -- per-job / per-carrier keys ----------------------------------------
    def lanes(self) -> tuple[str, str, str]:
        """The job streams, highest priority first."""
        return (self.jobs_high, self.jobs, self.jobs_bulk)

    def job(self, job_id: str) -> str:
        """The job record ``P:job:<job id>``."""
        return self.job_prefix + job_id

    def idem(self, job_id: str) -> str:
        """An idempotency mark of layout 10 and before ``P:idem:<job id>`` (read, never written now)."""
        return self.idem_prefix + job_id

    def marks_generation(self, start: int) -> str:
        """A generation of idempotency marks ``P:marks:<generation>`` (its start, unix s: k, n)."""
        return f"{self.marks_prefix}{start}"

    def marks_bucket(self, start: int, bucket: int, buckets: int) -> str:
        """A bucket of idempotency marks ``P:marks:<generation>:<bucket>``: ``bucket`` (:func:`marks_bucket_of`; ``buckets``:
        the generation's ``k``) in lower-case hex, zero-padded to the digits of ``buckets - 1``
        (engine/marks_lib.lua builds the same names from ``marks_prefix``)."""
        digits = max(1, (buckets - 1).bit_length() + 3 >> 2)
        return f"{self.marks_prefix}{start}:{bucket:0{digits}x}"

    def marks_made(self, start: int) -> str:
        """``P:marks:<generation>:made``: bit b set once bucket b is made with its EXPIRE (engine/marks_lib.lua)."""
        return f"{self.marks_prefix}{start}:made"

    def marks_legacy(self) -> str:
        """``P:marks:legacy``: marks of layout 10 and before may still live (engine/marks_lib.lua)."""
        return f"{self.marks_prefix}legacy"

    def record_memo(self, token: str) -> str:
        """A record call's token ``P:record:<token>`` (record.lua: a repeated call writes nothing)."""
        return self.record_prefix + token

    def scheduled_job(self, entry_id: str) -> str:
        """A held job ``P:scheduled:<entry id>``."""
        return self.scheduled_prefix + entry_id

    def scheduled_id(self, job_id: str) -> str:
        """Where a held job's entry id is found by its job id ``P:scheduled:id:<job id>``."""
        return self.scheduled_id_prefix + job_id

    def park(self, carrier: str, lane: str, client: str = "") -> str:
        """A park stream ``P:park:<carrier>:<lane>`` (``:<client>`` for a configured client).

        ``lane`` is ``high``, ``normal`` or ``bulk``. Shard-local: the scale-out
        design parks a carrier's jobs on the engines without a bind for it.
        """
        name = f"{self.park_prefix}{carrier}:{lane}"
        return f"{name}:{client}" if client else name

    def correlation_bucket(self, carrier: str, end_ms: int | str) -> str:
        """A correlation bucket ``P:dlr:c:<carrier>:<end_ms>``."""
        return f"{self.dlr_bucket_prefix}{carrier}:{end_ms}"

    def correlation_buckets_of(self, carrier: str) -> str:
        """What a carrier's bucket names start with: ``P:dlr:c:<carrier>:``."""
        return f"{self.dlr_bucket_prefix}{carrier}:"

    def correlation_index(self, carrier: str) -> str:
        """The carrier's bucket ends ``P:dlr:idx:<carrier>``."""
        return self.dlr_index_prefix + carrier

    def dup_span(self, carrier: str, span: int) -> str:
        """A carrier's duplicate-window span set ``P:dlr:dup:<carrier>:<n>`` (correlate layout 7)."""
        return f"{self.dlr_dup_prefix}{carrier}:{span}"

    def dup_span_legacy(self, span: int) -> str:
        """A duplicate-window span set of correlate layout 6 and before, ``P:dlr:dup:<n>``
        (every carrier's ``<carrier>US<id>``): read, never written now."""
        return f"{self.dlr_dup_prefix}{span}"

    def call_memo(self, token: str) -> str:
        """A kept apply reply ``P:dlr:call:<token>``."""
        return self.dlr_call_prefix + token

    def suppression(self, client: str) -> str:
        """The suppression list of ``client``: ``P:suppress:<client id>``, or
        ``P:suppress`` for the default client ``""``."""
        return self.suppress_prefix + client if client else self.suppress_default

    def inbound_parts(self, carrier: str, sender_hash: str, ref: str) -> str:
        """Parts of one concatenated inbound message ``P:inbound:parts:<carrier>:<sender hash>:<ref>``
        (``ref``: the reference and the total, e.g. ``"8.12.3"``)."""
        return f"{self.inbound_parts_prefix}{carrier}:{sender_hash}:{ref}"

    def inbound_waiting(self, sender_hash: str) -> str:
        """The reassembly sets of one sender ``P:inbound:waiting:<sender hash>``: erasure
        and export find a subject's waiting parts by key, without a scan."""
        return self.inbound_waiting_prefix + sender_hash

    def tps(self, carrier: str) -> str:
        """A carrier's shared TPS bucket ``P:tps:<carrier>`` (fleet-global)."""
        return self.tps_prefix + carrier

    def bind_lease(self, carrier: str, slot: int) -> str:
        """A bind lease ``P:{lease}:bind:<carrier>:<slot>`` (fleet-global)."""
        return f"{self.lease_prefix}bind:{carrier}:{slot}"

    def lease_fence(self, carrier: str) -> str:
        """A carrier's fencing counter ``P:{lease}:fence:<carrier>`` (fleet-global)."""
        return f"{self.lease_prefix}fence:{carrier}"

    # -- the key table -----------------------------------------------------
    def pattern(self, doc: KeyDoc) -> re.Pattern[str]:
        """A regex matching the names of one :data:`KEY_TABLE` row under these keys."""
        base = self.base if doc.scope == "shard" else self.prefix
        rest = doc.pattern.removeprefix("P")
        parts = re.split(r"<[^>]+>", rest)
        return re.compile(re.escape(base) + ".+".join(re.escape(p) for p in parts) + r"\Z", re.S)

    def describe(self, key: str) -> KeyDoc | None:
        """The :data:`KEY_TABLE` row a key name belongs to (the most specific), or None."""
        found = [doc for doc in KEY_TABLE if self.pattern(doc).match(key)]
        if not found:
            return None
        # a name matching two patterns: the longer fixed text wins
        return max(found, key=lambda d: len(re.sub(r"<[^>]+>", "", d.pattern)))


def key_table_markdown() -> str:
    """:data:`KEY_TABLE` as the Markdown table docs/INTERNALS.md holds."""
    rows = ["| key | type | holds | written by | lives | cost per message | scope |",
            "|---|---|---|---|---|---|---|"]
    for d in KEY_TABLE:
        rows.append(f"| `{d.pattern}` | {d.type} | {d.holds} | {d.writer} | {d.ttl} | {d.cost} | {d.scope} |")
    return "\n".join(rows) + "\n"


class Positions:
    """Named positions of a list that Python builds and a Lua script reads by index.

    One definition for both sides: Python builds the list with
    :meth:`build` (by name), and the script's loader prepends :meth:`lua`,
    ``local <P>_<NAME>, ... = <first>, ...``, so the script reads
    ``ARGV[A_NOW]`` instead of ``ARGV[4]``. ``first`` is 1 for a list Lua
    indexes from its start, 0 for offsets from a position the script tracks.
    ``rest``: the name of a variable-length tail after the named positions
    (its first position is declared too; :meth:`build` appends it).
    """

    __slots__ = ("first", "lua_prefix", "names", "rest")

    def __init__(self, lua_prefix: str, names: Sequence[str], first: int = 1, rest: str | None = None) -> None:
        if len(set(names)) != len(names) or rest in names:
            raise ValueError("duplicate position names")
        self.lua_prefix = lua_prefix
        self.names = tuple(names)
        self.first = first
        self.rest = rest

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """The position of ``name`` as Lua numbers it."""
        if name == self.rest:
            return self.first + len(self.names)
        return self.first + self.names.index(name)

    def lua(self) -> str:
        """The Lua line declaring every position as a local constant."""
        names = [*self.names, *((self.rest,) if self.rest else ())]
        lua_names = ", ".join(f"{self.lua_prefix}_{n.upper()}" for n in names)
        values = ", ".join(str(self.first + i) for i in range(len(names)))
        return f"local {lua_names} = {values}\n"

    def build(self, **values: Any) -> list[Any]:
        """The list in position order (then the ``rest`` sequence); every name must be given."""
        expected = set(self.names) | ({self.rest} if self.rest else set())
        if values.keys() != expected:
            missing, extra = expected - values.keys(), values.keys() - expected
            raise TypeError(f"positions: missing {sorted(missing)}, unknown {sorted(extra)}")
        out = [values[n] for n in self.names]
        if self.rest:
            out += values[self.rest]
        return out


def lua_header(version: int, *positions: Positions) -> str:
    """What a script loader prepends: ``LAYOUT_VERSION`` (a string, as ARGV
    arrives) and the positions, on as many lines as there are lists."""
    return f"local LAYOUT_VERSION = '{version}'\n" + "".join(p.lua() for p in positions)


if __name__ == "__main__":  # pragma: no cover - prints the table for docs/INTERNALS.md
    print(key_table_markdown(), end="")
