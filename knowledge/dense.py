"""Nearest phrasings by cosine: exact matrix product for the sizes sites have, HNSW beyond that.

A district's knowledge base holds hundreds of entries and an exact search over their few thousand
phrasings takes well under a millisecond. A city-wide one with 100k entries (several hundred thousand
phrasings) would take tens of milliseconds exactly, so above `ann_above` vectors an hnswlib graph answers
instead, its recall checked against the exact search in bench/kb_search.py.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

ANN_ABOVE = 50_000
# A matrix-vector product over a few hundred thousand rows gains nothing from BLAS threads, and in a busy
# server their hand-offs cost more than the arithmetic (measured: 8 ms vs 0.8 ms at 3,000 phrasings with
# the other core loaded). Requests run concurrently instead; this caps numpy's BLAS, not torch's threads.
threadpool_limits(limits=1, user_api="blas")


class VectorIndex:
    def __init__(self, vectors: np.ndarray, ann_above: int = ANN_ABOVE) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.size = len(self.vectors)
        self._graph = None
        if self.size > ann_above:
            import hnswlib

            graph = hnswlib.Index(space="ip", dim=self.vectors.shape[1])
            graph.init_index(max_elements=self.size, ef_construction=100, M=16)
            graph.add_items(self.vectors, np.arange(self.size))
            graph.set_ef(200)
            self._graph = graph

    @property
    def approximate(self) -> bool:
        return self._graph is not None

    def nearest(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions, cosines) of the k nearest vectors, best first."""
        k = min(k, self.size)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self._graph is not None:
            labels, distances = self._graph.knn_query(query.reshape(1, -1), k=k)
            return labels[0].astype(np.int64), (1.0 - distances[0]).astype(np.float32)
        return exact_nearest(self.vectors, query, k)


def exact_nearest(vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = vectors @ query
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    order = top[np.argsort(-scores[top])]
    return order, scores[order]
