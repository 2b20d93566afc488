"""Ticket (工单) and its history; a state change is a method that writes its own history row."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import JSON, ColumnElement, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.orm.attributes import flag_modified

from grid.workflow import OPEN_STATUSES, Role, Status, check_transition
from storage.base import Base, utcnow
from storage.types import UTCDateTime


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    category: Mapped[str] = mapped_column(String(32))
    colour: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(Text)
    location: Mapped[str] = mapped_column(String(256))
    reporter_id: Mapped[str] = mapped_column(String(128), index=True)
    reporter_name: Mapped[str] = mapped_column(String(128))
    group_id: Mapped[str | None] = mapped_column(ForeignKey("chat_groups.id"), default=None, index=True)
    # The channel a report made in private chat came from (no group): its reporter is told privately there.
    reporter_channel: Mapped[str | None] = mapped_column(String(32), default=None)
    grid_code: Mapped[str] = mapped_column(ForeignKey("grids.code"))
    assignee_id: Mapped[str | None] = mapped_column(ForeignKey("workers.id"), default=None, index=True)
    status: Mapped[Status] = mapped_column(String(16), default=Status.SUBMITTED)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    result: Mapped[str | None] = mapped_column(Text, default=None)
    rating: Mapped[str | None] = mapped_column(String(16), default=None)
    rating_comment: Mapped[str | None] = mapped_column(Text, default=None)
    department_code: Mapped[str | None] = mapped_column(ForeignKey("departments.code"), default=None)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), default=None)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    overdue_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Optimistic lock: of two workers accepting at the same moment, the second one's UPDATE matches no row.
    version_id: Mapped[int] = mapped_column(Integer, default=1)

    events: Mapped[list[TicketEvent]] = relationship(
        back_populates="ticket", order_by="TicketEvent.id", cascade="all, delete-orphan"
    )
    co_reporters: Mapped[list[TicketReporter]] = relationship(order_by="TicketReporter.id", cascade="all, delete-orphan")

    __mapper_args__ = {"version_id_col": version_id}  # noqa: RUF012

    @classmethod
    def status_in(cls, statuses: Iterable[Status]) -> ColumnElement[bool]:
        """SQL filter on a set of statuses (OPEN_STATUSES, WAITING_FOR_RESIDENT…)."""
        return cls.status.in_(sorted(s.value for s in statuses))

    @property
    def is_open(self) -> bool:
        return Status(self.status) in OPEN_STATUSES

    def reported_by(self, person_id: str) -> bool:
        """The first reporter or a co-reporter: both may follow the ticket up."""
        return self.reporter_id == person_id or any(r.reporter_id == person_id for r in self.co_reporters)

    def apply(
        self, action: str, actor_id: str, role: Role, note: str | None = None, photos: list[str] | None = None
    ) -> TicketEvent:
        """Move the ticket by `action` if `role` may, and record who did it, when, and the evidence (photos)."""
        transition = check_transition(action, Status(self.status), role)
        event = TicketEvent(
            action=action,
            from_status=Status(self.status),
            to_status=transition.target,
            actor_id=actor_id,
            actor_role=role,
            note=note,
            photos=list(photos) if photos else None,
        )
        self.status = transition.target
        now = event.created_at = utcnow()
        if transition.target is Status.RESOLVED:
            self.resolved_at = now
        elif transition.target in (Status.CLOSED, Status.CANCELLED):
            self.closed_at = now
        self.events.append(event)
        return event

    def record(self, action: str, actor_id: str, role: Role, note: str | None = None, at: datetime | None = None) -> TicketEvent:
        """A history entry that is not a state change (催办, a co-report), made now or `at` (a filing's moment).

        The ticket row is still marked changed, so its version moves: concurrent entries on one ticket
        serialise like state changes do, and their outbox messages keep the order they committed in.
        """
        flag_modified(self, "status")
        status = Status(self.status)
        event = TicketEvent(action=action, from_status=status, to_status=status, actor_id=actor_id, actor_role=role, note=note)
        event.created_at = at or utcnow()
        self.events.append(event)
        return event


class TicketEvent(Base):
    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(128))
    actor_role: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text, default=None)
    # References to photos (URLs or stored media ids) taken with this step: the problem, the result.
    photos: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    ticket: Mapped[Ticket] = relationship(back_populates="events")


class TicketReporter(Base):
    """Someone who reported the same problem again: told when it is resolved, like the first reporter."""

    __tablename__ = "ticket_reporters"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    reporter_id: Mapped[str] = mapped_column(String(128))
    reporter_name: Mapped[str] = mapped_column(String(128))
    group_id: Mapped[str | None] = mapped_column(ForeignKey("chat_groups.id"), default=None)
    reporter_channel: Mapped[str | None] = mapped_column(String(32), default=None)  # as on Ticket: a private report's
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TicketCounter(Base):
    """Last ticket sequence number of a local day, so numbers read GD20261125-0001, -0002, …"""

    __tablename__ = "ticket_counters"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer, default=0)
