"""BindPool + SmppBind over real TCP against the simulator and the misbehaving zoo."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connectors.codec import PlainSubmitTemplate
from connectors.config import BindConfig
from connectors.pdu import SubmitSm
from connectors.pool import BindPool
from connectors.simulator import Simulator, SimulatorConfig, start_simulator
from connectors.status import ESME_RINVBNDSTS, ESME_RINVPASWD, ESME_RSYSERR
from tests.connectors.helpers import FAKE_DESTINATION, FAKE_SOURCE, RecordingHandler
from tests.connectors.misbehaving import CuttingProxy, MisbehavingSmsc

FAST = {
    "reconnect_min_s": 0.01,
    "reconnect_max_s": 0.05,
    "bind_timeout_s": 2.0,
    "sweep_interval_s": 0.05,
}


def config(port: int, **kwargs: Any) -> BindConfig:
    values: dict[str, Any] = {"name": "acme", "port": port, "system_id": "acme", "password": "pw"}
    values.update(FAST)
    values.update(kwargs)
    return BindConfig(**values)


def sms(dlr: bool = True) -> SubmitSm:
    return SubmitSm(
        source_addr=FAKE_SOURCE,
        destination_addr=FAKE_DESTINATION,
        short_message=b"pool test message",
        registered_delivery=1 if dlr else 0,
    )


def assert_each_token_once(handler: RecordingHandler, n: int) -> None:
    tokens = [t for t, _, _ in handler.responses] + [t for t, _ in handler.lost]
    assert Counter(tokens) == Counter(range(n)), "each token ends in exactly one outcome"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = await start_simulator(
        SimulatorConfig(system_id="acme", password="pw", max_window=8)
    )
    try:
        yield simulator
    finally:
        await simulator.close()


async def test_transceiver_submit_resp_and_receipt(sim: Simulator) -> None:
    handler = RecordingHandler()
    pool = BindPool(config(sim.port, binds=2, window=8), handler)
    await pool.start()
    assert pool.binds_up() == 2
    for i in range(50):
        pool.submit(sms(), i)
    await handler.wait_for(lambda: len(handler.responses) == 50 and len(handler.delivers) == 50)
    assert_each_token_once(handler, 50)
    assert all(status == 0 and mid for _, status, mid in handler.responses)
    receipted = {pdu.receipted_message_id for pdu in handler.delivers}
    assert receipted == {mid for _, _, mid in handler.responses}
    await sim.wait_for(lambda: sim.stats.dlr_resps == 50)
    assert pool.stats.written == 50
    assert all(bind.written > 0 for bind in pool.binds)  # spread over both binds
    assert sum(bind.written for bind in pool.binds) == 50
    assert pool.pending() == 0
    await pool.close(1.0)
    assert sim.stats.unbinds == 2
    assert ("acme-trx1", True) in handler.bind_states
    assert ("acme-trx1", False) in handler.bind_states
    assert sim.stats.window_violations == 0


async def test_transmitter_plus_receiver_gets_receipts_on_the_receiver(sim: Simulator) -> None:
    handler = RecordingHandler()
    pool = BindPool(config(sim.port, bind_mode="transmitter+receiver", binds=1), handler)
    seen_on: list[str] = []
    original = handler.on_deliver

    def on_deliver(bind: Any, pdu: Any) -> None:
        seen_on.append(bind.mode)
        original(bind, pdu)

    handler.on_deliver = on_deliver  # type: ignore[method-assign]
    await pool.start()
    assert [b.mode for b in pool.binds] == ["transmitter", "receiver"]
    assert pool.binds_up() == 2
    for i in range(20):
        pool.submit(sms(), i)
    await handler.wait_for(lambda: len(handler.responses) == 20 and len(handler.delivers) == 20)
    assert set(seen_on) == {"receiver"}
    await pool.close(1.0)


async def test_window_is_never_exceeded_on_the_wire() -> None:
    sim = await start_simulator(
        SimulatorConfig(max_window=16, latency_ms=3, latency_dist="uniform")
    )
    try:
        handler = RecordingHandler()
        pool = BindPool(config(sim.port, window=16), handler)
        await pool.start()
        for i in range(400):
            pool.submit(sms(dlr=False), i)
        await handler.wait_for(lambda: len(handler.responses) == 400)
        assert sim.stats.window_violations == 0
        assert 8 <= sim.stats.max_outstanding <= 16  # the window was used, and not exceeded
        await pool.close(1.0)
    finally:
        await sim.close()


async def test_enquire_link_both_ways(sim: Simulator) -> None:
    handler = RecordingHandler()
    pool = BindPool(config(sim.port, enquire_link_s=0.1), handler)
    await pool.start()
    await sim.wait_for(lambda: sim.stats.enquire_links >= 2)  # ESME → SMSC keepalive
    sim.enquire_all()  # SMSC → ESME: answered by the ESME session
    await sim.wait_for(lambda: sim.stats.enquire_link_resps >= 1)
    assert pool.binds_up() == 1
    await pool.close(0.5)


async def test_smsc_unbind_brings_the_bind_down_and_it_rebinds(sim: Simulator) -> None:
    handler = RecordingHandler()
    pool = BindPool(config(sim.port), handler)
    await pool.start()
    await sim.unbind_all()
    await handler.wait_for(lambda: handler.bind_states.count(("acme-trx1", True)) == 2)
    assert ("acme-trx1", False) in handler.bind_states
    assert sim.stats.binds == 2
    pool.submit(sms(), 0)
    await handler.wait_for(lambda: len(handler.responses) == 1)
    await pool.close(0.5)


async def test_dropped_link_mid_window_accounts_for_every_token() -> None:
    sim = await start_simulator(SimulatorConfig(drop_after=40, drop_limit=1, latency_ms=1))
    try:
        handler = RecordingHandler()
        pool = BindPool(config(sim.port, window=32), handler)
        await pool.start()
        for i in range(300):
            pool.submit(sms(dlr=False), i)
        await handler.wait_for(lambda: handler.outcomes() == 300)
        assert_each_token_once(handler, 300)
        assert sim.stats.drops == 1
        assert 1 <= len(handler.lost) <= 32
        assert {reason for _, reason in handler.lost} != set()
        assert sim.stats.connections == 2  # it reconnected and finished the queue
        assert pool.binds_up() == 1
        await pool.close(0.5)
    finally:
        await sim.close()


async def test_proxy_cut_mid_window_accounts_for_every_token(sim: Simulator) -> None:
    async with CuttingProxy(sim.port, cut_after=25) as proxy:
        handler = RecordingHandler()
        pool = BindPool(config(proxy.port, window=8, binds=2), handler)
        await pool.start()
        for i in range(200):
            pool.submit(sms(dlr=False), i)
        await handler.wait_for(lambda: handler.outcomes() == 200)
        assert_each_token_once(handler, 200)
        assert proxy.cuts == 1
        assert 1 <= len(handler.lost) <= 8
        await pool.close(0.5)


async def test_bad_password_stops_the_hot_reconnect_loop(caplog: pytest.LogCaptureFixture) -> None:
    sim = await start_simulator(SimulatorConfig(system_id="acme", password="secret1"))
    try:
        handler = RecordingHandler()
        pool = BindPool(config(sim.port, password="wrongpw", auth_retry_s=60.0), handler)
        with caplog.at_level(logging.ERROR, logger="sendgate.connectors.transport"):
            await pool.start()
        bind = pool.binds[0]
        assert pool.binds_up() == 0
        assert bind.auth_failures == 1
        assert bind.retry_in_s == 60.0  # slow retry, not reconnect_min_s
        await asyncio.sleep(0.2)  # 20 fast-retry periods pass: still one attempt
        assert sim.stats.bind_failures == 1
        text = caplog.text
        assert "ESME_RINVPASWD" in text and "credentials" in text
        assert "wrongpw" not in text and "secret1" not in text
        assert ESME_RINVPASWD == 0x0E
        pool.submit(sms(), 0)  # queued, never written, reported at close
        await pool.close(0.1)
        assert handler.lost == [(0, "pool closed before it was written")]
    finally:
        await sim.close()


async def test_rate_limiter_is_applied_before_writing(sim: Simulator) -> None:
    class Bucket:
        """Grants 10 tokens, then none until ``refill``."""

        def __init__(self) -> None:
            self.tokens = 10
            self.asked = 0

        def try_take(self, n: int, now: float) -> int:
            self.asked += 1
            granted = min(n, self.tokens)
            self.tokens -= granted
            return granted

        def wait_s(self, n: int, now: float) -> float:
            return 0.01

    bucket = Bucket()
    handler = RecordingHandler()
    pool = BindPool(config(sim.port, window=50), handler, bucket)
    await pool.start()
    for i in range(30):
        pool.submit(sms(dlr=False), i)
    await handler.wait_for(lambda: len(handler.responses) == 10)
    await handler.wait_for(lambda: pool.stats.rate_limited >= 3)  # it keeps asking, on a timer
    assert sim.stats.submits == 10
    assert pool.pending() == 20
    bucket.tokens = 100
    await handler.wait_for(lambda: len(handler.responses) == 30)
    assert_each_token_once(handler, 30)
    await pool.close(0.5)


async def test_wait_pending_below_and_drain_on_close() -> None:
    sim = await start_simulator(SimulatorConfig(latency_ms=20))
    try:
        handler = RecordingHandler()
        pool = BindPool(config(sim.port, window=10), handler)
        await pool.start()
        for i in range(40):
            pool.submit(sms(dlr=False), i)
        assert pool.pending() == 40
        await asyncio.wait_for(pool.wait_pending_below(15), 5)
        assert pool.pending() < 15
        await pool.close(5.0)  # drains the queue and the window before unbinding
        assert len(handler.responses) == 40
        assert handler.lost == []
        assert sim.stats.unbinds == 1
    finally:
        await sim.close()


async def test_respond_later_in_the_same_tick(sim: Simulator) -> None:
    handler = RecordingHandler(auto_respond=False)
    pool = BindPool(config(sim.port), handler)
    await pool.start()
    for i in range(5):
        pool.submit(sms(), i)
    await handler.wait_for(lambda: len(handler.delivers) == 5)
    loop = asyncio.get_running_loop()
    bind = pool.binds[0]
    for pdu in handler.delivers:
        loop.call_soon(bind.respond, pdu, 0)
    await sim.wait_for(lambda: sim.stats.dlr_resps == 5)
    await pool.close(0.5)


# -- the zoo -------------------------------------------------------------------


async def test_black_hole_bind_times_out_and_start_returns() -> None:
    async with MisbehavingSmsc("black_hole") as smsc:
        handler = RecordingHandler()
        pool = BindPool(config(smsc.port, bind_timeout_s=0.2), handler)
        await asyncio.wait_for(pool.start(), 5)
        assert pool.binds_up() == 0
        assert "timed out" in pool.binds[0].last_error
        assert smsc.bytes_swallowed > 0
        await pool.close(0.1)


async def test_no_response_reports_lost_after_the_response_timeout() -> None:
    async with MisbehavingSmsc("no_response") as smsc:
        handler = RecordingHandler()
        pool = BindPool(config(smsc.port, response_timeout_s=0.2), handler)
        await pool.start()
        for i in range(3):
            pool.submit(sms(), i)
        await handler.wait_for(lambda: len(handler.lost) == 3)
        assert {reason for _, reason in handler.lost} == {"response timeout"}
        assert pool.stats.timeouts == 3
        assert pool.pending() == 0
        await pool.close(0.1)


async def test_throttling_requeues_and_never_reaches_the_engine_as_failure() -> None:
    async with MisbehavingSmsc("throttle", count=5) as smsc:
        handler = RecordingHandler()
        pool = BindPool(config(smsc.port, window=4), handler)
        await pool.start()
        for i in range(10):
            pool.submit(sms(), i)
        await handler.wait_for(lambda: len(handler.responses) == 10)
        assert_each_token_once(handler, 10)
        assert all(status == 0 for _, status, _ in handler.responses)
        assert pool.stats.throttled == 5
        assert smsc.submits == 15
        await pool.close(0.1)


async def test_generic_nack_is_data_for_the_engine() -> None:
    async with MisbehavingSmsc("generic_nack") as smsc:
        handler = RecordingHandler()
        pool = BindPool(config(smsc.port), handler)
        await pool.start()
        pool.submit(sms(), 0)
        await handler.wait_for(lambda: len(handler.responses) == 1)
        assert handler.responses == [(0, ESME_RSYSERR, "")]
        await pool.close(0.1)


async def test_unbind_on_submit_loses_the_written_pdu_and_rebinds() -> None:
    async with MisbehavingSmsc("unbind_on_submit") as smsc:
        handler = RecordingHandler()
        pool = BindPool(config(smsc.port, window=1), handler)
        await pool.start()
        for i in range(3):
            pool.submit(sms(), i)
        await handler.wait_for(lambda: handler.outcomes() == 3)
        assert_each_token_once(handler, 3)
        assert [t for t, _ in handler.lost] == [0]
        assert smsc.binds == 2
        await pool.close(0.1)


@pytest.mark.parametrize("behaviour", ["bad_command_length", "garbage"])
async def test_garbage_from_the_smsc_means_reconnect_not_crash(behaviour: str) -> None:
    async with MisbehavingSmsc(behaviour) as smsc:
        handler = RecordingHandler()
        pool = BindPool(config(smsc.port, window=1, response_timeout_s=1.0), handler)
        await pool.start()
        for i in range(3):
            pool.submit(sms(), i)
        await handler.wait_for(lambda: handler.outcomes() == 3)
        assert_each_token_once(handler, 3)
        assert [t for t, _ in handler.lost] == [0]
        assert smsc.binds == 2
        assert pool.binds_up() == 1
        await pool.close(0.1)


async def test_slow_response_keeps_the_pdu_in_flight() -> None:
    async with MisbehavingSmsc("slow_response", delay_s=0.1) as smsc:
        handler = RecordingHandler()
        pool = BindPool(config(smsc.port), handler)
        await pool.start()
        pool.submit(sms(), 0)
        await smsc.wait_for(lambda: smsc.submits == 1)
        assert pool.pending() == 1  # written, waiting for its answer
        await handler.wait_for(lambda: len(handler.responses) == 1)
        assert pool.pending() == 0
        await pool.close(0.1)


async def test_submit_after_close_is_reported_not_raised(sim: Simulator) -> None:
    handler = RecordingHandler()
    pool = BindPool(config(sim.port), handler)
    await pool.start()
    await pool.close(0.5)
    pool.submit(sms(), "late")
    assert handler.lost == []  # not from inside submit()
    await handler.wait_for(lambda: handler.lost == [("late", "pool closed before it was written")])


async def test_a_link_that_dies_right_after_bind_backs_off() -> None:
    # every connection is dropped at its second PDU (the first enquire_link)
    sim = await start_simulator(SimulatorConfig(drop_after=2, drop_limit=0))
    try:
        handler = RecordingHandler()
        pool = BindPool(
            config(sim.port, enquire_link_s=0.01, sweep_interval_s=0.01, reconnect_max_s=1.0),
            handler,
        )
        await pool.start()
        await handler.wait_for(lambda: handler.bind_states.count(("acme-trx1", True)) == 5)
        # the delays grew 0.01, 0.02, 0.04, 0.08 (each with jitter down to half)
        assert 0.04 <= pool.binds[0].retry_in_s <= 0.08
        await pool.close(0.1)
    finally:
        await sim.close()


async def test_close_reports_unanswered_after_the_drain_bound() -> None:
    async with MisbehavingSmsc("no_response") as smsc:
        handler = RecordingHandler()
        pool = BindPool(config(smsc.port, window=10, response_timeout_s=30.0), handler)
        await pool.start()
        for i in range(3):
            pool.submit(sms(), i)
        await smsc.wait_for(lambda: smsc.submits == 3)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await pool.close(0.2)
        assert 0.15 <= loop.time() - t0 < 3.0
        assert sorted(t for t, _ in handler.lost) == [0, 1, 2]
        assert {r for _, r in handler.lost} == {"bind closed before the response (drain timeout)"}
        assert pool.binds_up() == 0


async def test_invalid_bind_status_in_a_resp_is_data_and_the_bind_starts_over() -> None:
    sim = await start_simulator(SimulatorConfig(error_rate=1.0, error_status=ESME_RINVBNDSTS))
    try:
        handler = RecordingHandler()
        pool = BindPool(config(sim.port, window=1), handler)
        await pool.start()
        pool.submit(sms(), 0)
        await handler.wait_for(lambda: handler.bind_states.count(("acme-trx1", True)) == 2)
        assert handler.responses == [(0, ESME_RINVBNDSTS, "")]
        assert sim.stats.connections == 2
        await pool.close(0.5)
    finally:
        await sim.close()


async def test_token_bucket_caps_the_submit_rate(sim: Simulator) -> None:
    from throttling import TokenBucket

    handler = RecordingHandler()
    pool = BindPool(config(sim.port, window=50), handler, TokenBucket(100, burst=10))
    await pool.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(40):
        pool.submit(sms(dlr=False), i)
    await handler.wait_for(lambda: len(handler.responses) == 40)
    elapsed = loop.time() - t0
    assert elapsed >= 0.25  # 10 at once, then 30 at 100/s
    assert pool.stats.rate_limited > 0
    assert_each_token_once(handler, 40)
    await pool.close(0.5)


@pytest.mark.parametrize("batched", [False, True], ids=["respond", "respond_many"])
async def test_stale_or_double_receipt_answers_are_dropped(sim: Simulator, batched: bool) -> None:
    handler = RecordingHandler(auto_respond=False)
    pool = BindPool(config(sim.port), handler)
    await pool.start()
    bind = pool.binds[0]

    def answer(*pdus: Any) -> None:
        if batched:
            bind.respond_many(list(pdus), 0)
        else:
            for pdu in pdus:
                bind.respond(pdu, 0)

    pool.submit(sms(), 0)
    pool.submit(sms(), 1)
    await handler.wait_for(lambda: len(handler.delivers) == 2)
    first, second = handler.delivers
    answer(first)
    answer(first, second, second)  # first and the repeat: answered already, dropped
    pool.submit(sms(), 2)  # its receipt proves the answers above were read
    await handler.wait_for(lambda: len(handler.delivers) == 3)
    await sim.wait_for(lambda: sim.stats.submits == 3)
    assert sim.stats.dlr_resps == 2
    third = handler.delivers[2]
    bind.kill()  # the connection that carried `third` goes away
    await handler.wait_for(lambda: handler.bind_states.count(("acme-trx1", True)) == 2)
    answer(third)  # stale: must not reach the new connection
    pool.submit(sms(dlr=False), 3)
    await handler.wait_for(lambda: len(handler.responses) == 4)
    assert sim.stats.dlr_resps == 2
    await pool.close(0.5)


async def test_answers_on_a_closed_session_are_dropped_not_raised(sim: Simulator) -> None:
    """The session already ended (its connection is going away) while the receipt
    worker was storing: answering is a no-op, as for a gone connection; the
    worker must not fail and leave other binds' receipts unanswered."""
    handler = RecordingHandler(auto_respond=False)
    pool = BindPool(config(sim.port), handler)
    await pool.start()
    bind = pool.binds[0]
    pool.submit(sms(), 0)
    await handler.wait_for(lambda: len(handler.delivers) == 1)
    [pdu] = handler.delivers
    session = bind.session
    assert session is not None
    session.connection_lost()  # what the transport does first when the link drops
    assert session.is_closed()
    bind.respond_many([pdu], 0)
    bind.respond(pdu, 0)
    assert sim.stats.dlr_resps == 0
    await pool.close(0.5)


