"""INSERT … ON CONFLICT DO NOTHING on both backends: the row exists afterwards, whoever inserted it first.

Racing transactions that each "create if missing" would otherwise both insert and one would fail on the
unique key; with this both go on, and the loser sees the winner's row once it reads (with a lock if needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

_CHUNK = 1000


def insert_ignoring_conflicts(session: Session, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    dialect = session.get_bind().dialect.name
    for start in range(0, len(rows), _CHUNK):
        if dialect == "postgresql":
            statement: Any = postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))
        elif dialect == "sqlite":
            statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
        else:  # pragma: no cover - the project runs on SQLite and PostgreSQL only
            statement = insert(table)
        session.connection().execute(statement, list(rows[start : start + _CHUNK]))
