"""Test fixtures' shapes shared by several modules (the fixtures themselves are in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Area:
    """A community of one grid with one worker and its lead, made for one test (deadlines, emergencies)."""

    grid: str
    worker: str
    lead: str
