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


class MediaKind(StrEnum):
    IMAGE = "image"
    VOICE = "voice"
    VIDEO = "video"
    FILE = "file"


@dataclass(frozen=True)
class Media:
    """A picture, voice note or file carried by a message.

    Platforms hand media over in their own ways (a file box, a media id to download within days); an adapter
    stores what it received and gives the rest of the bot a `url` it can keep (our own /media/… address or a
    stable platform URL), so a photo attached to a ticket outlives the platform's download window.
    """

    kind: MediaKind
    url: str
    name: str | None = None
    mime: str | None = None
    size: int | None = None

    def to_json(self) -> dict[str, object]:
        """The form a stored row keeps it in (messages held while Rasa is down, outgoing parts queued to send)."""
        return {"kind": self.kind.value, "url": self.url, "name": self.name, "mime": self.mime, "size": self.size}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Media:
        size = data.get("size")
        return cls(
            kind=MediaKind(str(data["kind"])),
            url=str(data["url"]),
            name=str(data["name"]) if data.get("name") else None,
            mime=str(data["mime"]) if data.get("mime") else None,
            size=int(size) if isinstance(size, int) else None,
        )


# NUL and lone surrogates: what a database (PostgreSQL text) cannot store and no person types.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class IncomingMessage:
    """One message as every adapter reports it.

    `mentions_bot` comes from the platform's own mention list (not from "@name" in the text, which anyone can
    type); `mentioned_ids` are all the members it lists. `message_id` is the platform's id: redeliveries carry
    the same one and are dropped by the intake, while a resident typing the same words twice gets two ids.
    """

    channel: str
    sender_id: str
    sender_name: str
    text: str
    group_id: str | None = None
    mentions_bot: bool = False
    message_id: str | None = None
    room_topic: str | None = None
    mentioned_ids: tuple[str, ...] = ()
    media: tuple[Media, ...] = ()
    # A private message's grid, when the channel knows the person's (an iLink binding made for a grid): reports they
    # make privately are filed there (actions/tickets.py). Groups carry their grid through chat_groups.
    grid_code: str | None = None

    def __post_init__(self) -> None:
        """A platform's text cannot be refused like an API request (bot/api/guards.py): it was already sent. NULs and
        lone UTF-16 surrogates, which PostgreSQL refuses to store and no person types, are dropped here, once, so the
        arrival note, the transcript and the ticket never fail on them."""
        for name in ("sender_id", "sender_name", "text", "group_id", "message_id", "room_topic"):
            value = getattr(self, name)
            if isinstance(value, str) and _UNSTORABLE.search(value):
                object.__setattr__(self, name, _UNSTORABLE.sub("", value))

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
    # The channel to send on; None: the group's or worker's own channel, else the channel the turn came from.
    channel: str | None = None
    media: tuple[Media, ...] = ()
    # A question whose answer the bot listens for without an @ (a form's "where?", "您想问的是…"): on a platform that
    # hands the bot only the group messages that @ it, the room is told to @ it (Capabilities.hears_only_mentions).
    awaits_reply: bool = False
