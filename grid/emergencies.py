"""Life-safety emergencies recognised by meaning (docs/architecture.md): 电梯困人 is not 电梯坏了.

A keyword list cannot tell `8号楼电梯困人了 快来人` from `电梯坏了`, `昨天电梯困人了 已经救出来了` or `电梯困人归谁管`,
and misses the words it was not given (困人 was missing). Here the phrasings of data/emergencies.yml teach two
questions over the same evidence, a sentence's e5 vector (its meaning) and its character n-grams (the words
residents actually type):

1. what situation is described: one of the emergency kinds, or one of the groups of near misses (a fault with
   nobody in danger, harmless smoke, an open hazard with nobody in it, a near miss, a past event, a hypothetical,
   a question, everyday matters, chatter); a softmax over all of them, so a near miss is told apart from the
   emergency it resembles, group by group;
2. is it happening now: the emergencies against the past, hypothetical, question and near-miss groups only,
   because that difference ("昨天…已经救出来了", "万一…", "…打什么电话", "差点掉下去") cuts across every kind.

The score is P(an emergency kind) × P(happening now); its threshold is chosen on a separate calibration file
(data/emergency_calibration.yml), and bench/emergencies.py reports on a third file neither ever sees. Both
heads are trained when the app starts, for whatever embedding model it runs (int8 or fp32 e5, another model),
so vectors and threshold always belong together; a cache keyed by model and data makes restarts instant.

Nothing here loads a model: the app's edge (bot/runtime.py) hands in the encoder it already loaded for the
knowledge base, or none, and then the recogniser is each kind's keyword list, the old rule (logged).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
import yaml

log = logging.getLogger(__name__)

EMERGENCIES_FILE = Path(__file__).parent / "data" / "emergencies.yml"
CALIBRATION_FILE = Path(__file__).parent / "data" / "emergency_calibration.yml"
# Near-miss groups that are about an emergency but not one happening now: they teach the second question. A near
# miss (差点掉下去) is one: the fall did not happen, so nobody is to be rescued, whatever the hazard left behind.
NOT_NOW = ("past", "hypothetical", "questions", "near_miss")
# How soon an emergency's ticket must be handled unless the app is configured otherwise (EMERGENCY_DEADLINE_MINUTES).
DEFAULT_DEADLINE = timedelta(hours=1)

# Training settings, chosen on the calibration file (ranking quality and precision at full recall; never on the
# benchmark). Weak L2: the exemplars are few and clean. The n-grams weigh as much as the vector: weighed higher they
# start to act like the keyword list they should only support, lower and 电梯坏了 drifts towards 电梯困人.
_L2 = 0.05
_NGRAM_WEIGHT = 1.0
_NGRAM_SIZES = (1, 2, 3)
_NGRAM_MIN_COUNT = 2  # an n-gram seen once in training is one phrasing's, not evidence
_ITERATIONS = 1000
# Share of the calibration file's emergencies the threshold must keep: all of them. A missed emergency costs a
# life; a false alarm costs a worker a trip and the resident a line of advice.
_CALIBRATION_RECALL = 1.0
# Bumped whenever training changes, so a cached model of the old training is not reused.
_TRAINING_VERSION = 2
_NOT_TEXT = re.compile(r"[^\w?？]")


@dataclass(frozen=True)
class EmergencyKind:
    code: str  # lift_trapped: the key of its advice text (bot/texts/zh.yml emergencies.advice.<code>)
    name: str  # 电梯困人: what workers and history read
    numbers: tuple[str, ...]  # whom the resident is told to call first, in order
    keywords: tuple[str, ...] = field(repr=False)  # the fallback rule only (no embedding model)
    exemplars: tuple[str, ...] = field(repr=False)


@dataclass(frozen=True)
class EmergencyTable:
    category: str  # the (red) category an emergency is filed under
    kinds: tuple[EmergencyKind, ...]
    not_emergencies: dict[str, tuple[str, ...]]  # near misses, by why they are not one

    def kind(self, code: str) -> EmergencyKind:
        return next(k for k in self.kinds if k.code == code)

    def kind_named(self, name: str) -> EmergencyKind | None:
        return next((k for k in self.kinds if k.name == name), None)


@cache
def load_table(path: Path = EMERGENCIES_FILE) -> EmergencyTable:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    kinds = tuple(
        EmergencyKind(
            code=k["code"],
            name=k["name"],
            numbers=tuple(str(n) for n in k["numbers"]),
            keywords=tuple(k.get("keywords") or ()),
            exemplars=tuple(str(e) for e in k["exemplars"]),
        )
        for k in raw["kinds"]
    )
    groups = {str(group): tuple(str(t) for t in texts) for group, texts in raw["not_emergencies"].items()}
    missing = [g for g in NOT_NOW if g not in groups]
    if missing:
        raise ValueError(f"{path}: not_emergencies lacks the groups {missing}, which teach 'happening now'")
    return EmergencyTable(category=str(raw["category"]), kinds=kinds, not_emergencies=groups)


@dataclass(frozen=True)
class Phrasing:
    """A labelled line of the calibration or benchmark file: the emergency kind's code, or None."""

    text: str
    kind: str | None


