"""The knowledge base the bot and the admins ask: a hybrid index kept current, and the answer policy.

Every process (app workers, CLI) checks a cheap signature of the entries table before searching and
rebuilds its in-memory index when another process has imported or edited entries, so an edit is
searchable within a search of being committed, without a restart and without a message bus.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from knowledge.answer_policy import DENSE_ONLY_SUFFIX, LEXICAL_ONLY, AnswerPolicy, StoredPolicy, load_policy
from knowledge.embeddings import Embedder
from knowledge.hybrid import Candidate, EntryRecord, HybridIndex
from knowledge.models import KnowledgeEntry
from knowledge.vector_cache import vectors_for

log = logging.getLogger(__name__)
# Residents ask the same few questions over and over, and encoding is most of a search's time: recent
# query vectors are kept per process (shared by every KnowledgeBase of the same model).
QUERY_CACHE_SIZE = 4096
_query_vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_query_lock = threading.Lock()
_warned_uncalibrated: set[str] = set()


@dataclass(frozen=True)
class Hit:
    entry_id: int
    score: float  # confidence on the answer policy's scale: 1.0 is just enough to answer
    lexical: float
    dense: float | None
    matched: str


@dataclass(frozen=True)
class Answer:
    entry: KnowledgeEntry
    score: float
    runner_up: float


@dataclass(frozen=True)
class Suggestion:
    """An entry offered as "您想问的是…": plausible, but not enough to answer unasked for."""

    entry: KnowledgeEntry
    score: float  # on the answer policy's scale: at least its suggest_floor; below 1, or too close to another entry's


@dataclass(frozen=True)
class _State:
    index: HybridIndex
    policy: AnswerPolicy


class KnowledgeBase:
    """`dense_only` leaves BM25 out of ranking and confidence: a baseline for bench/kb_search.py, not for residents."""

    def __init__(self, embedder: Embedder | None = None, dense_only: bool = False) -> None:
        if dense_only and embedder is None:
            raise ValueError("dense-only retrieval needs an embedding model")
        self.embedder = embedder
        self.dense_only = dense_only
        self.model_name = (embedder.name + DENSE_ONLY_SUFFIX if dense_only else embedder.name) if embedder else LEXICAL_ONLY
        self._lock = threading.Lock()
        # Run before every search, so one round trip (the calibration time rides along as a subquery), built once.
        calibrated = select(StoredPolicy.calibrated_at).where(StoredPolicy.model == self.model_name).scalar_subquery()
        self._signature_query = select(
            func.count(KnowledgeEntry.id), func.max(KnowledgeEntry.updated_at), func.sum(KnowledgeEntry.version), calibrated
        )
        self._signature: tuple[object, ...] | None = None
        self._state: _State | None = None

    def encode_queries(self, queries: list[str]) -> list[np.ndarray]:
        """Query vectors, encoded in one batch for those not seen recently (batches are several times faster)."""
        assert self.embedder is not None
        name = self.embedder.name
        with _query_lock:
            missing = list(dict.fromkeys(q for q in queries if (name, q) not in _query_vectors))
        encoded = dict(zip(missing, self.embedder.encode(missing), strict=True)) if missing else {}
        with _query_lock:
            for query, vector in encoded.items():
                vector.setflags(write=False)
                _query_vectors[(name, query)] = vector
            vectors = [_query_vectors.get((name, q), encoded.get(q)) for q in queries]
            for query in queries:
                if (name, query) in _query_vectors:
                    _query_vectors.move_to_end((name, query))
            while len(_query_vectors) > QUERY_CACHE_SIZE:
                _query_vectors.popitem(last=False)
        return [v for v in vectors if v is not None]

    @property
    def mode(self) -> str:
        if self.embedder is None:
            return "lexical only"
        return f"dense only ({self.embedder.name})" if self.dense_only else f"hybrid ({self.embedder.name})"

    def _signature_of(self, session: Session) -> tuple[object, ...]:
        return tuple(session.execute(self._signature_query).one())

    def state(self, session: Session) -> _State:
        """The current index and policy, rebuilt when entries or calibration changed in any process."""
        signature = self._signature_of(session)
        with self._lock:
            if self._state is None or signature != self._signature:
                self._state = self._build(session)
                self._signature = signature
            return self._state

    def _build(self, session: Session) -> _State:
        entries = session.scalars(select(KnowledgeEntry).order_by(KnowledgeEntry.id)).all()
        records = [
            EntryRecord(
                e.id,
                e.scope_code,
                e.effective_from,
                e.expires_on,
                tuple(dict.fromkeys([e.title, *e.questions])),
                body="\n".join([e.answer, " ".join(e.tags)]),
            )
            for e in entries
        ]
        vectors = None
        if self.embedder is not None:
            vectors = vectors_for(session, self.embedder, [text for r in records for text in r.phrasings])
        policy = load_policy(session, self.model_name)
        if not policy.calibrated and self.model_name not in _warned_uncalibrated:
            _warned_uncalibrated.add(self.model_name)
            log.warning("answer thresholds for %s are uncalibrated defaults: run `gridbot kb calibrate`", self.model_name)
        log.info("knowledge index built: %d entries, %s", len(records), self.mode)
        return _State(HybridIndex(records, vectors), policy)

    def ranked(
        self, session: Session, query: str, regions: list[str], today: date, top_k: int = 5
    ) -> tuple[AnswerPolicy, list[Candidate]]:
        """The policy in force and the candidates among entries valid today in one of the asker's regions."""
        state = self.state(session)
        vector = self.encode_queries([query])[0] if self.embedder is not None else None
        allowed = state.index.allowed(regions, today)
        return state.policy, state.index.search(query, vector, allowed, top_k=top_k, use_lexical=not self.dense_only)

    def search(self, session: Session, query: str, regions: list[str], today: date, top_k: int = 5) -> list[Hit]:
        """Best first, scored on the answer policy's scale."""
        policy, candidates = self.ranked(session, query, regions, today, top_k)
        return [Hit(c.entry_id, policy.confidence(c), c.lexical, c.dense, c.matched) for c in candidates]

    def answer(self, session: Session, query: str, regions: list[str], today: date) -> Answer | None:
        policy, candidates = self.ranked(session, query, regions, today, top_k=3)
        chosen = policy.choose(candidates)
        if chosen is None:
            return None
        entry = session.get(KnowledgeEntry, chosen.entry_id)
        assert entry is not None
        runner_up = max((policy.confidence(c) for c in candidates[1:]), default=0.0)
        return Answer(entry, policy.confidence(chosen), runner_up)

    def suggestions(self, session: Session, query: str, regions: list[str], today: date) -> list[Suggestion]:
        """The plausible entries to offer when `answer` gives none (the same top three it weighs), most likely
        first; empty when it would answer, when nothing clears the calibrated floor, or with no floor calibrated.
        Entries with the same title are offered once: the resident could not tell "1." from "2."."""
        policy, candidates = self.ranked(session, query, regions, today, top_k=3)
        offered: list[Suggestion] = []
        for candidate, confidence in policy.plausible(candidates):
            entry = session.get(KnowledgeEntry, candidate.entry_id)
            if entry is not None and all(s.entry.title != entry.title for s in offered):
                offered.append(Suggestion(entry, confidence))
        return offered
