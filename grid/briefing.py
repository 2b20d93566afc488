"""The numbers of a worker's day: what is on their desk this morning, and how their community did yesterday.

The morning digest and the lead's briefing (bot/worker_day.py words them) read these. Two choices differ from the
period statistics of grid/stats.py, on purpose:

- Yesterday's figures count what happened yesterday, not what was reported yesterday: "办结 6" is the tickets
  resolved during that day, whenever they were reported; ticket_stats' "resolved" (of the tickets reported in the
  period, how many are resolved) would show a lead nothing about a day's work on two-day tickets.
- Satisfaction counts the residents' answers given that day, from the history (a 满意/基本满意 close, a 不满意
  reopen), so a ticket rated 不满意, redone and rated 满意 the next day counts once on each day.

Days are local calendar days (grid/stats.local_day_range); merged and cancelled tickets are left out of the rates
as in grid/stats.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from grid.clock import LOCAL_TZ
from grid.geography import Grid, Worker
from grid.stats import NOT_WORKED, SATISFIED, local_day_range
from grid.tickets import Ticket, TicketEvent
from grid.workflow import OPEN_STATUSES, Role


@dataclass(frozen=True)
class Agenda:
    """A worker's open tickets this morning, the order to work them in: overdue, due today, the rest."""

    overdue: tuple[Ticket, ...]
    due_today: tuple[Ticket, ...]
    later: tuple[Ticket, ...]

    @property
    def count(self) -> int:
        return len(self.overdue) + len(self.due_today) + len(self.later)


@dataclass(frozen=True)
class DayFigures:
    """One local day of a set of grids; rates are fractions in 0..1, None when there was nothing to divide."""

    day: date
    new: int
    resolved: int
    resolved_on_time: int
    rated: int
    satisfied: int

    @property
    def on_time_rate(self) -> float | None:
        return self.resolved_on_time / self.resolved if self.resolved else None

    @property
    def satisfaction_rate(self) -> float | None:
        return self.satisfied / self.rated if self.rated else None


def local_day(moment: datetime) -> date:
    return moment.astimezone(LOCAL_TZ).date()


def agenda_of(session: Session, worker_id: str, now: datetime) -> Agenda:
    """The worker's open tickets (grid/service.assigned_to's), sorted by what `now` makes of their deadlines."""
    query = (
        select(Ticket)
        .where(Ticket.assignee_id == worker_id, Ticket.status_in(OPEN_STATUSES))
        .order_by(Ticket.deadline_at, Ticket.id)
    )
    tickets = list(session.scalars(query))
    _, end_of_today = local_day_range(local_day(now), local_day(now))
    overdue = tuple(x for x in tickets if x.deadline_at < now)
    due_today = tuple(x for x in tickets if now <= x.deadline_at < end_of_today)
    later = tuple(x for x in tickets if x.deadline_at >= end_of_today)
    return Agenda(overdue, due_today, later)


def grids_seen_by(session: Session, worker: Worker) -> list[str]:
    """A lead sees their community's grids, a worker their own grid (as the console's statistics do)."""
    if worker.role != "lead":
        return [worker.grid_code]
    grid = session.get(Grid, worker.grid_code)
    if grid is None:
        return [worker.grid_code]
    return list(session.scalars(select(Grid.code).where(Grid.community_code == grid.community_code).order_by(Grid.code)))


def day_figures(session: Session, day: date, grids: list[str]) -> DayFigures:
    """What happened in these grids on the local day `day`: reported, resolved (and in time), rated (and satisfied)."""
    start, end = local_day_range(day, day)
    in_grids = Ticket.grid_code.in_(grids)
    new = session.scalar(select(func.count(Ticket.id)).where(in_grids, Ticket.created_at >= start, Ticket.created_at < end))
    resolved = session.execute(
        select(Ticket.resolved_at, Ticket.deadline_at).where(
            in_grids,
            Ticket.resolved_at >= start,
            Ticket.resolved_at < end,
            Ticket.status.not_in(sorted(NOT_WORKED)),
        )
    ).all()
    answers = session.execute(
        select(TicketEvent.action, TicketEvent.note)
        .join(Ticket, Ticket.id == TicketEvent.ticket_id)
        .where(
            in_grids,
            TicketEvent.actor_role == Role.RESIDENT,
            TicketEvent.action.in_(("close", "reopen")),
            TicketEvent.created_at >= start,
            TicketEvent.created_at < end,
        )
    ).all()
    return DayFigures(
        day=day,
        new=int(new or 0),
        resolved=len(resolved),
        resolved_on_time=sum(1 for r in resolved if r.resolved_at <= r.deadline_at),
        rated=len(answers),
        satisfied=sum(1 for a in answers if a.action == "close" and a.note in SATISFIED),
    )


def overdue_in(session: Session, grids: list[str], now: datetime) -> list[Ticket]:
    """Open tickets past their deadline, the most overdue first (the 督办 list, grid/deadlines.overdue_tickets)."""
    query = select(Ticket).where(Ticket.grid_code.in_(grids), Ticket.status_in(OPEN_STATUSES), Ticket.deadline_at < now)
    return list(session.scalars(query.order_by(Ticket.deadline_at, Ticket.id)))


def red_open_in(session: Session, grids: list[str]) -> list[Ticket]:
    """Red tickets (立行立改, emergencies) still open: the ones a lead looks at first."""
    query = select(Ticket).where(Ticket.grid_code.in_(grids), Ticket.status_in(OPEN_STATUSES), Ticket.colour == "red")
    return list(session.scalars(query.order_by(Ticket.created_at, Ticket.id)))


def yesterday(now: datetime) -> date:
    return local_day(now) - timedelta(days=1)
