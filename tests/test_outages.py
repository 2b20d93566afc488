"""Dependencies down: Rasa (held and retried), the database (503, nothing half-written), Redis (degraded, still answering)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.deferred import DeferredMessage
from bot.runtime import build_services
from bot.settings import Settings
from tests.conftest import REDIS_URL
from tests.servers import Chat, app_server, free_port

pytestmark = pytest.mark.rasa


def test_rasa_down_polite_reply_then_retry(
    database_url: str, rasa_url: str, app_url: str, session_factory: sessionmaker[Session], resident: tuple[str, str]
) -> None:
    sender, name = resident
    dead_rasa = f"http://127.0.0.1:{free_port()}"
    settings = Settings(database_url=database_url, redis_url=REDIS_URL, rasa_url=dead_rasa, app_port=free_port())
    with app_server(settings) as url:
        chat = Chat(url)
        replies = chat.say("社区的高龄补贴怎么申请", group="demo-grid-1", sender=sender, name=name, mention=True)
        assert len(replies) == 1 and "稍后再试" in replies[0]["text"]
        # Chatter while Rasa is down is held too, but nobody is told to wait for it.
        assert chat.say("今天天气真好啊", group="demo-grid-1", sender=sender, name=name) == []
        chat.http.close()

    with session_factory() as session:
        held = session.scalars(select(DeferredMessage).where(DeferredMessage.sender_id == sender)).all()
        assert [(m.text, m.status) for m in held] == [("社区的高龄补贴怎么申请", "held"), ("今天天气真好啊", "held")]

    # Rasa is back (the real one): the retry job answers the held question and stays silent on the chatter.
    async def retry() -> list:
        live = build_services(Settings(database_url=database_url, redis_url=REDIS_URL, rasa_url=rasa_url))
        try:
            return await live.router.retry_deferred()
        finally:
            await live.aclose()

    outgoing = asyncio.run(retry())
    mine = [o for o in outgoing if any(m.id == sender for m in o.mentions)]
    assert len(mine) == 1 and "来源：" in mine[0].text
    with session_factory() as session:
        statuses = session.scalars(select(DeferredMessage.status).where(DeferredMessage.sender_id == sender)).all()
        assert statuses == ["done", "done"]


def test_database_down_is_a_503_with_a_reason(rasa_url: str) -> None:
    dead_db = f"postgresql://127.0.0.1:{free_port()}/nothing"
    settings = Settings(database_url=dead_db, redis_url=REDIS_URL, rasa_url=rasa_url, app_port=free_port())
    with app_server(settings) as url:
        chat = Chat(url)
        response = chat.post(group_id=None, sender_id="r-db", sender_name="居民", text="高龄补贴怎么申请", mentions_bot=False)
        assert response.status_code == 503 and "database unavailable" in response.json()["detail"]
        assert chat.http.get("/healthz").status_code == 200
        chat.http.close()


def test_redis_down_still_answers_addressed_questions(
    database_url: str, rasa_url: str, app_url: str, resident: tuple[str, str]
) -> None:
    sender, name = resident
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(database_url=database_url, redis_url=dead_redis, rasa_url=rasa_url, app_port=free_port())
    with app_server(settings) as url:
        chat = Chat(url)
        replies = chat.say("社区的高龄补贴怎么申请", group="demo-grid-1", sender=sender, name=name, mention=True)
        assert len(replies) == 1 and "来源：" in replies[0]["text"]
        chat.http.close()
