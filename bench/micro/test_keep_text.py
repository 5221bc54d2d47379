"""Micro benchmarks of ``[history] keep_text`` (engine/history/text_cipher.py).

What a message costs when the text is kept, per batch of 1,000 jobs:

- engine: sealing each job's text (AES-256-GCM, one nonce draw per batch) and
  base64 for the event field, as `Pipeline._record` does; off, nothing runs;
- archiver: folding first events that carry ``text_enc`` against the same
  events without it (base64 back to bytes, one more field).

``extra_info["us_per_msg"]``: the mean per message.
"""

from __future__ import annotations

from typing import Any

from engine.history import deltas_from_entries
from engine.history.text_cipher import TextCipher, b64, job_aad

N = 1000
CIPHER = TextCipher([bytes(range(32))])
JOBS = [(f"job-{i:08d}", ("Your verification code is 123456. " * 5)[: 70 + (i % 91)]) for i in range(N)]


def _seal_batch() -> list[str]:
    return [b64(b) for b in CIPHER.seal_many([(job_aad(jid), text) for jid, text in JOBS])]


def _first_events(with_text: bool) -> list[tuple[bytes, list[bytes]]]:
    texts = _seal_batch() if with_text else []
    out = []
    for i, (jid, _text) in enumerate(JOBS):
        f = [b"id", jid.encode(), b"ref", b"r", b"event", b"submitted", b"carrier", b"sim", b"parts", b"1",
             b"message_ids", b"m" + str(i).encode(), b"error", b"", b"ts", b"1760000000000",
             b"client", b"c1", b"kind", b"", b"to_hash", b"h" * 43, b"to_mask", b"+45******78",
             b"encoding", b"gsm7", b"retention_until", b"1900000000"]
        if with_text:
            f += [b"text_enc", texts[i].encode()]
        out.append((b"1-%d" % i, f))
    return out


def _per_msg(benchmark: Any) -> None:
    benchmark.extra_info["us_per_msg"] = round(benchmark.stats.stats.mean / N * 1e6, 3)


def test_engine_seals_a_batch_of_texts(benchmark: Any) -> None:
    out = benchmark(_seal_batch)
    assert len(out) == N
    _per_msg(benchmark)


def test_archiver_folds_first_events_with_text(benchmark: Any) -> None:
    entries = _first_events(True)
    deltas = benchmark(deltas_from_entries, entries)
    assert all(d.text_enc for d in deltas)
    _per_msg(benchmark)


def test_archiver_folds_first_events_without_text(benchmark: Any) -> None:
    entries = _first_events(False)
    deltas = benchmark(deltas_from_entries, entries)
    assert not any(d.text_enc for d in deltas)
    _per_msg(benchmark)
