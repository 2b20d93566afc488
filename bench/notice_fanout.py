"""Notice fan-out to 10,000 groups: throughput of the pipeline itself, and proof that rate limits hold.

    make bench-notices      (or: .venv/bin/python bench/notice_fanout.py --groups 10000)

Everything is real (database, Redis, arq queue and worker, claims, limiter) except the channel, which is
stubbed at the network edge: its send_to_room records a timestamp instead of calling a platform.

1. planning: one delivery row per group (rows/s);
2. delivery with rate limits off, through the arq queue and an in-process arq worker (deliveries/s),
   beside a baseline measured in the same run: a naive sequential loop that sends and marks each row;
3. delivery with limits on, over a scaled window (default 1 s standing for 60 s, so 20 messages a second
   stand for 20 a minute): the most messages seen in any window per account and per group, at the edge.

SQLite in a temporary folder by default (`--database-url postgresql://…` for PostgreSQL); Redis from
REDIS_URL or redis://127.0.0.1:6379/0, under a namespace of its own that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arq import ArqRedis, Worker
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.ratelimit import RedisRateLimiter
from bot.channels.sender import SendLimits, split_text
from bot.notices.queue import ArqQueue
from bot.notices.runtime import DeliveryPolicy, NoticeRuntime
from bot.notices.worker import queue_name, worker_kwargs
from bot.settings import Settings
from grid import notice_deliveries as deliveries
from grid.demo import load_geography
from grid.geography import ChatGroup
from grid.notices import DeliveryStatus, NoticeDelivery, NoticeDraft, NoticeTarget, create_notice
from storage.base import utcnow
from storage.engine import make_engine, make_session_factory, unit_of_work
from storage.migrate import upgrade

console = Console()
GRIDS = ("grid-1", "grid-2", "grid-3", "grid-4")


@dataclass
class StubSender:
    """The network edge: what a platform would have been asked to post, and when."""

    name: str = "webchat"
    account: str = "bench-account"
    max_text_chars: int = 4000
    limits: SendLimits = field(default_factory=SendLimits)
    sent: list[tuple[float, str]] = field(default_factory=list)

    async def send_to_room(self, room_id: str, text: str, *, key: str) -> None:
        self.sent.append((time.monotonic(), room_id))


def max_in_window(times: list[float], window: float) -> int:
    ordered, best, start = sorted(times), 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def prepare(database_url: str, groups: int) -> sessionmaker[Session]:
    upgrade(database_url)
    factory = make_session_factory(make_engine(database_url))
    with unit_of_work(factory) as session:
        load_geography(session)
        existing = session.scalar(select(func.count()).select_from(ChatGroup).where(ChatGroup.id.like("bench-%"))) or 0
    batch: list[dict[str, Any]] = []
    for i in range(existing, groups):
        batch.append({"id": f"bench-{i:05d}", "name": f"便民群{i}", "grid_code": GRIDS[i % len(GRIDS)], "tags": []})
    for start in range(0, len(batch), 2000):
        with unit_of_work(factory) as session:
            session.execute(ChatGroup.__table__.insert(), batch[start : start + 2000])
    return factory


def new_notice(factory: sessionmaker[Session], title: str, body: str, target: NoticeTarget) -> int:
    with unit_of_work(factory) as session:
        return create_notice(session, NoticeDraft(title=title, body=body, author="bench", target=target)).id


def plan(factory: sessionmaker[Session], notice_id: int) -> tuple[int, float]:
    started = time.perf_counter()
    with unit_of_work(factory) as session:
        result = deliveries.plan_notice(session, notice_id, utcnow())
    return result.created, time.perf_counter() - started


def delivery_ids(factory: sessionmaker[Session], notice_id: int) -> list[int]:
    """The notice's deliveries still to send."""
    with factory() as session:
        query = select(NoticeDelivery.id).where(
            NoticeDelivery.notice_id == notice_id, NoticeDelivery.status.in_(DeliveryStatus.ACTIVE)
        )
        return list(session.scalars(query.order_by(NoticeDelivery.id)))


def sent_count(factory: sessionmaker[Session], notice_id: int) -> int:
    with factory() as session:
        query = select(func.count()).where(NoticeDelivery.notice_id == notice_id, NoticeDelivery.status == DeliveryStatus.SENT)
        return session.scalar(query) or 0


