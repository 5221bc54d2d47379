"""SubmitBuilder builds SubmitSm positionally: the same PDUs as by keyword."""

from __future__ import annotations

import pytest

from connectors.codec import HEADER, encode
from connectors.pdu import SubmitSm
from engine.config import settings_from_mapping
from engine.job import parse_job
from engine.submit import SubmitBuilder, relative_validity
from engine.text.segmenter import segment


def _builder(**carrier: object) -> SubmitBuilder:
    settings = settings_from_mapping({"carriers": [{"name": "c1", "routes": [""], **carrier}]}, env={})
    return SubmitBuilder(settings.carriers[0])


CASES = pytest.mark.parametrize(
    ("carrier", "extra"),
    [
        ({}, {}),
        ({}, {"from": "ACME", "validity": "3600"}),
        ({}, {"from": "12345", "dlr": "0"}),
        ({}, {"from": "+4598765432"}),
        ({"source_addr": "SHOP", "service_type": "CMT"}, {}),
        ({"source_addr_ton": 2, "source_addr_npi": 9}, {"from": "ACME"}),
        ({"registered_delivery": "last", "encoding": {"concat": "sar"}}, {"text": "x" * 400}),
        ({"encoding": {"concat": "udh16"}}, {"text": "é€" * 100}),
        ({"registered_delivery": "last"}, {"text": "x" * 400}),
        ({}, {"text": "é€" * 100, "dlr": "0"}),
        ({"source_addr": "A" * 21}, {}),  # a source the spec refuses: PDUs, whose encoding says so
    ],
)


@CASES
def test_build_gives_the_keyword_built_pdus(carrier: dict[str, object], extra: dict[str, str]) -> None:
    b = _builder(**carrier)
    fields = {"id": "j1", "to": "+4512345678", "text": "hello", **extra}
    job = parse_job({k.encode(): v.encode() for k, v in fields.items()}, 0.0)
    seg = segment(job.text, b.segment_options, job.encoding, 7)
    pdus = b.build(job, seg)
    c = b.carrier
    assert len(pdus) == len(seg.parts)
    for i, (pdu, part) in enumerate(zip(pdus, seg.parts, strict=True)):
        sender = job.sender or c.source_addr
        if not sender:
            ton, npi = 1, 1
        elif sender.isdigit():
            ton, npi = (1, 1) if len(sender) > 8 else (3, 0)
        else:
            ton, npi = 5, 0
        ton = c.source_addr_ton if c.source_addr_ton >= 0 else ton
        npi = c.source_addr_npi if c.source_addr_npi >= 0 else npi
        last_only = c.registered_delivery == "last"
        expected = SubmitSm(
            service_type=c.service_type, source_addr_ton=ton, source_addr_npi=npi, source_addr=sender,
            dest_addr_ton=c.dest_addr_ton, dest_addr_npi=c.dest_addr_npi, destination_addr=job.to,
            esm_class=part.esm_class, validity_period=relative_validity(job.validity) if job.validity else "",
            registered_delivery=(1 if job.dlr else 0) if (not last_only or i == len(pdus) - 1) else 0,
            data_coding=part.data_coding, short_message=part.short_message,
        )
        for tag, value in part.tlvs:  # SAR: the builder names these TLVs
            name = {0x020C: "sar_msg_ref_num", 0x020E: "sar_total_segments", 0x020F: "sar_segment_seqnum"}[tag]
            setattr(expected, name, int.from_bytes(value, "big"))
        assert pdu == expected


@CASES
def test_build_wire_writes_what_build_writes(carrier: dict[str, object], extra: dict[str, str]) -> None:
    """`build_wire` (the pipeline's): each part is `build`'s PDU or the body it encodes
    to; the common job (no `from`, no validity, parts without TLVs) gets bodies only."""
    b = _builder(**carrier)
    fields = {"id": "j1", "to": "+4512345678", "text": "hello", **extra}
    job = parse_job({k.encode(): v.encode() for k, v in fields.items()}, 0.0)
    seg = segment(job.text, b.segment_options, job.encoding, 7)
    pdus, wire = b.build(job, seg), b.build_wire(job, seg)
    assert len(wire) == len(pdus) == len(seg.parts)
    plain = not (job.sender or job.validity or any(part.tlvs for part in seg.parts))
    for seq, (pdu, item) in enumerate(zip(pdus, wire, strict=True), 1):
        if isinstance(item, SubmitSm):
            assert item == pdu
            assert not plain or len(b.carrier.source_addr) > 20
            continue
        assert plain
        pdu.sequence_number = seq
        assert HEADER.pack(16 + len(item), 4, 0, seq) + item == encode(pdu)
