"""The notice jobs: plan a notice into deliveries, deliver one, and the sweep that keeps the queue honest.

`deliver_notice` is safe to run any number of times for the same delivery: it claims the row before
sending and records each part only while its claim holds (grid/notice_deliveries.py). For the web chat the
transcript row commits with that record, so each group gets the notice exactly once even if the worker is
killed at any instruction; for external channels a part is sent, then recorded, so a crash in between
sends it again (at least once, with the same idempotency key) after the claim's lease runs out.

The database is the source of truth and Redis only carries work: `sweep` plans notices whose time has
come and re-queues every delivery that is due but has no job (Redis restarted, was down, or a worker died
after its job expired). Job ids make that re-queueing a no-op for work already queued.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from arq import Retry

from bot.channels.ratelimit import Budget, budgets_for, take_slot
from bot.channels.sender import LocalRoomSender, RoomSender, SendError, split_text
from bot.notices.runtime import DELIVER_JOB, PLAN_JOB, NoticeRuntime
from grid import notice_deliveries as deliveries
from grid.notice_deliveries import Claim, NoticeProgress, PlanResult, Skip
from grid.notices import NoticeStatus, get_notice
from storage.base import utcnow
from storage.engine import unit_of_work

log = logging.getLogger(__name__)

__all__ = ["DELIVER_JOB", "FUNCTIONS", "PLAN_JOB", "deliver_notice", "plan_notice", "sweep"]


def _runtime(ctx: dict[str, Any]) -> NoticeRuntime:
    return ctx["notices"]


def _defer(seconds: float) -> Retry:
    """Run this job again later; a little jitter so jobs deferred together do not return together."""
    return Retry(defer=max(seconds, 0.05) + random.uniform(0, 0.05 + seconds * 0.05))


# --- planning ------------------------------------------------------------------------------------


def _plan(rt: NoticeRuntime, notice_id: int) -> tuple[PlanResult, list[int]]:
    with unit_of_work(rt.factory) as session:
        result = deliveries.plan_notice(session, notice_id, utcnow())
        ids = deliveries.delivery_ids(session, notice_id) if result.status == NoticeStatus.SENDING else []
    return result, ids


async def plan_and_queue(rt: NoticeRuntime, notice_id: int) -> PlanResult:
    result, ids = await asyncio.to_thread(_plan, rt, notice_id)
    if result.created:
        log.info("notice %d planned: %d groups targeted, %d deliveries created", notice_id, result.targeted, result.created)
    queued = await rt.enqueue_deliveries(ids)
    if queued:
        log.info("notice %d: %d delivery jobs queued", notice_id, queued)
    return result


async def plan_notice(ctx: dict[str, Any], notice_id: int) -> str:
    """Job: at the notice's publish time, one delivery row per targeted group, and a job for each."""
    rt = _runtime(ctx)
    result = await plan_and_queue(rt, notice_id)
    if result.status == NoticeStatus.SCHEDULED:  # ran before its time (a clock ahead of the database's)
        publish_at = await asyncio.to_thread(_publish_at, rt, notice_id)
        raise _defer((publish_at - utcnow()).total_seconds())
    return f"{result.status}: {result.created} new of {result.targeted}"


def _publish_at(rt: NoticeRuntime, notice_id: int) -> datetime:
    with unit_of_work(rt.factory) as session:
        return get_notice(session, notice_id).publish_at


# --- delivering ----------------------------------------------------------------------------------


def _claim(rt: NoticeRuntime, delivery_id: int, token: str) -> Claim | Skip:
    with unit_of_work(rt.factory) as session:
        return deliveries.claim(session, delivery_id, token, utcnow(), rt.policy.lease)


def _write_local(rt: NoticeRuntime, sender: LocalRoomSender, claim: Claim, token: str, index: int, parts: list[str]) -> bool:
    """Web chat: the part's transcript row and its record commit together, or neither does."""
    with unit_of_work(rt.factory) as session:
        if not deliveries.record_part(session, claim.delivery_id, token, index, len(parts), utcnow(), rt.policy.lease):
            return False
        sender.write_to_room(session, claim.group_id, parts[index])
        return True


def _record_sent(rt: NoticeRuntime, claim: Claim, token: str, index: int, total: int) -> bool:
    with unit_of_work(rt.factory) as session:
        return deliveries.record_part(
            session, claim.delivery_id, token, index, total, utcnow(), rt.policy.lease, already_out=True
        )


async def _send_part(rt: NoticeRuntime, sender: RoomSender, claim: Claim, token: str, index: int, parts: list[str]) -> bool:
    if isinstance(sender, LocalRoomSender):
        return await asyncio.to_thread(_write_local, rt, sender, claim, token, index, parts)
    await sender.send_to_room(claim.group_id, parts[index], key=f"notice-delivery-{claim.delivery_id}-{index + 1}of{len(parts)}")
    recorded = await asyncio.to_thread(_record_sent, rt, claim, token, index, len(parts))
    if not recorded:
        log.warning("delivery %d part %d went out after its claim was lost; it may go out twice", claim.delivery_id, index + 1)
    return recorded


def _fail(rt: NoticeRuntime, claim: Claim, token: str, error: str, retry_in: float | None) -> int | None:
    retry_at = None if retry_in is None else utcnow() + timedelta(seconds=retry_in)
    with unit_of_work(rt.factory) as session:
        return deliveries.record_failure(session, claim.delivery_id, token, error, utcnow(), retry_at)


