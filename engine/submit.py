"""From a job and its segments to the submit_sm PDUs of one carrier.

The per-carrier constants (service type, address TON/NPI, segment options)
are resolved once in `SubmitBuilder`; `build` then only fills the few
fields that change per message. `build_wire` (the pipeline's) goes further for
the common job: its parts as submit_sm bodies from the carrier's
`connectors.codec.PlainSubmitTemplate`, no PDU object at all.
"""

from __future__ import annotations

from typing import Any

from connectors.codec import PlainSubmitTemplate
from connectors.errors import LocalProtocolError
from connectors.pdu import SubmitSm
from engine.config import CarrierSettings
from engine.job import Job
from engine.text.segmenter import Segmented, SegmentOptions

__all__ = ["SubmitBuilder", "relative_validity"]

# TLV tags the segmenter may hand us (SMPP 3.4 §5.3.2) → SubmitSm field names.
_SAR_MSG_REF_NUM = 0x020C
_SAR_TOTAL_SEGMENTS = 0x020E
_SAR_SEGMENT_SEQNUM = 0x020F
_MESSAGE_PAYLOAD = 0x0424

# SMPP 3.4 §5.2.5 / §5.2.6: type of number and numbering plan.
_TON_INTERNATIONAL, _TON_NETWORK_SPECIFIC, _TON_ALPHANUMERIC = 1, 3, 5
_NPI_UNKNOWN, _NPI_E164 = 0, 1
_REGISTERED_DELIVERY_RECEIPT = 0x01  # SMSC delivery receipt on success or failure, §5.2.17

# `build` constructs SubmitSm positionally (msgspec matches keywords by name, a
# third of the construction's cost): its first fields, in this order.
_SUBMIT_SM_HEAD = (
    "sequence_number", "command_status", "extra_tlvs", "service_type", "source_addr_ton", "source_addr_npi",
    "source_addr", "dest_addr_ton", "dest_addr_npi", "destination_addr", "esm_class", "protocol_id",
    "priority_flag", "schedule_delivery_time", "validity_period", "registered_delivery",
    "replace_if_present_flag", "data_coding", "sm_default_msg_id", "short_message",
)
if SubmitSm.__struct_fields__[: len(_SUBMIT_SM_HEAD)] != _SUBMIT_SM_HEAD:  # pragma: no cover
    raise AssertionError("SubmitSm: _SUBMIT_SM_HEAD out of step with its fields")


def relative_validity(seconds: int) -> str:
    """SMPP 3.4 §7.1.1 relative time ``YYMMDDhhmmss000R`` for a validity in seconds."""
    days, rest = divmod(max(0, seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    years, days = divmod(days, 365)
    months, days = divmod(days, 30)
    return f"{years:02d}{months:02d}{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


class SubmitBuilder:
    """Builds submit_sm PDUs for one carrier."""

    __slots__ = ("_default_source", "_plain", "carrier", "last_only", "segment_options")

    def __init__(self, carrier: CarrierSettings) -> None:
        self.carrier = carrier
        enc = carrier.encoding
        self.segment_options = SegmentOptions(
            concat=enc.concat,
            packed=enc.packed,
            gsm_data_coding=enc.gsm_data_coding,
            shift_tables=tuple(enc.shift_tables),
            smart_replace=enc.smart_replace,
            max_parts=enc.max_parts,
        )
        self.last_only = carrier.registered_delivery == "last"
        self._default_source = self._source_of("")  # a job without `from` (most): resolved once
        sender, ton, npi = self._default_source
        try:  # build_wire's bodies for a job without `from` or validity
            self._plain: PlainSubmitTemplate | None = PlainSubmitTemplate(
                carrier.service_type, ton, npi, sender, carrier.dest_addr_ton, carrier.dest_addr_npi
            )
        except LocalProtocolError:  # a field the spec refuses: `build`'s PDUs, whose encoding says so
            self._plain = None

    def receipts_expected(self, job: Job, parts: int) -> int:
        if not job.dlr:
            return 0
        return 1 if self.last_only else parts

    def _source(self, job: Job) -> tuple[str, int, int]:
        return self._source_of(job.sender) if job.sender else self._default_source

    def _source_of(self, sender: str) -> tuple[str, int, int]:
        c = self.carrier
        sender = sender or c.source_addr
        if not sender:
            ton, npi = _TON_INTERNATIONAL, _NPI_E164
        elif sender.isdigit():
            ton, npi = (_TON_INTERNATIONAL, _NPI_E164) if len(sender) > 8 else (_TON_NETWORK_SPECIFIC, _NPI_UNKNOWN)
        else:
            ton, npi = _TON_ALPHANUMERIC, _NPI_UNKNOWN
        if c.source_addr_ton >= 0:
            ton = c.source_addr_ton
        if c.source_addr_npi >= 0:
            npi = c.source_addr_npi
        return sender, ton, npi

    def build(self, job: Job, seg: Segmented) -> list[SubmitSm]:
        c = self.carrier
        sender, ton, npi = self._source(job)
        validity = relative_validity(job.validity) if job.validity else ""
        n = len(seg.parts)
        receipt = _REGISTERED_DELIVERY_RECEIPT if job.dlr else 0
        pdus: list[SubmitSm] = []
        for i, part in enumerate(seg.parts):
            # positional, in _SUBMIT_SM_HEAD's order
            pdu = SubmitSm(
                0, 0, (), c.service_type, ton, npi, sender, c.dest_addr_ton, c.dest_addr_npi, job.to,
                part.esm_class, 0, 0, "", validity, receipt if (not self.last_only or i == n - 1) else 0,
                0, part.data_coding, 0, part.short_message,
            )
            if part.tlvs:
                extra: list[tuple[int, bytes]] = []
                for tag, value in part.tlvs:
                    if tag == _SAR_MSG_REF_NUM:
                        pdu.sar_msg_ref_num = int.from_bytes(value, "big")
                    elif tag == _SAR_TOTAL_SEGMENTS:
                        pdu.sar_total_segments = int.from_bytes(value, "big")
                    elif tag == _SAR_SEGMENT_SEQNUM:
                        pdu.sar_segment_seqnum = int.from_bytes(value, "big")
                    elif tag == _MESSAGE_PAYLOAD:
                        pdu.message_payload = value
                    else:
                        extra.append((tag, value))
                if extra:
                    pdu.extra_tlvs = tuple(extra)
            pdus.append(pdu)
        return pdus

    def build_wire(self, job: Job, seg: Segmented) -> list[Any]:  # SubmitSm | bytes each
        """`build`, for what the pool writes: a job without `from` or validity
        whose parts have no TLVs gets its parts as submit_sm bodies (``bytes``,
        the carrier's `PlainSubmitTemplate`: the octets `build`'s PDUs encode
        to after the header; the session numbers them); any other job, or a
        part the template declines, gets `build`'s PDUs."""
        plain = self._plain
        if plain is None or job.sender or job.validity:
            return self.build(job, seg)
        parts = seg.parts
        receipt = _REGISTERED_DELIVERY_RECEIPT if job.dlr else 0
        if len(parts) == 1:
            part = parts[0]
            if not part.tlvs:
                body = plain.body(job.to, part.esm_class, receipt, part.data_coding, part.short_message)
                if body is not None:
                    return [body]
            return self.build(job, seg)
        bodies: list[Any] = []
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if part.tlvs:
                return self.build(job, seg)
            body = plain.body(
                job.to, part.esm_class, receipt if (not self.last_only or i == last) else 0, part.data_coding,
                part.short_message,
            )
            if body is None:
                return self.build(job, seg)
            bodies.append(body)
        return bodies
