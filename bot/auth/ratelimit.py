"""Login throttling: after too many failed logins for one username, or from one client address, within a window,
every login for it is refused (even with the right password) until the window ends.

Counted per username so one account cannot be guessed at from many addresses, and per address so one client
cannot try many usernames. With REDIS_URL the counts live in Redis and every app process shares them; without it
they are in memory (the embedded default runs one process). If Redis fails, this process falls back to its own
memory counts rather than letting logins through unthrottled or locking everyone out.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoginLimits:
    per_username: int
    per_address: int
    window_seconds: int


class LoginLimiter:
    """`retry_after` before checking a password, `failed` after a wrong one, `succeeded` after a right one."""

    def __init__(self, limits: LoginLimits, redis: aioredis.Redis | None = None, prefix: str = "gridbot:auth") -> None:
        self.limits = limits
        self.redis = redis
        self.prefix = prefix
        self._memory: dict[str, tuple[int, float]] = {}  # key → (failures, window end on the monotonic clock)
        self._redis_failed_logged = False

    def _keys(self, username: str, address: str | None) -> list[tuple[str, int]]:
        keys = [(f"{self.prefix}:login:user:{username.strip().casefold()}", self.limits.per_username)]
        if address:
            keys.append((f"{self.prefix}:login:addr:{address}", self.limits.per_address))
        return keys

    async def retry_after(self, username: str, address: str | None) -> int:
        """Seconds until a login for this username from this address may be tried again; 0: now."""
        wait = 0
        for key, limit in self._keys(username, address):
            count, ttl = await self._read(key)
            if count >= limit:
                wait = max(wait, ttl, 1)
        return wait

    async def failed(self, username: str, address: str | None) -> None:
        for key, _ in self._keys(username, address):
            await self._increment(key)

    async def succeeded(self, username: str) -> None:
        """The right password clears the username's count (not the address's: one good login among many guesses
        should not reset the guessing budget of a shared address)."""
        key = self._keys(username, None)[0][0]
        self._memory.pop(key, None)
        if self.redis is not None:
            try:
                await self.redis.delete(key)
            except (RedisError, OSError) as exc:
                self._redis_down(exc)

    async def _read(self, key: str) -> tuple[int, int]:
        if self.redis is not None:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    count, ttl = await pipe.get(key).ttl(key).execute()
                memory = self._memory_read(key)
                return max(int(count or 0), memory[0]), max(int(ttl), memory[1], 0)
            except (RedisError, OSError) as exc:
                self._redis_down(exc)
        return self._memory_read(key)

    async def _increment(self, key: str) -> None:
        if self.redis is not None:
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    # The window starts at the first failure: SET NX EX makes it once, later failures only count.
                    await pipe.set(key, 0, ex=self.limits.window_seconds, nx=True).incr(key).execute()
                return
            except (RedisError, OSError) as exc:
                self._redis_down(exc)
        self._memory_increment(key)

    def _memory_read(self, key: str) -> tuple[int, int]:
        count, until = self._memory.get(key, (0, 0.0))
        left = until - time.monotonic()
        if left <= 0:
            self._memory.pop(key, None)
            return 0, 0
        return count, int(left + 0.999)

    def _memory_increment(self, key: str) -> None:
        count, until = self._memory.get(key, (0, 0.0))
        now = time.monotonic()
        if until <= now:
            count, until = 0, now + self.limits.window_seconds
        self._memory[key] = (count + 1, until)
        if len(self._memory) > 100_000:  # a flood of made-up usernames must not grow this without bound
            for stale in [k for k, (_, end) in self._memory.items() if end <= now]:
                del self._memory[stale]

    def _redis_down(self, exc: Exception) -> None:
        if not self._redis_failed_logged:
            log.error("login rate limit: Redis unavailable (%s); counting failed logins in this process", exc)
            self._redis_failed_logged = True