async def _failed(rt: NoticeRuntime, claim: Claim, token: str, exc: Exception) -> str:
    """Count the failed attempt; retry after a backoff (raises Retry) or give up for good (returns 'failed')."""
    attempt = claim.attempts + 1
    retryable = exc.retryable if isinstance(exc, SendError) else True
    error = f"{type(exc).__name__}: {exc}"
    retry_in = rt.policy.backoff(attempt) if retryable and attempt < rt.policy.max_attempts else None
    recorded = await asyncio.to_thread(_fail, rt, claim, token, error, retry_in)
    if recorded is None:
        return "lost_claim"
    if retry_in is None:
        log.warning(
            "notice delivery %d to %s failed for good after %d attempts: %s", claim.delivery_id, claim.group_id, attempt, error
        )
        rt.progress.note("failed")
        return "failed"
    log.info(
        "notice delivery %d to %s failed (attempt %d, %s); again in %.1f s",
        claim.delivery_id,
        claim.group_id,
        attempt,
        error,
        retry_in,
    )
    raise _defer(retry_in)


async def _confirm(rt: NoticeRuntime, budgets: list[Budget], slot: str) -> None:
    """Date the slot at the end of the send; if Redis cannot be told, the slot stays counted as in flight (safe)."""
    try:
        await rt.limiter.confirm(budgets, slot)
    except Exception as exc:
        log.warning(
            "could not confirm a rate-limit slot (%s: %s); it stays counted until its lease ends", type(exc).__name__, exc
        )


def _release(rt: NoticeRuntime, claim: Claim, token: str, wait: float) -> None:
    with unit_of_work(rt.factory) as session:
        deliveries.release(session, claim.delivery_id, token, utcnow() + timedelta(seconds=wait))


async def deliver_notice(ctx: dict[str, Any], delivery_id: int) -> str:
    """Job: send one notice to one group, part by part, within the channel's rate limits; idempotent."""
    rt = _runtime(ctx)
    token = str(ctx.get("job_id") or uuid.uuid4().hex)
    claimed = await asyncio.to_thread(_claim, rt, delivery_id, token)
    if isinstance(claimed, Skip):
        if claimed.final:
            return claimed.reason
        assert claimed.retry_at is not None
        raise _defer((claimed.retry_at - utcnow()).total_seconds())
    claim = claimed
    sender = rt.senders.get(claim.channel)
    if sender is None:
        return await _failed(rt, claim, token, SendError(f"no sender for channel {claim.channel!r}", retryable=False))
    try:
        parts = split_text(await asyncio.to_thread(rt.text_of, claim.notice_id), sender.max_text_chars)
    except Exception as exc:
        return await _failed(rt, claim, token, exc)
    limits = rt.limits[sender.name]
    budgets = budgets_for(limits, rt.namespace, sender.name, sender.account, claim.group_id)
    for index in range(claim.parts_sent, len(parts)):
        if limits.jitter_seconds > 0:
            await asyncio.sleep(random.uniform(0, limits.jitter_seconds))
        wait, slot = await take_slot(
            rt.limiter,
            budgets,
            max_wait=rt.policy.max_wait_seconds,
            jitter=limits.jitter_seconds,
            inflight_seconds=rt.policy.lease.total_seconds(),
        )
        if slot is None:
            await asyncio.to_thread(_release, rt, claim, token, wait)
            raise _defer(wait)
        try:
            recorded = await _send_part(rt, sender, claim, token, index, parts)
        except Exception as exc:  # a platform error, a timeout, the database: all are retried with backoff
            await _confirm(rt, budgets, slot)
            return await _failed(rt, claim, token, exc)
        await _confirm(rt, budgets, slot)
        if not recorded:
            return "lost_claim"  # cancelled meanwhile, or another job took over an expired claim
    rt.progress.note("sent")
    return "sent"


FUNCTIONS = {PLAN_JOB: plan_notice, DELIVER_JOB: deliver_notice}


# --- the sweep -----------------------------------------------------------------------------------


@dataclass
class SweepReport:
    planned: list[PlanResult] = field(default_factory=list)
    queued: int = 0
    due: int = 0
    progress: list[NoticeProgress] = field(default_factory=list)


def _due(rt: NoticeRuntime) -> tuple[list[int], list[NoticeProgress], list[int]]:
    now = utcnow()
    with unit_of_work(rt.factory) as session:
        notices = deliveries.due_notice_ids(session, now)
    with unit_of_work(rt.factory) as session:
        progress = deliveries.progress(session, now)
    with unit_of_work(rt.factory) as session:
        due = deliveries.due_delivery_ids(session, now, limit=100_000)
    return notices, progress, due


async def sweep(rt: NoticeRuntime) -> SweepReport:
    """Plan notices whose time has come, log progress, finish notices with nothing left, re-queue what is due.

    The database work happens first, so a Redis outage still lets notices be planned and finished; the
    queueing then raises (redis' ConnectionError) and the due deliveries simply wait for the next sweep.
    """
    report = SweepReport()
    notices, report.progress, due = await asyncio.to_thread(_due, rt)
    rt.progress.report(report.progress)
    report.due = len(due)
    for notice_id in notices:
        report.planned.append(await plan_and_queue(rt, notice_id))
    report.queued = await rt.enqueue_deliveries(due)
    if report.queued:
        log.info("notice sweep: %d due deliveries had no job and were queued", report.queued)
    return report
