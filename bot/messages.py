"""The channel-neutral message types every adapter converts to and from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class TargetType(StrEnum):
    ROOM = "room"
    CONTACT = "contact"


@dataclass(frozen=True)
class Mention:
    id: str
    name: str


@dataclass(frozen=True)
class IncomingMessage:
    channel: str
    sender_id: str
    sender_name: str
    text: str
    group_id: str | None = None
    mentions_bot: bool = False
    message_id: str | None = None

    @property
    def is_private(self) -> bool:
        return not self.group_id

    @property
    def conversation_id(self) -> str:
        return conversation_id(self.channel, self.group_id, self.sender_id)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]")


def _url_safe(part: str) -> str:
    """Rasa's HTTP API does not percent-decode path segments, so ids are kept to URL-safe ASCII, reversibly."""
    return _UNSAFE.sub(lambda m: "~" + m.group().encode().hex(), part)


def conversation_id(channel: str, group_id: str | None, sender_id: str) -> str:
    """One Rasa conversation per person per place: a resident in two groups has two conversations."""
    return ":".join(_url_safe(p) for p in (channel, group_id or "private", sender_id))


@dataclass(frozen=True)
class OutgoingMessage:
    target_type: TargetType
    target_id: str
    text: str
    mentions: tuple[Mention, ...] = field(default_factory=tuple)
    # Set when the message asks this person (in target_id's room) for a rating: their next reply is expected.
    awaits_rating_from: str | None = None
