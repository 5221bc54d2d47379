"""The archiver's XACK packing (engine/history/archiver.py, `pack_xack`): the command
hiredis would pack, with the ids in any order (one header per run of one length)."""

from __future__ import annotations

import random

import hiredis

from engine.history.archiver import pack_xack


def _command(packed: bytes) -> list[bytes]:
    reader = hiredis.Reader()
    reader.feed(packed)
    cmd = reader.gets()
    assert cmd is not False and reader.gets() is False  # one whole command, nothing after it
    return list(cmd)


def test_the_ids_of_any_lengths_are_all_acked_once() -> None:
    rng = random.Random(16)
    for _ in range(200):
        ids = [f"{rng.randrange(1, 10 ** rng.randrange(1, 14))}-{rng.randrange(0, 120)}".encode()
               for _ in range(rng.randrange(1, 60))]
        cmd = _command(pack_xack("sg:events", "archiver", ids))
        assert cmd[:3] == [b"XACK", b"sg:events", b"archiver"]
        assert sorted(cmd[3:]) == sorted(ids)


def test_ids_of_one_length_are_packed_as_hiredis_packs_them() -> None:
    ids = [b"1765000000000-%d" % i for i in range(10)]
    assert pack_xack("sg:events", "archiver", ids) == hiredis.pack_command((b"XACK", "sg:events", "archiver", *ids))


def test_ids_that_are_not_bytes_go_through_hiredis() -> None:
    ids = ["1-0", "22-1"]
    cmd = _command(pack_xack("s", "g", ids))
    assert cmd == [b"XACK", b"s", b"g", b"1-0", b"22-1"]
