"""The seam between the bot's own pushes (notices) and a platform: post a text into a group, within its limits.

Notice delivery knows a channel only through `RoomSender`: its name, the account it posts from (platforms
restrict accounts, so rate limits are per account), how long one text may be, how fast it may post, and
`send_to_room`. The web chat implements it, and so do the wechaty and WeCom channels (bot/channels/base.py, docs/channels.md).

A channel whose "sending" is a row in our own database (the web chat) also implements `LocalRoomSender`:
it writes into the caller's transaction, so the message and the record that it went out commit together
and a delivery is sent exactly once even when the process is killed halfway. Every other channel is
at-least-once: the delivery code passes an idempotency key a platform (or the adapter) can de-duplicate on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class SendLimits:
    """How fast a channel may post: at most `per_account` messages from one account and `per_group` into one
    group in any `window_seconds` (None: no limit), each send preceded by a random pause of up to
    `jitter_seconds` so posts do not come at machine-regular intervals.

    The defaults are conservative for personal WeChat accounts, which get restricted for bursts long before
    any documented limit; a channel class states its own, and settings can override them per channel.
    """

    per_account: int | None = 20
    per_group: int | None = 5
    window_seconds: float = 60.0
    jitter_seconds: float = 2.0

    def overridden(self, values: Mapping[str, Any]) -> SendLimits:
        """These limits with some fields replaced (from NOTICE_RATE_LIMITS); unknown names are an error, not ignored."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown rate-limit setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(self, **dict(values))


class SendError(Exception):
    """The platform did not take the message. `retryable=False` means trying again cannot help (the bot left the group)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class RoomSender(Protocol):
    name: str
    account: str
    max_text_chars: int
    limits: SendLimits

    async def send_to_room(self, room_id: str, text: str, *, key: str) -> None:
        """Post one text (at most `max_text_chars`) into a group; raise SendError if it did not go out.

        `key` is stable across retries of the same message, for de-duplication by the platform or adapter.
        """
        ...


@runtime_checkable
class LocalRoomSender(RoomSender, Protocol):
    def write_to_room(self, session: Session, room_id: str, text: str) -> None:
        """Put the message into the caller's transaction instead of sending it now: it exists once that commits."""
        ...


# Where a long text may be cut, best first: a line break, the end of a sentence, a clause, a space.
_BREAKS = ("\n", "。", "！", "？", "；", "，", "、", " ")
_MARKER_ROOM = 9  # "（12/15）" and a little slack


def split_text(text: str, limit: int) -> list[str]:
    """Cut a text into parts of at most `limit` characters, at the best break in the second half of each part,
    numbered "（1/3）" at the end so readers see there is more.
    """
    if len(text) <= limit:
        return [text]
    budget = limit - _MARKER_ROOM
    if budget < 20:
        raise ValueError(f"a channel limit of {limit} characters is too small to split a text into numbered parts")
    pieces: list[str] = []
    rest = text
    while len(rest) > budget:
        window = rest[:budget]
        cut = next((window.rfind(mark) + 1 for mark in _BREAKS if window.rfind(mark) >= budget // 2), budget)
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return [f"{piece}（{index}/{len(pieces)}）" for index, piece in enumerate(pieces, start=1)]