async def test_unanswered_enquire_link_means_a_dead_link_and_a_rebind() -> None:
    async with MisbehavingSmsc("mute") as smsc:
        handler = RecordingHandler()
        pool = BindPool(
            config(smsc.port, enquire_link_s=0.05, response_timeout_s=0.1, sweep_interval_s=0.02),
            handler,
        )
        await pool.start()
        pool.submit(sms(), 0)
        await handler.wait_for(lambda: handler.bind_states.count(("acme-trx1", True)) == 2)
        assert ("acme-trx1", False) in handler.bind_states
        assert smsc.binds == 2
        # the submit was written and never answered: reported once
        await handler.wait_for(lambda: handler.outcomes() >= 1)
        assert [t for t, _ in handler.lost] == [0]
        await pool.close(0.1)


async def test_other_bind_refusals_retry_with_backoff() -> None:
    async with MisbehavingSmsc("bind_syserr") as smsc:
        handler = RecordingHandler()
        pool = BindPool(config(smsc.port, reconnect_min_s=0.01, reconnect_max_s=0.04), handler)
        await pool.start()
        await smsc.wait_for(lambda: smsc.binds >= 4)
        bind = pool.binds[0]
        assert bind.auth_failures == 0
        assert bind.last_error == "ESME_RSYSERR"
        assert 0 < bind.retry_in_s <= 0.04
        assert pool.binds_up() == 0
        await pool.close(0.1)


