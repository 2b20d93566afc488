"""User-facing Chinese text, kept in zh.yml so wording can change without touching code."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

TEXTS_FILE = Path(__file__).parent / "zh.yml"


@cache
def _texts() -> dict[str, Any]:
    return yaml.safe_load(TEXTS_FILE.read_text(encoding="utf-8"))


def text(key: str, **params: object) -> str:
    """The text at a dotted key, formatted with `params`; a missing key is a bug, so it raises."""
    node: Any = _texts()
    for part in key.split("."):
        node = node[part]
    if not isinstance(node, str):
        raise KeyError(f"{key} is not a text")
    return node.format(**params) if params else node
