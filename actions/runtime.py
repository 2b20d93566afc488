"""The services actions use, injected by the app at start-up (rasa_sdk instantiates actions itself)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from grid.duplicates import DuplicateJudge
from grid.emergencies import EmergencyTriage
from grid.warnings import WarningWatch
from knowledge.base import KnowledgeBase
from storage.engine import unit_of_work, with_reconnect

T = TypeVar("T")


@dataclass
class ActionServices:
    session_factory: sessionmaker[Session]
    knowledge: KnowledgeBase
    duplicate_window: timedelta = timedelta(hours=72)
    # How long after an answer a question naming nothing of its own is read as about it (knowledge/followups.py).
    followup_window: timedelta = timedelta(minutes=10)
    # Life-safety reports recognised at filing (grid/emergencies.py); None: no recognition, the old keyword rule only.
    emergencies: EmergencyTriage | None = None
    # Which open ticket a report repeats (grid/duplicates.py); None: same category at the same specific spot.
    duplicates: DuplicateJudge | None = None
    # Early warnings after each filing (grid/warnings.py); None: no check.
    warnings: WarningWatch | None = None


# The services of the app serving the current action call. Not a process global: one process may serve several
# apps (the tests and benches run them in threads, bot/embedded.py), and a global is whichever app started last —
# Rasa's calls to the first app then ran on the last one's database, duplicate judge and knowledge base.
_serving: ContextVar[ActionServices | None] = ContextVar("action_services", default=None)


@contextmanager
def serving(services: ActionServices) -> Iterator[None]:
    """Actions run inside this block use `services`; threads started with asyncio.to_thread inherit them."""
    token = _serving.set(services)
    try:
        yield
    finally:
        _serving.reset(token)


def services() -> ActionServices:
    found = _serving.get()
    if found is None:
        raise RuntimeError("no action services: actions run only inside the gridbot app's action endpoint (serving())")
    return found


@contextmanager
def transaction() -> Iterator[Session]:
    with unit_of_work(services().session_factory) as session:
        yield session


async def in_transaction(work: Callable[[Session], T]) -> T:
    """Run blocking database work in a thread, in one transaction, so the event loop keeps serving; a database
    restart in the middle is waited out (storage.engine.with_reconnect)."""
    return await asyncio.to_thread(with_reconnect, services().session_factory, work)
