"""Deadline supervision (督办) on both databases: who is reminded and escalated, exactly once, with history.

Every test gets a community, grid, worker and lead of its own, so the shared session database's other
tickets never mix into what is asserted; timestamps are moved into the past and `now` is the real time,
so tickets filed by other tests are never made due by these tests.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.deadline_job import check_deadlines, duration_text
from bot.messages import TargetType
from bot.runtime import build_services
from bot.settings import Settings
from grid.deadlines import Audience, DeadlineNotice, NoticeKind, due_notices, overdue_tickets
from grid.ratings import Rating
from grid.service import Actor, TicketService
from grid.tickets import Ticket
from grid.workflow import Role
from storage.base import utcnow
from storage.engine import unit_of_work
from tests.areas import Area, race_twice


def _file(factory: sessionmaker[Session], area: Area, text: str = "路灯坏了") -> str:
    with unit_of_work(factory) as session:
        filing = TicketService(session).file_report(
            group_id=None,
            reporter_id=f"r-dl-{uuid.uuid4().hex[:8]}",
            reporter_name="居民",
            description=text,
            location=f"督办{uuid.uuid4().hex[:6]}号楼",
            grid_code=area.grid,
        )
        assert not filing.duplicate
        return filing.ticket.number


def _ticket(session: Session, number: str) -> Ticket:
    ticket = session.scalar(select(Ticket).where(Ticket.number == number))
    assert ticket is not None
    return ticket


def _elapsed(factory: sessionmaker[Session], number: str, now: datetime, fraction: float) -> None:
    """Move the ticket's report time back so `fraction` of its time to deadline has passed at `now`."""
    with unit_of_work(factory) as session:
        ticket = _ticket(session, number)
        span = ticket.deadline_at - ticket.created_at
        ticket.created_at = now - span * fraction
        ticket.deadline_at = ticket.created_at + span


def _late(factory: sessionmaker[Session], number: str, now: datetime, late: timedelta) -> None:
    """Move the ticket so its deadline passed `late` before `now`."""
    with unit_of_work(factory) as session:
        ticket = _ticket(session, number)
        span = ticket.deadline_at - ticket.created_at
        ticket.deadline_at = now - late
        ticket.created_at = ticket.deadline_at - span


def _run(factory: sessionmaker[Session], now: datetime, numbers: list[str]) -> dict[str, DeadlineNotice]:
    """One round of the check; only this test's notices (the round also claims whatever else is due)."""
    with unit_of_work(factory) as session:
        notices = due_notices(session, now)
    mine = [n for n in notices if n.number in numbers]
    assert len({n.number for n in mine}) == len(mine), "a ticket got two notices in one round"
    return {n.number: n for n in mine}


def _who(notice: DeadlineNotice) -> list[tuple[str, Audience]]:
    return [(r.worker_id, r.audience) for r in notice.recipients]


def _history(factory: sessionmaker[Session], number: str) -> list[tuple[str, str, str, str | None]]:
    with factory() as session:
        return [(e.action, e.actor_id, e.actor_role, e.note) for e in _ticket(session, number).events]


def test_reminder_at_three_quarters_goes_to_the_assignee_once(session_factory: sessionmaker[Session], area: Area) -> None:
    now = utcnow()
    due, early = _file(session_factory, area), _file(session_factory, area)
    _elapsed(session_factory, due, now, 0.8)
    _elapsed(session_factory, early, now, 0.5)
    notices = _run(session_factory, now, [due, early])
    assert list(notices) == [due]
    notice = notices[due]
    assert notice.kind is NoticeKind.REMINDER and _who(notice) == [(area.worker, Audience.ASSIGNEE)]
    assert notice.assignee is not None and notice.assignee.worker_id == area.worker
    assert _run(session_factory, now, [due, early]) == {}
    assert _run(session_factory, now + timedelta(minutes=5), [due, early]) == {}  # the next round, still nothing
    assert _history(session_factory, due)[-1] == ("remind", "system", Role.SYSTEM, area.worker)
    assert [a for a, *_ in _history(session_factory, early)] == ["submit", "dispatch"]
    with session_factory() as session:
        stored = _ticket(session, due)
        assert stored.reminded_at == now and stored.overdue_notified_at is None and stored.status == "dispatched"


