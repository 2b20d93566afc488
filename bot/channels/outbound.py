"""Messages on their way out to a platform: a row each, so a failed or paced send is retried, never lost.

The web chat writes its transcript directly (its "platform" is our database); every other channel's message
becomes a row here first, in order, and is then sent by the dispatcher at once or by the retry job later.
A row is claimed by a conditional UPDATE that pushes its `next_attempt_at` a lease ahead, so two processes
never send it at the same time, and a process killed mid-send leaves it to be retried once the lease ends
(at-least-once, with the row's `key` passed to the adapter for de-duplication).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow
from storage.types import UTCDateTime


class OutboundStatus:
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class OutboundMessage(Base):
    __tablename__ = "outbound_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    target_type: Mapped[str] = mapped_column(String(8))
    target_id: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text, default="")
    # [{"id": …, "name": …}] for a room message; [{"kind": …, "url": …, …}] when the row carries one media item.
    mentions: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    media: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(8), default=OutboundStatus.PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
