"""multilingual-e5-small sentence vectors from the int8 ONNX export, on onnxruntime (no torch in Rasa's venv).

`knowledge/offline_e5_onnx.py` (app venv, set-up time) writes the folder: model.onnx (ids and mask in, unit
vectors out), tokenizer.model (the model's own vocabulary and normaliser as a sentencepiece model) and
encoder.json (its card). sentencepiece holds the 250k-piece vocabulary in ~70 MB; the `tokenizers` library
needed ~270 MB per Rasa process for the same tokenizer.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.model"
ENCODER_CARD = "encoder.json"
FILES = (MODEL_FILE, TOKENIZER_FILE, ENCODER_CARD)
# Where training finds the built encoder when config.yml names none (`bot.rasa_process.rasa_env` sets it).
ENCODER_DIR_ENV = "GRIDBOT_E5_ENCODER"


# XLM-RoBERTa's tokenizer.json collapses runs of spaces after its character map; sentencepiece's own
# whitespace clean-up would also strip the ends, so the build turns it off and encode() does this step.
SPACE_RUNS = re.compile(" {2,}")
# encode_many reports its progress (and keeps its pool's queue short) in chunks of this many sentences.
PROGRESS_EVERY = 500


def read_card(folder: Path) -> dict[str, object]:
    return dict(json.loads((folder / ENCODER_CARD).read_text(encoding="utf-8")))


def card_digest(folder: Path) -> str:
    """Names this encoder build (the card lists each file's sha256), for Rasa's training cache and model name."""
    return hashlib.sha256((folder / ENCODER_CARD).read_bytes()).hexdigest()


def intra_op_threads() -> int:
    """OMP_NUM_THREADS, which `rasa_process.single_threaded` sets for one-server-per-core; 0 = onnxruntime's default.

    onnxruntime keeps its own thread pool and reads no environment variable, so the setting is passed on here.
    """
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "0")), 0)
    except ValueError:
        return 0


class E5Encoder:
    """Loaded once per process (Rasa's featurizer; the app's knowledge base, knowledge/embeddings.py); encode()
    returns a unit-length float32 vector. `threads`: onnxruntime's intra-op threads, else from OMP_NUM_THREADS."""

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        import sentencepiece

        card = read_card(folder)
        self.prefix = str(card.get("prefix", "query: "))
        self._max_pieces = int(card.get("max_tokens", 512)) - 2  # type: ignore[call-overload]  # <s> … </s>
        self._pieces = sentencepiece.SentencePieceProcessor(model_file=str(folder / TOKENIZER_FILE))
        self._folder = folder
        self._session = self._new_session(intra_op_threads() if threads is None else threads)
        self._bulk_session: object | None = None
        self._bulk_lock = threading.Lock()

    def _new_session(self, threads: int):  # type: ignore[no-untyped-def]  # onnxruntime has no type stubs
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        return onnxruntime.InferenceSession(str(self._folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])

    def token_ids(self, text: str, *, prefixed: bool = False) -> list[int]:
        """`prefixed`: the text already starts with whatever prefix its caller wants (the app's Embedder adds it)."""
        pieces = self._pieces.encode(SPACE_RUNS.sub(" ", text if prefixed else self.prefix + text))[: self._max_pieces]
        return [self._pieces.bos_id(), *pieces, self._pieces.eos_id()]

    def encode(self, text: str, *, prefixed: bool = False) -> np.ndarray:
        return self._run(self._session, text, prefixed)

    def _run(self, session, text: str, prefixed: bool) -> np.ndarray:  # type: ignore[no-untyped-def]
        ids = np.asarray([self.token_ids(text, prefixed=prefixed)], dtype=np.int64)
        (vectors,) = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        return np.asarray(vectors[0], dtype=np.float32)

    def encode_many(
        self, texts: Sequence[str], *, prefixed: bool = False, progress: Callable[[int], None] | None = None
    ) -> list[np.ndarray]:
        """Many sentences for training, still one per run (int8 activations are scaled per run, so a sentence
        padded into a batch would get other features than the same sentence served alone), but the runs spread
        over the cores: one single-threaded run per core beats one run using every core on short sentences.
        `progress` is called with the count done every PROGRESS_EVERY sentences."""
        workers = max(os.cpu_count() or 1, 1)
        if workers == 1 or len(texts) < PROGRESS_EVERY:
            return [self.encode(text, prefixed=prefixed) for text in texts]
        with self._bulk_lock:
            if self._bulk_session is None:
                self._bulk_session = self._new_session(1)
        session = self._bulk_session
        vectors: list[np.ndarray] = []
        with ThreadPoolExecutor(workers) as pool:
            for start in range(0, len(texts), PROGRESS_EVERY):
                chunk = texts[start : start + PROGRESS_EVERY]
                vectors += pool.map(lambda text: self._run(session, text, prefixed), chunk)
                if progress is not None:
                    progress(len(vectors))
        return vectors
