"""The ticket domain on both databases: numbering, dispatch, the lifecycle's refusals, history."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from grid.ratings import Rating
from grid.service import TicketService
from grid.tickets import Ticket
from grid.workflow import Role, TicketError
from storage.engine import unit_of_work


def _file(factory: sessionmaker[Session], reporter: str = "r-1", text: str = "路灯坏了") -> Ticket:
    with unit_of_work(factory) as session:
        return TicketService(session).file_report(
            group_id="demo-grid-2", reporter_id=reporter, reporter_name="居民", description=text, location="2号楼"
        )


def test_filed_ticket_is_numbered_dispatched_and_recorded(session_factory: sessionmaker[Session]) -> None:
    first, second = _file(session_factory), _file(session_factory)
    assert first.number.startswith("GD") and len(first.number) == len("GD20261125-0001")
    assert int(second.number[-4:]) == int(first.number[-4:]) + 1
    assert first.assignee_id == "worker-2" and first.status == "dispatched" and first.grid_code == "grid-2"
    with session_factory() as session:
        stored = session.get(Ticket, first.id)
        assert stored is not None
        assert [(e.action, e.from_status, e.to_status) for e in stored.events] == [
            ("submit", None, "submitted"),
            ("dispatch", "submitted", "dispatched"),
        ]
        assert stored.deadline_at.tzinfo is not None


def test_unknown_group_is_refused(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(TicketError) as err, unit_of_work(session_factory) as session:
        TicketService(session).file_report(group_id="nope", reporter_id="r", reporter_name="r", description="x", location="y")
    assert err.value.code == "unknown_group"


def test_lifecycle_refusals_change_nothing(session_factory: sessionmaker[Session]) -> None:
    ticket = _file(session_factory, reporter="r-2")
    with pytest.raises(TicketError) as err, unit_of_work(session_factory) as session:
        TicketService(session).rate(reporter_id="r-2", group_id="demo-grid-2", rating=Rating.SATISFIED, comment=None)
    assert err.value.code == "nothing_to_rate"

    with unit_of_work(session_factory) as session:
        TicketService(session).resolve(ticket.number, "worker-2", "修好了")
    with pytest.raises(TicketError) as err, unit_of_work(session_factory) as session:
        TicketService(session).resolve(ticket.number, "worker-2", "再修一次")
    assert err.value.code == "invalid_transition" and err.value.params["status"] == "resolved"

    with session_factory() as session:
        stored = session.get(Ticket, ticket.id)
        assert stored is not None and stored.result == "修好了" and len(stored.events) == 3


def test_a_role_cannot_take_another_roles_step(session_factory: sessionmaker[Session]) -> None:
    ticket = _file(session_factory, reporter="r-3")
    with session_factory() as session:
        stored = session.get(Ticket, ticket.id)
        assert stored is not None
        with pytest.raises(TicketError) as err:
            stored.apply("resolve", "r-3", Role.RESIDENT)
        assert err.value.code == "role_not_allowed"
        assert stored.status == "dispatched"
