"""Which reports are about one problem: the grouping early warnings (grid/warnings.py) and the recurring-problem
statistics (grid/stats.py) share, so a lead never sees the two disagree about what "the same problem" is.

Residents describe one problem in other words, under other categories and with other place wordings (docs/tickets.md, 并单):
grouping by identical (category, place) pairs splits `3号楼地下室渗水` from `三号楼地下室又漏水了`. Here two reports
are linked when

- they are reports of one ticket (its first report and its co-reporters: the duplicate check already joined them);
- they are at one spot (grid/places.py: numerals, 栋/号楼, 门口/楼下 normalised; 3 is never 13) and say the same
  thing: grid/duplicates.py's description similarity (problem clauses, place taken out, centred e5) reaches the
  score the e5-only duplicate judge linked at (`CLAUSE_LINK`; the duplicate judge itself now adds the problem words
  through its pair model, which this grouping of many pairs does not run) — or, without a meaning model, they are
  of one category there;
- for early warnings only (`across_places`): they say the same thing anywhere in the community, by a stricter score
  (停水 reported from three buildings is one problem), or are of one category at one spot (one place keeps failing).

A group is every report reachable through such links (single linkage, by union-find), so the order reports
arrive in never changes the groups. Nothing here reads the database or loads a model: callers pass the reports,
and the app's edge passes the likeness (bot/runtime.py) and the place comparison.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np

from grid.duplicates import CLAUSE_LINK, DescriptionSimilarity, DuplicateJudge, MeaningJudge, problem_clauses
from grid.emergencies import TextEncoder
from grid.places import same_spot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """One resident's report: a ticket's first report, or a co-reporter's (`co_reporter` is its row id)."""

    ticket_id: int
    number: str
    category: str
    colour: str
    grid_code: str
    location: str
    description: str
    at: datetime
    co_reporter: int | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.ticket_id, self.co_reporter or 0)

    @property
    def problem_text(self) -> str:
        """What the report says is wrong, without where or filler (`3号楼北侧的健身器材坏了，铁杆都松了` → `健身器材坏了，
        铁杆都松了`): the words of a summary line."""
        return "，".join(problem_clauses(self.description, self.location))


class Likeness(Protocol):
    """How alike reports' descriptions are in meaning: a symmetric n×n matrix of scores (higher: more alike), on the
    scale of grid/duplicates.py's description similarity, so its calibrated thresholds apply; `name` goes into logs."""

    name: str

    def scores(self, reports: Sequence[Report]) -> np.ndarray: ...


class ClauseLikeness:
    """grid/duplicates.py's description similarity for many reports at once: every report's problem clauses (the
    place taken out) as centred e5 vectors, and for each pair the best-matching clause pair.

    The duplicate judge scores one pair at a time; a community's reports of the last day are compared with each
    other at every filing, so here each clause is encoded once and cached (by text) across filings.
    """

    def __init__(self, encoder: TextEncoder, centre: np.ndarray, cache_size: int = 8192) -> None:
        self.encoder, self.centre, self.cache_size = encoder, centre, cache_size
        self.name = f"clause meaning ({getattr(encoder, 'name', 'encoder')})"
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()  # filings run in worker threads

    @classmethod
    def of(cls, similarity: DescriptionSimilarity) -> ClauseLikeness:
        """The same encoder and centre as the duplicate judge's: one scale for duplicates, warnings and statistics."""
        return cls(similarity.encoder, similarity.centre)

    def _vectors(self, clauses: list[str]) -> dict[str, np.ndarray]:
        with self._lock:
            known = {c: self._cache[c] for c in clauses if c in self._cache}
        missing = list(dict.fromkeys(c for c in clauses if c not in known))
        if missing:
            vectors = self.encoder.encode(missing) - self.centre
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
            known.update(zip(missing, vectors, strict=True))
            with self._lock:
                if len(self._cache) + len(missing) > self.cache_size:
                    self._cache.clear()
                self._cache.update(zip(missing, vectors, strict=True))
        return known

    def scores(self, reports: Sequence[Report]) -> np.ndarray:
        split = [problem_clauses(r.description, r.location) for r in reports]
        if not split:
            return np.zeros((0, 0))
        vectors = self._vectors([c for clauses in split for c in clauses])
        stacked = np.stack([vectors[c] for clauses in split for c in clauses])
        starts = np.cumsum([0, *(len(clauses) for clauses in split[:-1])])
        clause_scores = stacked @ stacked.T
        best = np.maximum.reduceat(np.maximum.reduceat(clause_scores, starts, axis=0), starts, axis=1)
        return np.asarray(best)


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


