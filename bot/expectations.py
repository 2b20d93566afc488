"""Who the bot is waiting to hear from: a resident it asked for a location or a rating.

Groups are noisy, so an unaddressed message is normally ignored; an expected reply is not. Kept in Redis
when configured (shared by all app processes), in memory otherwise. A dead Redis degrades to "not
expected" (the resident can still @ the bot) instead of failing the message.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import redis.asyncio as aioredis

log = logging.getLogger(__name__)


class Expectations(Protocol):
    async def expect(self, conversation_id: str, ttl_seconds: int) -> None: ...
    async def is_expected(self, conversation_id: str) -> bool: ...
    async def clear(self, conversation_id: str) -> None: ...


class MemoryExpectations:
    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    async def expect(self, conversation_id: str, ttl_seconds: int) -> None:
        self._until[conversation_id] = time.monotonic() + ttl_seconds

    async def is_expected(self, conversation_id: str) -> bool:
        until = self._until.get(conversation_id)
        if until is None:
            return False
        if until < time.monotonic():
            del self._until[conversation_id]
            return False
        return True

    async def clear(self, conversation_id: str) -> None:
        self._until.pop(conversation_id, None)


class RedisExpectations:
    PREFIX = "gridbot:expect:"

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    async def expect(self, conversation_id: str, ttl_seconds: int) -> None:
        try:
            await self._redis.set(self.PREFIX + conversation_id, "1", ex=ttl_seconds)
        except aioredis.RedisError as exc:
            log.warning("redis unavailable, cannot remember expected reply for %s: %s", conversation_id, exc)

    async def is_expected(self, conversation_id: str) -> bool:
        try:
            return bool(await self._redis.exists(self.PREFIX + conversation_id))
        except aioredis.RedisError as exc:
            log.warning("redis unavailable, treating %s as not expected: %s", conversation_id, exc)
            return False

    async def clear(self, conversation_id: str) -> None:
        try:
            await self._redis.delete(self.PREFIX + conversation_id)
        except aioredis.RedisError as exc:
            log.warning("redis unavailable, cannot clear %s: %s", conversation_id, exc)
