"""The open-set gate's real negatives and their e5 vectors, cached: no Rasa import, so set-up can run it too.

Encoding ~17,700 lines is most of the gate's training time, and the vectors change only with the lines or the
encoder, while every edit of the NLU data retrains the gate. So they are kept beside the encoder's build in the
set-up cache, and `make setup` fills that cache (`python -m rasa_components.gate_negatives`) while Rasa's
virtualenv installs, so the first training on a new machine finds them too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

import numpy as np

from rasa_components.e5_encoder import ENCODER_DIR_ENV, E5Encoder, card_digest

logger = logging.getLogger(__name__)

NEGATIVES_DIR = "nlu/real_negatives"  # relative to where `rasa train` runs: the project root
VECTOR_CACHE_DIR = "grid-gate-negatives"  # beside the encoder's folder, in the set-up cache


def negative_lines(folder: Path) -> list[str]:
    lines: list[str] = []
    for path in sorted(folder.glob("*.txt")):
        lines += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines


def negatives_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.txt")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_file(encoder_dir: Path, negatives_dir: Path) -> Path:
    key = f"{card_digest(encoder_dir)[:16]}-{negatives_digest(negatives_dir)[:16]}"
    return encoder_dir.parent / VECTOR_CACHE_DIR / f"{key}.npy"


def negative_vectors(encoder_dir: Path, negatives_dir: Path, encoder: E5Encoder | None = None) -> np.ndarray:
    """One e5 vector per line of `negative_lines(negatives_dir)`, from the cache or encoded now (and cached)."""
    lines = negative_lines(negatives_dir)
    cached = cache_file(encoder_dir, negatives_dir)
    if cached.is_file():
        vectors = np.load(cached)
        if vectors.shape[0] == len(lines):
            logger.info("grid gate: %d real negatives' vectors from %s", len(lines), cached)
            return vectors
    logger.info("grid gate: encoding %d real negatives", len(lines))
    encoded = (encoder or E5Encoder(encoder_dir)).encode_many(
        lines, progress=lambda done: logger.info("grid gate: %d/%d negatives encoded", done, len(lines))
    )
    vectors = np.vstack(encoded).astype(np.float32)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f"{cached.stem}.{os.getpid()}.partial.npy")
    np.save(partial, vectors)
    partial.replace(cached)  # whole or not at all: an encoding killed mid-write leaves no half file
    return vectors


def main() -> int:
    """Set-up's step: fill the cache for the encoder GRIDBOT_E5_ENCODER names (set-up passes its export)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    location = os.environ.get(ENCODER_DIR_ENV)
    if not location:
        print(f"{ENCODER_DIR_ENV} must name the built e5 encoder folder", file=sys.stderr)
        return 2
    negative_vectors(Path(location), Path(NEGATIVES_DIR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
