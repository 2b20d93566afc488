"""Write locks that serialise work on one community across app processes.

Filing checks the open tickets for a duplicate and then opens a ticket; the early warning counts the community's
reports and then raises a warning. Each is a read followed by a write, so two processes doing it at once for one
community must take turns, or both see "nothing yet" and both write. This module depends on SQLAlchemy only, so the
ticket service, the deadlines and the warnings can all take the lock without importing one another.
"""

from __future__ import annotations

import zlib

from sqlalchemy import text
from sqlalchemy.orm import Session

_LOCK_CLASS = 0x5957  # "YW", 预警: the advisory-lock class of community locks


def begin_writing(session: Session) -> None:
    """On SQLite, open the transaction explicitly (BEGIN IMMEDIATE) unless one is already open.

    The sqlite3 driver begins a transaction only before INSERT/UPDATE/DELETE, so a SAVEPOINT issued first
    would start the transaction itself and its RELEASE would commit it: each claim would commit on its own,
    and a rollback of the round would no longer undo them. IMMEDIATE also takes SQLite's single write lock
    up front, so a second process waits (busy timeout) and then reads the claims of the first, instead of
    failing to upgrade a stale read snapshot. PostgreSQL needs none of this: its row locks and the version
    check do the work.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    driver = connection.connection.driver_connection
    if driver is not None and not driver.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def lock_community(session: Session, community: str) -> None:
    """Serialise filings and early-warning checks of one community across processes, until this transaction ends.

    Taking it again in the same transaction is free: PostgreSQL's advisory transaction locks are re-entrant, and
    on SQLite the transaction already holds the write lock.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        key = zlib.crc32(community.encode()) - 2**31  # a signed int4
        session.execute(text("SELECT pg_advisory_xact_lock(:cls, :key)"), {"cls": _LOCK_CLASS, "key": key})
    else:
        begin_writing(session)
