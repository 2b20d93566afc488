"""The offline multilingual-e5-small on onnxruntime in fp32: the knowledge base's question vectors without torch.

sentence-transformers ran the model on torch: ~29 ms of CPU for one unseen question on one thread here, more
than the rest of the app's turn, and torch's ~700 MB in every app process. The same network exported to ONNX at
set-up time (`tools/offline_e5_onnx.py`: encoder, mean pooling over the attention mask and L2 norm in one
graph) gives the same vectors to float rounding (tests/test_knowledge_onnx.py) in about a third of the time,
and the tokenizer is the model's own tokenizer.json, so the ids are the very ones sentence-transformers used.
Measured here on one thread: ~12 ms of CPU for a question against ~30 ms on torch. Memory is about the same
as torch's: the fp32 graph (~520 MB, most of it the 250k-row embedding table) and `tokenizers` holding the
vocabulary (~270 MB).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from knowledge.e5_exports import FP32_CARD
from rasa_components.e5_encoder import MODEL_FILE, intra_op_threads

MAX_BATCH = 16


class OnnxSentenceModel:
    """Unit-length float32 sentence vectors; a batch is padded to its longest text (the mask keeps it exact)."""

    def __init__(self, folder: Path) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        card = json.loads((folder / FP32_CARD).read_text(encoding="utf-8"))
        self.name = str(card["name"])
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(int(card.get("max_tokens", 512)))
        self._pad_id = self._tokenizer.token_to_id("<pad>") or 0
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads()
        # Between questions its threads sleep instead of spinning: in the app they would spin on cores that the
        # Rasa servers and the other requests need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        self.dim = int(self._session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """`texts` as given (the caller adds the model's prefix); one row per text.

        Batches are at most MAX_BATCH texts: onnxruntime's memory arena keeps the largest batch's activations for
        the life of the process (64 texts of 200 tokens held ~700 MB).
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch_size = min(batch_size, MAX_BATCH)
        # Similar lengths together: less padding to compute; rows go back to the caller's order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in chunk])
            width = max(len(e.ids) for e in encodings)
            ids = np.full((len(chunk), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, encoding in enumerate(encodings):
                ids[row, : len(encoding.ids)] = encoding.ids
                mask[row, : len(encoding.ids)] = 1
            (vectors,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[chunk] = vectors
        return out
