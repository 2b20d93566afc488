"""The installation's gauges for GET /metrics, counted in the database when Prometheus scrapes.

Tickets by state, overdue tickets, and the depth of each queue (outgoing chat messages, notice deliveries, the
webhook outbox, messages held while Rasa was down) with the rows given up on. Every app process reports the same
values (aggregate them with max, not sum). The queue queries count only rows still waiting or failed, on indexed
status columns; tickets by state and overdue scan the tickets table (no index on its status), one short
transaction per scrape.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.outbound import OutboundMessage
from bot.deferred import DeferredMessage
from grid.notices import NoticeDelivery
from grid.outbox import OutboxDelivery
from grid.tickets import Ticket
from grid.workflow import OPEN_STATUSES, Status
from storage.base import utcnow
from storage.engine import unit_of_work

# Rows still queued, per queue: (model, the statuses that mean waiting or given up).
QUEUES: dict[str, tuple[type, tuple[str, ...]]] = {
    "outgoing": (OutboundMessage, ("pending", "failed")),  # chat messages to WeChat/WeCom (bot/channels/dispatch.py)
    "notice": (NoticeDelivery, ("pending", "sending", "failed")),  # benefit notices to groups (grid/notice_deliveries.py)
    "outbox": (OutboxDelivery, ("pending", "failed")),  # ticket events to other systems' webhooks (grid/delivery.py)
    "deferred": (DeferredMessage, ("held",)),  # messages waiting for Rasa to come back (bot/deferred.py)
}


class DatabaseGauges(Collector):
    """Tickets by state, overdue tickets and queue depths, counted when Prometheus scrapes (one short transaction)."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def collect(self) -> Iterator[Metric]:
        tickets = GaugeMetricFamily("gridbot_tickets", "Tickets by state (submitted, dispatched, …, closed).", labels=["state"])
        overdue = GaugeMetricFamily("gridbot_tickets_overdue", "Open tickets past their deadline (the 督办 list).")
        queues = GaugeMetricFamily(
            "gridbot_queue_depth",
            "Rows waiting in a queue or given up (status failed), by queue: outgoing chat messages, notice deliveries, "
            "webhook outbox, messages held for Rasa.",
            labels=["queue", "status"],
        )
        with unit_of_work(self._factory) as session:
            by_state = dict(session.execute(select(Ticket.status, func.count()).group_by(Ticket.status)).all())
            for state in Status:  # every state, 0 included, so a dashboard's series never vanish
                tickets.add_metric([state.value], by_state.get(state.value, 0))
            open_late = select(func.count()).where(Ticket.status_in(OPEN_STATUSES), Ticket.deadline_at < utcnow())
            overdue.add_metric([], session.scalar(open_late) or 0)
            for queue, (model, statuses) in QUEUES.items():
                counts = dict(
                    session.execute(
                        select(model.status, func.count()).where(model.status.in_(statuses)).group_by(model.status)  # type: ignore[attr-defined]
                    ).all()
                )
                for status in statuses:
                    queues.add_metric([queue, status], counts.get(status, 0))
        yield from (tickets, overdue, queues)


class _ProcessMetrics(Collector):
    """This process's counters and histogram (the default registry), beside the app's database gauges."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def registry_for(factory: sessionmaker[Session]) -> CollectorRegistry:
    """What one app's /metrics shows: its database's gauges and this process's counters."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProcessMetrics())
    registry.register(DatabaseGauges(factory))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
