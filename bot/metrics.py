"""Prometheus counters of messages, counted where they flow (router, dispatcher, Rasa client); GET /metrics shows them.

They belong to this process (prometheus-client's default registry, with its process_* memory and CPU series). Every
`gridbot serve` is one process on its own port (deploy/Procfile), so Prometheus scrapes each app process as a target
of its own and sums across them: no multiprocess mode, whose shared-file directory would have to be managed and
cleared per deployment. The installation's gauges (tickets, queues) are bot/queue_gauges.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_IN = Counter(
    "gridbot_messages_in",
    "Messages the bot heard, by channel and what became of them: answered (something said), silent (chatter, or "
    "nothing to say), held (Rasa unavailable: kept for a retry), media (a picture or voice note), duplicate "
    "(a platform's redelivery), unmapped_group, error (not handled; the platform or client retries).",
    ["channel", "outcome"],
)
MESSAGES_OUT = Counter(
    "gridbot_messages_out",
    "Messages the bot sent or tried to, by channel and outcome: sent, rate_limited (waiting for a slot, sent later), "
    "retry (a send failed, tried again later), failed (given up: bot removed from the group, attempts exhausted).",
    ["channel", "outcome"],
)
TURN_SECONDS = Histogram(
    "gridbot_turn_seconds",
    "One message's way through the router (the decision, NLU and Rasa's turn with its actions) until its replies are "
    "ready to send; held messages included.",
    ["channel"],
    buckets=(0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0),
)
RASA_ERRORS = Counter(
    "gridbot_rasa_errors",
    "Calls to Rasa that failed, by reason: connect, timeout, client_error, http_5xx, http_4xx, not_json.",
    ["reason"],
)
RASA_RESTARTS = Counter(
    "gridbot_rasa_restarts",
    "Rasa servers `gridbot run` restarted (bot/rasa_supervisor.py), by reason: exited (the process ended), "
    "unresponsive (its /status stopped answering), start_failed (a restart that did not load its model in time).",
    ["reason"],
)
RASA_SERVERS_UP = Gauge(
    "gridbot_rasa_servers_up",
    "Rasa servers `gridbot run` supervises that have their model loaded now (0 under `gridbot serve`, which starts none).",
)


@contextmanager
def timed_turn(channel: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        TURN_SECONDS.labels(channel).observe(time.perf_counter() - started)
