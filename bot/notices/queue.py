"""The job queue notices go through: arq over Redis, or the same job functions as tasks of this process.

Job functions are arq's shape, `async def job(ctx, *args)`, and ask to run again later by raising
`arq.Retry(defer=…)`, so they run unchanged on either queue. A job id names its work (`…:delivery:42`):
enqueueing an id that is already queued or running does nothing, which is what lets a sweep re-enqueue
everything that should be in the queue without ever doubling a job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from arq import ArqRedis, Retry
from arq.constants import job_key_prefix

from storage.base import utcnow

log = logging.getLogger(__name__)

JobFunction = Callable[..., Awaitable[Any]]
# A job outlives any backoff or rate-limit wait: arq drops a job key older than this, and the sweep re-enqueues it.
JOB_EXPIRES = timedelta(days=7)


class JobQueue(Protocol):
    async def enqueue(self, function: str, *args: Any, job_id: str, run_at: datetime | None = None) -> bool:
        """Queue a job unless one with this id is queued or running; True when queued now."""
        ...

    async def absent(self, job_ids: Sequence[str]) -> list[str]:
        """The ids among these that are neither queued nor running."""
        ...


class ArqQueue:
    def __init__(self, pool: ArqRedis, queue_name: str) -> None:
        self.pool = pool
        self.queue_name = queue_name

    async def enqueue(self, function: str, *args: Any, job_id: str, run_at: datetime | None = None) -> bool:
        now = utcnow()
        defer = run_at if run_at is not None and run_at > now else None
        expires = JOB_EXPIRES + (defer - now if defer is not None else timedelta(0))
        job = await self.pool.enqueue_job(
            function, *args, _job_id=job_id, _queue_name=self.queue_name, _defer_until=defer, _expires=expires
        )
        return job is not None

    async def absent(self, job_ids: Sequence[str]) -> list[str]:
        if not job_ids:
            return []
        async with self.pool.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(job_key_prefix + job_id)
            found = await pipe.execute()
        return [job_id for job_id, exists in zip(job_ids, found, strict=True) if not exists]


class LocalQueue:
    """The embedded default's queue: jobs are tasks of this process, at most `max_jobs` running at once.

    Nothing survives the process, and nothing needs to: the sweep re-enqueues from the database whatever is
    still due after a restart.
    """

    def __init__(self, functions: Mapping[str, JobFunction], *, max_jobs: int = 10, job_timeout: float = 60.0) -> None:
        self._functions = dict(functions)
        self._slots = asyncio.Semaphore(max_jobs)
        self._timeout = job_timeout
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self.ctx: dict[str, Any] = {}

    async def enqueue(self, function: str, *args: Any, job_id: str, run_at: datetime | None = None) -> bool:
        if job_id in self._jobs:
            return False
        if function not in self._functions:
            raise KeyError(f"no job function {function!r}")
        delay = max((run_at - utcnow()).total_seconds(), 0.0) if run_at is not None else 0.0
        self._jobs[job_id] = asyncio.create_task(self._run(job_id, function, args, delay), name=job_id)
        return True

    async def absent(self, job_ids: Sequence[str]) -> list[str]:
        return [job_id for job_id in job_ids if job_id not in self._jobs]

    async def _run(self, job_id: str, function: str, args: tuple[Any, ...], delay: float) -> None:
        try:
            job_try = 0
            while True:
                if delay > 0:
                    await asyncio.sleep(delay)
                job_try += 1
                ctx = {**self.ctx, "job_id": job_id, "job_try": job_try, "enqueue_time": time.time()}
                try:
                    async with self._slots:
                        await asyncio.wait_for(self._functions[function](ctx, *args), self._timeout)
                    return
                except Retry as again:
                    delay = (again.defer_score or 0) / 1000
                except Exception:
                    log.exception("job %s (%s) failed", job_id, function)
                    return
        finally:
            self._jobs.pop(job_id, None)

    @property
    def size(self) -> int:
        return len(self._jobs)

    async def close(self) -> None:
        tasks = list(self._jobs.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
