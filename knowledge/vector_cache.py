"""Sentence vectors kept in the database, keyed by model and text, so no phrasing is encoded twice.

Encoding is the slow part of building the dense index (tens of milliseconds a sentence on a CPU); with
the cache, an app restart, a second app process or an edit to one entry encodes only what is new.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

import numpy as np
from sqlalchemy import LargeBinary, String, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from knowledge.embeddings import Embedder
from storage.base import Base, utcnow
from storage.types import UTCDateTime

log = logging.getLogger(__name__)
_CHUNK = 500
# Vectors already read or encoded in this process: a test run or a CLI creating fresh databases re-reads nothing.
_memory: dict[tuple[str, str], np.ndarray] = {}
_MEMORY_LIMIT = 50_000


class CachedVector(Base):
    __tablename__ = "knowledge_vectors"

    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    text_sha1: Mapped[str] = mapped_column(String(40), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def _key(embedder: Embedder, text: str) -> str:
    return hashlib.sha1(f"{embedder.prefix}\x00{text}".encode()).hexdigest()


def vectors_for(session: Session, embedder: Embedder, texts: list[str]) -> np.ndarray:
    """One unit vector per text, in order: from the database cache where present, else encoded and cached.

    Vectors this process encoded for another database (a test run, a CLI) are reused from memory, but
    still written to this database so its other processes find them.
    """
    keys = [_key(embedder, text) for text in texts]
    unique = sorted(set(keys))
    found: dict[str, np.ndarray] = {}
    for start in range(0, len(unique), _CHUNK):
        rows = session.execute(
            select(CachedVector.text_sha1, CachedVector.vector).where(
                CachedVector.model == embedder.name, CachedVector.text_sha1.in_(unique[start : start + _CHUNK])
            )
        )
        found.update((key, np.frombuffer(blob, dtype=np.float32)) for key, blob in rows)
    absent = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
    if absent:
        remembered = {key: _memory[(embedder.name, key)] for key in absent if (embedder.name, key) in _memory}
        to_encode = {key: text for key, text in absent.items() if key not in remembered}
        log.info("encoding %d new phrasing(s) with %s (%d cached)", len(to_encode), embedder.name, len(keys) - len(to_encode))
        encoded = dict(zip(to_encode, embedder.encode(list(to_encode.values())), strict=True)) if to_encode else {}
        new = {**remembered, **encoded}
        rows = [
            {"model": embedder.name, "text_sha1": key, "vector": vector.astype(np.float32).tobytes(), "created_at": utcnow()}
            for key, vector in new.items()
        ]
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        for start in range(0, len(rows), _CHUNK):  # another process may cache the same text at the same time
            session.execute(insert(CachedVector).values(rows[start : start + _CHUNK]).on_conflict_do_nothing())
        found.update(new)
    if len(_memory) < _MEMORY_LIMIT:
        _memory.update(((embedder.name, key), vector) for key, vector in found.items())
    if not keys:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.stack([found[key] for key in keys]).astype(np.float32)
