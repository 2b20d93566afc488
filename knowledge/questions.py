"""The questions residents asked the knowledge base, what it did, and whether the answer helped.

Admins turn this into new entries: the unanswered questions (handed to a worker) and the ones residents
said did not help are listed for them, newest first, until an admin marks them handled.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Boolean, Float, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage.base import Base, utcnow
from storage.types import UTCDateTime

Kind = Literal["unanswered", "unhelpful"]
# How long after an answer a resident's "没用" still refers to it.
FEEDBACK_WINDOW = timedelta(minutes=30)


class AskedQuestion(Base):
    __tablename__ = "knowledge_questions"

    id: Mapped[int] = mapped_column(primary_key=True)
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    group_id: Mapped[str | None] = mapped_column(String(128), default=None)
    asker_id: Mapped[str] = mapped_column(String(128))
    asker_name: Mapped[str] = mapped_column(String(128))
    question: Mapped[str] = mapped_column(Text)
    answered: Mapped[bool] = mapped_column(Boolean)
    entry_id: Mapped[int | None] = mapped_column(Integer, default=None)
    entry_external_id: Mapped[str | None] = mapped_column(String(128), default=None)
    score: Mapped[float | None] = mapped_column(Float, default=None)
    feedback: Mapped[str | None] = mapped_column(String(16), default=None)
    feedback_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ticket_number: Mapped[str | None] = mapped_column(String(32), default=None)
    handled: Mapped[bool] = mapped_column(Boolean, default=False)


def last_answer_to(
    session: Session, asker_id: str, group_id: str | None, now: datetime | None = None, window: timedelta = FEEDBACK_WINDOW
) -> AskedQuestion | None:
    """The latest answer this person got here within `window`: recent enough for "没用" to mean it (the default), or
    for a question that names nothing of its own to be about it (knowledge/followups.py, a shorter window)."""
    now = now or utcnow()
    return session.scalar(
        select(AskedQuestion)
        .where(
            AskedQuestion.asker_id == asker_id,
            AskedQuestion.group_id.is_(None) if group_id is None else AskedQuestion.group_id == group_id,
            AskedQuestion.answered.is_(True),
            AskedQuestion.asked_at >= now - window,
        )
        .order_by(AskedQuestion.asked_at.desc(), AskedQuestion.id.desc())
        .limit(1)
    )


def needing_entries(session: Session, kind: Kind, limit: int = 100) -> list[AskedQuestion]:
    """What admins should look at: unanswered questions, or answers residents said did not help."""
    condition = AskedQuestion.answered.is_(False) if kind == "unanswered" else AskedQuestion.feedback == "unhelpful"
    query = select(AskedQuestion).where(condition, AskedQuestion.handled.is_(False))
    return list(session.scalars(query.order_by(AskedQuestion.asked_at.desc(), AskedQuestion.id.desc()).limit(limit)))
