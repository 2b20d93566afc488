"""#22 "never a brush-off when addressed": the one-line replies (the self-introduction, 不客气, 好嘞…) only for a
message that only greets, thanks, says goodbye, asks who the bot is or acknowledges; anything addressed with words of
its own — a short line NLU put on chitchat or out_of_scope, however un-grid-like the gate finds it — gets the knowledge
base's answer, the entries offered, or a person; and "您是指哪个问题呢" only for a bare 没用 with nothing answered before.

Three levels: the reading of the words (actions/social.py), the actions as Rasa calls them over /webhook (the intent
and the gate's score set here, on both databases), and the web chat API on the trained Rasa server.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from actions.social import bare_kind, is_social
from bot.texts import text as t
from grid.tickets import Ticket
from tests.servers import Chat, action_call

GROUP, WORKER_NAME = "demo-grid-1", "张敏"
# The canned lines bench/nlu_real.py counts as brush-offs (domain.yml and bot/texts/zh.yml), by their openings.
BRUSH_OFFS = (
    "我是网格助手，主要帮", "抱歉，我没太明白", "这个我帮不上忙", "请回复“满意”", "没有进行中的工单", "好嘞～有办事政策要问",
)  # fmt: skip
OFFER = t("suggestions.offer", options="").split("\n")[0]


# --- the words -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("你好", "greeting"),
        ("您好！", "greeting"),
        ("在吗？", "greeting"),
        ("谢谢你们啦", "thanks"),
        ("好的谢谢", "thanks"),
        ("拜拜", "farewell"),
        ("你是谁呀", "identity"),
        ("你好 你是机器人吗", "identity"),
        ("哈哈好的呀👍", "acknowledgement"),
        ("没用", "unhelpful"),
        ("答非所问 你说的不对", "unhelpful"),
        ("您好，我想反映一下东门的路灯", None),
        ("今天天气真好", None),
        ("盐水鸭怎么做", None),
        ("405公交等不到车", None),
        ("早点摊占道", None),
        ("不对，我问的是低保", None),
    ],
)
def test_a_message_is_social_only_when_every_word_is_a_social_form(text: str, kind: str | None) -> None:
    assert bare_kind(text) == kind
    assert is_social(text) is (kind not in (None, "unhelpful"))


# --- the actions, as Rasa calls them -------------------------------------------------------------------------------


def call(
    client: httpx.Client, action: str, intent: str, text: str, *, addressed: bool = True, gate: float | None = 0.05
) -> tuple[str, list[dict[str, Any]]]:
    """Run `action` for a fresh resident's message in GROUP; the gate's score low (no grid matter) unless given."""
    sender = f"resident-{uuid.uuid4().hex[:8]}"
    metadata = {"channel": "webchat", "group_id": GROUP, "sender_id": sender, "sender_name": "居民小周", "addressed": addressed}
    latest: dict[str, Any] = {"text": text, "intent": {"name": intent, "confidence": 0.9}, "entities": [], "metadata": metadata}
    if gate is not None:
        latest["grid_matter"] = {"score": gate}
    response = client.post("/webhook", json=action_call(action, f"webchat:{GROUP}:{sender}", latest))
    assert response.status_code == 200, response.text
    return sender, response.json()["responses"]


def said(responses: list[dict[str, Any]]) -> list[str]:
    return [r["text"] for r in responses if r.get("text")]


def tickets_of(factory: sessionmaker[Session], sender: str) -> list[Ticket]:
    with factory() as session:
        return list(session.scalars(select(Ticket).where(Ticket.reporter_id == sender)))


def placed(responses: list[dict[str, Any]]) -> bool:
    """Answered from the knowledge base, entries offered, or a person told to answer — and no brush-off."""
    texts = said(responses)
    helped = any("来源：" in x or OFFER in x or (WORKER_NAME in x and "GD" in x) for x in texts)
    return helped and not any(b in x for b in BRUSH_OFFS for x in texts)


@pytest.mark.parametrize(
    ("intent", "text"),
    [
        ("chitchat", "405公交等不到车"),
        ("chitchat", "楼下早点摊太吵"),
        ("out_of_scope", "盐水鸭怎么做"),
        ("nlu_fallback", "快递柜坏了"),
    ],
)
def test_a_short_addressed_line_with_words_of_its_own_is_placed_whatever_the_gate_says(
    webhook: httpx.Client, session_factory: sessionmaker[Session], intent: str, text: str
) -> None:
    """The 6 brush-offs left in bench-nlu-real were short lines the gate scored < 0.3: the words decide, not the score.
    Out of scope addressed to the bot (a recipe) goes the same way: a person reads it, never "这个我帮不上忙"."""
    sender, responses = call(webhook, "action_unplaced", intent, text, gate=0.05)
    assert placed(responses), responses
    tickets = tickets_of(session_factory, sender)
    assert all(ticket.description == text and ticket.category == "咨询" for ticket in tickets), tickets


@pytest.mark.parametrize(
    ("intent", "text", "reply"),
    [
        ("chitchat", "哈哈好的呀", ("text", "policy.small_talk")),
        ("chitchat", "谢谢你们啦", ("response", "utter_you_are_welcome")),
        ("out_of_scope", "你是谁呀", ("response", "utter_iamabot")),
        ("nlu_fallback", "拜拜", ("response", "utter_goodbye")),
        ("chitchat", "没用", ("text", "policy.unhelpful_nothing")),
    ],
)
def test_a_social_line_keeps_its_one_line_reply_and_files_nothing(
    webhook: httpx.Client, session_factory: sessionmaker[Session], intent: str, text: str, reply: tuple[str, str]
) -> None:
    sender, responses = call(webhook, "action_unplaced", intent, text, gate=0.9)  # even when the gate finds it grid-like
    how, name = reply
    if how == "response":
        assert [r.get("response") for r in responses if r.get("response")] == [name], responses
    else:
        assert said(responses) == [t(name)], responses
    assert tickets_of(session_factory, sender) == []


@pytest.mark.parametrize(("text", "introduced"), [("你好呀", True), ("你好 东门的路灯不亮了", False)])
def test_a_greeting_is_introduced_to_only_when_it_is_only_a_greeting(
    webhook: httpx.Client, session_factory: sessionmaker[Session], text: str, introduced: bool
) -> None:
    """Short and low on the gate, 你好 东门的路灯不亮了 used to get the self-introduction."""
    _, responses = call(webhook, "action_social", "greet", text, gate=0.05)
    assert [r.get("response") for r in responses if r.get("response")] == (["utter_greet"] if introduced else []), responses
    assert introduced or placed(responses), responses


@pytest.mark.parametrize(
    ("intent", "text", "reply"),
    [
        ("thanks", "谢谢啦", "utter_you_are_welcome"),
        ("thanks", "谢谢 请问低保怎么申请", None),
        ("goodbye", "拜拜", "utter_goodbye"),
        ("goodbye", "好的就这样吧 3号楼的垃圾明天一定要清走", None),
        ("bot_challenge", "你是机器人吗", "utter_iamabot"),
        ("bot_challenge", "你是人工吗 我要投诉物业乱收停车费", None),
    ],
)
def test_thanks_goodbye_and_who_are_you_reply_only_to_those_words(
    webhook: httpx.Client, intent: str, text: str, reply: str | None
) -> None:
    """These intents' rules gave their canned line to anything NLU put there; now the words decide, as for 你好."""
    _, responses = call(webhook, "action_social", intent, text, gate=0.05)
    assert [r.get("response") for r in responses if r.get("response")] == ([reply] if reply else []), responses
    assert reply or placed(responses), responses


