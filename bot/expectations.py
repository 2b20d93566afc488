"""Who the bot is waiting to hear from, and for what: a location for a report form, a rating, feedback, or a pick.

Groups are noisy, so an unaddressed message is normally ignored; an expected reply is not. Kept in Redis
when configured (shared by all app processes), in memory otherwise. A dead Redis degrades to "not
expected" (the resident can still @ the bot) instead of failing the message.
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum
from typing import Protocol

import redis.asyncio as aioredis

log = logging.getLogger(__name__)


class Awaiting(StrEnum):
    FORM = "form"  # Rasa has an active form asking this person something
    RATING = "rating"  # a worker resolved this person's ticket; the bot asked for a rating
    FEEDBACK = "feedback"  # the bot answered from the knowledge base; "没用" refers to that answer
    CHOICE = "choice"  # the bot offered entries ("您想问的是…"); "2" or "都不是" is the pick (bot/choices.py)


class Expectations(Protocol):
    async def expect(self, conversation_id: str, awaiting: Awaiting, ttl_seconds: int) -> None: ...
    async def awaiting(self, conversation_id: str) -> Awaiting | None: ...
    async def clear(self, conversation_id: str) -> None: ...


class MemoryExpectations:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[Awaiting, float]] = {}

    async def expect(self, conversation_id: str, awaiting: Awaiting, ttl_seconds: int) -> None:
        self._entries[conversation_id] = (awaiting, time.monotonic() + ttl_seconds)

    async def awaiting(self, conversation_id: str) -> Awaiting | None:
        entry = self._entries.get(conversation_id)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            del self._entries[conversation_id]
            return None
        return entry[0]

    async def clear(self, conversation_id: str) -> None:
        self._entries.pop(conversation_id, None)


class RedisExpectations:
    PREFIX = "gridbot:expect:"  # without a namespace; the app passes its installation's (bot.settings.namespace_for)

    def __init__(self, client: aioredis.Redis, namespace: str | None = None) -> None:
        # Every process of one installation shares these keys; another installation on the same Redis must not.
        self._redis = client
        self._prefix = f"{namespace}:expect:" if namespace else self.PREFIX

    async def expect(self, conversation_id: str, awaiting: Awaiting, ttl_seconds: int) -> None:
        try:
            await self._redis.set(self._prefix + conversation_id, awaiting.value, ex=ttl_seconds)
        except aioredis.RedisError as exc:
            log.warning("redis unavailable, cannot remember expected reply for %s: %s", conversation_id, exc)

    async def awaiting(self, conversation_id: str) -> Awaiting | None:
        try:
            value = await self._redis.get(self._prefix + conversation_id)
        except aioredis.RedisError as exc:
            log.warning("redis unavailable, treating %s as not expected: %s", conversation_id, exc)
            return None
        try:
            return Awaiting(value.decode()) if value else None
        except ValueError:
            return None

    async def clear(self, conversation_id: str) -> None:
        try:
            await self._redis.delete(self._prefix + conversation_id)
        except aioredis.RedisError as exc:
            log.warning("redis unavailable, cannot clear %s: %s", conversation_id, exc)
