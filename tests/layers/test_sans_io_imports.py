"""The sans-IO modules load no I/O library, not even through a package ``__init__``.

Why a subprocess per check: ``sys.modules`` of the test process already holds
asyncio, redis and aiohttp, so only a fresh interpreter can tell what one
``import`` pulls in. import-linter (``test_contracts.py``) checks the static
graph between modules; it does not follow the implicit import of a package's
``__init__`` that every ``import package.module`` runs first, which is how the
leak this test guards against happened (``connectors/__init__.py`` re-exported
the transport, so ``import connectors.session`` loaded asyncio).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The sans-IO core (docs/contract.md §1: bytes in, events out; no socket, loop or Redis).
SANS_IO = [
    "connectors.session",
    "connectors.codec",
    "connectors.framer",
    "connectors.pdu",
    "dlr.receipt_parse",
    "dlr.receipt_scan",
    "dlr.ids",
    "dlr.aggregate",
    "throttling.bucket",
    "throttling.adaptive",
    "throttling.backoff",
    "privacy_hooks.masking",
    "engine.keys",
    "engine.admission",
]
# The text-encoding subpackage (GSM-7/UCS-2, segmentation) joins the core once it exists.
if (ROOT / "engine" / "text" / "__init__.py").exists():
    SANS_IO.append("engine.text")

IO_LIBRARIES = ["asyncio", "redis", "aiohttp", "uvloop"]


def loaded_after_import(module: str) -> list[str]:
    """The I/O libraries a fresh interpreter holds after ``import module``."""
    code = (
        f"import sys, {module}\n"
        f"print(' '.join(m for m in {IO_LIBRARIES!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("module", SANS_IO)
def test_sans_io_module_imports_no_io_library(module: str) -> None:
    assert loaded_after_import(module) == []


def test_the_check_sees_an_io_import() -> None:
    # The probe itself can fail: the transport does load asyncio.
    assert "asyncio" in loaded_after_import("connectors.transport")
