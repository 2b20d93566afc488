"""Lexical retrieval over entry titles and question variants: TF-IDF cosine on jieba words and character bigrams.

Words carry meaning (高龄 津贴); character bigrams survive typos and unsegmented colloquial text.
Scores are cosines in [0, 1], so one threshold and margin decide whether the bot may answer.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jieba

jieba.setLogLevel(logging.WARNING)

STOPWORDS_FILE = Path(__file__).parent / "data" / "stopwords.txt"
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")
# Sentence particles carry no topic: a bigram containing one (豆吗, 了吧) would match every question.
_PARTICLES = frozenset("吗呢吧啊呀了的么嘛哦哈啦")
_WORD = re.compile(r"[\u4e00-\u9fffA-Za-z0-9]+")


@cache
def _stopwords() -> frozenset[str]:
    return frozenset(line.strip() for line in STOPWORDS_FILE.read_text(encoding="utf-8").splitlines() if line.strip())


def features(text: str) -> Counter[str]:
    """Bag of jieba words (minus stopwords) and CJK character bigrams, prefixed so the two never collide."""
    stop = _stopwords()
    lowered = text.lower()
    bag: Counter[str] = Counter(f"w:{token}" for token in jieba.lcut(lowered) if _WORD.fullmatch(token) and token not in stop)
    for run in _CJK_RUN.findall(lowered):
        bag.update(
            f"b:{run[i : i + 2]}" for i in range(len(run) - 1) if run[i] not in _PARTICLES and run[i + 1] not in _PARTICLES
        )
    return bag


@dataclass(frozen=True)
class Hit:
    key: int
    score: float
    matched: str


class LexicalIndex:
    """An immutable index of (key, text) documents; several texts may share a key (an entry's variants)."""

    def __init__(self, documents: Iterable[tuple[int, str]]) -> None:
        self._docs = [(key, text, features(text)) for key, text in documents]
        df: Counter[str] = Counter()
        for _, _, bag in self._docs:
            df.update(bag.keys())
        n = len(self._docs)
        self._idf = {term: math.log((1 + n) / (1 + count)) + 1.0 for term, count in df.items()}
        self._vectors = [(key, text, self._weigh(bag)) for key, text, bag in self._docs]

    def _weigh(self, bag: Counter[str]) -> dict[str, float]:
        weights = {term: (1 + math.log(tf)) * self._idf.get(term, 0.0) for term, tf in bag.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {term: w / norm for term, w in weights.items() if w > 0}

    def search(self, query: str, allowed: set[int] | None = None, top_k: int = 5) -> list[Hit]:
        """Best-scoring variant per key, highest first; `allowed` restricts keys (region and date filters)."""
        qvec = self._weigh(features(query))
        best: dict[int, Hit] = {}
        for key, text, dvec in self._vectors:
            if allowed is not None and key not in allowed:
                continue
            score = sum(w * dvec.get(term, 0.0) for term, w in qvec.items())
            if score > 0 and (key not in best or score > best[key].score):
                best[key] = Hit(key, score, text)
        return sorted(best.values(), key=lambda h: h.score, reverse=True)[:top_k]
