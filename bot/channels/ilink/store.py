"""What the iLink channel keeps in the database: who is bound, where each long-poll stands, what each person allows.

A binding (`ilink_bindings`) is one confirmed QR scan: a bot identity (`bot_id`, "…@im.bot") that talks to the
one WeChat user who scanned (`user_id`, "…@im.wechat"), its bot token and API base, and the long-poll cursor
(`get_updates_buf`). The cursor moves in the same transaction that notes the messages it covered (bot/deferred.py),
so after a crash or restart the poll resumes where the last noted batch ended: nothing is lost (not noted → the
server sends it again) and nothing is handled twice (noted → the cursor has moved past it).

A contact (`ilink_contacts`) is the reply window of one person: WeChat takes the bot's messages only within 24 h
of that person's last message, carrying that message's `context_token`, and at most 10 per message of theirs.
`sent` counts what went out since their last message; a send takes one of the allowance with a conditional
UPDATE, so two processes or two turns never overrun it. `closed` is set when WeChat refused a send for its own
reasons before our count says so (windows were seen closing after ~15 h): nothing more is tried until they write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.deferred import RECEIVED, DeferredMessage
from bot.messages import IncomingMessage
from storage.base import Base, utcnow
from storage.types import UTCDateTime


class BindingState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # the platform called the token stale (-14): tried again after a pause


class IlinkBinding(Base):
    __tablename__ = "ilink_bindings"

    bot_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    bot_token: Mapped[str] = mapped_column(Text)
    base_url: Mapped[str] = mapped_column(String(256))
    # The grid the person belongs to, chosen when their QR code was made: their private reports are filed there.
    grid_code: Mapped[str | None] = mapped_column(String(64), default=None)
    get_updates_buf: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default=BindingState.ACTIVE)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    bound_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IlinkContact(Base):
    __tablename__ = "ilink_contacts"

    contact_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(128))
    context_token: Mapped[str | None] = mapped_column(Text, default=None)
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    closed: Mapped[str | None] = mapped_column(Text, default=None)
    last_refusal: Mapped[str | None] = mapped_column(Text, default=None)
    last_refusal_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


@dataclass(frozen=True)
class Binding:
    """A binding as the pollers and senders use it, detached from any session."""

    bot_id: str
    user_id: str
    bot_token: str
    base_url: str
    cursor: str
    state: str
    paused_until: datetime | None
    grid_code: str | None = None

    @classmethod
    def of(cls, row: IlinkBinding) -> Binding:
        return cls(
            row.bot_id, row.user_id, row.bot_token, row.base_url, row.get_updates_buf, row.state, row.paused_until,
            row.grid_code,
        )  # fmt: skip


@dataclass(frozen=True)
class Arrival:
    """One message of a batch: what the intake gets, and the context token its replies must carry."""

    message: IncomingMessage
    context_token: str | None
    at: datetime


@dataclass(frozen=True)
class Allowance:
    """A send the window allows: the binding to send through, the context token, and how many are left after it."""

    binding: Binding
    context_token: str | None
    left: int


class Refused(Exception):
    """The reply window does not allow this send; the reason is for the console and the log."""


# --- bindings ----------------------------------------------------------------------------------------------------


def bindings(session: Session) -> list[Binding]:
    return [Binding.of(row) for row in session.scalars(select(IlinkBinding).order_by(IlinkBinding.bound_at))]


def save_binding(session: Session, bot_id: str, user_id: str, token: str, base_url: str, grid_code: str | None) -> list[str]:
    """A confirmed scan: the binding (new, or the same bot logged in again: a fresh token, the cursor kept), and
    the bot ids of older bindings of the same person, which are dropped (the npm client does the same)."""
    row = session.get(IlinkBinding, bot_id)
    if row is None:
        row = IlinkBinding(bot_id=bot_id, user_id=user_id, bot_token=token, base_url=base_url, get_updates_buf="")
        session.add(row)
    else:
        row.user_id, row.bot_token, row.base_url = user_id, token, base_url
    row.grid_code = grid_code
    row.state, row.paused_until, row.last_error, row.updated_at = BindingState.ACTIVE, None, None, utcnow()
    same_person = select(IlinkBinding.bot_id).where(IlinkBinding.user_id == user_id, IlinkBinding.bot_id != bot_id)
    older = list(session.scalars(same_person))
    if older:
        session.execute(delete(IlinkBinding).where(IlinkBinding.bot_id.in_(older)))
    return older


def pause(session: Session, bot_id: str, until: datetime, error: str) -> None:
    session.execute(
        update(IlinkBinding)
        .where(IlinkBinding.bot_id == bot_id)
        .values(state=BindingState.PAUSED, paused_until=until, last_error=error[:2000], updated_at=utcnow())
    )


def resume(session: Session, bot_id: str) -> None:
    session.execute(
        update(IlinkBinding)
        .where(IlinkBinding.bot_id == bot_id, IlinkBinding.state == BindingState.PAUSED)
        .values(state=BindingState.ACTIVE, paused_until=None, updated_at=utcnow())
    )


def accept(session: Session, bot_id: str, cursor: str, arrivals: list[Arrival]) -> list[int]:
    """One polled batch, in one transaction: each message noted for handling (its note id returned, in order), each
    sender's reply window opened afresh, and the binding's cursor moved past the batch."""
    notes = []
    for arrival in arrivals:
        note = DeferredMessage.of(arrival.message, RECEIVED)
        session.add(note)
        session.flush()
        notes.append(note.id)
        _opened(session, bot_id, arrival)
    session.execute(update(IlinkBinding).where(IlinkBinding.bot_id == bot_id).values(get_updates_buf=cursor, updated_at=utcnow()))
    return notes


def _opened(session: Session, bot_id: str, arrival: Arrival) -> None:
    contact_id = arrival.message.sender_id
    row = session.get(IlinkContact, contact_id)
    if row is None:
        row = IlinkContact(contact_id=contact_id, bot_id=bot_id)
        session.add(row)
    elif row.last_inbound_at is not None and arrival.at < row.last_inbound_at:
        return  # an older message redelivered after a newer one: the newer one's window stands
    row.bot_id, row.last_inbound_at, row.sent, row.closed, row.updated_at = bot_id, arrival.at, 0, None, utcnow()
    if arrival.context_token:
        row.context_token = arrival.context_token


# --- the reply window ----------------------------------------------------------------------------------------------


def take(session: Session, contact_id: str, window: timedelta, cap: int, *, retry: bool = False) -> Allowance:
    """One send of the contact's allowance, or Refused with why (recorded on the contact for the console).

    `retry`: the same message already took its place on an attempt that may have reached WeChat; its retry does
    not take another (one flaky message would use up several of the person's allowance)."""
    now = utcnow()
    row = session.get(IlinkContact, contact_id)
    if row is not None and session.get(IlinkBinding, row.bot_id) is None:  # checked first: nothing is taken
        reason = f"the contact's binding {row.bot_id} is gone (they must scan a binding QR code again)"
        row.last_refusal, row.last_refusal_at = reason, now
        raise Refused(reason)
    if retry and row is not None:
        binding = session.get(IlinkBinding, row.bot_id)
        assert binding is not None
        return Allowance(Binding.of(binding), row.context_token, max(cap - row.sent, 0))
    taken = session.execute(
        update(IlinkContact)
        .where(
            IlinkContact.contact_id == contact_id,
            IlinkContact.sent < cap,
            IlinkContact.closed.is_(None),
            IlinkContact.last_inbound_at >= now - window,
        )
        .values(sent=IlinkContact.sent + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    row = session.get(IlinkContact, contact_id, populate_existing=True)
    if taken.rowcount != 1 or row is None:  # type: ignore[attr-defined]
        reason = _why_not(row, now, window, cap)
        if row is not None:
            row.last_refusal, row.last_refusal_at = reason, now
        raise Refused(reason)
    binding = session.get(IlinkBinding, row.bot_id)
    if binding is None:  # removed since the check above: the place is given back before the refusal is recorded
        row.sent -= 1
        raise Refused(f"the contact's binding {row.bot_id} is gone (they must scan a binding QR code again)")
    return Allowance(Binding.of(binding), row.context_token, cap - row.sent)


def _why_not(row: IlinkContact | None, now: datetime, window: timedelta, cap: int) -> str:
    if row is None or row.last_inbound_at is None:
        return "they never wrote to the bot on iLink (WeChat takes a bot's message only after the person writes)"
    if row.closed:
        return f"WeChat refused an earlier message since their last one ({row.closed}); waiting for them to write"
    if row.last_inbound_at < now - window:
        hours = window.total_seconds() / 3600
        return f"reply window closed: their last message was over {hours:g} h ago ({row.last_inbound_at:%Y-%m-%d %H:%M} UTC)"
    return f"cap reached: {cap} messages already sent since their last message"


def give_back(session: Session, contact_id: str) -> None:
    """A send that surely did not reach WeChat (no connection) returns its place in the allowance."""
    session.execute(
        update(IlinkContact)
        .where(IlinkContact.contact_id == contact_id, IlinkContact.sent > 0)
        .values(sent=IlinkContact.sent - 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def close(session: Session, contact_id: str, reason: str) -> None:
    """WeChat refused a send within our count: the window is shut until the person writes again."""
    now = utcnow()
    session.execute(
        update(IlinkContact)
        .where(IlinkContact.contact_id == contact_id)
        .values(closed=reason[:500], last_refusal=reason[:500], last_refusal_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def contacts(session: Session) -> list[IlinkContact]:
    rows = list(session.scalars(select(IlinkContact).order_by(IlinkContact.last_inbound_at.desc())))
    for row in rows:
        session.expunge(row)
    return rows
