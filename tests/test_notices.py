"""Benefit notices in one process: targeting, planning, schedule, expiry, idempotent delivery, rate limits,
splitting, retries and cancel — with the web chat transcript (or a sender stubbed at the network edge) as
what residents see, on SQLite and PostgreSQL where the database's behaviour matters.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
from arq import Retry
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.ratelimit import Budget, MemoryRateLimiter, RedisRateLimiter
from bot.channels.sender import SendLimits, split_text
from bot.channels.webchat import WebChatChannel, WebChatMessage
from bot.notices import jobs
from bot.notices.render import current_notices_text, notice_text
from bot.notices.runtime import limits_for
from bot.settings import Settings
from grid import notice_deliveries as deliveries
from grid.notices import (
    DeliveryStatus,
    Notice,
    NoticeDelivery,
    NoticeStatus,
    NoticeTarget,
    cancel_notice,
    current_notices,
    delivery_counts,
)
from storage.base import utcnow
from storage.engine import unit_of_work
from tests.conftest import REDIS_URL
from tests.notice_world import (
    RecordingSender,
    add_groups,
    drain,
    engine_for,
    fast_policy,
    local_runtime,
    max_in_window,
    new_notice,
    notice_database,
)

DEMO_GROUPS = {"demo-grid-1", "demo-grid-2", "demo-grid-3", "demo-grid-4"}
ALL_GROUPS = DEMO_GROUPS | {"group-5"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def factory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    """The notice world on each backend, shared by this module's tests (each uses notices of its own)."""
    with notice_database(request.param, tmp_path_factory.mktemp("notices")) as url:
        engine, session_factory = engine_for(url)
        yield session_factory
        engine.dispose()


@pytest.fixture
def sqlite_factory(tmp_path) -> Iterator[sessionmaker[Session]]:  # type: ignore[no-untyped-def]
    """A world of its own, for tests that add groups."""
    with notice_database("sqlite", tmp_path) as url:
        engine, session_factory = engine_for(url)
        yield session_factory
        engine.dispose()


def _plan(factory: sessionmaker[Session], notice_id: int) -> set[str]:
    with unit_of_work(factory) as session:
        deliveries.plan_notice(session, notice_id, utcnow())
    with factory() as session:
        return set(session.scalars(select(NoticeDelivery.group_id).where(NoticeDelivery.notice_id == notice_id)))


def _room_texts(factory: sessionmaker[Session], group_id: str, marker: str) -> list[str]:
    query = (
        select(WebChatMessage.text)
        .where(WebChatMessage.target_id == group_id, WebChatMessage.direction == "out", WebChatMessage.text.contains(marker))
        .order_by(WebChatMessage.id)
    )
    with factory() as session:
        return list(session.scalars(query))


def _statuses(factory: sessionmaker[Session], notice_id: int) -> dict[str, int]:
    with factory() as session:
        counts = delivery_counts(session, [notice_id])[notice_id]
    return {status: n for status, n in counts.items() if n}


# --- targeting and planning ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (NoticeTarget(everyone=True), ALL_GROUPS),
        (NoticeTarget(streets=("street-2",)), {"group-5"}),
        (NoticeTarget(streets=("demo-street",)), DEMO_GROUPS),
        (NoticeTarget(communities=("demo-community-2",)), {"demo-grid-3", "demo-grid-4"}),
        (NoticeTarget(grids=("grid-1", "grid-5")), {"demo-grid-1", "group-5"}),
        (NoticeTarget(tags=("老年人多",)), {"demo-grid-1", "group-5"}),
        (NoticeTarget(everyone=True, tags=("学校周边",)), {"group-5"}),
        (NoticeTarget(streets=("demo-street",), tags=("老年人多",)), {"demo-grid-1"}),
        (NoticeTarget(communities=("demo-community-1",), grids=("grid-4",)), {"demo-grid-1", "demo-grid-2", "demo-grid-4"}),
    ],
    ids=["all", "street", "demo-street", "community", "grids", "tag", "all+tag", "street+tag", "community+grid"],
)
def test_targets_select_the_right_groups(factory: sessionmaker[Session], target: NoticeTarget, expected: set[str]) -> None:
    notice_id = new_notice(factory, target)
    assert _plan(factory, notice_id) == expected
    assert _plan(factory, notice_id) == expected  # planning again adds nothing


