"""Is a new report the problem an open ticket already handles? Place and meaning, not category (docs/tickets.md, 并单).

Two residents describe one missing manhole cover as `3号楼东侧的下水井盖丢了，晚上有人差点掉下去` and `三号楼东边井盖
没了，太危险了`: other words, another way to say the place, and another category (危险 makes the second red). The old
rule — same category, one location text inside the other — opened two tickets for it, and linked a real leak
report to a junk ticket whose location was `号`. Here:

1. the places must be the same spot (grid/places.py: numerals, 栋/号楼, 门口 = 楼下 = 前面, never 3 vs 13, and a
   place that names nothing specific matches nothing);
2. the descriptions must say the same thing: each is cut into clauses with the place taken out, each clause is an
   e5 vector centred on the cone residents' report texts share (the emergency phrasings, grid/data/emergencies.yml,
   whose mean the emergency recogniser already computes), and the score is the best-matching pair of clauses of
   which one opens its description. The problem is usually one clause and residents say it first (`井盖没了`); what
   follows is colour (`太危险了`, `没人管`) that another report need not repeat — and that two reports of two
   problems may share word for word, so two such trailing clauses alone never make a match. For the same reason
   how long and how often (好几天了, 一直, 天天) and who does nothing (没人管) are taken out of each clause: e5 puts
   `路灯坏了好几天了` and `电梯坏了好几天了` close on their shared tail.

3. e5 alone links two problems described alike: `暖气管漏水` and `燃气管道漏气` are both "a pipe leaking" (0.70, as
   alike as two wordings of one leak). What is wrong *with what* settles it (grid/problem_words.py): the objects
   each names, with residents' synonyms (燃气 = 煤气 = 天然气, not 暖气), and how many telling characters the problem
   clauses share. A small logistic regression over the e5 score, the character overlap, objects shared and objects
   only apart (`PairModel`), fitted on the dev pairs, gives the probability that two reports are one problem.

That probability decides in three bands, calibrated on bench/data/duplicate_pairs_dev.yml (`bench/duplicates.py
--calibrate`: the weights, then the thresholds from leave-one-out probabilities) and reported on the held-out pairs
— duplicate_pairs_heldout2.yml was written before this model and never used to choose anything: linked (the reporter
joins the open ticket), uncertain (a new ticket, flagged `可能重复：GD…` to the worker, who can merge it), or different.
A ticket of a neighbouring grid is at most uncertain unless both places name the same estate: two grids' `3号楼` may
be two estates' buildings.

Nothing here loads a model: the app's edge (bot/runtime.py) hands in the encoder the knowledge base loaded, or none,
and then the judge is the old rule made safe (`RuleJudge`: same category and the same specific spot).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from grid.emergencies import TextEncoder, load_table
from grid.places import compare_places, without_place
from grid.problem_words import char_overlap, compare_objects

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    LIKELY = "likely"  # one problem: link the report to the open ticket
    UNCERTAIN = "uncertain"  # maybe: file it, and tell the worker which ticket it may repeat
    DIFFERENT = "different"


@dataclass(frozen=True)
class Report:
    """What the judge compares of a report or an open ticket."""

    description: str
    location: str
    category: str = ""
    emergency: bool = False


@dataclass(frozen=True)
class Thresholds:
    """The pair model's probability that two reports are one problem (0..1): at or above `link` a report joins the
    open ticket, at or above `flag` it is filed and flagged."""

    link: float
    flag: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.flag <= self.link <= 1.0:
            raise ValueError(f"duplicate thresholds need 0 <= flag <= link <= 1, got flag {self.flag}, link {self.link}")


@dataclass(frozen=True)
class PairModel:
    """Logistic regression over a pair's features (`PairFeatures.vector`): the probability it is one problem."""

    intercept: float
    weights: tuple[float, ...]

    def probability(self, features: PairFeatures) -> float:
        logit = self.intercept + float(np.dot(self.weights, features.vector))
        return float(1.0 / (1.0 + np.exp(-logit)))


@dataclass(frozen=True)
class PairFeatures:
    """What is compared of two descriptions at one spot."""

    clause_score: float  # the best centred e5 cosine of two problem clauses, one of them first (module docstring)
    overlap: float  # telling characters shared by the problem clauses (grid/problem_words.char_overlap)
    objects_shared: bool  # both name a thing that is wrong, and one of them is the same
    objects_apart: bool  # both name things that are wrong, and none is the same (暖气 / 燃气)

    @property
    def vector(self) -> tuple[float, ...]:
        return (self.clause_score, self.overlap, float(self.objects_shared), float(self.objects_apart))


