"""Transactional outbox: every ticket event becomes an outbox row in the same transaction as the event.

External systems (a city platform, a department's system) must never miss a ticket change, and must not
see one that was rolled back. Writing the message beside the event, in one commit, gives both; a
delivery job (grid/delivery.py) sends what is pending, in order per ticket, retrying while a target is down.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, event
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from grid.tickets import Ticket, TicketEvent
from storage.base import Base, utcnow
from storage.types import UTCDateTime


class OutboxMessage(Base):
    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    topic: Mapped[str] = mapped_column(String(32))  # the event's action: submit, dispatch, resolve…
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    ticket: Mapped[Ticket] = relationship()


class OutboxDelivery(Base):
    """One message to one configured target; `status` is pending until the target accepted it."""

    __tablename__ = "outbox_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("outbox_messages.id"), index=True)
    target: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(8), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


def event_payload(ticket_event: TicketEvent) -> dict[str, Any]:
    """What a connector receives: the event and the ticket as it stands after it."""
    ticket = ticket_event.ticket
    return {
        "event": ticket_event.action,
        "from_status": ticket_event.from_status,
        "to_status": ticket_event.to_status,
        "actor_id": ticket_event.actor_id,
        "actor_role": ticket_event.actor_role,
        "note": ticket_event.note,
        "photos": ticket_event.photos or [],
        "at": ticket_event.created_at.isoformat() if ticket_event.created_at else utcnow().isoformat(),
        "ticket": {
            "number": ticket.number,
            "category": ticket.category,
            "colour": ticket.colour,
            "status": ticket.status,
            "description": ticket.description,
            "location": ticket.location,
            "grid": ticket.grid_code,
            "assignee": ticket.assignee_id,
            "department": ticket.department_code,
            "deadline": ticket.deadline_at.isoformat() if ticket.deadline_at else None,
        },
    }


@event.listens_for(Session, "before_flush")
def _write_outbox(session: Session, _context: object, _instances: object) -> None:
    """Every new TicketEvent in this flush gets its outbox row, committed or rolled back with it."""
    for obj in list(session.new):
        if isinstance(obj, TicketEvent) and obj.ticket is not None:
            # Linked through the relationship: a ticket filed in this same flush has no id yet.
            session.add(OutboxMessage(ticket=obj.ticket, topic=obj.action, payload=event_payload(obj)))
