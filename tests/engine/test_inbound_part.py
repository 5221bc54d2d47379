"""engine/inbound.py: what one received deliver_sm / data_sm says about itself
(no I/O): text per data_coding and the shift tables a UDH names, the
concatenation key (UDH 8/16-bit, SAR), malformed headers, binary payloads,
clients by destination, and the opt-out / opt-in keywords."""

from __future__ import annotations

from connectors.mobile_origin import gsm7_septets, mo_parts
from connectors.pdu import DataSm, DeliverSm
from engine.config import ClientSettings
from engine.inbound import OPT_IN, OPT_OUT, KeywordTable, client_numbers, read_part, sender_hasher
from privacy_hooks import KeyedHasher

HASH = sender_hasher(KeyedHasher(b"k"), b"k")
NUMBERS = {"1234": "shop"}


def _read(pdu: DeliverSm | DataSm) -> tuple[object, bool]:
    return read_part("acme", pdu, 1000, NUMBERS, HASH)


def test_a_single_gsm7_message_to_a_short_code() -> None:
    pdu = DeliverSm(source_addr="+45 1234 5678", destination_addr="1234", short_message=b"".join(gsm7_septets("Hi {you}")))
    part, malformed = read_part("acme", pdu, 1000, NUMBERS, HASH)
    assert not malformed
    assert (part.ref, part.seq, part.total, part.text, part.sender, part.client) == ("", 1, 1, "Hi {you}",
                                                                                      "4512345678", "shop")
    assert part.from_hash == KeyedHasher(b"k")("4512345678") and part.ts == "1000"


def test_the_udh_names_the_national_shift_table() -> None:
    # Turkish (language 1) locking shift: septet 0x07 is "ı", 0x0B "Ğ"
    pdu = DeliverSm(source_addr="90555", destination_addr="9", esm_class=0x40,
                    short_message=b"\x03\x25\x01\x01" + bytes((0x07, 0x0B)))
    part, _ = read_part("acme", pdu, 1, {}, HASH)
    assert part.text == "ıĞ"


def test_concatenation_keys_udh8_udh16_and_sar_apart() -> None:
    text = "y" * 400
    keys = []
    for concat in ("udh8", "udh16", "sar"):
        p = mo_parts(text, concat=concat, ref=7)[1]  # type: ignore[arg-type]
        pdu = DeliverSm(source_addr="4599", destination_addr="1234", esm_class=p.esm_class,
                        short_message=p.short_message, sar_msg_ref_num=p.sar[0] if p.sar else None,
                        sar_total_segments=p.sar[1] if p.sar else None, sar_segment_seqnum=p.sar[2] if p.sar else None)
        part, malformed = read_part("acme", pdu, 1, {}, HASH)
        assert not malformed and (part.seq, part.total) == (2, 3)
        assert part.text == "y" * (152 if concat == "udh16" else 153)
        keys.append(part.ref)
    assert keys == ["8.7.3", "16.7.3", "sar.7.3"]  # a 16-bit reference below 256 is still its own kind


def test_ucs2_in_a_data_sm_message_payload() -> None:
    pdu = DataSm(source_addr="4599", destination_addr="4570000000", data_coding=0x08,
                 message_payload="Привет".encode("utf-16-be"))
    part, malformed = read_part("acme", pdu, 1, {}, HASH)
    assert not malformed and part.text == "Привет"


def test_malformed_and_binary_parts_are_kept_not_dropped() -> None:
    # a UDH whose element runs past the header: published alone, header skipped
    bad = DeliverSm(source_addr="4599", destination_addr="1", esm_class=0x40, short_message=b"\x02\x00\x05AB")
    part, malformed = read_part("acme", bad, 1, {}, HASH)
    assert malformed and part.ref == "" and part.text == "AB"
    odd = DeliverSm(source_addr="4599", destination_addr="1", data_coding=0x08, short_message=b"\x00A\x00")
    part, malformed = read_part("acme", odd, 1, {}, HASH)
    assert malformed and part.text == "A"
    binary = DeliverSm(source_addr="4599", destination_addr="1", data_coding=0x04, short_message=b"\x01\xff")
    part, malformed = read_part("acme", binary, 1, {}, HASH)
    assert not malformed and (part.text, part.data) == ("", "01ff")
    alpha = DeliverSm(source_addr="Service", destination_addr="1", short_message=b"x")
    part, _ = read_part("acme", alpha, 1, {}, HASH)
    assert part.sender == "Service" and part.from_hash.startswith("a") and len(part.from_hash) == 32


def test_keywords_trimmed_and_case_folded_per_client() -> None:
    clients = [ClientSettings(id="dk", numbers=("1234",), opt_out_keywords=("AFMELD",)),
               ClientSettings(id="plain", numbers=("+4570000000",))]
    table = KeywordTable(("STOP", "AVSLUTT"), ("START", "UNSTOP"), clients)
    assert [table.action("", t) for t in ("STOP", " stop ", "Stop\n", "sToP", "avslutt", "stop it", "")] == [
        OPT_OUT, OPT_OUT, OPT_OUT, OPT_OUT, OPT_OUT, "", ""]
    assert table.action("", "unstop") == OPT_IN and table.action("", " Start") == OPT_IN
    assert table.action("dk", "afmeld") == OPT_OUT and table.action("dk", "STOP") == ""  # its own list
    assert table.action("dk", "START") == OPT_IN  # opt-in falls back to the defaults
    assert table.action("plain", "STOP") == OPT_OUT and table.action("unknown", "STOP") == OPT_OUT
    assert table.action("", "STOP " + " " * 500) == ""  # long texts are never keywords
    assert client_numbers(clients) == {"1234": "dk", "4570000000": "plain"}