# Chosen on the dev pairs with the `auto` model (int8 multilingual-e5-small) by `bench/duplicates.py --calibrate`:
# the weights by L2-regularised logistic regression on the dev pairs at one spot; `link` is the lowest probability
# whose links keep precision >= 0.98 among leave-one-out probabilities (each pair scored by a model fitted without
# it) — above the 0.97 goal, because a wrong link hides a problem and on fresh pairs precision fell to 0.91 when
# `link` was chosen at 0.97 exactly —, `flag` keeps 95 % of the duplicates linked or flagged, so a pair between the
# two is filed and shown to the worker as 可能重复; both sit halfway to the next value below.
# Another encoder gives other scores: calibrate again.
CALIBRATED_MODEL = PairModel(intercept=-0.409, weights=(1.456, 0.536, 2.329, -2.811))
CALIBRATED = Thresholds(link=0.635, flag=0.527)
# The clause score alone at which two reports at one spot are one problem for grouping (grid/problems.py, warnings
# and recurring problems): the e5-only judge's link threshold, chosen on the dev pairs before the pair model.
CLAUSE_LINK = 0.347


class DuplicateJudge(Protocol):
    """Says whether a new report repeats an open one; `description` names the rule in use (logs, benchmarks)."""

    description: str

    def judge(self, new: Report, open_ticket: Report, *, same_grid: bool = True) -> Verdict: ...


# --- the fallback: the old rule, made safe ---------------------------------------------------------------------------


class RuleJudge:
    """Without an embedding model: the same category and the same specific spot (never `号` in `2号楼`), and an
    emergency only with an emergency. It cannot tell 井盖丢了 from 路灯坏了 at one spot when both are 市政设施, nor
    link 井盖没了 很危险 (安全隐患) to 井盖丢了 (市政设施): that is what meaning is for."""

    description = "same category and spot (no embedding model)"

    def judge(self, new: Report, open_ticket: Report, *, same_grid: bool = True) -> Verdict:
        if not same_grid or new.category != open_ticket.category or new.emergency != open_ticket.emergency:
            return Verdict.DIFFERENT
        return Verdict.LIKELY if compare_places(new.location, open_ticket.location).same else Verdict.DIFFERENT


# --- by meaning --------------------------------------------------------------------------------------------------------

_CLAUSE_BREAK = re.compile(r"[，,。.!！?？;；、\s~～…]+")
# Words at the head of a clause that only point (那个, 那边) or repeat (又, 还): they pull unlike clauses together.
_POINTING = re.compile(r"^(?:的|那个|那边|这个|这边|那里|这里|那|这|里面|里|上面|上|又|还|一直|现在|有人)+")
# How long, how often, who does nothing: said of any problem, so they make two problems look alike.
_TAIL = re.compile(
    r"(?:已经|都|有)?[好一两三四五六七八九十半几多\d]*个?多?(?:天|周|星期|礼拜|月|年|小时)多?[了啦]?|[好很]久了?|一直|天天|每天|经常|"
    r"总是|老是|(?<=[\u4e00-\u9fff])又|还是|没人(?:管|理|处理|修|清理|来)|[也都]?不管"
)
_LETTERS = re.compile(r"[\W_\d]+")
_MIN_CLAUSE_CHARS = 2


def problem_clauses(description: str, location: str) -> list[str]:
    """The clauses of a description that can say what is wrong, without the place (`3号楼东侧的井盖丢了，晚上有人差点
    掉下去` at `3号楼东侧` → `井盖丢了`, `晚上有人差点掉下去`)."""
    text = without_place(description, location)
    kept = []
    for clause in _CLAUSE_BREAK.split(text):
        clause = _POINTING.sub("", clause)
        core = _POINTING.sub("", _TAIL.sub("", clause))
        clause = core if len(_LETTERS.sub("", core)) >= _MIN_CLAUSE_CHARS else clause  # 好几天了 alone stays
        if len(_LETTERS.sub("", clause)) >= _MIN_CLAUSE_CHARS:
            kept.append(clause)
    return kept or [text.strip() or description]


