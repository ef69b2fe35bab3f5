"""Imports run one way: compiler <- passes <- plugins. The core and the passes never import plugins."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"compiler": ("yolocc.plugins", "yolocc.passes"), "passes": ("yolocc.plugins",)}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = f"yolocc.{path.parent.name}"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def violations(folder: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / folder).glob("*.py")):
        for line, module in imported_modules(path):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[folder]):
                bad.append(f"{folder}/{path.name}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_upward_imports(folder):
    assert violations(folder) == []


def test_checker_sees_a_violation(tmp_path, monkeypatch):
    """The check itself can fail: a pass module importing a plugin (absolute or relative) is caught."""
    fake = tmp_path / "passes"
    fake.mkdir()
    (fake / "bad.py").write_text("import os\nfrom yolocc.plugins.ort_runtime import session\n"
                                 "def f():\n    from ..plugins import builtin\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert violations("passes") == ["passes/bad.py:2 imports yolocc.plugins.ort_runtime",
                                    "passes/bad.py:4 imports yolocc.plugins"]
