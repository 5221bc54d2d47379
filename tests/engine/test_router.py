from __future__ import annotations

import pytest

from engine.router import Router, RoutingError


def test_longest_prefix_wins_and_default_route() -> None:
    r = Router([("dk", ["45"]), ("dk-mobile", ["4520"]), ("world", [""])])
    assert r.route("4520123456") == "dk-mobile"
    assert r.route("4530123456") == "dk"
    assert r.route("4930123456") == "world"


def test_forced_carrier_and_unknown() -> None:
    r = Router([("dk", ["45"])], {"dk": "backup"})
    assert r.route("4930123456", forced="dk") == "dk"
    with pytest.raises(RoutingError):
        r.route("4930123456")
    with pytest.raises(RoutingError):
        r.route("4530123456", forced="nope")
    assert r.fallback("dk") == "backup" and r.fallback("x") == ""


async def test_loop_is_uvloop_unless_asked_otherwise() -> None:
    import asyncio
    import os

    loop = asyncio.get_running_loop()
    want = os.environ.get("SENDGATE_TEST_LOOP", "uvloop")
    assert ("uvloop" in type(loop).__module__) == (want != "asyncio")
