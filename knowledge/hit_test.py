"""Hit testing: what the knowledge base would answer a question asked in a given place, and why.

Admins check a new or edited entry this way before residents ask; the same ranking and answer policy
as the bot's, so what it shows is what the bot would do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy.orm import Session

from knowledge.base import KnowledgeBase
from knowledge.models import KnowledgeEntry


@dataclass(frozen=True)
class HitView:
    entry_id: int
    external_id: str
    title: str
    score: float
    answer: str
    source: dict[str, str | None]


@dataclass(frozen=True)
class HitTest:
    answered: bool
    hits: list[HitView]


def hit_test(kb: KnowledgeBase, session: Session, query: str, regions: list[str], today: date, top_k: int) -> HitTest:
    """Ranked hits among entries valid today in these regions, and whether the bot would answer with the first."""
    hits = kb.search(session, query, regions, today, top_k=max(top_k, 2))
    views = []
    for hit in hits[:top_k]:
        entry = session.get(KnowledgeEntry, hit.key)
        assert entry is not None
        source = {
            "document": entry.source_document,
            "office": entry.source_office,
            "url": entry.source_url,
            "date": entry.source_date.isoformat() if entry.source_date else None,
        }
        views.append(HitView(entry.id, entry.external_id, entry.title, round(hit.score, 4), entry.answer, source))
    return HitTest(answered=kb.answer(session, query, regions, today) is not None, hits=views)
