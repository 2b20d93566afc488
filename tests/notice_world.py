"""Support for the notice tests: a small map of their own, senders at the network edge, a queue runner.

Notice tests write their own databases (not the session's demo database) because they add places and tags
and fill transcripts with hundreds of rows other tests would then see.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.ratelimit import MemoryRateLimiter, RateLimiter
from bot.channels.sender import SendError, SendLimits
from bot.channels.webchat import WebChatChannel, WebChatMessage
from bot.notices.jobs import FUNCTIONS
from bot.notices.queue import LocalQueue
from bot.notices.runtime import DeliveryPolicy, NoticeRuntime
from grid.demo import load_geography
from grid.geography import ChatGroup, Grid, Region
from grid.notices import NoticeDraft, NoticeTarget, create_notice
from storage.engine import make_engine, make_session_factory, unit_of_work
from storage.migrate import upgrade
from tests.conftest import POSTGRES_URL
from tests.servers import fresh_postgres

# The demo map (one street, communities 1-2, grids 1-4, groups demo-grid-1..4) plus a second street with
# one community, one grid and one group, and tags on two groups.
EXTRA_REGIONS = [("street-2", "安康街道", "street", "demo-district"), ("community-3", "安康社区", "community", "street-2")]
EXTRA_GRIDS = [("grid-5", "安康社区第一网格", "community-3")]
EXTRA_GROUPS = [("group-5", "安康小区居民群", "grid-5")]
TAGS = {"demo-grid-1": ["老年人多"], "group-5": ["老年人多", "学校周边"]}


@contextmanager
def notice_database(backend: str, tmp_path: Any) -> Iterator[str]:
    """A migrated database with the demo map and the extra places, on SQLite or a fresh PostgreSQL."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / f'notices-{uuid.uuid4().hex[:6]}.db'}"
        _prepare(url)
        yield url
    else:
        with fresh_postgres(POSTGRES_URL) as url:
            _prepare(url)
            yield url


def _prepare(url: str) -> None:
    upgrade(url)
    engine = make_engine(url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            load_geography(session)
            for code, name, level, parent in EXTRA_REGIONS:
                session.merge(Region(code=code, name=name, level=level, parent_code=parent))
                session.flush()
            for code, name, community in EXTRA_GRIDS:
                session.merge(Grid(code=code, name=name, community_code=community))
            session.flush()
            for gid, name, grid in EXTRA_GROUPS:
                session.merge(ChatGroup(id=gid, name=name, grid_code=grid))
            session.flush()
            for group in session.scalars(select(ChatGroup)):  # these tags only, whatever the demo file says
                group.tags = TAGS.get(group.id, [])
    finally:
        engine.dispose()


def add_groups(factory: sessionmaker[Session], count: int, grid: str = "grid-5", prefix: str = "bulk") -> list[str]:
    ids = [f"{prefix}-{i:05d}" for i in range(count)]
    with unit_of_work(factory) as session:
        session.add_all(ChatGroup(id=gid, name=f"群{gid}", grid_code=grid) for gid in ids)
    return ids


def new_notice(factory: sessionmaker[Session], target: NoticeTarget | None = None, **fields: Any) -> int:
    values: dict[str, Any] = {
        "title": "高龄补贴开始申领",
        "body": "80周岁以上老人本月可到社区申领高龄补贴，请带身份证。",
        "author": "测试",
    }
    values |= fields
    with unit_of_work(factory) as session:
        return create_notice(session, NoticeDraft(target=target or NoticeTarget(everyone=True), **values)).id


def transcript_counts(factory: sessionmaker[Session]) -> dict[str, int]:
    """How many messages the bot wrote into each group's transcript."""
    query = (
        select(WebChatMessage.target_id, func.count())
        .where(WebChatMessage.direction == "out", WebChatMessage.target_type == "room")
        .group_by(WebChatMessage.target_id)
    )
    with factory() as session:
        return dict(session.execute(query).all())  # type: ignore[arg-type]


@dataclass
class RecordingSender:
    """An external channel stubbed at the network edge: records what it was asked to post and when."""

    name: str = "webchat"
    account: str = "stub-account"
    max_text_chars: int = 4000
    limits: SendLimits = field(default_factory=lambda: SendLimits(per_account=None, per_group=None, jitter_seconds=0))
    fail_first: int = 0  # the first N calls raise a retryable SendError
    permanent: bool = False  # …or one that says retrying cannot help
    sent: list[tuple[float, str, str, str]] = field(default_factory=list)  # (monotonic time, room, text, key)
    calls: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, key), failures included

    async def send_to_room(self, room_id: str, text: str, *, key: str) -> None:
        self.calls.append((time.monotonic(), key))
        if len(self.calls) <= self.fail_first:
            raise SendError("platform busy (stub)", retryable=not self.permanent)
        self.sent.append((time.monotonic(), room_id, text, key))


def fast_policy(**overrides: Any) -> DeliveryPolicy:
    values: dict[str, Any] = {
        "lease": timedelta(seconds=10),
        "max_wait_seconds": 2.0,
        "retry_first_seconds": 0.2,
        "retry_max_seconds": 2.0,
        "max_attempts": 4,
    }
    return DeliveryPolicy(**(values | overrides))


def local_runtime(
    factory: sessionmaker[Session],
    sender: Any = None,
    *,
    limits: SendLimits | None = None,
    limiter: RateLimiter | None = None,
    policy: DeliveryPolicy | None = None,
    max_jobs: int = 10,
) -> tuple[NoticeRuntime, LocalQueue]:
    """Jobs run in this process on a LocalQueue, as in the embedded default; by default they post to the web chat."""
    sender = sender or WebChatChannel(factory, "网格助手")
    queue = LocalQueue(FUNCTIONS, max_jobs=max_jobs, job_timeout=30)
    runtime = NoticeRuntime(
        factory=factory,
        senders={sender.name: sender},
        limits={sender.name: limits or SendLimits(per_account=None, per_group=None, jitter_seconds=0)},
        limiter=limiter or MemoryRateLimiter(),
        queue=queue,
        namespace=f"gridbot-test-{uuid.uuid4().hex[:8]}",
        policy=policy or fast_policy(),
    )
    queue.ctx["notices"] = runtime
    return runtime, queue


async def drain(queue: LocalQueue, timeout: float = 30.0) -> None:
    """Wait until the local queue has nothing queued or running."""
    deadline = time.monotonic() + timeout
    while queue.size:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{queue.size} jobs still queued after {timeout} s")
        await asyncio.sleep(0.05)


def max_in_window(times: list[float], window: float) -> int:
    """The most events inside any window of this length (the proof that a rate limit held)."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def engine_for(url: str) -> tuple[Any, sessionmaker[Session]]:
    engine = make_engine(url)
    return engine, make_session_factory(engine)