class BatchingHandler(RecordingHandler):
    """A handler that takes the accepted responses of a batch at once (as the engine does)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def on_submit_resps(self, items: list[tuple[Any, str]]) -> None:
        self.batches.append(len(items))
        for item, message_id in items:
            self.responses.append((item[1], 0, message_id))
        self._check()


@pytest.mark.parametrize("batched", [False, True])
async def test_multipart_parts_reach_the_carrier_in_order_under_throttling(batched: bool) -> None:
    """Parts of one message are a chain: a later part never overtakes an earlier
    throttled one. Message ids are sequential (dec): accepted in order = ids ascending.
    The same with a handler that takes the accepted responses in batches."""
    sim = await start_simulator(SimulatorConfig(throttle_tps=40, dlr=False, id_format="dec"))
    try:
        handler = BatchingHandler() if batched else RecordingHandler()
        pool = BindPool(config(sim.port, binds=2, window=16), handler)
        await pool.start()
        messages, parts = 25, 4
        for m in range(messages):
            pool.submit_parts([(sms(dlr=False), (m, p)) for p in range(parts)])
        assert pool.pending() == messages * parts
        await handler.wait_for(lambda: len(handler.responses) == messages * parts, timeout=30)
        await pool.close(1.0)
    finally:
        await sim.close()
    assert sim.stats.throttled > 0  # the carrier did throttle
    assert pool.stats.throttled == sim.stats.throttled
    assert all(status == 0 for _, status, _ in handler.responses)
    ids: dict[int, dict[int, int]] = {}
    for (m, p), _, mid in handler.responses:
        ids.setdefault(m, {})[p] = int(mid)
    for m, by_part in ids.items():
        assert sorted(by_part) == list(range(parts))
        in_order = [by_part[p] for p in range(parts)]
        assert in_order == sorted(in_order), (m, in_order)
    if isinstance(handler, BatchingHandler):
        assert sum(handler.batches) == messages * parts  # every accepted one came in a batch


async def test_throttle_replies_shrink_the_window_of_every_bind(caplog: pytest.LogCaptureFixture) -> None:
    sim = await start_simulator(SimulatorConfig(throttle_tps=30, dlr=False))
    try:
        handler = RecordingHandler()
        pool = BindPool(config(sim.port, binds=2, window=32), handler)
        await pool.start()
        assert pool.window == 32 and pool.rate_per_s() == 0.0  # unlimited until throttled
        caplog.set_level(logging.INFO, logger="sendgate.connectors.pool")
        for i in range(60):
            pool.submit(sms(dlr=False), i)
        await handler.wait_for(lambda: pool.window < 32, timeout=10)
        assert pool.window == 16
        assert all(b.session is not None and b.session.window == 16 for b in pool.binds)
        assert 0 < pool.rate_per_s() <= 30  # half of what went out, at most
        await handler.wait_for(lambda: len(handler.responses) == 60, timeout=30)
        await pool.close(1.0)
    finally:
        await sim.close()
    assert_each_token_once(handler, 60)
    assert all(status == 0 for _, status, _ in handler.responses)
    changes = [r for r in caplog.records if getattr(r, "event", "") == "backoff"]
    assert changes[0].reason == "throttled" and changes[0].window == 16  # type: ignore[attr-defined]
    assert len(changes) < pool.stats.throttled  # one line per change, not per reply


async def test_pool_closed_with_held_parts_reports_each_once() -> None:
    async with MisbehavingSmsc("no_response") as smsc:
        handler = RecordingHandler()
        pool = BindPool(config(smsc.port, response_timeout_s=30.0), handler)
        await pool.start()
        pool.submit_parts([(sms(), i) for i in range(3)])
        assert pool.pending() == 3
        await pool.close(0.1)
    assert_each_token_once(handler, 3)
    assert pool.pending() == 0


async def test_a_leased_pool_binds_only_under_a_lease_and_writes_nothing_past_its_deadline(sim: Simulator) -> None:
    handler = RecordingHandler()
    pool = BindPool(config(sim.port, binds=2, window=8), handler, leased=True)
    await pool.start()
    loop = asyncio.get_running_loop()
    try:
        assert pool.binds == [] and pool.leases_wanted() == 2 and sim.stats.binds == 0
        pool.lease_granted("L0", loop.time() + 30)
        await handler.wait_for(lambda: pool.binds_up() == 1)
        assert pool.leases_wanted() == 1 and pool.leases() == ["L0"] and sim.stats.open_binds == 1
        for i in range(10):
            pool.submit(sms(False), i)
        await handler.wait_for(lambda: len(handler.responses) == 10)
        first = pool.binds[0]
        # The deadline passes (no renewal): the next batch writes nothing on that bind.
        pool.lease_renewed("L0", loop.time() - 0.001)
        for i in range(10, 20):
            pool.submit(sms(False), i)
        await handler.wait_for(lambda: ("acme-trx1", False) in handler.bind_states)
        # The slot is the pool's until its bind is closed at the carrier, then free.
        await asyncio.wait_for(pool.wait_retired(), 10)
        assert pool.leases() == []
        assert first.written == 10 and pool.queued() == 10 and pool.leases_wanted() == 2
        await sim.wait_for(lambda: sim.stats.open_binds == 0)
        assert sim.stats.submits == 10
        # A new lease: a new bind takes the queued work.
        pool.lease_granted("L1", loop.time() + 30)
        await handler.wait_for(lambda: len(handler.responses) == 20)
        assert_each_token_once(handler, 20)
        assert first.written == 10 and sim.stats.max_open_binds == 1
        # Revoked by the manager: same, at once.
        pool.lease_revoked("L1", "taken over")
        assert pool.leases() == ["L1"] and pool.leases_wanted() == 1  # closing
        await sim.wait_for(lambda: sim.stats.open_binds == 0)
        await asyncio.wait_for(pool.wait_retired(), 10)
        assert pool.leases() == [] and pool.leases_wanted() == 2
    finally:
        await pool.close(1.0)


async def test_take_queued_hands_back_every_part_of_a_held_multipart_chain(sim: Simulator) -> None:
    # A leased pool without a lease writes nothing: what was queued is taken back whole,
    # a multipart chain's held parts included, each as (pdu, token) in order.
    handler = RecordingHandler()
    pool = BindPool(config(sim.port, binds=1, window=8), handler, leased=True)
    await pool.start()
    try:
        pool.submit(sms(), "single")
        pool.submit_parts([(sms(), ("multi", p)) for p in range(3)])
        assert pool.pending() == 4
        taken = pool.take_queued()
        assert [token for _pdu, token in taken] == ["single", ("multi", 0), ("multi", 1), ("multi", 2)]
        assert all(isinstance(pdu, SubmitSm) for pdu, _token in taken)
        assert pool.pending() == 0
    finally:
        await pool.close(0.1)
    assert sim.stats.submits == 0


async def test_submit_many_is_submit_in_order(sim: Simulator) -> None:
    """submit_many (the engine's admitter: a chunk in one call) queues as submit per
    item does: every token answered once, written in the order given; after close
    each one is reported lost, not raised."""
    handler = RecordingHandler()
    pool = BindPool(config(sim.port, binds=1, window=8), handler)
    await pool.start()
    pool.submit(sms(), 0)
    pool.submit_many([(sms(), i) for i in range(1, 30)])
    pool.submit(sms(), 30)
    await handler.wait_for(lambda: len(handler.responses) == 31)
    assert_each_token_once(handler, 31)
    assert [t for t, _, _ in handler.responses] == list(range(31))  # one bind, answered in order
    assert pool.stats.written == 31
    await pool.close(0.5)
    pool.submit_many([(sms(), "late-1"), (sms(), "late-2")])
    await handler.wait_for(lambda: len(handler.lost) == 2)
    assert handler.lost == [("late-1", "pool closed before it was written"), ("late-2", "pool closed before it was written")]


async def test_submit_sm_bodies_go_out_as_their_pdus(sim: Simulator) -> None:
    """Items whose PDU is a submit_sm body (codec.PlainSubmitTemplate) are written as
    that submit_sm: the SMSC accepts each and sends its receipt; a batching handler
    gets every accepted response once, in the order written (one bind)."""
    template = PlainSubmitTemplate("", 1, 1, FAKE_SOURCE, 1, 1)
    handler = BatchingHandler()
    pool = BindPool(config(sim.port, binds=1, window=8), handler)
    await pool.start()
    bodies = [template.body(FAKE_DESTINATION, 0, 1, 0, b"body %d" % i) for i in range(20)]
    pool.submit_many([(b, i) for i, b in enumerate(bodies) if b is not None])
    pool.submit(sms(), 20)  # a SubmitSm between them
    await handler.wait_for(lambda: len(handler.responses) == 21 and len(handler.delivers) == 21)
    assert_each_token_once(handler, 21)
    assert [t for t, _, _ in handler.responses] == list(range(21))
    assert all(status == 0 and mid for _, status, mid in handler.responses)
    assert {pdu.receipted_message_id for pdu in handler.delivers} == {mid for _, _, mid in handler.responses}
    assert {pdu.source_addr for pdu in handler.delivers} == {FAKE_DESTINATION}
    assert sum(handler.batches) == 21 and pool.stats.responses == 21
    await pool.close(0.5)
