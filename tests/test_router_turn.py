"""One NLU pass per turn: an unaddressed group message is parsed once, to decide, and that parse drives the turn.

The router talks to the real Rasa server (and Rasa to the real app for its actions); a transport in between
only records what goes over the wire.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace

import aiohttp
import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.deferred import DeferredStore
from bot.expectations import Awaiting, MemoryExpectations
from bot.group_settings import GroupPolicies
from bot.messages import IncomingMessage, OutgoingMessage
from bot.rasa_client import RasaClient
from bot.router import MessageRouter
from bot.settings import Settings

pytestmark = pytest.mark.rasa


class Recording:
    """aiohttp's request hooks on the client: (path, JSON body) of every request it sends to the real server."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, object]]] = []
        self.config = aiohttp.TraceConfig()
        self.config.on_request_start.append(self._start)
        self.config.on_request_chunk_sent.append(self._chunk)

    async def _start(self, _session: object, _context: object, params: aiohttp.TraceRequestStartParams) -> None:
        self.seen.append((params.url.path, {}))

    async def _chunk(self, _session: object, _context: object, params: aiohttp.TraceRequestChunkSentParams) -> None:
        if params.chunk:
            path, _ = self.seen[-1]
            self.seen[-1] = (path, json.loads(params.chunk))


def _router(rasa_url: str, factory: sessionmaker[Session]) -> tuple[MessageRouter, Recording, MemoryExpectations]:
    settings = Settings()
    recording = Recording()
    rasa = RasaClient(rasa_url, timeout=60, trace_configs=[recording.config])
    expectations = MemoryExpectations()
    router = MessageRouter(settings, rasa, expectations, DeferredStore(factory), GroupPolicies(factory, settings))
    return router, recording, expectations


def _handle(router: MessageRouter, message: IncomingMessage) -> list[OutgoingMessage]:
    """One turn on its own event loop, the client's session for that loop closed after it."""

    async def turn() -> list[OutgoingMessage]:
        try:
            return await router.handle(message)
        finally:
            await router.rasa.aclose()

    return asyncio.run(turn())


def _group_message(text: str, sender: str) -> IncomingMessage:
    return IncomingMessage("web", sender, "居民小李", text, group_id="demo-grid-1", message_id=uuid.uuid4().hex)


def test_an_unaddressed_request_is_parsed_once(rasa_url: str, app_url: str, session_factory: sessionmaker[Session]) -> None:
    router, recording, _ = _router(rasa_url, session_factory)
    replies = _handle(router, _group_message("请问高龄补贴怎么申请", f"turn-{uuid.uuid4().hex[:8]}"))
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
    _handle(router, message)
    assert [path for path, _ in recording.seen] == ["/webhooks/gridbot/webhook"]  # no tracker fetch
    assert asyncio.run(expectations.awaiting(message.conversation_id)) is Awaiting.FORM
