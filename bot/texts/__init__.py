"""User-facing Chinese text, kept in zh.yml so wording can change without touching code."""

from __future__ import annotations

from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from grid import labels
from grid.clock import LOCAL_TZ

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


def local_time(moment: datetime) -> str:
    """A moment as people read it, in local time: 11月27日16:42 (`formats.moment`). The one format for residents,
    workers and the 12345 hotline (Open311 service_notice); spreadsheets and operators' CLI tables keep full dates."""
    return text("formats.moment", moment=moment.astimezone(LOCAL_TZ))


def day_name(day: date) -> str:
    """A local calendar day as residents and workers read it: 12月07日."""
    return text("formats.date", day=day)


def colour_name(colour: str) -> str:
    """Ticket names (colours, statuses, events) come from grid/data/ticket_labels.yml, shared with the console and
    Open311 (grid/labels.py); these are the chat's way in."""
    return labels.colour_name(colour)


def status_name(status: str) -> str:
    return labels.status_name(status)


def action_name(action: str) -> str:
    """A ticket event's name, as a timeline shows it (接单, 审核退回…)."""
    return labels.action_name(action)


def error_text(code: str, params: dict[str, object]) -> str:
    """The sentence for a refused ticket request; a status code is shown by its Chinese name."""
    values = dict(params)
    if "status" in values:
        values["status_name"] = status_name(str(values["status"]))
    return text(f"errors.{code}", **values)
