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
        import onnxruntime
        import sentencepiece

        card = read_card(folder)
        self.prefix = str(card.get("prefix", "query: "))
        self._max_pieces = int(card.get("max_tokens", 512)) - 2  # type: ignore[call-overload]  # <s> … </s>
        self._pieces = sentencepiece.SentencePieceProcessor(model_file=str(folder / TOKENIZER_FILE))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads() if threads is None else threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )

    def token_ids(self, text: str, *, prefixed: bool = False) -> list[int]:
        """`prefixed`: the text already starts with whatever prefix its caller wants (the app's Embedder adds it)."""
        pieces = self._pieces.encode(SPACE_RUNS.sub(" ", text if prefixed else self.prefix + text))[: self._max_pieces]
        return [self._pieces.bos_id(), *pieces, self._pieces.eos_id()]

    def encode(self, text: str, *, prefixed: bool = False) -> np.ndarray:
        ids = np.asarray([self.token_ids(text, prefixed=prefixed)], dtype=np.int64)
        (vectors,) = self._session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        return np.asarray(vectors[0], dtype=np.float32)
