"""A worker's private chat in tests, without the Rasa server: the router as the app builds it (worker words on) before
a Rasa stand-in that records each `/worker_…` turn, the turn then run by the app's own action over /webhook as Rasa
runs it (tests/test_worker_evidence.py, tests/test_worker_day.py); and a grid of its own with a group and a worker."""

from __future__ import annotations

import asyncio
import json
import re
import struct
import uuid
import zlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.deferred import DeferredStore
from bot.expectations import MemoryExpectations
from bot.group_settings import GroupPolicies
from bot.messages import IncomingMessage, Media, MediaKind, OutgoingMessage
from bot.rasa_client import RasaClient
from bot.router import MessageRouter
from bot.settings import Settings
from bot.worker_desk import MemoryPendingChoices, WorkerDesk
from grid.geography import ChatGroup, Grid, Worker
from grid.service import TicketService
from grid.tickets import Ticket
from storage.engine import unit_of_work
from tests.servers import FakeRasa, action_call

BOT = "网格助手"


def png(width: int) -> bytes:
    """A real (tiny, grey) PNG; each width is another picture (another stored name)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(2))
    header = struct.pack(">IIBBBBB", width, 2, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@dataclass
class Crew:
    """A grid of its own (in the demo community) with a resident group and an on-duty worker on the web chat."""

    factory: sessionmaker[Session]
    grid: str
    group: str
    worker: str
    name: str

    def file(self, what: str, where: str) -> str:
        with unit_of_work(self.factory) as session:
            filing = TicketService(session).file_report(
                group_id=self.group, reporter_id=f"r-{uuid.uuid4().hex[:6]}", reporter_name="居民小赵",
                description=what, location=where,
            )
            return filing.ticket.number

    def accept(self, number: str, ago: timedelta = timedelta(0)) -> None:
        with unit_of_work(self.factory) as session:
            service = TicketService(session)
            ticket = service.accept(number, service.actor_for(self.worker, "webchat"))
            ticket.events[-1].created_at -= ago  # accepted this long ago

    def ticket(self, number: str) -> Ticket:
        with self.factory() as session:
            ticket = session.scalar(select(Ticket).where(Ticket.number == number))
            assert ticket is not None
            _ = ticket.events
            session.expunge_all()
            return ticket

    def evidence(self, number: str) -> list[tuple[str, list[str] | None, str | None]]:
        return [
            (e.action, e.photos, e.note) for e in self.ticket(number).events if e.action in ("work_photo", "work_note")
        ]


def crew(factory: sessionmaker[Session]) -> Crew:
    tag = uuid.uuid4().hex[:8]
    found = Crew(factory, f"grid-ev-{tag}", f"group-ev-{tag}", f"worker-ev-{tag}", f"网格员{tag[:4]}")
    with unit_of_work(factory) as session:
        session.add(Grid(code=found.grid, name=f"测试网格{tag}", community_code="demo-community-1"))
        session.flush()
        session.add(ChatGroup(id=found.group, name=f"测试{tag}便民群", grid_code=found.grid))
        session.add(Worker(id=found.worker, name=found.name, grid_code=found.grid, channel="webchat"))
    return found


class WorkerChat:
    """The router with worker words on, before a Rasa that records turns; actions run over /webhook."""

    def __init__(self, factory: sessionmaker[Session], webhook: httpx.Client) -> None:
        self.rasa = FakeRasa({}, reply=[])
        settings = Settings()
        self.router = MessageRouter(
            settings,
            RasaClient(self.rasa.url),
            MemoryExpectations(),
            DeferredStore(factory),
            GroupPolicies(factory, settings),
            workers=WorkerDesk(factory, MemoryPendingChoices(), BOT, 1800, evidence_window=timedelta(minutes=30)),
        )
        self.webhook = webhook

    def _run(self, work: Any) -> Any:
        async def turn() -> Any:
            try:
                return await work
            finally:
                await self.router.rasa.aclose()

        return asyncio.run(turn())

    def photo(self, worker: str, name: str, url: str) -> list[OutgoingMessage]:
        message = IncomingMessage("webchat", worker, name, "", media=(Media(MediaKind.IMAGE, url),))
        outgoing = self._run(self.router.worker_media(message))
        assert outgoing is not None, "a worker's picture was left to the residents' handling"
        return outgoing

    def say(self, worker: str, name: str, text: str, voice: bool = False) -> tuple[list[OutgoingMessage], dict[str, Any] | None]:
        """What the app replied itself (and sent elsewhere), and the turn it sent Rasa (None: answered without)."""
        before = len(self.rasa.turns)
        media = (Media(MediaKind.VOICE, ""),) if voice else ()
        message = IncomingMessage("webchat", worker, name, text, message_id=uuid.uuid4().hex, media=media)
        outgoing = self._run(self.router.handle(message))
        return outgoing, (self.rasa.turns[before] if len(self.rasa.turns) > before else None)

    def act(self, turn: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The turn's `/worker_…{…}` run as Rasa runs it; every response (texts and messages to deliver)."""
        assert turn is not None, "nothing was sent to Rasa"
        found = re.fullmatch(r"/(\w+)(\{.*\})?", turn["message"], re.DOTALL)
        assert found, turn["message"]
        intent, entities = found.group(1), json.loads(found.group(2) or "{}")
        latest = {
            "text": turn["message"],
            "intent": {"name": intent, "confidence": 1.0},
            "entities": [{"entity": k, "value": v} for k, v in entities.items()],
            "metadata": turn["metadata"],
        }
        response = self.webhook.post("/webhook", json=action_call(f"action_{intent}", turn["sender"], latest))
        assert response.status_code == 200, response.text
        return list(response.json()["responses"])

    def close(self) -> None:
        self.rasa.close()


def texts(outgoing: list[OutgoingMessage], target: str) -> list[str]:
    return [o.text for o in outgoing if o.target_id == target]


def delivered(responses: list[dict[str, Any]], target: str) -> list[str]:
    return [d["text"] for r in responses for d in (r.get("custom") or {}).get("deliver", []) if d["target_id"] == target]
