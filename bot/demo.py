"""The demo world in one call: schema, grids and groups, knowledge entries and demo accounts (idempotent)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from bot.auth.demo import DEMO_PASSWORD, demo_logins, ensure_demo_accounts
from bot.runtime import build_knowledge_base
from bot.settings import Settings, get_settings
from grid.clock import LOCAL_TZ
from grid.demo import load_geography
from knowledge.admin import read_yaml, upsert_entries
from knowledge.base import KnowledgeBase
from knowledge.calibration import ensure_calibrated
from storage.base import utcnow
from storage.engine import make_engine, make_session_factory, unit_of_work
from storage.migrate import upgrade

DEMO_ENTRIES = Path(__file__).resolve().parent.parent / "knowledge" / "data" / "demo_entries.yml"


def load_demo(database_url: str, updated_by: str = "demo") -> dict[str, int]:
    """Migrate, then upsert the demo geography, knowledge and accounts; returns what was loaded."""
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            counts = load_geography(session)
            created, updated = upsert_entries(session, read_yaml(DEMO_ENTRIES), updated_by)
            accounts = ensure_demo_accounts(session)
        with unit_of_work(make_session_factory(engine)) as session:
            # Answer thresholds for the sample knowledge base, lexical-only and with the configured model.
            today = utcnow().astimezone(LOCAL_TZ).date()
            for kb in (KnowledgeBase(), build_knowledge_base(get_settings())):
                ensure_calibrated(session, kb, today)
    finally:
        engine.dispose()
    return {**counts, "knowledge_created": created, "knowledge_updated": updated, "accounts_created": accounts}


def is_embedded_database(database_url: str) -> bool:
    """Whether the URL names the embedded default database (SQLite under var/, what DATABASE_URL unset means)."""
    url, embedded = make_url(database_url), make_url(Settings.model_fields["database_url"].default)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    return Path(url.database).resolve() == Path(embedded.database or "").resolve()


def prepare_database(database_url: str, demo: bool | None) -> bool:
    """What `gridbot run` does first: migrate, and load the demo world (with its published `admin` password) when
    `demo` says so; None (no --demo/--no-demo) loads it only into the embedded default database, never into a
    database an operator named. Returns whether the demo was loaded."""
    if demo is None:
        demo = is_embedded_database(database_url)
    if demo:
        load_demo(database_url)
    else:
        upgrade(database_url)
    return demo


def demo_login_text(database_url: str) -> str:
    """The demo logins for the start-up log: who to log in as, and the shared demo password."""
    engine = make_engine(database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            logins = demo_logins(session)
    finally:
        engine.dispose()
    if not logins:
        return "no demo accounts: create one with `gridbot user create NAME --role admin`"
    names = "  ".join(f"{username}（{name}，{role}）" for username, name, role in logins)
    return f"console/API demo logins, password {DEMO_PASSWORD}: {names}"
