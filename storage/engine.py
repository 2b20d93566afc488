"""Engine and session factories: SQLite for the embedded default, PostgreSQL in production."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
T = TypeVar("T")
# Connections kept open per engine. SQLAlchemy's default (5) is below what the app uses at once under load: the
# event loop's worker threads (cores + 4), FastAPI's thread pool and the jobs. A connection past the pool is
# opened for one transaction and closed after it: for SQLite a file open and three PRAGMAs, for PostgreSQL a
# new server process and its authentication each time.
POOL_SIZE = 16


def make_engine(url: str) -> Engine:
    """Create an engine; for SQLite, make the folder and turn on foreign keys (off by default there)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=POOL_SIZE)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            # WAL's recommended level: no fsync per commit (a quarter of the app's CPU under load); an app crash
            # loses nothing committed, a power cut may lose the last transactions. Production runs PostgreSQL.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed when the block succeeds, rolled back whole when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def with_reconnect(factory: sessionmaker[Session], work: Callable[[Session], T], *, patience_seconds: float = 20.0) -> T:
    """Run `work` in one transaction, again from the start if the database went away underneath it.

    A PostgreSQL restart or failover takes seconds; a resident's report arriving then should wait for it, not
    vanish. The whole transaction is repeated, so `work` must be safe to run again after a failure: our writes
    are (the ticket service recognises the same reporter's report as a duplicate if a commit did go through
    before the connection died). Gives up and raises after `patience_seconds`.
    """
    deadline = time.monotonic() + patience_seconds
    delay = 0.25
    while True:
        try:
            with unit_of_work(factory) as session:
                return work(session)
        except OperationalError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("database unavailable, retrying in %.2f s: %s", delay, str(exc).splitlines()[0])
            time.sleep(delay)
            delay = min(delay * 2, 4.0)