def test_unassigned_ticket_is_reminded_to_the_community_lead(session_factory: sessionmaker[Session], area: Area) -> None:
    now = utcnow()
    number = _file(session_factory, area)
    with unit_of_work(session_factory) as session:
        TicketService(session).return_ticket(number, Actor(area.worker, Role.WORKER), "不归我管")
    _elapsed(session_factory, number, now, 0.9)
    notice = _run(session_factory, now, [number])[number]
    assert notice.kind is NoticeKind.REMINDER and notice.assignee is None
    assert _who(notice) == [(area.lead, Audience.LEAD)]
    assert _history(session_factory, number)[-1] == ("remind", "system", Role.SYSTEM, area.lead)


def test_overdue_ticket_is_escalated_to_the_lead_with_a_copy_to_the_assignee(
    session_factory: sessionmaker[Session], area: Area
) -> None:
    now = utcnow()
    reminded, never_reminded = _file(session_factory, area), _file(session_factory, area)
    _elapsed(session_factory, reminded, now - timedelta(hours=30), 0.8)  # reminded in an earlier round …
    assert list(_run(session_factory, now - timedelta(hours=30), [reminded])) == [reminded]
    _late(session_factory, reminded, now, timedelta(hours=2))  # … and now late
    _late(session_factory, never_reminded, now, timedelta(minutes=10))  # the job was down at its 75% point
    notices = _run(session_factory, now, [reminded, never_reminded])
    assert sorted(notices) == sorted([reminded, never_reminded])
    for notice in notices.values():
        assert notice.kind is NoticeKind.OVERDUE
        assert _who(notice) == [(area.lead, Audience.LEAD), (area.worker, Audience.ASSIGNEE)]
    assert _run(session_factory, now + timedelta(hours=1), [reminded, never_reminded]) == {}
    assert [a for a, *_ in _history(session_factory, reminded)] == ["submit", "dispatch", "remind", "overdue"]
    assert [a for a, *_ in _history(session_factory, never_reminded)] == ["submit", "dispatch", "overdue"]
    assert _history(session_factory, never_reminded)[-1] == ("overdue", "system", Role.SYSTEM, f"{area.lead},{area.worker}")


def test_resolved_and_closed_tickets_are_not_chased(session_factory: sessionmaker[Session], area: Area) -> None:
    now = utcnow()
    worker = Actor(area.worker, Role.WORKER)
    resolved, closed = _file(session_factory, area), _file(session_factory, area)
    with unit_of_work(session_factory) as session:
        service = TicketService(session)
        service.resolve(resolved, worker, "已修好")
        service.resolve(closed, worker, "已修好")
        reporter = _ticket(session, closed).reporter_id
    with unit_of_work(session_factory) as session:
        TicketService(session).rate(reporter_id=reporter, group_id=None, rating=Rating.SATISFIED, comment=None)
    for number in (resolved, closed):
        _late(session_factory, number, now, timedelta(hours=3))
    assert _run(session_factory, now, [resolved, closed]) == {}
    with session_factory() as session:
        assert _ticket(session, closed).status == "closed"
        assert overdue_tickets(session, now, grid_code=area.grid) == []
    assert [a for a, *_ in _history(session_factory, closed)] == ["submit", "dispatch", "resolve", "close"]


def test_overdue_list_puts_the_most_late_first(session_factory: sessionmaker[Session], area: Area) -> None:
    now = utcnow()
    hours = {_file(session_factory, area): late for late in (1, 5, 3)}
    on_time = _file(session_factory, area)
    for number, late in hours.items():
        _late(session_factory, number, now, timedelta(hours=late))
    expected = sorted(hours, key=lambda n: -hours[n])
    with session_factory() as session:
        assert [t.number for t in overdue_tickets(session, now, grid_code=area.grid)] == expected
        everywhere = [t.number for t in overdue_tickets(session, now)]
        assert [n for n in everywhere if n in hours] == expected and on_time not in everywhere


