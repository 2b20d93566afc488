"""Login throttling: after too many failed logins for one username from one client address, or from one address
for any usernames, within a window, every login from that address for it is refused (even with the right password)
until the window ends.

Never counted per username alone: then anyone could keep `admin` locked out from everywhere by guessing at it
five times every quarter of an hour. Counted per (username, address), so one address cannot guess at an account
for long, and per address, so one client cannot try many usernames; the owner, from another address, logs in.
IPv6 addresses count by their /64, the block one host is usually given, so a client cannot change address to
start afresh. The address is `bot.api.guards.client_address` (forwarded headers only from TRUSTED_PROXIES).

With REDIS_URL the counts live in Redis and every app process shares them; without it they are in memory (the
embedded default runs one process). If Redis fails, this process falls back to its own memory counts rather than
letting logins through unthrottled or locking everyone out.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoginLimits:
    per_username_and_address: int
    per_address: int
    window_seconds: int


def address_key(address: str | None) -> str:
    """What one client's failures are counted under: its IPv4 address, its IPv6 /64, or `-` when unknown."""
    if not address:
        return "-"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:203.0.113.5 on a dual-stack socket is that IPv4 client
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class LoginLimiter:
    """`retry_after` before checking a password, `failed` after a wrong one, `succeeded` after a right one."""

    def __init__(self, limits: LoginLimits, redis: aioredis.Redis | None = None, prefix: str = "gridbot:auth") -> None:
        self.limits = limits
        self.redis = redis
        self.prefix = prefix
        self._memory: dict[str, tuple[int, float]] = {}  # key → (failures, window end on the monotonic clock)
        self._redis_failed_logged = False

    def _keys(self, username: str, address: str | None) -> list[tuple[str, int]]:
        client = address_key(address)
        keys = [(f"{self.prefix}:login:user:{username.strip().casefold()}:addr:{client}", self.limits.per_username_and_address)]
        if address:
            keys.append((f"{self.prefix}:login:addr:{client}", self.limits.per_address))
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

    async def succeeded(self, username: str, address: str | None) -> None:
        """The right password clears the username's count at this address (not the address's own: one good login
        among many guesses should not reset the guessing budget of a shared address)."""
        key = self._keys(username, address)[0][0]
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
