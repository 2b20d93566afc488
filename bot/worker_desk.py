"""The app side of a worker's own words (bot/worker_words.py): who is a worker, what is on their desk, the question
the bot asked them, and what to send on.

The router hands over every private message; for a resident this says None and the message goes to NLU as before
(a worker is known by `workers.id` on the channel `workers.channel` names, as the actions know them:
TicketService.actor_for). For a worker it reads the words against their desk and returns either the `/worker_…`
command Rasa gets — so a free-word 接单 or 办结 runs the same rules, actions and tracker as the typed command — or
the app's own reply when nothing changes: a question with numbered choices, an acknowledgement of progress. The
numbered question is remembered per conversation (Redis when configured, shared by all app processes) until
answered, or until the worker says something else.

It also carries out what the words ask of the app itself: a picture or a dictated note kept on the ticket it belongs
to, or the question which (bot/worker_evidence.py; pictures sent while any question is open wait for its answer and
follow the pick), the briefing, and the morning digest turned on or off (bot/worker_day.py).

"The last one notified" is derived from the ticket history, which records every event that sends the assignee a
notice (派单, 转派, 不满意重办, 催办, 到期提醒, 超期督办, 审核退回): the worker's open ticket with the newest such
event. The outbox and the channels' transcripts are per-platform; the history is the same everywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import time as clock_time
from datetime import timedelta
from typing import Protocol

import redis.asyncio as aioredis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.commands import WorkerCommand, parse_merge
from bot.messages import IncomingMessage, MediaKind, OutgoingMessage, TargetType
from bot.normalise import quoted_text
from bot.texts import text as t
from bot.ticket_merge import merge_by_worker
from bot.worker_day import briefing_text, set_morning_digest
from bot.worker_evidence import Attached, Candidates, attach, candidates
from bot.worker_words import AWAITING, IN_PROGRESS, Act, Desk, DeskTicket, Pending, Reading, understand
from grid.geography import Department, Worker
from grid.service import TicketService
from grid.tickets import TicketEvent
from grid.workflow import Role
from storage.base import utcnow
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
    notices: tuple[OutgoingMessage, ...] = ()  # besides the reply, to others (a resident told of the worker's photos…)


class PendingChoices(Protocol):
    async def get(self, conversation_id: str) -> Pending | None: ...
    async def put(self, conversation_id: str, pending: Pending, ttl_seconds: int) -> None: ...
    async def clear(self, conversation_id: str) -> None: ...

    async def add_photos(self, conversation_id: str, photos: tuple[str, ...], ttl_seconds: int) -> Pending | None:
        """Append pictures to the open question in one step, so pictures sent at once (their callbacks run
        concurrently, maybe in different processes) all stay; the question as it now is, None when none is open."""
        ...

    async def take(self, conversation_id: str) -> Pending | None:
        """Remove the open question and return it as it was at that moment, pictures added until then included."""
        ...


def _dump(pending: Pending) -> str:
    data = {"act": pending.act.value, "text": pending.text, "numbers": list(pending.numbers), "photos": list(pending.photos)}
    return json.dumps(data, ensure_ascii=False)


def _load(raw: str | bytes) -> Pending | None:
    try:
        data = json.loads(raw)
        photos = tuple(str(p) for p in data.get("photos") or ())
        return Pending(Act(data["act"]), str(data["text"]), tuple(str(n) for n in data["numbers"]), photos)
    except (ValueError, KeyError, TypeError, AttributeError):
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

    async def add_photos(self, conversation_id: str, photos: tuple[str, ...], ttl_seconds: int) -> Pending | None:
        pending = await self.get(conversation_id)  # no await between reading and writing: one step in one process
        if pending is None:
            return None
        grown = replace(pending, photos=pending.photos + photos)
        await self.put(conversation_id, grown, ttl_seconds)
        return grown

    async def take(self, conversation_id: str) -> Pending | None:
        pending = await self.get(conversation_id)
        await self.clear(conversation_id)
        return pending


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

    async def add_photos(self, conversation_id: str, photos: tuple[str, ...], ttl_seconds: int) -> Pending | None:
        """Optimistic: WATCH the question, write it back with the pictures in MULTI, and read again when another
        process changed it in between (its pictures are then in what is read)."""
        key = self._prefix + conversation_id
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(key)
                        raw = await pipe.get(key)
                        pending = _load(raw) if raw else None
                        if pending is None:
                            await pipe.unwatch()
                            return None
                        grown = replace(pending, photos=pending.photos + photos)
                        pipe.multi()
                        pipe.set(key, _dump(grown), ex=ttl_seconds)
                        await pipe.execute()
                        return grown
                    except aioredis.WatchError:
                        continue
        except aioredis.RedisError as exc:
            log.warning("redis unavailable, no pending worker choice for %s: %s", conversation_id, exc)
            return None

    async def take(self, conversation_id: str) -> Pending | None:
        try:
            raw = await self._redis.getdel(self._prefix + conversation_id)
        except aioredis.RedisError as exc:
            log.warning("redis unavailable, cannot clear the worker choice for %s: %s", conversation_id, exc)
            return None
        return _load(raw) if raw else None


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

    def __init__(
        self,
        factory: sessionmaker[Session],
        pending: PendingChoices,
        bot_name: str,
        ttl_seconds: int,
        evidence_window: timedelta = timedelta(minutes=30),
        morning_at: clock_time | None = clock_time(8, 0),
    ) -> None:
        self._factory = factory
        self._pending = pending
        self._bot_name = bot_name
        self._ttl = ttl_seconds
        self._evidence_window = evidence_window  # bot/worker_evidence.py: "right after" accepting or resolving
        self._morning_at = morning_at  # when the morning digest goes out (None: never), for 开启早报's answer
        self._names: tuple[float, tuple[str, ...], tuple[str, ...]] | None = None

    async def read(self, message: IncomingMessage, text: str) -> WorkerTurn | None:
        """`text` is the message normalised (bot/normalise.py); None when the sender is not a worker."""
        desk = await asyncio.to_thread(self._desk, message.sender_id, message.channel)
        if desk is None:
            return None
        conv = message.conversation_id
        merging = parse_merge(text)
        if merging is not None:  # 合并 GD…新 GD…旧: carried out here, no Rasa intent (bot/ticket_merge.py)
            dropped = _photos_not_kept(await self._pending.take(conv), message.sender_id)
            reply, notices = await asyncio.to_thread(merge_by_worker, self._factory, message.sender_id, message.channel, merging)
            return WorkerTurn(reply=reply, notices=(*notices, *dropped))
        pending = await self._pending.get(conv)
        reading = understand(text, desk, quoted_text(message.text, self._bot_name), pending)
        if reading.act is Act.HELP and reading.text and pending is None and _is_voice(message):
            # A voice note's words that are no command (补充一下 阀门是新换的): a note on the ticket just handled.
            noted = await self.evidence(message, note=text, quiet_when_none=True)
            if noted is not None:
                return noted
        asked = reading.pending()
        if pending is not None:
            # Answered, or the worker moved on: one question, asked once. Taken in one step, with the pictures
            # added up to now (they may have arrived since it was read above).
            pending = await self._pending.take(conv) or pending
        if asked is not None:
            if pending is not None and pending.photos:  # a question back: the pictures wait for its answer instead
                asked = replace(asked, photos=pending.photos + asked.photos)
            await self._pending.put(conv, asked, self._ttl)
        picked = (
            pending
            if pending is not None and reading.number in pending.numbers and reading.act in (pending.act, *_WORKING_ON)
            else None
        )
        if picked is not None and (picked.photos or picked.act is Act.EVIDENCE):
            # The pictures sent while the question was open go to the ticket picked (or named instead: 0123修好了),
            # before its act runs, so a 办结's rating request counts them.
            assert reading.number is not None
            note = picked.text if picked.act is Act.EVIDENCE else ""
            attached = await asyncio.to_thread(self._attach, reading.number, message.sender_id, picked.photos, note)
            if reading.act is Act.EVIDENCE:
                return _attached_turn(attached, reading.number, picked.photos, note)
        dropped = _photos_not_kept(pending if picked is None and asked is None else None, message.sender_id)
        if reading.act in (Act.BRIEFING, Act.MORNING_ON, Act.MORNING_OFF):
            return WorkerTurn(reply=await asyncio.to_thread(self._day, reading.act, message.sender_id), notices=dropped)
        turn = turn_for(reading, desk)
        return replace(turn, notices=turn.notices + dropped)

    async def evidence(self, message: IncomingMessage, note: str = "", quiet_when_none: bool = False) -> WorkerTurn | None:
        """A worker's picture (or a voice note's `note`) in private chat, kept on the ticket it belongs to, or the
        question which one (bot/worker_evidence.py). None when the sender is no worker (a resident's picture:
        bot/photos.py), and with `quiet_when_none` when no ticket fits (the words are then answered as words)."""
        found = await asyncio.to_thread(self._candidates, message.sender_id, message.channel)
        if found is None:
            return None
        photos = tuple(m.url for m in message.media if m.kind is MediaKind.IMAGE and m.url)
        if not photos and not note:  # a voice note nobody transcribed, a video, a file: the worker's own request
            return WorkerTurn(reply=t("worker_evidence.please_type"))
        conv = message.conversation_id
        # A question is open: the pictures wait for its answer, appended in one step (three sent at once all stay).
        waiting = await self._pending.add_photos(conv, photos, self._ttl) if photos else None
        if waiting is not None:
            return WorkerTurn(reply=t("worker_evidence.more_pending", count=len(waiting.photos)))
        if found.sure:
            number = found.tickets[0].number
            attached = await asyncio.to_thread(self._attach, number, message.sender_id, photos, note)
            return _attached_turn(attached, number, photos, note)
        if not found.tickets:
            return None if quiet_when_none else WorkerTurn(reply=t("worker_evidence.no_ticket"))
        await self._pending.put(conv, Pending(Act.EVIDENCE, note, tuple(x.number for x in found.tickets), photos), self._ttl)
        what = t("worker_evidence.what_photo" if photos else "worker_evidence.what_note")
        return WorkerTurn(reply=t("worker_evidence.which", what=what, options=options_text(found.tickets)))

    def _candidates(self, sender_id: str, channel: str) -> Candidates | None:
        with unit_of_work(self._factory) as session:
            actor = TicketService(session).actor_for(sender_id, channel)
            if actor.role not in (Role.WORKER, Role.LEAD):
                return None
            return candidates(session, actor.id, utcnow(), self._evidence_window)

    def _attach(self, number: str, worker_id: str, photos: tuple[str, ...], note: str) -> Attached | None:
        with unit_of_work(self._factory) as session:
            return attach(session, number, worker_id, photos, note)

    def _day(self, act: Act, worker_id: str) -> str:
        """简报 (the briefing of their community or grid), 开启早报 / 关闭早报 (the morning digest, bot/worker_day.py)."""
        with unit_of_work(self._factory) as session:
            if act is Act.BRIEFING:
                worker = session.get(Worker, worker_id)
                assert worker is not None  # the desk was just loaded for this worker
                return briefing_text(session, worker, utcnow())
            return set_morning_digest(session, worker_id, act is Act.MORNING_ON, utcnow(), self._morning_at)

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


# Acts on a ticket that pictures waiting for a pick may follow when the worker names one of the offered tickets.
_WORKING_ON = (Act.ACCEPT, Act.RESOLVE, Act.NOTED)


def _is_voice(message: IncomingMessage) -> bool:
    """A voice note the platform transcribed (WeCom's Recognition): its words arrive as the text."""
    return any(m.kind is MediaKind.VOICE for m in message.media)


def _photos_not_kept(pending: Pending | None, worker_id: str) -> tuple[OutgoingMessage, ...]:
    """The worker moved on without naming the ticket the pictures of a closed question were for: they are told,
    never dropped silently."""
    if pending is None or not pending.photos:
        return ()
    told = t("worker_evidence.photos_not_kept", count=len(pending.photos))
    return (OutgoingMessage(TargetType.CONTACT, worker_id, told),)


def _attached_turn(attached: Attached | None, number: str, photos: tuple[str, ...], note: str) -> WorkerTurn:
    if attached is None:
        return WorkerTurn(reply=t("worker_evidence.not_yours", number=number))
    replies = []
    if photos:
        replies.append(t("worker_evidence.photo_attached", number=attached.number, count=attached.photos))
    if note:
        replies.append(t("worker_evidence.note_attached", number=attached.number, note=note))
    return WorkerTurn(reply="\n".join(replies), notices=attached.notices)


def options_text(tickets: tuple[DeskTicket, ...] | list[DeskTicket]) -> str:
    """The numbered choices of a question: 1. GD… 类别｜地点｜描述."""
    return "\n".join(
        t(
            "worker_words.option",
            index=i,
            number=x.number,
            category=x.category or "-",
            location=x.location or "-",
            description=x.description[:20],
        )
        for i, x in enumerate(tickets, 1)
    )


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
    options = options_text(offered)
    if len(offered) == 1:
        return t("worker_words.confirm", act_name=act_name, options=options)
    statuses = {x.status for x in offered}
    kind = ""
    if statuses <= IN_PROGRESS:
        kind = t("worker_words.kind_in_progress")
    elif statuses <= AWAITING:
        kind = t("worker_words.kind_waiting")
    return t("worker_words.which", count=len(offered), kind=kind, act_name=act_name, options=options)
