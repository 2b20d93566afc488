"""Sending what an action decided to say."""

from __future__ import annotations

from typing import Any

from rasa_sdk.executor import CollectingDispatcher


def run_messages(dispatcher: CollectingDispatcher, messages: list[dict[str, Any]]) -> None:
    """Send what an action's database work decided to say (texts, and deliveries to others)."""
    for message in messages:
        dispatcher.utter_message(**message)
