"""When the bot may answer: the best entry's evidence clears a threshold and beats the runner-up by a margin.

A wrong confident answer is worse than handing the question to the grid worker, so the thresholds are
not guesses: they are calibrated per embedding model (cosines of different models live on different
scales) on labelled questions and stored in the database beside the index (`gridbot kb calibrate`).

Evidence is put on one scale: each retriever's score divided by its own threshold (for cosines, measured
from the model's floor — what unrelated sentences score — so 0 means unrelated and 1 means just enough).
Confidence combines the two; an answer needs confidence ≥ 1 and a lead of `margin` over the runner-up.

Below that bar an entry can still be plausible: confidence ≥ `suggest_floor` (calibrated too, see
knowledge/calibration.py) makes it one of the "您想问的是…" suggestions the resident picks from (actions/suggestions.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

import numpy as np
from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from knowledge.hybrid import Candidate
from storage.base import Base, utcnow
from storage.types import UTCDateTime

LEXICAL_ONLY = "lexical"
DENSE_ONLY_SUFFIX = "#dense-only"
Combine = Literal["max", "mean"]
# "您想问的是…" lists at most this many entries: a resident reads three titles in a chat bubble, not a search page.
MAX_SUGGESTIONS = 3


@dataclass(frozen=True)
class AnswerPolicy:
    model: str
    lexical_threshold: float
    dense_threshold: float | None = None
    dense_floor: float = 0.0
    margin: float = 0.1
    combine: Combine = "max"
    calibrated: bool = False
    # Lowest confidence at which an entry is offered as "您想问的是…"; None (uncalibrated) offers nothing: the
    # question goes to a person as before, rather than on a guessed floor.
    suggest_floor: float | None = None

    def confidences(self, lexical: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """Confidence of many candidates at once (dense NaN where unknown): the one formula, also used to calibrate."""
        lexical_part = lexical / self.lexical_threshold
        if self.dense_threshold is None:
            return lexical_part
        dense_part = np.maximum(0.0, (dense - self.dense_floor) / (self.dense_threshold - self.dense_floor))
        combined = np.maximum(lexical_part, dense_part) if self.combine == "max" else (lexical_part + dense_part) / 2
        return np.where(np.isnan(dense), lexical_part, combined)

    def confidence(self, candidate: Candidate) -> float:
        dense = np.nan if candidate.dense is None else candidate.dense
        return float(self.confidences(np.array([candidate.lexical]), np.array([dense]))[0])

    def answers(self, confidences: np.ndarray) -> np.ndarray:
        """Rows of candidate confidences (best candidate first) → whether each would be answered."""
        best = confidences[:, 0]
        runner_up = confidences[:, 1:].max(axis=1, initial=0.0)
        return (best >= 1.0) & (best - runner_up >= self.margin)

    def choose(self, candidates: list[Candidate]) -> Candidate | None:
        """The candidate to answer with, or None when the evidence is too weak or too close to call."""
        if not candidates:
            return None
        lexical = np.array([[c.lexical for c in candidates]])
        dense = np.array([[np.nan if c.dense is None else c.dense for c in candidates]])
        return candidates[0] if bool(self.answers(self.confidences(lexical, dense))[0]) else None

    def plausible(self, candidates: list[Candidate]) -> list[tuple[Candidate, float]]:
        """The entries worth offering when `choose` found none, most confident first, with their confidence: at
        most MAX_SUGGESTIONS, each at or above the calibrated floor. Empty when one is chosen (it is answered) or no
        floor is calibrated."""
        if self.suggest_floor is None or not candidates or self.choose(candidates) is not None:
            return []
        scored = [(c, self.confidence(c)) for c in candidates[:MAX_SUGGESTIONS]]
        return sorted([pair for pair in scored if pair[1] >= self.suggest_floor], key=lambda pair: -pair[1])


# Used until `gridbot kb calibrate` has stored thresholds for the configured model (logged as uncalibrated).
DEFAULTS = {
    LEXICAL_ONLY: AnswerPolicy(LEXICAL_ONLY, lexical_threshold=0.45, margin=0.15),
    "e5": AnswerPolicy("e5", lexical_threshold=0.55, dense_threshold=0.91, dense_floor=0.80, margin=0.15),
}


def default_policy(model: str) -> AnswerPolicy:
    """Conservative starting thresholds; a model we know nothing about is judged on lexical evidence only."""
    key = next((k for k in DEFAULTS if k != LEXICAL_ONLY and k in model.lower()), LEXICAL_ONLY)
    return replace(DEFAULTS[key], model=model)


class StoredPolicy(Base):
    """Calibrated thresholds of one embedding model (or 'lexical'), with how well they did when calibrated."""

    __tablename__ = "knowledge_answer_policies"

    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    lexical_threshold: Mapped[float] = mapped_column(Float)
    dense_threshold: Mapped[float | None] = mapped_column(Float, default=None)
    dense_floor: Mapped[float] = mapped_column(Float, default=0.0)
    margin: Mapped[float] = mapped_column(Float)
    combine: Mapped[str] = mapped_column(String(8), default="max")
    questions: Mapped[int] = mapped_column(Integer, default=0)
    correct_rate: Mapped[float] = mapped_column(Float, default=0.0)
    wrong_rate: Mapped[float] = mapped_column(Float, default=0.0)
    suggest_floor: Mapped[float | None] = mapped_column(Float, default=None)
    calibrated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def policy(self) -> AnswerPolicy:
        combine: Combine = "mean" if self.combine == "mean" else "max"
        return AnswerPolicy(
            self.model,
            self.lexical_threshold,
            self.dense_threshold,
            self.dense_floor,
            self.margin,
            combine,
            calibrated=True,
            suggest_floor=self.suggest_floor,
        )


def load_policy(session: Session, model: str) -> AnswerPolicy:
    stored = session.get(StoredPolicy, model)
    return stored.policy() if stored is not None else default_policy(model)


def store_policy(session: Session, policy: AnswerPolicy, questions: int, correct_rate: float, wrong_rate: float) -> None:
    stored = session.get(StoredPolicy, policy.model) or StoredPolicy(model=policy.model)
    stored.lexical_threshold = policy.lexical_threshold
    stored.dense_threshold = policy.dense_threshold
    stored.dense_floor = policy.dense_floor
    stored.margin = policy.margin
    stored.combine = policy.combine
    stored.suggest_floor = policy.suggest_floor
    stored.questions = questions
    stored.correct_rate = correct_rate
    stored.wrong_rate = wrong_rate
    stored.calibrated_at = utcnow()
    session.add(stored)
