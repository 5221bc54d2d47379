"""Instructions per operation under callgrind: figures that a noisy VM does not move.

On the shared 2-core VM, identical timed runs differ by up to 40 % and a
timeit of the same function by 2x from one minute to the next, so a change
worth a few per cent cannot be seen in time. Instructions executed can: run
twice under valgrind's callgrind, they agree to a fraction of a per cent.
(They are not time: a cache miss costs no instruction. Use them to compare
two versions of the same code, and timed runs for the absolute figure.)

    python -m bench.instructions receipts [--script dlr/correlate.lua]
    python -m bench.instructions receipts --miss   # a receipt tried on a shard without its entry
    python -m bench.instructions receipts --stage  # privacy hooks: stage, then publish
    python -m bench.instructions record
    python -m bench.instructions scan
    python -m bench.instructions simulator
    python -m bench.instructions redaction [--python PY --tree DIR]
    python -m bench.instructions engine [--python PY --tree DIR] [--hooks pkg.mod:Class] [--shards N [--spread]] [--marketing]   # needs REDIS_URL
    python -m bench.instructions receipt-hooks [--python PY --tree DIR]   # the receipt side of a custom hook, alone
    python -m bench.instructions receipt-path [--python PY --tree DIR]   # deliver_sm bytes in to deliver_sm_resp out; REDIS_URL
    python -m bench.instructions archiver [--pattern paired|split] [--python PY --tree DIR]   # REDIS_URL, PostgreSQL
    python -m bench.instructions path [--python PY --tree DIR] [--small N --large N] [--shards N] [--keep DIR]
    python -m bench.instructions functions SMALL LARGE --per N   # by C function: path --keep's files
    python -m bench.instructions idle [--python PY --tree DIR] [--shards N] [--delay-s S]
    python -m bench.instructions claim [--fresh] [--seed N --rounds N --script OTHER/claim.lua]    # claim.lua per new job (bench.marks_cost, its steady fill)
    python -m bench.instructions smpp [--python PY --tree DIR] [--engine]
    python -m bench.instructions percall [--small-batch 50 --large-batch 500 --jobs 2000]   # needs REDIS_URL

``receipts``: instructions Redis executes inside EVALSHA per receipt, for
batches of 1,000 fast-path receipts applied by ``dlr/correlate.lua`` (with the
header its loader generates, ``dlr.store.script_source``; ``--stage``: what the engine runs with custom
privacy hooks, each batch staged (``apply:stage``) then published
(``dlr/publish_staged.lua``) with the one ``retention_until`` the hooks give; the
embedded Redis's server under callgrind, counting only inside
``evalShaCommand``). ``record``: the same, per job recorded by
``engine/record.lua`` in batches of 500 single-part jobs submitted with a
receipt asked for and no callback (the common job: its correlation entry,
event and XACK; whatever else the script writes per job). ``scan``: per ``scan_receipt`` of a simulator receipt.
``engine``: the engine process's own work (Python, not Redis) per job on the
record path (the keyed hash taken at admission, ``Pipeline._record``'s payload
and its script call) and per receipt on the receipt sink's path
(``ReceiptSink.on_claimed`` and the flush: ``dlr.store`` apply and publish),
in batches of 500 single-part jobs with receipts, against the Redis at
``REDIS_URL``: three stages (jobs built only; + recorded; + their receipts),
each run at two lengths; the differences of the stages' slopes. ``--tree`` and
``--python`` run it on another checkout (an older commit, with its venv);
``--hooks`` configures ``[privacy] hooks`` (e.g. ``bench.trivial_hook:Trivial``).
``receipt-path``: the engine's Python per receipt on its whole way, no sockets: batches
of 500 single-part jobs recorded (``Pipeline._record``) in both runs, then, with RUN, their
receipts in the common layout as one read of a bound ``SmppBind``'s ``SmppProtocol``
(framer, session with ``scan_receipt`` claiming them, ``handle_events``, the pool, the
sink's ``on_claimed``), the sink's flush (its correlate call on the Redis at ``REDIS_URL``,
publish) and the deliver_sm_resp written; 1,000 vs 3,000 jobs, with minus without.
``receipt-hooks``: the engine's Python per receipt event with a custom hook, alone (no
Redis): a staged value of 500 fast-path finals parsed (``dlr.store.parse_staged``), made
the hooks' ``ReceiptEvent``s and run through the chain with ``bench.trivial_hook:Trivial``
(``engine.receipt_hooks.hook_edits``), minus the same runs without that work.
``archiver``: the history archiver's own process per event (XREADGROUP and its
reply, the fold, the store write's client side, XACK: ``Archiver.drain``) over
a backlog of batches of 5,000 events (``bench.history``'s steady state,
``--pattern``) in a stream of its own at ``REDIS_URL``, into a fresh database
of the PostgreSQL at ``--pg``; the stream is filled outside callgrind.
``--shards N`` puts every job on shard 0's lane (only the per-job cost of shards
shows: the receipt hints); with ``--spread`` each job goes to its own shard's
lane and is recorded as the engine does on one Redis (every shard's record call
in one pipelined round trip), its receipt applied on its shard: the per-call
costs of smaller calls show too (needs a tree that has ``Pipeline._record_shards``).
``path``: the whole engine path per message, as the bench runs it: worker 0
of ``sendgate bench`` (defaults: 1 worker, receipts on, the default mix, the
embedded Redis) under callgrind (``--callgrind``), at two job counts; the
difference per job between them (start-up, the first batch's imports and the
shutdown cancel out). Less exact than the harnesses above (the batches form as
the slowed engine lets them: repeat runs differ by ~1-2 %), but it counts
everything the engine does per message: the stream read, parsing, segmenting,
claims, PDU encoding, the window, submit_sm_resp handling, the record call,
receipts, metrics, freeing.
``claim``: claim.lua per new transactional job (``bench.marks_cost instructions``
at fill <= 8's steady mean: 512 buckets a generation, 6 marks each in the previous
one, 3 in the current; ``--fresh``: nothing before, as ``sendgate bench`` has it).
``idle``: the engine's instructions per second of wall time that do not scale
with the jobs (the maintenance tick, the ops sampler, the readers' empty
polls: per shard or per lane, not per job), as ``path`` runs it: 1,000 jobs
with receipts at once, then with receipts ``--delay-s`` later (the same work,
a run that much longer); the difference over the elapsed time's. Under
callgrind the engine runs ~50x slower, so ``path``'s figure per job holds
this rate × the run's time per job (~3 ms at four shards): a cost of a few
instructions per job at full speed shows there as thousands, more the
slower a loaded machine runs the callgrind engine. (The two runs' wall
times differ by start-up and drain waits more than by their jobs, so that
part is not subtracted: compare ``path`` figures taken at the same load.)
``redaction``: the log redaction filter per record without a number (the record
of bench/micro/test_privacy.py ``_plain_record``: three ``%`` args incl. a float,
extras ``carrier`` and ``job_id``), ``RedactingFilter`` and the default hook
chain's log filter: records built in both runs, filtered in one (RUN), GC off;
the difference of the two runs' slopes, averaged over two hash seeds (dict and
set probes move a run's figure by a few hundred instructions).
``smpp``: the engine's SMPP session per message, as the pool's write path and
the bind's reads use it (no sockets): windows of 250 submit_sm numbered, encoded and
registered in flight (``Session.send_submits``, or ``send`` per PDU on a tree
without it), then their submit_sm_resp read in one ``receive_data`` (the
``Response`` events); the PDUs and response bytes are made in both.
``smpp --engine``: the engine's whole SMPP side per message, no sockets: 250
single-part jobs with receipts handed to the carrier's pool as the admitter
does (``Pipeline._submit_job``: the builder, then ``_submit_ready``), the pool's
assign step writing them on a bound ``SmppBind`` (its protocol a stub), then
their submit_sm_resp read by the session and handled as ``data_received`` does
(``SmppBind.handle_events``, the pool, ``Pipeline.on_submit_resp(s)``, up to the
job's outcome queued for its record call; the record task never runs).
``percall``: what a call costs whatever it carries: ``record``, ``receipts`` (the same
entries staying in the bucket at both sizes) and ``engine``'s record and receipt stages,
each at two batch sizes over the same jobs; the per-message difference over
``1/small - 1/large`` is the fixed instructions per call (script entry, per-call
commands, the client's round trip, a task's wake-up). Multiply by the calls per message
``sendgate bench`` makes (its ``redis_slow_calls`` with SLOWLOG at 0, or
``redis_commands_per_job``'s ``evalsha``) for that share of the per-message cost.
``simulator``: the simulator's work per message with and without receipts
(submit_sm in, resp out; the receipt built, written, and its
deliver_sm_resp read). The Python figures are the difference of two runs of
different lengths, so start-up cancels out.

Needs valgrind (Debian: ``apt-get install valgrind``); not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent

_SCAN = """
import struct
from connectors.simulator import _HEAD_TAIL
from dlr.receipt_scan import scan_receipt
mid = b"1a2b3c4d5e6f"
text = (b"id:" + mid + b" sub:001 dlvrd:001 submit date:2611281300 done date:2611281300"
        b" stat:DELIVRD err:000 text:Hello world, this i")
