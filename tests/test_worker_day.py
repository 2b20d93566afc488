"""A worker's day (docs/tickets.md): the morning digest, the community lead's briefing, both asked for in words, and
the morning job that sends each once a day even with two app processes — bot/worker_day.py, grid/briefing.py.

Every test has a community of its own (tests/areas.Area: a grid, its worker 周网格 and lead 吴书记), so the shared
session database's other tickets never enter the numbers; `now` is chosen by the test (a morning in the future for
the job, so the app's own morning round, running in other tests' servers, never claims the same day first).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import bot.texts as bot_texts
from bot.messages import TargetType
from bot.morning_job import send_morning_digests
from bot.runtime import build_services
from bot.settings import Settings
from bot.texts import TEXTS_FILE, local_time
from bot.worker_day import briefing_text, claim_morning, day_text, digest_text, morning_time
from grid.briefing import day_figures
from grid.clock import LOCAL_TZ
from grid.geography import Worker
from grid.ratings import Rating
from grid.service import TicketService
from grid.tickets import Ticket
from storage.engine import unit_of_work
from tests.areas import Area, race_twice
from tests.servers import Chat
from tests.worker_chat import WorkerChat

# A morning far enough ahead that no real morning round has claimed it: the job's tests own that day.
FUTURE = date.today() + timedelta(days=900 + uuid.uuid4().int % 500)


def at_local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), LOCAL_TZ)


def file(factory: sessionmaker[Session], area: Area, what: str, where: str, colour: str | None = None) -> str:
    with unit_of_work(factory) as session:
        filing = TicketService(session).file_report(
            group_id=None, reporter_id=f"r-day-{uuid.uuid4().hex[:6]}", reporter_name="居民", description=what,
            location=where, grid_code=area.grid,
        )
        if colour:
            filing.ticket.colour = colour
        return filing.ticket.number


def moved(factory: sessionmaker[Session], number: str, *, created: datetime, deadline: datetime) -> None:
    """Report time and deadline put where the test needs them (the history's times follow the report)."""
    with unit_of_work(factory) as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        assert ticket is not None
        ticket.created_at, ticket.deadline_at = created, deadline
        for event in ticket.events:
            event.created_at = created


def opt_in(factory: sessionmaker[Session], *workers: str) -> None:
    with unit_of_work(factory) as session:
        for worker_id in workers:
            worker = session.get(Worker, worker_id)
            assert worker is not None
            worker.morning_digest = True


# --- the digest and the briefing ------------------------------------------------------------------------------------


def test_dates_are_written_as_zh_yml_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wording of a date is data (bot/texts/zh.yml `formats`), not a format string in Python."""
    assert day_text(date(2026, 12, 7)) == "12月07日 周一"
    assert local_time(datetime(2026, 12, 7, 8, 30, tzinfo=LOCAL_TZ)) == "12月07日08:30"
    changed = tmp_path / "zh.yml"
    texts = yaml.safe_load(TEXTS_FILE.read_text(encoding="utf-8"))
    texts["formats"]["date"] = "{day.month}月{day.day}日"
    changed.write_text(yaml.safe_dump(texts, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(bot_texts, "TEXTS_FILE", changed)
    bot_texts._texts.cache_clear()
    try:
        assert day_text(date(2026, 12, 7)) == "12月7日 周一"
    finally:
        monkeypatch.undo()
        bot_texts._texts.cache_clear()


def test_the_digest_puts_overdue_first_then_due_today_then_the_rest(session_factory: sessionmaker[Session], area: Area) -> None:
    now = at_local(FUTURE, 8)
    late = file(session_factory, area, "路灯不亮", "北门")
    today = file(session_factory, area, "井盖松动", "南门")
    later = file(session_factory, area, "垃圾堆积", "西门")
    moved(session_factory, late, created=now - timedelta(days=3), deadline=now - timedelta(hours=5))
    moved(session_factory, today, created=now - timedelta(days=1), deadline=at_local(FUTURE, 17))
    moved(session_factory, later, created=now - timedelta(hours=1), deadline=now + timedelta(days=2))
    with session_factory() as session:
        text = digest_text(session, area.worker, now)
    lines = text.splitlines()
    assert lines[0] == "您的待办工单（3）：已超期 1，今天到期 1", lines
    order = [lines.index(h) for h in ("【已超期】", "【今天到期】", "【其他待办】")]
    assert order == sorted(order)
    assert lines[order[0] + 1].startswith(late) and "（已超期）" in lines[order[0] + 1]
    assert lines[order[1] + 1].startswith(today) and lines[order[2] + 1].startswith(later)
    with session_factory() as session:
        assert digest_text(session, area.lead, now) == "您目前没有待办工单。"


def test_the_briefing_gives_yesterdays_work_overdue_and_red(session_factory: sessionmaker[Session], area: Area) -> None:
    now = at_local(FUTURE, 8)
    day_before = FUTURE - timedelta(days=1)
    on_time = file(session_factory, area, "楼道灯不亮", "1号楼")
    too_late = file(session_factory, area, "水管漏水", "2号楼")
    open_late = file(session_factory, area, "占道经营", "菜市场")
    red = file(session_factory, area, "电梯困人", "8号楼", colour="red")
    older = file(session_factory, area, "噪音扰民", "3号楼")  # reported two days ago: not yesterday's new
    for number in (on_time, too_late, open_late, red):
        moved(session_factory, number, created=at_local(day_before, 9), deadline=at_local(day_before, 12))
    moved(session_factory, older, created=now - timedelta(days=2), deadline=now + timedelta(days=1))
    moved(session_factory, red, created=at_local(day_before, 9), deadline=now + timedelta(hours=1))
    with unit_of_work(session_factory) as session:
        service = TicketService(session)
        worker = service.actor_for(area.worker)
        handled = (
            (on_time, at_local(day_before, 11), Rating.SATISFIED),
            (too_late, at_local(day_before, 15), Rating.UNSATISFIED),
        )
        for number, done_at, rating in handled:
            service.accept(number, worker)
            ticket = service.resolve(number, worker, "处理好了")
            ticket.resolved_at = done_at
            service.rate(reporter_id=ticket.reporter_id, group_id=None, rating=rating, comment=rating.value)
            for event in ticket.events[-3:]:
                event.created_at = done_at + timedelta(hours=1)  # resolved and rated that day
    with session_factory() as session:
        figures = day_figures(session, day_before, [area.grid])
        assert (figures.new, figures.resolved, figures.resolved_on_time, figures.rated, figures.satisfied) == (4, 2, 1, 2, 1)
        lead = session.get(Worker, area.lead)
        assert lead is not None
        text = briefing_text(session, lead, now)
    assert text.startswith("【测试社区") and "简报】" in text.splitlines()[0], text
    assert "新增工单 4 件，办结 2 件，按时办结率 50%，满意率 50%（2人评价）" in text, text
    # too_late was reopened (不满意) and is overdue again, open_late never handled; the red one is due in an hour.
    overdue_block = text[text.index("当前超期未办结 2 件：") : text.index("红色工单")]
    assert open_late in overdue_block and too_late in overdue_block and red not in overdue_block, text
    assert "承办：周网格" in overdue_block
    red_block = text[text.index("红色工单未办结 1 件：") :]
    assert red in red_block and "处理中" not in red_block and "承办：周网格" in red_block, text


# --- once a day, two processes -------------------------------------------------------------------------------------


def test_two_processes_racing_claim_each_digest_once(session_factory: sessionmaker[Session], area: Area) -> None:
    opt_in(session_factory, area.worker, area.lead)
    now, at = at_local(FUTURE, 8, 1), time(8, 0)
    mine = (area.worker, area.lead)
    results = race_twice(session_factory, lambda session: [w for w in claim_morning(session, now, at) if w in mine])
    assert sorted(w for claimed in results for w in claimed) == sorted([area.worker, area.lead])
    with unit_of_work(session_factory) as session:  # a later round the same morning: already sent
        assert area.worker not in claim_morning(session, now + timedelta(minutes=5), at)
    with unit_of_work(session_factory) as session:  # the next morning it is due again; before the time, not yet
        assert area.worker not in claim_morning(session, at_local(FUTURE + timedelta(days=1), 7, 59), at)
        assert area.worker in claim_morning(session, at_local(FUTURE + timedelta(days=1), 8, 0), at)
        assert claim_morning(session, at_local(FUTURE + timedelta(days=2), 15), at) == []  # the afternoon: too late


def test_the_morning_job_of_two_app_processes_sends_each_digest_once(database_url: str, area: Area) -> None:
    settings = Settings(database_url=database_url, rasa_url="http://127.0.0.1:9", morning_digest_at="08:00")
    first, second = build_services(settings), build_services(settings)
    number = file(first.session_factory, area, "单元门关不上", "5号楼")
    opt_in(first.session_factory, area.worker, area.lead)
    day = FUTURE + timedelta(days=7)
    before, after = at_local(day, 7, 59), at_local(day, 8, 0) + timedelta(seconds=30)

    async def mornings() -> None:
        try:
            await asyncio.gather(send_morning_digests(first, before), send_morning_digests(second, before))
            await asyncio.gather(send_morning_digests(first, after), send_morning_digests(second, after))
            await asyncio.gather(send_morning_digests(first, after), send_morning_digests(second, after))
        finally:
            await first.aclose()
            await second.aclose()

    asyncio.run(mornings())
    to_worker = [m.text for m in first.webchat.transcript(TargetType.CONTACT, area.worker) if m.text.startswith("【今日工单】")]
    assert len(to_worker) == 1, to_worker
    assert number in to_worker[0] and "您的待办工单（1）" in to_worker[0]
    to_lead = [m.text for m in first.webchat.transcript(TargetType.CONTACT, area.lead) if "简报】" in m.text]
    assert len(to_lead) == 1 and "新增工单" in to_lead[0], to_lead
    first.engine.dispose()
    second.engine.dispose()


def test_the_morning_time_is_checked_at_start() -> None:
    assert morning_time(Settings(morning_digest_at="07:30")) == time(7, 30)
    assert morning_time(Settings(morning_digest_at="")) is None
    with pytest.raises(ValueError, match="HH:MM"):
        morning_time(Settings(morning_digest_at="8点"))


# --- asked for in words ---------------------------------------------------------------------------------------------


@pytest.fixture
def desk(session_factory: sessionmaker[Session], webhook: httpx.Client) -> Iterator[WorkerChat]:
    harness = WorkerChat(session_factory, webhook)
    yield harness
    harness.close()


def test_the_digest_and_the_briefing_asked_in_words(session_factory: sessionmaker[Session], area: Area, desk: WorkerChat) -> None:
    number = file(session_factory, area, "路灯不亮", "北门")
    for said in ("今天的工单", "今天有啥要办的", "还有几个没办"):
        _, turn = desk.say(area.worker, "周网格", said)
        assert turn is not None and "/worker_list" in turn["message"], said
        [listed] = [r["text"] for r in desk.act(turn) if r.get("text")]
        assert listed.startswith("您的待办工单（1）：已超期 0") and number in listed, listed
    for said in ("简报", "昨天怎么样"):
        replies, turn = desk.say(area.lead, "吴书记", said)
        assert turn is None, "the briefing is the app's own answer"
        [brief] = [o.text for o in replies]
        assert "简报】" in brief and "新增工单" in brief and "红色工单" in brief, brief


def test_the_morning_digest_is_turned_on_and_off_in_words(
    session_factory: sessionmaker[Session], area: Area, desk: WorkerChat
) -> None:
    def opted() -> tuple[bool, str | None]:
        with session_factory() as session:
            worker = session.get(Worker, area.worker)
            assert worker is not None
            return worker.morning_digest, worker.digest_sent_on

    assert opted()[0] is False  # optional: off until asked for
    [on] = [o.text for o in desk.say(area.worker, "周网格", "开启早报")[0]]
    assert "已开启早报" in on and "08:00" in on and "关闭早报" in on, on
    assert opted()[0] is True
    [off] = [o.text for o in desk.say(area.worker, "周网格", "早报不要了")[0]]
    assert "已关闭早报" in off and opted()[0] is False
    [lead_on] = [o.text for o in desk.say(area.lead, "吴书记", "每天早上发我简报")[0]]
    assert "社区简报" in lead_on, lead_on


# --- through the web chat and the real Rasa --------------------------------------------------------------------------


@pytest.mark.rasa
def test_the_digest_and_briefing_through_the_web_chat(chat: Chat, session_factory: sessionmaker[Session], area: Area) -> None:
    number = file(session_factory, area, "楼道灯不亮", "3号楼")
    now = datetime.now(LOCAL_TZ)
    moved(session_factory, number, created=now - timedelta(days=2), deadline=now - timedelta(hours=1))
    replies = chat.say("今天的工单", group=None, sender=area.worker, name="周网格")
    [digest] = [r["text"] for r in replies if r["target_id"] == area.worker]
    assert digest.startswith("您的待办工单（1）：已超期 1") and "【已超期】" in digest and number in digest, digest
    replies = chat.say("简报", group=None, sender=area.lead, name="吴书记")
    [brief] = [r["text"] for r in replies if r["target_id"] == area.lead]
    assert "当前超期未办结 1 件" in brief and number in brief, brief
    assert brief.splitlines()[0].startswith("【测试社区"), brief  # the lead's community, not one grid