def reference_texts() -> list[str]:
    """Residents' report-like texts whose mean vector centres the cone e5 puts all such sentences in: the emergency
    table's exemplars and near misses, as the emergency recogniser's mean is taken."""
    table = load_table()
    return [text for kind in table.kinds for text in kind.exemplars] + [
        text for group in table.not_emergencies.values() for text in group
    ]


class DescriptionSimilarity:
    """How alike two problem descriptions are in meaning: the best pair of their clauses one of which opens its
    description, as centred e5 cosines (module docstring)."""

    def __init__(self, encoder: TextEncoder, centre: np.ndarray | None = None) -> None:
        """`centre`: the mean vector of residents' report texts under this encoder (the emergency recogniser's, when
        the app has one); computed from `reference_texts()` when not given."""
        self.encoder = encoder
        self.centre = centre if centre is not None else encoder.encode(reference_texts()).mean(axis=0)

    def score(self, a: Report, b: Report) -> float:
        return self.scores([(a, b)])[0]

    def features(self, pairs: Sequence[tuple[Report, Report]]) -> list[PairFeatures]:
        """Each pair's features for the pair model: its clause score and what the problem words say."""
        split = [(problem_clauses(a.description, a.location), problem_clauses(b.description, b.location)) for a, b in pairs]
        found = []
        for (left, right), score in zip(split, self._clause_scores(split), strict=True):
            objects = compare_objects(left, right)
            found.append(PairFeatures(score, char_overlap(left, right), objects.agree, objects.conflict))
        return found

    def scores(self, pairs: Sequence[tuple[Report, Report]]) -> list[float]:
        """Each pair's clause score; all clauses of all pairs are encoded in one batch (benchmarks score hundreds)."""
        split = [(problem_clauses(a.description, a.location), problem_clauses(b.description, b.location)) for a, b in pairs]
        return self._clause_scores(split)

    def _clause_scores(self, split: Sequence[tuple[list[str], list[str]]]) -> list[float]:
        texts = [clause for left, right in split for clause in (*left, *right)]
        if not texts:
            return []
        vectors = self.encoder.encode(texts) - self.centre
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        found, at = [], 0
        for left, right in split:
            va = vectors[at : at + len(left)]
            vb = vectors[at + len(left) : at + len(left) + len(right)]
            at += len(left) + len(right)
            cosines = va @ vb.T
            found.append(max(float(cosines[0, :].max()), float(cosines[:, 0].max())))  # a pair with a first clause
        return found


class MeaningJudge:
    """The same specific spot and descriptions alike in meaning, in any category (module docstring)."""

    def __init__(
        self, similarity: DescriptionSimilarity, thresholds: Thresholds = CALIBRATED, model: PairModel = CALIBRATED_MODEL
    ) -> None:
        self.similarity = similarity
        self.thresholds = thresholds
        self.model = model
        self.description = (
            f"place, meaning and problem words ({getattr(similarity.encoder, 'name', 'encoder')}; "
            f"link >= {thresholds.link:.2f}, flag >= {thresholds.flag:.2f})"
        )

    def judge(self, new: Report, open_ticket: Report, *, same_grid: bool = True) -> Verdict:
        place = compare_places(new.location, open_ticket.location)
        if not place.same:
            return Verdict.DIFFERENT
        return self.verdict(self.probability(new, open_ticket), same_grid=same_grid or place.same_estate)

    def probability(self, new: Report, open_ticket: Report) -> float:
        """How likely the two descriptions tell one problem (the pair model over their features)."""
        [features] = self.similarity.features([(new, open_ticket)])
        return self.model.probability(features)

    def verdict(self, score: float, *, same_grid: bool = True) -> Verdict:
        """The band a probability falls in; a neighbouring grid's ticket (without the estate named) is never linked."""
        if score >= self.thresholds.link and same_grid:
            return Verdict.LIKELY
        if score >= self.thresholds.flag:
            return Verdict.UNCERTAIN
        return Verdict.DIFFERENT


def load_judge(
    encoder: TextEncoder | None,
    thresholds: Thresholds = CALIBRATED,
    centre: np.ndarray | None = None,
    model: PairModel = CALIBRATED_MODEL,
) -> DuplicateJudge:
    """By meaning with the given encoder, else the safe rule; logged either way."""
    if encoder is None:
        log.warning("duplicate reports: same category and spot only, no embedding model (KB_EMBEDDING_MODEL)")
        return RuleJudge()
    judge = MeaningJudge(DescriptionSimilarity(encoder, centre), thresholds, model)
    log.info("duplicate reports: %s", judge.description)
    return judge
