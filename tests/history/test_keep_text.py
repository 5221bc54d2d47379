"""``[history] keep_text``: message text in the history store, sealed with AES-256-GCM.

Real stores (SQLite and the private PostgreSQL of the history tests), real Redis,
the real engine over TCP to the SMPP simulator: off, no row has a ``text_enc``;
on, every row's bytes hold no text, open back to it with the key, and do not
open with another key, on another row, or altered. No log line and no event
holds the text."""

from __future__ import annotations

import base64
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from connectors.simulator import SimulatorConfig, start_simulator
from engine.app import Engine
from engine.config import ConfigError, load_settings, settings_from_mapping
from engine.history import HistoryStore, deltas_from_entries, open_store
from engine.history.cli import history_main
from engine.history.inbound import inbound_table, records_from_entries
from engine.history.text_cipher import (
    TextCipher,
    TextKeyError,
    TextOpenError,
    b64,
    inbound_aad,
    job_aad,
    parse_keys,
)
from engine.history.texts import inbound_text_blobs, job_text_blobs
from engine.keys import Keys
from engine.subject_access import export_main
from tests.engine.harness import delete_prefix, push, wait_events
from tests.history.test_archiver import until

KEY = bytes(range(32))
KEY_B64 = base64.b64encode(KEY).decode()
OTHER_KEY = bytes(range(1, 33))


def cipher(*keys: bytes) -> TextCipher:
    return TextCipher(list(keys) or [KEY])


# ------------------------------------------------------------------- cipher
def test_keys_parse_as_hex_or_base64_and_short_ones_are_refused() -> None:
    assert parse_keys(KEY.hex()) == [KEY]
    assert parse_keys(KEY_B64 + "\n" + OTHER_KEY.hex() + "\n") == [KEY, OTHER_KEY]
    for bad in ("", "c2hvcnQ=", "zz" * 32, KEY.hex()[:-2]):
        with pytest.raises(TextKeyError) as info:
            parse_keys(bad)
        assert KEY.hex()[:10] not in str(info.value)


def test_sealed_text_opens_only_with_its_key_on_its_row_unaltered() -> None:
    c = cipher()
    text = "Your code is 424242 – ünïcødé ✓"
    blob = c.seal(job_aad("job-1"), text)
    assert text.encode() not in blob and b"424242" not in blob
    assert blob[0] == 1 and len(blob) == 1 + 4 + 12 + len(text.encode()) + 16
    assert c.open(job_aad("job-1"), blob) == text
    assert c.seal(job_aad("job-1"), text) != blob  # a fresh nonce each time
    with pytest.raises(TextOpenError, match="key id"):
        cipher(OTHER_KEY).open(job_aad("job-1"), blob)  # a wrong key: said clearly
    with pytest.raises(TextOpenError, match=r"altered|another row"):
        c.open(job_aad("job-2"), blob)  # moved onto another row
    for i in (1, 5, 17, len(blob) - 1):  # key id, nonce, ciphertext, tag
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(TextOpenError):
            c.open(job_aad("job-1"), bytes(tampered))
    with pytest.raises(TextOpenError, match="version"):
        c.open(job_aad("job-1"), b"\x02" + blob[1:])
    with pytest.raises(TextOpenError, match="short"):
        c.open(job_aad("job-1"), blob[:20])
    # rotation: the new key first seals, the old one still opens old rows
    rotated = cipher(OTHER_KEY, KEY)
    assert rotated.open(job_aad("job-1"), blob) == text
    assert rotated.seal(job_aad("j"), "x")[1:5] != blob[1:5]
    assert "KEY" not in repr(c) and KEY.hex() not in repr(c)


def test_a_batch_draws_its_nonces_once_and_each_is_distinct() -> None:
    c = cipher()
    blobs = c.seal_many([(job_aad(f"j{i}"), "same text") for i in range(1000)])
    assert len({b[5:17] for b in blobs}) == 1000
    assert [c.open(job_aad(f"j{i}"), b) for i, b in enumerate(blobs)] == ["same text"] * 1000


