"""knowledge/ has no import cycles, counting imports inside functions too.

A function-level import hides a cycle from Python (it runs after both modules are loaded) but not from a reader: the
two modules still cannot be understood, moved or tested apart. The entry schema (knowledge/entries.py) and the
set-up cache layout (knowledge/e5_exports.py) sit at the bottom so the rest can build on them.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from bot.settings import PROJECT_ROOT


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module name → the modules of the same package it imports, from every import statement (functions too)."""
    package = package_dir.name
    modules = {path.stem for path in package_dir.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(package_dir.glob("*.py")):
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith(f"{package}."))
            elif isinstance(node, ast.ImportFrom):
                if node.level == 1 or node.module == package or (node.module or "").startswith(f"{package}."):
                    inner = (node.module or "") if node.level else (node.module or "").removeprefix(package).lstrip(".")
                    if inner:
                        imported.add(inner.split(".")[0])
                    else:  # `from knowledge import admin`, `from . import admin`
                        imported.update(alias.name for alias in node.names)
        graph[path.stem] = {name for name in imported if name in modules and name != path.stem}
    return graph


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        return list(exc.args[1])
    return None


def test_knowledge_has_no_import_cycles() -> None:
    graph = import_graph(PROJECT_ROOT / "knowledge")
    assert {"entries", "admin", "formats", "embeddings", "e5_exports"} <= set(graph)
    assert cycle_in(graph) is None, f"import cycle in knowledge/: {' → '.join(cycle_in(graph) or [])}"


@pytest.mark.parametrize(
    "importer",
    [
        "from pkg.a import thing\n",
        "def late():\n    from pkg.a import thing\n",
        "import pkg.a\n",
        "from pkg import a\n",
        "from . import a\n",
        "from .a import thing\n",
    ],
)
def test_a_cycle_is_found_whatever_the_import_looks_like(tmp_path: Path, importer: str) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("import json\n\n\ndef load():\n    from pkg.b import other\n")
    (package / "b.py").write_text(importer)
    (package / "c.py").write_text("from pkg.a import load\n")

    assert sorted(set(cycle_in(import_graph(package)) or [])) == ["a", "b"]
    (package / "b.py").write_text("from pkg.c import load\n")  # b → c → a → b
    assert sorted(set(cycle_in(import_graph(package)) or [])) == ["a", "b", "c"]
    (package / "a.py").write_text("import json\n")
    assert cycle_in(import_graph(package)) is None
