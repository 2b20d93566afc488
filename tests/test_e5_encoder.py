"""Rasa's e5 featurizer: the int8 ONNX encoder agrees with the fp32 model, and a trained model carries it.

The featurizer runs in the Rasa virtualenv (a subprocess here); the fp32 reference is the sentence-transformers copy
of the same model, built at set-up time from the same weights, run in the tools virtualenv (another subprocess).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bot import rasa_process
from bot.nlu_eval import examples
from bot.rasa_process import RASA_BIN, rasa_env
from bot.settings import PROJECT_ROOT
from knowledge.e5_exports import offline_e5_dir, onnx_e5_dir
from rasa_components.e5_encoder import ENCODER_CARD, ENCODER_DIR_ENV, FILES, E5Encoder, card_digest, read_card
from tests.tools_venv import reference_vectors

TEXTS = [
    "请问居住证怎么办理需要什么材料",
    "办居住证要带哪些东西",
    "楼道灯坏了",
    "3号楼门口有人占道经营卖水果 很吵",
    "高齡津貼每個月多少錢",  # traditional characters
    "😀👍🏻🎉",
    "138 1234 5678 打我电话",
    "楼上装修太吵了" * 400,  # 2,800 characters: past the encoder's 512 tokens
]

SCRIPT = """
import json, os, sys, tempfile
from pathlib import Path
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from rasa_components.e5_featurizer import E5SentenceFeaturizer

source, texts = sys.argv[1], json.loads(sys.argv[2])
defaults = E5SentenceFeaturizer.get_default_config()
context = ExecutionContext(GraphSchema({}), node_name="e5")
out = {}
with tempfile.TemporaryDirectory() as tmp:
    (Path(tmp) / "model").mkdir()
    storage = LocalModelStorage(Path(tmp) / "model")
    resource = Resource("e5")
    trained = E5SentenceFeaturizer.create({**defaults, "encoder_dir": source}, storage, resource, context)
    trained.train(TrainingData())
    out["fingerprint"] = E5SentenceFeaturizer.fingerprint_addon({**defaults, "encoder_dir": source})
    out["stored"] = sorted(p.name for p in (Path(tmp) / "model" / "e5").iterdir())
    # Served: no cache folder, no environment variable; the model storage alone.
    os.environ.pop("GRIDBOT_E5_ENCODER", None)
    served = E5SentenceFeaturizer.load({**defaults, "encoder_dir": None}, storage, resource, context)
    messages = [Message({"text": t}) for t in texts] + [Message({"text": ""})]
    served.process(messages)
    vectors = []
    for message in messages:
        _, sentence = message.get_dense_features("text")
        vectors.append(None if sentence is None else sentence.features.reshape(-1).tolist())
    out["vectors"] = vectors
    try:
        nowhere = {**defaults, "encoder_dir": tmp + "/nowhere"}
        E5SentenceFeaturizer.create(nowhere, storage, Resource("x"), context).train(TrainingData())
    except FileNotFoundError as error:
        out["missing"] = str(error)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def featurized() -> dict[str, object]:
    result = subprocess.run(
        [str(RASA_BIN.parent / "python"), "-c", SCRIPT, str(onnx_e5_dir()), json.dumps(TEXTS, ensure_ascii=False)],
        cwd=PROJECT_ROOT,
        env=rasa_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_the_int8_encoder_agrees_with_the_fp32_model(featurized: dict[str, object]) -> None:
    reference = reference_vectors(["query: " + text for text in TEXTS])
    vectors = featurized["vectors"]
    assert isinstance(vectors, list) and len(vectors) == len(TEXTS) + 1
    served = np.asarray(vectors[: len(TEXTS)], dtype=np.float32)
    assert served.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-3)
    cosines = (served * reference).sum(axis=1)
    assert cosines.min() > 0.995, dict(zip(TEXTS, cosines.round(4), strict=True))
    # What the features are for: a paraphrase with few shared words stays nearer than an unrelated request.
    assert served[0] @ served[1] > served[0] @ served[2] + 0.05


def test_a_message_without_text_gets_no_feature(featurized: dict[str, object]) -> None:
    vectors = featurized["vectors"]
    assert isinstance(vectors, list) and vectors[-1] is None


def test_the_model_carries_its_encoder(featurized: dict[str, object]) -> None:
    assert featurized["stored"] == sorted(FILES)
    assert featurized["fingerprint"] == card_digest(onnx_e5_dir())


