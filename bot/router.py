"""The message router: decides whether the bot speaks, sends the turn through Rasa, collects what to send.

Like rasa-sdk's CollectingDispatcher, it only collects: it returns every outgoing message of the turn
(replies in the group, private messages to workers) and the channel delivers them.

In a group the bot speaks when @-mentioned, when a trigger prefix starts the message, when the message
is the reply it is waiting for (a location, a rating), or, outside the group's quiet hours, when NLU is
confident the message is a request, the open-set gate scores it a grid matter, and answering surely helps
(`speaks_unasked`; the turn carries `addressed: false`, so actions with nothing sure to say stay silent).
A life-safety emergency is the one exception to both the place and the quiet hours: when the emergency recogniser
hears one AND NLU and the gate agree the message is a report (`emergency_report`), the bot answers unasked, at any
hour, with the number to call and "where?" (or the red ticket when the place is there). The recogniser alone never
makes the bot speak: on real chatter it misfires (空气很甜 → 燃气泄漏).
Everything else is chatter and gets silence: in a group, silence beats a wrong reply.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.action_payloads import InvalidActionPayload, deliveries
from bot.choices import parse_choice
from bot.commands import parse_command
from bot.deferred import DeferredStore
from bot.expectations import Awaiting, Expectations
from bot.group_settings import GroupPolicies, GroupPolicy
from bot.messages import IncomingMessage, Mention, OutgoingMessage, TargetType, conversation_id
from bot.metrics import MESSAGES_IN, timed_turn
from bot.normalise import normalise, quoted_text
from bot.rasa_client import RasaClient, RasaUnavailable
from bot.settings import Settings
from bot.texts import text as t
from bot.worker_desk import WorkerDesk
from grid.clock import LOCAL_TZ
from grid.emergencies import EmergencyTriage

log = logging.getLogger(__name__)


def _local_now() -> datetime:
    return datetime.now(LOCAL_TZ)


# Unasked, these would tell a person on NLU's guess (the worker, the community lead): only when addressed.
PINGS_A_PERSON = frozenset({"ask_human", "complain_service"})
# The intent NLU must give an unasked emergency, besides the recogniser's word and the gate's (`emergency_report`).
REPORT_INTENT = "report_issue"


def speaks_unasked(intent: str, parse_data: dict[str, Any]) -> bool:
    """Unasked, the bot speaks only where it surely helps: a problem report must say where (else the form would ask
    a question nobody put to it), and nothing that would notify a person. Answers, statuses and notices are judged
    by the action itself (actions/context.Speaker.addressed)."""
    if intent in PINGS_A_PERSON:
        return False
    if intent == "report_issue":
        return any(e.get("entity") == "location" for e in parse_data.get("entities") or [])
    return True


class MessageRouter:
    def __init__(
        self,
        settings: Settings,
        rasa: RasaClient,
        expectations: Expectations,
        deferred: DeferredStore,
        policies: GroupPolicies,
        clock: Callable[[], datetime] = _local_now,
        state_store_up: Callable[[], Awaitable[bool]] | None = None,
        workers: WorkerDesk | None = None,
        emergencies: EmergencyTriage | None = None,
    ) -> None:
        self.settings = settings
        self.rasa = rasa
        self.expectations = expectations
        self.deferred = deferred
        self.policies = policies
        self.clock = clock
        self._state_store_up = state_store_up
        self.workers = workers  # reads a known worker's own words (None: exact commands only)
        # One replay at a time in this process: the periodic job and the Rasa supervisor's "Rasa is back" may start
        # one together, and without Redis (the embedded default) nothing else keeps them from answering twice.
        self._replaying = asyncio.Lock()
        self.emergencies = emergencies  # hears an unasked emergency (None: unasked emergencies wait for an @)

    async def handle(self, message: IncomingMessage) -> list[OutgoingMessage]:
        """Route one message; if Rasa is down, hold it for retry and tell an addressing resident to wait (timed and
        counted by outcome for /metrics)."""
        with timed_turn(message.channel):
            try:
                outgoing = await self._route(message)
            except RasaUnavailable as exc:
                row_id = await asyncio.to_thread(self.deferred.hold, message, str(exc))
                log.warning("rasa unavailable, message held as deferred #%s: %s", row_id, exc)
                MESSAGES_IN.labels(message.channel, "held").inc()
                if message.is_private or message.mentions_bot or await self._prefixed(message) is not None:
                    return [self._reply(message, t("router.rasa_down"))]
                return []
        MESSAGES_IN.labels(message.channel, "answered" if outgoing else "silent").inc()
        return outgoing

    async def worker_media(self, message: IncomingMessage) -> list[OutgoingMessage] | None:
        """A picture (or voice note, file) a worker sends privately, with no words: evidence for their ticket
        (bot/worker_evidence.py). None for anyone else (a resident's picture: bot/photos.py) and for words."""
        if self.workers is None or not message.is_private or not message.media or message.text.strip():
            return None
        turn = await self.workers.evidence(message)
        if turn is None or turn.reply is None:
            return None
        return [self._reply(message, turn.reply), *turn.notices]

    async def retry_deferred(self) -> list[OutgoingMessage]:
        """Replay held messages in arrival order; stops at the first failure so order is kept."""
        outgoing: list[OutgoingMessage] = []
        async with self._replaying:
            for row_id, message in await asyncio.to_thread(self.deferred.held):
                try:
                    outgoing.extend(await self._route(message))
                except RasaUnavailable as exc:
                    await asyncio.to_thread(self.deferred.finish, row_id, str(exc))
                    break
                await asyncio.to_thread(self.deferred.finish, row_id)
        return outgoing

    async def _policy(self, group_id: str) -> GroupPolicy:
        """Read in a thread only when the cache has to go to the database (once per group per interval)."""
        return self.policies.cached(group_id) or await asyncio.to_thread(self.policies.for_group, group_id)

    async def _prefixed(self, message: IncomingMessage) -> str | None:
        """The text after a trigger prefix of this group, or None when no prefix starts it."""
        if message.group_id is None:
            return None
        return (await self._policy(message.group_id)).strip_prefix(normalise(message.text, self.settings.bot_name))

    async def _route(self, message: IncomingMessage) -> list[OutgoingMessage]:
        text = normalise(message.text, self.settings.bot_name)
        if not text:
            return []  # only mentions, emoji or a quote: nothing to understand
        conv = message.conversation_id
        addressed = True
        parse_data: dict[str, Any] | None = None  # the decision's NLU result, reused by the turn (one parse)
        if message.is_private:
            command = parse_command(text)
            # A known worker's words (收到, 0123修好了, typed commands too) are read against their desk: a /worker_…
            # command, or the app's own question back; a resident's private message goes on to NLU as before.
            worker = await self.workers.read(message, text) if self.workers is not None else None
            if worker is not None and worker.reply is not None:
                return [self._reply(message, worker.reply), *worker.notices]
            told = worker.notices if worker is not None else ()  # e.g. pictures not kept when the worker moved on
            command = worker.command if worker is not None else command
            picked = None if command else await self._answer_to_offer(conv, text, await self.expectations.awaiting(conv))
            rasa_text = command.as_rasa_message() if command else picked or text
        else:
            told = ()
            assert message.group_id is not None
            policy = await self._policy(message.group_id)
            stripped = policy.strip_prefix(text)
            rasa_text = stripped or text
            addressed = message.mentions_bot or stripped is not None
            awaiting = await self.expectations.awaiting(conv)
            if awaiting is Awaiting.CHOICE and (addressed or parse_choice(rasa_text) is not None):
                # A pick needs no @ (the bot asked for it), like a rating; an addressed message that is none ends the offer.
                rasa_text = await self._answer_to_offer(conv, rasa_text, awaiting) or rasa_text
                addressed, awaiting = True, None
            if not addressed:
                parse_data = await self.unaddressed_parse(rasa_text, awaiting, policy)
                if parse_data is None:
                    return []
                if awaiting is not None:
                    await self.expectations.clear(conv)  # an expectation lets one reply through
                    # The answer to the bot's own question is addressed; a confident request that merely came
                    # while something was awaited stays as careful as any unasked message.
                    addressed = self.answers_awaited(parse_data, awaiting)
        metadata = {
            "addressed": addressed,
            "channel": message.channel,
            "group_id": message.group_id,
            "grid_code": message.grid_code,
            "sender_id": message.sender_id,
            "sender_name": message.sender_name,
            "message_id": message.message_id,
            # What the message quotes (normalise drops it from the text): context for the question (knowledge/followups.py)
            "quoted": quoted_text(message.text, self.settings.bot_name),
        }
        responses = await self.rasa.send(conv, rasa_text, metadata, parse_data)
        if not responses and self._state_store_up is not None and not await self._state_store_up():
            # Rasa keeps its trackers and locks in this Redis (the deployment shares one). With it down, Rasa
            # fails to lock the conversation and still answers 200 with nothing: the message would vanish.
            # Treat it as Rasa being unavailable: hold the message and ask the resident to wait.
            raise RasaUnavailable("Rasa answered nothing and Redis (its tracker and lock store) is unreachable")
        return [*await self._collect(message, responses), *told]

    async def _answer_to_offer(self, conv: str, text: str, awaiting: Awaiting | None) -> str | None:
        """`/pick_suggestion{"choice": n}` when the bot offered this person entries ("您想问的是…", Awaiting.CHOICE)
        and the text is a pick (bot/choices.py), like worker commands a message NLU never has to guess; else None.
        Called for a message the bot reads, it ends the offer either way: a pick uses it up, and anything else means
        the resident moved on (a "1" an hour later is not a pick from a list long scrolled away)."""
        if awaiting is not Awaiting.CHOICE:
            return None
        await self.expectations.clear(conv)
        choice = parse_choice(text)
        return None if choice is None else f"/pick_suggestion{json.dumps({'choice': choice})}"

    async def unaddressed_parse(self, text: str, awaiting: Awaiting | None, policy: GroupPolicy) -> dict[str, Any] | None:
        """The NLU result of an unaddressed group message the bot should answer; None means stay silent.

        Answered: the reply the bot waits for (unless chatter), a confident request outside quiet hours, or, at any
        hour, an emergency report (`emergency_report`). In quiet hours with nothing awaited, silence needs no NLU
        unless the recogniser hears an emergency: it is cheaper than a parse, and most night chatter stops there.
        """
        quiet = policy.is_quiet(self.clock())
        if awaiting is None and quiet:
            if not await self.hears_emergency(text):
                return None
            parse_data = await self.rasa.parse(text)
            return parse_data if self.emergency_report(parse_data, policy) else None
        parse_data = await self.rasa.parse(text)
        if self.answers_unaddressed(parse_data, awaiting, policy, quiet=quiet):
            return parse_data
        if self.emergency_report(parse_data, policy) and await self.hears_emergency(text):
            return parse_data
        return None

    async def hears_emergency(self, text: str) -> bool:
        """The emergency recogniser's word on an unasked message (encoding runs in a thread: it is CPU work)."""
        if self.emergencies is None:
            return False
        return await asyncio.to_thread(self.emergencies.recognise, text) is not None

    def emergency_report(self, parse_data: dict[str, Any], policy: GroupPolicy) -> bool:
        """NLU's and the gate's half of an unasked emergency: a confident report that is a grid matter. Without a
        place too (the form asks for it after the number to call), and in quiet hours: a person may be in danger."""
        intent = parse_data.get("intent") or {}
        return (
            intent.get("name") == REPORT_INTENT
            and intent.get("confidence", 0.0) >= policy.request_confidence
            and self.is_grid_matter(parse_data)
        )

    def answers_unaddressed(
        self, parse_data: dict[str, Any], awaiting: Awaiting | None, policy: GroupPolicy, *, quiet: bool = False
    ) -> bool:
        """The decision itself, on a parse already made (bench/nlu_real.py scores real text with it)."""
        intent = parse_data.get("intent") or {}
        name, confidence = intent.get("name"), intent.get("confidence", 0.0)
        if awaiting is Awaiting.RATING:
            return name == "rate_service"
        if awaiting is Awaiting.FORM:
            return name not in self.settings.chatter_intents
        if awaiting is Awaiting.FEEDBACK and name == "answer_unhelpful":
            return True  # "没用" right after an answer; anything else is judged like any other message
        return (
            not quiet
            and name in self.settings.request_intents
            and confidence >= policy.request_confidence
            and self.is_grid_matter(parse_data)
            and speaks_unasked(name, parse_data)
        )

    @staticmethod
    def answers_awaited(parse_data: dict[str, Any], awaiting: Awaiting) -> bool:
        """Whether the message is the reply the bot waits for (not merely a message that came meanwhile)."""
        name = (parse_data.get("intent") or {}).get("name")
        if awaiting is Awaiting.RATING:
            return name == "rate_service"
        if awaiting is Awaiting.FEEDBACK:
            return name == "answer_unhelpful"
        return awaiting is Awaiting.FORM

    def is_grid_matter(self, parse_data: dict[str, Any]) -> bool:
        """The open-set gate's word (rasa_components/grid_gate.py): DIET puts everything on some intent, so a
        confident intent alone spoke for recipes and train times. A model trained without the gate has no score:
        the intent decides alone, as before."""
        score = (parse_data.get("grid_matter") or {}).get("score")
        return score is None or float(score) >= self.settings.grid_matter_threshold

    async def _collect(self, message: IncomingMessage, responses: list[dict[str, Any]]) -> list[OutgoingMessage]:
        outgoing: list[OutgoingMessage] = []
        asked: int | None = None  # the index of the latest reply to the speaker
        for response in responses:
            if response.get("text"):
                asked = len(outgoing)
                outgoing.append(self._reply(message, response["text"]))
            custom = response.get("custom") or {}
            if custom.get("expect") in ("form", "choice") and asked is not None:
                # The question just said (in this response or the one before) waits for an answer without an @.
                outgoing[asked] = replace(outgoing[asked], awaits_reply=True)
            if custom.get("expect") == "feedback" and not message.is_private:
                await self._expect_feedback(message.conversation_id)
            if custom.get("expect") == "form" and not message.is_private:
                # A form asked for a slot: its answer will come unaddressed (no tracker round trip to learn this).
                await self.expectations.expect(message.conversation_id, Awaiting.FORM, self.settings.expect_reply_seconds)
            if custom.get("expect") == "choice":
                # "您想问的是…" listed entries: the next "2" or "都不是" is a pick, in a group (unaddressed) or privately.
                await self.expectations.expect(message.conversation_id, Awaiting.CHOICE, self.settings.expect_reply_seconds)
            try:
                outgoing.extend(deliveries(custom))  # checked against the contract the actions built it with
            except InvalidActionPayload as error:
                # An action's bug: the ticket is filed and the resident's reply stands; only this item is dropped,
                # loudly, rather than the whole turn's replies.
                log.error("dropped a deliver payload of %s: %s", message.conversation_id, error)
        await self.expect_ratings(message.channel, outgoing)
        return outgoing

    async def _expect_feedback(self, conv: str) -> None:
        """Listen for "没用" after an answer, unless the bot already waits for something else (a rating)."""
        if await self.expectations.awaiting(conv) is None:
            await self.expectations.expect(conv, Awaiting.FEEDBACK, self.settings.expect_feedback_seconds)

    async def expect_ratings(self, channel: str, outgoing: list[OutgoingMessage]) -> None:
        """After a rating request goes out, the reporter's next message in that room (or private chat, on the
        request's own channel) is listened to."""
        for out in outgoing:
            if out.awaits_rating_from:
                room = out.target_id if out.target_type is TargetType.ROOM else None
                conv = conversation_id(out.channel or channel, room, out.awaits_rating_from)
                await self.expectations.expect(conv, Awaiting.RATING, self.settings.expect_reply_seconds)

    def _reply(self, message: IncomingMessage, body: str) -> OutgoingMessage:
        """A reply goes back where the message came from; in a group it @-mentions the sender."""
        if message.is_private:
            return OutgoingMessage(TargetType.CONTACT, message.sender_id, body, channel=message.channel)
        assert message.group_id is not None
        mention = (Mention(message.sender_id, message.sender_name),)
        return OutgoingMessage(TargetType.ROOM, message.group_id, body, mention, channel=message.channel)