# Two reports at one spot are one problem from the e5-only duplicate judge's link score (CLAUSE_LINK). At two
# places the place no longer vouches for them, so they must be closer: just above the highest pair of different
# problems at one spot in bench/data/duplicate_pairs_dev.yml as it was before duplicates' second tuning round (下水管堵了 /
# 自来水管爆了, 0.443; the dev split, never the held-out one), which keeps 82 % of the dev split's same-problem pairs.
ANYWHERE = 0.45


@dataclass
class ProblemJudge:
    """Groups reports into problems (module docstring). `likeness` None: no meaning model, category decides."""

    likeness: Likeness | None = None
    same_place: Callable[[str, str], bool] = field(default=same_spot)
    at_one_place: float = CLAUSE_LINK  # alike enough at one spot
    anywhere: float = ANYWHERE  # alike enough wherever they are

    @classmethod
    def for_duplicates(cls, duplicates: DuplicateJudge | None) -> ProblemJudge:
        """The grouping that agrees with the duplicate judge the app runs: its similarity (at CLAUSE_LINK), or
        place and category when it judges without a model."""
        if isinstance(duplicates, MeaningJudge):
            return cls(ClauseLikeness.of(duplicates.similarity))
        return cls()

    def groups(self, reports: Sequence[Report], *, across_places: bool) -> list[list[Report]]:
        """The reports grouped, each group in the order given, groups by their first report's position."""
        n = len(reports)
        links = _UnionFind(n)
        scores = self._scores(reports)
        for i in range(n):
            for j in range(i + 1, n):
                score = float(scores[i, j]) if scores is not None else None
                if self._linked(reports[i], reports[j], score, across_places):
                    links.union(i, j)
        grouped: dict[int, list[Report]] = {}
        for i, report in enumerate(reports):
            grouped.setdefault(links.find(i), []).append(report)
        return list(grouped.values())

    def _linked(self, a: Report, b: Report, score: float | None, across_places: bool) -> bool:
        if a.ticket_id == b.ticket_id:
            return True
        if across_places and score is not None and score >= self.anywhere:
            return True
        if not across_places and score is not None and score < self.at_one_place:
            return False  # unlike problems: no need to compare the places (the statistics compare many pairs)
        if not self.same_place(a.location, b.location):
            return False
        alike = score is not None and score >= self.at_one_place
        if across_places or score is None:
            return a.category == b.category or alike
        return alike

    def _scores(self, reports: Sequence[Report]) -> np.ndarray | None:
        """The likeness of every pair; None without a model, or when the model fails (logged: the category decides,
        a filing must not be lost to an onnxruntime error)."""
        if self.likeness is None or not reports:
            return None
        try:
            return np.asarray(self.likeness.scores(reports), dtype=float)
        except Exception:
            log.exception("comparing reports by meaning failed; grouping by place and category only")
            return None


def representative(group: Sequence[Report]) -> Report:
    """The report that names the problem best for a summary line: the shortest description with the place taken
    out (residents' short reports are the problem itself; long ones add their story), the earliest on ties."""
    return min(group, key=lambda r: (len(r.problem_text), r.at, r.key))


def summary(group: Sequence[Report]) -> str:
    """The problem in one resident's words, as a lead reads it in a warning or the weekly report."""
    return representative(group).problem_text


def most_said(values: Iterable[str]) -> str:
    """The most frequent value, the first said on a tie: a problem's category or place across its reports (the
    weekly report and the early warning name a cluster by it)."""
    counts = Counter(values)
    return max(counts, key=lambda value: counts[value])  # Counter keeps first-seen order; max keeps the first of equals