def test_racing_planners_create_one_row_per_group(factory: sessionmaker[Session]) -> None:
    notice_id = new_notice(factory)
    barrier = threading.Barrier(4)
    results: list[deliveries.PlanResult] = []

    def plan() -> None:
        barrier.wait()
        with unit_of_work(factory) as session:
            results.append(deliveries.plan_notice(session, notice_id, utcnow()))

    threads = [threading.Thread(target=plan) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.created for r in results) == [0, 0, 0, len(ALL_GROUPS)]
    with factory() as session:
        rows = session.scalars(select(NoticeDelivery.group_id).where(NoticeDelivery.notice_id == notice_id)).all()
    assert sorted(rows) == sorted(ALL_GROUPS)


# --- delivery ----------------------------------------------------------------------------------------


def test_each_targeted_group_gets_the_notice_once_and_the_notice_finishes(factory: sessionmaker[Session]) -> None:
    title = f"疫苗接种日-{uuid.uuid4().hex[:6]}"
    notice_id = new_notice(factory, NoticeTarget(tags=("老年人多",)), title=title, link="https://example.org/vaccine")

    async def run() -> None:
        runtime, queue = local_runtime(factory)
        await jobs.plan_and_queue(runtime, notice_id)
        await drain(queue)
        report = await jobs.sweep(runtime)
        assert [p.status for p in report.progress if p.notice_id == notice_id] == [NoticeStatus.DONE]
        await queue.close()

    asyncio.run(run())
    for group in ("demo-grid-1", "group-5"):
        texts = _room_texts(factory, group, title)
        assert len(texts) == 1, texts
        assert texts[0].startswith(f"【惠民信息】{title}\n") and "详情：https://example.org/vaccine" in texts[0]
    assert _room_texts(factory, "demo-grid-2", title) == []
    assert _statuses(factory, notice_id) == {"sent": 2}
    with factory() as session:
        notice = session.get(Notice, notice_id)
        assert notice is not None and notice.status == NoticeStatus.DONE and notice.finished_at is not None


def test_the_same_delivery_job_run_twice_sends_once(factory: sessionmaker[Session]) -> None:
    title = f"停水通知-{uuid.uuid4().hex[:6]}"
    notice_id = new_notice(factory, NoticeTarget(grids=("grid-2",)), title=title)
    _plan(factory, notice_id)
    with factory() as session:
        delivery_id = session.scalars(select(NoticeDelivery.id).where(NoticeDelivery.notice_id == notice_id)).one()

    async def run() -> list[object]:
        runtime, queue = local_runtime(factory)
        # Two copies at once (a duplicate enqueue under another id), then the original again (a retry after a crash).
        first = await asyncio.gather(
            jobs.deliver_notice({"notices": runtime, "job_id": "job-a"}, delivery_id),
            jobs.deliver_notice({"notices": runtime, "job_id": "job-b"}, delivery_id),
            return_exceptions=True,
        )
        again = await jobs.deliver_notice({"notices": runtime, "job_id": "job-a"}, delivery_id)
        await queue.close()
        return [*first, again]

    outcomes = asyncio.run(run())
    # Whichever copy claimed it sent it; the other found it claimed (deferred) or already sent; the rerun found it sent.
    assert outcomes[-1] == "sent" and all(o == "sent" or isinstance(o, Retry) for o in outcomes), outcomes
    assert len(_room_texts(factory, "demo-grid-2", title)) == 1
    assert _statuses(factory, notice_id) == {"sent": 1}


