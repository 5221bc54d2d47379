"""Callbacks reach public addresses only (SSRF): the pure rule, the sender, the resolver."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from dlr.address_policy import callback_host_refusal, refused_address
from dlr.webhook import PublicOnlyResolver, WebhookForwarder, callback_refusal
from tests.dlr.test_webhook import EVENT, SECRET, failed_entries


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
        "fe80::1", "fc00::1", "224.0.0.1", "ff02::1", "0.0.0.0", "::", "100.64.0.1", "::ffff:127.0.0.1",
        "240.0.0.1", "not-an-ip",
    ],
)
def test_private_loopback_link_local_multicast_addresses_are_refused(address: str) -> None:
    assert refused_address(address) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:1.1.1.1"])
def test_public_unicast_addresses_pass(address: str) -> None:
    assert refused_address(address) is None


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST.", "api.localhost", "printer.local", "meta.internal", "intranet", "[::1]", "127.0.0.1"]
)
def test_local_names_and_literal_private_ips_are_refused_without_dns(host: str) -> None:
    assert callback_host_refusal(host) is not None


@pytest.mark.parametrize("host", ["hooks.example.com", "93.184.216.34", "[2606:4700:4700::1111]"])
def test_public_names_and_ips_pass_the_pure_check(host: str) -> None:
    assert callback_host_refusal(host) is None


def test_callback_refusal_reads_the_host_of_a_url() -> None:
    assert callback_refusal("http://127.0.0.1:8080/cb?to=%2B4512345678") == "callback host is a loopback address"
    assert callback_refusal("https://hooks.example.com/cb") is None


class _StaticResolver(AbstractResolver):
    """Answers like DNS would for a few names: what a rebinding attacker's server says."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=ip, port=port, family=socket.AF_INET, proto=0, flags=0)
            for ip in self.answers[host]
        ]

    async def close(self) -> None:
        pass


async def test_the_resolver_keeps_only_public_addresses() -> None:
    resolver = PublicOnlyResolver(_StaticResolver({"mixed.test": ["10.0.0.1", "93.184.216.34"], "evil.test": ["127.0.0.1"]}))
    assert [r["host"] for r in await resolver.resolve("mixed.test", 80)] == ["93.184.216.34"]
    with pytest.raises(OSError, match="private addresses"):
        await resolver.resolve("evil.test", 80)


@pytest.fixture
async def receiver() -> Any:
    hits: list[bytes] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/cb", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port, hits
    await runner.cleanup()


async def test_a_callback_to_127_0_0_1_is_refused_and_parked(redis_client: Any, key_prefix: str, receiver: Any) -> None:
    port, hits = receiver
    fwd = WebhookForwarder(SECRET, redis_client, f"{key_prefix}:webhooks:failed")
    fwd.forward(f"http://127.0.0.1:{port}/cb", EVENT)
    await fwd.wait_idle()
    await fwd.close(1.0)
    [entry] = await failed_entries(redis_client, key_prefix)
    assert entry["reason"] == "private_address" and "loopback" in entry["error"]
    assert hits == [] and fwd.stats.delivered == 0 and fwd.stats.failed == 1


async def test_a_name_that_rebinds_to_loopback_is_refused_at_connect(
    redis_client: Any, key_prefix: str, receiver: Any
) -> None:
    """The name passes the check without DNS; at connect it resolves to 127.0.0.1: refused, not retried."""
    port, hits = receiver
    resolver = PublicOnlyResolver(_StaticResolver({"hooks.example.com": ["127.0.0.1"]}))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver))
    fwd = WebhookForwarder(
        SECRET, redis_client, f"{key_prefix}:webhooks:failed", session=session, max_attempts=5, backoff_s=0.01
    )
    try:
        fwd.forward(f"http://hooks.example.com:{port}/cb", EVENT)
        await asyncio.wait_for(fwd.wait_idle(), 10)
        await fwd.close(1.0)
    finally:
        await session.close()
    [entry] = await failed_entries(redis_client, key_prefix)
    assert entry["reason"] == "private_address" and entry["attempts"] == "1"
    assert hits == []


async def test_allow_private_lets_a_callback_reach_127_0_0_1(redis_client: Any, key_prefix: str, receiver: Any) -> None:
    port, hits = receiver
    fwd = WebhookForwarder(SECRET, redis_client, f"{key_prefix}:webhooks:failed", allow_private=True)
    fwd.forward(f"http://127.0.0.1:{port}/cb", EVENT)
    await asyncio.wait_for(fwd.wait_idle(), 10)
    await fwd.close(1.0)
    assert len(hits) == 1 and fwd.stats.delivered == 1
