"""The arq worker that runs notice jobs: `gridbot worker` as a process of its own, or inside the app.

A separate worker process is how sending moves off the app (several workers share one queue through
Redis); the app runs one in-process too unless NOTICE_WORKER_IN_APP=false. Both use the same settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from typing import Any

from arq import Worker, func
from arq.connections import RedisSettings

from bot.channels.ratelimit import RedisRateLimiter
from bot.channels.webchat import WebChatChannel
from bot.notices.jobs import DELIVER_JOB, PLAN_JOB, deliver_notice, plan_notice, sweep
from bot.notices.queue import ArqQueue
from bot.notices.runtime import DeliveryPolicy, NoticeRuntime, limits_for
from bot.settings import Settings, namespace_for
from storage.engine import make_engine, make_session_factory

log = logging.getLogger(__name__)

# A job's try counter also counts rate-limit deferrals and restarts; real failures are counted in the database.
MAX_TRIES = 1_000_000


def queue_name(namespace: str) -> str:
    return f"{namespace}:notices"


def worker_kwargs(settings: Settings, namespace: str) -> dict[str, Any]:
    """arq Worker arguments shared by the standalone and the in-app worker."""
    if not settings.redis_url:
        raise ValueError("the notice worker needs REDIS_URL (without it the app runs notice jobs itself)")
    timeout = settings.notice_job_timeout_seconds
    return {
        "functions": [
            func(plan_notice, name=PLAN_JOB, timeout=timeout, max_tries=MAX_TRIES),
            func(deliver_notice, name=DELIVER_JOB, timeout=timeout, max_tries=MAX_TRIES),
        ],
        "queue_name": queue_name(namespace),
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "max_jobs": settings.notice_max_jobs,
        "job_timeout": timeout,
        "keep_result": 0,  # the database records outcomes; a kept result would also block re-queueing the id
        "max_tries": MAX_TRIES,
        "poll_delay": settings.notice_poll_seconds,
        "health_check_interval": 30,
    }


def quiet_arq_job_lines() -> None:
    """arq logs two INFO lines per job (tens of thousands in a fan-out); our own progress lines say more."""
    job_log = logging.getLogger("arq.worker")
    if job_log.level == logging.NOTSET:
        job_log.setLevel(logging.WARNING)


async def sweep_forever(runtime: NoticeRuntime, interval: float) -> None:
    """Run the sweep every `interval` seconds; a round that cannot reach Redis or the database is logged once."""
    failing = False
    while True:
        try:
            await sweep(runtime)
            if failing:
                log.info("notice sweep works again: due deliveries are being queued")
            failing = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not failing:
                log.error(
                    "notice sweep failed (%s: %s); deliveries stay pending in the database and go out once it works",
                    type(exc).__name__,
                    exc,
                )
            failing = True
        await asyncio.sleep(interval)


def standalone_worker(settings: Settings) -> Worker:
    """`gridbot worker`: its own database engine and web chat sender, a sweep beside the jobs, signals handled."""
    namespace = namespace_for(settings)
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    webchat = WebChatChannel(factory, settings.bot_name)
    limits = limits_for([webchat], settings.notice_rate_limits)

    async def startup(ctx: dict[str, Any]) -> None:
        pool = ctx["redis"]
        runtime = NoticeRuntime(
            factory=factory,
            senders={webchat.name: webchat},
            limits=limits,
            limiter=RedisRateLimiter(pool),
            queue=ArqQueue(pool, queue_name(namespace)),
            namespace=namespace,
            policy=DeliveryPolicy.from_settings(settings),
        )
        ctx["notices"] = runtime
        ctx["notice_sweep"] = asyncio.create_task(sweep_forever(runtime, settings.notice_sweep_seconds))
        log.info("notice worker started: queue %s, up to %d jobs at once", queue_name(namespace), settings.notice_max_jobs)

    async def shutdown(ctx: dict[str, Any]) -> None:
        task = ctx.get("notice_sweep")
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        engine.dispose()

    return Worker(**worker_kwargs(settings, namespace), on_startup=startup, on_shutdown=shutdown)


# arq 0.28 closes its pool with redis-py's deprecated close(); the warning is arq's, not something to act on.
ARQ_CLOSE_WARNING = "Call to deprecated close"


async def _close(worker: Worker) -> None:
    """Close a worker whatever state Redis is in; only a cancellation of the caller itself goes on up."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=ARQ_CLOSE_WARNING, category=DeprecationWarning)
            await worker.close()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except Exception as exc:  # Redis down at shutdown: nothing left to close cleanly, and shutdown must go on
        log.info("notice worker closed without Redis: %s", exc)


async def supervise_in_app_worker(settings: Settings, runtime: NoticeRuntime, retry_seconds: float = 10.0) -> None:
    """The app's own arq worker, restarted after Redis goes away (arq itself gives up after a few retries)."""
    while True:
        worker = Worker(**worker_kwargs(settings, runtime.namespace), handle_signals=False, ctx={"notices": runtime})
        try:
            await worker.async_run()
        except asyncio.CancelledError:
            await _close(worker)
            raise
        except Exception as exc:
            log.error(
                "in-app notice worker stopped (%s: %s); deliveries wait in the database; retrying in %.0f s",
                type(exc).__name__,
                exc,
                retry_seconds,
            )
        await _close(worker)
        await asyncio.sleep(retry_seconds)