def read_phrasings(path: Path) -> list[Phrasing]:
    rows = yaml.safe_load(path.read_text(encoding="utf-8"))["phrasings"]
    return [Phrasing(str(row["text"]), row.get("kind")) for row in rows]


@dataclass(frozen=True)
class Emergency:
    """A report recognised as a life-safety emergency: which kind, and how sure (0..1, compared to a threshold)."""

    kind: EmergencyKind
    score: float


class TextEncoder(Protocol):
    """Unit-length sentence vectors (knowledge.embeddings.Embedder is one); `name` tells models apart."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


class Recogniser(Protocol):
    """Says whether a report is an emergency, and which; `scores` is the same decision for many (benchmarks)."""

    description: str

    def recognise(self, text: str) -> Emergency | None: ...

    def scores(self, texts: Sequence[str]) -> list[tuple[float, EmergencyKind | None]]: ...


@dataclass(frozen=True)
class EmergencyTriage:
    """What filing a report does about emergencies: who recognises one, and how soon its ticket is due."""

    recogniser: Recogniser
    deadline: timedelta = DEFAULT_DEADLINE
    category: str = field(default_factory=lambda: load_table().category)  # the red category emergencies are filed under

    def recognise(self, text: str) -> Emergency | None:
        """The emergency `text` describes, if any. A recogniser that fails (an onnxruntime error) must not lose the
        report it was asked about: logged, and the report goes on as the category keywords place it."""
        if not text.strip():
            return None
        try:
            return self.recogniser.recognise(text)
        except Exception:
            log.exception("emergency recognition failed; the report is placed by the category keywords")
            return None


# --- the fallback: each kind's keywords --------------------------------------------------------------------


class KeywordRecogniser:
    """The old way, kept for sites without an embedding model: a kind's keyword in the text makes it that kind.

    It cannot tell a past event or a question from a report (`昨天电梯困人了` is an emergency to it), which is
    why meaning decides whenever a model is configured.
    """

    description = "keywords (no embedding model)"

    def __init__(self, table: EmergencyTable) -> None:
        self.table = table

    def recognise(self, text: str) -> Emergency | None:
        best: tuple[int, EmergencyKind] | None = None
        for kind in self.table.kinds:
            for keyword in kind.keywords:
                if keyword in text and (best is None or len(keyword) > best[0]):
                    best = (len(keyword), kind)
        return Emergency(best[1], 1.0) if best else None

    def scores(self, texts: Sequence[str]) -> list[tuple[float, EmergencyKind | None]]:
        found = [self.recognise(text) for text in texts]
        return [(1.0, f.kind) if f else (0.0, None) for f in found]


# --- by meaning ----------------------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """The characters n-grams are taken from: no spaces or punctuation, but a question mark is evidence."""
    return _NOT_TEXT.sub("", text.lower()).replace("？", "?")


def _ngrams(text: str) -> set[str]:
    cleaned = _clean(text)
    return {cleaned[i : i + n] for n in _NGRAM_SIZES for i in range(len(cleaned) - n + 1)}


@dataclass
class _Model:
    """Everything a trained recogniser is, as arrays: what the cache stores."""

    mean: np.ndarray  # the exemplars' mean vector: e5 vectors all lie in one narrow cone, centring spreads them
    vocab: list[str]  # n-grams, in feature order
    situation: np.ndarray  # (features + 1) × classes: kinds first, then the near-miss groups
    now: np.ndarray  # (features + 1) × 2: not now, now
    threshold: float
    calibration_recall: float
    calibration_precision: float


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit_softmax(features: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Multinomial logistic regression, L2-regularised, by Nesterov-accelerated gradient descent.

    Deterministic (zeros to start, fixed steps) so the same data and model always give the same recogniser; the
    step is 1/L for the loss's Lipschitz constant, so no learning rate is tuned. Run on the Gram matrix: started
    at zero, gradient descent keeps the weights a combination of the training rows (W = Fᵀ·A), so iterating on
    A costs n² per step instead of n·features (some 1,900 features for 500 rows: several times faster, the
    same weights), which keeps the first start-up of a new model or data version to seconds.
    """
    n = features.shape[0]
    gram = features @ features.T
    targets = np.eye(classes)[labels]
    shrink = _L2 / n  # the bias is not shrunk
    lipschitz = 0.5 * float(np.linalg.eigvalsh(gram + 1.0)[-1]) / n + shrink  # ‖[F 1]‖² bounds the curvature
    step = 1.0 / lipschitz
    dual, bias = np.zeros((n, classes)), np.zeros(classes)
    dual_ahead, bias_ahead, momentum = dual.copy(), bias.copy(), 1.0
    for _ in range(_ITERATIONS):
        residual = (_softmax(gram @ dual_ahead + bias_ahead) - targets) / n
        dual_next = dual_ahead - step * (residual + shrink * dual_ahead)
        bias_next = bias_ahead - step * residual.sum(axis=0)
        following = (1 + np.sqrt(1 + 4 * momentum * momentum)) / 2
        carry = (momentum - 1) / following
        dual_ahead = dual_next + carry * (dual_next - dual)
        bias_ahead = bias_next + carry * (bias_next - bias)
        dual, bias, momentum = dual_next, bias_next, following
    return np.vstack([features.T @ dual, bias])


