"""The ticket domain on both databases: numbering, dispatch, the whole lifecycle and its refusals,
duplicates, concurrency, history and the outbox written in the same transaction."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.messages import TargetType
from bot.ticket_notices import notices_for
from grid.outbox import OutboxMessage
from grid.places import same_spot
from grid.ratings import Rating
from grid.service import Actor, Filing, TicketService
from grid.tickets import Ticket
from grid.workflow import Role, TicketError
from storage.engine import unit_of_work

WORKER2 = Actor("worker-2", Role.WORKER)
BACKUP2 = Actor("worker-5", Role.WORKER)  # off duty, same grid as worker-2
LEAD1 = Actor("lead-1", Role.LEAD)  # lead of 阳光社区 (grids 1 and 2)
LEAD2 = Actor("lead-2", Role.LEAD)  # lead of 和平社区 (grids 3 and 4)


def _file(
    factory: sessionmaker[Session], text: str = "路灯坏了", place: str | None = None, reporter: str | None = None
) -> Filing:
    with unit_of_work(factory) as session:
        filing = TicketService(session).file_report(
            group_id="demo-grid-2",
            reporter_id=reporter or f"r-{uuid.uuid4().hex[:6]}",
            reporter_name="居民",
            description=text,
            location=place or f"{uuid.uuid4().hex[:6]}号楼",
        )
        return filing


def _do(factory: sessionmaker[Session], method: str, *args: object, **kwargs: object) -> Ticket:
    with unit_of_work(factory) as session:
        return getattr(TicketService(session), method)(*args, **kwargs)


def _history(factory: sessionmaker[Session], number: str) -> list[tuple[str, str]]:
    with factory() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        assert ticket is not None
        return [(e.action, e.to_status) for e in ticket.events]


def test_filed_ticket_is_numbered_dispatched_and_recorded(session_factory: sessionmaker[Session]) -> None:
    first, second = _file(session_factory).ticket, _file(session_factory).ticket
    assert first.number.startswith("GD") and len(first.number) == len("GD20261125-0001")
    assert int(second.number[-4:]) == int(first.number[-4:]) + 1
    assert first.assignee_id == "worker-2" and first.status == "dispatched" and first.grid_code == "grid-2"
    assert _history(session_factory, first.number) == [("submit", "submitted"), ("dispatch", "dispatched")]


def test_red_ticket_is_copied_to_the_community_lead(session_factory: sessionmaker[Session]) -> None:
    filing = _file(session_factory, text="楼道里有很重的燃气味")
    assert filing.ticket.colour == "red" and [w.id for w in filing.notify] == ["lead-1"]
    assert _file(session_factory).notify == []


def test_same_problem_same_place_links_to_the_open_ticket(session_factory: sessionmaker[Session]) -> None:
    place = f"{uuid.uuid4().hex[:4]}号楼2单元"
    first = _file(session_factory, "楼道灯坏了", place, reporter="r-first").ticket
    again = _file(session_factory, "楼道灯又不亮了", place + "门口", reporter="r-second")
    assert again.duplicate and again.ticket.number == first.number
    assert _file(session_factory, "楼道灯坏了", place, reporter="r-second").duplicate  # told again, listed once
    with session_factory() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == first.number))
        assert ticket is not None and [r.reporter_id for r in ticket.co_reporters] == ["r-second"]
    other_place = _file(session_factory, "楼道灯坏了", f"{uuid.uuid4().hex[:4]}号楼")
    other_problem = _file(session_factory, "楼上装修太吵了", place)
    assert not other_place.duplicate and not other_problem.duplicate


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("3号楼", "3号楼", True),
        ("3号楼", "3号楼2单元", True),  # the same building, said more precisely
        ("3号楼", "阳光花园3号楼门口", True),
        ("阳光花园", "阳光花园3号楼", False),  # an estate alone is no spot (#24): it would take any building's report
        ("3号楼", "13号楼", False),  # another building that ends the same
        ("3号楼", "B3号楼", False),
        ("三号楼", "十三号楼", False),
        ("2单元", "3号楼12单元", False),
        ("幸福路5", "幸福路51号", False),  # a number that goes on
        ("3号楼", "5号楼", False),
        ("", "3号楼", False),
    ],
)
def test_same_place_does_not_take_a_number_for_part_of_a_longer_one(a: str, b: str, same: bool) -> None:
    assert same_spot(a, b) is same and same_spot(b, a) is same


def test_a_report_from_building_3_is_not_folded_into_building_13s(session_factory: sessionmaker[Session]) -> None:
    """The duplicate check with the places as residents give them: building 13's ticket is not building 3's."""
    spot = f"东侧{uuid.uuid4().hex[:6]}处"  # no other test's ticket is at this spot
    thirteen = _file(session_factory, "路灯坏了", f"13号楼{spot}")
    three = _file(session_factory, "路灯坏了", f"3号楼{spot}")  # a substring of building 13's place
    assert not three.duplicate and three.ticket.number != thirteen.ticket.number
    inside = _file(session_factory, "路灯坏了", f"13号楼{spot}的路灯下")
    assert inside.duplicate and inside.ticket.number == thirteen.ticket.number


def test_unknown_group_is_refused(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(TicketError) as err, unit_of_work(session_factory) as session:
        TicketService(session).file_report(group_id="nope", reporter_id="r", reporter_name="r", description="x", location="y")
    assert err.value.code == "unknown_group"


def test_transfer_escalate_department_resolves_lead_reviews_resident_closes(session_factory: sessionmaker[Session]) -> None:
    number = _file(session_factory, reporter="r-loop").ticket.number
    assert _do(session_factory, "transfer", number, WORKER2, "孙丽", "我今天不在").assignee_id == "worker-5"
    ticket = _do(session_factory, "escalate", number, BACKUP2, "城管执法局", "需要执法")
    assert (ticket.status, ticket.department_code) == ("escalated", "dept-urban")
    with pytest.raises(TicketError) as err:
        _do(session_factory, "resolve", number, Actor("dept:water", Role.DEPARTMENT, "dept-water"), "不是我们的")
    assert err.value.code == "not_your_department"
    urban = Actor("dept:urban", Role.DEPARTMENT, "dept-urban")
    _do(session_factory, "accept", number, urban)
    _do(session_factory, "resolve", number, urban, "已清理")
    with pytest.raises(TicketError) as err:
        _do(session_factory, "review", number, LEAD2, True)
    assert err.value.code == "not_your_community"
    assert _do(session_factory, "review", number, LEAD1, True).status == "reviewed"
    _do(session_factory, "rate", reporter_id="r-loop", group_id="demo-grid-2", rating=Rating.SATISFIED, comment="好")
    assert [a for a, _ in _history(session_factory, number)] == [
        "submit",
        "dispatch",
        "transfer",
        "escalate",
        "accept",
        "resolve",
        "review",
        "close",
    ]


def test_refusals_change_nothing(session_factory: sessionmaker[Session]) -> None:
    number = _file(session_factory, reporter="r-2").ticket.number
    with pytest.raises(TicketError) as err:
        _do(session_factory, "rate", reporter_id="r-2", group_id="demo-grid-2", rating=Rating.SATISFIED, comment=None)
    assert err.value.code == "nothing_to_rate"
    with pytest.raises(TicketError) as err:
        _do(session_factory, "transfer", number, BACKUP2, "worker-1", "")
    assert err.value.code == "not_assignee"
    with pytest.raises(TicketError) as err:
        _do(session_factory, "transfer", number, WORKER2, "没这个人", "")
    assert err.value.code == "unknown_worker"
    _do(session_factory, "resolve", number, WORKER2, "修好了")
    with pytest.raises(TicketError) as err:
        _do(session_factory, "resolve", number, WORKER2, "再修一次")
    assert err.value.code == "invalid_transition" and err.value.params["status"] == "resolved"
    with session_factory() as session:
        stored = session.scalar(select(Ticket).where(Ticket.number == number))
        assert stored is not None and stored.result == "修好了" and len(stored.events) == 3


def test_a_role_cannot_take_another_roles_step(session_factory: sessionmaker[Session]) -> None:
    ticket = _file(session_factory).ticket
    with session_factory() as session:
        stored = session.get(Ticket, ticket.id)
        assert stored is not None
        with pytest.raises(TicketError) as err:
            stored.apply("resolve", "r-3", Role.RESIDENT)
        assert err.value.code == "role_not_allowed" and stored.status == "dispatched"


def test_returned_ticket_can_be_taken_by_exactly_one_of_two_racing_workers(session_factory: sessionmaker[Session]) -> None:
    number = _file(session_factory).ticket.number
    assert _do(session_factory, "return_ticket", number, WORKER2, "不归我管").assignee_id is None
    with pytest.raises(TicketError):
        _do(session_factory, "accept", number, BACKUP2)  # returned: the lead dispatches it first
    assert _do(session_factory, "dispatch", number, LEAD1).status == "dispatched"  # to the grid's pool
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def grab(actor: Actor) -> None:
        session = session_factory()
        try:
            service = TicketService(session)
            ticket = service.get(number)  # both read the ticket while it is free …
            barrier.wait(timeout=10)
            service.accept(ticket.number, actor)  # … then both try to take it
            session.commit()
            outcomes[actor.id] = "ok"
        except TicketError as err:
            session.rollback()
            outcomes[actor.id] = err.code
        except Exception as exc:  # SQLite may refuse the second writer outright; that is a loss too
            session.rollback()
            outcomes[actor.id] = type(exc).__name__
        finally:
            session.close()

    threads = [threading.Thread(target=grab, args=(actor,)) for actor in (WORKER2, BACKUP2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes.values()).count("ok") == 1, outcomes
    with session_factory() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        assert ticket is not None and ticket.status == "in_progress"
        assert ticket.assignee_id == next(who for who, result in outcomes.items() if result == "ok")
        assert [e.action for e in ticket.events].count("accept") == 1


def test_reopened_ticket_keeps_its_full_history(session_factory: sessionmaker[Session]) -> None:
    number = _file(session_factory, reporter="r-reopen").ticket.number
    _do(session_factory, "accept", number, WORKER2)
    _do(session_factory, "resolve", number, WORKER2, "换了灯泡")
    _do(session_factory, "rate", reporter_id="r-reopen", group_id="demo-grid-2", rating=Rating.UNSATISFIED, comment="还是不亮")
    _do(session_factory, "resolve", number, WORKER2, "换了线路")
    _do(session_factory, "rate", reporter_id="r-reopen", group_id="demo-grid-2", rating=Rating.MOSTLY_SATISFIED, comment="行")
    assert _history(session_factory, number) == [
        ("submit", "submitted"),
        ("dispatch", "dispatched"),
        ("accept", "in_progress"),
        ("resolve", "resolved"),
        ("reopen", "reopened"),
        ("dispatch", "dispatched"),
        ("resolve", "resolved"),
        ("close", "closed"),
    ]


def test_private_reporters_are_told_privately_on_their_channel_and_rate_without_a_group(
    session_factory: sessionmaker[Session],
) -> None:
    """A report from a private chat (an iLink binding's grid) has no group: the resolve notice, the rating request,
    a co-reporter's notice and a merge notice go to the person on the channel they reported on."""
    first, second, third = (f"o{uuid.uuid4().hex[:8]}@im.wechat" for _ in range(3))
    place = f"{uuid.uuid4().hex[:6]}号楼"

    def private(reporter: str, text: str, where: str) -> Filing:
        with unit_of_work(session_factory) as session:
            return TicketService(session).file_report(
                group_id=None, grid_code="grid-2", reporter_id=reporter, reporter_name="微信用户",
                description=text, location=where, reporter_channel="ilink",
            )  # fmt: skip

    filed = private(first, "路灯坏了", place).ticket
    joined = private(second, "路灯坏了", place)  # the same problem: a co-reporter, private too
    assert joined.duplicate and joined.ticket.number == filed.number
    assert (filed.group_id, filed.reporter_channel) == (None, "ilink")
    _do(session_factory, "accept", filed.number, WORKER2)
    with unit_of_work(session_factory) as session:
        ticket = TicketService(session).resolve(filed.number, WORKER2, "换了灯泡")
        notices = notices_for(session, ticket, "resolve", "worker-2")
        told = [(m.target_type, m.target_id, m.channel, m.awaits_rating_from) for m in notices]
    assert told == [(TargetType.CONTACT, first, "ilink", first), (TargetType.CONTACT, second, "ilink", None)]

    with unit_of_work(session_factory) as session:  # a private 满意 (no group) finds the ticket by its reporter alone
        waiting = TicketService(session).awaiting_rating(first, None)
        assert waiting is not None and waiting.number == filed.number
    closed = _do(session_factory, "rate", reporter_id=first, group_id=None, rating=Rating.SATISFIED, comment="满意")
    assert (closed.status, closed.rating) == ("closed", "满意")

    kept = _file(session_factory, "井盖松了", f"{uuid.uuid4().hex[:6]}号楼").ticket
    duplicate = private(third, "井盖松了又响", f"{uuid.uuid4().hex[:6]}号楼").ticket
    with unit_of_work(session_factory) as session:
        merged = TicketService(session).merge(duplicate.number, kept.number, WORKER2)
        merge_told = [(m.target_type, m.target_id, m.channel) for m in notices_for(session, merged, "merge", "worker-2")]
        target = TicketService(session).get(kept.number)
        assert [(r.reporter_id, r.reporter_channel) for r in target.co_reporters] == [(third, "ilink")]
    assert (TargetType.CONTACT, third, "ilink") in merge_told


def test_merge_and_triage_need_the_right_people(session_factory: sessionmaker[Session]) -> None:
    keep = _file(session_factory).ticket.number
    dup = _file(session_factory, reporter="r-dup").ticket.number
    _do(session_factory, "merge", dup, keep, WORKER2)
    with session_factory() as session:
        kept = session.scalar(select(Ticket).where(Ticket.number == keep))
        assert kept is not None and [r.reporter_id for r in kept.co_reporters] == ["r-dup"]
    assert _history(session_factory, dup)[-1] == ("merge", "merged")
    with pytest.raises(TicketError) as err:
        _do(session_factory, "change_triage", keep, WORKER2, colour="red", deadline_at=None, reason=" ")
    assert err.value.code == "reason_required"
    ticket = _do(session_factory, "change_triage", keep, LEAD1, colour="red", deadline_at=None, reason="有老人摔倒风险")
    assert ticket.colour == "red" and ticket.events[-1].action == "triage" and "有老人摔倒风险" in (ticket.events[-1].note or "")
    later = ticket.deadline_at + timedelta(days=1)
    assert (
        _do(session_factory, "change_triage", keep, WORKER2, colour=None, deadline_at=later, reason="等配件").deadline_at == later
    )


def test_every_event_reaches_the_outbox_in_its_own_transaction(session_factory: sessionmaker[Session]) -> None:
    number = _file(session_factory).ticket.number
    with pytest.raises(RuntimeError), unit_of_work(session_factory) as session:
        TicketService(session).accept(number, WORKER2)
        raise RuntimeError("the request failed after the change")
    with session_factory() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        assert ticket is not None and ticket.status == "dispatched"
        topics = list(
            session.scalars(select(OutboxMessage.topic).where(OutboxMessage.ticket_id == ticket.id).order_by(OutboxMessage.id))
        )
        assert topics == ["submit", "dispatch"]
        payload = session.scalars(select(OutboxMessage.payload).where(OutboxMessage.ticket_id == ticket.id)).first()
        assert payload is not None and payload["ticket"]["number"] == number
