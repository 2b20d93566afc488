""".env.example, generated from the Settings class: every setting, its default and the comment above it in
bot/settings.py, so the file an operator copies cannot fall behind the code (tests/test_operations.py compares).

    python -m bot.env_example            (rewrites .env.example, and docs/configuration.md: bot/config_docs.py)
    python -m bot.env_example --check    (exit 1 when it is not what the settings give)
"""

from __future__ import annotations

import ast
import json
import sys
from enum import Enum
from pathlib import Path

from pydantic_core import PydanticUndefined

from bot.settings import PROJECT_ROOT, Settings

EXAMPLE = PROJECT_ROOT / ".env.example"
SETTINGS_SOURCE = PROJECT_ROOT / "bot" / "settings.py"
HEADER = """\
# GridBot settings. Copy to .env and uncomment what you change: every `gridbot` command and the app read .env from
# the project folder; a variable set in the environment wins over the file. Each line shows the default.
# Generated from bot/settings.py by `python -m bot.env_example`: edit the comments there, not here.
"""


def comments_by_field(source: str) -> dict[str, tuple[bool, list[str]]]:
    """Per field of Settings: whether it starts a group (a comment above it or a blank line before it; fields on the
    lines right after another share its comment), and its comment lines (above it, and at the end of its line)."""
    lines = source.splitlines()
    tree = ast.parse(source)
    [cls] = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Settings"]
    found: dict[str, tuple[bool, list[str]]] = {}
    previous_end = -1
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            previous_end = -1
            continue
        above: list[str] = []
        index = node.lineno - 2
        while index >= 0 and lines[index].strip().startswith("#"):
            above.insert(0, lines[index].strip())
            index -= 1
        end = lines[(node.end_lineno or node.lineno) - 1]
        trailing = [f"# {end.split('  # ', 1)[1].strip()}"] if "  # " in end else []
        starts = bool(above) or previous_end != node.lineno - 1
        found[node.target.id] = (starts, above + trailing)
        previous_end = node.end_lineno or node.lineno
    return found


def render_default(value: object) -> str:
    """The default as the environment would spell it (pydantic-settings reads lists and tuples as JSON)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, tuple | list | dict):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    text = text.replace(str(PROJECT_ROOT), "<project>")  # the same file on every checkout
    if any(char in text for char in " #'\"[{") or text != text.strip():
        return "'" + text.replace("'", "\\'") + "'"
    return text


def generate(source: str | None = None) -> str:
    comments = comments_by_field(source if source is not None else SETTINGS_SOURCE.read_text(encoding="utf-8"))
    parts = [HEADER]
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        value = "" if default is PydanticUndefined else render_default(default)
        starts, note = comments.get(name, (True, []))
        if starts:
            parts.append("\n")
        parts.append("".join(f"{line}\n" for line in note) + f"# {name.upper()}={value}\n")
    return "".join(parts)


def write_or_check(path: Path, wanted: str, module: str, argv: list[str]) -> int:
    """A file generated from the settings (`python -m module`): with `--check` in `argv`, 0 when `path` holds `wanted`,
    else 1 and which command rewrites it; without, `path` is (re)written. One rule for every generated file."""
    if "--check" in argv:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != wanted:
            print(f"{path.name} is not what bot/settings.py gives: run `python -m {module}`", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(wanted, encoding="utf-8")
    print(f"wrote {path} ({len(Settings.model_fields)} settings)")
    return 0


def main(argv: list[str]) -> int:
    done = write_or_check(EXAMPLE, generate(), "bot.env_example", argv)
    if done or "--check" in argv:
        return done
    # docs/configuration.md comes from the same settings: the command that keeps one current keeps both.
    from bot import config_docs

    return config_docs.main([])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
