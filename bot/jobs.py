"""Periodic background work, run in-process in the embedded default.

Each job is a plain async function of the services, so it can move to a queue worker (issue #6 picks
arq or Celery) without changing what it does. A failing round is logged and the next one runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.deadline_job import check_deadlines
from bot.outbox_job import deliver_outbox
from bot.runtime import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    interval_seconds: float
    run: Callable[[Services], Awaitable[None]]


async def retry_deferred(services: Services) -> None:
    """Replays messages held while Rasa was down, and delivers what the bot says to them."""
    outgoing = await services.router.retry_deferred()
    await services.webchat.deliver(outgoing)


def default_jobs(services: Services) -> list[PeriodicJob]:
    settings = services.settings
    return [
        PeriodicJob("deferred-messages", settings.deferred_retry_seconds, retry_deferred),
        PeriodicJob("outbox-delivery", settings.outbox_interval_seconds, deliver_outbox),
        PeriodicJob("deadlines", settings.deadline_check_seconds, check_deadlines),
    ]


async def run_forever(job: PeriodicJob, services: Services) -> None:
    while True:
        await asyncio.sleep(job.interval_seconds)
        try:
            await job.run(services)
        except Exception:  # keep the loop alive whatever one round hits; the work stays pending
            log.exception("periodic job %s failed", job.name)
