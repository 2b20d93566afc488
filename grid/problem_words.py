"""What a report's problem is about, in words: the objects it names and its telling characters (docs/tickets.md, 并单).

The e5 score of two problem clauses (grid/duplicates.py) misses what a lexicon knows: `暖气管漏水` and `燃气管道漏气`
score as alike as two wordings of one leak, because both are "a pipe leaking"; what leaks differs. The objects table
(grid/data/problem_objects.yml) names the things residents report with their everyday synonyms (燃气 = 煤气 = 天然气),
so two reports that name objects and share none are told apart, and two that share one agree whatever else they
say. Character overlap of the problem clauses is the other plain signal: two wordings of one problem usually share
the words for the thing (井盖, 电梯) even when e5 finds their clauses far apart (`围网破了` / `铁丝网坏了`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

OBJECTS_FILE = Path(__file__).parent / "data" / "problem_objects.yml"

# Characters any complaint uses: they make two problems look alike by overlap (坏了, 太…了, 很, 有).
_COMMON = frozenset("了的是在有很太都又还也就把被给一个这那里上下个么呢吧啊呀了坏不没好多")


@dataclass(frozen=True)
class ObjectTable:
    """Term → object name. A term found inside a longer term found at the same place does not count (电线杆 is not
    电线, 消防通道 not 消防栓); overlapping terms both count (下水井盖 is 下水井 and 井盖, 单元门禁 单元门 and 门禁)."""

    terms: tuple[tuple[str, str], ...]

    def objects(self, text: str) -> frozenset[str]:
        spans = [(start, start + len(term), name) for term, name in self.terms for start in _occurrences(text, term)]
        return frozenset(
            name
            for start, end, name in spans
            if not any(s <= start and end <= e and (e - s) > (end - start) for s, e, _ in spans)
        )


def _occurrences(text: str, term: str) -> list[int]:
    found, at = [], text.find(term)
    while at != -1:
        found.append(at)
        at = text.find(term, at + 1)
    return found


@cache
def load_objects(path: Path = OBJECTS_FILE) -> ObjectTable:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))["objects"]
    pairs = {str(term): str(name) for name, terms in data.items() for term in terms}
    return ObjectTable(tuple(sorted(pairs.items())))


@dataclass(frozen=True)
class ObjectMatch:
    agree: bool  # both name an object, and one they share
    conflict: bool  # both name objects, none shared: two things are wrong


def compare_objects(a: Iterable[str], b: Iterable[str], table: ObjectTable | None = None) -> ObjectMatch:
    """The objects two reports' problem clauses name, compared."""
    table = table or load_objects()
    left, right = table.objects(" ".join(a)), table.objects(" ".join(b))
    if not left or not right:
        return ObjectMatch(False, False)
    shared = bool(left & right)
    return ObjectMatch(shared, not shared)


def telling_chars(clauses: Iterable[str]) -> set[str]:
    """The Chinese characters of the clauses, without those every complaint uses."""
    return {c for clause in clauses for c in clause if "\u4e00" <= c <= "\u9fff" and c not in _COMMON}


def char_overlap(a: Iterable[str], b: Iterable[str]) -> float:
    """Share of the shorter side's telling characters the other side has too (0..1; 0 when one has none)."""
    left, right = telling_chars(a), telling_chars(b)
    if not left or not right:
        return 0.0
    return len(left & right) / min(len(left), len(right))
