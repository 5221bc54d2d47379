"""The import contracts of pyproject.toml (``[tool.importlinter]``) hold.

Why a test as well as the ``lint-imports`` line in ``.ci/run``: the README's
test command is ``python -m pytest -q``, and whoever runs only that should
hear about an import that breaks the layering (docs/contract.md §1, "Layout").
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _lint_imports() -> str:
    """The ``lint-imports`` next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("lint-imports")
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.skip("lint-imports is missing: pip install import-linter (the test extra has it)")
    return found


def test_import_contracts_are_kept() -> None:
    done = subprocess.run(
        [_lint_imports(), "--no-logo", "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Each contract of pyproject.toml ran and was kept.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    assert {c["id"] for c in contracts} >= {"layers", "dlr-below", "backoff-leaf", "engine-leaves", "sans-io"}
    assert f"Contracts: {len(contracts)} kept, 0 broken." in done.stdout