async def pipeline(
    factory: sessionmaker[Session],
    settings: Settings,
    pool: ArqRedis,
    namespace: str,
    notice_id: int,
    sender: StubSender,
    *,
    max_jobs: int,
    label: str,
) -> tuple[float, float]:
    """Queue a job per delivery and run them with an in-process arq worker; returns (queueing s, total s)."""
    runtime = NoticeRuntime(
        factory=factory,
        senders={sender.name: sender},
        limits={sender.name: sender.limits},
        limiter=RedisRateLimiter(pool),
        queue=ArqQueue(pool, queue_name(namespace)),
        namespace=namespace,
        policy=DeliveryPolicy.from_settings(settings),
    )
    kwargs = worker_kwargs(settings, namespace) | {"max_jobs": max_jobs, "poll_delay": settings.notice_poll_seconds}
    worker = Worker(**kwargs, handle_signals=False, ctx={"notices": runtime})
    ids = delivery_ids(factory, notice_id)
    started = time.perf_counter()
    queued = await runtime.enqueue_deliveries(ids)
    queueing = time.perf_counter() - started
    console.print(f"  {label}: {queued} jobs queued in {queueing:.1f} s")
    task = asyncio.create_task(worker.async_run())
    last = 0
    while True:
        await asyncio.sleep(1.0)
        done = await asyncio.to_thread(sent_count, factory, notice_id)
        elapsed = time.perf_counter() - started
        console.print(f"  {label}: {done}/{len(ids)} sent after {elapsed:.0f} s ({done - last}/s in the last second)")
        last = done
        if done >= len(ids) or task.done():
            break
    total = time.perf_counter() - started
    await worker.close()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return queueing, total


async def baseline(factory: sessionmaker[Session], notice_id: int, sender: StubSender) -> float:
    """The naive way: one row after the other, send, then mark it sent in its own transaction."""
    started = time.perf_counter()
    rows = delivery_ids(factory, notice_id)

    def mark(delivery_id: int) -> None:
        with unit_of_work(factory) as session:
            session.execute(
                update(NoticeDelivery).where(NoticeDelivery.id == delivery_id).values(status=DeliveryStatus.SENT, parts_sent=1)
            )

    with factory() as session:
        query = select(NoticeDelivery.id, NoticeDelivery.group_id).where(NoticeDelivery.notice_id == notice_id)
        groups = dict(session.execute(query).all())
    for index, delivery_id in enumerate(rows, start=1):
        await sender.send_to_room(groups[delivery_id], "…", key=str(delivery_id))
        mark(delivery_id)
        if index % 2000 == 0:
            console.print(f"  baseline: {index}/{len(rows)} sent after {time.perf_counter() - started:.0f} s")
    return time.perf_counter() - started


