"""One table of ticket names (grid/data/ticket_labels.yml) for the chat, the console and Open311. No services needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from bot import texts
from bot.settings import PROJECT_ROOT
from grid import open311
from grid.labels import LABELS_FILE, TicketLabels, labels, status_note
from grid.service import COLOURS
from grid.workflow import TRANSITIONS, Role, Status

CONSOLE_TICKETS = PROJECT_ROOT / "bot" / "web" / "static" / "console" / "assets" / "tickets.js"
# Events recorded without a status change (grid/service.py, grid/deadlines.py, grid/emergencies.py…).
OTHER_EVENTS = ("submit", "merge_in", "possible_duplicate", "urge", "co_report", "photo", "work_photo", "work_note",
                "triage", "remind", "overdue", "emergency", "renotice")  # fmt: skip


def test_every_status_role_colour_and_event_has_one_name() -> None:
    names = labels()
    assert set(names.statuses) == set(Status) and set(names.roles) == set(Role)
    assert set(names.colours) == set(COLOURS)
    assert set(names.actions) == set(TRANSITIONS) | set(OTHER_EVENTS)


def test_the_chat_says_what_the_table_says_and_the_two_disputed_names_are_settled() -> None:
    assert texts.action_name("reject") == "审核退回"  # the pair of 审核通过: the result goes back to the worker
    assert texts.action_name("co_report") == "其他居民反映"  # plain words, not the internal 联报
    assert texts.status_name("resolved") == labels().statuses[Status.RESOLVED].name == "已办结待评价"
    assert texts.colour_name("red") == labels().colours["red"]


def test_the_console_keeps_no_names_of_its_own() -> None:
    """The page takes every status, colour, event and role name from GET /api/v1/console/meta."""
    script = CONSOLE_TICKETS.read_text(encoding="utf-8")
    names = labels()
    codes = {*names.actions, *names.colours, *names.roles, *names.statuses}
    # a table of its own would map a code to Chinese: `reject: "驳回"`
    tables = {code for code, _ in re.findall(r'\b(\w+):\s*"([^"]*[\u4e00-\u9fff][^"]*)"', script)}
    assert not tables & codes, tables & codes
    assert "驳回" not in script and "联报" not in script


def test_open311_keeps_its_open_closed_mapping_and_takes_its_words_from_the_table() -> None:
    assert {s: open311.open311_status(s) for s in Status} == {
        s: "closed" if s in (Status.CLOSED, Status.CANCELLED, Status.MERGED) else "open" for s in Status
    }
    for status in Status:  # no readable note on the latest event: the status's sentence
        assert open311.status_notes(status, None, "dispatch", "worker-1") == status_note(status)
    assert status_note(Status.SUBMITTED) == "已受理，等待派单"
    assert not hasattr(open311, "local_time")  # one local_time: bot/texts (see tests/test_open311.py)


def test_a_table_missing_a_name_is_refused_when_read(tmp_path: Path) -> None:
    raw = yaml.safe_load(LABELS_FILE.read_text(encoding="utf-8"))
    del raw["statuses"]["merged"], raw["actions"]["reject"]
    with pytest.raises(ValidationError, match=r"statuses\.merged, actions\.reject"):
        TicketLabels.model_validate(raw)
    raw = yaml.safe_load(LABELS_FILE.read_text(encoding="utf-8"))
    raw["statuses"]["archived"] = {"name": "已归档", "note": "已归档"}  # not a status of grid/workflow.py
    with pytest.raises(ValidationError, match="archived"):
        TicketLabels.model_validate(raw)
