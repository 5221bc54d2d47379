"""The hooks' lazy view of a recorded job's first event (engine/hook_views.py).

It must read like the dict it replaced (same keys, order and values), take a
hook's writes and deletions in an overlay the engine writes back, and pass the
redaction hook untouched (it holds no number or text in clear)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from engine.hook_views import KEYS, JobEventView, ViewBatch
from privacy_hooks import EngineEvent, RedactionHook, mask_e164_digits


def _ij(to_hash: str = "h" * 16) -> Any:
    job = SimpleNamespace(id="job-1", ref="r1", client="acme", kind="transactional", to="+4520123456")
    return SimpleNamespace(job=job, event="submitted", carrier="c1", parts=2, message_ids=["m1", "m2"],
                           error="", to_hash=to_hash, seg=SimpleNamespace(encoding="gsm7"))


def _old_dict(ij: Any, ts: str) -> dict[str, Any]:
    """The mapping the engine built per job before the view (the reference)."""
    job = ij.job
    return {
        "id": job.id, "ref": job.ref, "event": ij.event, "carrier": ij.carrier, "parts": str(ij.parts),
        "message_ids": ",".join(ij.message_ids), "error": ij.error, "ts": ts, "client": job.client,
        "kind": job.kind, "to_hash": ij.to_hash, "to_mask": mask_e164_digits(job.to),
        "encoding": ij.seg.encoding,
    }


def test_the_view_reads_like_the_dict_it_replaced() -> None:
    ij = _ij()
    view = JobEventView(ij, ViewBatch("1700000000000", lambda n: "x"))
    assert isinstance(view, EngineEvent)
    assert dict(view) == _old_dict(ij, "1700000000000")
    assert "retention_until" not in view and len(view) == 13
    view.retention_until = "1800000000"
    assert list(view) == list(KEYS) and view["retention_until"] == "1800000000"
    assert view.edits is None  # reading and the engine's stamp are no edits
    assert view.get("nope", "d") == "d" and "nope" not in view
    with pytest.raises(KeyError):
        view["nope"]


def test_a_missing_hash_is_made_on_access_only() -> None:
    calls: list[str] = []
    ij = _ij(to_hash="")
    view = JobEventView(ij, ViewBatch("1", lambda n: calls.append(n) or "hashed"))
    assert view["id"] == "job-1" and calls == []
    assert view["to_hash"] == "hashed" and ij.to_hash == "hashed" and calls == ["+4520123456"]


def test_edits_go_to_the_overlay() -> None:
    view = JobEventView(_ij(), ViewBatch("1", lambda n: "x"))
    view["ref"] = "hooked-r1"
    del view["error"]
    view["extra"] = "1"
    assert view.edits == {"ref": "hooked-r1", "error": view.edits["error"], "extra": "1"}
    assert view["ref"] == "hooked-r1" and "error" not in view and view.get("error") is None
    assert list(view)[-1] == "extra" and "error" not in list(view)
    with pytest.raises(KeyError):
        del view["error"]
    view["error"] = "back"
    assert view["error"] == "back"


def test_the_redaction_hook_passes_a_view_and_still_redacts_a_dict() -> None:
    view = JobEventView(_ij(), ViewBatch("1", lambda n: "x"))
    plain: dict[str, Any] = {"id": "j", "to": "+4520123456", "text": "hello"}
    RedactionHook().on_events([view, plain])
    assert view.edits is None
    assert "text" not in plain and plain["to"] != "+4520123456"
