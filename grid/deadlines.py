"""Deadline supervision (督办): reminders before a ticket's deadline and escalation once it has passed.

A ticket is reminded once, to its assignee (or, while nobody has it, to the community lead), when three
quarters of its time from report to deadline has gone; once the deadline has passed, the community lead is
told once (督办) and the assignee gets a copy. Deadlines are calendar hours, as `categories.yml` gives them:
nights and holidays count, because residents wait through them too. A working-hours calendar would change
only `remind_at` and the overdue test here.

Each notice is produced exactly once even when two processes run the check at the same moment: a notice
is claimed by setting `reminded_at` / `overdue_notified_at` and writing a history event in one savepoint,
and the ticket's optimistic lock (its version column) makes the slower of two claims fail on flush with
StaleDataError. That ticket is then skipped here; the faster process sends its notice. Nothing here talks
to a chat: the caller turns the returned notices into messages after its transaction commits.

Emergencies (grid/emergencies.py) get one more kind of notice, claimed the same way: while nobody has accepted
one, its worker and the lead are told again once per interval, counted from the history's last re-notice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from grid.geography import Worker, community_lead
from grid.locks import begin_writing
from grid.service import EMERGENCY_ACTION, SYSTEM_ACTOR
from grid.tickets import Ticket, TicketEvent
from grid.workflow import OPEN_STATUSES, Role, Status

log = logging.getLogger(__name__)

# Share of a ticket's time (report → deadline) after which its handler is reminded.
REMIND_AT_FRACTION = 0.75


class NoticeKind(StrEnum):
    """What a notice is; the value is also the history action it writes."""

    REMINDER = "remind"  # 到期提醒: the deadline is close
    OVERDUE = "overdue"  # 超期督办: the deadline has passed


class Audience(StrEnum):
    """Why someone receives a notice: it decides which text they get."""

    ASSIGNEE = "assignee"  # the worker who has the ticket
    LEAD = "lead"  # the community lead (社区负责人), who dispatches and supervises


@dataclass(frozen=True)
class Recipient:
    worker_id: str
    name: str
    audience: Audience


@dataclass(frozen=True)
class DeadlineNotice:
    """A claimed reminder or escalation, as plain values so it outlives the session that produced it."""

    kind: NoticeKind
    ticket_id: int
    number: str
    category: str
    colour: str
    location: str
    grid_code: str
    created_at: datetime
    deadline_at: datetime
    noticed_at: datetime
    assignee: Recipient | None
    recipients: tuple[Recipient, ...]


def remind_at(ticket: Ticket) -> datetime:
    """When the ticket's reminder is due: REMIND_AT_FRACTION of the way from report to deadline."""
    return ticket.created_at + (ticket.deadline_at - ticket.created_at) * REMIND_AT_FRACTION


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")


def _open() -> ColumnElement[bool]:
    return Ticket.status_in(OPEN_STATUSES)


def due_kind(ticket: Ticket, now: datetime) -> NoticeKind | None:
    """The notice a ticket is owed at `now`, if any; a ticket already overdue is escalated, not reminded."""
    if ticket.deadline_at < now:
        return NoticeKind.OVERDUE if ticket.overdue_notified_at is None else None
    if ticket.reminded_at is None and remind_at(ticket) <= now:
        return NoticeKind.REMINDER
    return None


