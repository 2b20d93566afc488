"""What notice jobs need at run time, built once per process from settings: database, senders, limits, queue.

Jobs find it in their context as ctx["notices"], whichever queue runs them (arq worker, the app's in-process
arq worker, or the embedded LocalQueue).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from bot.channels.ratelimit import RateLimiter
from bot.channels.sender import RoomSender, SendLimits
from bot.notices.queue import JobQueue
from bot.notices.render import notice_text
from bot.settings import Settings
from grid.notice_deliveries import NoticeProgress
from grid.notices import DeliveryStatus, NoticeStatus, get_notice
from storage.engine import unit_of_work

log = logging.getLogger(__name__)

PLAN_JOB = "plan_notice"
DELIVER_JOB = "deliver_notice"
_ENQUEUE_CONCURRENCY = 200


def limits_for(senders: Iterable[RoomSender], overrides: Mapping[str, Mapping[str, object]]) -> dict[str, SendLimits]:
    """Each channel's own limits, with the NOTICE_RATE_LIMITS overrides (settings.notice_rate_limits: parsed and
    checked when settings load, so a malformed one has already stopped start-up with why)."""
    limits = {}
    for sender in senders:
        try:
            limits[sender.name] = sender.limits.overridden(overrides.get(sender.name, {}))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"NOTICE_RATE_LIMITS for {sender.name}: {exc}") from None
    return limits


def plan_job_id(namespace: str, notice_id: int) -> str:
    """arq keeps job ids in one keyspace for all queues, so ours carry the namespace too."""
    return f"{namespace}:notice-plan:{notice_id}"


def delivery_job_id(namespace: str, delivery_id: int) -> str:
    return f"{namespace}:notice-delivery:{delivery_id}"


@dataclass(frozen=True)
class DeliveryPolicy:
    """Timing of delivery jobs; every figure comes from settings (tests shrink them)."""

    lease: timedelta  # how long a claim holds without news from its job: the job timeout
    max_wait_seconds: float  # longest a job sleeps for a rate-limit slot before giving its worker slot back
    retry_first_seconds: float
    retry_max_seconds: float
    max_attempts: int

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            lease=timedelta(seconds=settings.notice_job_timeout_seconds),
            max_wait_seconds=settings.notice_max_wait_seconds,
            retry_first_seconds=settings.notice_retry_first_seconds,
            retry_max_seconds=settings.notice_retry_max_seconds,
            max_attempts=settings.notice_max_attempts,
        )

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt `attempts` + 1: doubling from the first delay, capped, ±10 % jitter."""
        base = min(self.retry_first_seconds * 2 ** min(max(attempts - 1, 0), 30), self.retry_max_seconds)
        return base * random.uniform(0.9, 1.1)


class ProgressLog:
    """Logs a fan-out as it goes: this process's sends every 100 or 10 s, and the database's counts per notice."""

    def __init__(self, every: int = 100, seconds: float = 10.0) -> None:
        self._every = every
        self._seconds = seconds
        self._counts: dict[str, int] = {}
        self._since = time.monotonic()
        self._unlogged = 0
        self._last_report: dict[int, tuple[str, dict[str, int]]] = {}

    def note(self, outcome: str) -> None:
        self._counts[outcome] = self._counts.get(outcome, 0) + 1
        self._unlogged += 1
        if self._unlogged >= self._every or time.monotonic() - self._since >= self._seconds:
            done = ", ".join(f"{n} {what}" for what, n in sorted(self._counts.items()))
            log.info("notice deliveries by this process so far: %s", done)
            self._unlogged, self._since = 0, time.monotonic()

    def report(self, progress: Iterable[NoticeProgress]) -> None:
        for item in progress:
            snapshot = (item.status, item.counts)
            if self._last_report.get(item.notice_id) == snapshot:
                continue
            self._last_report[item.notice_id] = snapshot
            c = item.counts
            what = "done" if item.status == NoticeStatus.DONE else "sending"
            log.info(
                "notice %d 「%s」 %s: %d/%d sent, %d failed, %d cancelled, %d expired, %d to go",
                item.notice_id,
                item.title,
                what,
                c[DeliveryStatus.SENT],
                item.total,
                c[DeliveryStatus.FAILED],
                c[DeliveryStatus.CANCELLED],
                c[DeliveryStatus.EXPIRED],
                item.active,
            )
            if item.status == NoticeStatus.DONE:
                self._last_report.pop(item.notice_id, None)


@dataclass
class NoticeRuntime:
    factory: sessionmaker[Session]
    senders: Mapping[str, RoomSender]
    limits: Mapping[str, SendLimits]
    limiter: RateLimiter
    queue: JobQueue
    namespace: str
    policy: DeliveryPolicy
    progress: ProgressLog = field(default_factory=ProgressLog)
    _texts: OrderedDict[int, str] = field(default_factory=OrderedDict)

    def plan_job_id(self, notice_id: int) -> str:
        return plan_job_id(self.namespace, notice_id)

    def delivery_job_id(self, delivery_id: int) -> str:
        return delivery_job_id(self.namespace, delivery_id)

    def text_of(self, notice_id: int) -> str:
        """The notice's message; cached, since what a notice says never changes once created."""
        if notice_id in self._texts:
            self._texts.move_to_end(notice_id)
            return self._texts[notice_id]
        with unit_of_work(self.factory) as session:
            text = notice_text(get_notice(session, notice_id))
        self._texts[notice_id] = text
        if len(self._texts) > 256:
            self._texts.popitem(last=False)
        return text

    async def enqueue_plan(self, notice_id: int, publish_at: datetime) -> bool:
        return await self.queue.enqueue(PLAN_JOB, notice_id, job_id=self.plan_job_id(notice_id), run_at=publish_at)

    async def enqueue_deliveries(self, delivery_ids: Iterable[int]) -> int:
        """Queue a job per delivery not already queued or running; returns how many were queued now."""
        by_job = {self.delivery_job_id(d): d for d in delivery_ids}
        missing = [job for chunk in _chunks(list(by_job), 1000) for job in await self.queue.absent(chunk)]
        queued = 0
        for chunk in _chunks(missing, _ENQUEUE_CONCURRENCY):
            results = await asyncio.gather(*(self.queue.enqueue(DELIVER_JOB, by_job[j], job_id=j) for j in chunk))
            queued += sum(results)
        return queued


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
