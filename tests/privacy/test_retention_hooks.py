"""RetentionPolicy and the hook chain."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from privacy_hooks import (
    BaseHook,
    HookChain,
    PrivacyHook,
    RedactionHook,
    RetentionHook,
    RetentionPolicy,
    StoredRecord,
    default_chain,
)
from privacy_hooks.erasure import ErasureResult

DAY = 86_400


def test_defaults_follow_the_policy() -> None:
    policy = RetentionPolicy()
    assert policy.ttl_s("message") == 120 * DAY
    assert policy.ttl_s("payload") == 60 * DAY
    assert policy.ttl_s("activity_log") == 30 * DAY
    assert policy.ttl_s("audit") == 730 * DAY
    assert policy.ttl_s("dlr") == 72 * 3600
    assert policy.retention_until("payload", 1_000_000.9) == 1_000_000 + 60 * DAY


def test_dlr_wait_is_capped_by_message_retention() -> None:
    policy = RetentionPolicy(message=2, dlr_wait_h=24 * 5)
    assert policy.ttl_s("dlr") == 2 * DAY
    assert policy.dlr_ttl_s() == 2 * DAY
    assert policy.dlr_ttl_s(12) == 12 * 3600
    assert policy.dlr_ttl_s(1000) == 2 * DAY
    with pytest.raises(ValueError):
        policy.dlr_ttl_s(0)


def test_policy_is_frozen_and_validated() -> None:
    policy = RetentionPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.message = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"privacy\.retention_days\.audit"):
        RetentionPolicy(audit=0)
    with pytest.raises(ValueError, match="unknown record kind"):
        policy.ttl_s("selfie")


def test_from_config_names_the_key_path() -> None:
    policy = RetentionPolicy.from_config({"message": 90, "audit": 365}, dlr_wait_h=48)
    assert (policy.message, policy.payload, policy.audit, policy.dlr_wait_h) == (90, 60, 365, 48)
    assert RetentionPolicy.from_config(None) == RetentionPolicy()
    with pytest.raises(ValueError, match=r"privacy\.retention_days\.messages: unknown"):
        RetentionPolicy.from_config({"messages": 90})
    with pytest.raises(ValueError, match=r"privacy\.retention_days\.payload"):
        RetentionPolicy.from_config({"payload": "60"})
    with pytest.raises(ValueError, match=r"privacy\.retention_days\.payload"):
        RetentionPolicy.from_config({"payload": True})


def test_default_chain_stamps_records() -> None:
    chain = default_chain(RetentionPolicy(message=10))
    fields: dict[str, Any] = {"state": "submitted"}
    record = chain.on_store("message", fields, now_s=1_000.5)
    assert record.ttl_s == 10 * DAY
    assert record.retention_until == 1_000 + 10 * DAY
    assert fields["retention_until"] == 1_000 + 10 * DAY
    assert chain.stamp("dlr", 1_000.0) == (72 * 3600, 1_000 + 72 * 3600)


def test_redaction_hook_cleans_events() -> None:
    event: dict[str, Any] = {"id": "j1", "event": "delivered", "to": "+4512345678", "text": "Hi"}
    default_chain().on_event(event)
    assert event == {"id": "j1", "event": "delivered", "to": "+45******78"}


def test_hooks_run_in_order_and_can_override() -> None:
    calls: list[str] = []

    class Extend(BaseHook):
        def on_store(self, record: StoredRecord) -> None:
            calls.append(f"extend:{record.ttl_s}")
            record.ttl_s += 1

    chain = HookChain([RetentionHook(RetentionPolicy()), Extend()])
    record = chain.on_store("audit", None, 0.0)
    assert calls == [f"extend:{730 * DAY}"]
    assert record.ttl_s == 730 * DAY + 1


def test_a_failing_erase_hook_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    class Broken(BaseHook):
        def on_erase(self, result: ErasureResult) -> None:
            raise RuntimeError("boom")

    class Record(BaseHook):
        def on_erase(self, result: ErasureResult) -> None:
            seen.append(result.subject)

    result = ErasureResult("a" * 32, False, 1, 0, 0, 0, "1-0")
    with caplog.at_level(logging.ERROR):
        HookChain([Broken(), Record()]).on_erase(result)
    assert seen == ["a" * 32]
    assert "Broken" in caplog.text


def test_hooks_satisfy_the_protocol() -> None:
    for hook in (BaseHook(), RedactionHook(), RetentionHook(RetentionPolicy())):
        assert isinstance(hook, PrivacyHook)