def test_ticket_changed_by_someone_else_meanwhile_is_skipped_then_reminded(
    session_factory: sessionmaker[Session], area: Area
) -> None:
    """The job read the ticket, a worker accepted it before the job's write: no double write, no lost reminder."""
    now = utcnow()
    number = _file(session_factory, area)
    _elapsed(session_factory, number, now, 0.8)
    job = session_factory()
    try:
        seen = _ticket(job, number)  # the job's session has read version n (held: the identity map is weak) …
        with unit_of_work(session_factory) as other:
            TicketService(other).accept(number, Actor(area.worker, Role.WORKER))  # … the worker writes n+1
        notices = [n for n in due_notices(job, now) if n.number == number]
        job.commit()
        assert seen.number == number
    finally:
        job.close()
    assert notices == []
    with session_factory() as session:
        assert _ticket(session, number).reminded_at is None
    assert _who(_run(session_factory, now, [number])[number]) == [(area.worker, Audience.ASSIGNEE)]
    assert [a for a, *_ in _history(session_factory, number)].count("remind") == 1


def test_a_round_rolled_back_is_found_again(session_factory: sessionmaker[Session], area: Area) -> None:
    """Claims commit with the caller's transaction, all or nothing, so a failed round loses no notice."""
    now = utcnow()
    first, second = _file(session_factory, area), _file(session_factory, area)
    _elapsed(session_factory, first, now, 0.8)
    _late(session_factory, second, now, timedelta(hours=1))
    with pytest.raises(RuntimeError), unit_of_work(session_factory) as session:
        assert {n.number for n in due_notices(session, now)} >= {first, second}
        raise RuntimeError("sending failed before the commit")
    with session_factory() as session:
        assert _ticket(session, first).reminded_at is None and _ticket(session, second).overdue_notified_at is None
    assert sorted(_run(session_factory, now, [first, second])) == sorted([first, second])


def test_two_processes_racing_send_each_notice_once(session_factory: sessionmaker[Session], area: Area) -> None:
    now = utcnow()
    numbers = [_file(session_factory, area) for _ in range(3)]
    for number in numbers:
        _elapsed(session_factory, number, now, 0.8)
    results = race_twice(session_factory, lambda session: [n.number for n in due_notices(session, now) if n.number in numbers])
    assert sorted(n for claimed in results for n in claimed) == sorted(numbers)
    for number in numbers:
        assert [a for a, *_ in _history(session_factory, number)].count("remind") == 1


def test_duration_wording() -> None:
    assert duration_text(timedelta(seconds=20)) == "1分钟"
    assert duration_text(timedelta(minutes=45)) == "45分钟"
    assert duration_text(timedelta(hours=3)) == "3小时"
    assert duration_text(timedelta(hours=3, minutes=20)) == "3小时20分钟"
    assert duration_text(timedelta(days=2, hours=5, minutes=7)) == "2天5小时"


def test_job_sends_reminders_and_escalations_to_the_web_chat(database_url: str, area: Area) -> None:
    services = build_services(Settings(database_url=database_url, rasa_url="http://127.0.0.1:9"))
    factory = services.session_factory
    now = utcnow()
    soon, late = _file(factory, area, "路灯坏了"), _file(factory, area, "楼道里堆满了垃圾")
    _elapsed(factory, soon, now, 0.8)
    _late(factory, late, now, timedelta(hours=2, minutes=30))

    async def rounds() -> None:
        try:
            await check_deadlines(services)
            await check_deadlines(services)  # the second round has nothing new for these tickets
        finally:
            await services.aclose()

    asyncio.run(rounds())

    def texts(contact: str, number: str) -> list[str]:
        return [m.text for m in services.webchat.transcript(TargetType.CONTACT, contact) if number in m.text]

    [reminder] = texts(area.worker, soon)
    assert reminder.startswith("【到期提醒】") and "路灯坏了" not in reminder  # category and place, not the description
    with factory() as session:
        ticket = _ticket(session, soon)
        assert ticket.category in reminder and ticket.location in reminder
    [escalation] = texts(area.lead, late)
    assert escalation.startswith("【超期督办】") and "2小时30分钟" in escalation and "周网格" in escalation
    [copy] = texts(area.worker, late)
    assert copy.startswith("【超期提醒】") and "吴书记" in copy
    assert texts(area.lead, soon) == []
    services.engine.dispose()
