"""Load entries from YAML and upsert them by external_id, so loading the same file twice changes nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, HttpUrl, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from knowledge.models import KnowledgeEntry
from storage.base import utcnow


class SourceIn(BaseModel):
    document: str = Field(min_length=1)
    office: str | None = None
    url: HttpUrl | None = None
    date: dt.date | None = None


class EntryIn(BaseModel):
    """One entry as an admin writes it; validation happens before anything is written."""

    external_id: str = Field(min_length=1, max_length=128)
    title: str = Field(min_length=1, max_length=256)
    questions: list[str] = Field(default_factory=list)
    answer: str = Field(min_length=1)
    source: SourceIn
    scope: str = "district"
    scope_code: str
    tags: list[str] = Field(default_factory=list)
    effective_from: dt.date | None = None
    expires_on: dt.date | None = None

    @field_validator("scope")
    @classmethod
    def _known_scope(cls, value: str) -> str:
        if value not in ("district", "street", "community"):
            raise ValueError("scope must be district, street or community")
        return value

    def columns(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "questions": [q.strip() for q in self.questions if q.strip()],
            "answer": self.answer.strip(),
            "source_document": self.source.document,
            "source_office": self.source.office,
            "source_url": str(self.source.url) if self.source.url else None,
            "source_date": self.source.date,
            "scope_level": self.scope,
            "scope_code": self.scope_code,
            "tags": self.tags,
            "effective_from": self.effective_from,
            "expires_on": self.expires_on,
        }


def read_yaml(path: Path) -> list[EntryIn]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return [EntryIn.model_validate(item) for item in raw.get("entries", [])]


def upsert_entries(session: Session, entries: list[EntryIn], updated_by: str) -> tuple[int, int]:
    """Insert new entries and update changed ones (bumping their version); returns (created, updated)."""
    created = updated = 0
    for entry in entries:
        existing = session.scalar(select(KnowledgeEntry).where(KnowledgeEntry.external_id == entry.external_id))
        values = entry.columns()
        if existing is None:
            session.add(KnowledgeEntry(external_id=entry.external_id, updated_by=updated_by, **values))
            created += 1
        elif any(getattr(existing, key) != value for key, value in values.items()):
            for key, value in values.items():
                setattr(existing, key, value)
            existing.version += 1
            existing.updated_by = updated_by
            existing.updated_at = utcnow()
            updated += 1
    session.flush()
    return created, updated