def test_a_notice_is_not_sent_before_its_publish_time(sqlite_factory: sessionmaker[Session]) -> None:
    title = f"招聘会-{uuid.uuid4().hex[:6]}"
    notice_id = new_notice(sqlite_factory, title=title, publish_at=utcnow() + timedelta(seconds=2))

    async def run() -> tuple[int, int, int]:
        runtime, queue = local_runtime(sqlite_factory)
        with sqlite_factory() as session:
            publish_at = session.get(Notice, notice_id).publish_at  # type: ignore[union-attr]
        await runtime.enqueue_plan(notice_id, publish_at)
        await jobs.sweep(runtime)  # a sweep before its time plans nothing either
        await asyncio.sleep(1.0)
        early = sum(len(_room_texts(sqlite_factory, g, title)) for g in ALL_GROUPS)
        planned_early = sum(_statuses(sqlite_factory, notice_id).values())
        await asyncio.sleep(1.5)
        await drain(queue)
        await queue.close()
        return early, planned_early, sum(len(_room_texts(sqlite_factory, g, title)) for g in ALL_GROUPS)

    early, planned_early, later = asyncio.run(run())
    assert (early, planned_early) == (0, 0)
    assert later == len(ALL_GROUPS)


def test_expired_notices_are_not_sent_and_not_current(factory: sessionmaker[Session]) -> None:
    # Planned in time, but the deliveries only run after it expired.
    waited = new_notice(factory, title="过期A", expires_at=utcnow() + timedelta(seconds=0.6))
    _plan(factory, waited)
    # Never planned before it expired (nothing ran at its publish time).
    missed = new_notice(factory, title="过期B", expires_at=utcnow() + timedelta(seconds=0.6))
    time.sleep(0.8)

    async def run() -> None:
        runtime, queue = local_runtime(factory)
        await jobs.sweep(runtime)
        await drain(queue)
        await jobs.sweep(runtime)
        await queue.close()

    asyncio.run(run())
    assert _statuses(factory, waited) == {"expired": len(ALL_GROUPS)}
    assert _statuses(factory, missed) == {}
    with factory() as session:
        assert {session.get(Notice, n).status for n in (waited, missed)} == {NoticeStatus.DONE}  # type: ignore[union-attr]
        titles = {n.title for n in current_notices(session, "demo-grid-1", limit=50)}
    assert not titles & {"过期A", "过期B"}
    assert all(_room_texts(factory, g, "过期") == [] for g in ALL_GROUPS)


def test_residents_get_the_current_notices_of_their_group(sqlite_factory: sessionmaker[Session]) -> None:
    f = sqlite_factory
    later = utcnow() + timedelta(days=3)
    new_notice(f, NoticeTarget(everyone=True), title="全区：医保缴费", expires_at=later)
    new_notice(f, NoticeTarget(tags=("老年人多",)), title="老年人：免费体检", body="65岁以上老人\n\n可免费体检。")
    new_notice(f, NoticeTarget(grids=("grid-1",)), title="一网格：停水", link="https://example.org/water")
    new_notice(f, NoticeTarget(streets=("street-2",)), title="安康街道：招聘会")
    new_notice(f, NoticeTarget(everyone=True), title="还没发布", publish_at=utcnow() + timedelta(hours=2))
    cancelled = new_notice(f, NoticeTarget(everyone=True), title="已撤回")
    with unit_of_work(f) as session:
        cancel_notice(session, cancelled, "admin")
    with f() as session:
        in_group = [n.title for n in current_notices(session, "demo-grid-1")]
        elsewhere = [n.title for n in current_notices(session, "demo-grid-3")]
        private = [n.title for n in current_notices(session, None)]
        answer = current_notices_text(current_notices(session, "demo-grid-1"))
        nothing = current_notices_text([])
    assert set(in_group) == {"全区：医保缴费", "老年人：免费体检", "一网格：停水"}
    assert elsewhere == ["全区：医保缴费"]
    assert private == ["全区：医保缴费"]
    assert "\n\n" not in answer  # Rasa's REST channel would cut the answer at a blank line
    assert answer.startswith("最近的惠民通知（3条）") and "详情：https://example.org/water" in answer and "截止" in answer
    assert "没有正在有效期内" in nothing


# --- channel limits ------------------------------------------------------------------------------------


