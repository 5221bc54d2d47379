"""The status page at / in a real browser (headless Chromium), fed by a running engine."""

from __future__ import annotations

import pytest

from connectors.simulator import SimulatorConfig
from tests.engine.harness import push
from tests.ops.browser import chromium, open_page
from tests.ops.live import live_engine

pytestmark = pytest.mark.slow

BINDS = "document.querySelectorAll('[data-carrier=\"sim\"] [data-bind]')"


async def test_page_shows_binds_bound_counts_moving_then_binds_down(redis_url: str, key_prefix: str) -> None:
    chromium()  # skip early, with the reason, when there is no browser
    sim_config = SimulatorConfig(dlr=True, latency_ms=5)
    # A TPS limit keeps the traffic going for seconds: the page (every 2 s) sees it.
    carrier = {"reconnect_min_s": 0.2, "reconnect_max_s": 0.5, "tps": 500}
    async with live_engine(redis_url, key_prefix, sim_config, carrier=carrier) as live, open_page(live.base + "/") as page:
        # The page's script ran and drew what /status says: both binds bound.
        states = await page.wait_for(
            f"(() => {{ const b = [...{BINDS}].map(e => e.dataset.state); return b.length === 2 ? b : null; }})()",
            "the carrier's two binds",
        )
        assert states == ["bound", "bound"]
        assert await page.evaluate("document.getElementById('conn').textContent") == "live"
        assert await page.evaluate("document.getElementById('version').textContent") == "0.1.0"
        first = int(await page.evaluate("document.getElementById('updated').dataset.refreshes"))

        # Traffic: the rate shown rises above zero and a dead letter appears, counted.
        jobs = [{"id": f"p{i}", "to": "+4520112233", "text": f"hello {i}"} for i in range(1500)]
        jobs.append({"id": "bad", "to": "nope", "text": "x"})
        await push(live.redis, key_prefix, jobs)
        rate = await page.wait_for(
            "(() => { const r = document.querySelector('[data-carrier=\"sim\"] [data-field=rate]');"
            " return r && r.textContent !== '0/s' && r.textContent !== '0.0/s' ? r.textContent : null; })()",
            "a non-zero rate",
        )
        assert float(rate.removesuffix("/s")) > 0
        summary = await page.evaluate("document.querySelector('[data-carrier=\"sim\"] .summary').textContent")
        assert "of 500.0/s" in summary or "of 500/s" in summary
        dead = await page.wait_for(
            "(() => { const r = document.querySelector('[data-code=\"bad_number\"]');"
            " const c = r ? [...r.cells].map(c => c.textContent) : null; return c && c[1] !== '0' ? c : null; })()",
            "the bad_number dead letter in the recent ones",
        )
        assert dead == ["bad_number", "1", "1"]
        assert int(await page.evaluate("document.getElementById('updated').dataset.refreshes")) > first
        text = await page.evaluate("document.body.innerText")
        assert "20112233" not in text  # never a number

        # The carrier goes away: the page shows both binds down (and why).
        await live.sim.close()
        states = await page.wait_for(
            f"(() => {{ const b = [...{BINDS}].map(e => e.dataset.state);"
            " return b.length === 2 && b.every(s => s === 'down') ? b : null; })()",
            "both binds down",
        )
        assert states == ["down", "down"]
        assert await page.evaluate(
            "document.querySelector('[data-carrier=\"sim\"] [data-field=binds-up]').textContent"
        ) == "0/2 binds up"
