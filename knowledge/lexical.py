"""BM25 over entry phrasings, with scores normalised so one threshold means the same for every question.

bm25s does the ranking arithmetic (a sparse matrix of precomputed term scores). Raw BM25 grows with the
length of the question, so each score is divided by what a phrasing of average length containing every
distinct term of the question once would score (Lucene BM25: idf / (1 + k1) per term), counting a term no
phrasing has at the highest idf. The result says how much of what the resident asked the phrasing covers:
about 1 for the same words, more for a short phrasing, 0 for nothing in common.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import bm25s
import numpy as np

from knowledge.text_features import terms


class Bm25Index:
    """An immutable index of tokenised documents (phrasings); documents are addressed by position."""

    def __init__(self, documents: Sequence[list[str]], k1: float = 1.2, b: float = 0.75) -> None:
        self.size = len(documents)
        # bm25s needs at least one token per document; an empty phrasing simply never matches.
        self._k1 = k1
        self._bm25 = bm25s.BM25(method="lucene", k1=k1, b=b)
        if self.size:
            self._bm25.index([doc or [""] for doc in documents], show_progress=False)
        df: Counter[str] = Counter()
        for doc in documents:
            df.update(set(doc))
        self._idf = {term: self._lucene_idf(count) for term, count in df.items()}
        self._max_idf = self._lucene_idf(0)

    def _lucene_idf(self, df: int) -> float:
        return math.log(1 + (self.size - df + 0.5) / (df + 0.5))

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> Bm25Index:
        return cls([terms(text) for text in texts])

    def scores(self, query: str) -> np.ndarray:
        """Normalised score of every document for this question (zeros when nothing matches)."""
        return self.scores_for_terms(terms(query))

    def scores_for_terms(self, question_terms: Sequence[str]) -> np.ndarray:
        """`scores` for a question already split by `terms` (one split serves several indexes)."""
        query_terms = set(question_terms)
        if not self.size or not query_terms:
            return np.zeros(self.size, dtype=np.float32)
        known = [term for term in query_terms if term in self._idf]
        ceiling = sum(self._idf.get(term, self._max_idf) for term in query_terms) / (1 + self._k1)
        if not known or ceiling <= 0:
            return np.zeros(self.size, dtype=np.float32)
        raw = np.asarray(self._bm25.get_scores(known), dtype=np.float32)
        return raw / np.float32(ceiling)