def test_split_text_cuts_at_breaks_and_numbers_the_parts() -> None:
    text = "第一段说明。" * 30 + "\n" + "第二段" * 40
    parts = split_text(text, 100)
    assert len(parts) > 2 and all(len(p) <= 100 for p in parts)
    assert parts[0].endswith(f"（1/{len(parts)}）") and parts[-1].endswith(f"（{len(parts)}/{len(parts)}）")
    assert parts[0].removesuffix(f"（1/{len(parts)}）").endswith("。")  # cut after a sentence, not inside one
    rebuilt = "".join(p.rsplit("（", 1)[0] for p in parts)
    assert rebuilt.replace("\n", "") == text.replace("\n", "")
    assert split_text("短通知", 100) == ["短通知"]


def test_a_long_notice_is_split_to_the_channel_limit_and_each_part_sent_once(factory: sessionmaker[Session]) -> None:
    title = f"长通知-{uuid.uuid4().hex[:6]}"
    body = "".join(f"第{i}条：请居民带好证件到社区服务中心办理。" for i in range(1, 13))
    notice_id = new_notice(factory, NoticeTarget(grids=("grid-3",)), title=title, body=body)
    webchat = WebChatChannel(factory, "网格助手")
    webchat.capabilities = replace(webchat.capabilities, max_text_chars=120)  # a platform with a short limit
    with factory() as session:
        before = session.scalar(select(func.max(WebChatMessage.id))) or 0

    async def run() -> None:
        runtime, queue = local_runtime(factory, webchat)
        await jobs.plan_and_queue(runtime, notice_id)
        await drain(queue)
        with factory() as session:
            delivery_id = session.scalars(select(NoticeDelivery.id).where(NoticeDelivery.notice_id == notice_id)).one()
        assert await jobs.deliver_notice({"notices": runtime, "job_id": "again"}, delivery_id) == "sent"
        await queue.close()

    asyncio.run(run())
    query = select(WebChatMessage.text).where(WebChatMessage.target_id == "demo-grid-3", WebChatMessage.id > before)
    with factory() as session:
        parts = list(session.scalars(query.order_by(WebChatMessage.id)))
        delivery = session.scalars(select(NoticeDelivery).where(NoticeDelivery.notice_id == notice_id)).one()
    total = len(parts)
    assert total >= 3 and all(len(p) <= 120 for p in parts)
    assert parts[0].startswith(f"【惠民信息】{title}")
    assert [p.rsplit("（", 1)[1] for p in parts] == [f"{i}/{total}）" for i in range(1, total + 1)]
    assert "".join(p.rsplit("（", 1)[0] for p in parts).endswith("第12条：请居民带好证件到社区服务中心办理。")
    assert (delivery.status, delivery.parts_sent) == (DeliveryStatus.SENT, total)  # and the rerun added nothing


def notice_text_for(factory: sessionmaker[Session], notice_id: int) -> str:
    with factory() as session:
        notice = session.get(Notice, notice_id)
        assert notice is not None
        return notice_text(notice)


