"""docs/configuration.md, generated from the Settings class: every setting with its type, default and the comment above
it in bot/settings.py. The same source as .env.example (bot/env_example.py), so the reference a reader looks up cannot
fall behind the code either (tests/test_docs.py compares).

    python -m bot.config_docs            (rewrites docs/configuration.md)
    python -m bot.config_docs --check    (exit 1 when it is not what the settings give)
"""

from __future__ import annotations

import ast
import re
import sys

from pydantic_core import PydanticUndefined

from bot.env_example import SETTINGS_SOURCE, comments_by_field, render_default, write_or_check
from bot.settings import PROJECT_ROOT, Settings

DOC = PROJECT_ROOT / "docs" / "configuration.md"
SECTION = re.compile(r"^#\s*---\s*(.+?)\s*---\s*$")
HEADER = """\
# Configuration reference

Every setting GridBot reads, with its type, default and meaning. Each is an environment variable of that name, or a
line of the project's `.env` file (a variable set in the environment wins); `.env.example` lists the same settings,
commented out, to copy. How settings, logs, metrics and readiness work together: [operations.md](operations.md); the
channels' own settings in context: [channels.md](channels.md).

Generated from `bot/settings.py` by `python -m bot.config_docs`: edit the comments there, not here (a test fails when
this file falls behind). "see `X`" means the setting shares the comment of `X`, a row above it.
"""


def _annotations(source: str) -> dict[str, str]:
    """Each Settings field's type as written in bot/settings.py (`str | None`, `Literal[...]`)."""
    tree = ast.parse(source)
    [cls] = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Settings"]
    return {
        node.target.id: ast.unparse(node.annotation)
        for node in cls.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def _cell(text: str) -> str:
    """Table cells: a `|` would end the cell, even inside a code span (GitHub's tables)."""
    return text.replace("|", "\\|")


def _default(value: object) -> str:
    if value is None:
        return "unset"
    rendered = render_default(value)
    if rendered == "":
        return "empty"
    if rendered.startswith("'") and rendered.endswith("'"):  # .env's quoting, not part of the value
        rendered = rendered[1:-1].replace("\\'", "'")
    return f"`{rendered}`"


def generate(source: str | None = None) -> str:
    text = source if source is not None else SETTINGS_SOURCE.read_text(encoding="utf-8")
    comments = comments_by_field(text)
    types = _annotations(text)
    parts = [HEADER, "\n## General\n"]
    table_open = False
    group_head = ""
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        starts, note = comments.get(name, (True, []))
        meaning: list[str] = []
        for line in note:
            if found := SECTION.match(line):
                heading = found.group(1)
                parts.append(f"\n## {heading[0].upper()}{heading[1:]}\n")
                table_open = False
            else:
                meaning.append(line.lstrip("#").strip())
        if not table_open:
            parts.append("\n| variable | type | default | meaning |\n|---|---|---|---|\n")
            table_open = True
        variable = name.upper()
        if starts:
            group_head = variable
        if not meaning and not starts:
            meaning = [f"see `{group_head}`"]
        value = "" if default is PydanticUndefined else _default(default)
        row = [f"`{variable}`", f"`{types.get(name, '')}`", value, " ".join(meaning)]
        parts.append("| " + " | ".join(_cell(cell) for cell in row) + " |\n")
    return "".join(parts)


def main(argv: list[str]) -> int:
    return write_or_check(DOC, generate(), "bot.config_docs", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
