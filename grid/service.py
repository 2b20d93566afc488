"""Ticket use cases: file a report, resolve it, take the resident's rating. One call = one unit of work's changes."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from grid.categories import classify
from grid.geography import ChatGroup, Worker, on_duty_worker
from grid.ratings import Rating
from grid.tickets import Ticket, TicketCounter, TicketEvent
from grid.workflow import OPEN_STATUSES, Role, Status, TicketError
from storage.base import utcnow

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
SYSTEM_ACTOR = "system"


class TicketService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def file_report(
        self,
        *,
        group_id: str,
        reporter_id: str,
        reporter_name: str,
        description: str,
        location: str,
        category_hint: str | None = None,
    ) -> Ticket:
        """Store a resident's report and dispatch it to the grid's on-duty worker (问→派)."""
        group = self.session.get(ChatGroup, group_id)
        if group is None:
            raise TicketError("unknown_group", group_id=group_id)
        category = classify(description, category_hint)
        now = utcnow()
        ticket = Ticket(
            number=self._next_number(),
            category=category.name,
            colour=category.colour,
            description=description,
            location=location,
            reporter_id=reporter_id,
            reporter_name=reporter_name,
            group_id=group.id,
            grid_code=group.grid_code,
            status=Status.SUBMITTED,
            created_at=now,
            deadline_at=now + timedelta(hours=category.deadline_hours),
        )
        ticket.events.append(
            TicketEvent(
                action="submit",
                from_status=None,
                to_status=Status.SUBMITTED,
                actor_id=reporter_id,
                actor_role=Role.RESIDENT,
                created_at=now,
            )
        )
        self.session.add(ticket)
        worker = on_duty_worker(self.session, group.grid_code)
        if worker is not None:
            ticket.assignee_id = worker.id
            ticket.apply("dispatch", SYSTEM_ACTOR, Role.SYSTEM, note=worker.id)
        self.session.flush()
        return ticket

    def get(self, number: str) -> Ticket:
        ticket = self.session.scalar(select(Ticket).where(Ticket.number == number.upper()))
        if ticket is None:
            raise TicketError("ticket_not_found", number=number)
        return ticket

    def resolve(self, number: str, worker_id: str, result: str) -> Ticket:
        """The worker's 办结: only the assignee may report the result."""
        ticket = self.get(number)
        if ticket.assignee_id != worker_id:
            raise TicketError("not_assignee", number=ticket.number)
        ticket.apply("resolve", worker_id, Role.WORKER, note=result)
        ticket.result = result
        self.session.flush()
        return ticket

    def accept(self, number: str, worker_id: str) -> Ticket:
        """The worker's 接单: the assignee takes the ticket on."""
        ticket = self.get(number)
        if ticket.assignee_id != worker_id:
            raise TicketError("not_assignee", number=ticket.number)
        ticket.apply("accept", worker_id, Role.WORKER)
        self.session.flush()
        return ticket

    def assigned_to(self, worker_id: str) -> list[Ticket]:
        """A worker's open tickets, oldest deadline first: the order to work them in."""
        query = (
            select(Ticket)
            .where(Ticket.assignee_id == worker_id, Ticket.status.in_([s.value for s in OPEN_STATUSES]))
            .order_by(Ticket.deadline_at, Ticket.id)
        )
        return list(self.session.scalars(query))

    def urge(self, *, reporter_id: str, number: str | None) -> Ticket:
        """The resident's 催办 on a named ticket or their latest open one; recorded, the status stays."""
        if number:
            ticket = self.get(number)
            if ticket.reporter_id != reporter_id:
                raise TicketError("not_reporter", number=ticket.number)
        else:
            query = select(Ticket).where(Ticket.reporter_id == reporter_id, Ticket.status.in_([s.value for s in OPEN_STATUSES]))
            ticket = self.session.scalars(query.order_by(Ticket.id.desc()).limit(1)).first()
            if ticket is None:
                raise TicketError("nothing_to_urge")
        if Status(ticket.status) not in OPEN_STATUSES:
            raise TicketError("invalid_transition", action="urge", status=ticket.status)
        ticket.record("urge", reporter_id, Role.RESIDENT)
        self.session.flush()
        return ticket

    def awaiting_rating(self, reporter_id: str, group_id: str | None) -> Ticket | None:
        """The reporter's most recently resolved ticket, in this group when the rating comes from one."""
        query = select(Ticket).where(Ticket.reporter_id == reporter_id, Ticket.status == Status.RESOLVED)
        if group_id:
            query = query.where(Ticket.group_id == group_id)
        return self.session.scalar(query.order_by(Ticket.resolved_at.desc(), Ticket.id.desc()).limit(1))

    def rate(self, *, reporter_id: str, group_id: str | None, rating: Rating, comment: str | None) -> Ticket:
        """回访: 满意/基本满意 close the ticket; 不满意 reopens it and sends it back to the same worker."""
        ticket = self.awaiting_rating(reporter_id, group_id)
        if ticket is None:
            raise TicketError("nothing_to_rate")
        ticket.rating = rating.value
        ticket.rating_comment = comment
        if rating is Rating.UNSATISFIED:
            ticket.apply("reopen", reporter_id, Role.RESIDENT, note=comment)
            ticket.apply("dispatch", SYSTEM_ACTOR, Role.SYSTEM, note=ticket.assignee_id)
        else:
            ticket.apply("close", reporter_id, Role.RESIDENT, note=rating.value)
        self.session.flush()
        return ticket

    def open_tickets_of(self, reporter_id: str) -> list[Ticket]:
        query = (
            select(Ticket)
            .where(Ticket.reporter_id == reporter_id, Ticket.status.in_([s.value for s in OPEN_STATUSES | {Status.RESOLVED}]))
            .order_by(Ticket.id.desc())
        )
        return list(self.session.scalars(query))

    def worker(self, worker_id: str) -> Worker | None:
        return self.session.get(Worker, worker_id)

    def _next_number(self) -> str:
        """GD + local date + a per-day sequence; the counter row is locked so parallel reports never collide."""
        day = utcnow().astimezone(LOCAL_TZ).strftime("%Y%m%d")
        counter = self.session.scalar(select(TicketCounter).where(TicketCounter.day == day).with_for_update())
        if counter is None:
            counter = TicketCounter(day=day, last=0)
            self.session.add(counter)
        counter.last += 1
        self.session.flush()
        return f"GD{day}-{counter.last:04d}"
