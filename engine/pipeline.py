"""The dispatch pipeline: jobs stream in, submit_sm out, outcomes back to Redis.

Theory of operation
-------------------
One consumer loop reads a batch (``XREADGROUP COUNT n``) from the job lanes
and turns it into work without a task per message:

1. **decode** every entry into a `Job` (validation), **route** it to a
   carrier and **segment** its text; what fails becomes a dead letter
   (written and acked by the claim script). Valid jobs wait in the
   carrier's admission queue, unclaimed.
2. **admit and claim** (one script call per chunk, per carrier): when the
   carrier's windows have room, take the idempotency marks of about two
   windows' worth of jobs; ack duplicates; a mark that is our own entry's
   tells us a previous consumer died between submit_sm and its resp.
3. **submit** every part through the carrier's `BindPool` (window and rate
   limited, writes coalesced per loop tick). Each part's token is
   ``(job, part index, submit time)``; the pool calls `on_submit_resp` /
   `on_submit_lost` back — plain calls, no futures.
4. when a job's last part is answered, **record** it: one recorder task
   sends everything that completed meanwhile in one script call (job
   records, correlation entries, events, idempotency marks, then XACK of
   exactly those entries).

Priority, fairness and isolation (docs/INTERNALS.md, "Lanes and parking"):
jobs in hand are bounded per *class* — a carrier, a lane and a client
(configured in ``[[clients]]``, else ``other``) — by about ``lookahead_s`` of
the carrier's rate (`_Class.budget`). A job read for a class that cannot take
it now (its carrier has no bind up, the class is at its budget, or older jobs
of the class are parked) is **parked**: moved, one script call per batch
(park.lua), to the class's park stream ``P:park:<carrier>:<lane>[:<client>]``,
from which the carrier's admitter reads it back when the class has room. So a
stuck carrier's backlog waits in Redis, not in memory, and the lanes keep
flowing for the others; reading pauses only when no class of any carrier with
a bind up has room. Each carrier's jobs in hand are admitted by
`engine.admission.CarrierQueue`: high first, normal/bulk by ``lane_weights``,
clients by deficit round robin. A carrier with no bind up for
``outage_fail_after_s`` hands its waiting jobs to its fallback, or fails them
(``carrier_unavailable``). The entries in hand get their idle time reset now and then
(XCLAIM JUSTID) so no other consumer reclaims work that is still here.
Another loop reclaims the entries of consumers that went away (XAUTOCLAIM
after the visibility timeout).

Nothing is acked before its outcome is stored; Redis errors are retried with
backoff (a repeated script call is harmless: see claim.lua / record.lua).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import operator
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any, TypeVar, cast
from zlib import crc32

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from connectors.status import format_status, status_info
from dlr.ids import submit_normalizer
from dlr.store import BUCKETS_PER_WAIT, correlation_arg, correlation_bucket
from engine.admission import LANES, OTHER, CarrierQueue
from engine.backlog import group_backlog
from engine.config import CarrierSettings, Settings
from engine.history.text_cipher import TextCipher, b64, job_aad
from engine.hook_chain import chain_for
from engine.hook_views import JobEventView, ViewBatch
from engine.job import Job, JobError, parse_job
from engine.keys import Keys, marks_hash, shard_keys
from engine.marketing import QuietHours, with_footer
from engine.metrics import Metrics
from engine.redis_client import is_cluster, raw_reply_client
from engine.router import Router, RoutingError
from engine.scripts import (
    RECORD_PACKED,
    ClaimBatch,
    ClaimJob,
    ClaimList,
    ClaimPacked,
    DeadLetter,
    HandbackEntry,
    MarketingClaims,
    Packed,
    ParkEntry,
    RecordBatch,
    RecordJob,
    RecordWait,
    RequeueEntry,
    Script,
    claim_call,
    claim_mark,
    claim_statuses,
    handback_call,
    park_call,
    payload_json,
    record_call,
    requeue_call,
    schedule_call,
)
from engine.submit import SubmitBuilder
from engine.text.segmenter import ConcatRefs, Segmented, SegmentError, segment
from privacy_hooks import (
    HASH_HEX_LEN,
    HOOK_ATTEMPTS,
    HookFailed,
    KeyedHasher,
    mask_e164_digits,
    mask_number,
)
from throttling.backoff import Backoff

__all__ = ["ClaimArgs", "Pipeline", "ShardHints"]

log = logging.getLogger("sendgate.pipeline")

_REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
_json = payload_json
_RECORD_WIDTH = len(RECORD_PACKED)
_US = "\x1f"  # dlr/store.py's separator: a ref or message id holding it takes the general correlation form


def _raw_reply(response: Any, **_options: Any) -> Any:
    return response


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value) if value is not None else ""


def _entries(raw: Any) -> list[tuple[Any, dict[bytes, bytes] | None]]:
    """``[[id, [k, v, ...]], ...]`` → ``[(id, {k: v}), ...]`` (None for deleted entries)."""
    out: list[tuple[Any, dict[bytes, bytes] | None]] = []
    for entry_id, flat in raw:
        if flat is None:
            out.append((entry_id, None))
            continue
        pairs = iter(flat)  # (no two slices copied per entry)
        out.append((entry_id, dict(zip(pairs, pairs, strict=True))))
    return out


#: The lane class of a job read from the normal lane, by its ``priority`` field.
_PRIORITY_LANE = {name: index for index, name in enumerate(LANES)}
_NORMAL_LANE = _PRIORITY_LANE["normal"]

#: Dead-letter codes that also publish an event (the job's first and only one).
_T = TypeVar("_T")


def _s(value: Any) -> str:
    """A hook-edited event field as the script takes it (a removed one is "")."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _hook_reason(err: HookFailed) -> str:
    """A ``hook_failed`` dead letter's reason: the hook's class and point, nothing of the record."""
    return f"privacy hook {err.hook} failed in {err.point} ({err.error})"


_DEAD_LETTER_EVENTS = {"expired": "expired", "suppressed": "rejected", "client_closed": "rejected"}


