"""The names of ticket statuses, colours, events and roles, from `data/ticket_labels.yml`: one table for every reader.

The chat, the web console and Open311 each had a table of their own, and they drifted (审核退回 in the chat, 驳回 on
the console). Here the file is read and checked once: every status and role of grid/workflow.py and every workflow
action must have a name, so a status added to the workflow without a name stops the first read, not a page.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, model_validator

from grid.workflow import TRANSITIONS, Role, Status

LABELS_FILE = Path(__file__).parent / "data" / "ticket_labels.yml"


class StatusLabel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # short: a badge, a filter, "状态：…" in a chat message
    note: str  # a sentence: what the status means for the request (Open311 status_notes)


class TicketLabels(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    statuses: dict[Status, StatusLabel]
    colours: dict[str, str]
    actions: dict[str, str]
    roles: dict[Role, str]

    @model_validator(mode="after")
    def _complete(self) -> TicketLabels:
        missing = [f"statuses.{s}" for s in Status if s not in self.statuses]
        missing += [f"roles.{r}" for r in Role if r not in self.roles]
        missing += [f"actions.{a}" for a in TRANSITIONS if a not in self.actions]
        if missing:
            raise ValueError(f"no name for {', '.join(missing)}")
        return self


@cache
def labels(path: Path = LABELS_FILE) -> TicketLabels:
    return TicketLabels.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def status_name(status: str) -> str:
    return labels().statuses[Status(status)].name


def status_note(status: str) -> str:
    return labels().statuses[Status(status)].note


def colour_name(colour: str) -> str:
    return labels().colours[colour]


def action_name(action: str) -> str:
    return labels().actions[action]


def role_name(role: str) -> str:
    return labels().roles[Role(role)]
