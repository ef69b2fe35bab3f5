"""Imports run one way: compiler <- passes <- strategies <- plugins. The core and the passes never
import strategies or plugins, and no module of the package imports itself back through others (no
import cycle, function-local imports included)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"compiler": ("yolocc.plugins", "yolocc.passes", "yolocc.strategies"),
             "passes": ("yolocc.plugins", "yolocc.strategies"), "strategies": ("yolocc.plugins",),
             "plugins": ("yolocc.strategies",)}
PACKAGES = ("compiler", "passes", "strategies", "plugins")


def imported_modules(path: Path, runtime_only: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``, relative imports resolved; with
    ``runtime_only``, imports under ``if TYPE_CHECKING:`` (never executed) are left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = f"yolocc.{path.parent.name}"
    found = []
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", getattr(block.test, "attr", "")) == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)} if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
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


def import_graph(root: Path = None):
    """A networkx DiGraph of ``yolocc.*`` modules: an edge for every import of one package module by
    another (module level or inside a function; ``from pkg import name`` counts as importing
    ``pkg.name`` when that is a module)."""
    import networkx as nx

    root = ROOT if root is None else root
    files = {f"yolocc.{p.parent.name}.{p.stem}": p for folder in PACKAGES for p in sorted((root / folder).glob("*.py"))}
    modules = set(files) | {f"yolocc.{folder}" for folder in PACKAGES}
    g = nx.DiGraph()
    g.add_nodes_from(files)
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for _, target in imported_modules(path, runtime_only=True):
            targets = [target]
            for node in ast.walk(tree):  # from X import Y where X.Y is a module
                if isinstance(node, ast.ImportFrom) and node.lineno and target.endswith(node.module or ""):
                    targets += [f"{target}.{a.name}" for a in node.names]
            for t in targets:
                if t in files and t != name:
                    g.add_edge(name, t)
                elif t in modules and t != name and f"{t}.__init__" in files:
                    g.add_edge(name, f"{t}.__init__")
    return g


def cycles(root: Path = None) -> list[list[str]]:
    import networkx as nx

    return sorted(sorted(c) for c in nx.simple_cycles(import_graph(root)))


def test_no_import_cycles():
    assert cycles() == []


def test_cycle_check_catches_an_injected_cycle(tmp_path):
    """The check itself can fail: two pass modules importing each other, one of them only inside a
    function (the kind of cycle that hid between prune and sensitivity), are caught."""
    for folder in PACKAGES:
        (tmp_path / folder).mkdir()
    (tmp_path / "passes" / "a.py").write_text("from .b import g\n\ndef f():\n    return g()\n")
    (tmp_path / "passes" / "b.py").write_text("def g():\n    from .a import f\n    return f\n")
    (tmp_path / "passes" / "c.py").write_text("from yolocc.passes import a\n")
    assert cycles(tmp_path) == [["yolocc.passes.a", "yolocc.passes.b"]]
