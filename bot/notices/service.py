"""Notices inside the running app: the queue it enqueues on, the jobs it runs itself, and the sweep.

- No REDIS_URL (embedded default): a LocalQueue runs the job functions as tasks of the app, with an
  in-memory rate limiter; there is only this process, so nothing needs sharing.
- REDIS_URL: jobs go to arq's queue in Redis; the app also runs an arq worker in-process (unless
  NOTICE_WORKER_IN_APP=false), and `gridbot worker` processes can be added beside it.
Either way the sweep runs here every NOTICE_SWEEP_SECONDS, so a notice is planned and its deliveries
queued even when its own job was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from arq import ArqRedis
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from bot.channels.sender import RoomSender
from bot.notices.jobs import FUNCTIONS
from bot.notices.queue import ArqQueue, JobQueue, LocalQueue
from bot.notices.runtime import DeliveryPolicy, NoticeRuntime, limits_for
from bot.notices.worker import queue_name, quiet_arq_job_lines, supervise_in_app_worker, sweep_forever
from bot.settings import Settings, namespace_for

log = logging.getLogger(__name__)


class NoticeService:
    def __init__(self, settings: Settings, factory: sessionmaker[Session], senders: list[RoomSender]) -> None:
        self.settings = settings
        namespace = namespace_for(settings)
        limits = limits_for(senders, settings.notice_rate_limits)
        self._pool: ArqRedis | None = None
        self._local: LocalQueue | None = None
        queue: JobQueue
        limiter: RateLimiter
        if settings.redis_url:
            self._pool = ArqRedis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
            queue, limiter = ArqQueue(self._pool, queue_name(namespace)), RedisRateLimiter(self._pool)
        else:
            self._local = LocalQueue(
                FUNCTIONS, max_jobs=settings.notice_max_jobs, job_timeout=settings.notice_job_timeout_seconds
            )
            queue, limiter = self._local, MemoryRateLimiter()
        self.runtime = NoticeRuntime(
            factory=factory,
            senders={s.name: s for s in senders},
            limits=limits,
            limiter=limiter,
            queue=queue,
            namespace=namespace,
            policy=DeliveryPolicy.from_settings(settings),
        )
        if self._local is not None:
            self._local.ctx["notices"] = self.runtime
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(sweep_forever(self.runtime, self.settings.notice_sweep_seconds)))
        if self._pool is not None and self.settings.notice_worker_in_app:
            quiet_arq_job_lines()
            self._tasks.append(asyncio.create_task(supervise_in_app_worker(self.settings, self.runtime)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._local is not None:
            await self._local.close()
        if self._pool is not None:
            await self._pool.aclose()

    async def queue_plan(self, notice_id: int, publish_at: datetime) -> bool:
        """Queue the notice's planning for its publish time; False (logged) when the queue is unreachable.

        Nothing is lost then: the notice is stored and the sweep plans it once Redis answers again.
        """
        try:
            await self.runtime.enqueue_plan(notice_id, publish_at)
            return True
        except Exception as exc:
            log.error(
                "notice %d saved but not queued (%s: %s); the sweep plans it once the queue is reachable",
                notice_id,
                type(exc).__name__,
                exc,
            )
            return False
