"""What Prometheus scrapes: the admin server's /metrics over real TCP, read
with the Prometheus text parser and linted by `promtool check metrics`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.admin import AdminServer
from engine.metrics import Metrics
from tests.ops.helpers import promtool
from tests.ops.promql import exported


@pytest.fixture
async def scraped() -> AsyncIterator[str]:
    """/metrics of an admin server wired like `engine.app.Engine` wires it."""
    metrics = Metrics()
    metrics.add_carrier("acme")
    metrics.register_gauge("sendgate_binds_up", "Binds currently bound, per carrier", ["carrier"], lambda: [(["acme"], 2.0)])
    metrics.register_gauge("sendgate_inflight", "Parts queued or in flight, per carrier", ["carrier"], lambda: [(["acme"], 7.0)])
    metrics.submits.labels("acme", "ok").inc(3)
    metrics.submit_latency["acme"].observe_many([0.004, 0.02])

    async def ready() -> tuple[bool, dict[str, Any]]:
        return True, {}

    admin = AdminServer("127.0.0.1:0", metrics.registry, ready, dict)
    await admin.start()
    url = f"http://127.0.0.1:{admin.port}/metrics"
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            body = await resp.text()
    finally:
        await admin.close()
    yield body


async def test_scraped_names_are_the_catalogue_the_checks_use(scraped: str) -> None:
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
        if not s.name.endswith("_created")
    }
    assert set(samples) <= set(exported().labels)
    assert samples["sendgate_binds_up"] == 2.0
    assert samples["sendgate_inflight"] == 7.0
    assert samples["sendgate_submits_total"] == 3.0
    assert samples["sendgate_submit_latency_seconds_count"] == 2.0


async def test_promtool_lints_the_exposition(scraped: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        promtool(), "check", "metrics",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(scraped.encode()), timeout=30)
    assert proc.returncode == 0, out.decode()
