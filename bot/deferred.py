"""Messages that arrived while Rasa was down: stored, then replayed by a retry job, so none is lost."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from bot.messages import IncomingMessage
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
    status: Mapped[str] = mapped_column(String(8), default="held", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def as_message(self) -> IncomingMessage:
        return IncomingMessage(
            channel=self.channel,
            sender_id=self.sender_id,
            sender_name=self.sender_name,
            text=self.text,
            group_id=self.group_id,
            mentions_bot=self.mentions_bot,
            message_id=self.message_id,
        )


class DeferredStore:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def hold(self, message: IncomingMessage, error: str) -> int:
        with unit_of_work(self._factory) as session:
            row = DeferredMessage(
                channel=message.channel,
                message_id=message.message_id,
                group_id=message.group_id,
                sender_id=message.sender_id,
                sender_name=message.sender_name,
                text=message.text,
                mentions_bot=message.mentions_bot,
                last_error=error[:2000],
            )
            session.add(row)
            session.flush()
            return row.id

    def held(self, limit: int = 100) -> list[tuple[int, IncomingMessage]]:
        with unit_of_work(self._factory) as session:
            rows = session.scalars(
                select(DeferredMessage).where(DeferredMessage.status == "held").order_by(DeferredMessage.id).limit(limit)
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
                row.status = "done"
            else:
                row.last_error = error[:2000]