def due_notices(session: Session, now: datetime) -> list[DeadlineNotice]:
    """Claim and return every reminder and escalation due at `now`, each exactly once across processes.

    The caller owns the transaction (commit, then send): if it rolls back, the claims go with it and the
    next run finds the same notices again. The 75% point is computed here rather than in SQL, because
    interval arithmetic differs between SQLite and PostgreSQL; the query narrows to open tickets that still
    owe a notice, which is what a neighbourhood's handful of open tickets costs anyway.
    """
    _require_aware(now)
    begin_writing(session)
    owed = or_(
        and_(Ticket.deadline_at < now, Ticket.overdue_notified_at.is_(None)),
        and_(Ticket.deadline_at >= now, Ticket.reminded_at.is_(None)),
    )
    # Ordered by id so two concurrent runs lock rows in the same order (no deadlock on PostgreSQL);
    # read in full first, because each claim flushes on the same connection.
    candidates = list(session.scalars(select(Ticket).where(_open(), owed).order_by(Ticket.id)))
    notices: list[DeadlineNotice] = []
    for ticket in candidates:
        kind = due_kind(ticket, now)
        if kind is not None and (notice := _claim(session, ticket, kind, now)) is not None:
            notices.append(notice)
    return notices


def _handlers(session: Session, ticket: Ticket) -> tuple[Recipient | None, Recipient | None]:
    """The worker who has the ticket and its community's lead, either missing when there is none."""
    worker = session.get(Worker, ticket.assignee_id) if ticket.assignee_id else None
    assignee = Recipient(worker.id, worker.name, Audience.ASSIGNEE) if worker else None
    lead_worker = community_lead(session, ticket.grid_code)
    lead = Recipient(lead_worker.id, lead_worker.name, Audience.LEAD) if lead_worker else None
    return assignee, lead


def _recipients(session: Session, ticket: Ticket, kind: NoticeKind) -> tuple[Recipient | None, tuple[Recipient, ...]]:
    """Reminder: the assignee, else the lead (someone must dispatch it). Overdue: the lead, and the assignee."""
    assignee, lead = _handlers(session, ticket)
    if kind is NoticeKind.REMINDER:
        chosen = [assignee or lead]
    elif assignee is not None and lead is not None and assignee.worker_id == lead.worker_id:
        chosen = [lead]  # a lead handling the ticket themself gets one message, not two
    else:
        chosen = [lead, assignee]
    return assignee, tuple(r for r in chosen if r is not None)


def _claim(session: Session, ticket: Ticket, kind: NoticeKind, now: datetime) -> DeadlineNotice | None:
    """Mark the ticket and write its history event in a savepoint; None if another process got there first."""
    assignee, recipients = _recipients(session, ticket, kind)
    number = ticket.number
    try:
        with session.begin_nested():
            if kind is NoticeKind.REMINDER:
                ticket.reminded_at = now
            else:
                ticket.overdue_notified_at = now
            note = ",".join(r.worker_id for r in recipients) or None
            ticket.record(kind.value, SYSTEM_ACTOR, Role.SYSTEM, note=note)
    except StaleDataError:
        log.info("deadline %s of %s: ticket changed concurrently; skipped, next round retries", kind.value, number)
        return None
    if not recipients:
        log.warning("deadline %s of %s has nobody to tell (no assignee, no community lead)", kind.value, number)
    return DeadlineNotice(
        kind=kind,
        ticket_id=ticket.id,
        number=ticket.number,
        category=ticket.category,
        colour=ticket.colour,
        location=ticket.location,
        grid_code=ticket.grid_code,
        created_at=ticket.created_at,
        deadline_at=ticket.deadline_at,
        noticed_at=now,
        assignee=assignee,
        recipients=recipients,
    )


# --- emergencies nobody has accepted (life-safety emergencies, grid/emergencies.py) -----------------------------

# An emergency in one of these has not been taken on by anyone yet: its worker and the lead are told again.
NOT_ACCEPTED = frozenset({Status.SUBMITTED, Status.DISPATCHED, Status.TRANSFERRED})
RENOTICE_ACTION = "renotice"


@dataclass(frozen=True)
class EmergencyRenotice:
    """A claimed re-notice of an emergency still not accepted, as plain values (like DeadlineNotice)."""

    ticket_id: int
    number: str
    kind_name: str
    location: str
    description: str
    created_at: datetime
    noticed_at: datetime
    assignee: Recipient | None
    recipients: tuple[Recipient, ...]


