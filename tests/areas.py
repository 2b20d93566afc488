"""What several test modules share: fixtures' shapes (the fixtures themselves are in conftest.py) and harnesses."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from storage.engine import unit_of_work


@dataclass(frozen=True)
class Area:
    """A community of one grid with one worker and its lead, made for one test (deadlines, emergencies)."""

    grid: str
    worker: str
    lead: str


def race_twice(factory: sessionmaker[Session], claim: Callable[[Session], list[str]]) -> list[list[str]]:
    """Two "processes" run `claim` at the same instant, each in its own transaction; what each claimed. A losing
    round must skip what the other claimed, not fail: any exception fails the test here."""
    barrier = threading.Barrier(2)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def check() -> None:
        barrier.wait(timeout=10)
        try:
            with unit_of_work(factory) as session:
                results.append(claim(session))
        except BaseException as exc:  # recorded: asserted below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(results) == 2
    return results
