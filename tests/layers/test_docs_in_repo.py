"""Every document the code cites is in the repository.

Why: docstrings used to cite the owner's ``DESIGN.md``, which a clone does not
have. The contract now lives in ``docs/contract.md`` and the theory of
operation in ``docs/INTERNALS.md``; this keeps new code from citing a file
outside the tree again.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if line.endswith((".py", ".lua", ".md", ".toml", ".yml"))]


def test_no_file_cites_a_design_document_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    citing = [
        str(p.relative_to(ROOT))
        for p in _tracked()
        if p.resolve() != this and p.name != "CHANGELOG.md" and p.exists() and "DESIGN.md" in p.read_text(encoding="utf-8")
    ]
    assert citing == []


def test_the_documents_the_code_points_at_exist() -> None:
    for doc in ("docs/contract.md", "docs/INTERNALS.md", "README.md"):
        assert (ROOT / doc).is_file(), doc