# ------------------------------------------------------------------- config
def test_keep_text_config_key_file_env_and_secrecy(tmp_path: Path) -> None:
    key_file = tmp_path / "text.key"
    key_file.write_text(KEY_B64 + "\n")
    conf = tmp_path / "c.toml"
    conf.write_text(f'[history]\nkeep_text = true\ntext_key_file = "{key_file}"\n')
    s = load_settings(conf, env={})
    assert parse_keys(s.history.text_key) == [KEY]
    assert KEY_B64 not in repr(s) and KEY_B64 not in str(s.history) and "text_key='***'" in repr(s.history)
    s = settings_from_mapping({"history": {"keep_text": True}}, env={"SENDGATE_HISTORY_TEXT_KEY": KEY.hex()})
    assert parse_keys(s.history.text_key) == [KEY]
    short = tmp_path / "short.key"
    short.write_text(base64.b64encode(os.urandom(16)).decode())
    conf.write_text(f'[history]\nkeep_text = true\ntext_key_file = "{short}"\n')
    with pytest.raises(ConfigError, match=r"^history\.text_key_file: key 1: 16 bytes"):
        load_settings(conf, env={})
    conf.write_text(f'[history]\nkeep_text = true\ntext_key_file = "{tmp_path / "none.key"}"\n')
    with pytest.raises(ConfigError, match=r"^history\.text_key_file: cannot read"):
        load_settings(conf, env={})


# -------------------------------------------------------------------- store
def first_event(job_id: str, *, text_enc: str | None = None, ts: int = 1_760_000_000_000) -> list[bytes]:
    """A job's first event as record.lua writes it (the raw flat list the archiver reads)."""
    f = [b"id", job_id.encode(), b"ref", b"r", b"event", b"submitted", b"carrier", b"sim", b"parts", b"1",
         b"message_ids", b"m-" + job_id.encode(), b"error", b"", b"ts", str(ts).encode(),
         b"client", b"c1", b"kind", b"", b"to_hash", b"h-" + job_id.encode(), b"to_mask", b"+45******01",
         b"encoding", b"gsm7", b"retention_until", b"1900000000"]
    if text_enc is not None:
        f += [b"text_enc", text_enc.encode()]
    return f


async def raw_text_enc(store: HistoryStore, table: str = "messages") -> list[Any]:
    """Every row's ``text_enc`` as the database holds it."""
    key = "job_id" if table == "messages" else "entry_id"
    if store.dialect == "postgres":
        pool = await store._get_pool()  # type: ignore[attr-defined]
        return [(r[0], r[1]) for r in await pool.fetch(f"SELECT {key}, text_enc FROM {table}")]
    rows: list[Any] = await store._call(  # type: ignore[attr-defined]
        lambda conn: conn.execute(f"SELECT {key}, text_enc FROM {table}").fetchall())
    return rows


async def test_store_keeps_sealed_text_on_the_first_write_and_erasure_removes_it(store: HistoryStore) -> None:
    c = cipher()
    texts = {f"k{i}": f"secret text number {i}" for i in range(5)}
    blobs = {jid: c.seal(job_aad(jid), t) for jid, t in texts.items()}
    entries = [("1-1", first_event(jid, text_enc=b64(b))) for jid, b in blobs.items()]
    entries.append(("1-2", first_event("plain")))  # a job sealed nothing (keep_text was off)
    deltas = deltas_from_entries(entries)
    assert {d.job_id: d.text_enc for d in deltas} == {**blobs, "plain": None}
    await store.write(deltas, 1)
    # a receipt, a replay with other bytes (a repeated record call): the first stays
    again = c.seal(job_aad("k0"), texts["k0"])
    receipt = [b"id", b"k0", b"ref", b"", b"event", b"delivered", b"carrier", b"", b"parts", b"0",
               b"message_ids", b"", b"error", b"", b"ts", b"1760000001000"]
    await store.write(deltas_from_entries([("2-1", receipt), ("2-2", first_event("k0", text_enc=b64(again)))]), 2)
    stored = dict(await raw_text_enc(store))
    assert stored["plain"] is None
    for jid, text in texts.items():
        raw = bytes(stored[jid])
        assert raw == blobs[jid] and text.encode() not in raw
        assert c.open(job_aad(jid), raw) == text
    assert await job_text_blobs(store, list(texts)) == blobs
    # erasure by policy hides the row: the text goes with it, and a replay does not bring it back
    assert await store.hide(to_hash="h-k1", now_ms=3, retention_until=1) == 1
    await store.write(deltas_from_entries([("3-1", first_event("k1", text_enc=b64(blobs["k1"])))]), 3)
    assert dict(await raw_text_enc(store))["k1"] is None
    assert await store.erase(to_hash="h-k2") == 1
    assert "k2" not in dict(await raw_text_enc(store))


