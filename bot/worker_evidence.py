"""Photos and voice notes a grid worker sends in private chat: evidence of the work, kept on the ticket (六步闭环).

Workers photograph the problem on arrival and the result when done, and send the pictures as messages of their own,
before or after saying 修好了; some dictate what they did as a voice note. Which ticket a picture belongs to is
decided as for words (bot/worker_words.py), never guessed when two fit:

1. a ticket the worker accepted or resolved within the evidence window (WORKER_EVIDENCE_MINUTES): the before and
   after photos of the job just started or finished — even when it now waits for the resident's rating;
2. otherwise the worker's one ticket in progress;
3. otherwise (several in progress, or only tickets not yet accepted) the bot asks with numbered choices, and the
   pick is remembered with the pictures (bot/worker_desk.py); with no ticket at all it says so.

A picture becomes a `work_photo` history entry (a voice note's text a `work_note`), on the ticket's timeline in the
console and in its outbox events. The rating request to the resident says how many photos the worker took
(bot/ticket_notices.py); a photo arriving after that request went out is announced to the resident once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.messages import OutgoingMessage
from bot.texts import text as t
from bot.ticket_notices import to_reporter, work_photo_count
from bot.worker_words import DeskTicket
from grid.geography import Worker
from grid.tickets import Ticket, TicketEvent
from grid.workflow import OPEN_STATUSES, WAITING_FOR_RESIDENT, Role, Status

PHOTO_ACTION = "work_photo"
NOTE_ACTION = "work_note"
# A ticket's photos from its handlers: more is noise for the resident and the console (residents keep 9 of theirs).
MAX_WORK_PHOTOS = 18
# The worker's own steps that start "right after": the before photo of a job just taken, the after photo of one done.
_STARTS = ("accept", "resolve")
# Tickets evidence may still go to: open, or done and waiting for the resident (not closed, merged or cancelled).
_KEEPS = OPEN_STATUSES | WAITING_FOR_RESIDENT


@dataclass(frozen=True)
class Candidates:
    """The tickets a worker's picture may belong to (as the numbered question shows them); `sure` when the rules
    pick the one without asking."""

    tickets: tuple[DeskTicket, ...]
    sure: bool


@dataclass(frozen=True)
class Attached:
    """What attaching did: the ticket, its photos from handlers now, and what the resident is told (if anything)."""

    number: str
    photos: int
    notices: tuple[OutgoingMessage, ...] = ()


def candidates(session: Session, worker_id: str, now: datetime, window: timedelta) -> Candidates:
    """Which of the worker's tickets a picture sent at `now` is evidence for (see the module docstring)."""
    recent = session.execute(
        select(Ticket, TicketEvent.created_at)
        .join(TicketEvent, TicketEvent.ticket_id == Ticket.id)
        .where(
            Ticket.assignee_id == worker_id,
            Ticket.status_in(_KEEPS),
            TicketEvent.actor_id == worker_id,
            TicketEvent.action.in_(_STARTS),
            TicketEvent.created_at >= now - window,
        )
        .order_by(TicketEvent.created_at.desc(), TicketEvent.id.desc())
    ).all()
    just_handled = tuple(_shown(x) for x in dict.fromkeys(row.Ticket for row in recent))
    if just_handled:
        return Candidates(just_handled, sure=len(just_handled) == 1)
    open_tickets = list(
        session.scalars(
            select(Ticket).where(Ticket.assignee_id == worker_id, Ticket.status_in(OPEN_STATUSES)).order_by(Ticket.id)
        )
    )
    working = tuple(_shown(x) for x in open_tickets if x.status == Status.IN_PROGRESS)
    if working:
        return Candidates(working, sure=len(working) == 1)
    return Candidates(tuple(_shown(x) for x in open_tickets), sure=False)


def _shown(ticket: Ticket) -> DeskTicket:
    return DeskTicket(ticket.number, str(ticket.status), ticket.category, ticket.location, ticket.description)


def attach(
    session: Session, number: str, worker_id: str, photos: tuple[str, ...] = (), note: str = ""
) -> Attached | None:
    """Record the pictures (and a voice note's text) on the worker's ticket; None when it is not theirs (any more)."""
    ticket = session.scalar(select(Ticket).where(Ticket.number == number))
    worker = session.get(Worker, worker_id)
    if ticket is None or worker is None or ticket.assignee_id != worker_id or Status(ticket.status) not in _KEEPS:
        return None
    role = Role.LEAD if worker.role == "lead" else Role.WORKER
    had_after_request = _photos_since_resolved(ticket)
    kept = work_photo_count(ticket)
    taken = list(photos)[: max(MAX_WORK_PHOTOS - kept, 0)]
    if taken:
        event = ticket.record(PHOTO_ACTION, worker_id, role)
        event.photos = taken
    if note.strip():
        ticket.record(NOTE_ACTION, worker_id, role, note=note.strip())
    session.flush()
    count = work_photo_count(ticket)
    notices: tuple[OutgoingMessage, ...] = ()
    if taken and Status(ticket.status) in WAITING_FOR_RESIDENT and not had_after_request:
        # The rating request went out without them: the resident hears once (in the group, or privately) that the
        # photos are on the record.
        told = to_reporter(ticket, t("tickets.resident_photos_added", number=ticket.number, count=count))
        notices = (told,) if told is not None else ()
    return Attached(ticket.number, count, notices)


def _photos_since_resolved(ticket: Ticket) -> bool:
    """Whether handlers' photos were already added after the latest 办结 (the resident was told then)."""
    resolved = max((e.id for e in ticket.events if e.action == "resolve" and e.id is not None), default=None)
    if resolved is None:
        return False
    return any(e.action == PHOTO_ACTION and e.id is not None and e.id > resolved for e in ticket.events)