def test_rate_limits_hold_per_account_across_runtimes_and_per_group(sqlite_factory: sessionmaker[Session]) -> None:
    """Two runtimes (as two processes would) share one account's budget in Redis; a group gets its parts spaced."""
    add_groups(sqlite_factory, 14)
    window = 1.0
    limits = SendLimits(per_account=5, per_group=1, window_seconds=window, jitter_seconds=0.02)
    first = RecordingSender(limits=limits, max_text_chars=60)
    second = RecordingSender(limits=limits, max_text_chars=60)
    single = new_notice(sqlite_factory, NoticeTarget(grids=("grid-5",)), title="限速")  # group-5 + 14 bulk groups
    split = new_notice(sqlite_factory, NoticeTarget(grids=("grid-1",)), title="分段", body="请注意。" * 25)
    namespace = f"gridbot-test-{uuid.uuid4().hex[:8]}"

    async def run() -> None:
        client = aioredis.from_url(REDIS_URL)
        limiter = RedisRateLimiter(client)
        policy = fast_policy(max_wait_seconds=5.0)
        runtimes = []
        for sender in (first, second):
            runtime, queue = local_runtime(sqlite_factory, sender, limits=limits, limiter=limiter, policy=policy)
            runtime.namespace = namespace
            runtimes.append((runtime, queue))
        ids = []
        for notice_id in (single, split):
            await asyncio.to_thread(_plan, sqlite_factory, notice_id)
            with sqlite_factory() as session:
                ids += list(session.scalars(select(NoticeDelivery.id).where(NoticeDelivery.notice_id == notice_id)))
        for index, delivery_id in enumerate(ids):  # deal the deliveries out to both "processes"
            await runtimes[index % 2][0].enqueue_deliveries([delivery_id])
        for _, queue in runtimes:
            await drain(queue, timeout=60)
            await queue.close()
        await client.aclose()

    started = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - started
    sent = first.sent + second.sent
    assert len(sent) == 15 + len(split_text(notice_text_for(sqlite_factory, split), 60))
    assert max_in_window([t for t, *_ in sent], window) <= 5
    assert elapsed >= 2 * window  # the limit really held them back: more than 10 messages at 5 per second
    split_times = [t for t, room, *_ in sent if room == "demo-grid-1"]
    assert len(split_times) >= 3 and max_in_window(split_times, window) == 1
    assert _statuses(sqlite_factory, single) == {"sent": 15} and _statuses(sqlite_factory, split) == {"sent": 1}


@pytest.mark.parametrize("kind", ["redis", "memory"])
def test_limiter_takes_all_budgets_or_none_and_counts_from_the_end_of_a_send(kind: str) -> None:
    async def run() -> tuple[float, float, float, float]:
        client = aioredis.from_url(REDIS_URL)
        limiter = RedisRateLimiter(client) if kind == "redis" else MemoryRateLimiter()
        prefix = f"gridbot-test-{uuid.uuid4().hex[:8]}"
        account, group_a, group_b = (Budget(f"{prefix}:{name}", limit, 10) for name, limit in (("acct", 2), ("a", 1), ("b", 5)))
        assert await limiter.try_take([account, group_a], "m1", 30) == 0
        in_flight = await limiter.try_take([account, group_a], "m2", 30)  # group a's one slot is still being sent
        await limiter.confirm([account, group_a], "m1")
        blocked = await limiter.try_take([account, group_a], "m2", 30)  # sent now: a full window from here
        assert await limiter.try_take([account, group_b], "m3", 30) == 0  # m2 took nothing from the account
        await limiter.confirm([account, group_b], "m3")
        full = await limiter.try_take([account, group_b], "m4", 30)  # now the account is full
        await client.delete(*(b.key for b in (account, group_a, group_b)))
        await client.aclose()
        return in_flight, blocked, full, account.held_seconds

    in_flight, blocked, full, held = asyncio.run(run())
    assert in_flight == pytest.approx(0.05)
    assert 9.5 < blocked <= held and 9.5 < full <= held


# --- failures and retries --------------------------------------------------------------------------------


def test_a_failing_sender_is_retried_with_backoff_then_succeeds(factory: sessionmaker[Session]) -> None:
    notice_id = new_notice(factory, NoticeTarget(grids=("grid-4",)), title="重试")
    sender = RecordingSender(fail_first=2)

    async def run() -> None:
        runtime, queue = local_runtime(factory, sender, policy=fast_policy(retry_first_seconds=0.3))
        await jobs.plan_and_queue(runtime, notice_id)
        await drain(queue)
        await queue.close()

    asyncio.run(run())
    times = [t for t, _ in sender.calls]
    assert len(times) == 3 and len(sender.sent) == 1
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    assert 0.27 <= first_gap and 0.54 <= second_gap  # 0.3 s, then doubled (±10 % jitter)
    assert len({key for _, key in sender.calls}) == 1  # one idempotency key for every attempt of the same part
    with factory() as session:
        delivery = session.scalars(select(NoticeDelivery).where(NoticeDelivery.notice_id == notice_id)).one()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.SENT, 2, None)