async def test_inbound_rows_keep_sealed_text_only_with_a_cipher(store: HistoryStore) -> None:
    c = cipher()
    entries = [(f"17000000000{i:02d}-0", {b"from": b"4520000001", b"to": b"1234", b"text": f"inbound words {i}".encode(),
                                          b"client": b"c1", b"carrier": b"sim", b"ts": b"1700000000000"})
               for i in range(4)]
    table = inbound_table(store)
    await table.write(records_from_entries([("P:inbound", entries[:2])], 1))
    await table.write(records_from_entries([("P:inbound", entries[2:])], 1, cipher=c))
    stored = dict(await raw_text_enc(store, "inbound"))
    assert stored[entries[0][0]] is None and stored[entries[1][0]] is None
    for eid, fields in entries[2:]:
        raw = bytes(stored[eid])
        assert fields[b"text"] not in raw
        assert c.open(inbound_aad(eid), raw) == fields[b"text"].decode()
    blobs = await inbound_text_blobs(store, [("P:inbound", eid) for eid, _ in entries])
    assert set(blobs) == {("P:inbound", eid) for eid, _ in entries[2:]}
    assert await table.hide(client="c1", now_ms=5, retention_until=1) == 4
    assert all(v is None for v in dict(await raw_text_enc(store, "inbound")).values())