body = (b"\\0\\x01\\x01447700900123\\0\\x00\\x00SENDGATE\\0" + _HEAD_TAIL + bytes((len(text),)) + text
        + struct.pack(">HH", 0x1E, len(mid) + 1) + mid + b"\\0" + struct.pack(">HHB", 0x0427, 1, 2))
assert scan_receipt(body) is not None
for _ in range(N):
    scan_receipt(body)
"""

_SMPP = """
import gc, struct
from collections import deque
from connectors.pdu import BindTransceiver, BindTransceiverResp, SubmitSm
from tests.connectors.helpers import SessionPair

def run(n):
    pair = SessionPair(window=300)
    pair.bind(BindTransceiver(system_id="e", password="p"), BindTransceiverResp)
    s = pair.esme
    batched = hasattr(s, "send_submits")
    head = struct.Struct(">IIII")
    mid = b"0123456789abcdef01234567"
    got = 0
    for _ in range(n // 250):
        items = [(SubmitSm(0, 0, (), "", 1, 1, "SENDER", 1, 1, "447700900123", 0, 0, 0, "", "", 1, 0, 0, 0,
                           b"Hello world, this is a message"), ("token", i)) for i in range(250)]
        q = deque(items)
        if batched:
            chunks = s.send_submits(q, 250, 1.0)
        else:  # SmppBind.submit_from before send_submits
            send, popleft = s.send, q.popleft
            chunks = []
            for _ in range(250):
                item = popleft()
                chunks.append(send(item[0], 1.0, item))
        assert len(b"".join(chunks)) > 0
        data = b"".join([head.pack(17 + len(mid), 0x80000004, 0, it[0].sequence_number) + mid + b"\\0"
                         for it in items])
        got += len(s.receive_data(data))
    assert got == n // 250 * 250, got

gc.disable()
run(N)
"""

_SMPP_ENGINE = """
import asyncio, gc, struct, time
from connectors.config import BindConfig
from connectors.pdu import BindTransceiver
from connectors.pool import BindPool
from connectors.session import ESME, Session
from connectors.transport import SmppBind
from engine.pipeline import ClaimArgs

class Proto:  # the bind's protocol: writes kept, no socket
    paused = False
    transport = None
    def write(self, data): pass
    def write_many(self, chunks): self.chunks = chunks
    def close(self): pass

class Handler:  # engine.app._PoolHandler's routing to the pipeline
    def __init__(self, p):
        self.on_submit_resp = p.on_submit_resp
        self.on_submit_lost = p.on_submit_lost
        if hasattr(p, "on_submit_resps"):
            self.on_submit_resps = p.on_submit_resps
    def on_bind_state(self, name, up): pass

W = 250

async def main():
    ca = ClaimArgs()
    p = ca.pipeline
    entries = [("1-%d" % i, {b"id": b"job-%d" % i, b"to": b"+45%08d" % (10000000 + i),
                             b"text": b"Hello world, this is message %d" % i, b"dlr": b"1"}) for i in range(W)]
    jobs = ca.jobs(entries, time.time())
    cfg = BindConfig(name="c1", port=1, system_id="e", password="p", window=W)
    pool = BindPool(cfg, Handler(p))
    pool._loop = asyncio.get_running_loop()
    p.pools["c1"] = pool
    bind = SmppBind(cfg, pool)
    runs = {"submit_runs": True} if getattr(bind, "_responses", None) is not None else {}
    session = Session(ESME, W, 30.0, 0.0, **runs)
    session.send(BindTransceiver(system_id="e", password="p"), 0.0)
    session.receive_data(struct.pack(">IIII", 18, 0x80000009, 0, 1) + b"e\\0")
    assert session.is_bound()
    bind.session, bind.protocol, bind.up = session, Proto(), True
    pool.binds.append(bind)
    pool._submitters.append(bind)
    head = struct.Struct(">IIII")
    mid = b"0123456789abcdef01234567"
    gc.disable()
    for _ in range(N // W):
        ready = []
        for ij in jobs:  # the admitter's hand-over (Pipeline._claim_and_submit), then the assign step
            p._submit_job(ij, ready)
        p._submit_ready(ready)
        pool._assign()
        assert session.windowed == W, session.windowed
        data = b"".join([head.pack(17 + len(mid), 0x80000004, 0, seq) + mid + b"\\0" for seq in session.in_flight])
        bind.handle_events(session.receive_data(data))  # SmppProtocol.data_received
        assert session.windowed == 0
    assert pool.stats.responses == N // W * W

asyncio.run(main())
"""


_SIMULATOR = """
import asyncio
from connectors.codec import encode
from connectors.pdu import SubmitSm
from connectors.simulator import _DELIVER_SM_RESP, _HEADER_PACK, Simulator, SimulatorConfig, SmscProtocol

class Transport:
    def write(self, data): pass
    def get_extra_info(self, name): return None
    def close(self): pass

async def main():
    sim = Simulator(SimulatorConfig(dlr=DLR))
    p = SmscProtocol(sim)
    p.connection_made(Transport())
    p._can_submit = True
    p._is_receiver = True
    batch = b"".join(
        encode(SubmitSm(sequence_number=i + 1, source_addr="SENDGATE", destination_addr="447700900%03d" % i,
                        registered_delivery=int(DLR), short_message=b"Hello world, this is message %d" % i))
        for i in range(256)
    )
    resps = b"".join(_HEADER_PACK(17, _DELIVER_SM_RESP, 0, 0x40000001 + i) + b"\\0" for i in range(256))
    for _ in range(N):
        p.data_received(batch)
        if DLR:
            p._send_receipts()
            p.data_received(resps)
    assert sim.stats.submits == 256 * N and sim.stats.receipts == (256 * N if DLR else 0)

asyncio.run(main())
"""


_RECEIPT_HOOKS = """
import gc, time
from dlr.store import StagedBatch, pack_staged, parse_staged
from engine.receipt_hooks import ReceiptEvent, hook_edits, receipt_events
from privacy_hooks import default_chain
from bench.trivial_hook import Trivial
gc.set_threshold(50_000, *gc.get_threshold()[1:])  # as the engine runs
B = 500
ms = "1764806400123"
ev = [["id", "job-%d" % i, "ref", "", "event", "delivered", "carrier", "c1", "parts", "1",
       "message_ids", "%x" % (0x1000000000 + i), "error", "", "ts", ms] for i in range(B)]
make = getattr(StagedBatch, "of_events", StagedBatch)  # trees before the staged columns: the field lists
value = pack_staged(make("t", 0, 1764806400000, "F" * B, [""] * B, [""] * B, ev))
chain = default_chain(custom=[Trivial()])
now = time.time()
for _ in range(N // B):
    if RUN:
        batch = parse_staged("t", value)
        if hasattr(batch, "event_dicts"):
            hook_edits(chain, batch.event_dicts(ReceiptEvent), now, batch.event_lists)
        else:
            hook_edits(chain, receipt_events(batch.events), now, batch.events)
"""


def receipt_hooks_instructions(tree: Path = _ROOT, python: str = sys.executable) -> float:
    """The engine's Python per receipt event with a custom hook, alone (no I/O): a staged
    value of 500 fast-path finals parsed, made the hooks' events, run through the chain
    with ``Trivial`` (``hook_edits``); minus the same runs without that work."""
    run = python_instructions(_RECEIPT_HOOKS, 2000, 12000, cwd=tree, python=python, RUN=True)
    return run - python_instructions(_RECEIPT_HOOKS, 2000, 12000, cwd=tree, python=python, RUN=False)


_ENGINE = """
import asyncio, inspect, os
import redis as sync_redis
from redis.asyncio import Redis
from engine.config import settings_from_mapping
from engine.metrics import Metrics
from engine.pipeline import Pipeline, _Batch, _InFlightJob
from engine.job import parse_job
try:
    from engine.receipt_sink import ReceiptSink
except ImportError:
    from engine.receipts import ReceiptSink

PREFIX = "ecpu%d" % os.getpid()
BATCH = 500
settings = settings_from_mapping({
    "redis": {"url": REDIS_URL, "prefix": PREFIX, **({"shards": SHARDS} if SHARDS > 1 else {})},
    "carriers": [{"name": "c1", "routes": [""]}],
    **({"privacy": {"hooks": HOOKS}} if HOOKS else {}),
}, env={})
_kw = "allow_private_callbacks" in inspect.signature(parse_job).parameters

class Bind:
    def respond_sequences(self, deliver, data, status):
        self.n = len(deliver)

async def main():
    r = Redis.from_url(REDIS_URL)
    sr = sync_redis.Redis.from_url(REDIS_URL)
    metrics = Metrics()
    p = Pipeline(settings, r, {}, metrics)
    sink = ReceiptSink(settings, r, metrics)
    sink.barrier = None
    if SHARDS > 1:  # as the app wires them: receipts for this engine's submits go to their shard
        sink.hints = p.receipt_hints
    await p.ensure_groups()
    stream = p.keys.jobs
    # SPREAD: each job on its own shard's lane (crc32(id) mod N), read per shard and
    # recorded as the engine does (one recorder pipelining every shard's record call
    # on one Redis); its receipts split by hint over the shards. Else all on shard 0.
    spread = SPREAD and SHARDS > 1
    if spread:
        from engine.keys import shard_of
    bind = Bind()
    extra = ()
    # lane classes (since the queues round); a msgspec Struct since pathcpu (its fields, not __init__'s signature)
    if "klass" in getattr(_InFlightJob, "__struct_fields__", ()) or "klass" in inspect.signature(_InFlightJob.__init__).parameters:
        from engine.pipeline import _NORMAL_LANE
        k = next(iter(p._classes["c1"][_NORMAL_LANE].values()))
        extra = (k, k.lane)
    n = 0
    import time
    for _ in range(N // BATCH):
        pipe = sr.pipeline(transaction=False)
        for i in range(BATCH):
            jid = "job-%d" % (n + i)
            pipe.xadd(p.shards[shard_of(jid, SHARDS)].jobs if spread else stream, {"id": jid, "to": "+45%08d" % (10000000 + n + i), "text": "Hello world, this is message %d" % i, "dlr": "1", **KIND})
        pipe.execute()
        if spread:
            read = sr.xreadgroup(p.group, "c", {k.jobs: ">" for k in p.shards}, count=BATCH)
        else:
            read = sr.xreadgroup(p.group, "c", {stream: ">"}, count=BATCH)
        now = time.time()
        jobs = []
        by_stream = {}
        for stream_name, raw in read:
            batch = _Batch(stream_name.decode())
            some = by_stream[batch.stream] = []
            for eid, fields in raw:
                job = parse_job(fields, now, allow_private_callbacks=False) if _kw else parse_job(fields, now)
                ij = _InFlightJob(batch, eid.decode(), fields, job, "c1", p._segment(job, "c1"), *extra)
                ij.message_ids = ["%x" % (0x1000000000 + n)]
                ij.expect = 1
                n += 1
                some.append(ij)
        jobs = [ij for some in by_stream.values() for ij in some]
        if STAGE >= 1:
            for ij in jobs:  # what _claim_and_submit does per admitted job
                if not ij.to_hash:
                    ij.to_hash = getattr(p, "_hash_to", p._hash_number)(ij.job.to)  # (Job.to: digits already)
            if spread:
                p._to_record.update(by_stream)
                await p._record_shards()
                assert not p._to_record
            else:
                await p._record(stream, jobs, [])
        if STAGE >= 2:
            sink.on_claimed("c1", bind, [(k, (ij.message_ids[0], "delivered", True, "")) for k, ij in enumerate(jobs)])
            await sink._flush()
            assert bind.n == BATCH
            held = sink.unmatched["c1"]
            assert not held.has_work(), "receipts not matched"
    for key in sr.scan_iter(match=PREFIX + ":*", count=1000):
        sr.delete(key)
    await r.aclose() if hasattr(r, "aclose") else await r.close()

asyncio.run(main())
"""


def engine_code(n: int, stage: int, redis_url: str, *, hooks: list[str] | None = None, shards: int = 1,
                marketing: bool = False, spread: bool = False, batch: int = 500) -> str:
    """The ``engine`` harness's program for ``n`` jobs up to ``stage`` (0 built, 1 recorded,
    2 their receipts), ``batch`` jobs per record call and receipts per flush."""
    return (f"N = {n}\nSTAGE = {stage}\nREDIS_URL = {redis_url!r}\nHOOKS = {hooks or []!r}\nSHARDS = {shards}\n"
            f"KIND = {({'kind': 'marketing'} if marketing else {})!r}\n"
            f"SPREAD = {spread}\n"
            + _ENGINE.replace("\nBATCH = 500\n", f"\nBATCH = {batch}\n"))


def engine_instructions(tree: Path = _ROOT, python: str = sys.executable, small: int = 1000, large: int = 3000,
                        redis_url: str = "", hooks: list[str] | None = None, shards: int = 1,
                        marketing: bool = False, spread: bool = False, batch: int = 500) -> dict[str, float]:
    """Engine instructions per job recorded and per receipt (see ``engine`` above);
    ``marketing``: every job ``kind=marketing`` (its claim is measured by
    ``python -m bench.suppression_cost --engine``); ``batch``: jobs per record call
    and receipts per flush (``small`` and ``large`` multiples of it)."""
    if small % batch or large % batch:
        raise ValueError(f"--small {small} and --large {large} must be multiples of the batch ({batch})")
    valgrind = _need_valgrind()
    url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    slopes = []
    with tempfile.TemporaryDirectory() as tmp:
        for stage in (0, 1, 2):
            counts = []
            for n in (small, large):
                code = engine_code(n, stage, url, hooks=hooks, shards=shards, marketing=marketing, spread=spread,
                                   batch=batch)
                out = Path(tmp) / f"cg.{stage}.{n}"
                subprocess.run(
                    [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", python, "-c", code],
                    cwd=tree, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                counts.append(_total(out))
            slopes.append((counts[1] - counts[0]) / (large - small))
    return {"build": slopes[0], "record": slopes[1] - slopes[0], "receipt": slopes[2] - slopes[1]}


_RECEIPT_PATH = """
import asyncio, gc, os, struct, time
import redis as sync_redis
from redis.asyncio import Redis
from connectors.config import BindConfig
from connectors.pdu import BindTransceiver
from connectors.pool import BindPool
from connectors.session import ESME, Session
from connectors.simulator import _HEAD_TAIL
from connectors.transport import SmppBind, SmppProtocol
from dlr.receipt_scan import scan_receipt
from engine.config import settings_from_mapping
from engine.metrics import Metrics
from engine.pipeline import Pipeline, _Batch, _InFlightJob
from engine.job import parse_job
from engine.receipt_sink import ReceiptSink

PREFIX = "rpath%d" % os.getpid()
B = 500
settings = settings_from_mapping({
    "redis": {"url": REDIS_URL, "prefix": PREFIX},
    "carriers": [{"name": "c1", "routes": [""]}],
}, env={})

class Transport:  # the socket: what is written is counted
    def __init__(self): self.out = 0
    def write(self, data): self.out += len(data)
    def is_closing(self): return False
    def get_extra_info(self, name): return None

class Handler:  # engine.app._PoolHandler's routing to the sink
    def __init__(self, sink):
        self.sink = sink
    def on_deliver(self, bind, pdu): self.sink.on_deliver("c1", bind, pdu)
    def on_claimed(self, bind, items): self.sink.on_claimed("c1", bind, items)
    def on_submit_resp(self, *a): pass
    def on_submit_lost(self, *a): pass
    def on_bind_state(self, name, up): pass

DATE = b"2612061900"
HEAD = b"\\0\\x01\\x01447700900123\\0\\x05\\x00SENDGATE\\0" + _HEAD_TAIL
TEXT = b" stat:DELIVRD err:000 text:Hello world, this i"

def receipt(seq, mid):
    sm = b"id:" + mid + b" sub:001 dlvrd:001 submit date:" + DATE + b" done date:" + DATE + TEXT
    body = (HEAD + bytes((len(sm),)) + sm + struct.pack(">HH", 0x1E, len(mid) + 1) + mid + b"\\0"
            + struct.pack(">HHB", 0x0427, 1, 2))
    return struct.pack(">IIII", 16 + len(body), 0x00000005, 0, seq) + body

async def main():
    loop = asyncio.get_running_loop()
    r = Redis.from_url(REDIS_URL)
    sr = sync_redis.Redis.from_url(REDIS_URL)
    metrics = Metrics()
    p = Pipeline(settings, r, {}, metrics)
    sink = ReceiptSink(settings, r, metrics)
    sink.barrier = None
    await p.ensure_groups()
    stream = p.keys.jobs
    cfg = BindConfig(name="c1", port=1, system_id="e", password="p", window=10)
    pool = BindPool(cfg, Handler(sink), claim_deliver=scan_receipt)
    bind = SmppBind(cfg, pool, claim_deliver=scan_receipt)
    session = Session(ESME, 10, 30.0, 0.0, claim_deliver=scan_receipt, submit_runs=True)
    session.send(BindTransceiver(system_id="e", password="p"), 0.0)
    session.receive_data(struct.pack(">IIII", 18, 0x80000009, 0, 1) + b"e\\0")
    assert session.is_bound()
    proto = SmppProtocol(session, bind)
    transport = Transport()
    proto.connection_made(transport)
    bind.session, bind.protocol, bind.up = session, proto, True
    extra = ()
    from engine.pipeline import _NORMAL_LANE
    k = next(iter(p._classes["c1"][_NORMAL_LANE].values()))
    extra = (k, k.lane)
    n = 0
    seq = 0x40000000
    for _ in range(N // B):
        pipe = sr.pipeline(transaction=False)
        for i in range(B):
            pipe.xadd(stream, {"id": "job-%d" % (n + i), "to": "+45%08d" % (10000000 + n + i),
                               "text": "Hello world, this is message %d" % i, "dlr": "1"})
        pipe.execute()
        read = sr.xreadgroup(p.group, "c", {stream: ">"}, count=B)
        now = time.time()
        jobs = []
        for stream_name, raw in read:
            batch = _Batch(stream_name.decode())
            for eid, fields in raw:
                job = parse_job(fields, now, allow_private_callbacks=False)
                ij = _InFlightJob(batch, eid.decode(), fields, job, "c1", p._segment(job, "c1"), *extra)
                ij.message_ids = ["%x" % (0x1000000000 + n)]
                ij.expect = 1
                n += 1
                jobs.append(ij)
        for ij in jobs:
            if not ij.to_hash:
                ij.to_hash = p._hash_to(ij.job.to)
        await p._record(stream, jobs, [])
        data = b"".join([receipt(seq + i, ij.message_ids[0].encode()) for i, ij in enumerate(jobs)])
        seq += B
        if RUN:
            before = transport.out
            proto.data_received(data)  # the bind's session: claimed, to the sink
            await sink._flush()  # correlate, publish, answer
            await asyncio.sleep(0)  # the protocol's write
            assert transport.out - before == 17 * B, transport.out - before
            assert not sink.unmatched["c1"].has_work(), "receipts not matched"
    for key in sr.scan_iter(match=PREFIX + ":*", count=1000):
        sr.delete(key)
    await r.aclose()

gc.set_threshold(50_000, *gc.get_threshold()[1:])  # as the engine runs
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def receipt_path_instructions(tree: Path = _ROOT, python: str = sys.executable, small: int = 1000,
                              large: int = 3000, redis_url: str = "") -> float:
    """Engine instructions per receipt from its deliver_sm's bytes to its deliver_sm_resp's
    (see ``receipt-path`` above): runs with and without the receipts, the difference of slopes."""
    url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    with_r = python_instructions(_RECEIPT_PATH, small, large, cwd=tree, python=python, REDIS_URL=url, RUN=True)
    without = python_instructions(_RECEIPT_PATH, small, large, cwd=tree, python=python, REDIS_URL=url, RUN=False)
    return with_r - without


_ARCHIVER = """
import asyncio, gc
from redis.asyncio import Redis
from engine.history.archiver import Archiver
from engine.history.postgres import PostgresHistory

async def main():
    redis = Redis.from_url(REDIS_URL)
    store = PostgresHistory(DSN)
    await store.migrate()
    archiver = Archiver(redis, store, [STREAM], consumer="bench", batch_size=COUNT, block_ms=1)
    n = await archiver.drain()
    assert n == EVENTS, (n, EVENTS)
    await store.close()
    await redis.aclose()

gc.collect()  # as the archiver's process runs (engine/history/cli.py): uvloop, GC at 50,000
gc.freeze()
gc.set_threshold(50_000, *gc.get_threshold()[1:])
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def archiver_instructions(tree: Path = _ROOT, python: str = sys.executable, small: int = 2, large: int = 6,
                          pattern: str = "paired", pg: str = "postgresql://postgres@127.0.0.1:5432",
                          redis_url: str = "", count: int = 5000) -> float:
    """Instructions of the archiver's process per event archived (see ``archiver`` above);
    ``count``: its batch_size (XREADGROUP COUNT)."""
    import asyncio
    import uuid

    import redis

    from bench import history as bh

    valgrind = _need_valgrind()
    url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    bh.PATTERN["value"] = pattern
    r = redis.Redis.from_url(url)
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (small, large):
            name = f"sgins_{uuid.uuid4().hex[:10]}"
            stream = f"sgins-{uuid.uuid4().hex[:8]}:events"
            asyncio.run(bh._admin(f"{pg}/postgres", f"CREATE DATABASE {name}"))
            try:
                t = int(time.time() * 1000)
                r.xgroup_create(stream, "archiver", id="0", mkstream=True)
                events = 0
                for b in range(n):
                    pipe = r.pipeline(transaction=False)
                    for _, fields in bh.events(1_000_000 + b, t):
                        pipe.xadd(stream, fields)  # type: ignore[arg-type]
                        events += 1
                    pipe.execute()
                code = "".join(f"{k} = {v!r}\n" for k, v in {
                    "REDIS_URL": url, "DSN": f"{pg}/{name}", "STREAM": stream, "EVENTS": events,
                    "COUNT": count}.items()) + _ARCHIVER
                out = Path(tmp) / f"cg.{n}"
                subprocess.run(
                    [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", python, "-c", code],
                    cwd=tree, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                counts.append(_total(out))
            finally:
                r.delete(stream)
                asyncio.run(bh._admin(f"{pg}/postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    r.close()
    return (counts[1] - counts[0]) / ((large - small) * bh.BATCH)
def path_instructions(tree: Path = _ROOT, python: str = sys.executable, small: int = 3000,
                      large: int = 13000, shards: int = 1, keep: Path | None = None) -> float:
    """Engine instructions per job over the whole path (see ``path`` above); ``shards``:
    ``sendgate bench --shards`` (the jobs spread over the shards as producers spread them).
    The figure holds the per-second work too (``idle``), times the run's length per job.
    ``keep``: a directory to keep the two callgrind files in (``cg.path.<jobs>``), for
    ``python -m bench.instructions functions``."""
    _need_valgrind()
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (small, large):
            out = (keep or Path(tmp)).resolve() / f"cg.path.{n}"
            subprocess.run(
                [python, "-m", "engine.cli", "bench", "--jobs", str(n), "--quiet", "--timeout-s", "1200",
                 "--callgrind", str(out), "--json", str(Path(tmp) / f"path.{n}.json"),
                 *(["--shards", str(shards)] if shards > 1 else [])],
                cwd=tree, check=True, stdout=subprocess.DEVNULL,
            )
            counts.append(_total(out))
    return (counts[1] - counts[0]) / (large - small)


def function_instructions(small: Path, large: Path, per: float) -> list[tuple[float, str]]:
    """Per-function self instructions of ``large`` minus ``small`` (two callgrind files,
    e.g. ``path --keep``'s), divided by ``per`` (the jobs between them), largest first."""
    def by_function(out: Path) -> dict[str, int]:
        text = subprocess.run(["callgrind_annotate", "--threshold=100", str(out)], check=True,
                              capture_output=True, text=True).stdout
        counts: dict[str, int] = {}
        for line in text.splitlines():
            parts = line.split(None, 1)
            if len(parts) != 2 or not parts[0].replace(",", "").isdigit():
                continue
            rest = parts[1]
            if rest.startswith("("):  # "(12.34%)" after the count
                rest = rest.split(")", 1)[1].strip()
            if rest.startswith("PROGRAM TOTALS") or not rest:
                continue
            name = rest.split(" [", 1)[0]
            counts[name] = counts.get(name, 0) + int(parts[0].replace(",", ""))
        return counts

    a, b = by_function(small), by_function(large)
    return sorted(((b.get(f, 0) - a.get(f, 0)) / per, f) for f in a.keys() | b.keys())[::-1]


def idle_instructions(tree: Path = _ROOT, python: str = sys.executable, shards: int = 1, jobs: int = 1000,
                      delay_s: float = 20.0) -> float:
    """Engine instructions per second of wall time that do not scale with jobs (see
    ``idle`` above): worker 0 of ``sendgate bench --jobs N`` under callgrind, once
    with receipts at once and once with them ``delay_s`` later (the same work, a
    run that much longer): the difference per second of the delay."""
    _need_valgrind()
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for delay in (0.0, delay_s):
            out = Path(tmp) / f"cg.idle.{delay}"
            subprocess.run(
                [python, "-m", "engine.cli", "bench", "--jobs", str(jobs), "--quiet", "--timeout-s", "1200",
                 "--callgrind", str(out), "--json", str(Path(tmp) / f"idle.{delay}.json"),
                 "--dlr-delay-ms", str(int(delay * 1000)), *(["--shards", str(shards)] if shards > 1 else [])],
                cwd=tree, check=True, stdout=subprocess.DEVNULL,
            )
            counts.append(_total(out))
    return (counts[1] - counts[0]) / delay_s


_REDACTION = """
import gc, logging
from privacy_hooks import RedactingFilter, default_chain

def make():
    record = logging.LogRecord(
        "sendgate.engine", logging.INFO, "bench.py", 1, "submitted %s via %s in %.1f ms", ("job-1234", "acme-1", 3.2), None
    )
    record.__dict__.update({"carrier": "acme", "job_id": "job-1234"})
    return record

flt = default_chain().log_filter() if CHAIN else RedactingFilter()
for _ in range(200):
    flt.filter(make())
records = [make() for _ in range(N)]
gc.disable()

def main():
    if RUN:
        f = flt.filter
        for r in records:
            f(r)

main()
"""


def redaction_instructions(tree: Path = _ROOT, python: str = sys.executable, small: int = 1000,
                           large: int = 6000, seeds: tuple[int, ...] = (1, 2)) -> dict[str, float]:
    """Instructions per record of the redaction filter and of the default chain's log
    filter (see ``redaction`` above)."""
    valgrind = _need_valgrind()
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for chain in (False, True):
            per = []
            for seed in seeds:
                slopes = []
                for run in (False, True):
                    counts = []
                    for n in (small, large):
                        code = f"N = {n}\nRUN = {run}\nCHAIN = {chain}\n" + _REDACTION
                        cg = Path(tmp) / f"cg.{chain}.{seed}.{run}.{n}"
                        subprocess.run(
                            [valgrind, "--tool=callgrind", f"--callgrind-out-file={cg}", python, "-c", code],
                            cwd=tree, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONHASHSEED": str(seed)},
                        )
                        counts.append(_total(cg))
                    slopes.append((counts[1] - counts[0]) / (large - small))
                per.append(slopes[1] - slopes[0])
            out["chain" if chain else "filter"] = sum(per) / len(per)
    return out


def smpp_instructions(tree: Path = _ROOT, python: str = sys.executable, small: int = 2000,
                      large: int = 6000, engine: bool = False) -> float:
    """The engine's SMPP session per message (see ``smpp`` above), on ``tree``;
    ``engine``: the whole SMPP side as the engine drives it (``smpp --engine``)."""
    valgrind = _need_valgrind()
    counts = []
    snippet = _SMPP_ENGINE if engine else _SMPP
    with tempfile.TemporaryDirectory() as tmp:
        for n in (small, large):
            out = Path(tmp) / f"cg.smpp.{n}"
            subprocess.run(
                [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", python, "-c", f"N = {n}\n" + snippet],
                cwd=tree, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            counts.append(_total(out))
    return (counts[1] - counts[0]) / (large - small)


def percall_instructions(tree: Path = _ROOT, python: str = sys.executable, small_batch: int = 50,
                         large_batch: int = 500, jobs: int = 2000) -> dict[str, dict[str, float]]:
    """Fixed cost per call (see ``percall`` above): each harness at two batch sizes with
    the same jobs (receipts: the same entries staying in the bucket); per call
    ``(a - b) / (1/small_batch - 1/large_batch)`` of the per-message figures a, b."""
    if jobs % small_batch or jobs % large_batch:
        raise ValueError(f"--jobs {jobs} must be a multiple of both batch sizes")
    url = os.environ.get("REDIS_URL", "")
    if not url:
        raise SystemExit("percall needs REDIS_URL (the engine harness's Redis)")
    inv = 1 / small_batch - 1 / large_batch
    engine: dict[int, dict[str, float]] = {}  # one engine harness run per batch size gives both stages

    def engine_at(b: int) -> dict[str, float]:
        if b not in engine:
            engine[b] = engine_instructions(tree, python, small=jobs // 2, large=jobs, redis_url=url, batch=b)
        return engine[b]

    measures: list[tuple[str, Callable[[int], float]]] = [
        ("record.lua (Redis)", lambda b: record_script_instructions(jobs // b, b)),
        ("correlate.lua apply (Redis)",
         lambda b: receipts_script_instructions(_ROOT / "dlr" / "correlate.lua", jobs // b, b, stay=5 * large_batch)),
        ("record call (engine)", lambda b: engine_at(b)["record"]),
        ("receipt flush (engine)", lambda b: engine_at(b)["receipt"]),
    ]
    out: dict[str, dict[str, float]] = {}
    for name, measure in measures:
        a, b = measure(small_batch), measure(large_batch)
        out[name] = {"small": a, "large": b, "per_call": (a - b) / inv}
    return out


def _need_valgrind() -> str:
    found = shutil.which("valgrind")
    if not found:
        raise SystemExit("valgrind not found (Debian: apt-get install valgrind)")
    return found


def _total(out: Path) -> int:
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {out}")


def python_instructions(
    snippet: str, small: int, large: int, *, cwd: Path = _ROOT, python: str = sys.executable, **names: object
) -> float:
    """Instructions per iteration of ``snippet`` (which loops ``N`` times), from two
    runs under callgrind with N = small and N = large (in checkout ``cwd`` with ``python``)."""
    valgrind = _need_valgrind()
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (small, large):
            code = "".join(f"{k} = {v!r}\n" for k, v in {"N": n, **names}.items()) + snippet
            out = Path(tmp) / f"cg.{n}"
            subprocess.run(
                [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", python, "-c", code],
                cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            counts.append(_total(out))
    return (counts[1] - counts[0]) / (large - small)


def receipts_script_instructions(
    script: Path, rounds: int = 5, batch: int = 1000, miss: bool = False, stage: bool = False,
    stay: int | None = None,
) -> float:
    """Instructions inside EVALSHA per fast-path receipt applied by ``script`` (``miss``:
    per receipt tried where its entry is not; ``stage``: staged, then published;
    ``stay``: entries left in the bucket throughout, default 5 batches' worth)."""
    from dlr.store import script_source

    def run(r: Any) -> int:
        # with the generated header (and the two-step modes)
        source = script_source(script.read_text(encoding="utf-8"), steps=stage)
        return _apply_rounds(r, r.script_load(source), rounds, batch, miss, stage, stay)

    return _under_callgrind(run)


def record_script_instructions(rounds: int = 5, batch: int = 500, *, keep_text: bool = False) -> float:
    """Instructions inside EVALSHA per job recorded by engine/record.lua (``keep_text``:
    each job's 160-character text sealed into its first event, [history] keep_text)."""
    return _under_callgrind(lambda r: _record_rounds(r, rounds, batch, keep_text=keep_text))


BARE = False  # --bare: the harnesses' server without the embedded server's settings (Redis' defaults)
REDIS_CONF: list[str] = []
"""More redis-server arguments for the harnesses' server (``--redis-conf``), after the
embedded server's own settings (engine.embedded_redis.SERVER_SETTINGS): e.g.
``--redis-conf "lua-time-limit 5000"`` measures with Redis' default instead."""


def under_callgrind(work: Callable[[Any], int]) -> float:
    """Instructions inside EVALSHA per operation ``work(client)`` did, on a Redis under
    callgrind (for other benches' scripts: bench/suppression_cost.py)."""
    return _under_callgrind(work)


def _under_callgrind(work: Callable[[Any], int]) -> float:
    """Start a Redis under callgrind (counting inside EVALSHA only), run
    ``work(client)``, which returns how many operations it did; instructions per one."""
    import redis

    from engine.embedded_redis import redis_server_binary, server_settings_args

    valgrind = _need_valgrind()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.redis"
        server = subprocess.Popen(
            [valgrind, "--tool=callgrind", "--toggle-collect=evalShaCommand", f"--callgrind-out-file={out}",
             redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", tmp, *([] if BARE else server_settings_args()), *REDIS_CONF],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            r = redis.Redis(port=port)
            deadline = time.monotonic() + 60
            while True:
                try:
                    r.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            try:
                ops = work(r)
            except BaseException:
                server.kill()  # the work failed: no figure, and no server left behind
                raise
            r.shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # the shutdown's connection closes as the server ends
        finally:
            server.wait(timeout=120)
        return _total(out) / ops


def _record_args(
    keys: Any, group: str, carrier: str, jobs: list[tuple[str, str, str]], *, keep_text: bool = False
) -> tuple[list[str], list[Any]]:
    """record.lua's KEYS and ARGV for ``jobs`` ((job id, entry id, message id), each a
    single-part job submitted with a receipt asked for, no callback), as the pipeline
    builds them: packed (engine/scripts.py RECORD_PACKED), acks in the JSON payload."""
    from dlr.store import correlation_arg, correlation_bucket
    from engine.scripts import (
        RECORD_PACKED,
        Packed,
        RecordBatch,
        RecordWait,
        payload_json,
        record_call,
    )

    now_ms = int(time.time() * 1000)
    end_ms, expire_at_ms = correlation_bucket(now_ms, 72 * 3_600_000, 120 * 86_400_000)
    packed = Packed(len(RECORD_PACKED))
    for job_id, _entry_id, mid in jobs:
        corr = correlation_arg([mid], 1, 1, "", "", mid)
        assert isinstance(corr, str)
        assert packed.add((job_id, mid, "", "ab" * 16, "+45******01", corr,
                           "submitted", carrier, "1", "", "", "transactional", "gsm7"))
    payload = payload_json(RecordBatch(
        retention_until=now_ms // 1000 + 120 * 86400,
        waits={carrier: RecordWait(end_ms=str(end_ms), expire_at_ms=str(expire_at_ms), record_ttl="518400")},
        jobs=[],
        acks=[entry_id for _, entry_id, _ in jobs],
        texts=_sealed_texts([job_id for job_id, _, _ in jobs]) if keep_text else {},
    ))
    return record_call(keys, keys.jobs, group, payload, now_ms, os.urandom(8).hex(), packed)


def _sealed_texts(job_ids: list[str]) -> dict[str, str]:
    from engine.history.text_cipher import TextCipher, b64, job_aad

    cipher = TextCipher([bytes(32)])
    sealed = cipher.seal_many([(job_aad(j), "x" * 160) for j in job_ids])
    return {j: b64(b) for j, b in zip(job_ids, sealed, strict=True)}


def _record_rounds(r: Any, rounds: int, batch: int, *, keep_text: bool = False) -> int:
    """Push jobs, read them into the group, record them with engine/record.lua as
    the pipeline does (its own payload builders); returns the jobs recorded."""
    from engine.keys import Keys
    from engine.scripts import Script

    keys, carrier, group = Keys("bx"), "c1", "g"
    r.xgroup_create(keys.jobs, group, id="0", mkstream=True)
    script = Script("record")
    sha = r.script_load(script.source)
    rng = random.Random(1)
    n = 0
    for _ in range(rounds):
        pipe = r.pipeline(transaction=False)
        for _ in range(batch):
            pipe.xadd(keys.jobs, {"id": f"job-{n}", "to": "+4501000000", "text": "hello"})
            n += 1
        pipe.execute()
        entries = r.xreadgroup(group, "c", {keys.jobs: ">"}, count=batch)[0][1]
        jobs = [(fields[b"id"].decode(), eid.decode(), f"{rng.getrandbits(64):x}") for eid, fields in entries]
        call_keys, args = _record_args(keys, group, carrier, jobs, keep_text=keep_text)
        r.evalsha(sha, len(call_keys), *call_keys, *args)
    return n


def _apply_rounds(
    r: Any, sha: str, rounds: int, batch: int, miss: bool = False, staged: bool = False, stay: int | None = None
) -> int:
    """Stage fast-form entries like record.lua's (their jobs have no job record),
    apply them in batches; returns the receipts applied (all on the fast path).
    ``miss``: the batches' ids are staged nowhere (a shard that does not hold
    them, as ReceiptSink.correlate tries with shards > 1): every receipt comes
    back unmatched after the bucket lookup and the duplicate-window check."""
    from dlr.store import APPLY_ARGS, GROUP, STAGE_ARGS, ReceiptStore, publish_script
    from engine.keys import Keys

    keys, carrier, now = Keys("bx"), "c1", "1795000000000"
    store = ReceiptStore(None, keys)
    end = 1_900_000_000_000
    bucket = keys.correlation_bucket(carrier, end)
    r.zadd(keys.correlation_index(carrier), {str(end): end})
    n = 0

    def stage(m: int) -> list[bytes]:
        nonlocal n
        pipe = r.pipeline(transaction=False)
        entries, ids = {}, []
        for _ in range(m):
            n += 1
            job, mid = f"bench-{n:08d}", f"{0x10000000 + n * 7919:x}"
            entries[mid] = f"={now}\x1f{mid}\x1fref-{n}\x1f{job}"
            ids.append(mid.encode())
        pipe.hset(bucket, mapping=entries)
        pipe.execute()
        return ids

    stage(5 * batch if stay is None else stay)  # entries that stay: the bucket is not empty
    applied = 0
    for _ in range(rounds):
        if miss:
            ids = [f"{0x70000000 + (applied + i) * 7919:x}".encode() for i in range(batch)]
        else:
            ids = stage(batch)
        mode = "apply:stage" if staged else "apply"
        args = store._args(mode) + APPLY_ARGS.build(
            carrier=carrier, window="600000", groups="1", now=now, token=f"t{applied}" if staged else "",
            rest=GROUP.build(final="1", event="delivered", error="", count=str(len(ids)), ids=ids),
        )
        if staged:
            args += STAGE_ARGS.build(key=keys.dlr_staged, field=f"t{applied}")
        reply = r.evalsha(sha, len(store._script_keys), *store._script_keys, *args)
        if staged:  # then the publish, with the deadline the hooks gave (one for the batch)
            source = publish_script()
            published = r.evalsha(r.script_load(source), 2, keys.dlr_staged, keys.events, f"t{applied}",
                                  len(reply[3]), 1, 0, "retention_until", "1900000000")
            if published != len(ids):
                raise SystemExit(f"published {published} of {len(ids)}")
        if staged:
            reply = reply[1:]
        statuses = reply[0].decode()
        if statuses != ("u" if miss else "f") * len(ids):
            raise SystemExit(f"not all on the fast path: {statuses[:40]!r}")
        applied += len(ids)
    return applied


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    p.add_argument("--bare", action="store_true",
                   help="the script harnesses' redis-server with Redis' defaults, not the embedded server's own "
                        "settings (engine.embedded_redis.SERVER_SETTINGS); before the subcommand")
    p.add_argument("--redis-conf", action="append", default=[], metavar='"NAME VALUE"',
                   help="a setting of the script harnesses' redis-server (receipts, record, claim), after the "
                        "embedded server's own (engine.embedded_redis.SERVER_SETTINGS); repeat; before the subcommand")
    sub = p.add_subparsers(dest="what", required=True)
    rs = sub.add_parser("receipts", help="instructions per receipt in dlr/correlate.lua (fast path)")
    rs.add_argument("--script", type=Path, default=_ROOT / "dlr" / "correlate.lua")
    rs.add_argument("--rounds", type=int, default=5, help="batches of 1,000 receipts")
    rs.add_argument("--miss", action="store_true", help="receipts whose entries are not there (a shard tried first)")
    rs.add_argument("--stage", action="store_true", help="staged, then published (custom privacy hooks)")
    rc = sub.add_parser("record", help="instructions per job in engine/record.lua (single part, receipt, no callback)")
    rc.add_argument("--rounds", type=int, default=5, help="batches of 500 jobs")
    rc.add_argument("--keep-text", action="store_true", help="each job's text sealed into its event ([history] keep_text)")
    sub.add_parser("scan", help="instructions per scan_receipt")
    rd = sub.add_parser("redaction", help="log redaction filter instructions per record without a number")
    rd.add_argument("--tree", type=Path, default=_ROOT, help="checkout to measure (default: this one)")
    rd.add_argument("--python", default=sys.executable, help="its interpreter (its venv's python)")
    sub.add_parser("simulator", help="simulator instructions per message, receipts off and on")
    en = sub.add_parser("engine", help="engine (Python) instructions per job recorded and per receipt (REDIS_URL)")
    en.add_argument("--tree", type=Path, default=_ROOT, help="checkout to measure (default: this one)")
    en.add_argument("--python", default=sys.executable, help="its interpreter (its venv's python)")
    en.add_argument("--hooks", action="append", default=[], metavar="PKG.MODULE:CLASS",
                    help="[privacy] hooks to configure (repeat), e.g. bench.trivial_hook:Trivial")
    en.add_argument("--shards", type=int, default=1,
                    help="[redis] shards (the jobs on shard 0's lane; receipts go there by ShardHints)")
    en.add_argument("--marketing", action="store_true", help="every job kind=marketing")
    en.add_argument("--spread", action="store_true",
                    help="with --shards N: each job on its own shard's lane, recorded and its receipt applied per shard")
    rp = sub.add_parser("receipt-path", help="engine (Python) instructions per receipt, deliver_sm bytes in to"
                        " deliver_sm_resp bytes out (REDIS_URL)")
    rp.add_argument("--tree", type=Path, default=_ROOT, help="checkout to measure (default: this one)")
    rp.add_argument("--python", default=sys.executable, help="its interpreter (its venv's python)")
    rh = sub.add_parser("receipt-hooks", help="engine (Python) instructions per receipt event through a custom hook, alone")
    rh.add_argument("--tree", type=Path, default=_ROOT, help="checkout to measure (default: this one)")
    rh.add_argument("--python", default=sys.executable, help="its interpreter (its venv's python)")
    ar = sub.add_parser("archiver", help="archiver instructions per event: read, fold, PostgreSQL write, ack (REDIS_URL)")
    ar.add_argument("--tree", type=Path, default=_ROOT, help="checkout to measure (default: this one)")
    ar.add_argument("--python", default=sys.executable, help="its interpreter (its venv's python)")
    ar.add_argument("--pattern", choices=("paired", "split"), default="paired",
                    help="receipts in the same batch as their submit (paired) or the next (split)")
    ar.add_argument("--count", type=int, default=5000, help="the archiver's batch_size (XREADGROUP COUNT)")
    ar.add_argument("--pg", default=os.environ.get("SENDGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"),
                    help="server URL without database (a database is created and dropped per run)")
    pa = sub.add_parser("path", help="engine instructions per job over the whole path (sendgate bench, worker 0)")
    pa.add_argument("--tree", type=Path, default=_ROOT, help="checkout to measure (default: this one)")
    pa.add_argument("--python", default=sys.executable, help="its interpreter (its venv's python)")
    pa.add_argument("--small", type=int, default=3000, help="jobs of the shorter run")
    pa.add_argument("--large", type=int, default=13000, help="jobs of the longer run")
    pa.add_argument("--shards", type=int, default=1, help="[redis] shards of the bench's engine (sendgate bench --shards)")
    pa.add_argument("--keep", type=Path, default=None, help="keep the two callgrind files in this directory")
    fu = sub.add_parser("functions", help="per-function difference of two callgrind files (e.g. path --keep's), per job")
    fu.add_argument("small", type=Path)
    fu.add_argument("large", type=Path)
    fu.add_argument("--per", type=float, required=True, help="divide by this (the jobs between the two runs)")
    fu.add_argument("--top", type=int, default=60)
    il = sub.add_parser("idle", help="engine instructions per second that do not scale with jobs (ticks, samples, polls)")
    il.add_argument("--tree", type=Path, default=_ROOT, help="checkout to measure (default: this one)")
    il.add_argument("--python", default=sys.executable, help="its interpreter (its venv's python)")
    il.add_argument("--shards", type=int, default=1, help="[redis] shards of the bench's engine (sendgate bench --shards)")
    il.add_argument("--delay-s", type=float, default=20.0, help="how much later the receipts come in the second run")
    cl = sub.add_parser("claim", help="instructions per new job in engine/claim.lua (bench.marks_cost, steady fill)")
    cl.add_argument("--fresh", action="store_true",
                    help="a new Redis as sendgate bench has it (no earlier generation: layout-10 marks looked for)")
    cl.add_argument("--seed", type=int, default=None,
                    help="the same uuids every run (seeded): compare two scripts by this, not by fresh uuid4s")
    cl.add_argument("--rounds", type=int, default=5, help="batches of 500 claimed")
    cl.add_argument("--script", type=Path, default=None, help="another claim.lua, under this tree's header")
    pc = sub.add_parser("percall", help="fixed instructions per call: record/correlate scripts and the engine's "
                                        "record call and receipt flush, at two batch sizes (REDIS_URL)")
    pc.add_argument("--tree", type=Path, default=_ROOT, help="checkout to measure (default: this one)")
    pc.add_argument("--python", default=sys.executable, help="its interpreter (its venv's python)")
    pc.add_argument("--small-batch", type=int, default=50)
    pc.add_argument("--large-batch", type=int, default=500)
    pc.add_argument("--jobs", type=int, default=2000, help="jobs (receipts) per run, a multiple of both batches")
    sm = sub.add_parser("smpp", help="the engine's SMPP session per message: submit_sm written, submit_sm_resp read")
    sm.add_argument("--tree", type=Path, default=_ROOT, help="checkout to measure (default: this one)")
    sm.add_argument("--python", default=sys.executable, help="its interpreter (its venv's python)")
    sm.add_argument("--engine", action="store_true",
                    help="the whole SMPP side as the engine drives it: build, pool, bind, session, the resp's way up")
    a = p.parse_args(argv)
    # Every program measured here inherits one hash seed: with a random one the same
    # code's count moves by up to ~1.5k instructions per job from run to run (dict and
    # set layouts differ), which hides the levers of a few hundred that get compared.
    # A seed given in the environment is kept; redaction's runs set their own.
    os.environ.setdefault("PYTHONHASHSEED", "0")
    global BARE
    BARE = a.bare
    for item in a.redis_conf:
        name, _, value = item.partition(" ")
        REDIS_CONF.extend((f"--{name}", value))
    if a.what == "receipts":
        what = "per receipt tried without its entry" if a.miss else "per receipt"
        mode = "stage + publish" if a.stage else "apply"
        n = receipts_script_instructions(a.script, a.rounds, miss=a.miss, stage=a.stage)
        print(f"correlate.lua {mode}: {n:,.0f} instructions {what}")
    elif a.what == "record":
        print(f"record.lua: {record_script_instructions(a.rounds, keep_text=a.keep_text):,.0f} instructions per job")
    elif a.what == "engine":
        e = engine_instructions(a.tree, a.python, hooks=a.hooks, shards=a.shards, marketing=a.marketing,
                                spread=a.spread)
        print(f"engine: {e['record']:,.0f} instructions per job recorded, {e['receipt']:,.0f} per receipt"
              f" ({e['build']:,.0f} per job read, decoded and segmented by the harness)")
    elif a.what == "receipt-path":
        per = receipt_path_instructions(a.tree, a.python)
        print(f"receipt path: {per:,.0f} instructions per receipt (deliver_sm read by the bind's session, the sink,"
              " its correlate call, deliver_sm_resp written)")
    elif a.what == "receipt-hooks":
        per = receipt_hooks_instructions(a.tree, a.python)
        print(f"receipt events through a custom hook: {per:,.0f} instructions per event (parsed, made the hooks'"
              " events, hook_edits with Trivial; no I/O)")
    elif a.what == "archiver":
        per = archiver_instructions(a.tree, a.python, pattern=a.pattern, pg=a.pg, count=a.count)
        print(f"archiver ({a.pattern}, COUNT {a.count}): {per:,.0f} instructions per event (read, fold, write, ack)")
    elif a.what == "path":
        per = path_instructions(a.tree, a.python, a.small, a.large, a.shards, a.keep)
        print(f"engine path: {per:,.0f} instructions per job (sendgate bench worker 0, {a.small} vs {a.large} jobs,"
              f" shards {a.shards})")
    elif a.what == "functions":
        rows = function_instructions(a.small, a.large, a.per)
        total = sum(v for v, _ in rows)
        print(f"{total:12,.0f}  total (per job)")
        for v, f in rows[: a.top]:
            print(f"{v:12,.0f}  {100 * v / total:5.1f} %  {f}")
    elif a.what == "idle":
        rate = idle_instructions(a.tree, a.python, a.shards, delay_s=a.delay_s)
        print(f"engine idle: {rate:,.0f} instructions per second of wall time (sendgate bench worker 0 under callgrind,"
              f" shards {a.shards}, receipts {a.delay_s:g} s later)")
    elif a.what == "redaction":
        r = redaction_instructions(a.tree, a.python)
        print(f"redaction: {r['filter']:,.0f} instructions per record without a number (RedactingFilter),"
              f" {r['chain']:,.0f} (the default hook chain's log filter)")
    elif a.what == "claim":
        from bench.marks_cost import claim_instructions, seed_ids

        if a.seed is not None:
            seed_ids(a.seed)
        n = claim_instructions("uuid", 512, 6, 3, fresh=a.fresh, rounds=a.rounds,
                               script_text=a.script.read_text(encoding="utf-8") if a.script else None)
        print(f"claim.lua: {n:,.0f} instructions per new transactional job ({'fresh' if a.fresh else 'steady'})")
    elif a.what == "percall":
        for name, r in percall_instructions(a.tree, a.python, a.small_batch, a.large_batch, a.jobs).items():
            print(f"{name}: {r['small']:,.0f} per message in batches of {a.small_batch}, {r['large']:,.0f} in batches"
                  f" of {a.large_batch}: {r['per_call']:,.0f} instructions per call")
    elif a.what == "smpp":
        per = smpp_instructions(a.tree, a.python, engine=a.engine)
        if a.engine:
            print(f"smpp engine side: {per:,.0f} instructions per message (built, queued, assigned and written in"
                  f" windows of 250; submit_sm_resp read and handled up to the job's outcome)")
        else:
            print(f"smpp session: {per:,.0f} instructions per message (submit_sm written in windows of 250,"
                  f" submit_sm_resp read)")
    elif a.what == "scan":
        print(f"scan_receipt: {python_instructions(_SCAN, 2000, 12000):,.0f} instructions per receipt")
    else:
        off = python_instructions(_SIMULATOR, 4, 24, DLR=False) / 256
        on = python_instructions(_SIMULATOR, 4, 24, DLR=True) / 256
        print(f"simulator per message: {off:,.0f} instructions without receipts, {on:,.0f} with ({on - off:,.0f} per receipt)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
