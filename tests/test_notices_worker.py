"""`gridbot worker` as a real OS process on PostgreSQL and Redis: killed with SIGKILL in the middle of a
500-group fan-out and restarted, every group still gets the notice exactly once; a cancel in the middle
stops everything that had not gone out.

The limits are raised (50 messages a second instead of 20 a minute) so a fan-out takes seconds, and the
job timeout shortened, since arq re-runs a killed worker's jobs only after it (plus 10 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.notices.cli import _queue_plan
from bot.notices.worker import queue_name
from bot.settings import PROJECT_ROOT, Settings
from grid.notices import DeliveryStatus, Notice, NoticeStatus, NoticeTarget, cancel_notice, delivery_counts
from storage.engine import unit_of_work
from tests.conftest import REDIS_URL
from tests.notice_world import add_groups, engine_for, new_notice, notice_database, transcript_counts

GRIDBOT = str(Path(sys.executable).parent / "gridbot")
JOB_TIMEOUT = 4


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[str, sessionmaker[Session], str]]:
    namespace = f"gridbot-test-{uuid.uuid4().hex[:8]}"
    with notice_database("postgresql", tmp_path) as url:
        engine, factory = engine_for(url)
        yield url, factory, namespace
        engine.dispose()
    client = redis.Redis.from_url(REDIS_URL)
    for pattern in (f"{namespace}*", f"arq:*{namespace}*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.close()


class Workers:
    """Starts `gridbot worker` processes and makes sure none outlives the test."""

    def __init__(self, url: str, namespace: str, log_dir: Path, per_second: int) -> None:
        limits = {"webchat": {"per_account": per_second, "per_group": None, "window_seconds": 1, "jitter_seconds": 0}}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "DATABASE_URL", "NOTICE_"))}
        self.env |= {
            "DATABASE_URL": url,
            "REDIS_URL": REDIS_URL,
            "NOTICE_NAMESPACE": namespace,
            "NOTICE_JOB_TIMEOUT_SECONDS": str(JOB_TIMEOUT),
            "NOTICE_MAX_JOBS": "10",
            "NOTICE_POLL_SECONDS": "0.05",
            "NOTICE_SWEEP_SECONDS": "1",
            "NOTICE_RATE_LIMITS": json.dumps(limits),
            "HF_HUB_OFFLINE": "1",
        }
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen([GRIDBOT, "worker"], stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=PROJECT_ROOT)
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.log_dir.glob("worker-*.log")))

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers(world: tuple[str, sessionmaker[Session], str], tmp_path: Path) -> Iterator[Callable[[int], Workers]]:
    made: list[Workers] = []

    def make(per_second: int) -> Workers:
        made.append(Workers(world[0], world[2], tmp_path, per_second))
        return made[-1]

    yield make
    for group in made:
        group.stop_all()


def _counts(factory: sessionmaker[Session], notice_id: int) -> dict[str, int]:
    with factory() as session:
        return delivery_counts(session, [notice_id])[notice_id]


def _jobs_left(namespace: str) -> int:
    """The namespace's notice jobs queued (at any time, rate-limit deferrals included) or running in a worker."""
    with redis.Redis.from_url(REDIS_URL) as client:
        return int(client.zcard(queue_name(namespace))) + len(client.keys(f"arq:in-progress:{namespace}:*"))


def _wait(predicate: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{logs()}")
        time.sleep(0.1)


def _fan_out(world: tuple[str, sessionmaker[Session], str], groups: int) -> tuple[int, list[str]]:
    """A notice to `groups` groups of grid-5 (group-5 and new ones), queued the way the app queues it."""
    url, factory, namespace = world
    ids = ["group-5", *add_groups(factory, groups - 1)]
    notice_id = new_notice(factory, NoticeTarget(grids=("grid-5",)), title=f"社区疫苗接种日-{namespace[-8:]}")
    with factory() as session:
        publish_at = session.get(Notice, notice_id).publish_at  # type: ignore[union-attr]
    asyncio.run(_queue_plan(Settings(database_url=url, redis_url=REDIS_URL, notice_namespace=namespace), notice_id, publish_at))
    return notice_id, ids


def test_worker_killed_mid_fanout_then_restarted_sends_each_group_exactly_once(
    world: tuple[str, sessionmaker[Session], str], workers: Callable[[int], Workers]
) -> None:
    _, factory, _ = world
    notice_id, groups = _fan_out(world, 500)
    pool = workers(50)
    first = pool.start()
    _wait(lambda: _counts(factory, notice_id)["sent"] >= 150, 60, "150 groups sent", pool.logs)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    at_kill = _counts(factory, notice_id)
    assert at_kill["sent"] < 500, "the fan-out finished before the kill: nothing was tested"

    pool.start()
    # Claims of the killed worker run out after JOB_TIMEOUT; arq re-runs its jobs JOB_TIMEOUT + 10 s after they began.
    _wait(lambda: _counts(factory, notice_id)["sent"] == 500, 120, "all 500 groups sent", pool.logs)
    _wait(lambda: _status(factory, notice_id) == NoticeStatus.DONE, 10, "the notice to be done", pool.logs)

    received = transcript_counts(factory)
    assert {group: received.get(group, 0) for group in groups} == dict.fromkeys(groups, 1), (at_kill, pool.logs())
    final = _counts(factory, notice_id)
    assert final[DeliveryStatus.SENT] == 500 and sum(final.values()) == 500
    print(f"\nat SIGKILL: {at_kill}; after restart: {final}")


def _status(factory: sessionmaker[Session], notice_id: int) -> str:
    with factory() as session:
        return session.scalars(select(Notice.status).where(Notice.id == notice_id)).one()


def test_cancel_mid_fanout_with_a_worker_process_stops_the_rest(
    world: tuple[str, sessionmaker[Session], str], workers: Callable[[int], Workers]
) -> None:
    _, factory, namespace = world
    notice_id, groups = _fan_out(world, 300)
    pool = workers(30)
    pool.start()
    _wait(lambda: _counts(factory, notice_id)["sent"] >= 60, 60, "60 groups sent", pool.logs)
    with unit_of_work(factory) as session:
        _, stopped = cancel_notice(session, notice_id, "街道办")
    sent_at_cancel = _counts(factory, notice_id)["sent"]
    # The worker keeps running jobs for the cancelled deliveries: they must all stop. Once it has worked through
    # every job of the notice (none queued, none running), whatever they were going to send has been sent.
    _wait(lambda: _jobs_left(namespace) == 0, 60, "the worker to run every queued job", pool.logs)
    final = _counts(factory, notice_id)
    assert final["sent"] == sent_at_cancel < 300, pool.logs()
    assert final["cancelled"] == stopped == 300 - sent_at_cancel
    received = transcript_counts(factory)
    assert sum(received.get(group, 0) for group in groups) == sent_at_cancel
    assert max(received.get(group, 0) for group in groups) == 1
    assert _status(factory, notice_id) == NoticeStatus.CANCELLED