@pytest.mark.parametrize("text", ["今天天气真好", "盐水鸭怎么做", "好的"])
def test_unaddressed_chatter_stays_silent(webhook: httpx.Client, session_factory: sessionmaker[Session], text: str) -> None:
    """Unchanged: an action run for an unaddressed short line the gate finds no grid matter says nothing."""
    sender, responses = call(webhook, "action_unplaced", "chitchat", text, addressed=False, gate=0.05)
    assert responses == [] and tickets_of(session_factory, sender) == [], (text, responses)


@pytest.mark.parametrize(
    ("text", "clarified"),
    [("没用", True), ("答非所问 你说的不对", True), ("多少钱啊", True), ("小区门口的快递柜归谁管 坏了好几天了", False)],
)
def test_unhelpful_with_nothing_answered_is_a_question_when_it_has_words_of_its_own(
    webhook: httpx.Client, session_factory: sessionmaker[Session], text: str, clarified: bool
) -> None:
    """NLU reads some real questions as 答非所问; with nothing answered before, such a message is a question (an
    answer, an offer, or a person), and "您是指哪个问题呢" is only for a bare 没用 or words naming nothing."""
    sender, responses = call(webhook, "action_answer_unhelpful", "answer_unhelpful", text, gate=0.9)
    if clarified:
        assert said(responses) == [t("policy.unhelpful_nothing")], responses
        assert tickets_of(session_factory, sender) == []
    else:
        assert placed(responses) and t("policy.unhelpful_nothing") not in said(responses), responses


