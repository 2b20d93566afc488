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
    lexical: float
    dense: float | None
    matched: str
    answer: str
    source: dict[str, str | None]


@dataclass(frozen=True)
class HitTest:
    answered: bool
    mode: str
    hits: list[HitView]


def hit_test(kb: KnowledgeBase, session: Session, query: str, regions: list[str], today: date, top_k: int) -> HitTest:
    """Ranked hits among entries valid today in these regions, and whether the bot would answer with the first."""
    policy, candidates = kb.ranked(session, query, regions, today, top_k=max(top_k, 3))
    views = []
    for candidate in candidates[:top_k]:
        entry = session.get(KnowledgeEntry, candidate.entry_id)
        assert entry is not None
        source = {
            "document": entry.source_document,
            "office": entry.source_office,
            "url": entry.source_url,
            "date": entry.source_date.isoformat() if entry.source_date else None,
        }
        dense = round(candidate.dense, 4) if candidate.dense is not None else None
        score = round(policy.confidence(candidate), 4)
        views.append(
            HitView(
                entry.id, entry.external_id, entry.title, score, round(candidate.lexical, 4), dense, candidate.matched,
                entry.answer, source,
            )
        )  # fmt: skip
    return HitTest(answered=policy.choose(candidates) is not None, mode=kb.mode, hits=views)
