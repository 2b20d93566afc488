"""The pause before reconnecting, polling or restarting again after failures in a row: shared by the long-lived
channel tasks and `gridbot run`'s Rasa supervisor (bot/rasa_supervisor.py).

The exponent is capped: `first * 2 ** n` turns into a float overflow (OverflowError) after about 1025 failures,
which would end a poller or connection loop for good during a long outage.
"""

from __future__ import annotations

import random

_MAX_DOUBLINGS = 30


def backoff(failures: int, first: float, cap: float, jitter: float = 0.2) -> float:
    """Seconds to wait after `failures` failures in a row: doubling from `first` up to `cap`, ±`jitter` (a fraction)
    so that restarted processes spread out."""
    delay = min(first * 2 ** min(max(failures - 1, 0), _MAX_DOUBLINGS), cap)
    return delay * random.uniform(1 - jitter, 1 + jitter) if jitter else delay
