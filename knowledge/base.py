"""The answer policy: answer only when the best match is clearly good and clearly better than the next."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from knowledge.models import KnowledgeEntry
from knowledge.retrieval import Hit, LexicalIndex

# A question is matched two ways: against each phrasing admins wrote (title, variants), which is precise,
# and against the whole entry including its answer, which catches words residents use that no variant has.
VARIANT_WEIGHT = 0.65
ENTRY_WEIGHT = 0.35
# Calibrated on the demo entries' paraphrases and unrelated questions (tests/test_knowledge.py).
ANSWER_THRESHOLD = 0.30
ANSWER_MARGIN = 0.05


@dataclass(frozen=True)
class Answer:
    entry: KnowledgeEntry
    score: float
    runner_up: float


@dataclass(frozen=True)
class _Indexes:
    variants: LexicalIndex
    entries: LexicalIndex


class KnowledgeBase:
    """Caches the indexes per content signature, so edits are picked up without a restart."""

    def __init__(self) -> None:
        self._signature: tuple[object, ...] | None = None
        self._indexes: _Indexes | None = None

    def _indexes_for(self, session: Session) -> _Indexes:
        signature = tuple(
            session.execute(
                select(func.count(KnowledgeEntry.id), func.max(KnowledgeEntry.updated_at), func.sum(KnowledgeEntry.version))
            ).one()
        )
        if self._indexes is None or signature != self._signature:
            variants: list[tuple[int, str]] = []
            entries: list[tuple[int, str]] = []
            for entry in session.scalars(select(KnowledgeEntry)):
                phrasings = [entry.title, *entry.questions]
                variants.extend((entry.id, text) for text in phrasings)
                entries.append((entry.id, "\n".join([*phrasings, entry.answer])))
            self._indexes, self._signature = _Indexes(LexicalIndex(variants), LexicalIndex(entries)), signature
        return self._indexes

    def search(self, session: Session, query: str, region_codes: list[str], today: date, top_k: int = 5) -> list[Hit]:
        """Hits among entries valid today whose scope is one of the asker's regions, best first."""
        indexes = self._indexes_for(session)
        allowed = {
            entry.id
            for entry in session.scalars(select(KnowledgeEntry).where(KnowledgeEntry.scope_code.in_(region_codes)))
            if entry.is_current(today)
        }
        by_variant = {hit.key: hit for hit in indexes.variants.search(query, allowed, top_k=len(allowed) or 1)}
        by_entry = {hit.key: hit.score for hit in indexes.entries.search(query, allowed, top_k=len(allowed) or 1)}
        blended = [
            Hit(key, VARIANT_WEIGHT * hit.score + ENTRY_WEIGHT * by_entry.get(key, 0.0), hit.matched)
            for key, hit in by_variant.items()
        ]
        return sorted(blended, key=lambda h: h.score, reverse=True)[:top_k]

    def answer(self, session: Session, query: str, region_codes: list[str], today: date) -> Answer | None:
        hits = self.search(session, query, region_codes, today, top_k=2)
        if not hits or hits[0].score < ANSWER_THRESHOLD:
            return None
        runner_up = hits[1].score if len(hits) > 1 else 0.0
        if hits[0].score - runner_up < ANSWER_MARGIN:
            return None
        entry = session.get(KnowledgeEntry, hits[0].key)
        assert entry is not None
        return Answer(entry, hits[0].score, runner_up)