@pytest.mark.parametrize(("permanent", "expected_calls"), [(True, 1), (False, 3)], ids=["not-retryable", "attempts-run-out"])
def test_a_delivery_that_cannot_succeed_ends_failed(factory: sessionmaker[Session], permanent: bool, expected_calls: int) -> None:
    notice_id = new_notice(factory, NoticeTarget(grids=("grid-2",)), title="失败")
    sender = RecordingSender(fail_first=100, permanent=permanent)

    async def run() -> None:
        runtime, queue = local_runtime(factory, sender, policy=fast_policy(retry_first_seconds=0.05, max_attempts=3))
        await jobs.plan_and_queue(runtime, notice_id)
        await drain(queue)
        await jobs.sweep(runtime)
        await queue.close()

    asyncio.run(run())
    assert len(sender.calls) == expected_calls and sender.sent == []
    with factory() as session:
        delivery = session.scalars(select(NoticeDelivery).where(NoticeDelivery.notice_id == notice_id)).one()
        notice = session.get(Notice, notice_id)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, expected_calls)
    assert "platform busy" in (delivery.last_error or "")
    assert notice is not None and notice.status == NoticeStatus.DONE


# --- cancel ------------------------------------------------------------------------------------------------


def test_cancel_mid_way_stops_what_has_not_gone_out(sqlite_factory: sessionmaker[Session]) -> None:
    groups = add_groups(sqlite_factory, 20, prefix="cancel")
    title = f"撤回测试-{uuid.uuid4().hex[:6]}"
    notice_id = new_notice(sqlite_factory, NoticeTarget(grids=("grid-5",)), title=title)
    limits = SendLimits(per_account=5, per_group=None, window_seconds=1.0, jitter_seconds=0)

    async def run() -> tuple[int, int]:
        runtime, queue = local_runtime(sqlite_factory, limits=limits, policy=fast_policy(max_wait_seconds=0.5))
        await jobs.plan_and_queue(runtime, notice_id)
        await asyncio.sleep(1.2)
        with unit_of_work(sqlite_factory) as session:
            _, stopped = cancel_notice(session, notice_id, "admin")
        at_cancel = sum(_statuses(sqlite_factory, notice_id).get(s, 0) for s in ("sent",))
        await asyncio.sleep(1.5)
        await drain(queue)
        await queue.close()
        return stopped, at_cancel

    stopped, sent_at_cancel = asyncio.run(run())
    statuses = _statuses(sqlite_factory, notice_id)
    assert 0 < statuses["sent"] < 21 and statuses["sent"] == sent_at_cancel
    assert statuses == {"sent": sent_at_cancel, "cancelled": stopped} and sent_at_cancel + stopped == 21
    transcript = sum(len(_room_texts(sqlite_factory, g, title)) for g in [*groups, "group-5"])
    assert transcript == sent_at_cancel
    with pytest.raises(Exception, match="notice_finished"), unit_of_work(sqlite_factory) as session:
        cancel_notice(session, notice_id, "admin")


def test_rate_limit_settings_are_checked() -> None:
    webchat = WebChatChannel.__new__(WebChatChannel)
    assert limits_for([webchat], Settings(notice_rate_limits="").notice_rate_limits)["webchat"] == (
        WebChatChannel.capabilities.limits
    )
    given = Settings(notice_rate_limits=json.dumps({"webchat": {"per_account": 600, "per_group": None}}))
    custom = limits_for([webchat], given.notice_rate_limits)["webchat"]
    assert (custom.per_account, custom.per_group, custom.window_seconds) == (600, None, 60.0)
    # A malformed setting stops start-up where settings load (tests/test_settings_load.py has every case).
    with pytest.raises(ValueError, match="NOTICE_RATE_LIMITS"):
        Settings(notice_rate_limits="{not json")
    with pytest.raises(ValueError, match="per_minute"):
        Settings(notice_rate_limits=json.dumps({"webchat": {"per_minute": 3}}))
