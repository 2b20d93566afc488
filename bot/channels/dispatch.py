"""Everything the bot says goes out here: to the right channel, masked for groups, split, paced and retried.

One turn can produce replies in a group, a private message to a worker on another channel and a rating
request in a third group; the dispatcher finds each target's channel (the message's own, else the group's or
the worker's, else the channel the turn came from), masks residents' phone and room numbers in anything
said in a group, and then:
- a *local* channel (the web chat, whose platform is our own database) records the messages at once;
- any other channel gets one `outbound_messages` row per part, in order, committed before the first
  attempt. Each part waits for a slot in the channel's reply limits (per account and per room, shared by all
  processes through Redis); a part that gets no slot soon, or whose send fails, stays pending with a later
  `next_attempt_at` and is sent by `retry_due` (a periodic job), after the parts before it to the same target.
  A send that cannot succeed (the bot left the group) or exhausts its attempts is marked failed and logged
  as an error: nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Protocol, runtime_checkable

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.backoff import backoff
from bot.channels.base import Channel
from bot.channels.outbound import OutboundMessage, OutboundStatus
from bot.channels.ratelimit import RateLimiter, budgets_for, take_slot
from bot.channels.registry import ChannelRegistry, UnknownChannel
from bot.channels.sender import SendError, split_text
from bot.messages import Media, Mention, OutgoingMessage, TargetType
from bot.metrics import MESSAGES_OUT
from bot.texts import text as t
from grid.geography import ChatGroup, StreetContact, Worker
from storage.base import utcnow
from storage.engine import unit_of_work

log = logging.getLogger(__name__)


@runtime_checkable
class LocalChannel(Protocol):
    """A channel whose sending is a write to our own database: no pacing, no retries, exactly once."""

    name: str

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    first_seconds: float = 5.0
    max_seconds: float = 1800.0
    max_attempts: int = 8
    # How long a claimed row is ours before another process may take it over (a send never takes this long).
    lease_seconds: float = 120.0
    # How long a part may wait for a rate-limit slot inline before it is left to the retry job.
    max_wait_seconds: float = 3.0

    def backoff(self, attempts: int) -> float:
        return backoff(attempts, self.first_seconds, self.max_seconds, jitter=0.0)


def _no_masking(text: str) -> str:
    return text


class Dispatcher:
    def __init__(
        self,
        channels: ChannelRegistry,
        factory: sessionmaker[Session],
        limiter: RateLimiter,
        namespace: str,
        *,
        mask_for_group: Callable[[str], str] = _no_masking,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._channels = channels
        self._factory = factory
        self._limiter = limiter
        self._namespace = namespace
        self._mask = mask_for_group
        self._retry = retry or RetryPolicy()

    async def send(self, messages: Sequence[OutgoingMessage], origin: str) -> list[OutgoingMessage]:
        """Deliver a turn's messages; returns once each is sent or safely queued for retry, with the messages as
        they went out (channel resolved, group texts masked)."""
        if not messages:
            return []
        if all(m.channel for m in messages):  # replies name their channel: nothing to look up, no thread needed
            routed = [self._masked(m, m.channel or origin) for m in messages]
        else:
            routed = await asyncio.to_thread(self._route, messages, origin)
        local: dict[str, list[OutgoingMessage]] = {}
        remote: list[OutgoingMessage] = []
        for message in routed:
            assert message.channel is not None
            channel = self._channels.get(message.channel) if message.channel in self._channels else None
            if isinstance(channel, LocalChannel):
                local.setdefault(channel.name, []).append(message)
            else:
                remote.append(message)
        for name, batch in local.items():
            await self._channels.get(name).deliver(batch)  # type: ignore[attr-defined]
            MESSAGES_OUT.labels(name, "sent").inc(len(batch))
        if remote:
            row_ids = await asyncio.to_thread(self._queue, remote)
            await self._attempt(row_ids)
        return routed

    async def retry_due(self, limit: int = 200) -> int:
        """Send pending rows whose time has come, oldest first; returns how many went out."""
        row_ids = await asyncio.to_thread(self._due, limit)
        return await self._attempt(row_ids)

    # --- routing ---------------------------------------------------------------------------------------

    def _route(self, messages: Sequence[OutgoingMessage], origin: str) -> list[OutgoingMessage]:
        with unit_of_work(self._factory) as session:
            return [self._masked(m, m.channel or self._home_channel(session, m) or origin) for m in messages]

    def _masked(self, message: OutgoingMessage, channel: str) -> OutgoingMessage:
        """The message as it goes out on `channel`: group texts masked, and a question asked in a group on a platform
        that hands the bot only @-messages told to be answered with an @."""
        text = self._mask(message.text) if message.target_type is TargetType.ROOM else message.text
        if message.target_type is TargetType.ROOM and (message.awaits_reply or message.awaits_rating_from):
            if channel in self._channels and self._channels.get(channel).capabilities.hears_only_mentions:
                text = f"{text}\n{t('channels.answer_with_mention')}"
        return replace(message, channel=channel, text=text)

    @staticmethod
    def _home_channel(session: Session, message: OutgoingMessage) -> str | None:
        """A group's, a worker's or a street contact's registered channel; residents are answered where they wrote."""
        if message.target_type is TargetType.ROOM:
            group = session.get(ChatGroup, message.target_id)
            return group.channel if group is not None else None
        person = session.get(Worker, message.target_id) or session.get(StreetContact, message.target_id)
        return person.channel if person is not None else None

    # --- queue -----------------------------------------------------------------------------------------

    def _queue(self, messages: Sequence[OutgoingMessage]) -> list[int]:
        rows = []
        for message in messages:
            assert message.channel is not None
            limit = self._text_limit(message.channel)
            parts = split_text(message.text, limit) if message.text else []
            for index, part in enumerate(parts):
                mentions = [{"id": m.id, "name": m.name} for m in message.mentions] if index == 0 else []
                rows.append(self._row(message, text=part, mentions=mentions))
            for media in message.media:
                rows.append(self._row(message, media=media.to_json()))
        with unit_of_work(self._factory) as session:
            session.add_all(rows)
            session.flush()
            return [row.id for row in rows]

    def _text_limit(self, channel_name: str) -> int:
        try:
            return self._channels.get(channel_name).capabilities.max_text_chars
        except UnknownChannel:
            return 500  # not running here: split conservatively, it is sent once a process runs it

    @staticmethod
    def _row(
        message: OutgoingMessage, *, text: str = "", mentions: list[dict[str, str]] | None = None,
        media: dict[str, object] | None = None,
    ) -> OutboundMessage:
        assert message.channel is not None
        return OutboundMessage(
            channel=message.channel,
            target_type=message.target_type.value,
            target_id=message.target_id,
            text=text,
            mentions=mentions or [],
            media=media,
            key=uuid.uuid4().hex,
            status=OutboundStatus.PENDING,
            next_attempt_at=utcnow(),
        )

    def _due(self, limit: int) -> list[int]:
        with unit_of_work(self._factory) as session:
            query = (
                select(OutboundMessage.id)
                .where(OutboundMessage.status == OutboundStatus.PENDING, OutboundMessage.channel.in_(self._running()))
                .order_by(OutboundMessage.id)
                .limit(limit)
            )
            return list(session.scalars(query))

    # --- sending ---------------------------------------------------------------------------------------

    async def _attempt(self, row_ids: Sequence[int]) -> int:
        """Send rows in order; a target whose earlier row could not go now keeps its later rows waiting too."""
        blocked: set[tuple[str, str, str]] = set()
        sent = 0
        for row_id in row_ids:
            row = await asyncio.to_thread(self._claim, row_id)
            if row is None:
                target = await asyncio.to_thread(self._target_of, row_id)
                if target is not None:
                    blocked.add(target)
                continue
            target = (row.channel, row.target_type, row.target_id)
            if target in blocked:
                await asyncio.to_thread(self._release, row_id)
                continue
            if await self._send(row):
                sent += 1
            else:
                blocked.add(target)
        return sent

    def _claim(self, row_id: int) -> OutboundMessage | None:
        """Take a due pending row for one lease; None when it is not due or another process holds it."""
        now = utcnow()
        with unit_of_work(self._factory) as session:
            taken = session.execute(
                update(OutboundMessage)
                .where(
                    OutboundMessage.id == row_id,
                    OutboundMessage.status == OutboundStatus.PENDING,
                    OutboundMessage.next_attempt_at <= now,
                    # Another process's channel (wechaty runs in exactly one): its own process sends the row.
                    OutboundMessage.channel.in_(self._running()),
                )
                .values(next_attempt_at=now + timedelta(seconds=self._retry.lease_seconds))
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = session.get(OutboundMessage, row_id)
            assert row is not None
            session.expunge(row)
            return row

    def _running(self) -> list[str]:
        return [channel.name for channel in self._channels]

    def _target_of(self, row_id: int) -> tuple[str, str, str] | None:
        with unit_of_work(self._factory) as session:
            row = session.get(OutboundMessage, row_id)
            if row is None or row.status != OutboundStatus.PENDING:
                return None
            return (row.channel, row.target_type, row.target_id)

    def _release(self, row_id: int, delay: float = 0.0, error: str | None = None, *, attempted: bool = False) -> None:
        with unit_of_work(self._factory) as session:
            row = session.get(OutboundMessage, row_id)
            if row is None:
                return
            row.next_attempt_at = utcnow() + timedelta(seconds=delay)
            if attempted:
                row.attempts += 1
            if error is not None:
                row.last_error = error[:2000]

    def _finish(self, row_id: int, status: str, error: str | None = None) -> None:
        with unit_of_work(self._factory) as session:
            row = session.get(OutboundMessage, row_id)
            if row is None:
                return
            row.status = status
            row.attempts += 1
            if status == OutboundStatus.SENT:
                row.sent_at = utcnow()
            if error is not None:
                row.last_error = error[:2000]

    async def _send(self, row: OutboundMessage) -> bool:
        try:
            channel = self._channels.get(row.channel)
        except UnknownChannel as exc:
            await self._failed_attempt(row, SendError(str(exc)))
            return False
        limits = channel.capabilities.reply_limits
        budgets = budgets_for(limits, self._namespace, channel.name, channel.account, f"{row.target_type}:{row.target_id}")
        wait, slot = await take_slot(
            self._limiter, budgets, max_wait=self._retry.max_wait_seconds, jitter=limits.jitter_seconds, inflight_seconds=30.0
        )
        if slot is None:
            await asyncio.to_thread(self._release, row.id, wait)
            MESSAGES_OUT.labels(row.channel, "rate_limited").inc()
            return False
        try:
            await self._call(channel, row)
        except Exception as exc:  # whatever the adapter raised, the row stays and is retried or marked failed
            error = exc if isinstance(exc, SendError) else SendError(f"{type(exc).__name__}: {exc}")
            await self._failed_attempt(row, error)
            return False
        finally:
            await self._limiter.confirm(budgets, slot)
        await asyncio.to_thread(self._finish, row.id, OutboundStatus.SENT)
        MESSAGES_OUT.labels(row.channel, "sent").inc()
        return True

    @staticmethod
    async def _call(channel: Channel, row: OutboundMessage) -> None:
        if row.media:
            await channel.send_media(TargetType(row.target_type), row.target_id, Media.from_json(row.media), key=row.key)
        elif row.target_type == TargetType.ROOM:
            mentions = tuple(Mention(m["id"], m["name"]) for m in row.mentions)
            await channel.say_to_room(row.target_id, row.text, mentions, key=row.key)
        else:
            await channel.say_to_contact(row.target_id, row.text, key=row.key)

    async def _failed_attempt(self, row: OutboundMessage, error: SendError) -> None:
        attempts = row.attempts + 1
        if not error.retryable or attempts >= self._retry.max_attempts:
            log.error(
                "message #%d to %s %s on %s failed for good after %d attempt(s): %s",
                row.id, row.target_type, row.target_id, row.channel, attempts, error,
            )
            await asyncio.to_thread(self._finish, row.id, OutboundStatus.FAILED, str(error))
            MESSAGES_OUT.labels(row.channel, "failed").inc()
            return
        delay = self._retry.backoff(attempts)
        log.warning("message #%d on %s not sent (attempt %d), retry in %.0f s: %s", row.id, row.channel, attempts, delay, error)
        await asyncio.to_thread(self._release, row.id, delay, str(error), attempted=True)
        MESSAGES_OUT.labels(row.channel, "retry").inc()
