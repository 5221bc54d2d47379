"""Receipt path micro benchmarks: parse, id normalisation, correlation per receipt.

Target: ``parse_receipt`` ≤ 5 µs for a typical body with two TLVs.
Run: ``pytest bench/micro/test_receipt.py --benchmark-only``. The store benchmark
uses ``REDIS_URL`` or an embedded Redis.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from dlr.ids import normalize_id
from dlr.receipt_parse import parse_receipt
from dlr.store import ReceiptRecord, ReceiptStore, put_correlation

BODY = (
    b"id:1234567890 sub:001 dlvrd:001 submit date:2311011200 done date:2311011201 "
    b"stat:DELIVRD err:000 text:Hello there, this is"
)
NET_ERROR = b"\x03\x00\x16"


def test_parse_text_body(benchmark: Any) -> None:
    r = benchmark(parse_receipt, 0x04, BODY)
    assert r.event == "delivered"


def test_parse_body_and_two_tlvs(benchmark: Any) -> None:
    r = benchmark(parse_receipt, 0x04, BODY, "1234567890", 2)
    assert r.message_id == "1234567890"


def test_parse_body_and_three_tlvs(benchmark: Any) -> None:
    r = benchmark(parse_receipt, 0x04, BODY, "1234567890", 5, NET_ERROR)
    assert r.error == "net:03:0022"


def test_parse_aiosmpplib_for_comparison(benchmark: Any) -> None:
    protocol = pytest.importorskip("aiosmpplib.protocol")
    pdu = protocol.DeliverSm(sequence_num=1, short_message=BODY.decode(), esm_class=4)

    def parse() -> Any:
        pdu._parsed_receipt = None
        return pdu.parse_receipt()

    assert benchmark(parse)["stat"] == "DELIVRD"


def test_normalize_id_as_is(benchmark: Any) -> None:
    assert benchmark(normalize_id, "00A1B2C3D4", "as-is", side="receipt") == "a1b2c3d4"


def test_normalize_id_hex_to_dec(benchmark: Any) -> None:
    assert benchmark(normalize_id, "A1B2C3D4", "hex-to-dec", side="submit") == "2712847316"


BATCH = 500


@pytest.mark.parametrize("form", ["general", "fast"])
def test_store_apply_batch_of_500_final_receipts(benchmark: Any, redis_url: str, form: str) -> None:
    """One ``apply`` of 500 single-part final receipts (divide by 500 for per receipt).

    ``general``: entries ``<part>:<submitted>:<job>`` (jobs with a callback, multipart);
    ``fast``: the entry a single-part job without callback gets (see dlr/store.py).
    """
    import redis.asyncio as aioredis

    loop = asyncio.new_event_loop()
    client = aioredis.Redis.from_url(redis_url)
    prefix = f"sgbench-{os.getpid()}"
    store = ReceiptStore(client, prefix, stream_maxlen=10_000)
    records = [ReceiptRecord(f"m{i}", "delivered", True, "", 1) for i in range(BATCH)]

    async def seed() -> None:
        pipe = client.pipeline(transaction=False)
        for i in range(BATCH):
            pipe.hset(
                store.keys.job(f"j{i}"),
                mapping={"parts": 1, "done": 0, "ref": "", "carrier": "c", "state": "submitted"},
            )
            pipe.hdel(store.keys.job(f"j{i}"), "s:1", "e:1")
        await pipe.execute()
        entries = {f"m{i}": f"=1\x1fm{i}\x1f\x1fj{i}" if form == "fast" else f"1:1:j{i}" for i in range(BATCH)}
        await put_correlation(client, prefix, "c", entries, 1, int(time.time() * 1000) + 600_000)

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        loop.run_until_complete(seed())
        return (), {}

    def run() -> Any:
        return loop.run_until_complete(store.apply("c", records))

    try:
        result = benchmark.pedantic(run, setup=setup, rounds=20)
        assert result.applied == BATCH and len(result.finals) == BATCH
    finally:

        async def cleanup() -> None:
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()

        loop.run_until_complete(cleanup())
        loop.close()


# -- a receipt from the wire: the engine's two paths, per receipt -----------------

def _deliver_sm_body(message_id: bytes) -> bytes:
    """deliver_sm body in the common receipt layout (what the simulator sends)."""
    from connectors.codec import encode
    from connectors.pdu import DeliverSm

    pdu = DeliverSm(
        source_addr="447700900123", destination_addr="SENDGATE", esm_class=0x04,
        short_message=BODY.replace(b"1234567890", message_id),
        receipted_message_id=message_id.decode(), message_state=2,
    )
    return encode(pdu)[16:]


def test_receipt_from_body_general_path(benchmark: Any) -> None:
    """decode into a DeliverSm, receipt_outcome, normalize_receipt_id: what the
    engine does with a deliver_sm its session does not claim."""
    from connectors.codec import decode_body
    from dlr.ids import normalize_receipt_id
    from dlr.receipt_parse import receipt_outcome

    body = _deliver_sm_body(b"00A1B2C3D4")

    def general() -> tuple[str, str, bool, str]:
        pdu: Any = decode_body(0x00000005, 0, 1, body)
        mid, event, final, error = receipt_outcome(
            pdu.esm_class, pdu.short_message, pdu.receipted_message_id, pdu.message_state, pdu.network_error_code
        )
        return normalize_receipt_id(mid), event, final, error

    assert benchmark(general) == ("a1b2c3d4", "delivered", True, "")


def test_receipt_from_body_claimed(benchmark: Any) -> None:
    """scan_receipt: the same answer, read by the session's claim hook."""
    from dlr.receipt_scan import scan_receipt

    body = _deliver_sm_body(b"00A1B2C3D4")
    assert benchmark(scan_receipt, body) == ("a1b2c3d4", "delivered", True, "")
