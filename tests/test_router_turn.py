"""One NLU pass per turn: an unaddressed group message is parsed once, to decide, and that parse drives the turn.

The router talks to the real Rasa server (and Rasa to the real app for its actions); a transport in between
only records what goes over the wire.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.deferred import DeferredStore
from bot.expectations import Awaiting, MemoryExpectations
from bot.group_settings import GroupPolicies
from bot.messages import IncomingMessage
from bot.rasa_client import RasaClient
from bot.router import MessageRouter
from bot.settings import Settings

pytestmark = pytest.mark.rasa


class Recording(httpx.AsyncBaseTransport):
    """Forwards every request to the real server and keeps (path, JSON body) of each."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: list[tuple[str, dict[str, object]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        self.seen.append((request.url.path, body))
        return await self.inner.handle_async_request(request)


def _router(rasa_url: str, factory: sessionmaker[Session]) -> tuple[MessageRouter, Recording, MemoryExpectations]:
    settings = Settings()
    recording = Recording()
    rasa = RasaClient(rasa_url)
    rasa._http = httpx.AsyncClient(base_url=rasa_url, transport=recording, timeout=60)
    expectations = MemoryExpectations()
    router = MessageRouter(settings, rasa, expectations, DeferredStore(factory), GroupPolicies(factory, settings))
    return router, recording, expectations


def _group_message(text: str, sender: str) -> IncomingMessage:
    return IncomingMessage("web", sender, "居民小李", text, group_id="demo-grid-1", message_id=uuid.uuid4().hex)


def test_an_unaddressed_request_is_parsed_once(rasa_url: str, app_url: str, session_factory: sessionmaker[Session]) -> None:
    router, recording, _ = _router(rasa_url, session_factory)
    replies = asyncio.run(router.handle(_group_message("请问高龄补贴怎么申请", f"turn-{uuid.uuid4().hex[:8]}")))
    assert replies, "a confident policy question is answered without an @"
    paths = [path for path, _ in recording.seen]
    assert paths == ["/model/parse", "/webhooks/gridbot/webhook"]
    (_, turn) = recording.seen[1]
    assert isinstance(turn["parse_data"], dict) and turn["parse_data"]["text"] == turn["message"]
    assert turn["parse_data"]["intent"]["name"] == "ask_policy"


def test_a_form_question_makes_the_router_listen_without_asking_rasa(
    rasa_url: str, app_url: str, session_factory: sessionmaker[Session]
) -> None:
    router, recording, expectations = _router(rasa_url, session_factory)
    message = _group_message("楼道灯坏了 好几天了", f"turn-{uuid.uuid4().hex[:8]}")
    message = replace(message, mentions_bot=True)
    asyncio.run(router.handle(message))
    assert [path for path, _ in recording.seen] == ["/webhooks/gridbot/webhook"]  # no tracker fetch
    assert asyncio.run(expectations.awaiting(message.conversation_id)) is Awaiting.FORM
