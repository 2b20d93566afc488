"""The services actions use, injected by the app at start-up (rasa_sdk instantiates actions itself)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from grid.emergencies import EmergencyTriage
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


_services: ActionServices | None = None


def configure(services: ActionServices) -> None:
    global _services
    _services = services


def services() -> ActionServices:
    if _services is None:
        raise RuntimeError("actions.runtime.configure() was not called: actions run only inside the gridbot app")
    return _services


@contextmanager
def transaction() -> Iterator[Session]:
    with unit_of_work(services().session_factory) as session:
        yield session


async def in_transaction(work: Callable[[Session], T]) -> T:
    """Run blocking database work in a thread, in one transaction, so the event loop keeps serving; a database
    restart in the middle is waited out (storage.engine.with_reconnect)."""
    return await asyncio.to_thread(with_reconnect, services().session_factory, work)