async def run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("arq").setLevel(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="gridbot-notice-bench-"))
    database_url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    namespace = f"gridbot-bench-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        database_url=database_url,
        redis_url=args.redis_url,
        notice_namespace=namespace,
        notice_job_timeout_seconds=60,
        notice_max_wait_seconds=5,
        notice_poll_seconds=args.poll,
    )
    console.print(f"database {database_url.split('@')[-1]}, redis {args.redis_url}, {args.groups} groups")
    started = time.perf_counter()
    factory = await asyncio.to_thread(prepare, database_url, args.groups)
    console.print(f"map ready in {time.perf_counter() - started:.1f} s")
    pool = ArqRedis.from_url(args.redis_url)
    results: dict[str, Any] = {}
    try:
        body = "今冬城乡居民医保开始缴费，截止12月31日。可通过微信、支付宝或社区服务中心缴纳。"
        target = NoticeTarget(grids=GRIDS)

        console.print("[bold]1. planning[/bold]")
        notice = new_notice(factory, "医保缴费提醒", body, target)
        rows, seconds = plan(factory, notice)
        results["plan"] = (rows, seconds)
        console.print(f"  planned {rows} deliveries in {seconds:.2f} s")

        console.print("[bold]2. delivery, rate limits off[/bold]")
        off = StubSender(limits=SendLimits(per_account=None, per_group=None, jitter_seconds=0))
        common = {"factory": factory, "settings": settings, "pool": pool, "namespace": namespace, "max_jobs": args.max_jobs}
        queueing, total = await pipeline(notice_id=notice, sender=off, label="pipeline", **common)
        results["pipeline"] = (len(off.sent), queueing, total)
        second = new_notice(factory, "医保缴费提醒（基线）", body, target)
        plan(factory, second)
        naive = StubSender(limits=SendLimits(per_account=None, per_group=None, jitter_seconds=0))
        results["baseline"] = (len(delivery_ids(factory, second)), await baseline(factory, second, naive))

        console.print(f"[bold]3. delivery, limits on, window {args.window:g} s standing for 60 s[/bold]")
        limited = StubSender(
            max_text_chars=60,
            limits=SendLimits(
                per_account=args.per_account, per_group=1, window_seconds=args.window, jitter_seconds=0.02 * args.window
            ),
        )
        third = new_notice(factory, "冬季供暖通知", body * 2, NoticeTarget(grids=("grid-1",)))
        with unit_of_work(factory) as session:
            allowed = session.scalars(
                select(ChatGroup.id).where(ChatGroup.grid_code == "grid-1").order_by(ChatGroup.id).limit(args.limited_groups)
            ).all()
        plan(factory, third)
        with unit_of_work(factory) as session:  # keep the limited run short: the rest of grid-1 is cancelled
            session.execute(
                update(NoticeDelivery)
                .where(NoticeDelivery.notice_id == third, NoticeDelivery.group_id.not_in(allowed))
                .values(status=DeliveryStatus.CANCELLED)
            )
        parts = len(split_text("【惠民信息】冬季供暖通知\n" + body * 2, 60))
        # Each job holds its worker slot while its group's parts wait a window apart: more jobs keep the account busy.
        limited_common = common | {"max_jobs": args.limited_max_jobs}
        _, limited_total = await pipeline(notice_id=third, sender=limited, label="limited", **limited_common)
        times = [t for t, _ in limited.sent]
        per_group = max(max_in_window([t for t, room in limited.sent if room == group], args.window) for group in allowed)
        results["limited"] = (len(times), parts, limited_total, max_in_window(times, args.window), per_group)
    finally:
        keys = [k async for k in pool.scan_iter(match=f"*{namespace}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await pool.delete(*keys[start : start + 1000])
        await pool.aclose()
    report(args, results)


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    rows, plan_s = results["plan"]
    sent, queue_s, total_s = results["pipeline"]
    base_n, base_s = results["baseline"]
    messages, parts, limited_s, worst_account, worst_group = results["limited"]
    table = Table(title=f"notice fan-out, {args.groups} groups, channel stubbed at the network edge")
    for column in ("what", "figure", "beside"):
        table.add_column(column)
    table.add_row("planning", f"{rows / plan_s:,.0f} rows/s ({rows} in {plan_s:.2f} s)", "")
    table.add_row(
        "pipeline, limits off",
        f"{sent / total_s:,.0f} deliveries/s ({sent} in {total_s:.1f} s, queueing {queue_s:.1f} s of it)",
        f"baseline loop {base_n / base_s:,.0f}/s ({base_n} in {base_s:.1f} s)",
    )
    table.add_row(
        f"limits on ({args.per_account} per account, 1 per group, per {args.window:g} s)",
        f"max {worst_account} messages in any {args.window:g} s window per account; max {worst_group} per group",
        f"{messages} messages ({parts} parts per group) in {limited_s:.1f} s = {messages / limited_s:.1f}/s "
        f"vs the limit {args.per_account / args.window:.1f}/s",
    )
    console.print(table)
    held = worst_account <= args.per_account and worst_group <= 1
    console.print("[green]limits held[/green]" if held else "[red]LIMITS EXCEEDED[/red]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--max-jobs", type=int, default=10, help="jobs the arq worker runs at once")
    parser.add_argument("--poll", type=float, default=0.01, help="seconds between the arq worker's looks at the queue")
    parser.add_argument("--window", type=float, default=1.0, help="seconds standing for the 60 s window in phase 3")
    parser.add_argument("--per-account", type=int, default=20, help="messages per window per account in phase 3")
    parser.add_argument("--limited-groups", type=int, default=200, help="groups in phase 3 (each gets the notice in parts)")
    parser.add_argument("--limited-max-jobs", type=int, default=40, help="jobs the arq worker runs at once in phase 3")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
