"""Outbox delivery on both databases, against a real HTTP receiver on 127.0.0.1: signed, once, in order per
ticket, nothing lost while the receiver is down, a ticket's later event held back behind an earlier one.

Other tests share the session database and its outbox, so each test uses a target of its own (deliveries are
per target) and asserts only about the tickets it created; `now` is passed explicitly instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot import outbox_job
from bot.embedded import free_port
from bot.runtime import Services
from bot.settings import Settings
from grid.delivery import (
    FAILED,
    MAX_ATTEMPTS,
    PENDING,
    SENT,
    DeliveryReport,
    WebhookTarget,
    deliver_due,
    plan_all,
    sign,
    verify_signature,
)
from grid.outbox import OutboxDelivery, OutboxMessage
from grid.service import Actor, TicketService
from grid.webhook_targets import TargetsError, parse_targets
from grid.workflow import Role
from storage.base import utcnow
from storage.engine import unit_of_work

WORKER2 = Actor("worker-2", Role.WORKER)


@dataclass
class Received:
    delivery: str
    event: str
    body: dict[str, Any]


@dataclass
class Receiver:
    """A webhook endpoint that checks every signature and records what it accepted (and what it was sent)."""

    secret: str
    port: int = field(default_factory=free_port)
    unavailable: bool = False  # answer 503 to everything, like a target under maintenance
    reject: set[int] = field(default_factory=set)  # message ids answered with 500
    received: list[Received] = field(default_factory=list)
    tried: list[int] = field(default_factory=list)  # message ids of every correctly signed request
    bad_signatures: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/gridbot"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signed = verify_signature(
                    receiver.secret,
                    self.headers.get("X-GridBot-Timestamp", ""),
                    body,
                    self.headers.get("X-GridBot-Signature"),
                    max_age_seconds=300,
                )
                with receiver._lock:
                    if not signed:
                        receiver.bad_signatures += 1
                        return self._answer(401)
                    document = json.loads(body)
                    receiver.tried.append(document["id"])
                    if receiver.unavailable:
                        return self._answer(503)
                    if document["id"] in receiver.reject:
                        return self._answer(500)
                    receiver.received.append(
                        Received(self.headers["X-GridBot-Delivery"], self.headers["X-GridBot-Event"], document)
                    )
                return self._answer(204)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def of(self, tickets: dict[int, list[int]]) -> dict[int, list[int]]:
        """Message ids received per ticket, in arrival order, for the given tickets only."""
        arrived: dict[int, list[int]] = {ticket: [] for ticket in tickets}
        for item in self.received:
            if item.body["ticket_id"] in arrived:
                arrived[item.body["ticket_id"]].append(item.body["id"])
        return arrived


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(secret=f"s-{uuid.uuid4().hex}")
    server.start()
    yield server
    server.stop()


def _target(receiver: Receiver) -> WebhookTarget:
    return WebhookTarget.model_validate({"name": f"t-{uuid.uuid4().hex[:10]}", "url": receiver.url, "secret": receiver.secret})


def _ticket_with_history(factory: sessionmaker[Session]) -> tuple[int, list[int]]:
    """A ticket filed, dispatched, accepted, urged and resolved; returns its id and its message ids in order."""
    reporter = f"r-{uuid.uuid4().hex[:6]}"
    with unit_of_work(factory) as session:
        ticket = (
            TicketService(session)
            .file_report(
                group_id="demo-grid-2",
                reporter_id=reporter,
                reporter_name="居民",
                description="路灯坏了",
                location=f"{uuid.uuid4().hex[:6]}号楼",
            )
            .ticket
        )
        ticket_id, number = ticket.id, ticket.number
    with unit_of_work(factory) as session:
        TicketService(session).accept(number, WORKER2)
    with unit_of_work(factory) as session:
        TicketService(session).urge(reporter_id=reporter, number=number)
    with unit_of_work(factory) as session:
        TicketService(session).resolve(number, WORKER2, "换了灯泡")
    with factory() as session:
        query = select(OutboxMessage.id).where(OutboxMessage.ticket_id == ticket_id).order_by(OutboxMessage.id)
        messages = list(session.scalars(query))
    assert len(messages) == 5  # submit, dispatch, accept, urge, resolve
    return ticket_id, messages


def _deliveries(factory: sessionmaker[Session], target: WebhookTarget, messages: list[int]) -> dict[int, OutboxDelivery]:
    with factory() as session:
        query = select(OutboxDelivery).where(OutboxDelivery.target == target.name, OutboxDelivery.message_id.in_(messages))
        return {delivery.message_id: delivery for delivery in session.scalars(query)}


def _round(factory: sessionmaker[Session], target: WebhookTarget, now: datetime | None = None, **options: int) -> DeliveryReport:
    """One job round, the way bot/outbox_job.py runs it: plan, then deliver what is due."""

    async def run() -> DeliveryReport:
        async with httpx.AsyncClient(timeout=10) as http:
            return await deliver_due(factory, [target], http, now=now, **options)

    plan_all(factory, [target])
    return asyncio.run(run())


def _all(tickets: dict[int, list[int]]) -> list[int]:
    return [message for messages in tickets.values() for message in messages]


def test_events_arrive_signed_once_and_in_order_per_ticket(session_factory: sessionmaker[Session], receiver: Receiver) -> None:
    tickets = dict(_ticket_with_history(session_factory) for _ in range(3))
    target = _target(receiver)
    report = _round(session_factory, target, batch_size=2)  # small batches: each ticket's queue advances over several
    assert report.delivered >= 15 and report.retrying == report.failed == 0 and report.pending == 0
    assert receiver.bad_signatures == 0
    assert receiver.of(tickets) == tickets
    deliveries = _deliveries(session_factory, target, _all(tickets))
    for item in receiver.received:
        if item.body["ticket_id"] in tickets:
            delivery = deliveries[item.body["id"]]
            assert item.delivery == str(delivery.id) and delivery.status == SENT and delivery.delivered_at is not None
            assert item.event == item.body["topic"] == item.body["payload"]["event"]
            assert set(item.body) == {"id", "topic", "ticket_id", "created_at", "payload"}
    assert [i.event for i in receiver.received if i.body["ticket_id"] == next(iter(tickets))] == [
        "submit",
        "dispatch",
        "accept",
        "urge",
        "resolve",
    ]
    again = _round(session_factory, target)
    assert again.delivered == 0 and not again.anything_happened and receiver.of(tickets) == tickets  # nothing twice


def test_two_senders_at_once_still_send_each_event_once(session_factory: sessionmaker[Session], receiver: Receiver) -> None:
    """Two deliverers (two app processes) racing over the same target: the lease keeps it once and in order."""
    tickets = dict(_ticket_with_history(session_factory) for _ in range(3))
    target = _target(receiver)
    plan_all(session_factory, [target])

    async def race() -> list[DeliveryReport]:
        async with httpx.AsyncClient(timeout=10) as first, httpx.AsyncClient(timeout=10) as second:
            return list(
                await asyncio.gather(
                    deliver_due(session_factory, [target], first, batch_size=3),
                    deliver_due(session_factory, [target], second, batch_size=3),
                )
            )

    reports = asyncio.run(race())
    assert sum(report.retrying + report.failed for report in reports) == 0
    assert receiver.of(tickets) == tickets
    ids = [item.delivery for item in receiver.received]
    assert len(ids) == len(set(ids))


def test_nothing_is_lost_while_the_receiver_is_down(session_factory: sessionmaker[Session]) -> None:
    receiver = Receiver(secret="down-then-up")  # not started yet: nothing listens on its port
    tickets = dict(_ticket_with_history(session_factory) for _ in range(3))
    target = _target(receiver)
    now = utcnow()

    refused = _round(session_factory, target, now=now)
    assert refused.delivered == 0 and refused.retrying == 1 and refused.pending >= 15  # one try, then it waits
    with session_factory() as session:
        query = select(OutboxDelivery.last_error).where(OutboxDelivery.target == target.name, OutboxDelivery.attempts > 0)
        assert [(error or "").split(":")[0] for error in session.scalars(query)] == ["ConnectError"]
    receiver.start()
    try:
        receiver.unavailable = True  # up, but answering 503 for a while
        for _ in range(4):
            now += timedelta(hours=1, minutes=10)  # past any backoff
            unavailable = _round(session_factory, target, now=now)
            assert unavailable.delivered == 0 and unavailable.retrying == 1
        assert receiver.received == [] and len(receiver.tried) == 4
        with session_factory() as session:
            query = select(OutboxDelivery).where(OutboxDelivery.target == target.name, OutboxDelivery.attempts > 0)
            tried = list(session.scalars(query))
        assert sum(d.attempts for d in tried) == 5 and all(d.status == PENDING and d.delivered_at is None for d in tried)
        assert any((d.last_error or "").startswith("HTTP 503") for d in tried)

        receiver.unavailable = False
        now += timedelta(hours=1, minutes=10)
        back = _round(session_factory, target, now=now)
        assert back.pending == 0 and back.retrying == back.failed == 0
        assert receiver.of(tickets) == tickets and receiver.bad_signatures == 0
        statuses = {d.status for d in _deliveries(session_factory, target, _all(tickets)).values()}
        assert statuses == {SENT}
    finally:
        receiver.stop()


def test_later_event_waits_while_an_earlier_one_is_pending(session_factory: sessionmaker[Session], receiver: Receiver) -> None:
    (stuck, stuck_messages), (other, other_messages) = (
        _ticket_with_history(session_factory),
        _ticket_with_history(session_factory),
    )
    target = _target(receiver)
    receiver.reject = {stuck_messages[1]}  # the receiver chokes on the stuck ticket's second event (dispatch)
    now = utcnow()

    first = _round(session_factory, target, now=now)
    assert first.retrying == 1 and first.failed == 0
    assert receiver.of({stuck: [], other: []}) == {stuck: stuck_messages[:1], other: other_messages}  # others proceed
    assert [m for m in receiver.tried if m in stuck_messages] == stuck_messages[:2]  # later ones were never tried
    deliveries = _deliveries(session_factory, target, stuck_messages)
    held = deliveries[stuck_messages[1]]
    assert held.status == PENDING and held.attempts == 1 and (held.last_error or "").startswith("HTTP 500")
    assert held.next_attempt_at > now
    assert all(deliveries[m].status == PENDING and deliveries[m].attempts == 0 for m in stuck_messages[2:])

    now += timedelta(seconds=1)  # before the retry is due: still nothing of the stuck ticket goes out
    assert _round(session_factory, target, now=now).delivered == 0
    assert [m for m in receiver.tried if m in stuck_messages] == stuck_messages[:2]

    receiver.reject.clear()
    now += timedelta(minutes=1)
    assert _round(session_factory, target, now=now).pending == 0
    assert receiver.of({stuck: [], other: []}) == {stuck: stuck_messages, other: other_messages}


def test_a_delivery_is_given_up_after_max_attempts_and_kept(session_factory: sessionmaker[Session], receiver: Receiver) -> None:
    ticket, messages = _ticket_with_history(session_factory)
    target = _target(receiver)
    receiver.reject = {messages[0]}
    now = utcnow()
    reports = []
    for _ in range(MAX_ATTEMPTS):
        reports.append(_round(session_factory, target, now=now))
        now += timedelta(hours=1, minutes=10)
    assert sum(r.retrying for r in reports) == MAX_ATTEMPTS - 1 and reports[-1].failed == 1
    given_up = _deliveries(session_factory, target, messages)[messages[0]]
    assert given_up.status == FAILED and given_up.attempts == MAX_ATTEMPTS and given_up.delivered_at is None
    assert (given_up.last_error or "").startswith("HTTP 500")
    # Failed is not pending: the ticket's later events are no longer held back by it.
    _round(session_factory, target, now=now)
    assert receiver.of({ticket: []}) == {ticket: messages[1:]}


def test_backoff_grows_from_five_seconds_to_an_hour(session_factory: sessionmaker[Session], receiver: Receiver) -> None:
    _, messages = _ticket_with_history(session_factory)
    target = _target(receiver)
    receiver.reject = {messages[0]}
    now = utcnow()
    waits = []
    for _ in range(12):
        _round(session_factory, target, now=now)
        due = _deliveries(session_factory, target, messages[:1])[messages[0]].next_attempt_at
        waits.append((due - now).total_seconds())
        now = due
    assert 4.5 <= waits[0] <= 5.5 and 9 <= waits[1] <= 11 and 18 <= waits[2] <= 22
    assert all(later > earlier for earlier, later in pairwise(waits[:10]))
    assert 3240 <= waits[-1] <= 3600


def test_signature_covers_timestamp_and_body() -> None:
    body = json.dumps({"id": 1, "topic": "submit"}).encode()
    header = sign("secret", "1700000000", body)
    assert header.startswith("sha256=") and verify_signature("secret", "1700000000", body, header)
    assert not verify_signature("other", "1700000000", body, header)
    assert not verify_signature("secret", "1700000001", body, header)
    assert not verify_signature("secret", "1700000000", body + b" ", header)
    assert not verify_signature("secret", "1700000000", body, header.removeprefix("sha256="))
    assert not verify_signature("secret", "1700000000", body, None)
    assert not verify_signature("secret", "1700000000", body, header, max_age_seconds=300)  # long ago: a replay


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not json", "Invalid JSON"),
        ('{"name": "city"}', "list"),
        ('[{"name": "city", "url": "http://x"}]', "0.secret"),
        ('[{"name": "city", "url": "not a url", "secret": "s"}]', "0.url"),
        ('[{"name": "city", "url": "http://x", "secret": "s", "secert": "t"}]', "0.secert"),
        ('[{"name": "a", "url": "http://x", "secret": "s"}, {"name": "a", "url": "http://y", "secret": "t"}]', "repeated: a"),
    ],
)
def test_bad_targets_setting_is_a_clear_error(raw: str, expected: str) -> None:
    with pytest.raises(TargetsError) as err:
        parse_targets(raw)
    assert "WEBHOOK_TARGETS" in str(err.value) and expected in str(err.value)


def test_targets_setting_is_read() -> None:
    assert parse_targets("") == [] and parse_targets("  ") == []
    (city,) = parse_targets('[{"name": " city ", "url": "https://city.example/hook", "secret": "s3"}]')
    assert city.name == "city" and str(city.url) == "https://city.example/hook"
    assert "s3" not in repr(city)  # the secret stays out of logs


def test_the_job_delivers_with_the_configured_targets(session_factory: sessionmaker[Session], receiver: Receiver) -> None:
    ticket, messages = _ticket_with_history(session_factory)
    name = f"job-{uuid.uuid4().hex[:8]}"
    targets = json.dumps([{"name": name, "url": receiver.url, "secret": receiver.secret}])
    services = cast(Services, SimpleNamespace(settings=Settings(webhook_targets=targets), session_factory=session_factory))

    async def two_rounds() -> None:
        await outbox_job.deliver_outbox(services)
        await outbox_job.deliver_outbox(services)  # same client, nothing left to send
        await outbox_job.aclose_http()

    asyncio.run(two_rounds())
    assert receiver.of({ticket: []}) == {ticket: messages}
    with session_factory() as session:
        sent = session.scalar(select(func.count()).where(OutboxDelivery.target == name, OutboxDelivery.status == SENT))
        total = session.scalar(select(func.count()).select_from(OutboxMessage))
    assert sent == total  # every message in the outbox, once, for the new target

    quiet = cast(Services, SimpleNamespace(settings=Settings(webhook_targets=""), session_factory=None))
    asyncio.run(outbox_job.deliver_outbox(quiet))  # no targets: returns without touching the database
    with pytest.raises(ValidationError, match="WEBHOOK_TARGETS"):  # a bad setting stops start-up, not delivery
        Settings(webhook_targets="[{")
