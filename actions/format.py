"""Shared wording helpers for ticket messages (dates in local time, colour and status names)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rasa_sdk.executor import CollectingDispatcher

from bot.texts import text as t
from grid.service import LOCAL_TZ


def local_time(moment: datetime) -> str:
    return moment.astimezone(LOCAL_TZ).strftime("%m月%d日%H:%M")


def colour_name(colour: str) -> str:
    return t(f"colours.{colour}")


def status_name(status: str) -> str:
    return t(f"statuses.{status}")


def error_text(code: str, params: dict[str, object]) -> str:
    """The sentence for a refused ticket request; a status code is shown by its Chinese name."""
    values = dict(params)
    if "status" in values:
        values["status_name"] = status_name(str(values["status"]))
    return t(f"errors.{code}", **values)


def run_messages(dispatcher: CollectingDispatcher, messages: list[dict[str, Any]]) -> None:
    """Send what an action's database work decided to say (texts, and deliveries to others)."""
    for message in messages:
        dispatcher.utter_message(**message)
