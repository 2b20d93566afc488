"""Fail when a product module imports a third-party package that is not declared for the virtualenv it runs in.

The app's modules (bot/, grid/, knowledge/, actions/, storage/, migrations/, and the rasa_components/ modules the
app imports or set-up runs with the app's Python) run in .venv, from requirements.txt. rasa_ext/ and
rasa_components/ run inside the Rasa server, from .venv-rasa's lock files (both: the Python 3.10 and 3.11 ones). The
set-up tools (tools/: tools.offline_e5, tools.offline_e5_onnx and what they import) run in .venv-tools, from
requirements-tools.txt: torch and the exporters are not the app's, and an app module importing a tool is caught. A
package that only arrives as another one's dependency works until that one drops it or a lock is regenerated, so
each direct import must be named where its virtualenv is declared. Import names are mapped to distributions through
each virtualenv's installed metadata (`yaml` is PyYAML), so the virtualenvs must exist (`make setup`).

    .venv/bin/python scripts/check_imports.py        (exit 1 listing every undeclared import; tests/test_dependencies.py)
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = frozenset(
    {"bot", "grid", "knowledge", "actions", "storage", "migrations", "rasa_components", "rasa_ext", "tools"}
)
APP_PACKAGES = ("bot", "grid", "knowledge", "actions", "storage", "migrations")
RASA_PACKAGES = ("rasa_ext", "rasa_components")
# Modules of the Rasa packages that scripts/setup.sh runs with the app's Python (`python -m …`).
APP_ENTRY_POINTS = ("rasa_components.gate_negatives",)
# What scripts/setup.sh runs with the tools' Python (every module of tools/): they build and export the embedding model.
TOOLS_PACKAGES = ("tools",)
# Imports of app modules that run only where the tools are installed, declared in the tools' requirements: a
# KB_EMBEDDING_MODEL other than the offline model's exports loads with sentence-transformers (in the app's virtualenv
# it answers lexical-only and says what to install; knowledge/embeddings.py).
OPTIONAL_APP_IMPORTS = {"knowledge.embeddings": frozenset({"sentence_transformers", "transformers"})}


@dataclass(frozen=True)
class Venv:
    name: str
    requirement_files: tuple[str, ...]
    site_packages_glob: str | None  # None: this interpreter's own


APP = Venv("app (.venv)", ("requirements.txt",), None)
RASA = Venv(
    "Rasa (.venv-rasa)", ("requirements-rasa-py310.lock", "requirements-rasa-py311.lock"), ".venv-rasa/lib/python3*/site-packages"
)
TOOLS = Venv("tools (.venv-tools)", ("requirements-tools.txt",), ".venv-tools/lib/python3*/site-packages")


@dataclass(frozen=True)
class Undeclared:
    venv: str
    import_name: str
    distributions: tuple[str, ...]  # what provides it there; empty: not even installed
    modules: tuple[str, ...]

    def __str__(self) -> str:
        provided = f"provided by {', '.join(self.distributions)}" if self.distributions else "not installed"
        where = ", ".join(self.modules[:3]) + (" …" if len(self.modules) > 3 else "")
        return f"{self.venv}: `import {self.import_name}` ({provided}) not declared; imported by {where}"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(root: Path, files: Iterable[str]) -> set[str]:
    """Distribution names of requirement files (following `-r`), canonicalised; all must exist."""
    names: set[str] = set()
    for name in files:
        path = root / name
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.split("#", 1)[0].strip().rstrip("\\").strip()
            if not line or line.startswith("--hash"):
                continue
            if line.startswith(("-r ", "--requirement ")):
                names |= declared(path.parent, [line.split(None, 1)[1]])
                continue
            if line.startswith("-"):
                continue
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
            if match:
                names.add(canonical(match.group()))
    return names


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Lines inside `if TYPE_CHECKING:` blocks: those imports never run."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path) -> set[str]:
    """Absolute module names a file imports (anywhere: functions too), except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _type_checking_lines(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def module_files(root: Path) -> dict[str, Path]:
    """Every first-party module by dotted name."""
    modules: dict[str, Path] = {}
    for package in FIRST_PARTY:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def closure(starts: Iterable[str], modules: dict[str, Path]) -> set[str]:
    """The first-party modules `starts` import, transitively (with their packages' __init__)."""
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        name = todo.pop()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(imported for imported in imports_of(modules[name]) if imported in modules)
    return seen


def distributions_by_import(site_packages: list[str] | None) -> dict[str, set[str]]:
    """Top-level import name → canonical distribution names, from installed metadata (like packages_distributions)."""
    mapping: dict[str, set[str]] = defaultdict(set)
    dists = metadata.distributions(path=site_packages) if site_packages is not None else metadata.distributions()
    for dist in dists:
        name = canonical(dist.metadata["Name"] or "")
        tops = set((dist.read_text("top_level.txt") or "").split())
        for file in dist.files or ():
            top = file.parts[0]
            if top.endswith(".py"):
                tops.add(top[:-3])
            elif top.endswith((".so", ".pyd")):
                tops.add(top.split(".", 1)[0])
            elif len(file.parts) > 1 and "." not in top and top != "__pycache__":
                tops.add(top)
        for top in tops:
            mapping[top].add(name)
    return mapping


def _third_party(names: Iterable[str]) -> set[str]:
    tops = {name.split(".", 1)[0] for name in names}
    return {top for top in tops if top not in sys.stdlib_module_names and top not in FIRST_PARTY and top != "__future__"}


def _site_packages(root: Path, venv: Venv) -> list[str] | None:
    if venv.site_packages_glob is None:
        return None
    found = [str(path) for path in sorted(root.glob(venv.site_packages_glob))]
    if not found:
        raise FileNotFoundError(f"{venv.name}: no {venv.site_packages_glob} under {root}: build it with `make setup`")
    return found


def check_venv(
    root: Path, venv: Venv, modules: dict[str, Path], names: set[str], optional: dict[str, frozenset[str]] | None = None
) -> list[Undeclared]:
    """`optional`: imports of a module left to another virtualenv's check (OPTIONAL_APP_IMPORTS)."""
    if not names:
        return []  # nothing runs there: its virtualenv need not exist
    wanted = declared(root, venv.requirement_files)
    by_import = distributions_by_import(_site_packages(root, venv))
    importers: dict[str, list[str]] = defaultdict(list)
    for name in sorted(names):
        for top in _third_party(imports_of(modules[name])) - (optional or {}).get(name, frozenset()):
            importers[top].append(name)
    problems = []
    for top, who in sorted(importers.items()):
        provided = by_import.get(top, set())
        if not provided & wanted:
            problems.append(Undeclared(venv.name, top, tuple(sorted(provided)), tuple(who)))
    return problems


def check(root: Path = ROOT) -> list[Undeclared]:
    modules = module_files(root)
    tools = [m for m in modules if m.split(".")[0] in TOOLS_PACKAGES]
    app_starts = [m for m in modules if m.split(".")[0] in APP_PACKAGES] + list(APP_ENTRY_POINTS)
    app_modules = closure(app_starts, modules)
    rasa_modules = closure([m for m in modules if m.split(".")[0] in RASA_PACKAGES], modules)
    return (
        check_venv(root, APP, modules, app_modules, OPTIONAL_APP_IMPORTS)
        + check_venv(root, RASA, modules, rasa_modules)
        + check_venv(root, TOOLS, modules, closure(tools, modules))
    )


def _report(problems: list[Undeclared]) -> Iterator[str]:
    for problem in problems:
        yield str(problem)
    if problems:
        yield (
            "declare each in its requirements (app: requirements.txt, tools: requirements-tools.txt, then `make lock`;"
            " Rasa: both lock files)"
        )


if __name__ == "__main__":
    found = check()
    for line in _report(found):
        print(line, file=sys.stderr)
    if not found:
        print("every third-party import of the product is declared for its virtualenv")
    sys.exit(1 if found else 0)
