"""Knowledge entries: an answer with its source, the region it applies to and the dates it is valid."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Date, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow
from storage.types import UTCDateTime


class KnowledgeEntry(Base):
    __tablename__ = "knowledge_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    title: Mapped[str] = mapped_column(String(256))
    questions: Mapped[list[str]] = mapped_column(JSON, default=list)
    answer: Mapped[str] = mapped_column(Text)
    source_document: Mapped[str] = mapped_column(String(256))
    source_office: Mapped[str | None] = mapped_column(String(128), default=None)
    source_url: Mapped[str | None] = mapped_column(String(512), default=None)
    source_date: Mapped[date | None] = mapped_column(Date, default=None)
    scope_level: Mapped[str] = mapped_column(String(16), default="district")
    scope_code: Mapped[str] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    effective_from: Mapped[date | None] = mapped_column(Date, default=None)
    expires_on: Mapped[date | None] = mapped_column(Date, default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_by: Mapped[str] = mapped_column(String(128), default="import")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def is_current(self, today: date) -> bool:
        """An entry is answerable from its effective date through its expiry date, inclusive."""
        if self.effective_from and today < self.effective_from:
            return False
        return not (self.expires_on and today > self.expires_on)

    def citation(self) -> str:
        """How an answer names its source: office, document and date, as residents are used to reading them."""
        parts = [p for p in (self.source_office, self.source_document) if p]
        if self.source_date:
            parts.append(f"（{self.source_date:%Y年%m月%d日}）")
        return "".join(parts)
