"""Outbox delivery job (webhooks, docs/tickets.md): every few seconds, send pending ticket events to the webhook targets.

bot/jobs.py runs `deliver_outbox` every `settings.outbox_interval_seconds`; what it sends and how it retries
is grid/delivery.py. This module only adds what belongs to the running app: the targets from settings (parsed
when settings load: a bad WEBHOOK_TARGETS stops start-up) and one HTTP client kept across rounds, so
connections to a target are reused instead of opened every 5 s.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from bot.runtime import Services
from grid.delivery import deliver_due, plan_all

log = logging.getLogger(__name__)

HTTP_TIMEOUT = httpx.Timeout(10.0)

_client: httpx.AsyncClient | None = None
_client_loop: asyncio.AbstractEventLoop | None = None


def _http() -> httpx.AsyncClient:
    """The shared client, made on first use; made again if the event loop changed (it cannot cross loops)."""
    global _client, _client_loop
    loop = asyncio.get_running_loop()
    if _client is None or _client.is_closed or _client_loop is not loop:
        _client = httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False)
        _client_loop = loop
    return _client


async def aclose_http() -> None:
    """Close the shared client (at shutdown); the next round would make a new one."""
    global _client, _client_loop
    if _client is not None and _client_loop is asyncio.get_running_loop():
        await _client.aclose()
    _client, _client_loop = None, None


async def deliver_outbox(services: Services) -> None:
    targets = list(services.settings.webhook_targets)
    if not targets:
        return
    factory = services.session_factory
    planned = await asyncio.to_thread(plan_all, factory, targets)
    report = await deliver_due(factory, targets, _http())
    report.planned = planned
    if report.anything_happened:
        log.info(
            "outbox: %d delivered, %d to retry, %d failed, %d pending (%d new deliveries planned)",
            report.delivered,
            report.retrying,
            report.failed,
            report.pending,
            report.planned,
        )
