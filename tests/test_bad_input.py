"""Bad input gets a clear 4xx with a reason, writes nothing, and the server keeps serving."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.webchat import WebChatMessage
from tests.servers import Chat

pytestmark = pytest.mark.rasa

GOOD = {"group_id": "demo-grid-1", "sender_id": "resident-bad", "sender_name": "居民", "mentions_bot": True}


def _transcript_rows(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(select(func.count(WebChatMessage.id))) or 0


@pytest.mark.parametrize(
    ("payload", "status", "reason"),
    [
        ({**GOOD, "text": ""}, 422, "empty"),
        ({**GOOD, "text": "   \n "}, 422, "empty"),
        ({**GOOD, "text": "楼" * 10_000}, 413, "too long"),
        ({**GOOD, "sender_id": "   ", "text": "你好"}, 422, "sender_id"),  # would be an empty identity
        ({**GOOD, "group_id": "no-such-group", "text": "路灯坏了"}, 404, "unknown group"),
        ({**GOOD, "sender_id": "", "text": "你好"}, 422, "sender_id"),
        ({"text": "你好"}, 422, "sender_id"),
        ({**GOOD, "text": 12345}, 422, "text"),
    ],
)
def test_rejected_with_reason_and_nothing_written(
    chat: Chat, session_factory: sessionmaker[Session], payload: dict, status: int, reason: str
) -> None:
    before = _transcript_rows(session_factory)
    response = chat.http.post("/api/v1/local/messages", json=payload)
    assert response.status_code == status, response.text
    assert reason in response.text
    assert _transcript_rows(session_factory) == before
    assert chat.say("你好", group="demo-grid-1", sender="resident-after", name="居民", mention=True)


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", '{"text": "\u697c'.encode()[:-1]])
def test_malformed_json_is_a_4xx(chat: Chat, body: bytes) -> None:
    response = chat.http.post("/api/v1/local/messages", content=body, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert response.json()["detail"]
    assert chat.http.get("/healthz").status_code == 200


@pytest.mark.parametrize("text", ["😀👍🎉", "[强][强]", "？？"])
def test_emoji_or_punctuation_alone_is_chat_with_no_reply(chat: Chat, session_factory: sessionmaker[Session], text: str) -> None:
    """Not refused (the group saw it: it is in the transcript), not answered, even when addressed."""
    before = _transcript_rows(session_factory)
    assert chat.say(text, group="demo-grid-1", sender="resident-emoji", name="居民", mention=True) == []
    assert _transcript_rows(session_factory) == before + 1


def test_emoji_around_words_is_understood(chat: Chat, resident: tuple[str, str]) -> None:
    sender, name = resident
    replies = chat.say("😀 高龄补贴怎么申请啊🙏", group="demo-grid-1", sender=sender, name=name, mention=True)
    assert replies and "来源：" in replies[0]["text"]
