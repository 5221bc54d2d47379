"""No module imports another module's private (``_name``) names.

Why: a name with a leading underscore may change without notice; a module
that imports it from elsewhere breaks silently when it does. What two modules
genuinely share is public and documented (``throttling.bucket.check_rate``,
``dlr.ids.HEX_DIGITS``, ``dlr.receipt_parse.scan_body``...). Tests may look inside
what they test; the packages may not look inside each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("connectors", "throttling", "dlr", "privacy_hooks", "engine", "bench")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, node.module] if node.module else base)


def private_imports() -> list[str]:
    """``file:line: module imports name from other`` for every private import across modules."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = _module_name(path)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ImportFrom):
                    continue
                source = _imported_from(node, module, path.name == "__init__.py")
                if source == module or source.split(".")[0] not in PACKAGES:
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {alias.name} from {source}")
    return found


def test_no_private_name_is_imported_across_modules() -> None:
    assert private_imports() == []


def test_the_scan_resolves_relative_and_absolute_imports() -> None:
    tree = ast.parse("from .bucket import _x\nfrom dlr.receipt_parse import _y\n")
    relative, absolute = (n for n in tree.body if isinstance(n, ast.ImportFrom))
    assert _imported_from(relative, "throttling.global_bucket", False) == "throttling.bucket"
    assert _imported_from(absolute, "dlr.store", False) == "dlr.receipt_parse"
