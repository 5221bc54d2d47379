"""Events stream entries as the engine writes them, for the history tests."""

from __future__ import annotations

from typing import Any

from privacy_hooks.masking import keyed_hash, mask_number

SECRET = "history-test-secret"
DAY_MS = 86_400_000


def event_fields(job_id: str, event: str, ts: int, *, to: str | None = None, first: bool = False,
                 **extra: Any) -> dict[bytes, bytes]:
    """Flat fields of one event; ``first`` adds what the first event of a job carries."""
    f: dict[str, Any] = {"id": job_id, "ref": extra.pop("ref", ""), "event": event,
                         "carrier": extra.pop("carrier", "acme"), "parts": extra.pop("parts", 1),
                         "message_ids": extra.pop("message_ids", ""), "error": extra.pop("error", ""), "ts": ts}
    if first:
        number = to or "+4500112233"
        f.update(client=extra.pop("client", ""), kind=extra.pop("kind", "transactional"),
                 to_hash=keyed_hash(SECRET, number), to_mask=mask_number(number),
                 encoding=extra.pop("encoding", "gsm7"),
                 retention_until=extra.pop("retention_until", ts // 1000 + 120 * 86_400))
    f.update(extra)
    return {k.encode(): str(v).encode() for k, v in f.items()}


def entry(job_id: str, event: str, ts: int, **kw: Any) -> tuple[bytes, dict[bytes, bytes]]:
    return (f"{ts}-0".encode(), event_fields(job_id, event, ts, **kw))
