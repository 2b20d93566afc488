"""The app side of a worker's own words (bot/worker_words.py): who is a worker, what is on their desk, the question
the bot asked them, and what to send on.

The router hands over every private message; for a resident this says None and the message goes to NLU as before
(a worker is known by `workers.id` on the channel `workers.channel` names, as the actions know them:
TicketService.actor_for). For a worker it reads the words against their desk and returns either the `/worker_…`
command Rasa gets — so a free-word 接单 or 办结 runs the same rules, actions and tracker as the typed command — or
the app's own reply when nothing changes: a question with numbered choices, an acknowledgement of progress. The
numbered question is remembered per conversation (Redis when configured, shared by all app processes) until
answered, or until the worker says something else.

"The last one notified" is derived from the ticket history, which records every event that sends the assignee a
notice (派单, 转派, 不满意重办, 催办, 到期提醒, 超期督办, 审核退回): the worker's open ticket with the newest such
event. The outbox and the channels' transcripts are per-platform; the history is the same everywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.commands import WorkerCommand
from bot.messages import IncomingMessage
from bot.normalise import quoted_text
from bot.texts import text as t
from bot.worker_words import AWAITING, IN_PROGRESS, Act, Desk, DeskTicket, Pending, Reading, understand
from grid.geography import Department, Worker
from grid.service import TicketService
from grid.tickets import TicketEvent
from grid.workflow import Role
from storage.engine import unit_of_work

log = logging.getLogger(__name__)

# History entries that come with a notice to the ticket's worker (bot/ticket_notices.py, grid/deadlines.py).
NOTIFYING_EVENTS = ("dispatch", "transfer", "reopen", "urge", "remind", "overdue", "reject")
_NAMES_TTL_SECONDS = 60.0  # colleagues' and departments' names, for 转给李强 / 报城管: they change rarely


@dataclass(frozen=True)
class WorkerTurn:
    """What a worker's message becomes: a command for Rasa, or the app's own reply (nothing changes)."""

    command: WorkerCommand | None = None
    reply: str | None = None


class PendingChoices(Protocol):
    async def get(self, conversation_id: str) -> Pending | None: ...
    async def put(self, conversation_id: str, pending: Pending, ttl_seconds: int) -> None: ...
    async def clear(self, conversation_id: str) -> None: ...


def _dump(pending: Pending) -> str:
    return json.dumps({"act": pending.act.value, "text": pending.text, "numbers": list(pending.numbers)}, ensure_ascii=False)


def _load(raw: str | bytes) -> Pending | None:
    try:
        data = json.loads(raw)
        return Pending(Act(data["act"]), str(data["text"]), tuple(str(n) for n in data["numbers"]))
    except (ValueError, KeyError, TypeError):
        return None


class MemoryPendingChoices:
    """One process's memory: enough for a single app (and for tests)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, float]] = {}

    async def get(self, conversation_id: str) -> Pending | None:
        entry = self._entries.get(conversation_id)
        if entry is None or entry[1] < time.monotonic():
            self._entries.pop(conversation_id, None)
            return None
        return _load(entry[0])

    async def put(self, conversation_id: str, pending: Pending, ttl_seconds: int) -> None:
        self._entries[conversation_id] = (_dump(pending), time.monotonic() + ttl_seconds)

    async def clear(self, conversation_id: str) -> None:
        self._entries.pop(conversation_id, None)


class RedisPendingChoices:
    """Shared by every app process of one installation; a dead Redis forgets the question (the worker can send the
    full number) rather than failing the message."""

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self._redis = client
        self._prefix = f"{namespace}:worker-choice:"

    async def get(self, conversation_id: str) -> Pending | None:
        try:
            raw = await self._redis.get(self._prefix + conversation_id)
        except aioredis.RedisError as exc:
            log.warning("redis unavailable, no pending worker choice for %s: %s", conversation_id, exc)
            return None
        return _load(raw) if raw else None

    async def put(self, conversation_id: str, pending: Pending, ttl_seconds: int) -> None:
        try:
            await self._redis.set(self._prefix + conversation_id, _dump(pending), ex=ttl_seconds)
        except aioredis.RedisError as exc:
            log.warning("redis unavailable, cannot remember the worker choice for %s: %s", conversation_id, exc)

    async def clear(self, conversation_id: str) -> None:
        try:
            await self._redis.delete(self._prefix + conversation_id)
        except aioredis.RedisError as exc:
            log.warning("redis unavailable, cannot clear the worker choice for %s: %s", conversation_id, exc)


