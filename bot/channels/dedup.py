"""Platforms redeliver: WeCom retries a callback it thinks timed out, a puppet service replays after a reconnect.

A message is handled once per (channel, platform message id), remembered in Redis with a TTL so every app
process agrees. A resident who types "怎么样了" twice sends two messages with two ids, so both are handled.
If Redis is down the check falls back to this process's memory: a rare double answer beats a lost message.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_MEMORY_CAP = 100_000


class Deduplicator:
    def __init__(self, client: aioredis.Redis | None, namespace: str, ttl_seconds: int = 24 * 3600) -> None:
        self._client = client
        self._namespace = namespace
        self._ttl = ttl_seconds
        self._memory: OrderedDict[str, float] = OrderedDict()

    async def first_time(self, channel: str, message_id: str | None) -> bool:
        """True the first time this message is seen; a message without an id cannot be recognised, so always."""
        if not message_id:
            return True
        key = f"{self._namespace}:seen:{channel}:{message_id}"
        if self._client is not None:
            try:
                return bool(await self._client.set(key, b"1", nx=True, ex=self._ttl))
            except (RedisError, OSError) as exc:
                log.warning("message de-duplication falls back to memory, Redis unavailable: %s", exc)
        return self._remember(key)

    async def forget(self, channel: str, message_id: str | None) -> None:
        """Handling failed before anything was said: a redelivery of this message must be handled, not dropped."""
        if not message_id:
            return
        key = f"{self._namespace}:seen:{channel}:{message_id}"
        self._memory.pop(key, None)
        if self._client is not None:
            try:
                await self._client.delete(key)
            except (RedisError, OSError) as exc:
                log.warning("could not forget message %s after a failure, Redis unavailable: %s", message_id, exc)

    def _remember(self, key: str) -> bool:
        now = time.monotonic()
        while self._memory and (len(self._memory) > _MEMORY_CAP or next(iter(self._memory.values())) <= now):
            self._memory.popitem(last=False)
        if key in self._memory:
            return False
        self._memory[key] = now + self._ttl
        return True