# ------------------------------------------------------------------- engine
@pytest.mark.slow
@pytest.mark.parametrize("keep_text", [False, True], ids=["off", "on"])
async def test_an_engine_run_keeps_every_jobs_text_sealed_and_no_log_line_holds_it(
    redis_url: str, key_prefix: str, history_url: str, keep_text: bool, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = await start_simulator(SimulatorConfig(dlr=True))
    history: dict[str, Any] = {"url": history_url, "batch_size": 250, "block_ms": 20}
    if keep_text:
        history |= {"keep_text": True, "text_key": KEY_B64}
    settings = settings_from_mapping({
        "redis": {"url": redis_url, "prefix": key_prefix},
        "engine": {"batch_size": 100, "block_ms": 20},
        "admin": {"listen": ""},
        "history": history,
        "carriers": [{"name": "sim", "port": sim.port, "system_id": "t", "password": "pw", "routes": [""], "window": 32}],
    }, env={})
    engine = Engine(settings, redis_url)  # the archiver as configured by default: a child with PostgreSQL
    redis = Redis.from_url(redis_url)
    run = uuid.uuid4().hex[:8]
    marker = f"zq{run}"  # in every text, in nothing else
    jobs = [{"id": f"{run}-{i}", "to": f"+4501{i:06d}", "text": f"{marker} confidential {i} ✓" * (1 + i % 3),
             "ref": f"ref-{i % 5}"} for i in range(300)]
    await engine.start()
    reader = open_store(history_url)
    try:
        await push(redis, key_prefix, jobs)
        await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        await reader.migrate()

        async def archived() -> bool:  # every job's row final in the store
            rows = [r for k in range(5) for r in await reader.find(ref=f"ref-{k}", limit=1000)]
            return sum(r.final_state == "delivered" for r in rows if r.job_id.startswith(run)) == len(jobs)

        await until(archived, timeout=60, what="every job archived")
        stream = await redis.xrange(Keys(key_prefix).events)
        with_text = [f for _, f in stream if b"text_enc" in f]
        assert len(with_text) == (len(jobs) if keep_text else 0)  # the first event of each job, only when on
        assert not any(marker.encode() in v for _, f in stream for v in f.values())
        if keep_text:  # in the stream only base64 of the sealed bytes
            assert all(marker.encode() not in base64.b64decode(f[b"text_enc"]) for f in with_text)
    finally:
        await reader.close()
        await engine.close()
        await sim.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()
    assert any(r.name.startswith("sendgate") for r in caplog.records)  # the engine's lines were seen
    assert not [r.getMessage() for r in caplog.records if marker in r.getMessage()]
    out, err = capfd.readouterr()  # this process's and the archiver child's output, at the descriptors
    assert marker not in out and marker not in err
    store = open_store(history_url)
    try:
        stored = dict(await raw_text_enc(store))
        assert set(stored) >= {j["id"] for j in jobs}
        if not keep_text:
            assert all(v is None for v in stored.values())  # off: no text_enc anywhere
            return
        c = cipher()
        for job in jobs:
            raw = bytes(stored[job["id"]])
            assert marker.encode() not in raw
            assert c.open(job_aad(job["id"]), raw) == job["text"]
        with pytest.raises(TextOpenError, match="key id"):
            cipher(OTHER_KEY).open(job_aad(jobs[0]["id"]), bytes(stored[jobs[0]["id"]]))
    finally:
        await store.close()


# ----------------------------------------------------------------- readers
async def test_history_show_text_prints_it_and_audits_the_access_without_it(
    redis_url: str, key_prefix: str, history_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_from_mapping({
        "redis": {"url": redis_url, "prefix": key_prefix},
        "history": {"url": history_url, "keep_text": True, "text_key": KEY.hex()},
        "privacy": {"hash_secret": "s"},
    }, env={})
    store = open_store(history_url)
    await store.migrate()
    text = "the words 8675309 of job t1"
    blob = cipher().seal(job_aad("t1"), text)
    from privacy_hooks.masking import keyed_hash

    to_hash = keyed_hash("s", "+4520000009")
    f = first_event("t1", text_enc=b64(blob))
    f[f.index(b"to_hash") + 1] = to_hash.encode()
    await store.write(deltas_from_entries([("1-1", f), ("1-2", first_event("t2"))]), 1)
    await store.close()
    redis = Redis.from_url(redis_url)
    try:
        assert await history_main(settings, job_id="t1") == 0
        assert text not in capsys.readouterr().out  # not without --show-text
        assert await redis.xlen(Keys(key_prefix).audit) == 0
        assert await history_main(settings, job_id="t1", show_text=True) == 0
        assert f"text: {orjson.dumps(text).decode()}" in capsys.readouterr().out
        assert await history_main(settings, job_id="t2", show_text=True, as_json=True) == 0
        assert orjson.loads(capsys.readouterr().out)[0]["text"] is None  # kept no text
        audit = await redis.xrange(Keys(key_prefix).audit)
        assert len(audit) == 1  # t2 had no text: nothing opened, nothing to audit
        fields = {k.decode(): v.decode() for k, v in audit[0][1].items()}
        assert fields["action"] == "history_text" and fields["jobs"] == "t1" and fields["n_texts"] == "1"
        assert "8675309" not in str(fields) and text not in str(fields)
        # a wrong key: a clear error, no text
        wrong = settings_from_mapping({
            "redis": {"url": redis_url, "prefix": key_prefix},
            "history": {"url": history_url, "keep_text": True, "text_key": OTHER_KEY.hex()},
        }, env={})
        assert await history_main(wrong, job_id="t1", show_text=True) == 3
        out = capsys.readouterr()
        assert text not in out.out and "key id" in out.err
        # export: the subject's own rows carry their text
        lines: list[bytes] = []
        assert await export_main(settings, to="+4520000009", client=None, write=lines.append) == 0
        rows = [orjson.loads(x) for x in b"".join(lines).splitlines() if b'"history_row"' in x]
        assert [(r["row"]["job_id"], r["text"]) for r in rows] == [("t1", text)]
    finally:
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


def test_keep_text_without_the_package_is_a_clear_start_error(tmp_path: Path) -> None:
    """Run in a child whose import of ``cryptography`` fails."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from engine.config import settings_from_mapping, ConfigError\n"
        f"try:\n settings_from_mapping({{'history': {{'keep_text': True, 'text_key': '{KEY.hex()}'}}}}, env={{}})\n"
        "except ConfigError as e:\n print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2], check=True)
    assert out.stdout.startswith("history.keep_text: needs the 'cryptography' package"), out.stdout + out.stderr




async def test_the_inbound_archiver_of_the_settings_seals_inbound_text(
    redis_url: str, key_prefix: str, history_url: str,
) -> None:
    from engine.history.cli import inbound_archiver_for

    settings = settings_from_mapping({
        "redis": {"url": redis_url, "prefix": key_prefix},
        "history": {"url": history_url, "keep_text": True, "text_key": KEY_B64},
    }, env={})
    redis = Redis.from_url(redis_url)
    store = open_store(history_url)
    try:
        stream = Keys(key_prefix).inbound
        ids = [(await redis.xadd(stream, {"from": "4520000001", "to": "1234", "text": f"reply STOP {i}", "client": "c1",
                                          "carrier": "sim", "ts": "1700000000000"})).decode() for i in range(3)]
        archiver = inbound_archiver_for(settings, redis, store)
        await archiver.ensure_groups()
        await store.migrate()
        assert await archiver.drain() == 3
        stored = dict(await raw_text_enc(store, "inbound"))
        for i, eid in enumerate(ids):
            assert b"reply STOP" not in bytes(stored[eid])
            assert cipher().open(inbound_aad(eid), bytes(stored[eid])) == f"reply STOP {i}"
    finally:
        await store.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


def test_history_command_takes_show_text() -> None:
    from engine.cli import build_parser

    args = build_parser().parse_args(["history", "--id", "j1", "--show-text"])
    assert (args.id, args.show_text) == ("j1", True)
    assert build_parser().parse_args(["history", "--id", "j1"]).show_text is False
