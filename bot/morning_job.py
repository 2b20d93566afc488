"""The morning job (bot/jobs.py): at MORNING_DIGEST_AT, each worker who turned it on gets their digest once a day.

What is due and claimed, and its words, are bot/worker_day.py's; this runs the claim off the event loop and sends
after it committed, on each worker's own channel.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from bot.runtime import Services
from bot.worker_day import morning_messages, morning_time
from storage.base import utcnow

log = logging.getLogger(__name__)


async def send_morning_digests(services: Services, now: datetime | None = None) -> None:
    """One round: nothing before the set time (or with none set), then each opted-in worker once that day."""
    at = morning_time(services.settings)
    if at is None:
        return
    messages = await asyncio.to_thread(morning_messages, services.session_factory, now or utcnow(), at)
    if messages:
        await services.dispatcher.send(messages, origin=services.webchat.name)
        log.info("morning digest: %d sent", len(messages))