def test_the_sentencepiece_rewrite_splits_text_as_the_original_tokenizer() -> None:
    """The encoder's tokenizer.model against tokenizer.json read by Hugging Face's `tokenizers`, on the NLU data."""
    from tokenizers import Tokenizer

    original = Tokenizer.from_file(str(offline_e5_dir() / "tokenizer.json"))
    original.enable_truncation(max_length=512)
    encoder = E5Encoder(onnx_e5_dir())
    texts = sorted({text for path in (PROJECT_ROOT / "nlu").glob("*.yml") for _, text in examples(path)})
    assert len(texts) > 2000
    differ = [t for t in texts if encoder.token_ids(t) != original.encode("query: " + t).ids]
    # Only ties between equal-scoring splits may differ (哈哈哈哈哈哈哈: 哈|哈哈哈|哈哈哈 or 哈哈哈|哈哈哈|哈).
    assert len(differ) <= len(texts) // 500, differ[:10]
    for text in ("😀👍🏻🎉", "  两个  空格  ", "ＡＢＣ１２３ 全角", "高齡津貼", "tab\there", "①② ﬁ", "138****1234", "好" * 800):
        assert encoder.token_ids(text) == original.encode("query: " + text).ids, text


def test_training_without_the_encoder_says_how_to_build_it(featurized: dict[str, object]) -> None:
    message = str(featurized["missing"])
    assert "model.onnx" in message and "knowledge.offline_e5_onnx" in message


def test_a_new_encoder_means_a_new_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Rasa model's name hashes the encoder's card: features from another encoder never reuse a model."""
    monkeypatch.setenv(ENCODER_DIR_ENV, str(onnx_e5_dir()))
    current = rasa_process.training_hash()
    other = tmp_path / "encoder"
    other.mkdir()
    card = read_card(onnx_e5_dir())
    (other / ENCODER_CARD).write_text(json.dumps({**card, "recipe": -1}), encoding="utf-8")
    monkeypatch.setenv(ENCODER_DIR_ENV, str(other))
    assert rasa_process.training_hash() != current


def test_many_sentences_get_the_vectors_each_gets_alone() -> None:
    """Training encodes its thousands over every core (encode_many); each must be the vector a server computes for
    the same sentence alone, or the gate and DIET would learn on features they never see when serving."""
    encoder = E5Encoder(onnx_e5_dir())
    texts = [f"{text}{n}" for n in range(105) for text in TEXTS[:5]]  # past the size where it spreads over cores
    done: list[int] = []
    many = np.stack(encoder.encode_many(texts, progress=done.append))
    alone = np.stack([encoder.encode(text) for text in texts])
    assert many.shape == alone.shape == (525, alone.shape[1])
    assert np.allclose(many, alone, atol=1e-5)
    assert done == [500, 525]


def test_the_gates_negative_vectors_are_encoded_once(tmp_path: Path) -> None:
    """Cached beside the encoder, keyed by the encoder and the lines: read back as encoded, and new lines encode anew."""
    from rasa_components.gate_negatives import cache_file, negative_vectors

    encoder_dir = tmp_path / "models" / "e5-int8"
    encoder_dir.mkdir(parents=True)
    for name in FILES:
        (encoder_dir / name).symlink_to(onnx_e5_dir() / name)
    negatives = tmp_path / "negatives"
    negatives.mkdir()
    (negatives / "chat.txt").write_text("今天天气不错\n\n明天去看电影吗\n", encoding="utf-8")
    first = negative_vectors(encoder_dir, negatives)
    assert first.shape[0] == 2 and cache_file(encoder_dir, negatives).is_file()
    again = negative_vectors(encoder_dir, negatives, encoder=_NoEncoding())  # type: ignore[arg-type]
    assert np.array_equal(first, again)
    (negatives / "chat.txt").write_text("今天天气不错\n明天去看电影吗\n红烧肉怎么做\n", encoding="utf-8")
    assert negative_vectors(encoder_dir, negatives).shape[0] == 3


class _NoEncoding:
    """Stands in for the encoder where the cache must answer: encoding at all fails the test."""

    def encode_many(self, *args: object, **kwargs: object) -> list[np.ndarray]:
        raise AssertionError("encoded although the vectors were cached")
