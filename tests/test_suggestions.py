"""“您想问的是…”: plausible entries offered by number when none is confident enough, and the resident's pick.

The pick parser is plain code; the knowledge base's suggestions and the floor run on the demo data, calibrated as
load_demo calibrates it; the actions are called over /webhook as Rasa calls them, on SQLite and PostgreSQL; the
router talks to a stand-in Rasa over real HTTP (tests.servers.FakeRasa); the last test goes through the real
Rasa server and the web chat API.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.choices import parse_choice
from bot.deferred import DeferredStore
from bot.expectations import Awaiting, MemoryExpectations
from bot.group_settings import GroupPolicies
from bot.messages import IncomingMessage
from bot.rasa_client import RasaClient
from bot.router import MessageRouter
from bot.settings import Settings
from bot.texts import text as t
from grid.clock import LOCAL_TZ
from grid.geography import asker_regions
from grid.tickets import Ticket
from knowledge.answer_policy import LEXICAL_ONLY, StoredPolicy
from knowledge.base import KnowledgeBase, Suggestion
from knowledge.calibration import ensure_calibrated
from knowledge.models import KnowledgeEntry
from knowledge.questions import AskedQuestion
from storage.base import utcnow
from storage.engine import unit_of_work
from tests.servers import Chat, FakeRasa, action_call

GROUP, WORKER_NAME = "demo-grid-1", "张敏"
# Vague on purpose: several benefit entries fit and none is sure (checked against the knowledge base below).
VAGUE = "我想问问补贴的事"
OFF_TOPIC = "请问意大利面怎么做"
CONFIDENT = "请问高龄补贴怎么申请"
# Plainly a policy question to NLU, and several benefit entries score close together with either retriever.
BENEFITS = "请问有什么补贴可以申请"


def today() -> date:
    return utcnow().astimezone(LOCAL_TZ).date()


# --- the pick parser ---


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ("1", 1), ("2.", 2), ("3。", 3), (" 2 ", 2), ("２", 2), ("第二个", 2), ("第2条", 2), ("第三个吧", 3),
        ("二", 2), ("一", 1), ("选1", 1), ("我选3", 3), ("是第一个", 1), ("12", 12),
        ("都不是", 0), ("都不对", 0), ("没有", 0), ("不是", 0), ("0", 0), ("以上都不是", 0), ("不用了", 0),
    ],
)  # fmt: skip
def test_a_pick_is_read_in_the_ways_residents_type_it(text: str, choice: int) -> None:
    assert parse_choice(text) == choice


@pytest.mark.parametrize("text", ["", "好的", "3号楼", "高龄补贴怎么申请", "2个人能申请吗", "两个", "123", "第二个问题是低保"])
def test_anything_else_is_no_pick(text: str) -> None:
    """Not a pick: the router sends it on as a message of its own."""
    assert parse_choice(text) is None


# --- the knowledge base: what is plausible, and the calibrated floor ---


def suggestions_for(factory: sessionmaker[Session], question: str, group: str | None = GROUP) -> list[Suggestion]:
    with factory() as session:
        return KnowledgeBase().suggestions(session, question, asker_regions(session, group), today())


def test_the_floor_is_calibrated_and_stored(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        stored = session.get(StoredPolicy, LEXICAL_ONLY)
        assert stored is not None and stored.suggest_floor is not None and 0 < stored.suggest_floor < 1
        assert KnowledgeBase().state(session).policy.suggest_floor == stored.suggest_floor


def test_plausible_entries_are_offered_only_when_nothing_is_answered(session_factory: sessionmaker[Session]) -> None:
    offered = suggestions_for(session_factory, VAGUE)
    assert 2 <= len(offered) <= 3
    assert len({s.entry.id for s in offered}) == len({s.entry.title for s in offered}) == len(offered)
    assert [s.score for s in offered] == sorted((s.score for s in offered), reverse=True)
    with session_factory() as session:
        policy = KnowledgeBase().state(session).policy
        assert KnowledgeBase().answer(session, VAGUE, asker_regions(session, GROUP), today()) is None
    assert all(s.score >= (policy.suggest_floor or 1.0) for s in offered)
    assert suggestions_for(session_factory, CONFIDENT) == []  # answered outright: nothing to pick
    assert suggestions_for(session_factory, OFF_TOPIC) == []  # nothing plausible: nothing offered


def test_thresholds_stored_before_suggestions_get_a_floor_and_keep_their_values(
    session_factory: sessionmaker[Session],
) -> None:
    """An installation calibrated before "您想问的是…" (maybe on its own questions) keeps its thresholds at start-up."""
    kb = KnowledgeBase()
    with unit_of_work(session_factory) as session:
        stored = session.get(StoredPolicy, LEXICAL_ONLY)
        assert stored is not None
        floor, before = stored.suggest_floor, (stored.lexical_threshold, stored.margin, stored.calibrated_at)
        stored.suggest_floor = None
    try:
        with unit_of_work(session_factory) as session:
            assert ensure_calibrated(session, kb, today())
        with session_factory() as session:
            stored = session.get(StoredPolicy, LEXICAL_ONLY)
            assert stored is not None and stored.suggest_floor == floor
            assert (stored.lexical_threshold, stored.margin) == before[:2] and stored.calibrated_at > before[2]
        with unit_of_work(session_factory) as session:
            assert not ensure_calibrated(session, kb, today())  # done once
    finally:
        with unit_of_work(session_factory) as session:
            session.get(StoredPolicy, LEXICAL_ONLY).suggest_floor = floor  # type: ignore[union-attr]


# --- the actions, over /webhook ---



def call(
    client: httpx.Client,
    action: str,
    text: str,
    *,
    sender: str | None = None,
    group: str | None = GROUP,
    intent: str = "ask_policy",
    entities: list[dict[str, Any]] | None = None,
    slots: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
    addressed: bool = True,
    gate: float | None = None,
) -> tuple[str, dict[str, Any]]:
    """Run `action` for a resident's message as Rasa would; returns the resident's id and the action's result."""
    sender = sender or f"resident-{uuid.uuid4().hex[:8]}"
    conversation = f"webchat:{group or 'private'}:{sender}"
    metadata = {"channel": "webchat", "group_id": group, "sender_id": sender, "sender_name": "居民小周", "addressed": addressed}
    latest = {"text": text, "intent": {"name": intent, "confidence": 1.0}, "entities": entities or [], "metadata": metadata}
    if gate is not None:
        latest["grid_matter"] = {"score": gate}  # the open-set gate's word: a grid matter, not small talk
    body = action_call(action, conversation, latest)
    body["tracker"]["slots"] = slots or {}
    body["tracker"]["events"] = [*(events or []), {"event": "user", "text": text, "parse_data": latest, "metadata": metadata}]
    response = client.post("/webhook", json=body)
    assert response.status_code == 200, response.text
    return sender, response.json()


