"""The terms lexical retrieval matches on: jieba words, CJK character bigrams and single characters.

Words carry meaning (高龄 津贴); character bigrams survive typos and unsegmented colloquial text that
jieba splits differently in the question and in the entry; single characters catch the colloquial
paraphrase that shares no two-character run (娃的出生証 / 出生医学证明). BM25's idf keeps common characters
cheap, and characters of stopwords (怎, 么…) are left out. On the calibration questions, top-1 over phrasings
rose from 0.70 (words and bigrams) to 0.81 with characters.
The kinds are prefixed so they never collide.
"""

from __future__ import annotations

import logging
import re
from functools import cache
from pathlib import Path

import jieba
import opencc

jieba.setLogLevel(logging.WARNING)

STOPWORDS_FILE = Path(__file__).parent / "data" / "stopwords.txt"
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")
# Sentence particles carry no topic: a bigram containing one (豆吗, 了吧) would match every question.
_PARTICLES = frozenset("吗呢吧啊呀了的么嘛哦哈啦")
_WORD = re.compile(r"[\u4e00-\u9fffA-Za-z0-9]+")


@cache
def _stopwords() -> frozenset[str]:
    return frozenset(line.strip() for line in STOPWORDS_FILE.read_text(encoding="utf-8").splitlines() if line.strip())


@cache
def _stop_chars() -> frozenset[str]:
    """Characters of stopwords (怎, 么, 哪…): alone they say nothing about the topic."""
    return frozenset("".join(_stopwords()))


@cache
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def terms(text: str) -> list[str]:
    """Jieba words (minus stopwords), CJK characters and bigrams (minus particles), repeats kept for term frequency.

    Traditional characters are folded to simplified first: entries are written in simplified Chinese,
    residents (and forwarded texts) use both.
    """
    stop = _stopwords()
    stop_chars = _stop_chars()
    lowered = _t2s().convert(text).lower()
    found = [f"w:{token}" for token in jieba.lcut(lowered) if _WORD.fullmatch(token) and token not in stop]
    for run in _CJK_RUN.findall(lowered):
        found.extend(f"u:{ch}" for ch in run if ch not in _PARTICLES and ch not in stop_chars)
        found.extend(
            f"b:{run[i : i + 2]}" for i in range(len(run) - 1) if run[i] not in _PARTICLES and run[i + 1] not in _PARTICLES
        )
    return found
