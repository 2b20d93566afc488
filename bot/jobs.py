"""Periodic background work, run in-process in the embedded default.

Each job is a plain async function of the services, so it can move to a queue worker (as the benefit
notices' jobs did, to arq: docs/notices.md) without changing what it does. A failing round is logged and the next one runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from bot.deadline_job import check_deadlines, check_emergencies
from bot.morning_job import send_morning_digests
from bot.outbox_job import deliver_outbox
from bot.runtime import Services
from bot.settings import namespace_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    interval_seconds: float
    run: Callable[[Services], Awaitable[None]]


# Unlocks only if the lock is still ours (it may have expired and been taken by another process).
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_REPLAY_LOCK_SECONDS = 300


async def retry_deferred(services: Services) -> None:
    """Replays messages held while Rasa was down, and delivers what the bot says to them.

    With several app processes only one replays at a time (a Redis lock): two replaying the same held
    message would run the resident's turn twice, and two replaying one conversation's messages side by side
    could answer them out of order. If Redis itself is unreachable the replay goes ahead unlocked: a rare
    double turn (tickets recognise the same report) is better than messages held until Redis returns.
    """
    client = services.redis
    key, token = f"{namespace_for(services.settings)}:deferred-replay", uuid.uuid4().hex
    locked = False
    if client is not None:
        try:
            if not await client.set(key, token, nx=True, ex=_REPLAY_LOCK_SECONDS):
                return  # another process is replaying
            locked = True
        except (RedisError, OSError) as exc:
            log.warning("replaying held messages without the cross-process lock, Redis unavailable: %s", exc)
    try:
        outgoing = await services.router.retry_deferred()
        await services.dispatcher.send(outgoing, origin=services.webchat.name)
    finally:
        if locked and client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.eval(_RELEASE, 1, key, token)


async def retry_outbound(services: Services) -> None:
    """Sends what a platform did not take the first time (or what waited for a rate-limit slot)."""
    sent = await services.dispatcher.retry_due()
    if sent:
        log.info("outbound: %d queued message(s) sent", sent)


def default_jobs(services: Services) -> list[PeriodicJob]:
    settings = services.settings  # checked when loaded: a malformed MORNING_DIGEST_AT never gets this far
    return [
        PeriodicJob("deferred-messages", settings.deferred_retry_seconds, retry_deferred),
        PeriodicJob("outbox-delivery", settings.outbox_interval_seconds, deliver_outbox),
        PeriodicJob("deadlines", settings.deadline_check_seconds, check_deadlines),
        PeriodicJob("emergency-renotice", settings.emergency_check_seconds, check_emergencies),
        PeriodicJob("outbound-retry", settings.outbound_retry_seconds, retry_outbound),
        PeriodicJob("morning-digest", settings.morning_digest_check_seconds, send_morning_digests),
    ]


async def run_forever(job: PeriodicJob, services: Services) -> None:
    while True:
        await asyncio.sleep(job.interval_seconds)
        try:
            await job.run(services)
        except Exception:  # keep the loop alive whatever one round hits; the work stays pending
            log.exception("periodic job %s failed", job.name)
