"""An open-set gate beside DIET: how likely a message is a grid matter at all, learnt from real text.

DIET is closed-set: every input lands on one of the domain's intents, and its softmax is saturated, so a
recipe question or a train timetable is "ask_policy" at 0.97 and the bot speaks in a group uninvited. This
component answers a different question ("is this something a grid worker handles?") with a calibrated
logistic regression on the e5 sentence vector (already on the message: E5SentenceFeaturizer runs first) and
character 1–2-gram TF-IDF, trained on the domain's grid intents as positives against its chatter intents
and a few thousand lines of real, licensed text that is not a grid matter (travel-assistant and open-domain
chat: `nlu/real_negatives/`, see its README). Its output, `grid_matter: {"score": p}` in the parse result,
is read by the router for unaddressed group messages; the threshold is chosen on held-out real chatter
(`bench/nlu_real.py --calibrate`), never on what the benchmark reports.

The external negatives are encoded here with the same int8 encoder, one sentence per run like the featurizer,
so training and serving see the same vectors. Parameters are stored as arrays and JSON, not pickles.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import INTENT, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from rasa_components.e5_encoder import ENCODER_DIR_ENV, card_digest
from rasa_components.gate_negatives import NEGATIVES_DIR, negative_lines, negative_vectors, negatives_digest

logger = logging.getLogger(__name__)

OUTPUT = "grid_matter"
PARAMS_FILE = "gate.npz"
VOCAB_FILE = "vocabulary.json"


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class GridMatterGate(GraphComponent):
    """Adds `grid_matter: {"score": p}` to every parse; changes neither intent nor entities."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            "grid_intents": [],  # the intents that are grid matters; every other intent is a negative
            "negatives_dir": NEGATIVES_DIR,  # real text that is not a grid matter, one line each
            "encoder_dir": None,  # the e5 encoder for the negatives; default from GRIDBOT_E5_ENCODER
            "C": 1.0,
        }

    @staticmethod
    def required_packages() -> list[str]:
        return ["sklearn", "onnxruntime", "sentencepiece"]

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        vectorizer: TfidfVectorizer | None = None,
        weights: np.ndarray | None = None,
        bias: float = 0.0,
    ) -> None:
        self._config = config
        self._model_storage = model_storage
        self._resource = resource
        self._vectorizer = vectorizer
        self._weights = weights
        self._bias = bias

    @classmethod
    def create(
        cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource, execution_context: ExecutionContext
    ) -> GraphComponent:
        return cls(config, model_storage, resource)

    @classmethod
    def fingerprint_addon(cls, config: dict[str, Any]) -> str | None:
        """Rasa's training cache must retrain when the negatives or the encoder change, not only the NLU data."""
        parts = [negatives_digest(Path(config.get("negatives_dir") or NEGATIVES_DIR))]
        encoder = config.get("encoder_dir") or os.environ.get(ENCODER_DIR_ENV)
        if encoder and Path(encoder).is_dir():
            parts.append(card_digest(Path(encoder)))
        return "-".join(parts)

    # --- training ---------------------------------------------------------------------------------------

    def _encoder_dir(self) -> Path:
        location = self._config.get("encoder_dir") or os.environ.get(ENCODER_DIR_ENV)
        if not location:
            raise ValueError(f"GridMatterGate: set `encoder_dir` in config.yml or {ENCODER_DIR_ENV}")
        return Path(location)

    def train(self, training_data: TrainingData) -> Resource:
        grid = set(self._config["grid_intents"])
        if not grid:
            raise ValueError("GridMatterGate: `grid_intents` names no intent")
        texts: list[str] = []
        vectors: list[np.ndarray] = []
        labels: list[int] = []
        for example in training_data.intent_examples:
            dense = self._sentence_vector(example)
            if dense is None:
                continue
            texts.append(example.get(TEXT))
            vectors.append(dense)
            labels.append(int(example.get(INTENT) in grid))
        negatives_dir = Path(self._config["negatives_dir"])
        negatives = negative_lines(negatives_dir)
        texts += negatives
        vectors += list(negative_vectors(self._encoder_dir(), negatives_dir))
        labels += [0] * len(negatives)
        vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float32)
        chars = vectorizer.fit_transform(texts)
        features = hstack([csr_matrix(np.vstack(vectors)), chars]).tocsr()
        model = LogisticRegression(C=float(self._config["C"]), class_weight="balanced", max_iter=3000)
        model.fit(features, np.asarray(labels))
        self._vectorizer, self._weights, self._bias = vectorizer, model.coef_[0].astype(np.float32), float(model.intercept_[0])
        logger.info("grid gate: trained on %d positives, %d negatives", sum(labels), len(labels) - sum(labels))
        self._persist()
        return self._resource

    def _persist(self) -> None:
        assert self._vectorizer is not None and self._weights is not None
        with self._model_storage.write_to(self._resource) as directory:
            np.savez(Path(directory) / PARAMS_FILE, weights=self._weights, bias=np.float32(self._bias), idf=self._vectorizer.idf_)
            vocabulary = {gram: int(index) for gram, index in self._vectorizer.vocabulary_.items()}
            (Path(directory) / VOCAB_FILE).write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> GraphComponent:
        with model_storage.read_from(resource) as directory:
            params = np.load(Path(directory) / PARAMS_FILE)
            vocabulary = json.loads((Path(directory) / VOCAB_FILE).read_text(encoding="utf-8"))
        vectorizer = TfidfVectorizer(
            analyzer="char", ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32, vocabulary=vocabulary
        )
        vectorizer.idf_ = params["idf"]
        return cls(config, model_storage, resource, vectorizer, params["weights"], float(params["bias"]))

    # --- serving ----------------------------------------------------------------------------------------

    @staticmethod
    def _sentence_vector(message: Message) -> np.ndarray | None:
        """The e5 sentence feature the featurizer put on the message (the only dense featurizer in the pipeline)."""
        _sequence, sentence = message.get_dense_features(TEXT)
        if sentence is None:
            return None
        return np.asarray(sentence.features, dtype=np.float32).reshape(-1)

    def score(self, message: Message) -> float | None:
        dense = self._sentence_vector(message)
        if dense is None or self._vectorizer is None or self._weights is None:
            return None
        chars = self._vectorizer.transform([message.get(TEXT) or ""])
        logit = float(dense @ self._weights[: dense.shape[0]]) + float(chars @ self._weights[dense.shape[0] :]) + self._bias
        return float(1.0 / (1.0 + np.exp(-logit)))

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            score = self.score(message)
            if score is not None:
                message.set(OUTPUT, {"score": round(score, 4)}, add_to_output=True)
        return messages
