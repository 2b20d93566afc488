"""Hybrid retrieval over knowledge entries: BM25 and dense cosines per entry, fused into one ranking.

Each entry is searched through its phrasings (title and question variants): its dense score is its best
phrasing's cosine, its lexical score its best phrasing's BM25 blended with the whole entry's. Entries
outside the asker's regions or dates are masked out before ranking, with vectorised filters, so one index
serves every group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from knowledge.dense import ANN_ABOVE, VectorIndex
from knowledge.lexical import Bm25Index
from knowledge.text_features import terms

# Reciprocal rank fusion constant: 60 is the literature's default for long result lists; our lists are
# a handful of plausible entries, where a smaller constant keeps first place meaningfully ahead of second.
RRF_K = 10
# How many entries each retriever contributes to fusion.
DEPTH = 30
# Lexical evidence: the best phrasing (precise) blended with the whole entry, answer included (catches the
# resident's words no phrasing has). Chosen on the calibration questions: top-1 0.81 phrasings alone, 0.87 blended.
PHRASING_WEIGHT = 0.65
ENTRY_WEIGHT = 0.35
# Entry masks remembered per (region chain, day); the index is rebuilt when entries change, and so are they.
ALLOWED_MASKS_KEPT = 4096
_FAR_FUTURE = np.datetime64("9999-12-31")
_FAR_PAST = np.datetime64("0001-01-01")


@dataclass(frozen=True)
class EntryRecord:
    entry_id: int
    scope_code: str
    effective_from: date | None
    expires_on: date | None
    phrasings: tuple[str, ...]
    body: str = ""  # answer and tags: words residents use that no phrasing has


@dataclass(frozen=True)
class Candidate:
    entry_id: int
    fused: float  # reciprocal-rank fusion of the two rankings; orders candidates
    lexical: float  # normalised BM25, best phrasing blended with the whole entry, about 0–1
    dense: float | None  # cosine of the best phrasing; None without a model
    matched: str  # the phrasing that matched best


class HybridIndex:
    def __init__(
        self,
        records: Sequence[EntryRecord],
        vectors: np.ndarray | None = None,
        ann_above: int = ANN_ABOVE,
        phrasing_terms: Sequence[list[str]] | None = None,
        entry_terms: Sequence[list[str]] | None = None,
    ) -> None:
        """`vectors` and `phrasing_terms` are per phrasing in record order, `entry_terms` per record; the terms
        are optional precomputed tokens (the benchmark builds 100k entries from a few hundred)."""
        self.records = list(records)
        self.entry_ids = np.array([r.entry_id for r in self.records], dtype=np.int64)
        self._scopes = np.array([r.scope_code for r in self.records], dtype=object)
        self._from = np.array([np.datetime64(r.effective_from) if r.effective_from else _FAR_PAST for r in self.records])
        self._until = np.array([np.datetime64(r.expires_on) if r.expires_on else _FAR_FUTURE for r in self.records])
        counts = np.array([len(r.phrasings) for r in self.records], dtype=np.int64)
        if (counts == 0).any():
            raise ValueError("every entry needs at least one phrasing (its title)")
        self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self._doc_entry = np.repeat(np.arange(len(self.records)), counts)
        self.texts = [text for r in self.records for text in r.phrasings]
        self.lexical = Bm25Index(phrasing_terms if phrasing_terms is not None else [terms(text) for text in self.texts])
        self.entry_lexical = Bm25Index(
            entry_terms if entry_terms is not None else [terms("\n".join([*r.phrasings, r.body])) for r in self.records]
        )
        if vectors is not None and len(vectors) != len(self.texts):
            raise ValueError(f"{len(vectors)} vectors for {len(self.texts)} phrasings")
        self.dense = VectorIndex(vectors, ann_above) if vectors is not None and len(self.texts) else None
        self._allowed: dict[tuple[tuple[str, ...], date], np.ndarray] = {}

    def allowed(self, regions: Sequence[str], today: date) -> np.ndarray:
        """Mask of entries answerable here and today: in one of the asker's regions and between their dates.

        Read-only and remembered per region chain and day: a city has a few hundred chains and every question
        asks for one (np.isin over the entries' scope codes was a tenth of a search)."""
        key = (tuple(regions), today)
        mask = self._allowed.get(key)
        if mask is None:
            if not self.records:
                mask = np.zeros(0, dtype=bool)
            else:
                day = np.datetime64(today)
                mask = np.isin(self._scopes, list(regions)) & (self._from <= day) & (self._until >= day)
            mask.setflags(write=False)
            if len(self._allowed) >= ALLOWED_MASKS_KEPT:
                self._allowed.clear()  # a new day or an unusual burst of chains: start over rather than track age
            self._allowed[key] = mask
        return mask

    def _span(self, position: int) -> slice:
        start = int(self._starts[position])
        return slice(start, start + len(self.records[position].phrasings))

    def search(
        self, query: str, query_vector: np.ndarray | None, allowed: np.ndarray, top_k: int = 5, use_lexical: bool = True
    ) -> list[Candidate]:
        """Best entries first among the allowed ones; each with both scores so the answer policy can judge it.

        `use_lexical=False` ranks by the dense model alone (for comparing retrievers in bench/kb_search.py).
        """
        if not self.records or not allowed.any():
            return []
        rankings: list[list[int]] = []
        doc_lexical = np.zeros(len(self.texts), dtype=np.float32)
        lexical = np.zeros(len(self.records), dtype=np.float32)
        if use_lexical:
            query_terms = terms(query)  # jieba and opencc once for both indexes
            doc_lexical = self.lexical.scores_for_terms(query_terms) * allowed[self._doc_entry]
            whole_entry = self.entry_lexical.scores_for_terms(query_terms) * allowed
            lexical = PHRASING_WEIGHT * np.maximum.reduceat(doc_lexical, self._starts) + ENTRY_WEIGHT * whole_entry
            rankings.append(_top(lexical, DEPTH))
        vector = query_vector if self.dense is not None else None
        if vector is not None:
            rankings.append(self._dense_ranking(vector, allowed))
        fused: dict[int, float] = {}
        for ranking in rankings:
            for rank, position in enumerate(ranking, start=1):
                fused[position] = fused.get(position, 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(fused, key=lambda p: (-fused[p], -lexical[p]))[:top_k]
        candidates = []
        for position in best:
            span = self._span(position)
            if vector is not None:
                assert self.dense is not None
                cosines = self.dense.vectors[span] @ vector  # exact, whichever way the entry was found
                cosine: float | None = float(cosines.max())
                matched = self.texts[span.start + int(np.argmax(cosines))]
            else:
                cosine = None
                matched = self.texts[span.start + int(np.argmax(doc_lexical[span]))]
            entry_id = int(self.entry_ids[position])
            candidates.append(Candidate(entry_id, fused[position], float(lexical[position]), cosine, matched))
        return candidates

    def _dense_ranking(self, vector: np.ndarray, allowed: np.ndarray) -> list[int]:
        """Allowed entries by their best phrasing's cosine, best first: exact below the ANN size, else the
        entries among the graph's nearest phrasings (a region filter that rejects most of them could leave
        fewer than DEPTH; the lexical ranking still covers those entries)."""
        assert self.dense is not None
        if not self.dense.approximate:
            doc = np.where(allowed[self._doc_entry], self.dense.vectors @ vector, -2.0)
            return _top(np.maximum.reduceat(doc, self._starts), DEPTH, floor=-1.0)
        positions, cosines = self.dense.nearest(vector, k=max(200, 8 * DEPTH))
        best: dict[int, float] = {}
        for doc_position, cosine in zip(positions.tolist(), cosines.tolist(), strict=True):
            entry = int(self._doc_entry[doc_position])
            if allowed[entry] and cosine > best.get(entry, -2.0):
                best[entry] = cosine
        return sorted(best, key=lambda p: -best[p])[:DEPTH]


def _top(scores: np.ndarray, k: int, floor: float = 0.0) -> list[int]:
    """Positions of the k highest scores above the floor, best first."""
    eligible = np.flatnonzero(scores > floor)
    if len(eligible) > k:
        eligible = eligible[np.argpartition(-scores[eligible], k - 1)[:k]]
    return [int(p) for p in eligible[np.argsort(-scores[eligible], kind="stable")]]
