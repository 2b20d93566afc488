"""Messages that arrived while Rasa was down: stored, then replayed by a retry job, so none is lost.

The same table is the receipt book of platforms that are answered before a message is handled (WeCom's
callback must be acknowledged within 5 s; a wechaty message is never delivered again): such a message is
noted ("received") before the platform is told it arrived, and the note is settled once the intake has
handled it. A note nobody settled within `received_stale_seconds` belongs to a process that died or was
stopped mid-turn; the retry job takes it as held and replays it, so a crash loses no message.

A row keeps all a handler needs of the message: a private message's grid (`grid_code`, an iLink binding's) and
its pictures are kept as they arrived, not looked up again at replay — a binding revoked or re-made for another
grid in between must not move the report, and pictures are only known from the message itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import JSON, Boolean, Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from bot.messages import IncomingMessage, Media
from storage.base import Base, utcnow
from storage.engine import unit_of_work
from storage.types import UTCDateTime


class DeferredMessage(Base):
    __tablename__ = "deferred_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str | None] = mapped_column(String(128), default=None)
    group_id: Mapped[str | None] = mapped_column(String(128), default=None)
    sender_id: Mapped[str] = mapped_column(String(128))
    sender_name: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    mentions_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    grid_code: Mapped[str | None] = mapped_column(String(64), default=None)
    media: Mapped[list[dict[str, object]] | None] = mapped_column(JSON, default=None)
    status: Mapped[str] = mapped_column(String(8), default="held", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @classmethod
    def of(cls, message: IncomingMessage, status: str, error: str | None = None) -> DeferredMessage:
        """A row for `message`, to add to a session (a channel may note it in a transaction of its own)."""
        return cls(
            channel=message.channel,
            message_id=message.message_id,
            group_id=message.group_id,
            sender_id=message.sender_id,
            sender_name=message.sender_name,
            text=message.text,
            mentions_bot=message.mentions_bot,
            grid_code=message.grid_code,
            media=[m.to_json() for m in message.media] or None,
            status=status,
            last_error=error[:2000] if error is not None else None,
        )

    def as_message(self) -> IncomingMessage:
        return IncomingMessage(
            channel=self.channel,
            sender_id=self.sender_id,
            sender_name=self.sender_name,
            text=self.text,
            group_id=self.group_id,
            mentions_bot=self.mentions_bot,
            message_id=self.message_id,
            grid_code=self.grid_code,
            media=tuple(Media.from_json(m) for m in self.media or ()),
        )


HELD, RECEIVED, DONE = "held", "received", "done"


class DeferredStore:
    def __init__(self, factory: sessionmaker[Session], received_stale_seconds: float = 300.0) -> None:
        self._factory = factory
        self._received_stale = timedelta(seconds=received_stale_seconds)

    def hold(self, message: IncomingMessage, error: str) -> int:
        return self._add(message, HELD, error)

    def note(self, message: IncomingMessage) -> int:
        """Note a message about to be handled; `settle` when done, `hold_noted` when handling failed."""
        return self._add(message, RECEIVED, None)

    def settle(self, row_id: int) -> None:
        with unit_of_work(self._factory) as session:
            session.execute(delete(DeferredMessage).where(DeferredMessage.id == row_id, DeferredMessage.status == RECEIVED))

    def hold_noted(self, row_id: int, error: str) -> None:
        with unit_of_work(self._factory) as session:
            session.execute(
                update(DeferredMessage)
                .where(DeferredMessage.id == row_id, DeferredMessage.status == RECEIVED)
                .values(status=HELD, last_error=error[:2000], updated_at=utcnow())
            )

    def _add(self, message: IncomingMessage, status: str, error: str | None) -> int:
        with unit_of_work(self._factory) as session:
            row = DeferredMessage.of(message, status, error)
            session.add(row)
            session.flush()
            return row.id

    def held(self, limit: int = 100) -> list[tuple[int, IncomingMessage]]:
        """Held messages in arrival order, including noted ones whose handler went away (now held)."""
        with unit_of_work(self._factory) as session:
            session.execute(
                update(DeferredMessage)
                .where(DeferredMessage.status == RECEIVED, DeferredMessage.created_at < utcnow() - self._received_stale)
                .values(status=HELD, last_error="the process handling it stopped before it was handled", updated_at=utcnow())
            )
            rows = session.scalars(
                select(DeferredMessage).where(DeferredMessage.status == HELD).order_by(DeferredMessage.id).limit(limit)
            )
            return [(row.id, row.as_message()) for row in rows]

    def finish(self, row_id: int, error: str | None = None) -> None:
        """Mark a replay done, or count a failed attempt and keep the message held."""
        with unit_of_work(self._factory) as session:
            row = session.get(DeferredMessage, row_id)
            if row is None:
                return
            row.attempts += 1
            row.updated_at = utcnow()
            if error is None:
                row.status = DONE
            else:
                row.last_error = error[:2000]
