"""What the actions do with what NLU could not place, and with unasked messages, called over /webhook as Rasa
calls them (no NLU in the way: the intent, the gate's score and `addressed` are set here), on both databases.

Addressed: small talk keeps its one-line reply; anything else gets the knowledge base's answer or a person,
never "我是网格助手…" or "抱歉，我没太明白". Unaddressed: an action with nothing sure to say says nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from actions.unplaced import is_small_talk
from bot.texts import text as t
from grid.service import Actor, TicketService
from grid.tickets import Ticket
from grid.workflow import Role
from tests.servers import action_call

GROUP, WORKER_NAME = "demo-grid-1", "张敏"
BRUSH_OFFS = ("我是网格助手，主要帮", "抱歉，我没太明白", "这个我帮不上忙", "请回复“满意”", "没有进行中的工单")
# Written here, in the style of residents' letters to a city: long, a place, a problem, a demand.
COMPLAINT = (
    "我们单元楼下那家早餐店每天凌晨四点就开始剁馅、开鼓风机，声音特别大，楼上老人孩子都睡不好，"
    "跟店主说了好几次也不改，希望社区能出面协调一下，至少六点以后再开工。"
)



def call(
    client: httpx.Client,
    action: str,
    intent: str,
    text: str,
    *,
    addressed: bool = True,
    gate: float | None = None,
    sender: str | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """Run `action` for a resident's message in GROUP (a fresh resident unless `sender` is given); returns the
    resident's id and the action's responses."""
    sender = sender or f"resident-{uuid.uuid4().hex[:8]}"
    conversation = f"webchat:{GROUP}:{sender}"
    metadata = {"channel": "webchat", "group_id": GROUP, "sender_id": sender, "sender_name": "居民小周", "addressed": addressed}
    latest: dict[str, Any] = {"text": text, "intent": {"name": intent, "confidence": 0.9}, "entities": [], "metadata": metadata}
    if gate is not None:
        latest["grid_matter"] = {"score": gate}
    body = action_call(action, conversation, latest)
    response = client.post("/webhook", json=body)
    assert response.status_code == 200, response.text
    return sender, response.json()["responses"]


def texts(responses: list[dict[str, Any]]) -> list[str]:
    return [r["text"] for r in responses if r.get("text")]


def tickets_of(factory: sessionmaker[Session], sender: str) -> list[Ticket]:
    with factory() as session:
        return list(session.scalars(select(Ticket).where(Ticket.reporter_id == sender)))


@pytest.mark.parametrize("intent", ["chitchat", "out_of_scope", "nlu_fallback"])
def test_a_long_addressed_complaint_goes_to_a_person_whole(
    webhook: httpx.Client, session_factory: sessionmaker[Session], intent: str
) -> None:
    sender, responses = call(webhook, "action_unplaced", intent, COMPLAINT, gate=0.3)
    said = texts(responses)
    assert said and WORKER_NAME in said[0] and "单号 GD" in said[0], said
    assert not any(b in text for b in BRUSH_OFFS for text in said), said
    [ticket] = tickets_of(session_factory, sender)
    assert ticket.description == COMPLAINT and ticket.category == "咨询"  # kept whole for the worker
    notices = [r["custom"] for r in responses if r.get("custom")]
    assert any(d["target_type"] == "contact" and COMPLAINT in d["text"] for n in notices for d in n.get("deliver", [])), notices


def test_addressed_small_talk_keeps_its_one_line_reply(webhook: httpx.Client, session_factory: sessionmaker[Session]) -> None:
    sender, responses = call(webhook, "action_unplaced", "chitchat", "哈哈好的呀", gate=0.05)
    assert texts(responses) == [t("policy.small_talk")] and "我是网格助手" not in texts(responses)[0]
    assert tickets_of(session_factory, sender) == []


def test_a_question_nlu_misplaced_is_answered_from_the_knowledge_base(
    webhook: httpx.Client, session_factory: sessionmaker[Session]
) -> None:
    sender, responses = call(webhook, "action_unplaced", "out_of_scope", "请问高龄补贴怎么申请，要带哪些材料去办理", gate=0.9)
    said = texts(responses)
    assert said and "来源：" in said[0] and "高龄" in said[0], said
    assert tickets_of(session_factory, sender) == []


@pytest.mark.parametrize(
    ("action", "intent"), [("action_rate_service", "rate_service"), ("action_ticket_status", "check_ticket_status")]
)
def test_a_long_message_misread_as_a_rating_or_a_status_check_goes_to_a_person(
    webhook: httpx.Client, session_factory: sessionmaker[Session], action: str, intent: str
) -> None:
    """Too long to be a rating or "我报的事呢": a request NLU misread (a pollution complaint was told to reply 满意)."""
    sender, responses = call(webhook, action, intent, COMPLAINT, gate=0.9)
    said = texts(responses)
    assert said and "单号 GD" in said[0] and not any(b in text for b in BRUSH_OFFS for text in said), said
    assert len(tickets_of(session_factory, sender)) == 1


def test_a_short_unclear_rating_is_asked_again_only_when_a_rating_is_awaited(
    webhook: httpx.Client, session_factory: sessionmaker[Session]
) -> None:
    """Rating replies only when a rating is awaited: a short title NLU read as a rating (405公交上班高峰期等不到车) from
    a resident with nothing to rate is placed like any unplaced message, not told to reply 满意/不满意."""
    sender = f"resident-{uuid.uuid4().hex[:8]}"
    with session_factory() as session:
        service = TicketService(session)
        ticket = service.file_report(
            group_id=GROUP,
            reporter_id=sender,
            reporter_name="居民小周",
            description="楼道灯坏了",
            location=f"{uuid.uuid4().int % 900 + 100}号楼2单元",  # its own place: no other test's open ticket to join
        ).ticket
        service.resolve(ticket.number, Actor(ticket.assignee_id or "", Role.WORKER), "换了灯泡")
        session.commit()
    _, awaited = call(webhook, "action_rate_service", "rate_service", "这个嘛", gate=0.9, sender=sender)
    assert any(t("tickets.rating_unclear") in text for text in texts(awaited)), awaited
    other, not_awaited = call(webhook, "action_rate_service", "rate_service", "405公交上班高峰期等不到车", gate=0.9)
    said = texts(not_awaited)
    assert said and not any(b in text for b in BRUSH_OFFS for text in said), said
    assert len(tickets_of(session_factory, other)) == 1  # a person has it


def test_unasked_and_unanswerable_says_nothing_and_files_nothing(
    webhook: httpx.Client, session_factory: sessionmaker[Session]
) -> None:
    sender, responses = call(webhook, "action_answer_policy", "ask_policy", "请问意大利面怎么做", addressed=False)
    assert responses == []
    assert tickets_of(session_factory, sender) == []
    addressed, asked = call(webhook, "action_answer_policy", "ask_policy", "请问意大利面怎么做")
    assert any("单号" in text or "咨询单" in text for text in texts(asked))  # @-mentioned: a person answers it
    assert len(tickets_of(session_factory, addressed)) == 1


def test_a_status_check_with_nothing_open_is_silent_unasked_and_looked_up_by_a_person_when_asked(
    webhook: httpx.Client, session_factory: sessionmaker[Session]
) -> None:
    """Asked after a report the bot does not know (made by phone, or a short title NLU misread), the resident is
    told nothing is open here and a person takes it up — not the bare 您目前没有进行中的工单."""
    unasked_sender, unasked = call(webhook, "action_ticket_status", "check_ticket_status", "今天东莞天气如何", addressed=False)
    assert unasked == [] and tickets_of(session_factory, unasked_sender) == []
    sender, asked = call(webhook, "action_ticket_status", "check_ticket_status", "我报的事怎么样了")
    said = texts(asked)
    assert said and "没有查到您进行中的工单" in said[0] and WORKER_NAME in said[0] and "单号 GD" in said[0], said
    assert not any(b in text for b in BRUSH_OFFS for text in said), said
    [ticket] = tickets_of(session_factory, sender)
    assert ticket.category == "咨询" and ticket.description == "我报的事怎么样了"


@pytest.mark.parametrize(("text", "helped"), [("我想问问高龄补贴的事", True), ("没用", False), ("答非所问 你说的不对", False)])
def test_unhelpful_with_nothing_answered_before_is_a_question_when_it_has_a_subject(
    webhook: httpx.Client, session_factory: sessionmaker[Session], text: str, helped: bool
) -> None:
    """NLU reads @我想问问补贴的事 as 答非所问; with no earlier answer, what the knowledge base has for it (an answer or
    the entries offered), while a bare 没用 is asked what it refers to. Neither files a ticket."""
    sender, responses = call(webhook, "action_answer_unhelpful", "answer_unhelpful", text, gate=0.9)
    said = texts(responses)
    offered = any(t("suggestions.offer", options="").split("\n")[0] in x for x in said)
    answered = any("来源：" in x and "高龄" in x for x in said)
    assert said and (offered or answered) is helped and (t("policy.unhelpful_nothing") in said) is not helped, said
    assert tickets_of(session_factory, sender) == []


@pytest.mark.parametrize(
    ("text", "score", "small"),
    [("哈哈好的", 0.1, True), ("哈哈好的", None, True), ("楼道灯坏了", 0.9, False), (COMPLAINT, 0.1, False)],
)
def test_small_talk_is_short_and_no_grid_matter(text: str, score: float | None, small: bool) -> None:
    message: dict[str, Any] = {"text": text} | ({"grid_matter": {"score": score}} if score is not None else {})
    assert is_small_talk(message) is small


def test_a_policy_question_taken_for_a_status_check_is_answered_when_nothing_is_open(
    webhook: httpx.Client, session_factory: sessionmaker[Session]
) -> None:
    """NLU's intent is one piece of evidence: with nothing open, a confident knowledge-base answer beats
    您目前没有进行中的工单 (the NLU issue: 我是二级残疾有护理补贴吗 got exactly that)."""
    sender, responses = call(webhook, "action_ticket_status", "check_ticket_status", "请问高龄补贴怎么申请", gate=0.9)
    said = texts(responses)
    assert said and "来源：" in said[0] and "没有进行中的工单" not in said[0], said
    assert tickets_of(session_factory, sender) == []


@pytest.mark.parametrize(
    ("text", "gate", "introduced"),
    [("你好", 0.05, True), ("您好，我们小区东门外的垃圾桶好几天没人清理了，能不能安排一下", 0.9, False)],
)
def test_a_greeting_is_introduced_to_and_a_request_opening_with_one_is_placed(
    webhook: httpx.Client, session_factory: sessionmaker[Session], text: str, gate: float, introduced: bool
) -> None:
    sender, responses = call(webhook, "action_social", "greet", text, gate=gate)
    assert [r.get("response") for r in responses if r.get("response")] == (["utter_greet"] if introduced else []), responses
    if not introduced:
        said = texts(responses)
        assert said and "单号 GD" in said[0] and not any(b in x for b in BRUSH_OFFS for x in said), said
        [ticket] = tickets_of(session_factory, sender)
        assert ticket.description == text


def test_a_long_question_taken_for_asking_after_notices_is_placed_when_there_are_none(
    webhook: httpx.Client, session_factory: sessionmaker[Session]
) -> None:
    """目前没有正在有效期内的惠民通知 answers 最近有什么通知, not a long question NLU read as one."""
    question = "对于保障城市基本运行的重点商超、农贸市场的从业人员有没有专门的防护补贴政策"
    _, short = call(webhook, "action_current_notices", "ask_notices", "最近有啥通知", gate=0.9)
    _, long = call(webhook, "action_current_notices", "ask_notices", question, gate=0.9)
    none = t("notices.current_none")
    assert len(texts(short)) == 1 and "单号" not in texts(short)[0], short  # answered: none, or the current ones
    said = texts(long)  # the current notices, when there are some; else the knowledge base, an offer or a person
    assert said and none not in said and not any(b in x for b in BRUSH_OFFS for x in said), said


def test_a_short_policy_question_taken_for_asking_after_notices_gets_the_knowledge_base_answer(
    webhook: httpx.Client,
) -> None:
    """With no notices, 高龄补贴怎么申请 read as ask_notices is answered from the knowledge base, with its source."""
    _, responses = call(webhook, "action_current_notices", "ask_notices", "高龄补贴怎么申请", gate=0.9)
    said = texts(responses)
    assert said and t("notices.current_none") not in said, said  # the current notices, if any; else the answer
