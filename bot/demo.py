"""The demo world in one call: schema, grids and groups, and the knowledge entries (idempotent)."""

from __future__ import annotations

from pathlib import Path

from grid.demo import load_geography
from knowledge.loader import read_yaml, upsert_entries
from storage.engine import make_engine, make_session_factory, unit_of_work
from storage.migrate import upgrade

DEMO_ENTRIES = Path(__file__).resolve().parent.parent / "knowledge" / "data" / "demo_entries.yml"


def load_demo(database_url: str, updated_by: str = "demo") -> dict[str, int]:
    """Migrate, then upsert the demo geography and knowledge; returns what was loaded."""
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            counts = load_geography(session)
            created, updated = upsert_entries(session, read_yaml(DEMO_ENTRIES), updated_by)
    finally:
        engine.dispose()
    return {**counts, "knowledge_created": created, "knowledge_updated": updated}
