"""Sends the transactional outbox to the configured webhook targets: in order per ticket, signed, retried while down.

External systems learn about ticket changes only through this; so no message may be lost while a target is
down, a ticket's events must arrive in the order they happened, and a receiver must be able to tell that a
request really comes from GridBot. Delivery is at-least-once (a crash between the target's answer and our
commit sends the message again), so every request carries its delivery id for the receiver to de-duplicate.

Database work happens in short transactions of its own, never around an HTTP call: a slow or hanging target
must not hold locks that ticket changes wait for. A delivery being sent is *leased* (its next_attempt_at
pushed a little ahead) so a second deliverer, in another process, neither sends it again nor sends the
ticket's next event before it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
from sqlalchemy import CursorResult, Integer, String, exists, func, insert, literal, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from grid.outbox import OutboxDelivery, OutboxMessage
from grid.webhook_targets import WebhookTarget
from storage.base import utcnow
from storage.engine import unit_of_work

log = logging.getLogger(__name__)

PENDING = "pending"
# The status column is String(8): "delivered" would not fit on PostgreSQL, so a delivered message is "sent".
SENT = "sent"
FAILED = "failed"

MAX_ATTEMPTS = 20  # with the backoff below, about eleven hours of a target refusing before we give up
FIRST_RETRY = timedelta(seconds=5)
MAX_RETRY = timedelta(hours=1)
JITTER = 0.1  # ± this fraction of the delay, so deliveries that failed together do not retry in lock-step
# Longer than any HTTP call may take; only matters when a deliverer dies mid-send: then the message goes again.
LEASE = timedelta(minutes=2)
# Answers that say the target as a whole is unavailable: stop sending to it for this round instead of trying
# every ticket's next event against it.
TARGET_DOWN_STATUSES = frozenset({429, 502, 503, 504})
SIGNATURE_PREFIX = "sha256="
# Serialises planning across processes on PostgreSQL (there is no unique key on message × target to lean on).
_PLAN_LOCK_KEY = 0x6772_6964_626F_74  # "gridbot"


# --- signing -------------------------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-GridBot-Signature value: HMAC-SHA256 over "<timestamp>.<raw body>", so neither can be swapped."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes | str,
    header: str | None,
    *,
    max_age_seconds: float | None = None,
) -> bool:
    """What a receiver runs on X-GridBot-Timestamp, the raw body and X-GridBot-Signature.

    With `max_age_seconds`, a timestamp further than that from the receiver's clock is refused too, so a
    captured request cannot be replayed later.
    """
    if not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    if max_age_seconds is not None:
        try:
            if abs(time.time() - int(timestamp)) > max_age_seconds:
                return False
        except ValueError:
            return False
    raw = body.encode() if isinstance(body, str) else body
    return hmac.compare_digest(sign(secret, timestamp, raw), header)


def message_body(message: OutboxMessage) -> bytes:
    """The request body: the message id lets a receiver order and de-duplicate across targets' deliveries."""
    document: dict[str, Any] = {
        "id": message.id,
        "topic": message.topic,
        "ticket_id": message.ticket_id,
        "created_at": message.created_at.isoformat(),
        "payload": message.payload,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def backoff(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failure: 5 s, 10 s, 20 s … capped at an hour, with jitter."""
    base = FIRST_RETRY.total_seconds() * 2 ** min(max(attempts - 1, 0), 20)
    seconds = min(base, MAX_RETRY.total_seconds()) * random.uniform(1 - JITTER, 1 + JITTER)
    return timedelta(seconds=min(seconds, MAX_RETRY.total_seconds()))


# --- planning ------------------------------------------------------------------------------------


def plan(session: Session, targets: list[WebhookTarget]) -> int:
    """Create the missing pending deliveries of every message to every target; returns how many.

    Due from the message's creation, so a new target receives the whole history in order. Runs in the
    caller's transaction, as one INSERT … SELECT per target.
    """
    if not targets:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PLAN_LOCK_KEY})
    created = 0
    for target in targets:
        already = exists().where(OutboxDelivery.message_id == OutboxMessage.id, OutboxDelivery.target == target.name)
        missing = (
            select(
                OutboxMessage.id,
                literal(target.name, String),
                literal(PENDING, String),
                literal(0, Integer),
                OutboxMessage.created_at,
            )
            .where(~already)
            .order_by(OutboxMessage.id)
        )
        columns = ["message_id", "target", "status", "attempts", "next_attempt_at"]
        result = cast(CursorResult[Any], session.execute(insert(OutboxDelivery).from_select(columns, missing)))
        created += max(result.rowcount, 0)
    return created


def plan_all(factory: sessionmaker[Session], targets: list[WebhookTarget]) -> int:
    """`plan` in a transaction of its own."""
    with unit_of_work(factory) as session:
        return plan(session, targets)


# --- delivering ----------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    """What one round did, summed over the targets; `pending` is what is left waiting afterwards."""

    planned: int = 0
    delivered: int = 0
    retrying: int = 0  # failed this time, will be tried again
    failed: int = 0  # failed for the last time: status "failed", kept for someone to look at
    pending: int = 0

    @property
    def anything_happened(self) -> bool:
        return bool(self.planned or self.delivered or self.retrying or self.failed)


@dataclass(frozen=True)
class _Claimed:
    """A leased delivery with everything needed to send it, read before the transaction closed."""

    delivery_id: int
    attempts: int
    due_at: datetime
    topic: str
    body: bytes


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    error: str | None = None
    target_down: bool = False


def _claim(factory: sessionmaker[Session], target: str, now: datetime, limit: int) -> list[_Claimed]:
    """Lease the due head of each ticket's queue for `target`: its earliest pending delivery, if that is due.

    A ticket whose earliest pending delivery is not due (waiting for a retry, or leased by another sender)
    contributes nothing, so its later events wait behind it. Heads waiting longest go first, so a target
    that keeps failing one ticket's event does not starve the others.
    """
    pending = (OutboxDelivery.target == target, OutboxDelivery.status == PENDING)
    heads = (
        select(func.min(OutboxDelivery.message_id).label("message_id"))
        .join(OutboxMessage, OutboxMessage.id == OutboxDelivery.message_id)
        .where(*pending)
        .group_by(OutboxMessage.ticket_id)
        .subquery()
    )
    query = (
        select(OutboxDelivery, OutboxMessage)
        .join(OutboxMessage, OutboxMessage.id == OutboxDelivery.message_id)
        .join(heads, heads.c.message_id == OutboxDelivery.message_id)
        .where(*pending, OutboxDelivery.next_attempt_at <= now)
        .order_by(OutboxDelivery.next_attempt_at, OutboxDelivery.message_id)
        .limit(limit)
    )
    claimed: list[_Claimed] = []
    with unit_of_work(factory) as session:
        for delivery, message in session.execute(query).all():
            # Compare-and-set: another sender that read the same head before us finds it leased and skips it.
            lease = (
                update(OutboxDelivery)
                .where(OutboxDelivery.id == delivery.id, *pending, OutboxDelivery.next_attempt_at <= now)
                .values(next_attempt_at=now + LEASE)
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], session.execute(lease)).rowcount == 1:
                claimed.append(
                    _Claimed(delivery.id, delivery.attempts, delivery.next_attempt_at, message.topic, message_body(message))
                )
    return claimed


def _release(factory: sessionmaker[Session], unsent: list[_Claimed]) -> None:
    """Give back leases taken for this round but not used, so those deliveries stay due as they were."""
    if not unsent:
        return
    with unit_of_work(factory) as session:
        for item in unsent:
            session.execute(
                update(OutboxDelivery)
                .where(OutboxDelivery.id == item.delivery_id, OutboxDelivery.status == PENDING)
                .values(next_attempt_at=item.due_at)
                .execution_options(synchronize_session=False)
            )


def _record(factory: sessionmaker[Session], item: _Claimed, outcome: _Outcome, now: datetime) -> str:
    """Store one attempt's outcome; returns the delivery's new status."""
    attempts = item.attempts + 1
    values: dict[str, Any] = {"attempts": attempts}
    if outcome.ok:
        status = SENT
        values |= {"status": SENT, "delivered_at": now, "last_error": None}
    else:
        status = FAILED if attempts >= MAX_ATTEMPTS else PENDING
        values |= {"status": status, "last_error": (outcome.error or "unknown error")[:1000]}
        values["next_attempt_at"] = now if status == FAILED else now + backoff(attempts)
    with unit_of_work(factory) as session:
        session.execute(
            update(OutboxDelivery)
            .where(OutboxDelivery.id == item.delivery_id, OutboxDelivery.status == PENDING)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    return status


def _count_pending(factory: sessionmaker[Session], targets: list[str]) -> int:
    query = (
        select(func.count())
        .select_from(OutboxDelivery)
        .where(OutboxDelivery.target.in_(targets), OutboxDelivery.status == PENDING)
    )
    with factory() as session:
        return session.scalar(query) or 0


async def _send(http: httpx.AsyncClient, target: WebhookTarget, item: _Claimed) -> _Outcome:
    # Signed with the wall clock of this moment, not the round's `now`: receivers compare it with theirs.
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "GridBot-Outbox/1",
        "X-GridBot-Event": item.topic,
        "X-GridBot-Delivery": str(item.delivery_id),
        "X-GridBot-Timestamp": timestamp,
        "X-GridBot-Signature": sign(target.secret.get_secret_value(), timestamp, item.body),
    }
    try:
        response = await http.post(str(target.url), content=item.body, headers=headers)
    except httpx.HTTPError as exc:
        return _Outcome(False, f"{type(exc).__name__}: {exc}", target_down=True)
    if response.is_success:
        return _Outcome(True)
    error = f"HTTP {response.status_code}: {response.text[:300]}"
    return _Outcome(False, error, target_down=response.status_code in TARGET_DOWN_STATUSES)


async def _deliver_target(
    factory: sessionmaker[Session],
    target: WebhookTarget,
    http: httpx.AsyncClient,
    now: datetime,
    report: DeliveryReport,
    batch_size: int,
    max_sends: int,
) -> None:
    """Send the target's due heads batch after batch; a delivered event lets the ticket's next one through."""
    sends = 0
    while sends < max_sends:
        batch = await asyncio.to_thread(_claim, factory, target.name, now, min(batch_size, max_sends - sends))
        if not batch:
            return
        for index, item in enumerate(batch):
            sends += 1
            outcome = await _send(http, target, item)
            status = await asyncio.to_thread(_record, factory, item, outcome, now)
            if outcome.ok:
                report.delivered += 1
            elif status == FAILED:
                report.failed += 1
                log.warning("outbox delivery %d to %s given up: %s", item.delivery_id, target.name, outcome.error)
            else:
                report.retrying += 1
                log.debug("outbox delivery %d to %s will be retried: %s", item.delivery_id, target.name, outcome.error)
            if outcome.target_down:
                await asyncio.to_thread(_release, factory, batch[index + 1 :])
                log.info("outbox target %s unavailable (%s); trying again next round", target.name, outcome.error)
                return


async def deliver_due(
    factory: sessionmaker[Session],
    targets: list[WebhookTarget],
    http: httpx.AsyncClient,
    now: datetime | None = None,
    *,
    batch_size: int = 50,
    max_sends: int = 1000,
) -> DeliveryReport:
    """One round: send every due delivery of every target, in order per ticket; targets are served side by side.

    `now` is the round's clock for due times and backoff (tests pass it to move time on); `max_sends` bounds
    one target's share of a round, so a backlog after an outage drains over several rounds.
    """
    now = now or utcnow()
    report = DeliveryReport()
    results = await asyncio.gather(
        *(_deliver_target(factory, target, http, now, report, batch_size, max_sends) for target in targets),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    if targets:
        report.pending = await asyncio.to_thread(_count_pending, factory, [target.name for target in targets])
    return report