def texts(result: dict[str, Any]) -> list[str]:
    return [r["text"] for r in result["responses"] if r.get("text")]


def customs(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["custom"] for r in result["responses"] if r.get("custom")]


def slots_set(result: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in result["events"] if e.get("event") == "slot"}


def pick(client: httpx.Client, choice: int, offered: list[int], question: str, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    """The resident's pick as the router sends it: /pick_suggestion{"choice": n}, with the offer in the slots."""
    entities = [{"entity": "choice", "value": choice, "start": 0, "end": 0}]
    slots = {"suggested_entries": offered, "suggested_question": question}
    return call(
        client, "action_pick_suggestion", f'/pick_suggestion{{"choice": {choice}}}', intent="pick_suggestion",
        entities=entities, slots=slots, **kwargs,
    )  # fmt: skip


def entries_by_id(factory: sessionmaker[Session], ids: list[int]) -> list[KnowledgeEntry]:
    with factory() as session:
        return [session.get_one(KnowledgeEntry, i) for i in ids]


def asked_by(factory: sessionmaker[Session], sender: str) -> list[AskedQuestion]:
    with factory() as session:
        return list(session.scalars(select(AskedQuestion).where(AskedQuestion.asker_id == sender)))


def tickets_of(factory: sessionmaker[Session], sender: str) -> list[Ticket]:
    with factory() as session:
        return list(session.scalars(select(Ticket).where(Ticket.reporter_id == sender)))


@pytest.mark.parametrize(
    ("action", "intent"),
    [
        ("action_answer_policy", "ask_policy"),
        ("action_unplaced", "nlu_fallback"),
    ],
)
def test_an_addressed_question_with_plausible_entries_gets_them_numbered(
    webhook: httpx.Client, session_factory: sessionmaker[Session], action: str, intent: str
) -> None:
    sender, result = call(webhook, action, VAGUE, intent=intent, gate=0.9)
    offered = suggestions_for(session_factory, VAGUE)
    options = "\n".join(t("suggestions.option", number=n, title=s.entry.title) for n, s in enumerate(offered, start=1))
    assert texts(result) == [t("suggestions.offer", options=options)]
    assert {"expect": "choice"} in customs(result)  # the router listens for the pick
    assert slots_set(result) == {"suggested_entries": [s.entry.id for s in offered], "suggested_question": VAGUE}
    assert tickets_of(session_factory, sender) == [] and asked_by(session_factory, sender) == []


def test_unasked_gets_no_offer(webhook: httpx.Client, session_factory: sessionmaker[Session]) -> None:
    """Unaddressed, the bot speaks only when sure: plausible is not sure."""
    sender, result = call(webhook, "action_answer_policy", VAGUE, addressed=False)
    assert result["responses"] == [] and slots_set(result) == {}
    assert tickets_of(session_factory, sender) == []


def test_nothing_plausible_still_goes_to_a_person(webhook: httpx.Client, session_factory: sessionmaker[Session]) -> None:
    sender, result = call(webhook, "action_answer_policy", OFF_TOPIC)
    assert any("咨询单" in text for text in texts(result)) and slots_set(result) == {}
    assert len(tickets_of(session_factory, sender)) == 1


@pytest.mark.parametrize("choice", [1, 2])
def test_the_picked_entry_answers_with_its_source_and_counts_as_answered(
    webhook: httpx.Client, session_factory: sessionmaker[Session], choice: int
) -> None:
    offered = [s.entry.id for s in suggestions_for(session_factory, VAGUE)]
    sender, result = pick(webhook, choice, offered, VAGUE)
    entry = entries_by_id(session_factory, offered)[choice - 1]
    assert texts(result) == [t("policy.answer", answer=entry.answer, citation=entry.citation())]
    assert "来源：" in texts(result)[0] and {"expect": "feedback"} in customs(result)
    assert slots_set(result) == {"suggested_entries": None, "suggested_question": None}
    [asked] = asked_by(session_factory, sender)
    assert (asked.question, asked.answered, asked.entry_id, asked.entry_external_id) == (VAGUE, True, entry.id, entry.external_id)
    assert asked.ticket_number is None and tickets_of(session_factory, sender) == []


def test_none_of_them_hands_the_question_to_a_person(webhook: httpx.Client, session_factory: sessionmaker[Session]) -> None:
    offered = [s.entry.id for s in suggestions_for(session_factory, VAGUE)]
    sender, result = pick(webhook, 0, offered, VAGUE)
    [ticket] = tickets_of(session_factory, sender)
    assert texts(result)[0] == t("suggestions.handoff", worker_name=WORKER_NAME, number=ticket.number)
    assert ticket.category == "咨询" and ticket.description == VAGUE  # the question itself, not "/pick_suggestion…"
    assert any(d["target_type"] == "contact" and VAGUE in d["text"] for c in customs(result) for d in c.get("deliver", []))
    [asked] = asked_by(session_factory, sender)
    assert not asked.answered and asked.ticket_number == ticket.number
    assert slots_set(result) == {"suggested_entries": None, "suggested_question": None}


def test_a_private_none_of_them_is_recorded_for_the_admins(webhook: httpx.Client, session_factory: sessionmaker[Session]) -> None:
    offered = [s.entry.id for s in suggestions_for(session_factory, VAGUE)]
    sender, result = pick(webhook, 0, offered, VAGUE, group=None)
    assert texts(result) == [t("policy.handoff_resident_no_worker")]
    [asked] = asked_by(session_factory, sender)
    assert not asked.answered and asked.group_id is None


def test_a_number_not_offered_is_asked_again_once_then_goes_to_a_person(
    webhook: httpx.Client, session_factory: sessionmaker[Session]
) -> None:
    offered = [s.entry.id for s in suggestions_for(session_factory, VAGUE)]
    sender, again = pick(webhook, 7, offered, VAGUE)
    assert texts(again) == [t("suggestions.again", count=len(offered))]
    assert {"expect": "choice", "again": True} in customs(again) and slots_set(again) == {}  # the offer stands
    assert tickets_of(session_factory, sender) == []
    asked_again = [{"event": "user", "text": "7"}, {"event": "bot", "text": texts(again)[0]},
                   {"event": "bot", "data": {"custom": {"expect": "choice", "again": True}}}]  # fmt: skip
    _, result = pick(webhook, 9, offered, VAGUE, sender=sender, events=asked_again)
    assert any("咨询单" in text for text in texts(result))
    assert len(tickets_of(session_factory, sender)) == 1


def test_a_pick_with_nothing_offered_asks_for_the_question(webhook: httpx.Client, session_factory: sessionmaker[Session]) -> None:
    sender, result = pick(webhook, 1, [], "")
    assert texts(result) == [t("suggestions.nothing_offered")]
    assert tickets_of(session_factory, sender) == [] and asked_by(session_factory, sender) == []


# --- the router: listening for the pick ---


OFFER_REPLY: list[dict[str, object]] = [{"text": "您想问的是：\n1. 甲\n2. 乙\n回复序号即可"}, {"custom": {"expect": "choice"}}]
CHATTER = {"text": "x", "intent": {"name": "chitchat", "confidence": 0.99}, "entities": [], "grid_matter": {"score": 0.01}}


@pytest.fixture
def rasa() -> Iterator[FakeRasa]:
    fake = FakeRasa(CHATTER, reply=OFFER_REPLY)
    yield fake
    fake.close()


@pytest.fixture
def router(rasa: FakeRasa, session_factory: sessionmaker[Session]) -> MessageRouter:
    settings = Settings()
    return MessageRouter(
        settings,
        RasaClient(rasa.url),
        MemoryExpectations(),
        DeferredStore(session_factory),
        GroupPolicies(session_factory, settings),
    )


def say(router: MessageRouter, text: str, sender: str, *, group: str | None = GROUP, mention: bool = False) -> list[str]:
    message = IncomingMessage("web", sender, "居民小李", text, group_id=group, mentions_bot=mention, message_id=uuid.uuid4().hex)

    async def turn() -> list[str]:
        try:
            return [out.text for out in await router.handle(message)]
        finally:
            await router.rasa.aclose()

    return asyncio.run(turn())


def awaiting(router: MessageRouter, sender: str, group: str | None = GROUP) -> Awaiting | None:
    return asyncio.run(router.expectations.awaiting(f"web:{group or 'private'}:{sender}"))


@pytest.mark.parametrize(("text", "choice"), [("2", 2), ("第一个", 1), ("都不是", 0)])
def test_after_an_offer_an_unaddressed_pick_goes_to_rasa_as_the_pick_intent(
    router: MessageRouter, rasa: FakeRasa, text: str, choice: int
) -> None:
    sender = f"pick-{uuid.uuid4().hex[:8]}"
    assert say(router, VAGUE, sender, mention=True)
    assert awaiting(router, sender) is Awaiting.CHOICE
    rasa.reply, hits = [{"text": "答复"}], rasa.hits
    assert say(router, text, sender) == ["答复"]  # no @ needed: the bot asked
    turn = rasa.turns[-1]
    assert turn["message"] == f"/pick_suggestion{json.dumps({'choice': choice})}" and "parse_data" not in turn
    assert turn["metadata"]["addressed"] is True  # type: ignore[index]
    assert rasa.hits == hits + 1  # the turn only: no NLU guess at a bare number
    assert awaiting(router, sender) is None  # one pick per offer


def test_chatter_while_a_pick_is_awaited_is_ignored_and_the_offer_stands(router: MessageRouter, rasa: FakeRasa) -> None:
    sender = f"pick-{uuid.uuid4().hex[:8]}"
    say(router, VAGUE, sender, mention=True)
    turns = len(rasa.turns)
    assert say(router, "哈哈哈 我也不知道", sender) == []
    assert len(rasa.turns) == turns and awaiting(router, sender) is Awaiting.CHOICE


def test_an_addressed_message_that_is_no_pick_ends_the_offer(router: MessageRouter, rasa: FakeRasa) -> None:
    sender = f"pick-{uuid.uuid4().hex[:8]}"
    say(router, VAGUE, sender, mention=True)
    rasa.reply = [{"text": "答复"}]
    say(router, "低保怎么申请", sender, mention=True)
    assert rasa.turns[-1]["message"] == "低保怎么申请" and awaiting(router, sender) is None
    say(router, "2", sender, mention=True)
    assert rasa.turns[-1]["message"] == "2"  # the offer is over: a number is just text again


def test_a_confident_request_while_a_pick_is_awaited_stays_unasked(router: MessageRouter, rasa: FakeRasa) -> None:
    """It ends the offer and is answered like any unasked message: not as the reply the bot waited for (addressed),
    which would let its action hand a guess to a person."""
    sender = f"pick-{uuid.uuid4().hex[:8]}"
    say(router, VAGUE, sender, mention=True)
    rasa.parse = {**CHATTER, "intent": {"name": "ask_policy", "confidence": 0.99}, "grid_matter": {"score": 0.99}}
    rasa.reply = [{"text": "答复"}]
    try:
        assert say(router, "高龄补贴怎么申请", sender) == ["答复"]
    finally:
        rasa.parse = CHATTER
    assert rasa.turns[-1]["metadata"]["addressed"] is False  # type: ignore[index]
    assert awaiting(router, sender) is None


def test_without_an_offer_a_number_is_no_pick(router: MessageRouter, rasa: FakeRasa) -> None:
    sender = f"pick-{uuid.uuid4().hex[:8]}"
    assert say(router, "2", sender) == []  # unaddressed: chatter
    rasa.reply = [{"text": "答复"}]
    say(router, "2", sender, mention=True)
    assert rasa.turns[-1]["message"] == "2"


def test_a_pick_in_a_private_chat(router: MessageRouter, rasa: FakeRasa) -> None:
    sender = f"pick-{uuid.uuid4().hex[:8]}"
    say(router, VAGUE, sender, group=None)
    assert awaiting(router, sender, group=None) is Awaiting.CHOICE
    rasa.reply = [{"text": "答复"}]
    say(router, "第二个", sender, group=None)
    assert rasa.turns[-1]["message"] == '/pick_suggestion{"choice": 2}'
    assert awaiting(router, sender, group=None) is None


# --- end to end, through the real Rasa server and the web chat API ---


@pytest.mark.rasa
def test_a_vague_question_gets_suggestions_and_the_pick_its_answer(
    chat: Chat, resident: tuple[str, str], session_factory: sessionmaker[Session]
) -> None:
    sender, name = resident
    [offer] = chat.say(f"@网格助手 {BENEFITS}", group=GROUP, sender=sender, name=name, mention=True)
    assert "您想问的是：" in offer["text"] and "\n1. " in offer["text"] and "\n2. " in offer["text"], offer
    titles = re.findall(r"^\d\. (.+)$", offer["text"], flags=re.MULTILINE)
    with session_factory() as session:
        second = session.scalars(select(KnowledgeEntry).where(KnowledgeEntry.title == titles[1])).first()
    assert second is not None
    [answer] = chat.say("2", group=GROUP, sender=sender, name=name)  # no @: the bot asked
    assert second.answer in answer["text"] and f"来源：{second.citation()}" in answer["text"], answer
    with session_factory() as session:
        asked = session.scalars(select(AskedQuestion).where(AskedQuestion.asker_id == sender)).all()
    assert [(a.question, a.answered, a.entry_id) for a in asked] == [(BENEFITS, True, second.id)]
