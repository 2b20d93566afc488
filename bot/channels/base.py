"""The interface every channel adapter implements; platform specifics stay inside its own module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.messages import OutgoingMessage


class Channel(Protocol):
    name: str
    max_text_chars: int

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> None:
        """Send (or record, for the web chat) every message; raise if one cannot be sent."""
        ...