# --- the web chat API on the trained Rasa server -------------------------------------------------------------------


def room(replies: list[dict[str, str]]) -> list[str]:
    return [r["text"] for r in replies if r.get("target_type") == "room"]


@pytest.mark.rasa
@pytest.mark.parametrize(
    ("text", "opening"), [("你好", "您好，我是网格助手"), ("谢谢", "不客气"), ("你是谁", "我是社区的网格助手")]
)
def test_chat_greetings_thanks_and_who_get_their_one_line(
    chat: Chat, session_factory: sessionmaker[Session], text: str, opening: str
) -> None:
    sender = f"resident-{uuid.uuid4().hex[:8]}"
    replies = room(chat.say(text, group=GROUP, sender=sender, name="居民小王", mention=True))
    assert len(replies) == 1 and opening in replies[0], replies
    assert tickets_of(session_factory, sender) == []


@pytest.mark.rasa
@pytest.mark.parametrize("text", ["盐水鸭怎么做", "今天天气真好啊", "405公交等不到车"])
def test_chat_an_addressed_line_the_bot_cannot_place_reaches_a_person_and_unaddressed_stays_silent(
    chat: Chat, session_factory: sessionmaker[Session], text: str
) -> None:
    unasked = f"resident-{uuid.uuid4().hex[:8]}"
    assert chat.say(text, group=GROUP, sender=unasked, name="居民小王") == []
    assert tickets_of(session_factory, unasked) == []
    sender = f"resident-{uuid.uuid4().hex[:8]}"
    replies = room(chat.say(text, group=GROUP, sender=sender, name="居民小王", mention=True))
    assert replies and not any(b in x for b in BRUSH_OFFS for x in replies), replies
    assert any("来源：" in x or OFFER in x or (WORKER_NAME in x and "GD" in x) for x in replies), replies


@pytest.mark.rasa
@pytest.mark.parametrize(("text", "clarified"), [("没用", True), ("说了半天也没说清楚社保能不能缓交", False)])
def test_chat_a_question_nlu_reads_as_unhelpful_with_nothing_answered_is_a_question(
    chat: Chat, text: str, clarified: bool
) -> None:
    """NLU reads both as 答非所问 (answer_unhelpful); with nothing answered before only the bare one is asked what it
    refers to — the other is answered, offered entries, or handed to a person."""
    sender = f"resident-{uuid.uuid4().hex[:8]}"
    replies = room(chat.say(text, group=GROUP, sender=sender, name="居民小王", mention=True))
    if clarified:
        assert len(replies) == 1 and t("policy.unhelpful_nothing") in replies[0], replies
    else:
        assert replies and not any(t("policy.unhelpful_nothing") in x for x in replies), replies
        assert any("来源：" in x or OFFER in x or (WORKER_NAME in x and "GD" in x) for x in replies), replies
