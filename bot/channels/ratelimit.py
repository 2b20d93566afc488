"""Sliding-window rate limits per account and per group, shared by every process through Redis.

A send needs one slot in each of its budgets (the account's and the group's) at once: taking the account's
while the group is full would waste it. The window is a log of send times (a sorted set per budget), so the
guarantee is exact: never more than `limit` sends in any `window_seconds`, whatever the number of workers.
Time comes from the Redis server, so workers on machines with skewed clocks still agree.

The limit must hold where the platform counts, at the network edge, not where the slot is taken: between
the two lie the event loop, the OS scheduler and the network, more for one message than for another. So a
slot is taken *in flight* (dated in the future, counted until confirmed) and `confirm`ed after the send
returns, re-dated to that moment. Every message then sits in the log at a time no earlier than the
platform saw it, and the next one is only allowed a full window later. A crashed sender's slot stays
counted until its in-flight date passes: conservative. Without Redis (the embedded default) the same
algorithm runs in memory for the one process there is.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis

from bot.channels.sender import SendLimits


@dataclass(frozen=True)
class Budget:
    key: str
    limit: int
    window_seconds: float

    @property
    def held_seconds(self) -> float:
        return self.window_seconds + guard(self.window_seconds)


def guard(window_seconds: float) -> float:
    return min(0.25, 0.02 * window_seconds)


def budgets_for(limits: SendLimits, namespace: str, channel: str, account: str, group_id: str) -> list[Budget]:
    budgets = []
    if limits.per_account is not None:
        budgets.append(Budget(f"{namespace}:rate:{channel}:account:{account}", limits.per_account, limits.window_seconds))
    if limits.per_group is not None:
        budgets.append(Budget(f"{namespace}:rate:{channel}:group:{group_id}", limits.per_group, limits.window_seconds))
    return budgets


class RateLimiter(Protocol):
    async def try_take(self, budgets: Sequence[Budget], member: str, inflight_seconds: float) -> float:
        """Take one slot in every budget for `member`, or none: 0 when taken, else seconds until worth trying again."""
        ...

    async def confirm(self, budgets: Sequence[Budget], member: str) -> None:
        """The send has returned: date the slot now, so it counts for one window from here."""
        ...


# Waiting behind a slot still in flight: its end is unknown, so look again shortly.
INFLIGHT_POLL_MS = 50

# KEYS: the budgets; ARGV: member, in-flight ms, poll ms, then per budget its limit and held ms.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local inflight = tonumber(ARGV[2])
local wait = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 + 2 * i])
  local held = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - held)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local score = tonumber(oldest[2])
    local w = score + held - now
    if score > now then w = tonumber(ARGV[3]) end
    if w > wait then wait = w end
  end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + inflight, ARGV[1])
  redis.call('PEXPIRE', key, inflight + tonumber(ARGV[3 + 2 * i]))
end
return 0
"""

# KEYS: the budgets; ARGV: member, then per budget its held ms.
_CONFIRM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  if redis.call('ZADD', key, 'XX', 'CH', now, ARGV[1]) == 1 then
    redis.call('PEXPIRE', key, tonumber(ARGV[1 + i]))
  end
end
return 0
"""


def _held_ms(budget: Budget) -> int:
    return max(int(budget.held_seconds * 1000), 1)


class RedisRateLimiter:
    def __init__(self, client: aioredis.Redis) -> None:
        self._take = client.register_script(_TAKE)
        self._confirm = client.register_script(_CONFIRM)

    async def try_take(self, budgets: Sequence[Budget], member: str, inflight_seconds: float) -> float:
        if not budgets:
            return 0.0
        args: list[str | int] = [member, max(int(inflight_seconds * 1000), 1), INFLIGHT_POLL_MS]
        for budget in budgets:
            args += [budget.limit, _held_ms(budget)]
        wait_ms = int(await self._take(keys=[b.key for b in budgets], args=args))
        return wait_ms / 1000 if wait_ms > 0 else 0.0

    async def confirm(self, budgets: Sequence[Budget], member: str) -> None:
        if budgets:
            await self._confirm(keys=[b.key for b in budgets], args=[member, *(_held_ms(b) for b in budgets)])


class MemoryRateLimiter:
    """The same log in this process's memory: enough when this process is the only sender."""

    def __init__(self) -> None:
        self._logs: dict[str, dict[str, float]] = {}

    async def try_take(self, budgets: Sequence[Budget], member: str, inflight_seconds: float) -> float:
        now = time.monotonic()
        wait = 0.0
        for budget in budgets:
            log = self._logs.setdefault(budget.key, {})
            for old in [m for m, at in log.items() if at <= now - budget.held_seconds]:
                del log[old]
            if len(log) >= budget.limit:
                score = sorted(log.values())[len(log) - budget.limit]
                wait = max(wait, INFLIGHT_POLL_MS / 1000 if score > now else score + budget.held_seconds - now)
        if wait > 0:
            return wait
        for budget in budgets:
            self._logs[budget.key][member] = now + inflight_seconds
        return 0.0

    async def confirm(self, budgets: Sequence[Budget], member: str) -> None:
        now = time.monotonic()
        for budget in budgets:
            log = self._logs.get(budget.key, {})
            if member in log:
                log[member] = now


async def take_slot(
    limiter: RateLimiter, budgets: Sequence[Budget], *, max_wait: float, jitter: float, inflight_seconds: float
) -> tuple[float, str | None]:
    """Wait for a slot in every budget, at most `max_wait` seconds in all.

    Returns (0, slot id) once taken — confirm it after the send — or, when it would take longer than
    `max_wait`, (how long, None) with nothing taken: the caller then gives its worker slot back instead of
    sleeping. Waits carry jitter so jobs blocked on the same account do not all wake at the same instant.
    """
    member = uuid.uuid4().hex
    deadline = time.monotonic() + max_wait
    while True:
        wait = await limiter.try_take(budgets, member, inflight_seconds)
        if wait <= 0:
            return 0.0, member
        wait += random.uniform(0, jitter)
        if time.monotonic() + wait > deadline:
            return wait, None
        await asyncio.sleep(wait)