def load_desk(session: Session, sender_id: str, channel: str) -> Desk | None:
    """The worker's desk, or None when the sender is no worker on this channel (a resident: NLU as before)."""
    service = TicketService(session)
    actor = service.actor_for(sender_id, channel)
    if actor.role not in (Role.WORKER, Role.LEAD):
        return None
    tickets = service.assigned_to(actor.id)
    last = None
    if tickets:
        newest = (
            select(TicketEvent.ticket_id, func.max(TicketEvent.id).label("newest"))
            .where(TicketEvent.ticket_id.in_([x.id for x in tickets]), TicketEvent.action.in_(NOTIFYING_EVENTS))
            .group_by(TicketEvent.ticket_id)
            .order_by(func.max(TicketEvent.id).desc())
            .limit(1)
        )
        row = session.execute(newest).first()
        last = next((x.number for x in tickets if row is not None and x.id == row.ticket_id), None)
    return Desk(
        tickets=tuple(DeskTicket(x.number, str(x.status), x.category, x.location, x.description) for x in tickets),
        last_notified=last,
    )


class WorkerDesk:
    """Reads a known worker's private words into a turn; see the module docstring."""

    def __init__(self, factory: sessionmaker[Session], pending: PendingChoices, bot_name: str, ttl_seconds: int) -> None:
        self._factory = factory
        self._pending = pending
        self._bot_name = bot_name
        self._ttl = ttl_seconds
        self._names: tuple[float, tuple[str, ...], tuple[str, ...]] | None = None

    async def read(self, message: IncomingMessage, text: str) -> WorkerTurn | None:
        """`text` is the message normalised (bot/normalise.py); None when the sender is not a worker."""
        desk = await asyncio.to_thread(self._desk, message.sender_id, message.channel)
        if desk is None:
            return None
        conv = message.conversation_id
        pending = await self._pending.get(conv)
        reading = understand(text, desk, quoted_text(message.text, self._bot_name), pending)
        asked = reading.pending()
        if asked is not None:
            await self._pending.put(conv, asked, self._ttl)
        elif pending is not None:
            await self._pending.clear(conv)  # answered, or the worker moved on: one question, asked once
        return turn_for(reading, desk)

    def _desk(self, sender_id: str, channel: str) -> Desk | None:
        with unit_of_work(self._factory) as session:
            desk = load_desk(session, sender_id, channel)
            if desk is None:
                return None
            workers, departments = self._known_names(session)
        return Desk(desk.tickets, desk.last_notified, workers, departments)

    def _known_names(self, session: Session) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if self._names is None or self._names[0] < time.monotonic():
            workers = tuple(session.scalars(select(Worker.name)))
            departments = tuple(session.scalars(select(Department.name)))
            self._names = (time.monotonic() + _NAMES_TTL_SECONDS, workers, departments)
        return self._names[1], self._names[2]


def turn_for(reading: Reading, desk: Desk) -> WorkerTurn:
    """A command for Rasa when the words change something or need an action's answer; the app's reply otherwise."""
    if reading.intent is not None:
        text = reading.text if reading.act is not Act.HELP else reading.text[:60]  # the words not understood, quoted back
        return WorkerTurn(command=WorkerCommand(reading.intent, reading.number, text))
    if reading.act is Act.NOTED:
        if reading.why == "cancelled":
            return WorkerTurn(reply=t("worker_words.cancelled"))
        if reading.number:
            return WorkerTurn(reply=t("worker_words.noted", number=reading.number))
        return WorkerTurn(reply=t("worker_words.noted_plain"))
    return WorkerTurn(reply=question(reading, desk))


def question(reading: Reading, desk: Desk) -> str:
    """The question an ASK puts: which ticket (numbered), which department, or why no ticket fits."""
    if reading.why == "no_such_number":
        return t("worker_words.no_such_number", short=reading.number or "")
    if reading.why == "which_department":
        return t("worker_words.which_department", departments="、".join(desk.departments) or "-")
    act = reading.why.removeprefix("which_").removeprefix("none_to_")
    act_name = t(f"worker_words.act_names.{act}")
    if not reading.choices:
        return t("worker_words.none_fits", act_name=act_name)
    offered = [desk.get(n) or DeskTicket(n, "") for n in reading.choices]
    options = "\n".join(
        t(
            "worker_words.option",
            index=i,
            number=x.number,
            category=x.category or "-",
            location=x.location or "-",
            description=x.description[:20],
        )
        for i, x in enumerate(offered, 1)
    )
    if len(offered) == 1:
        return t("worker_words.confirm", act_name=act_name, options=options)
    statuses = {x.status for x in offered}
    kind = ""
    if statuses <= IN_PROGRESS:
        kind = t("worker_words.kind_in_progress")
    elif statuses <= AWAITING:
        kind = t("worker_words.kind_waiting")
    return t("worker_words.which", count=len(offered), kind=kind, act_name=act_name, options=options)
