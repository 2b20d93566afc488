"""The interface every channel adapter implements; platform specifics stay inside its own module.

An adapter does two things. Inbound, it turns the platform's events into `IncomingMessage`s (its real mention
list, media stored where the bot can keep it, its own messages dropped) and hands each to the `Intake` it was
started with. Outbound, it says texts to rooms and contacts and sends media, raising `SendError` when the
platform did not take a message; pacing, splitting, retries and de-duplication are done once for all
adapters by the intake and the dispatcher (bot/channels/intake.py, bot/channels/dispatch.py), which read the
adapter's `Capabilities` to know its limits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from bot.channels.sender import SendLimits
from bot.messages import IncomingMessage, Media, Mention, OutgoingMessage, TargetType
from storage.base import utcnow


@dataclass(frozen=True)
class Capabilities:
    """What a platform allows, so the shared code adapts to it instead of asking which platform it is.

    `max_text_chars` is what one message may hold in characters; a platform that counts bytes (WeCom's group
    robot: 2048 bytes of UTF-8) also states `max_text_bytes` and its adapter sets `max_text_chars` so that any
    Chinese text within it fits. `limits` pace pushes (notices); `reply_limits` pace replies and private
    messages, which people wait for and so may come faster. `can_post_to_rooms` False: the platform has no
    groups the bot can post into (WeChat's iLink route is one-to-one), so notices never pick the channel.
    """

    max_text_chars: int
    can_mention: bool = True
    can_message_contacts: bool = True
    can_send_media: bool = False
    can_post_to_rooms: bool = True
    # In groups the platform delivers only messages that @ the bot (WeCom's smart robot): a question the bot waits
    # to hear answered (a location, a rating, a pick) says to @ it, or the answer never arrives.
    hears_only_mentions: bool = False
    max_text_bytes: int | None = None
    limits: SendLimits = field(default_factory=SendLimits)
    reply_limits: SendLimits = field(default_factory=lambda: SendLimits(per_account=40, per_group=20, jitter_seconds=0.0))


class HealthStatus(StrEnum):
    UP = "up"
    CONNECTING = "connecting"
    DOWN = "down"


@dataclass(frozen=True)
class Health:
    """What the console shows for a channel: is it connected, since when, and the last problem in words."""

    status: HealthStatus
    detail: str = ""
    since: datetime = field(default_factory=utcnow)
    account: str = ""


class Intake(Protocol):
    async def receive(self, message: IncomingMessage) -> list[OutgoingMessage]:
        """Take one message from a platform: de-duplicated, routed, and every reply sent (or queued to be);
        returns the replies as they went out."""
        ...


@runtime_checkable
class Channel(Protocol):
    """A platform adapter. `name` is stored on groups and workers (chat_groups.channel, workers.channel)."""

    name: str
    account: str
    capabilities: Capabilities

    async def start(self, intake: Intake) -> None:
        """Begin receiving in the background and return; reconnecting after failures is the adapter's job."""
        ...

    async def stop(self) -> None: ...

    def health(self) -> Health: ...

    async def say_to_room(self, room_id: str, text: str, mentions: Sequence[Mention] = (), *, key: str) -> None:
        """Post one text of at most `max_text_chars` into a room, @-mentioning `mentions` where the platform can.

        `key` is stable across retries of the same message (for the platform's or the adapter's de-duplication).
        """
        ...

    async def say_to_contact(self, contact_id: str, text: str, *, key: str) -> None: ...

    async def send_media(self, target_type: TargetType, target_id: str, media: Media, *, key: str) -> None: ...


class ChannelBase:
    """What every adapter shares: the notice sender's view of it (bot/channels/sender.RoomSender)."""

    name: str
    account: str
    capabilities: Capabilities

    @property
    def max_text_chars(self) -> int:
        return self.capabilities.max_text_chars

    @property
    def limits(self) -> SendLimits:
        return self.capabilities.limits

    async def say_to_room(self, room_id: str, text: str, mentions: Sequence[Mention] = (), *, key: str) -> None:
        raise NotImplementedError

    async def send_to_room(self, room_id: str, text: str, *, key: str) -> None:
        """RoomSender: a notice part is a room message without mentions."""
        await self.say_to_room(room_id, text, (), key=key)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None] | None]) -> None:
    """A channel's stop: its connection, reader and queued turns all cancelled first, then each awaited, its error
    (it is being stopped) swallowed — so no task outlives the stop and none is awaited while the others still run."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