class ShardHints:
    """Bounded memory of the shard each recently recorded message id's correlation
    entry is on (``shards`` > 1): a receipt this engine receives for its own submit
    is tried on that shard first, the others only if it is not matched there.

    A hint is a guess, never the truth: a wrong or missing one costs the probe
    of the other shards, nothing else. Kept per carrier, a plain dict of
    normalised id -> shard each: the record path writes into it directly (`of`,
    one dict store per id, then `trim` once per call) and the receipt sink takes
    a batch's hints in one pass (`take_many`). At most ``limit`` ids per carrier
    (the older half goes when it is full), taken on use.
    """

    __slots__ = ("_ids", "limit")

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._ids: dict[str, dict[str, int]] = {}

    def of(self, carrier: str) -> dict[str, int]:
        """The carrier's map (normalised id -> shard), to write hints into; `trim` after."""
        ids = self._ids.get(carrier)
        if ids is None:
            ids = self._ids[carrier] = {}
        return ids

    def trim(self) -> None:
        """Drop the older half of a carrier's hints once it holds more than ``limit``."""
        limit = self.limit
        for ids in self._ids.values():
            if len(ids) > limit:
                for old in list(islice(ids, len(ids) - limit // 2)):
                    del ids[old]

    def put(self, carrier: str, message_id: str, shard: int) -> None:
        self.of(carrier)[message_id] = shard
        self.trim()

    def take(self, carrier: str, message_id: str) -> int | None:
        ids = self._ids.get(carrier)
        return None if ids is None else ids.pop(message_id, None)

    def take_many(self, carrier: str, message_ids: Iterable[str]) -> list[int] | None:
        """The hint of each id, in order (-1: none), taken; None when the carrier has none."""
        ids = self._ids.get(carrier)
        if not ids:
            return None
        pop = ids.pop
        return [pop(m, -1) for m in message_ids]

    def give_back(self, carrier: str, message_ids: Iterable[str], shards: Iterable[int]) -> None:
        """Put hints `take_many` took back (a correlate call that failed is repeated as it was)."""
        self.of(carrier).update((m, k) for m, k in zip(message_ids, shards, strict=True) if k >= 0)

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._ids.values())


_NONE: Any = ()  # shared by every _InFlightJob until it is submitted (immutable: a Struct default)


class _InFlightJob(msgspec.Struct, eq=False, gc=False):
    """One job from its read until its outcome is recorded.

    A msgspec Struct: cheaper to make than a slots class. ``gc=False``: it holds
    nothing that refers back to it (its batch, fields, job, segments, class
    counters, PDUs, ids), so it is in no cycle; ``eq=False``: compared (and
    hashed) by identity, as before; its repr shows no field of the job.
    """

    batch: _Batch
    entry_id: str
    fields: dict[bytes, bytes]
    job: Job
    carrier: str
    seg: Segmented
    klass: _Class
    lane: int
    to_hash: str = ""
    # set when submitted; a job never submitted keeps these (shared, empty)
    pdus: list[Any] = _NONE
    message_ids: list[str] = _NONE
    attempts: list[int] = _NONE  # a list only once a part is retried or lost
    parts: int = 0  # len(seg.parts), set at construction
    pending: int = 0
    expect: int = 0
    event: str = "submitted"
    error: str = ""
    fallback_used: bool = False
    admitted: bool = False  # its claim result was acted upon

    def __post_init__(self) -> None:
        self.parts = len(self.seg.parts)

    def __repr__(self) -> str:  # never the job's fields (a number, a text)
        return f"_InFlightJob({self.entry_id!r}, {self.carrier!r}, {self.event!r})"


_PARTS_OF: Callable[[_InFlightJob], int] = operator.attrgetter("parts")
_client_of: Callable[[_InFlightJob], str] = operator.attrgetter("klass.client")

_Token = tuple[_InFlightJob, int, float]  # (job, part index, monotonic submit time)


class _Class:
    """Jobs of one carrier, lane and client class: how many are in hand, how many
    wait in its park stream (an estimate: exact for what this engine parked,
    learned for the others' by `Pipeline.check_parked`)."""

    __slots__ = ("admitted", "budget", "carrier", "client", "held", "lane", "parked", "shard", "stream")

    def __init__(
        self, carrier: str, lane: int, client: str, stream: str, budget: int, admitted: Any, shard: int = 0
    ) -> None:
        self.carrier = carrier
        self.shard = shard  # its park stream's shard (the shard of the jobs it holds)
        self.lane = lane
        self.client = client
        self.stream = stream  # its park stream
        self.budget = budget
        self.admitted = admitted  # metric child: sendgate_admitted{carrier, lane, client}
        self.held = 0
        self.parked = 0


class _Batch:
    """The entries of one read while any of its jobs is in hand (kept from being reclaimed)."""

    __slots__ = ("entry_ids", "remaining", "started", "stream")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.entry_ids: list[str] = []  # entries in hand
        self.remaining = 0  # jobs without an outcome yet
        self.started = time.monotonic()


class Pipeline:
    """Consumes the job lanes of one Redis and drives the carriers' bind pools."""

    def __init__(self, settings: Settings, redis: Redis, pools: dict[str, Any], metrics: Metrics) -> None:
        self.settings = settings
        self.redis = redis
        # A second client on the same connections whose XREADGROUP / XAUTOCLAIM
        # replies stay as hiredis parsed them (nested lists): redis-py's own
        # callbacks build a dict and a tuple per entry that we would rebuild.
        # (On Redis Cluster a second cluster client: engine/redis_client.py.)
        self._reader = raw_reply_client(redis, ("XREADGROUP", "XAUTOCLAIM"), _raw_reply)
        self._cluster = is_cluster(redis)
        # Shards on one plain Redis: one recorder for all of them, their record
        # calls pipelined (see _record_shards); on a Cluster one per shard.
        self._one_recorder = settings.redis.shards > 1 and not self._cluster
        self.pools = pools
        self.metrics = metrics
        # One key set per shard ([redis] shards): shard k's lanes, park streams and
        # every key its scripts touch (one hash tag each). Shard 0's is `keys`.
        self.shards: tuple[Keys, ...] = shard_keys(settings.redis.prefix, settings.redis.shards)
        self.nshards = len(self.shards)
        self.keys = self.shards[0]
        self.group = settings.engine.group
        self.consumer = settings.consumer_name
        self.router = Router(
            ((c.name, c.routes) for c in settings.carriers),
            {c.name: c.fallback for c in settings.carriers if c.fallback},
        )
        self.carriers: dict[str, CarrierSettings] = {c.name: c for c in settings.carriers}
        self._normalize_submit_id = {c.name: submit_normalizer(c.dlr_id_format) for c in settings.carriers}
        self.builders = {c.name: SubmitBuilder(c) for c in settings.carriers}
        self._hash_number = KeyedHasher(settings.privacy.hash_secret.encode())
        # a job's `to` (parse_job normalised it): hashed without normalising it again
        self._hash_to = self._hash_number.digits
        days = settings.privacy.retention_days
        self._message_ttl_s = days.message * 86400
        # [history] keep_text: each job's text sealed once per record call and carried,
        # never in clear, by its first event (engine/history/text_cipher.py)
        self._text_cipher: TextCipher | None = (
            TextCipher.from_text(settings.history.text_key) if settings.history.keep_text else None
        )
        # the idempotency window, not the message retention (docs/contract.md §3)
        self._mark_ttl_s = max(1, int(settings.engine.idempotency_hours * 3600))
        # The privacy hook chain (engine/hook_chain.py): called once per batch before
        # its script call when custom hooks are configured; with the defaults only,
        # their result is what the fast path computes (now + the policy's TTL).
        self.hooks = chain_for(settings)
        self._custom_hooks = self.hooks.has_custom
        self._payload_ttl_s = settings.privacy.retention_days.payload * 86400
        self._claim = Script("claim")
        self._record_script = Script("record")
        self._schedule = Script("schedule")
        self._requeue = Script("requeue")
        self._handback = Script("handback")
        e = settings.engine
        # Jobs in hand per class of a carrier without tps (see _budget).
        self._max_in_hand = max(e.batch_size, e.max_pending_parts or 4 * e.batch_size)
        self._in_hand = 0
        self._outstanding = 0  # parts handed to pools and not yet answered
        # Per shard, the BLOCK of its reader's next XREADGROUP: block_ms, doubled
        # after each empty read of all its lanes up to 8 x block_ms (at most 1 s,
        # and never below block_ms): an idle shard's reader costs a round trip a
        # second or so, not one per block_ms (see _read_shard).
        self._block_ms = [e.block_ms for _ in range(settings.redis.shards)]
        self._idle_block_cap = max(e.block_ms, min(8 * e.block_ms, 1000))
        # [engine] gather_ms: after a read that drained the lanes with fewer than
        # this many jobs, the reader waits that long before reading again (_read_shard).
        self._gather_ms = e.gather_ms
        self._gather_below = max(1, e.batch_size // 4) if e.gather_ms > 0 else 0
        self.gathers = 0  # waits for more jobs or outcomes (reader, recorder), ever (tests)
        self.reads = 0  # lane reads that returned jobs, ever (tests: jobs per read)
        self.read_jobs = 0  # and the jobs they returned
        # Per shard, set when a class may have room: that shard's reader looks again.
        self._capacity = [asyncio.Event() for _ in self.shards]
        for ev in self._capacity:
            ev.set()
        # Admission: jobs wait here, unclaimed, until their carrier's window has
        # room; see `_admit`. What a crash leaves here is simply re-read.
        self._client_weights = {cl.id: cl.weight for cl in settings.clients}
        self._queues: dict[str, CarrierQueue[_InFlightJob]] = {
            c: CarrierQueue(e.lane_weights, self._client_weights) for c in self.carriers
        }
        self._lane_of: dict[str, int] = {}
        self._stream_shard: dict[str, int] = {}  # every lane and park stream -> its shard
        for shard, keys in enumerate(self.shards):
            for lane, stream in enumerate(keys.lanes()):
                self._lane_of[stream] = lane
                self._stream_shard[stream] = shard
        # Per shard, per carrier, per lane: client class -> _Class; park stream -> _Class;
        # and per carrier every class of every shard.
        self._shard_classes: list[dict[str, tuple[dict[str, _Class], ...]]] = []
        self._carrier_classes: dict[str, list[_Class]] = {c.name: [] for c in settings.carriers}
        self._park_streams: dict[str, _Class] = {}
        for shard, keys in enumerate(self.shards):
            by_carrier: dict[str, tuple[dict[str, _Class], ...]] = {}
            for c in settings.carriers:
                # A class's budget is shared by the shards (jobs spread evenly over them).
                budget = max(1, -(-self._budget(c) // self.nshards))
                per_lane: list[dict[str, _Class]] = []
                for lane, lane_name in enumerate(LANES):
                    classes: dict[str, _Class] = {}
                    for client in (*self._client_weights, OTHER):
                        stream = keys.park(c.name, lane_name, "" if client == OTHER else client)
                        k = _Class(c.name, lane, client, stream, budget,
                                   metrics.admitted.labels(c.name, lane_name, client), shard)
                        classes[client] = k
                        self._park_streams[stream] = k
                        self._stream_shard[stream] = shard
                        self._carrier_classes[c.name].append(k)
                    per_lane.append(classes)
                by_carrier[c.name] = tuple(per_lane)
            self._shard_classes.append(by_carrier)
        self._classes = self._shard_classes[0]
        self._min_read = 1 if self.nshards == 1 else max(1, min(
            k.budget for k in self._park_streams.values()) // 4) if self._park_streams else 1
        # Which shard the correlation entries this engine recorded are on, for the
        # receipts it receives itself (shards > 1; the app hands it to the sink).
        self.receipt_hints = ShardHints()
        self._down_since: dict[str, float] = {}  # carrier -> when its last bind went down (monotonic)
        self._park = Script("park")
        self._groups_ready = False  # ensure_groups ran (the app calls it before run())
        self._adopter: asyncio.Task[None] | None = None
        self._wakeups: dict[str, asyncio.Event] = {c: asyncio.Event() for c in self.carriers}
        self._admitters: list[asyncio.Task[None]] = []
        self._batches: set[_Batch] = set()
        # Outcomes waiting for the record script, per stream; one recorder task
        # at a time drains them, so completions that arrive while a call is in
        # flight form the next call (adaptive batching, no timer).
        self._to_record: dict[str, list[_InFlightJob]] = {}
        self._to_ack: dict[str, list[str]] = {}
        self._recorders: dict[int, asyncio.Task[None]] = {}  # per shard: one recorder at a time
        self._enqueued = 0  # outcomes queued for recording, ever
        self._recorded = 0  # outcomes recorded, ever
        self._recorded_event = asyncio.Event()
        self._max_record = max(100, e.batch_size)
        # Delays from the engine's one backoff (throttling.backoff), by attempt:
        # a transient submit error retries after retry_backoff_s doubling (no cap
        # within retry_attempts), jitter 20 %; a failed Redis call after 0.1 s
        # doubling up to 5 s, jitter 50 %.
        self._submit_backoff = Backoff(
            e.retry_backoff_s, e.retry_backoff_s * 2.0 ** min(max(e.retry_attempts, 0), 30), jitter=0.2
        )
        self._redis_backoff = Backoff(0.1, 5.0, jitter=0.5)
        self._stopping = False
        self._run_done = asyncio.Event()  # run() has returned: nothing more will be read
        # Concatenation references per destination, taken only by texts in parts (a fixed
        # 128 KiB table: the dict of number -> reference it replaces kept up to 200,000
        # numbers, ~24 MiB at its peak, and left the allocator's arenas fragmented).
        self._refs = ConcatRefs()
        # [[clients]] footer / quiet_hours, for kind=marketing jobs
        self._guardrails: dict[str, tuple[str, QuietHours | None]] = {
            c.id: (c.footer, QuietHours(c.quiet_hours) if c.quiet_hours else None)
            for c in settings.clients if c.footer or c.quiet_hours
        }
        for c in settings.carriers:
            metrics.add_carrier(c.name)
        self._submit_ok = {c: metrics.submits.labels(c, "ok") for c in self.carriers}
        # submit_sm answered ok per carrier since the last record call, which adds them
        # to the counter (once per batch: a prometheus child's inc takes a lock)
        self._ok_since: dict[str, int] = dict.fromkeys(self.carriers, 0)
        # Set by the app: posts a job's event to its callback URL (webhooks).
        self.forward: Callable[[str, dict[str, str]], None] | None = None
        # Set by the app: called after each record call (new correlation entries:
        # receipts that arrived early can be matched now).
        self.on_recorded: Callable[[], None] | None = None
        self._submit_latency = metrics.submit_latency
        # Closed client accounts (engine/closure.py): the app reloads them every few
        # seconds; a job's client is checked here in memory, no call per message.
        self.closed_clients: frozenset[str] = frozenset()

    # ------------------------------------------------------------------ setup
    async def ensure_groups(self) -> None:
        """Create the consumer group on every lane and park stream at id 0
        (MKSTREAM): jobs pushed before the engine's first start are sent."""
        for stream in (*self._lane_of, *self._park_streams):
            try:
                await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as err:
                if "BUSYGROUP" not in str(err):
                    raise
        # Each shard's registry of park streams (P:parks): a later start with fewer
        # carriers or clients finds the orphaned ones there, without a SCAN.
        for shard, keys in enumerate(self.shards):
            mine = [st for st, k in self._park_streams.items() if k.shard == shard]
            if self.nshards == 1 and not await self.redis.exists(keys.park_registry):
                # An installation from before the registry: its park streams are
                # found once, by a SCAN, on this version's first start (the sharded
                # layout is newer than the registry: nothing to find there).
                async for raw in self.redis.scan_iter(match=keys.park_prefix + "*", count=1000, _type="stream"):
                    mine.append(_text(raw))
            if mine:
                await self.redis.sadd(keys.park_registry, *mine)
        self._groups_ready = True

    def _budget(self, c: CarrierSettings) -> int:
        """Jobs one class of carrier ``c`` may hold (read, not yet recorded).

        Two windows' worth in the pool plus ``lookahead_s`` of the carrier's
        rate (at least a window) waiting for admission: small enough that a
        job arriving in another lane or for another client is admitted within
        about ``lookahead_s``. Without a tps there is no rate to bound by: the
        old global bound (``max_pending_parts``) per class.
        """
        cap = max(1, c.window * c.binds)
        if c.tps:
            return 2 * cap + max(cap, math.ceil(c.tps * self.settings.engine.lookahead_s))
        return max(4 * cap, self._max_in_hand)

    def _is_up(self, carrier: str) -> bool:
        pool = self.pools.get(carrier)
        return pool is not None and pool.binds_up() > 0

    def _window_capacity(self, carrier: str) -> int:
        """Parts one carrier can have in its windows: window x submitting binds."""
        c = self.carriers[carrier]
        return max(1, c.window * c.binds)

    # ------------------------------------------------------------- main loop
    async def close_reader(self) -> None:
        """Close the reader's own connections: on Redis Cluster it is a second client
        (engine/redis_client.py); on a plain Redis it shares the main client's pool."""
        if is_cluster(self._reader):
            await self._reader.aclose()

    async def run(self) -> None:
        """Read and dispatch until `stop()`."""
        if not self._groups_ready:
            await self._retry(self.ensure_groups)
        loop = asyncio.get_running_loop()
        self._adopter = loop.create_task(self._adopt_orphans_once(), name="adopt-orphan-parks")
        self._admitters = [loop.create_task(self._admit(c), name=f"admit-{c}") for c in self.carriers]
        # One reader per shard: a shard whose calls are slow (or whose node is
        # down) holds up its own reads only.
        readers = [loop.create_task(self._read_shard(shard), name=f"read-shard-{shard}") for shard in range(self.nshards)]
        try:
            done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in readers:
                t.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            if not self._stopping:  # run() failed: stop admitting at once
                self._stopping = True
                for t in self._admitters:
                    t.cancel()
            if self._adopter is not None and not self._adopter.done():
                self._adopter.cancel()
            # Admitters finish the chunk in hand and return (see _admit).
            await asyncio.gather(*self._admitters, return_exceptions=True)
            self._run_done.set()

    async def _read_shard(self, shard: int) -> None:
        """Read one shard's lanes (batched, as the classes have room) until `stop()`."""
        e = self.settings.engine
        lanes = self.shards[shard].lanes()
        capacity = self._capacity[shard]
        consumed = [self.metrics.jobs_consumed.labels(lane) for lane in LANES]
        longest = self._idle_block_cap
        while not self._stopping:
            rooms = self._lane_rooms(shard)
            counts = {lanes[i]: min(e.batch_size, rooms[i]) for i in range(3) if rooms[i] > 0}
            if not counts:
                # No class of a carrier with a bind up has room: wait for a
                # job's outcome or a bind (or look again within a second).
                capacity.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await capacity.wait()
                continue
            try:
                reply = await self._read_lanes(counts)
            except ResponseError as err:
                if "NOGROUP" in str(err):
                    await self._retry(self.ensure_groups)
                    continue
                raise
            except _REDIS_ERRORS as err:
                self.metrics.redis_errors.inc()
                log.warning("redis unavailable while reading jobs of shard %d (%s); retrying", shard, type(err).__name__)
                await asyncio.sleep(0.2 + random.random() * 0.3)
                continue
            # An idle shard (every lane read, nothing there) blocks twice as long
            # next time, up to `_idle_block_cap`: a job pushed meanwhile ends the
            # block at once (XREADGROUP BLOCK), so this costs no latency, only
            # fewer empty round trips. Not while a lane is left out of the read
            # (no room): its room would not end the block.
            if not reply and len(counts) == 3:
                self._block_ms[shard] = min(2 * self._block_ms[shard], longest)
            else:
                self._block_ms[shard] = e.block_ms
            # Even when stop() came during the read: the entries go to the
            # admission queues, and drain() hands the unstarted ones back.
            got, drained = await self._dispatch_read(reply, counts, consumed)
            if got:
                self.reads += 1
                self.read_jobs += got
            # Steady rate (issue #17): a read that drained the lanes with few jobs
            # means the engine is ahead of the producers; each call's fixed cost
            # (round trip, script set-up, packing, wake-ups) would be paid for those
            # few jobs in the read, the claim, the record and the receipt calls.
            # Wait up to `gather_ms` first, so the next read carries what came
            # meanwhile: a blocking read of the high lane alone, so that a high
            # job ends the wait at once (it goes out as before); normal and bulk
            # jobs wait at most `gather_ms` longer. A burst (full reads) and an
            # idle lane (empty reads: the BLOCK ends at the first job) never wait.
            if 0 < got < self._gather_below and drained and not self._stopping:
                self.gathers += 1
                high = lanes[0]
                if high in counts:
                    # The high lane alone, blocking: its next job ends the wait at once.
                    try:
                        raw: Any = await self._reader.xreadgroup(
                            self.group, self.consumer, {high: ">"}, count=counts[high], block=self._gather_ms
                        )
                    except ResponseError as err:
                        if "NOGROUP" in str(err):
                            continue
                        raise
                    except _REDIS_ERRORS:
                        continue  # the next read meets the outage
                    await self._dispatch_read(raw.items() if isinstance(raw, dict) else (raw or ()), counts, consumed)
                else:
                    await asyncio.sleep(self._gather_ms / 1000)

    async def _dispatch_read(
        self, reply: Iterable[tuple[Any, Any]], counts: dict[str, int], consumed: list[Any]
    ) -> tuple[int, bool]:
        """A lane read's entries to the admission queues, counted per lane: (jobs,
        drained: every lane gave fewer than ``counts`` asked, nothing more waits there)."""
        got = 0
        drained = True
        for stream_name, raw_entries in reply:
            stream = stream_name.decode() if isinstance(stream_name, bytes) else stream_name
            n = len(raw_entries)
            got += n
            if n >= counts.get(stream, 0):
                drained = False
            consumed[self._lane_of[stream]].inc(n)
            await self.process(stream, _entries(raw_entries))
        return got, drained

    def _wake_readers(self) -> None:
        for ev in self._capacity:
            ev.set()

    def _lane_rooms(self, shard: int = 0) -> list[int]:
        """How many jobs to read from each lane (0: not now): the most room of a
        class of that lane, of a carrier with a bind up, with nothing parked (a
        class with parked jobs is refilled from its park stream)."""
        rooms = [0, 0, 0]
        # Shards: a reader reads once a class has room for a quarter of its (shard's)
        # budget, not for each job that leaves: four readers reading a few jobs at a
        # time cost a Redis round trip each (one shard: as before, any room).
        min_read = self._min_read
        for carrier, per_lane in self._shard_classes[shard].items():
            if not self._is_up(carrier):
                if self._in_outage(carrier):
                    # Read its jobs too: parked as read, then moved to its
                    # fallback or failed by check_outages.
                    n = self.settings.engine.batch_size
                    return [n, n, n]
                continue
            for lane, classes in enumerate(per_lane):
                for k in classes.values():
                    free = k.budget - k.held
                    if free > rooms[lane] and not k.parked and free >= min_read:
                        rooms[lane] = free
        return rooms

    async def _read_lanes(self, counts: dict[str, int]) -> list[tuple[Any, Any]]:
        """``(stream, raw entries)`` read from the lanes, at most ``counts[lane]`` each.

        XREADGROUP has one COUNT for all its streams: with equal counts one
        blocking call; otherwise one pipelined call per lane without blocking,
        and only when all come back empty a blocking one with the smallest count
        (so a lane is never read past its room: what is read beyond a class's
        room would be parked for nothing)."""
        values = set(counts.values())
        if len(values) > 1:
            pipe = self._reader.pipeline(transaction=False)
            for stream, n in counts.items():
                pipe.xreadgroup(self.group, self.consumer, {stream: ">"}, count=n)
            out: list[tuple[Any, Any]] = []
            for reply in await pipe.execute():
                out.extend(reply.items() if isinstance(reply, dict) else (reply or ()))
            if out:
                return out
        streams = dict.fromkeys(counts, ">")
        block = self._block_ms[self._stream_shard[next(iter(counts))]]
        raw: Any = await self._reader.xreadgroup(
            self.group, self.consumer, streams, count=min(values), block=block  # type: ignore[arg-type]
        )
        return list(raw.items() if isinstance(raw, dict) else (raw or ()))

    def _in_outage(self, carrier: str) -> bool:
        """No bind up for the carrier's ``outage_fail_after_s`` (when set)."""
        limit = self.carriers[carrier].outage_fail_after_s
        since = self._down_since.get(carrier)
        return bool(limit) and since is not None and time.monotonic() - since >= limit

    def on_bind_state(self, carrier: str, up: bool) -> None:
        """A bind of ``carrier`` went up or down: read and admit again."""
        if up:
            self._down_since.pop(carrier, None)
        elif not self._is_up(carrier):
            pool = self.pools.get(carrier)
            if pool is not None and pool.leased and not pool.leases():
                # No bind lease here (max_binds): the carrier is other engines' to
                # send to, not in outage; its jobs wait parked for them.
                self._down_since.pop(carrier, None)
            else:
                self._down_since.setdefault(carrier, time.monotonic())
        self._wake_readers()
        wakeup = self._wakeups.get(carrier)
        if wakeup is not None:
            wakeup.set()

    def stop(self) -> None:
        """Stop reading and admitting new jobs (parts in flight go on)."""
        self._stopping = True
        self._wake_readers()
        for ev in self._wakeups.values():
            ev.set()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every admitted job has its outcome recorded; False on timeout.

        Jobs read but never admitted stay unacked (and unclaimed): another
        consumer — or this one after a restart — sends them later.
        """
        deadline = time.monotonic() + timeout_s
        if self._admitters:  # run() was started: let its last read land in the queues
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._run_done.wait()
        pending_admitters = [t for t in self._admitters if not t.done()]
        if pending_admitters:  # each finishes the chunk it is claiming, then returns
            await asyncio.wait(pending_admitters, timeout=max(0.0, deadline - time.monotonic()))
        while self._outstanding > 0 or self._recorders:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._recorders:
                await asyncio.wait(set(self._recorders.values()), timeout=min(remaining, 0.05))
            else:
                await asyncio.sleep(min(0.01, remaining))
        # Jobs never started go back to their lane at once.
        await self._requeue_unstarted()
        return True

    async def _requeue_unstarted(self) -> None:
        by_stream: dict[str, list[_InFlightJob]] = {}
        for queue in self._queues.values():
            for ij in queue.clear():
                by_stream.setdefault(ij.batch.stream, []).append(ij)
        for stream, jobs in by_stream.items():
            for i in range(0, len(jobs), 500):
                chunk = jobs[i : i + 500]
                meta = _json([RequeueEntry(entry_id=ij.entry_id, nfields=2 * len(ij.fields)) for ij in chunk])
                flat = [x for ij in chunk for kv in ij.fields.items() for x in kv]
                await self._retry(self._requeue, self.redis, *requeue_call(stream, self.group, meta, flat))
            for ij in jobs:
                self._release(ij)
            log.info("handed %d unstarted job(s) back to %s", len(jobs), stream)

    @property
    def outstanding_parts(self) -> int:
        return self._outstanding

    def carrier_counts(self, carrier: str) -> dict[str, int]:
        """Jobs of ``carrier`` in hand (read, not yet recorded) and parked (as far as known here)."""
        classes = self._carrier_classes[carrier]
        return {"in_hand": sum(k.held for k in classes), "parked": sum(k.parked for k in classes)}

    @property
    def batches_in_flight(self) -> int:
        return len(self._batches)

    # ------------------------------------------------------------ one batch
    async def process(self, stream: str, entries: Sequence[tuple[Any, dict[bytes, bytes] | None]]) -> None:
        """Decode, route and segment one read's entries (of a lane or a park
        stream); queue them for admission, or park them."""
        now = time.time()
        batch = _Batch(stream)
        jobs: list[_InFlightJob] = []
        dead_meta: list[DeadLetter] = []
        dead_fields: list[bytes] = []
        scheduled: list[tuple[str, dict[bytes, bytes], float, str]] = []
        dead_codes: dict[str, int] = {}
        to_park: list[tuple[str, dict[bytes, bytes], _Class]] = []
        lane = self._lane_of.get(stream)
        source = None if lane is not None else self._park_streams.get(stream)
        if source is not None:
            lane = source.lane
        elif lane is None:  # pragma: no cover - we read lanes and park streams only
            raise ValueError(f"not a lane or park stream: {stream}")
        shard = self._stream_shard[stream]
        classes_of = self._shard_classes[shard]
        nshards = self.nshards
        wrong: list[tuple[str, dict[bytes, bytes], int]] = []
        up: dict[str, bool] = {}
        for raw_id, fields in entries:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            if fields is None:  # deleted from the stream while pending
                self._to_ack.setdefault(stream, []).append(entry_id)
                continue
            if nshards > 1 and source is None:
                # A job pushed to another shard than its id's: moved to its own
                # shard's lane (a job without a usable id is dead-lettered below).
                # (engine.keys.shard_of's rule, inline: once per job read)
                jid = fields.get(b"id")
                if jid and (right := crc32(jid) % nshards) != shard:
                    wrong.append((entry_id, fields, right))
                    continue
            try:
                job = parse_job(fields, now, allow_private_callbacks=self.settings.webhooks.allow_private)
                if job.client and job.client in self.closed_clients:
                    raise JobError("client_closed", "the client's account is closed")
                if job.send_at and job.send_at > now + 0.5:
                    scheduled.append((entry_id, fields, job.send_at, job.id))
                    continue
                if job.kind == "marketing" and job.client in self._guardrails:
                    quiet_until = self._marketing(job, fields, now)
                    if quiet_until:
                        scheduled.append(
                            (entry_id, {**fields, b"quiet_until": b"%d" % quiet_until}, quiet_until, job.id)
                        )
                        continue
                # A parked job belongs to the carrier it was parked for (a
                # fallback's park stream holds jobs moved there in an outage).
                carrier = self.router.route(job.to, job.carrier) if source is None else source.carrier
                # `priority` on the normal lane decides the job's lane class (a lane
                # pushed to directly keeps its own; a parked job is already in its class)
                job_lane = _PRIORITY_LANE[job.priority] if source is None and lane == _NORMAL_LANE else lane
                classes = classes_of[carrier][job_lane]
                k = classes.get(job.client) or classes[OTHER]
                if source is None:
                    is_up = up.get(carrier)
                    if is_up is None:
                        is_up = up[carrier] = self._is_up(carrier)
                    if not is_up or k.parked or k.held >= k.budget:
                        to_park.append((entry_id, fields, k))
                        k.parked += 1  # now: later jobs of this read keep their order
                        continue
                seg = self._segment(job, carrier)
            except (JobError, RoutingError, SegmentError) as err:
                code: str = err.code
                reason = err.reason if isinstance(err, (JobError, SegmentError)) else str(err)
                self._dead_letter(entry_id, fields, code, reason, dead_meta, dead_fields)
                dead_codes[code] = dead_codes.get(code, 0) + 1
                continue
            k.held += 1
            jobs.append(_InFlightJob(batch, entry_id, fields, job, carrier, seg, k, k.lane))
        if scheduled:
            ttls = None
            if self._custom_hooks:
                hooked = await self._hook_scheduled(scheduled)
                if isinstance(hooked, HookFailed):
                    for entry_id, fields, _due, _job_id in scheduled:
                        self._dead_letter(entry_id, fields, "hook_failed", _hook_reason(hooked), dead_meta, dead_fields)
                    dead_codes["hook_failed"] = dead_codes.get("hook_failed", 0) + len(scheduled)
                    scheduled = []
                else:
                    ttls = hooked
            if scheduled:
                await self._retry(self._hold_scheduled, stream, scheduled, ttls)
        if dead_meta:
            until = await self._dead_retention(dead_meta, dead_codes)
            await self._retry_claim(
                stream, _json(ClaimBatch(claims=[], dead=dead_meta, retention_until=until)), dead_fields
            )
            for code, n in dead_codes.items():
                self.metrics.dead_letters.labels(code).inc(n)
        if to_park:
            await self._park_entries(stream, to_park)
        if wrong:
            await self._retry(self._move_to_shards, stream, lane, wrong)
        if not jobs:
            if self._to_ack.get(stream):
                self._schedule_record(shard)
            return
        batch.remaining = len(jobs)
        batch.entry_ids = [ij.entry_id for ij in jobs]
        self._count_segments(jobs)
        self._batches.add(batch)
        self._in_hand += len(jobs)
        touched: set[str] = set()
        queues = self._queues
        for ij in jobs:
            queues[ij.carrier].lanes[ij.lane].push(ij.klass.client, ij)  # CarrierQueue.push, a call fewer
            touched.add(ij.carrier)
        for carrier in touched:
            self._wakeups[carrier].set()

    async def _move_to_shards(self, stream: str, lane: int, wrong: list[tuple[str, dict[bytes, bytes], int]]) -> None:
        """Jobs read from the wrong shard: XADD to the same lane of their own shard
        first, then XACK and XDEL here. A crash between the two leaves the entry
        pending here: it is moved again, and the second copy on the right shard
        is a duplicate its idempotency mark (taken on that shard) stops — never
        lost, never sent twice. Rare (a producer that ignores the routing rule):
        plain commands, two pipelines per batch that has some."""
        pipe = self.redis.pipeline(transaction=False)
        for _entry_id, fields, right in wrong:
            pipe.xadd(self.shards[right].lanes()[lane], cast("Any", fields))
        await pipe.execute()
        ids = [entry_id for entry_id, _f, _r in wrong]
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(stream, self.group, *ids)
        pipe.xdel(stream, *ids)
        await pipe.execute()
        self.metrics.jobs_wrong_shard.inc(len(wrong))
        log.warning("moved %d job(s) pushed to the wrong shard to their own shard's lane", len(wrong))

    async def _park_entries(self, stream: str, to_park: list[tuple[str, dict[bytes, bytes], _Class]]) -> None:
        """Move entries of ``stream`` to their classes' park streams (one park.lua call).

        The classes' ``parked`` counts were raised by the caller already."""
        dests: dict[str, int] = {}
        meta: list[ParkEntry] = []
        flat: list[bytes] = []
        counts: dict[_Class, int] = {}
        for entry_id, fields, k in to_park:
            dest = dests.get(k.stream)
            if dest is None:
                dest = dests[k.stream] = len(dests) + 1
            meta.append(ParkEntry(entry_id=entry_id, nfields=2 * len(fields), dest=dest))
            for kv in fields.items():
                flat.extend(kv)
            counts[k] = counts.get(k, 0) + 1
        await self._retry(self._park, self.redis, *park_call(stream, list(dests), self.group, _json(meta), flat))
        for k, n in counts.items():
            self.metrics.jobs_parked.labels(k.carrier, LANES[k.lane]).inc(n)
            if k.held < k.budget:  # parked only to keep its order: refill now
                self._wakeups[k.carrier].set()

    def _release(self, ij: _InFlightJob) -> None:
        """``ij`` leaves the engine's hands (outcome queued, handed back, or moved).
        (:meth:`_job_done` has it inline: the same steps.)"""
        batch = ij.batch
        batch.remaining -= 1
        self._in_hand -= 1
        if batch.remaining == 0:
            self._batches.discard(batch)
        k = ij.klass
        k.held -= 1
        if k.held < k.budget:
            if k.parked:
                self._wakeups[k.carrier].set()
            else:
                capacity = self._capacity[k.shard]
                if not capacity.is_set():
                    capacity.set()

    def _refill_wanted(self, carrier: str) -> bool:
        return any(k.parked and k.held < k.budget for k in self._carrier_classes[carrier])

    async def _refill(self, carrier: str) -> None:
        """Read parked jobs of ``carrier`` back into hand, as many as each class has room for."""
        wanted = [(k, k.budget - k.held) for k in self._carrier_classes[carrier] if k.parked and k.held < k.budget]
        pipe = self._reader.pipeline(transaction=False)
        for k, room in wanted:
            pipe.xreadgroup(self.group, self.consumer, {k.stream: ">"}, count=room)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except _REDIS_ERRORS as err:
            await self._backoff(1, err)
            return
        for (k, room), reply in zip(wanted, replies, strict=True):
            if isinstance(reply, Exception):
                if "NOGROUP" in str(reply):
                    await self._retry(self.ensure_groups)
                continue
            items = reply.items() if isinstance(reply, dict) else (reply or ())
            raw = [e for _name, es in items for e in es]
            got = len(raw)
            # Fewer than asked: the park stream is empty for this group (until
            # this engine, or check_parked for another's, parks more).
            k.parked = 0 if got < room else max(1, k.parked - got)
            if got:
                await self.process(k.stream, _entries(raw))
        self._wake_readers()

    # -------------------------------------------------------------- admission
    async def _admit(self, carrier: str) -> None:
        """Claim and submit queued jobs as the carrier's windows make room.

        The idempotency mark is taken (claim script) just before the parts
        go to the pool, for no more than about two windows' worth. So after a
        crash, a mark without an outcome means the job was written or about
        to be: reported `unknown` (or re-sent), while the jobs that were only
        queued carry no mark and are sent normally by whoever reclaims them.
        """
        queue = self._queues[carrier]
        wakeup = self._wakeups[carrier]
        pool = self.pools[carrier]
        cap = self._window_capacity(carrier)
        while not self._stopping:
            if self._refill_wanted(carrier) and pool.binds_up() and pool.has_lease():
                try:
                    await self._refill(carrier)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("reading parked jobs failed for carrier %s; retrying", carrier)
                    await asyncio.sleep(0.5)
                continue
            if not queue:
                wakeup.clear()
                await wakeup.wait()
                continue
            if not pool.binds_up() or not pool.has_lease():
                # Take no idempotency mark for a carrier that cannot send: its
                # jobs stay unclaimed (for its fallback after outage_fail_after_s;
                # fenced off its bind leases: handed back, hand_back_fenced).
                wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await wakeup.wait()
                continue
            if pool.pending() >= cap:
                await pool.wait_pending_below(cap)
                continue  # (re-checks _stopping)
            # jobs in admission order while their parts fit (at least one)
            chunk = queue.pop_chunk(2 * cap - pool.pending(), _PARTS_OF, _client_of)
            try:
                await self._claim_and_submit(chunk)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Never let one bad step stop admission for the carrier: the
                # chunk goes back to the head of the queue and is tried again.
                log.exception("admission step failed for carrier %s; retrying", carrier)
                for ij in reversed([ij for ij in chunk if not ij.admitted]):
                    queue.push_front(ij.lane, ij.klass.client, ij)
                await asyncio.sleep(0.5)

    async def _claim_and_submit(self, chunk: list[_InFlightJob]) -> None:
        by_stream: dict[str, list[_InFlightJob]] = {}
        for ij in chunk:
            by_stream.setdefault(ij.batch.stream, []).append(ij)
        resend = self.settings.engine.resend_unknown
        now = time.time()
        calls: list[tuple[str, list[_InFlightJob], list[_InFlightJob], bytes, list[bytes], ClaimPacked,
                          MarketingClaims | None, list[int] | None, dict[str, int]]] = []
        for stream, waiting in by_stream.items():
            # A job whose expires_at passed while it waited for the window is
            # dropped now: dead letter `expired` and event `expired` (claim.lua).
            jobs: list[_InFlightJob] = []
            expired: list[_InFlightJob] = []
            dead_meta: list[DeadLetter] = []
            dead_fields: list[bytes] = []
            for ij in waiting:
                if ij.job.expires_at and ij.job.expires_at <= now:
                    expired.append(ij)
                    self._dead_letter(ij.entry_id, ij.fields, "expired",
                                      "expires_at passed while the job waited for the carrier's window",
                                      dead_meta, dead_fields)
                else:
                    jobs.append(ij)
            dead_codes = {"expired": len(expired)} if expired else {}
            until = await self._dead_retention(dead_meta, dead_codes) if dead_meta else self._retention_until()
            claims, lists, marketing, packed, order = self._claims(jobs, self.shards[self._stream_shard[stream]])
            payload = _json(ClaimBatch(claims=claims, dead=dead_meta, retention_until=until, lists=lists))
            calls.append((stream, jobs, expired, payload, dead_fields, packed, marketing, order, dead_codes))
        # One claim call per stream (a stream is of one shard). On one Redis the
        # shards' calls go in one pipelined round trip (each call still one slot);
        # on a Cluster they run at once, so a slow shard delays a chunk by its own
        # latency only.
        if len(calls) == 1:
            c = calls[0]
            replies: list[Any] = [await self._retry_claim(c[0], c[3], c[4], c[5], c[6])]
        elif not self._cluster:
            replies = await self._claims_pipelined([(c[0], c[3], c[4], c[5], c[6]) for c in calls])
        else:
            replies = await asyncio.gather(
                *(self._retry_claim(c[0], c[3], c[4], c[5], c[6]) for c in calls),
                return_exceptions=True,
            )
        failure: BaseException | None = None
        for (stream, jobs, expired, _payload, _dead, _packed, _marketing, order, dead_codes), statuses in zip(
            calls, replies, strict=True
        ):
            if isinstance(statuses, BaseException):
                # The other streams' claims went through: act on them, then fail
                # (the admitter puts the jobs not acted upon back in the queue).
                failure = failure or statuses
                continue
            if order is not None:  # answers in the script's order (payload, marketing, transactional): back to the jobs'
                in_order = [0] * len(statuses)
                for at, i in enumerate(order):
                    in_order[i] = statuses[at]
                statuses = in_order
            if expired:
                for code, n in dead_codes.items():
                    self.metrics.dead_letters.labels(code).inc(n)
                for ij in expired:
                    ij.admitted = True
                    self._job_done(ij, record=False)  # acked by the claim script
            duplicates = cancelled = 0
            admitted: dict[_Class, int] = {}
            suppressed: list[_InFlightJob] = []
            ready: list[tuple[Any, _Token]] = []  # single-part submit_sm, to the pool in one call
            try:
                for ij, status in zip(jobs, statuses, strict=True):
                    ij.admitted = True
                    k = ij.klass
                    admitted[k] = admitted.get(k, 0) + 1
                    if status == 1:  # sent under another entry: acked by the claim script
                        duplicates += 1
                        self._job_done(ij, record=False)
                        continue
                    if status == 3:  # marketing to a suppressed number: dead-lettered below
                        ij.admitted = False  # until then: a failure puts it back in the queue
                        suppressed.append(ij)
                        continue
                    if status == 4:  # cancelled while it waited: acked, event published by the script
                        cancelled += 1
                        self._job_done(ij, record=False)
                        continue
                    if not ij.to_hash:
                        ij.to_hash = self._hash_to(ij.job.to)
                    if status == 2:
                        self.metrics.jobs_reclaimed.inc()
                        if not resend:
                            ij.event, ij.error = "unknown", "submit_unanswered"
                            self._job_done(ij)
                            continue
                    try:
                        self._submit_job(ij, ready)
                    except Exception as err:  # a PDU we cannot build: fail the job, keep going
                        log.error("job could not be encoded for carrier %s: %s", ij.carrier, type(err).__name__)
                        ij.event, ij.error = "failed", "encode_error"
                        self._job_done(ij)
            finally:  # (what was admitted is not put back in the queue: it goes now)
                if ready:
                    self._submit_ready(ready)
            if duplicates:
                self.metrics.jobs_duplicate.inc(duplicates)
            if cancelled:
                self.metrics.events.labels("cancelled").inc(cancelled)
            for k, n in admitted.items():
                k.admitted.inc(n)
            if suppressed:
                await self._reject_suppressed(stream, suppressed)
        if failure is not None:
            raise failure

    def _claims(
        self, jobs: list[_InFlightJob], keys: Keys
    ) -> tuple[list[ClaimJob], list[ClaimList], MarketingClaims | None, ClaimPacked, list[int] | None]:
        """The claim script's entries for ``jobs`` (of the shard of ``keys``): a
        marketing job goes packed with its number's keyed hash, grouped by its
        client's suppression list (that shard's copy, in ``lists``), checked in
        the same call that takes the idempotency marks (docs/contract.md §2.6);
        a transactional job goes packed (``CLAIM_PACKED``); one that does not
        pack goes in the payload (``claims``). The script answers the payload's
        claims, then the marketing ones list by list, then the transactional
        ones: when that is not the jobs' own order, the jobs' indexes in the
        order of its answers (else None). Returns (claims, lists, marketing,
        packed, order)."""
        claims: list[ClaimJob] = []
        packed = ClaimPacked()
        in_payload: list[int] = []
        in_packed: list[int] = []
        # per client: its marketing claims and their indexes (usually one client)
        groups: dict[str, tuple[MarketingClaims, list[int]]] = {}
        hash_number = self._hash_to
        shuffled = False  # a job answered before one that comes earlier in ``jobs``
        rank = 0  # of the last job: 0 payload, 1 marketing, 2 transactional (packed)
        for i, ij in enumerate(jobs):
            job = ij.job
            if job.kind != "marketing":
                if packed.add((job.id, ij.entry_id, job.ref)):
                    in_packed.append(i)
                    rank = 2
                    continue
                # positional (keywords cost more): job_id, entry_id, suppression, to_hash, ref
                claims.append(ClaimJob(job.id, ij.entry_id, "", "", job.ref))
            else:
                ij.to_hash = to_hash = hash_number(job.to)
                group = groups.get(job.client)
                if group is None:
                    group = groups[job.client] = (MarketingClaims(HASH_HEX_LEN), [])
                    shuffled = shuffled or len(groups) > 1  # (two lists: worked out below)
                if group[0].add_claim(job.id, ij.entry_id, job.ref, to_hash):
                    group[1].append(i)
                    if rank > 1:
                        shuffled = True
                    rank = 1
                    continue
                claims.append(ClaimJob(job.id, ij.entry_id, keys.suppression(job.client), to_hash, job.ref))
            in_payload.append(i)
            if rank:
                shuffled = True
        lists: list[ClaimList] = []
        marketing: MarketingClaims | None = None
        in_marketing: list[int] = []
        for client, (group_claims, at) in groups.items():
            if not group_claims.count:
                continue
            lists.append(ClaimList(keys.suppression(client), group_claims.count))
            in_marketing += at
            if marketing is None:
                marketing = group_claims
            else:
                marketing.extend(group_claims)
        if not shuffled:
            return claims, lists, marketing, packed, None
        return claims, lists, marketing, packed, in_payload + in_marketing + in_packed

    async def _reject_suppressed(self, stream: str, jobs: list[_InFlightJob]) -> None:
        """Marketing jobs the claim script found suppressed: dead letter ``suppressed``
        and event ``rejected`` (one more claim call, only in a batch that has some;
        a crash before it leaves them pending, and the reclaim finds them again)."""
        meta: list[DeadLetter] = []
        flat: list[bytes] = []
        for ij in jobs:
            self._dead_letter(ij.entry_id, ij.fields, "suppressed",
                              "the recipient opted out of marketing from this client", meta, flat)
        dead_codes = {"suppressed": len(jobs)}
        until = await self._dead_retention(meta, dead_codes)
        await self._retry_claim(stream, _json(ClaimBatch(claims=[], dead=meta, retention_until=until)), flat)
        for ij in jobs:
            ij.admitted = True
            self._job_done(ij, record=False)
        for code, n in dead_codes.items():
            self.metrics.dead_letters.labels(code).inc(n)

    def _marketing(self, job: Job, fields: dict[bytes, bytes], now: float) -> float:
        """A marketing job of a client with guardrails: the footer goes into its
        text (before segmentation, so its parts count it); returns when its quiet
        hours end if it must wait for them, else 0 (engine/marketing.py). A job
        held once for quiet hours (``quiet_until`` among its fields) is not held
        again."""
        footer, quiet = self._guardrails[job.client]
        if footer:
            job.text = with_footer(job.text, footer)
        if quiet is not None and b"quiet_until" not in fields:
            return quiet.until(job.to, now) or 0.0
        return 0.0

    def _count_segments(self, jobs: list[_InFlightJob]) -> None:
        """`sendgate_segments_total`: one counter update per carrier and encoding per batch."""
        counts: dict[tuple[str, str], int] = {}
        for ij in jobs:
            key = (ij.carrier, ij.seg.encoding)
            counts[key] = counts.get(key, 0) + ij.seg.segments
        for (carrier, encoding), n in counts.items():
            self.metrics.count_segments(carrier, encoding, n)

    def _segment(self, job: Job, carrier: str) -> Segmented:
        builder = self.builders[carrier]
        refs = self._refs
        refs.key = job.to
        return segment(job.text, builder.segment_options, job.encoding, refs)

    def _dead_letter(
        self,
        entry_id: str,
        fields: dict[bytes, bytes],
        code: str,
        reason: str,
        meta: list[DeadLetter],
        flat: list[bytes],
        event: str = "",
    ) -> None:
        job_id = fields.get(b"id", b"")
        ref = fields.get(b"ref", b"")
        try:
            jid, sref = job_id.decode(), ref.decode()
        except UnicodeDecodeError:
            jid, sref = "", ""
        letter = DeadLetter(entry_id=entry_id, nfields=2 * len(fields), code=code, reason=reason, job_id=jid,
                            ref=sref, event="")
        event = event or _DEAD_LETTER_EVENTS.get(code, "")
        if event and jid:
            # the `expired` / `rejected` / `failed` event is the job's first: it describes the job for the history row
            letter.event = event
            try:
                to = fields.get(b"to", b"").decode()
                letter.to_hash, letter.to_mask = self._hash_number(to), mask_number("+" + to.strip().lstrip("+"))
                letter.client = fields.get(b"client", b"").decode()
                letter.kind = fields.get(b"kind", b"").decode() or "transactional"
            except (UnicodeDecodeError, ValueError):
                pass  # a number we cannot hash: the event goes without it
        meta.append(letter)
        for k, v in fields.items():
            flat.append(k)
            flat.append(v)

    def _submit_job(self, ij: _InFlightJob, ready: list[tuple[Any, _Token]]) -> None:
        """Build ``ij``'s PDUs and hand them to its carrier's pool; a single-part
        message's ``(pdu, token)`` is added to ``ready`` (:meth:`_submit_ready`
        queues them, in order, one pool call for the chunk)."""
        builder = self.builders[ij.carrier]
        pdus = builder.build_wire(ij.job, ij.seg)  # plain parts as submit_sm bodies
        n = len(pdus)
        ij.pdus = pdus
        ij.parts = n
        ij.pending = n
        ij.message_ids = [""] * n
        ij.expect = builder.receipts_expected(ij.job, n)
        self._outstanding += n
        now = time.monotonic()
        if n == 1:
            if ready and ready[0][1][0].carrier != ij.carrier:  # (a chunk is of one carrier)
                self._submit_ready(ready)
            ready.append((pdus[0], (ij, 0, now)))
        else:  # parts in order, each after the one before it was answered
            if ready:  # the messages before it first
                self._submit_ready(ready)
            self.pools[ij.carrier].submit_parts([(pdu, (ij, i, now)) for i, pdu in enumerate(pdus)])

    def _submit_ready(self, ready: list[tuple[Any, _Token]]) -> None:
        """Queue ``ready``'s single-part messages (of one carrier) in their pool; empties it."""
        self.pools[ready[0][1][0].carrier].submit_many(ready)
        ready.clear()

    # ------------------------------------------------------ pool callbacks
    def on_submit_resp(self, token: object, command_status: int, message_id: str) -> None:
        tok: _Token = token  # type: ignore[assignment]  # (no cast(): a call per message)
        ij, i, t0 = tok
        if command_status == 0:
            ij.message_ids[i] = message_id
            self._ok_since[ij.carrier] += 1
            self._submit_latency[ij.carrier].observe(time.monotonic() - t0)
            ij.pending -= 1  # _part_done, inline (once per message)
            self._outstanding -= 1
            if ij.pending == 0:
                self._job_done(ij)
            return
        info = status_info(command_status)
        result = "retry" if info.retriable else "rejected"
        self.metrics.submits.labels(ij.carrier, result).inc()
        if ij.attempts is _NONE:
            ij.attempts = [0] * ij.parts
        if info.retriable and ij.attempts[i] < self.settings.engine.retry_attempts:
            ij.attempts[i] += 1
            delay = self._submit_backoff.delay(ij.attempts[i] - 1)
            pool = self.pools[ij.carrier]
            asyncio.get_running_loop().call_later(delay, self._resubmit, pool, ij, i)
            return
        fallback = self.router.fallback(ij.carrier)
        if info.retriable and fallback and not ij.fallback_used and ij.parts == 1 and fallback in self.pools:
            # Retries exhausted: a single-part message moves to the fallback carrier.
            self._to_fallback(ij, fallback)
            return
        if ij.event == "submitted":
            ij.event = "failed" if info.retriable else "rejected"
            ij.error = format_status(command_status)
        self._part_done(ij)

    def on_submit_resps(self, items: list[tuple[Any, str]]) -> None:
        """`on_submit_resp(item[1], 0, message_id)` of each accepted ``(item, message_id)``
        of a pool's batch, in order: one call per batch, the latency observed per carrier."""
        now = time.monotonic()
        waits: dict[str, list[float]] = {}
        carrier: str | None = None
        waited: list[float] = []
        self._outstanding -= len(items)  # _part_done's, for the batch
        for item, message_id in items:
            ij, i, t0 = item[1]
            ij.message_ids[i] = message_id
            if ij.carrier is not carrier:  # (one pool's batch: one carrier, the same str)
                carrier = ij.carrier
                waited = waits.setdefault(carrier, [])
            waited.append(now - t0)
            ij.pending -= 1  # _part_done, inline (once per message)
            if ij.pending == 0:
                self._job_done(ij)
        for name, values in waits.items():
            self._ok_since[name] += len(values)
            self._submit_latency[name].observe_many(values)

    def _to_fallback(self, ij: _InFlightJob, fallback: str) -> None:
        ij.fallback_used = True
        ij.carrier = fallback
        ij.pdus = self.builders[fallback].build(ij.job, self._segment(ij.job, fallback))
        ij.attempts = [0]
        self.pools[fallback].submit(ij.pdus[0], (ij, 0, time.monotonic()))

    def _resubmit(self, pool: Any, ij: _InFlightJob, i: int) -> None:
        try:
            pool.submit(ij.pdus[i], (ij, i, time.monotonic()))
        except RuntimeError:  # pool closed meanwhile
            self.on_submit_lost((ij, i, 0.0), "pool closed before the retry")

    def on_submit_lost(self, token: object, reason: str) -> None:
        """Written on a bind that dropped (or timed out) before its resp."""
        ij, i, _t0 = cast("_Token", token)
        self.metrics.submits.labels(ij.carrier, "lost").inc()
        if ij.attempts is _NONE:
            ij.attempts = [0] * ij.parts
        if self.settings.engine.resend_unknown and not self._stopping and ij.attempts[i] < self.settings.engine.retry_attempts:
            ij.attempts[i] += 1  # bounded: a carrier that keeps dropping ends in `unknown`
            self.pools[ij.carrier].submit(ij.pdus[i], (ij, i, time.monotonic()))
            return
        if ij.event == "submitted":
            ij.event, ij.error = "unknown", reason[:64]
        self._part_done(ij)

    def _part_done(self, ij: _InFlightJob) -> None:
        ij.pending -= 1
        self._outstanding -= 1
        if ij.pending == 0:
            self._job_done(ij)

    def _job_done(self, ij: _InFlightJob, record: bool = True) -> None:
        """The job has its outcome: queue it for the record script (unless a duplicate)."""
        if record:
            stream = ij.batch.stream
            pending = self._to_record.get(stream)
            if pending is None:
                pending = self._to_record[stream] = []
            pending.append(ij)
            self._enqueued += 1
            shard = 0 if self._one_recorder else self._stream_shard[stream]
            if shard not in self._recorders:
                self._schedule_record(shard)
        # _release(ij), inline (once per job)
        batch = ij.batch
        batch.remaining -= 1
        self._in_hand -= 1
        if batch.remaining == 0:
            self._batches.discard(batch)
        k = ij.klass
        k.held -= 1
        if k.held < k.budget:
            if k.parked:
                self._wakeups[k.carrier].set()
            else:
                capacity = self._capacity[k.shard]
                if not capacity.is_set():
                    capacity.set()

    async def recorded_barrier(self, timeout_s: float = 1.0) -> None:
        """Wait until every outcome queued so far is recorded (or ``timeout_s``).

        The receipt worker calls this before correlating: a receipt often
        arrives a moment after its submit_sm_resp, while that job's record call
        (which writes the correlation entry) is still on its way.
        """
        target = self._enqueued
        if self._recorded >= target:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._recorded < target:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._recorded_event.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._recorded_event.wait()
            except TimeoutError:
                return

    def _schedule_record(self, shard: int = 0) -> None:
        if self._one_recorder:
            shard = 0
        if shard not in self._recorders:
            self._recorders[shard] = asyncio.get_running_loop().create_task(
                self._record_loop(shard), name=f"record-shard-{shard}"
            )

    def _shard_work(self, shard: int) -> str | None:
        """A stream of ``shard`` with outcomes or acks waiting, if any (any shard's,
        with one recorder for all)."""
        if self.nshards == 1 or self._one_recorder:
            return next(iter(self._to_record or self._to_ack), None)
        of = self._stream_shard
        for stream in self._to_record:
            if of[stream] == shard:
                return stream
        for stream in self._to_ack:
            if of[stream] == shard:
                return stream
        return None

    def _waiting_outcomes(self) -> int:
        return sum(map(len, self._to_record.values()))

    def _take_outcomes(self, stream: str) -> tuple[list[_InFlightJob], list[str]]:
        """A record call's share of ``stream``'s waiting outcomes (at most
        ``_max_record`` jobs; the rest stay) and all its waiting acks."""
        jobs = self._to_record.pop(stream, [])
        if len(jobs) > self._max_record:
            self._to_record[stream] = jobs[self._max_record :]
            jobs = jobs[: self._max_record]
        return jobs, self._to_ack.pop(stream, [])

    def _keep_outcomes(self, stream: str, jobs: list[_InFlightJob], acks: list[str]) -> None:
        """Outcomes whose record call failed go back in front of what came since."""
        self._to_record[stream] = jobs + self._to_record.get(stream, [])
        self._to_ack[stream] = acks + self._to_ack.get(stream, [])

    async def _record_loop(self, shard: int = 0) -> None:
        """Record one shard's outcomes as they complete; while one call runs, the
        next batch forms. Each shard has its own recorder: a slow shard's calls
        hold up only its own outcomes."""
        try:
            # Steady rate (issue #17): few outcomes waiting means the others of the
            # same chunk are still on their way (their submit_sm_resp): wait half
            # of `gather_ms` once so that this call, and the receipt sink's correlate
            # call that waits for it (recorded_barrier), carry them too. (Half: the
            # whole of it measured no less CPU per message at 4,000/s and ~10 ms
            # more push -> submitted; bench/RESULTS.md "steady".)
            if self._gather_below and self._waiting_outcomes() < self._gather_below and not self._stopping:
                self.gathers += 1
                await asyncio.sleep(self._gather_ms / 2000)
            while self._one_recorder and not self._custom_hooks and self._shard_work(shard) is not None:
                await self._record_shards()
            while (stream := self._shard_work(shard)) is not None:
                jobs, acks = self._take_outcomes(stream)
                try:
                    await self._record(stream, jobs, acks)
                except Exception:
                    # Not a Redis outage (those are retried inside): a script or
                    # payload error. Keep the outcomes, try again shortly.
                    log.exception("recording %d outcome(s) failed; retrying in 1s", len(jobs))
                    self._keep_outcomes(stream, jobs, acks)
                    await asyncio.sleep(1.0)
        finally:
            self._recorders.pop(shard, None)
        if self._shard_work(shard) is not None:  # pragma: no cover - arrived during the finally
            self._schedule_record(shard)

    # ------------------------------------------------------------- record
    async def _record(self, stream: str, done: list[_InFlightJob], acks: list[str]) -> None:
        """Store outcomes and ack their entries (one script call; with custom privacy
        hooks, one per retention deadline they give — usually one)."""
        self._count_submits_ok()
        now_ms = int(time.time() * 1000)
        if not self._custom_hooks or not done:
            await self._record_call(stream, done, acks + [ij.entry_id for ij in done], now_ms,
                                    now_ms // 1000 + self._message_ttl_s, None)
        else:
            hooked = await self._through_hooks(lambda: self._hook_jobs(done, now_ms))
            if isinstance(hooked, HookFailed):
                # Fail closed: no event, no record; the jobs are dead-lettered (acked by the claim script).
                meta: list[DeadLetter] = []
                flat: list[bytes] = []
                reason = _hook_reason(hooked)
                for ij in done:
                    self._dead_letter(ij.entry_id, ij.fields, "hook_failed", reason, meta, flat)
                await self._retry_claim(stream, _json(ClaimBatch(claims=[], dead=meta)), flat)
                self.metrics.dead_letters.labels("hook_failed").inc(len(done))
                if acks:
                    await self._record_call(stream, [], acks, now_ms, now_ms // 1000 + self._message_ttl_s, None)
                done = []
            else:
                deadlines, events = hooked
                if deadlines.count(deadlines[0]) == len(deadlines):  # the usual case: one deadline, one call
                    await self._record_call(stream, done, acks + [ij.entry_id for ij in done], now_ms, deadlines[0], events)
                    deadlines = []
                groups: dict[int, list[int]] = {}
                for i, deadline in enumerate(deadlines):
                    groups.setdefault(deadline, []).append(i)
                last = len(groups) - 1
                for g, (deadline, idx) in enumerate(groups.items()):
                    jobs = [done[i] for i in idx]
                    await self._record_call(
                        stream, jobs, [ij.entry_id for ij in jobs] + (acks if g == last else []), now_ms, deadline,
                        [events[i] for i in idx],
                    )
        self._record_finish(done, now_ms)

    def _count_submits_ok(self) -> None:
        ok_since = self._ok_since
        for carrier, n in ok_since.items():
            if n:
                self._submit_ok[carrier].inc(n)
                ok_since[carrier] = 0

    async def _record_shards(self) -> None:
        """One round of the one recorder (shards on one plain Redis, no custom
        hooks): a batch of every stream with outcomes or acks waiting, each its
        own record call (one slot), all in one write and their replies read in
        order (`_exchange`: one round trip, the calls packed here). A call whose
        reply was lost is repeated alone (its token makes the repeat write
        nothing twice); one the script refused keeps its outcomes for the next
        round, after a second. The round's counts, cue and webhooks go once
        (`_record_finish` of every call's jobs)."""
        self._count_submits_ok()
        now_ms = int(time.time() * 1000)
        until = now_ms // 1000 + self._message_ttl_s
        work: list[tuple[str, list[_InFlightJob], list[str], tuple[list[str], list[Any]]]] = []
        failed = False
        for stream in list(dict.fromkeys((*self._to_record, *self._to_ack))):
            jobs, acks = self._take_outcomes(stream)
            try:
                call = self._record_args(stream, jobs, acks + [ij.entry_id for ij in jobs], now_ms, until, None)
            except Exception:
                log.exception("recording %d outcome(s) failed; retrying in 1s", len(jobs))
                self._keep_outcomes(stream, jobs, acks)
                failed = True
                continue
            work.append((stream, jobs, acks, call))
        replies = await self._exchange([call for _s, _j, _a, call in work]) if work else []
        recorded: list[_InFlightJob] = []
        ok = 0
        for (stream, jobs, acks, call), reply in zip(work, replies, strict=True):
            if isinstance(reply, (NoScriptError, *_REDIS_ERRORS)):
                try:
                    await self._retry(self._record_script, self.redis, *call)
                except Exception as err:
                    reply = err
                else:
                    reply = None
            if isinstance(reply, BaseException):
                log.error("recording %d outcome(s) failed (%s); retrying in 1s", len(jobs), type(reply).__name__)
                self._keep_outcomes(stream, jobs, acks)
                failed = True
                continue
            recorded += jobs
            ok += 1
        if ok:
            if ok > 1:
                self.metrics.batches.inc(ok - 1)  # one per call recorded (+1 in _record_finish)
            self._record_finish(recorded, now_ms)
        if failed:
            await asyncio.sleep(1.0)

    async def _exchange(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """The record calls (KEYS, ARGV each) as EVALSHA in one write on one pooled
        connection, their replies read in order: a reply each, or the error it
        raised (a script's error reply leaves the connection in step; a lost
        connection fails every call not yet answered, and is dropped). Packed
        here, not by redis-py's pipeline: its per-command and per-argument Python
        work was the fixed cost of each shard's call."""
        sha = self._record_script.sha.encode()
        chunks: list[bytes] = []
        for keys, args in calls:
            chunks.append(b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%b\r\n$%d\r\n%d\r\n" % (
                3 + len(keys) + len(args), sha, len(b"%d" % len(keys)), len(keys)))
            for v in (*keys, *args):
                b = v.encode() if type(v) is str else v if type(v) is bytes else b"%d" % v
                chunks.append(b"$%d\r\n%b\r\n" % (len(b), b))
        pool: Any = self.redis.connection_pool
        replies: list[Any] = []
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(b"".join(chunks), check_health=False)
            for _ in calls:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as err:  # NOSCRIPT, or the script refused the call
                    replies.append(err)
        except _REDIS_ERRORS as err:
            self.metrics.redis_errors.inc()
            await conn.disconnect()
            replies += [err] * (len(calls) - len(replies))
        except BaseException:
            await conn.disconnect()  # a cancelled exchange leaves the connection out of step
            raise
        finally:
            await pool.release(conn)
        return replies

    def _record_finish(self, done: list[_InFlightJob], now_ms: int) -> None:
        """After the record call(s) of ``done``: counts, the receipt sink's cue, webhooks."""
        self._recorded += len(done)
        self._recorded_event.set()
        if self.on_recorded is not None:
            self.on_recorded()
        events_n: dict[str, int] = {}
        for ij in done:
            events_n[ij.event] = events_n.get(ij.event, 0) + 1
        for event, n in events_n.items():
            self.metrics.events.labels(event).inc(n)
        self.metrics.batches.inc()
        forward = self.forward
        if forward is not None:
            ts = str(now_ms)
            for ij in done:
                if ij.job.callback:
                    forward(ij.job.callback, {
                        "id": ij.job.id, "ref": ij.job.ref, "event": ij.event, "carrier": ij.carrier,
                        "parts": str(ij.parts), "message_ids": ",".join(ij.message_ids), "error": ij.error, "ts": ts,
                    })

    async def _record_call(
        self, stream: str, done: list[_InFlightJob], acks: list[str], now_ms: int, retention_until: int,
        events: list[JobEventView] | None,
    ) -> None:
        """One record script call: ``done``'s outcomes, each job's first event carrying
        ``retention_until``; ``events``: the hooks' view of them (their edits of
        ``EVENT_EDITABLE`` fields are written; an unedited view is written as without
        hooks), or None (no custom hooks)."""
        await self._retry(
            self._record_script, self.redis, *self._record_args(stream, done, acks, now_ms, retention_until, events)
        )

    def _record_args(
        self, stream: str, done: list[_InFlightJob], acks: list[str], now_ms: int, retention_until: int,
        events: list[JobEventView] | None,
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of `_record_call`'s script call."""
        cap_s = self._message_ttl_s if events is None else max(1, min(self._message_ttl_s, retention_until - now_ms // 1000))
        jobs_payload: list[RecordJob] = []
        # Constants travel once per batch: the correlation bucket per carrier.
        waits: dict[str, RecordWait] = {}
        for ij in done:
            if ij.carrier not in waits:
                waits[ij.carrier] = self._record_wait(ij.carrier, now_ms, cap_s)
        normalizers = self._normalize_submit_id
        # Shards: the receipt sink's hint of which shard a message id's entry is on
        # (a receipt on this engine then goes there first: ReceiptSink.correlate).
        shard = self._stream_shard[stream]
        hint_of = {carrier: self.receipt_hints.of(carrier) for carrier in waits} if self.nshards > 1 else None
        # The common jobs travel packed (RECORD_PACKED); a job a hook edited, as RecordJob.
        packed = Packed(_RECORD_WIDTH)
        # The common jobs are packed in one tight pass first -- with hook views, those
        # no hook wrote (written as without hooks: usually every one); the loop below
        # then sees the others, a job a hook edited with its view (``views``).
        views: list[JobEventView | None] | None = None
        if events is None:
            rest = self._pack_common(done, packed, hint_of, shard)
        else:
            edited = [n for n, ev in enumerate(events) if ev.edits is not None]
            if not edited:
                rest = self._pack_common(done, packed, hint_of, shard)
            else:
                skip = set(edited)
                rest = self._pack_common([ij for n, ij in enumerate(done) if n not in skip], packed, hint_of, shard)
                views = [None] * len(rest) + [events[n] for n in edited]
                rest += [done[n] for n in edited]
        for n, ij in enumerate(rest):
            job = ij.job
            ev = views[n] if views is not None else None
            ref = job.ref if ev is None else str(ev.get("ref") or "")
            corr: str | list[list[str | int]] = ""
            dlr_ids = ""
            mids = ij.message_ids
            if len(mids) == 1:  # the common job: no list to build, join or compare
                message_ids = mids[0]
                if ij.event == "submitted" and job.dlr and ij.expect > 0:
                    normalised_id = normalizers[ij.carrier](message_ids)
                    corr = correlation_arg((normalised_id,), ij.parts, ij.expect, job.callback, ref, message_ids)
                    if hint_of is not None:
                        hint_of[ij.carrier][normalised_id] = shard
                    if normalised_id != message_ids:
                        dlr_ids = normalised_id
                if ev is None and type(corr) is str and packed.add(  # "" or the fast form: no job record
                    (job.id, message_ids, ref, ij.to_hash, mask_e164_digits(job.to), corr,
                     ij.event, ij.carrier, "1", ij.error, job.client, job.kind, ij.seg.encoding)
                ):
                    continue
            else:
                message_ids = ",".join(mids)
                if ij.event == "submitted" and job.dlr and ij.expect > 0:
                    normalize = normalizers[ij.carrier]
                    normalised = [normalize(m) for m in mids]
                    corr = correlation_arg(normalised, ij.parts, ij.expect, job.callback, ref, message_ids)
                    if hint_of is not None:
                        hint_of[ij.carrier].update(dict.fromkeys(normalised, shard))
                    if normalised != mids:
                        dlr_ids = ",".join(normalised)
            # Positional, in RecordJob's field order: msgspec matches 16 keywords
            # by name at ~5x the cost of the whole positional construction.
            if ev is None:
                jobs_payload.append(
                    RecordJob(
                        job.id, ij.event, ij.carrier, ij.parts, message_ids, ij.error, ref, job.client, job.kind,
                        job.callback, ij.to_hash, mask_e164_digits(job.to), ij.seg.encoding, corr,
                        ij.expect if job.dlr else 0, dlr_ids,
                    )
                )
            else:
                jobs_payload.append(
                    RecordJob(
                        job.id, ij.event, ij.carrier, ij.parts, message_ids, _s(ev.get("error")), ref,
                        _s(ev.get("client")), _s(ev.get("kind")), job.callback, _s(ev.get("to_hash")),
                        _s(ev.get("to_mask")), _s(ev.get("encoding")), corr, ij.expect if job.dlr else 0, dlr_ids,
                    )
                )
        if hint_of is not None:
            self.receipt_hints.trim()
        texts: dict[str, str] = {}
        cipher = self._text_cipher
        if cipher is not None and done:  # one nonce draw per call; the text never in clear in the stream
            sealed = cipher.seal_many([(job_aad(ij.job.id), ij.job.text) for ij in done])
            texts = {ij.job.id: b64(b) for ij, b in zip(done, sealed, strict=True)}
        payload = _json(RecordBatch(retention_until=retention_until, waits=waits, jobs=jobs_payload, acks=acks,
                                    texts=texts))
        # the call's token: a repeat of this very call (reply lost) writes nothing twice
        token = os.urandom(12).hex()
        return record_call(self.shards[shard], stream, self.group, payload, now_ms, token, packed)

    def _pack_common(
        self, done: list[_InFlightJob], packed: Packed, hint_of: dict[str, dict[str, int]] | None, shard: int
    ) -> list[_InFlightJob]:
        """`_record_args`'s loop for the common job without a hook's view, in one tight
        pass: one message id, and no receipt awaited or the fast form of
        dlr.store.correlation_arg (one part, no callback, no US in ref or id), packed
        (RECORD_PACKED) as that loop packs it. Returns the other jobs, in order."""
        rest: list[_InFlightJob] = []
        add = packed.add_split  # the run from `event` on (RECORD_PACKED_SAME) is usually the same job to job
        normalizers = self._normalize_submit_id
        for ij in done:
            mids = ij.message_ids
            if len(mids) != 1:
                rest.append(ij)
                continue
            job = ij.job
            message_ids = mids[0]
            ref = job.ref
            corr = ""
            if ij.event == "submitted" and job.dlr and ij.expect > 0:
                if ij.parts != 1 or job.callback or _US in ref or _US in message_ids:
                    rest.append(ij)  # its receipts read a job record
                    continue
                corr = normalizers[ij.carrier](message_ids)
                if hint_of is not None:
                    hint_of[ij.carrier][corr] = shard
            if not add((job.id, message_ids, ref, ij.to_hash, mask_e164_digits(job.to), corr),
                       (ij.event, ij.carrier, "1", ij.error, job.client, job.kind, ij.seg.encoding)):
                rest.append(ij)  # a field not ASCII or too long: in the payload
        return rest

    # ----------------------------------------------------- privacy hooks
    def _hook_jobs(self, done: list[_InFlightJob], now_ms: int) -> tuple[list[int], list[JobEventView]]:
        """The hook chain over a record batch: each job's first event as it will be
        written (a lazy view over the job: engine/hook_views.py), ``on_store("job", …)``
        (its deadline) then ``on_events``. Raises HookFailed."""
        vb = ViewBatch(str(now_ms), self._hash_number)
        events = [JobEventView(ij, vb) for ij in done]
        deadlines = self.hooks.on_store_batch("job", events, now_ms / 1000)
        last, text = None, ""
        for ev, deadline in zip(events, deadlines, strict=True):
            if deadline != last:  # usually one deadline for the batch: one str
                last, text = deadline, str(deadline)
            ev.retention_until = text
        self.hooks.on_events(events, names_free=True)  # JobEventViews only
        return deadlines, events

    async def _through_hooks(self, run: Callable[[], _T]) -> _T | HookFailed:
        """``run()`` (a batch through the hook chain), tried HOOK_ATTEMPTS times with
        backoff while a hook raises; the last HookFailed if it never passes."""
        failure: HookFailed | None = None
        for attempt in range(HOOK_ATTEMPTS):
            try:
                return run()
            except HookFailed as err:
                failure = err
                self.metrics.hook_failures.inc()
                log.warning("%s; batch not written (attempt %d of %d)", err, attempt + 1, HOOK_ATTEMPTS)
                if attempt + 1 < HOOK_ATTEMPTS:
                    await asyncio.sleep(self._redis_backoff.delay(attempt))
        assert failure is not None
        return failure

    async def _dead_retention(self, meta: list[DeadLetter], codes: dict[str, int]) -> int:
        """The deadline of a claim call's dead letters (their events carry it). With
        custom hooks: ``on_store("dead_letter", …)`` over them (the earliest deadline
        wins: one per call) and ``on_events`` over their events; when a hook keeps
        failing, the letters become ``hook_failed`` ones without an event (``codes``
        is updated)."""
        now = time.time()
        if not self._custom_hooks:
            return int(now) + self._message_ttl_s

        def run() -> tuple[int, list[dict[str, Any]]]:
            records: list[dict[str, Any]] = [{
                "entry": d.entry_id, "code": d.code, "reason": d.reason, "id": d.job_id, "ref": d.ref,
                "event": d.event, "client": d.client, "kind": d.kind, "to_hash": d.to_hash, "to_mask": d.to_mask,
            } for d in meta]
            deadlines = self.hooks.on_store_batch("dead_letter", records, now)
            until = min(deadlines)
            # the events claim.lua writes with them (a job's first and only: its history row)
            ts, until_s = str(int(now * 1000)), str(until)
            events: list[dict[str, Any]] = []
            for r in records:
                if r["event"] and r["id"]:
                    r["event_fields"] = ev = {
                        "id": r["id"], "ref": r["ref"], "event": r["event"], "carrier": "", "parts": "0",
                        "message_ids": "", "error": r["code"], "ts": ts, "client": r["client"], "kind": r["kind"],
                        "to_hash": r["to_hash"], "to_mask": r["to_mask"], "encoding": "", "retention_until": until_s,
                    }
                    events.append(ev)
            if events:
                self.hooks.on_events(events)
            return until, records

        hooked = await self._through_hooks(run)
        if isinstance(hooked, HookFailed):
            reason = _hook_reason(hooked)
            codes.clear()
            for d in meta:
                d.code, d.reason, d.event = "hook_failed", reason, ""
            codes["hook_failed"] = len(meta)
            return int(now) + self._message_ttl_s
        until, records = hooked
        for d, r in zip(meta, records, strict=True):
            ev = r.get("event_fields")
            if ev is not None:
                d.ref, d.client, d.kind = _s(ev.get("ref")), _s(ev.get("client")), _s(ev.get("kind"))
                d.to_hash, d.to_mask = _s(ev.get("to_hash")), _s(ev.get("to_mask"))
        return until

    async def _hook_scheduled(self, scheduled: list[tuple[str, dict[bytes, bytes], float, str]]) -> list[int] | HookFailed:
        """``on_store("scheduled_job", …)`` over jobs held for later: the TTL of each
        (seconds until its deadline, at least 1)."""
        def run() -> list[int]:
            now = time.time()
            records = [
                {"entry": entry_id, **{k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}}
                for entry_id, fields, _due, _job_id in scheduled
            ]
            return [max(1, d - int(now)) for d in self.hooks.on_store_batch("scheduled_job", records, now)]

        return await self._through_hooks(run)

    def _retention_until(self) -> int:
        """Unix s when a history row of a job finished now is past retention."""
        return int(time.time()) + self._message_ttl_s

    def _record_wait(self, carrier_name: str, now_ms: int, cap_s: int) -> RecordWait:
        """The carrier's correlation bucket for outcomes recorded at ``now_ms``, and
        the TTL of the job records written with them: the receipt wait twice over
        (the sweep may run late), two bucket spans and the grace, never past the
        message retention (``cap_s``: the retention deadline's distance, which a
        privacy hook may shorten). A job record goes a grace after its final event anyway."""
        carrier = self.carriers[carrier_name]
        wait_s = int((carrier.dlr_wait_h or self.settings.privacy.dlr_wait_h) * 3600)
        corr_ttl = max(1, min(wait_s, cap_s))
        span_s = -(-corr_ttl // BUCKETS_PER_WAIT)
        record_ttl = min(2 * (corr_ttl + span_s) + self.settings.engine.record_grace_s, cap_s)
        end_ms, expire_at_ms = correlation_bucket(now_ms, corr_ttl * 1000, record_ttl * 1000)
        return RecordWait(end_ms=str(end_ms), expire_at_ms=str(expire_at_ms), record_ttl=str(record_ttl))

    # -------------------------------------------------------------- helpers
    async def _claims_pipelined(
        self, calls: list[tuple[str, bytes, list[bytes], ClaimPacked | None, MarketingClaims | None]]
    ) -> list[Any]:
        """Claim calls of several streams (of one plain Redis) in one round trip:
        their statuses, or the exception of a call that failed for good. A call
        whose reply was lost (the pipeline failed) is retried alone as a repeat
        (claim.lua's ``retry``: its marks may be taken already); one refused
        with NOSCRIPT, alone (Script loads it)."""
        now_ms = int(time.time() * 1000)
        maxlen = self.settings.engine.streams_maxlen
        pipe = self.redis.pipeline(transaction=False)
        for stream, payload, dead, packed, marketing in calls:
            keys, args = claim_call(
                self.shards[self._stream_shard[stream]], stream, self.group, payload, now_ms, self._mark_ttl_s,
                maxlen, False, dead, packed, marketing,
            )
            pipe.evalsha(self._claim.sha, len(keys), *keys, *args)
        raw: list[Any]
        try:
            raw = await pipe.execute(raise_on_error=False)
        except _REDIS_ERRORS as err:
            self.metrics.redis_errors.inc()
            raw = [err] * len(calls)
        out: list[Any] = []
        for (stream, payload, dead, packed, marketing), reply in zip(calls, raw, strict=True):
            if not isinstance(reply, BaseException):
                out.append(claim_statuses(reply))
                continue
            if not isinstance(reply, (NoScriptError, *_REDIS_ERRORS)):
                out.append(reply)  # the script refused the call: as the gather path reports it
                continue
            try:
                out.append(await self._retry_claim(
                    stream, payload, dead, packed, marketing, repeat=not isinstance(reply, NoScriptError)))
            except Exception as err:
                out.append(err)
        return out

    async def _retry_claim(
        self, stream: str, payload: bytes, dead_fields: list[bytes], packed: ClaimPacked | None = None,
        marketing: MarketingClaims | None = None, repeat: bool = False,
    ) -> list[int]:
        attempt = 1 if repeat else 0
        while True:
            try:
                statuses: list[int] = await self._claim(  # (Script reads claim.lua's reply: claim_statuses)
                    self.redis,
                    *claim_call(
                        self.shards[self._stream_shard[stream]], stream, self.group, payload, int(time.time() * 1000), self._mark_ttl_s,
                        self.settings.engine.streams_maxlen, attempt > 0, dead_fields, packed, marketing,
                    ),
                )
                return statuses
            except _REDIS_ERRORS as err:
                attempt += 1
                await self._backoff(attempt, err)

    async def _retry(self, fn: Callable[..., Any], *args: Any) -> Any:
        attempt = 0
        while True:
            try:
                return await fn(*args)
            except _REDIS_ERRORS as err:
                attempt += 1
                await self._backoff(attempt, err)

    async def _backoff(self, attempt: int, err: BaseException) -> None:
        self.metrics.redis_errors.inc()
        delay = self._redis_backoff.delay(attempt - 1)
        log.warning("redis call failed (%s), attempt %d; retrying in %.2fs", type(err).__name__, attempt, delay)
        await asyncio.sleep(delay)

    async def _hold_scheduled(
        self, stream: str, scheduled: list[tuple[str, dict[bytes, bytes], float, str]], ttls: list[int] | None = None,
    ) -> None:
        """Jobs with a future ``send_at``: stored aside, acked, pushed back when due.
        ``ttls``: each one's TTL from the hook chain (None: the payload retention)."""
        k = self.shards[self._stream_shard[stream]]
        pipe = self.redis.pipeline(transaction=True)
        ttl = self._payload_ttl_s
        for n, (entry_id, fields, due, job_id) in enumerate(scheduled):
            if ttls is not None:
                ttl = ttls[n]
            key = k.scheduled_job(entry_id)
            lane = stream if stream in self._lane_of else k.lanes()[self._park_streams[stream].lane]
            mapping: dict[Any, Any] = {**fields, b"lane": lane.encode()}
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, ttl)
            pipe.set(k.scheduled_id(job_id), entry_id, ex=ttl)  # for cancel.lua
            pipe.zadd(k.scheduled, {entry_id: due * 1000})
            pipe.xack(stream, self.group, entry_id)
        await pipe.execute()

    async def release_scheduled(self, limit: int = 1000) -> int:
        """Push jobs whose ``send_at`` has come back onto their lane; returns how many."""
        now_ms = int(time.time() * 1000)
        replies = await self._script_each(self._schedule, [schedule_call(keys, now_ms, limit) for keys in self.shards])
        return sum(int(r) for r in replies)

    async def _script_each(self, script: Script, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Calls of one script, one per shard (each on its shard's slot): on one plain
        Redis in one pipelined round trip, on a Cluster at once; a call whose reply
        was lost, or refused with NOSCRIPT, is made again alone (`_retry`). For
        scripts whose repeat is harmless (the maintenance tick's)."""
        if len(calls) == 1:
            return [await self._retry(script, self.redis, *calls[0])]
        if self._cluster:
            return list(await asyncio.gather(*(self._retry(script, self.redis, *c) for c in calls)))
        pipe = self.redis.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        try:
            raw = await pipe.execute(raise_on_error=False)
        except _REDIS_ERRORS as err:
            self.metrics.redis_errors.inc()
            raw = [err] * len(calls)
        out: list[Any] = []
        for call, reply in zip(calls, raw, strict=True):
            if isinstance(reply, (NoScriptError, *_REDIS_ERRORS)):
                reply = await self._retry(script, self.redis, *call)
            elif isinstance(reply, BaseException):
                raise reply
            out.append(reply)
        return out

    # ------------------------------------------------ parked jobs, outages
    async def check_parked(self) -> dict[str, int]:
        """Learn of jobs other engines parked (so this one's admitters read them
        too), trim what every engine has acked from the park streams; returns
        the jobs waiting in park streams, per lane name. Periodic, not per job."""
        streams = list(self._park_streams)
        per_lane = dict.fromkeys(LANES, 0)
        trims: list[tuple[str, str, int]] = []
        for st, found in zip(streams, await group_backlog(self.redis, streams, self.group), strict=True):
            if found is None:
                continue
            g, lag = found
            k = self._park_streams[st]
            pending = int(g.get("pending") or 0)
            per_lane[LANES[k.lane]] += lag + pending
            if lag > k.parked:
                k.parked = lag
                if k.held < k.budget:
                    self._wakeups[k.carrier].set()
            last = _text(g.get("last-delivered-id")) or "0-0"
            if last != "0-0":
                trims.append((st, last, pending))
        if trims:
            pipe = self.redis.pipeline(transaction=False)
            for st, _last, pending in trims:
                if pending:
                    pipe.xpending(st, self.group)
            oldest = iter(await pipe.execute(raise_on_error=False))
            pipe = self.redis.pipeline(transaction=False)
            for st, last, pending in trims:
                minid = last
                if pending:
                    info = next(oldest)
                    if isinstance(info, Exception) or not info.get("min"):
                        continue
                    minid = _text(info["min"])
                # Entries before the oldest unacknowledged one were all sent (or moved).
                pipe.xtrim(st, minid=minid, approximate=False)
            await pipe.execute(raise_on_error=False)
        return per_lane

    async def _adopt_orphans_once(self) -> None:
        try:
            moved = await self.adopt_orphan_parks()
            if moved:
                log.info("moved %d parked job(s) of carriers or clients no longer configured back to their lanes", moved)
        except _REDIS_ERRORS as err:  # not fatal: the next start tries again
            log.warning("could not look for orphaned park streams (%s)", type(err).__name__)
        except Exception:
            log.exception("looking for orphaned park streams failed")

    async def adopt_orphan_parks(self) -> int:
        """Park streams of a carrier, or a client, that is no longer configured
        would never be read: move their jobs back to their lanes (routed again
        there). Entries another consumer still holds are left to it, unless idle
        past the visibility timeout. Once per start; the park streams ever
        configured are found in each shard's registry ``P:parks`` (no SCAN)."""
        orphans: list[tuple[str, str]] = []
        for keys in self.shards:
            lanes = dict(zip(LANES, keys.lanes(), strict=True))
            gone: list[str] = []
            for raw in await self.redis.smembers(keys.park_registry):
                name = _text(raw)
                if name in self._park_streams or not name.startswith(keys.park_prefix):
                    continue
                parts = name[len(keys.park_prefix):].split(":")
                if len(parts) >= 2 and parts[1] in lanes:
                    if await self.redis.exists(name):
                        orphans.append((name, lanes[parts[1]]))
                    else:
                        gone.append(name)
            if gone:
                await self.redis.srem(keys.park_registry, *gone)
        min_idle = int(self.settings.engine.visibility_timeout_s * 1000)
        count = self.settings.engine.batch_size
        moved = 0
        for stream, lane in orphans:
            try:
                await self.redis.xgroup_create(stream, self.group, id="0")
            except ResponseError as err:
                if "BUSYGROUP" not in str(err):
                    raise
            start = "0-0"
            while True:  # entries of consumers that went away
                reply = await self._reader.xautoclaim(stream, self.group, self.consumer, min_idle, start, count)
                start = _text(reply[0])
                moved += await self._move_all(stream, lane, reply[1])
                if start in ("0-0", "0"):
                    break
            while True:  # entries never read
                unread: Any = await self._reader.xreadgroup(self.group, self.consumer, {stream: ">"}, count=count)
                items = unread.items() if isinstance(unread, dict) else (unread or ())
                raw_entries = [e for _name, es in items for e in es]
                if not raw_entries:
                    break
                moved += await self._move_all(stream, lane, raw_entries)
            # What was moved is acked: trim it (an entry still held elsewhere stays).
            found = (await group_backlog(self.redis, [stream], self.group))[0]
            if found is not None:
                g = found[0]
                minid = _text(g.get("last-delivered-id"))
                if int(g.get("pending") or 0):
                    info: Any = await self.redis.xpending(stream, self.group)
                    minid = _text(info.get("min")) or minid
                await self.redis.xtrim(stream, minid=minid, approximate=False)
        return moved

    async def _move_all(self, source: str, dest: str, raw: Any) -> int:
        entries = [(_text(eid), f) for eid, f in _entries(raw)]
        gone = [eid for eid, f in entries if f is None]
        if gone:
            await self.redis.xack(source, self.group, *gone)
        live = [(eid, f) for eid, f in entries if f is not None]
        if not live:
            return 0
        meta = _json([ParkEntry(entry_id=eid, nfields=2 * len(f), dest=1) for eid, f in live])
        flat = [x for _eid, f in live for kv in f.items() for x in kv]
        return int(await self._park(self.redis, *park_call(source, [dest], self.group, meta, flat)))

    async def check_outages(self) -> int:
        """Carriers without a bind up for their ``outage_fail_after_s``: their
        waiting jobs go to their fallback (when it has a bind up) or fail with
        ``carrier_unavailable``. Returns how many jobs were moved or failed."""
        now = time.monotonic()
        total = 0
        for c in self.carriers.values():
            if not c.outage_fail_after_s:
                continue
            if self._is_up(c.name):
                self._down_since.pop(c.name, None)
                continue
            since = self._down_since.setdefault(c.name, now)
            if now - since >= c.outage_fail_after_s:
                total += await self._divert(c, now - since)
        return total

    async def _divert(self, c: CarrierSettings, down_s: float) -> int:
        fallback = c.fallback if c.fallback and self._is_up(c.fallback) else ""
        total = 0
        # Jobs in hand, never claimed (the admitter takes no mark while no bind is up).
        in_hand = self._queues[c.name].clear()
        by_stream: dict[str, list[tuple[str, dict[bytes, bytes], int]]] = {}
        for ij in in_hand:
            by_stream.setdefault(ij.batch.stream, []).append((ij.entry_id, ij.fields, ij.lane))
        for stream, items in by_stream.items():
            await self._divert_entries(c.name, fallback, down_s, stream, items)
        for ij in in_hand:
            self._release(ij)
        total += len(in_hand)
        # Parts claimed and queued in the pool when the last bind went down, never written.
        for _pdu, token in self.pools[c.name].take_queued():
            ij, _i, _t0 = cast("_Token", token)
            if fallback and ij.parts == 1 and not ij.fallback_used:
                self._to_fallback(ij, fallback)
                continue
            if ij.event == "submitted":
                ij.event, ij.error = "failed", "carrier_unavailable"
            self._part_done(ij)
            total += 1
        # Parked jobs, a batch at a time (bounded per call: the next tick goes on).
        count = self.settings.engine.batch_size
        for k in self._carrier_classes[c.name]:
            for _ in range(20):
                if not k.parked:
                    break
                reply = await self._retry(
                    self._reader.xreadgroup, self.group, self.consumer, {k.stream: ">"}, count
                )
                items_ = reply.items() if isinstance(reply, dict) else (reply or ())
                raw = [e for _name, es in items_ for e in es]
                if len(raw) < count:
                    k.parked = 0
                entries = [(_text(eid), f) for eid, f in _entries(raw) if f is not None]
                if entries:
                    await self._divert_entries(c.name, fallback, down_s, k.stream,
                                               [(eid, f, k.lane) for eid, f in entries])
                    total += len(entries)
        return total

    async def _divert_entries(
        self, carrier: str, fallback: str, down_s: float, stream: str, items: list[tuple[str, dict[bytes, bytes], int]]
    ) -> None:
        if fallback:
            to_park: list[tuple[str, dict[bytes, bytes], _Class]] = []
            for entry_id, fields, lane in items:
                classes = self._shard_classes[self._stream_shard[stream]][fallback][lane]
                k = classes.get(_text(fields.get(b"client", b""))) or classes[OTHER]
                k.parked += 1
                to_park.append((entry_id, fields, k))
            await self._park_entries(stream, to_park)
            self.metrics.jobs_diverted.labels(carrier, fallback).inc(len(items))
            log.warning("carrier %s: no bind up for %.0f s; %d job(s) moved to fallback %s",
                        carrier, down_s, len(items), fallback)
            return
        meta: list[DeadLetter] = []
        flat: list[bytes] = []
        reason = f"carrier {carrier} had no bind up for {down_s:.0f} s (outage_fail_after_s)"
        for entry_id, fields, _lane in items:
            self._dead_letter(entry_id, fields, "carrier_unavailable", reason, meta, flat, event="failed")
        await self._retry_claim(stream, _json(ClaimBatch(claims=[], dead=meta)), flat)
        self.metrics.dead_letters.labels("carrier_unavailable").inc(len(items))
        self.metrics.jobs_diverted.labels(carrier, "failed").inc(len(items))
        log.warning("carrier %s: no bind up for %.0f s; %d job(s) failed (carrier_unavailable)",
                    carrier, down_s, len(items))

    async def hand_back_fenced(self) -> int:
        """Carriers with bind leases (``max_binds``) of which this engine holds none
        (fenced off: every lease lost, e.g. stopped past ``lease_ttl_s``): the jobs
        it holds for them go back to their park streams at once (handback.lua), for
        a lease holder to send (``check_parked`` makes it look): those in hand, and
        those claimed and queued in the pool, never written, with their idempotency
        marks. A multipart message with a part answered already stays (it goes on
        when a lease comes back). Called by the maintenance tick; returns how many
        jobs were handed back."""
        total = 0
        for name, pool in self.pools.items():
            if self._stopping or not getattr(pool, "leased", False) or pool.has_lease():
                continue
            jobs = self._queues[name].clear()
            claimed = [cast("_Token", t)[0] for t in pool.take_unwritten(_never_written)]
            if jobs or claimed:
                total += await self._hand_back(name, jobs, claimed)
        return total

    async def _hand_back(self, carrier: str, in_hand: list[_InFlightJob], claimed: list[_InFlightJob]) -> int:
        by_stream: dict[str, list[_InFlightJob]] = {}
        for ij in (*in_hand, *claimed):
            by_stream.setdefault(ij.batch.stream, []).append(ij)
        moved = 0
        for stream, jobs in by_stream.items():
            keys = self.shards[self._stream_shard[stream]]
            for i in range(0, len(jobs), 500):
                chunk = jobs[i : i + 500]
                dests: dict[str, int] = {}
                meta: list[HandbackEntry] = []
                flat: list[bytes] = []
                for ij in chunk:
                    dest = dests.get(ij.klass.stream)
                    if dest is None:
                        dest = dests[ij.klass.stream] = len(dests) + 1
                    if ij.admitted:
                        job_id = ij.job.id
                        meta.append(HandbackEntry(ij.entry_id, 2 * len(ij.fields), dest, job_id,
                                                  claim_mark(ij.entry_id), marks_hash(job_id)))
                    else:
                        meta.append(HandbackEntry(ij.entry_id, 2 * len(ij.fields), dest, ""))
                    for kv in ij.fields.items():
                        flat.extend(kv)
                reply = await self._retry(self._handback, self.redis, *handback_call(
                    keys, stream, list(dests), self.group, self.consumer, _json(meta), flat,
                    self._mark_ttl_s, int(time.time() * 1000)))
                for ij, ok in zip(chunk, reply, strict=True):
                    if ij.admitted:  # its parts leave the pool's count (never written)
                        self._outstanding -= ij.pending
                        ij.pending = 0
                    if int(ok):  # moved (else another engine took its entry over meanwhile)
                        moved += 1
                        ij.klass.parked += 1
                        self.metrics.jobs_parked.labels(ij.klass.carrier, LANES[ij.klass.lane]).inc()
                    self._release(ij)
        log.warning(
            "carrier %s: no bind lease held here; %d job(s) handed back to its park streams (%d claimed, "
            "%d taken over by another engine)", carrier, moved, len(claimed), len(in_hand) + len(claimed) - moved,
            extra={"event": "jobs_handed_back", "carrier": carrier, "jobs": moved, "claimed": len(claimed)},
        )
        return moved

    async def keep_alive_in_flight(self, older_than_s: float) -> None:
        """Reset the idle time of entries still in hand, so no one reclaims them."""
        now = time.monotonic()
        by_stream: dict[str, list[str]] = {}
        for b in list(self._batches):
            if now - b.started >= older_than_s and b.entry_ids:
                by_stream.setdefault(b.stream, []).extend(b.entry_ids)
        for stream, ids in by_stream.items():
            for i in range(0, len(ids), 1000):
                await self._retry(
                    self.redis.xclaim, stream, self.group, self.consumer, 0, ids[i : i + 1000], None, None, None, False, True
                )

    async def reclaim(self, min_idle_ms: int) -> int:
        """Take over entries of consumers that went away (XAUTOCLAIM)."""
        mine = {eid for b in self._batches for eid in b.entry_ids}
        total = 0
        for stream in (*self._lane_of, *self._park_streams):
            start = "0-0"
            while True:
                reply = await self._retry(
                    self._reader.xautoclaim, stream, self.group, self.consumer, min_idle_ms, start,
                    self.settings.engine.batch_size,
                )
                start = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
                entries = [(eid, f) for eid, f in _entries(reply[1]) if eid.decode() not in mine]
                if entries:
                    total += len(entries)
                    await self.process(stream, entries)
                if start in ("0-0", "0"):
                    break
        return total


def _never_written(token: object) -> bool:
    """A queued part whose job has no part written and answered: the first part (a
    chain's later parts wait for it), and no message id yet."""
    ij, i, _t0 = cast("_Token", token)
    return i == 0 and not any(ij.message_ids)


class ClaimArgs:
    """claim.lua's KEYS and ARGV for a batch of jobs as the pipeline builds them
    (`Pipeline._claims`, the payload, ``claim_call``), on a pipeline that never
    connects: what the benchmarks measure (bench/micro/test_claims.py,
    ``python -m bench.suppression_cost``) is the layout the engine sends."""

    def __init__(self, prefix: str = "bench") -> None:
        from engine.config import settings_from_mapping

        settings = settings_from_mapping({"redis": {"url": "redis://127.0.0.1:1/0", "prefix": prefix},
                                          "carriers": [{"name": "c1", "routes": [""]}]}, env={})
        self.pipeline = Pipeline(settings, Redis.from_url("redis://127.0.0.1:1/0"), {}, Metrics())
        self.keys = self.pipeline.shards[0]
        self._class = next(iter(self.pipeline._classes["c1"][_NORMAL_LANE].values()))

    def jobs(self, entries: Sequence[tuple[str, dict[bytes, bytes]]], now: float) -> list[_InFlightJob]:
        """In-flight jobs of carrier c1's normal lane from (entry id, fields) pairs."""
        p, batch, k = self.pipeline, _Batch(self.keys.jobs), self._class
        out = []
        for entry_id, fields in entries:
            job = parse_job(fields, now, allow_private_callbacks=False)
            out.append(_InFlightJob(batch, entry_id, fields, job, "c1", p._segment(job, "c1"), k, k.lane))
        return out

    def build(self, jobs: list[_InFlightJob], group: str = "g") -> tuple[list[str], list[Any], bool]:
        """KEYS and ARGV of the claim call of ``jobs``, and whether every claim was
        packed (no JSON claim, the answers in order)."""
        p, keys = self.pipeline, self.keys
        claims, lists, marketing, packed, order = p._claims(jobs, keys)
        payload = _json(ClaimBatch(claims=claims, dead=[], lists=lists))
        k, args = claim_call(keys, keys.jobs, group, payload, 1_700_000_000_000, 3600, 1_000_000, False, (), packed,
                             marketing)
        return k, args, order is None and not claims

    def hash_number(self, number: str) -> str:
        """The keyed hash of ``number`` (what a transactional job gets after its claim)."""
        return self.pipeline._hash_number(number)
