"""Where a `make run`'s minutes went: each set-up step's seconds, printed when GridBot is ready.

A first run on a new machine installs virtualenvs, exports the embedding model and trains Rasa before anything
answers; the README promises how long that takes, so the run itself says where its time went. scripts/setup.sh
writes var/setup-times.tsv (a header naming the `make` run, then one `step<TAB>seconds` line per step that did
work), training adds its line, and `gridbot run` prints them with the time since `make` began. The Makefile sets
GRIDBOT_MAKE_STARTED; without it (a `gridbot run` of its own) nothing is recorded or printed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bot.settings import PROJECT_ROOT

TIMES_FILE = PROJECT_ROOT / "var" / "setup-times.tsv"
MAKE_STARTED_ENV = "GRIDBOT_MAKE_STARTED"
HEADER = "make-started"


def _this_make_run(path: Path) -> list[tuple[str, float]] | None:
    """The steps recorded by the `make` run this process belongs to; None outside `make` or when the file is another
    run's (or missing)."""
    started = os.environ.get(MAKE_STARTED_ENV)
    if not started:
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    if not lines or lines[0] != f"{HEADER}\t{started}":
        return None
    steps = []
    for line in lines[1:]:
        step, _, seconds = line.rpartition("\t")
        try:
            steps.append((step, float(seconds)))
        except ValueError:
            continue
    return steps


def record(step: str, seconds: float, path: Path = TIMES_FILE) -> None:
    """Adds a step to this `make` run's record, which set-up began; nothing outside one (a test's training)."""
    if _this_make_run(path) is None:
        return
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"{step}\t{seconds:.0f}\n")


def summary(now: float | None = None, path: Path = TIMES_FILE) -> str | None:
    """'ready 312 s after `make` began; steps: app virtualenv 9 s, …', or None outside a `make` run set-up began."""
    steps = _this_make_run(path)
    if steps is None:
        return None
    total = (time.time() if now is None else now) - float(os.environ[MAKE_STARTED_ENV])
    listed = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in steps)
    return f"ready {total:.0f} s after `make` began" + (f"; steps: {listed}" if listed else " (nothing to set up or train)")
