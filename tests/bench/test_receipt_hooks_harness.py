"""``python -m bench.instructions receipt-hooks``'s snippet runs on this tree (without
valgrind: the harness counts it under callgrind) and shows the hook every event."""

from __future__ import annotations

import gc
from typing import Any

from bench.instructions import _RECEIPT_HOOKS


def _run(run: bool) -> Any:
    names: dict[str, Any] = {"N": 1500, "RUN": run}
    saved = gc.get_threshold()
    try:
        exec(compile(_RECEIPT_HOOKS, "<receipt-hooks>", "exec"), names)
    finally:
        gc.set_threshold(*saved)  # the snippet sets the engine's threshold
    return names["chain"].custom[0]


def test_the_receipt_hooks_snippet_runs_every_event_through_the_hook() -> None:
    hook = _run(True)
    assert hook.events == 1500 and hook.records == 1500
    assert _run(False).events == 0
