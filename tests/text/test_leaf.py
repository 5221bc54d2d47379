"""engine.text is a leaf: importing it pulls in no I/O library and nothing else of engine.

Checked in a fresh interpreter, since this test process has imported
everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("asyncio", "redis", "aiohttp", "uvloop", "hiredis", "prometheus_client")

PROBE = """
import importlib, json, pkgutil, sys
import engine.text
after_package = sorted(sys.modules)
for info in pkgutil.iter_modules(engine.text.__path__, "engine.text."):
    importlib.import_module(info.name)
print(json.dumps({"package": after_package, "all": sorted(sys.modules)}))
"""


def _probe() -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded: dict[str, list[str]] = json.loads(out.stdout)
    return loaded


def _io_modules(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in FORBIDDEN]


def _engine_outside_text(modules: list[str]) -> list[str]:
    return [
        m
        for m in modules
        if m.startswith("engine.") and m != "engine.text" and not m.startswith("engine.text.")
    ]


def test_engine_text_imports_no_io_library_and_nothing_else_of_engine() -> None:
    loaded = _probe()
    assert _io_modules(loaded["package"]) == []
    assert _engine_outside_text(loaded["package"]) == []
    # every module of the package, cli included
    assert "engine.text.decoder" in loaded["all"] and "engine.text.cli" in loaded["all"]
    assert _io_modules(loaded["all"]) == []
    assert _engine_outside_text(loaded["all"]) == []


def test_package_init_is_cheap() -> None:
    loaded = _probe()
    own = [m for m in loaded["package"] if m.startswith("engine.text.")]
    assert own == []  # importing engine.text builds no table
