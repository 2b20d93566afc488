"""The documentation stays true to the code: docs/configuration.md is what the settings give, every link between the
README and docs/ lands on a file and heading that exist, and docs/architecture.md's folder tree names every folder of
the product and nothing that is gone. No services needed."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config_docs import DOC, generate
from bot.settings import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
# Top-level folders that are made by running the project, not part of it.
GENERATED = {"var", "models", "reports", "node_modules", "__pycache__", "build", "dist"}


def markdown_files() -> list[Path]:
    return [PROJECT_ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (CJK kept), spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", path.read_text(encoding="utf-8"))  # no headings inside code blocks
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def test_configuration_reference_is_what_the_settings_give() -> None:
    assert DOC.read_text(encoding="utf-8") == generate(), "run `python -m bot.config_docs`"


def test_links_between_readme_and_docs_land_on_files_and_headings() -> None:
    broken = []
    for page in markdown_files():
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def tree_folders() -> set[str]:
    """The folders docs/architecture.md's tree names, as paths from the project root (indentation = nesting)."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    [block] = re.findall(r"(?ms)^## The folders$.*?^```\n(.*?)^```", text)
    folders: set[str] = set()
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        found = re.match(r"( *)([\w.-]+/)\s", line + " ")
        if not found:
            continue
        depth = len(found.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        path = (stack[-1][1] if stack else "") + found.group(2)
        stack.append((depth, path))
        folders.add(path.rstrip("/"))
    return folders


def test_architecture_tree_names_every_folder_of_the_product_and_only_those() -> None:
    named = tree_folders()
    gone = sorted(folder for folder in named if not (PROJECT_ROOT / folder).is_dir())
    assert not gone, f"docs/architecture.md names folders that do not exist: {gone}"
    top = {
        path.name
        for path in PROJECT_ROOT.iterdir()
        if path.is_dir() and not path.name.startswith(".") and path.name not in GENERATED
        and not path.name.endswith(".egg-info")
    }
    packages = {
        f"{parent.name}/{path.name}"
        for parent in (PROJECT_ROOT / "bot", PROJECT_ROOT / "rasa_ext")
        if parent.is_dir()
        for path in parent.iterdir()
        if (path / "__init__.py").exists()
    }
    missing = sorted((top | packages) - named)
    assert not missing, f"docs/architecture.md's tree does not name: {missing}"


def test_paths_the_docs_name_in_code_exist() -> None:
    """`bot/router.py`, `grid/data/categories.yml`, `knowledge/followups.py`… in a code span: still there after a move
    (a module's attribute, `grid.geography.asker_regions` written as `grid/geography.asker_regions`, counts as its
    file)."""
    path = re.compile(
        r"(?<![\w/.$~-])((?:actions|bench|bot|deploy|grid|knowledge|migrations|nlu|rasa_components|rasa_ext|scripts"
        r"|storage|tests)/[\w/.-]*)"
    )
    stale = []
    for page in markdown_files():
        text = re.sub(r"(?ms)^```.*?^```", "", page.read_text(encoding="utf-8"))
        for span in re.findall(r"`([^`\n]+)`", text):
            for named in path.findall(span):
                named = named.rstrip(".")
                as_module = re.sub(r"\.\w+$", ".py", named)
                if not (PROJECT_ROOT / named).exists() and not (PROJECT_ROOT / as_module).exists():
                    stale.append(f"{page.name}: {named}")
    assert not stale, "\n".join(stale)
