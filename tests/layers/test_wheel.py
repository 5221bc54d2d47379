"""The wheel ships the engine, not its tests or micro benchmarks.

Why: ``bench/`` is a shipped package (``sendgate bench`` runs ``bench.e2e``),
and setuptools packs every module of a listed package. The pytest-benchmark
files and their conftest live in ``bench/micro/``, which is not listed in
``[tool.setuptools] packages``, so they stay out. This test builds the wheel
with setuptools itself (the build backend of pyproject.toml, no isolation,
from a copy of the sources so the work tree gets no ``build/``) and reads
its file list.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_wheel(into: Path) -> list[str]:
    """Build the wheel from a copy of the sources; return the names it holds."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    source = into / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in config["tool"]["setuptools"]["packages"]:
        top = package.split(".")[0]
        if not (source / top).exists():
            shutil.copytree(ROOT / top, source / top, ignore=shutil.ignore_patterns("__pycache__"))
    out = into / "dist"
    code = "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=source, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    wheel = out / done.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_wheel_holds_no_tests_and_keeps_what_sendgate_bench_needs(tmp_path: Path) -> None:
    names = build_wheel(tmp_path)
    leaked = [n for n in names if Path(n).name.startswith("test_") or Path(n).name == "conftest.py"]
    assert leaked == []
    assert not [n for n in names if n.startswith(("bench/micro/", "tests/"))]
    # `sendgate bench` and the callgrind counts run from an installed wheel.
    assert {"bench/e2e.py", "bench/loopback.py", "bench/instructions.py"} <= set(names)
    # Package data still rides along (the Lua scripts are loaded at start-up).
    assert "engine/record.lua" in names and "dlr/correlate.lua" in names