def _threshold(scores: np.ndarray, emergency: np.ndarray) -> float:
    """The score above which a report is an emergency, from the calibration file's scores.

    It keeps _CALIBRATION_RECALL of the calibration emergencies and sits halfway between the lowest one kept and
    the highest near miss below it: the widest margin on both sides the calibration evidence allows.
    """
    positives = np.sort(scores[emergency])
    if positives.size == 0:
        raise ValueError("the calibration file has no emergencies")
    lowest = float(positives[int(np.floor((1 - _CALIBRATION_RECALL) * positives.size))])
    below = scores[~emergency & (scores < lowest)]
    return (lowest + float(below.max())) / 2 if below.size else lowest


class MeaningRecogniser:
    """Emergencies by meaning: two logistic regressions over e5 vectors and character n-grams (module docstring)."""

    def __init__(self, encoder: TextEncoder, table: EmergencyTable, model: _Model) -> None:
        self.encoder, self.table, self.model = encoder, table, model
        self._index = {gram: i for i, gram in enumerate(model.vocab)}
        self.description = (
            f"meaning ({encoder.name}; threshold {model.threshold:.3f}, calibration recall "
            f"{model.calibration_recall:.2f} precision {model.calibration_precision:.2f})"
        )

    # -- training --

    @classmethod
    def train(cls, encoder: TextEncoder, table: EmergencyTable, calibration: Sequence[Phrasing]) -> MeaningRecogniser:
        texts, labels, now = _training_set(table)
        vectors = encoder.encode(texts)
        mean = vectors.mean(axis=0)
        counts = Counter(gram for text in texts for gram in _ngrams(text))
        vocab = sorted(gram for gram, count in counts.items() if count >= _NGRAM_MIN_COUNT)
        draft = _Model(mean, vocab, np.zeros(0), np.zeros(0), 0.0, 0.0, 0.0)
        recogniser = cls(encoder, table, draft)
        features = recogniser._features(texts, vectors)
        classes = len(table.kinds) + len(table.not_emergencies)
        draft.situation = _fit_softmax(features, np.array(labels), classes)
        taught = np.array([flag is not None for flag in now])
        draft.now = _fit_softmax(features[taught], np.array([int(bool(flag)) for flag in now if flag is not None]), 2)
        known = {kind.code for kind in table.kinds}
        unknown = {p.kind for p in calibration if p.kind is not None and p.kind not in known}
        if unknown:
            raise ValueError(f"calibration phrasings name unknown emergency kinds: {sorted(unknown)}")
        scores = recogniser._score_array([p.text for p in calibration])[0]
        emergency = np.array([p.kind is not None for p in calibration])
        draft.threshold = _threshold(scores, emergency)
        chosen = scores >= draft.threshold
        draft.calibration_recall = float(chosen[emergency].mean())
        draft.calibration_precision = float(emergency[chosen].mean()) if chosen.any() else 0.0
        return cls(encoder, table, draft)

    # -- use --

    def recognise(self, text: str) -> Emergency | None:
        score, kind = self.scores([text])[0]
        return Emergency(kind, score) if kind is not None else None

    def scores(self, texts: Sequence[str]) -> list[tuple[float, EmergencyKind | None]]:
        """Each text's score, and its kind when the score reaches the threshold."""
        if not texts:
            return []
        scores, kinds = self._score_array(list(texts))
        return [
            (float(s), self.table.kinds[int(k)] if s >= self.model.threshold else None)
            for s, k in zip(scores, kinds, strict=True)
        ]

    def _score_array(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        features = self._features(texts, self.encoder.encode(texts))
        design = np.hstack([features, np.ones((len(texts), 1))])
        situation = _softmax(design @ self.model.situation)
        emergency = situation[:, : len(self.table.kinds)]
        happening = _softmax(design @ self.model.now)[:, 1]
        return emergency.sum(axis=1) * happening, emergency.argmax(axis=1)

    def _features(self, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        centred = vectors - self.model.mean
        centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-9)
        grams = np.zeros((len(texts), len(self._index)), dtype=np.float64)
        for row, text in enumerate(texts):
            for gram in _ngrams(text):
                column = self._index.get(gram)
                if column is not None:
                    grams[row, column] = 1.0
        grams /= np.maximum(np.sqrt(grams.sum(axis=1, keepdims=True)), 1.0)
        return np.hstack([centred, _NGRAM_WEIGHT * grams])

    # -- the cache --

    def save(self, path: Path) -> None:
        m = self.model
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(
            partial,
            mean=m.mean,
            vocab=np.array(m.vocab, dtype=str),
            situation=m.situation,
            now=m.now,
            figures=np.array([m.threshold, m.calibration_recall, m.calibration_precision]),
        )
        partial.replace(path)  # another process starting at the same moment reads a whole file or none

    @classmethod
    def load(cls, path: Path, encoder: TextEncoder, table: EmergencyTable) -> MeaningRecogniser:
        with np.load(path) as stored:
            threshold, recall, precision = (float(x) for x in stored["figures"])
            vocab = [str(gram) for gram in stored["vocab"]]
            model = _Model(stored["mean"], vocab, stored["situation"], stored["now"], threshold, recall, precision)
        return cls(encoder, table, model)


def _training_set(table: EmergencyTable) -> tuple[list[str], list[int], list[bool | None]]:
    """Texts, their situation class (kinds, then near-miss groups) and whether each teaches 'happening now'."""
    texts: list[str] = []
    labels: list[int] = []
    now: list[bool | None] = []
    for index, kind in enumerate(table.kinds):
        texts += kind.exemplars
        labels += [index] * len(kind.exemplars)
        now += [True] * len(kind.exemplars)
    for offset, (group, phrasings) in enumerate(table.not_emergencies.items()):
        texts += phrasings
        labels += [len(table.kinds) + offset] * len(phrasings)
        now += [False if group in NOT_NOW else None] * len(phrasings)
    return texts, labels, now


def cache_key(encoder_name: str, files: Iterable[Path]) -> str:
    digest = hashlib.sha256(f"{_TRAINING_VERSION}\n{encoder_name}\n".encode())
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def load_recogniser(
    encoder: TextEncoder | None,
    cache_dir: Path | None = None,
    table_file: Path = EMERGENCIES_FILE,
    calibration_file: Path = CALIBRATION_FILE,
) -> Recogniser:
    """By meaning with the given encoder (trained, or read from `cache_dir`), else by keywords, logged either way."""
    table = load_table(table_file)
    if encoder is None:
        log.warning("emergency recognition: keywords only, no embedding model (KB_EMBEDDING_MODEL): past events and "
                    "questions that name an emergency are taken for one")  # fmt: skip
        return KeywordRecogniser(table)
    model = f"{encoder.name}|{getattr(encoder, 'prefix', '')}"  # the same model with another prefix gives other vectors
    cached = cache_dir / f"emergencies-{cache_key(model, [table_file, calibration_file])}.npz" if cache_dir else None
    recogniser: MeaningRecogniser | None = None
    if cached is not None and cached.is_file():
        try:
            recogniser = MeaningRecogniser.load(cached, encoder, table)
        except (OSError, ValueError, KeyError) as exc:  # a truncated or foreign file: train again
            log.warning("emergency recognition: cached model %s unreadable (%s); training again", cached, exc)
    if recogniser is None:
        recogniser = MeaningRecogniser.train(encoder, table, read_phrasings(calibration_file))
        if cached is not None:
            try:
                recogniser.save(cached)
            except OSError as exc:
                log.warning("emergency recognition: could not cache the model at %s: %s", cached, exc)
    log.info("emergency recognition: %s", recogniser.description)
    return recogniser
