"""Edit history of knowledge entries: one revision per create, update and delete, with the full entry as exported.

Revisions are keyed by `external_id` and hold no foreign key, so the history of a deleted entry (who deleted
it, what it said) survives the entry itself, and an entry re-created under the same external_id continues it.
`entry_id` records which row a revision belonged to; it is informational only (SQLite may reuse the id of a
deleted row), which is why it is nullable and never joined on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import JSON, CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow
from storage.types import UTCDateTime

Change = Literal["created", "updated", "deleted"]
CHANGES: tuple[Change, ...] = ("created", "updated", "deleted")


class KnowledgeEntryRevision(Base):
    """The state of an entry right after a change (for a deletion: what was deleted), and who made it when."""

    __tablename__ = "knowledge_entry_revisions"
    __table_args__ = (CheckConstraint("change IN ('created', 'updated', 'deleted')", name="change"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), index=True)
    entry_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    version: Mapped[int] = mapped_column(Integer)
    change: Mapped[str] = mapped_column(String(16))
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