def last_told(ticket: Ticket) -> datetime:
    """When the ticket's handlers were last told of it: its latest re-notice, else its filing (the first notice)."""
    return max((e.created_at for e in ticket.events if e.action == RENOTICE_ACTION), default=ticket.created_at)


def renotice_due(ticket: Ticket, now: datetime, every: timedelta) -> bool:
    """Not accepted, not yet past its deadline (督办 takes over then), and told nothing for a whole interval.

    Computed from the history alone, so a restart neither repeats a re-notice nor skips one: after a long outage
    the ticket gets one re-notice, not one per interval missed.
    """
    return Status(ticket.status) in NOT_ACCEPTED and now < ticket.deadline_at and now - last_told(ticket) >= every


def due_emergency_renotices(session: Session, now: datetime, every: timedelta) -> list[EmergencyRenotice]:
    """Claim and return the re-notices due at `now`: one per emergency ticket per interval, across processes.

    Claimed like the deadline notices (a history event in a savepoint, the ticket's version checked), so of two
    processes running the check at once only one tells anyone; the caller commits, then sends.
    """
    _require_aware(now)
    begin_writing(session)
    marked = select(TicketEvent.ticket_id).where(TicketEvent.action == EMERGENCY_ACTION)
    query = select(Ticket).where(
        Ticket.id.in_(marked),
        Ticket.status_in(NOT_ACCEPTED),
        Ticket.deadline_at > now,
        Ticket.created_at <= now - every,
    )
    candidates = list(session.scalars(query.order_by(Ticket.id)))
    claimed: list[EmergencyRenotice] = []
    for ticket in candidates:
        if renotice_due(ticket, now, every) and (renotice := _claim_renotice(session, ticket, now)) is not None:
            claimed.append(renotice)
    return claimed


def _claim_renotice(session: Session, ticket: Ticket, now: datetime) -> EmergencyRenotice | None:
    """The worker who has it and the community lead (once, as the one who has it, if the same person); None if
    another process claimed it first."""
    assignee, lead = _handlers(session, ticket)
    if assignee is not None and lead is not None and assignee.worker_id == lead.worker_id:
        lead = None
    recipients = tuple(r for r in (assignee, lead) if r is not None)
    note = ",".join(r.worker_id for r in recipients) or None
    kind_name = next((e.note or "" for e in ticket.events if e.action == EMERGENCY_ACTION), "")
    try:
        with session.begin_nested():
            event = ticket.record(RENOTICE_ACTION, SYSTEM_ACTOR, Role.SYSTEM, note=note)
            event.created_at = now  # the interval counts from the check that sent it, as renotice_due reads it
    except StaleDataError:
        log.info("emergency re-notice of %s: ticket changed concurrently; skipped, next round retries", ticket.number)
        return None
    if not recipients:
        log.warning("emergency %s is not accepted and has nobody to tell (no worker, no community lead)", ticket.number)
    return EmergencyRenotice(
        ticket_id=ticket.id,
        number=ticket.number,
        kind_name=kind_name,
        location=ticket.location,
        description=ticket.description,
        created_at=ticket.created_at,
        noticed_at=now,
        assignee=assignee,
        recipients=recipients,
    )


def overdue_tickets(session: Session, now: datetime, grid_code: str | None = None) -> list[Ticket]:
    """The 督办 list: open tickets past their deadline, the most overdue first: the order to chase them in."""
    _require_aware(now)
    query = select(Ticket).where(_open(), Ticket.deadline_at < now)
    if grid_code is not None:
        query = query.where(Ticket.grid_code == grid_code)
    return list(session.scalars(query.order_by(Ticket.deadline_at, Ticket.id)))


def overdue_by(ticket: Ticket | DeadlineNotice, now: datetime) -> timedelta:
    """How late a ticket is at `now` (zero while it is not)."""
    return max(now - ticket.deadline_at, timedelta(0))
