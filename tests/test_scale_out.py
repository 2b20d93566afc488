"""Scale-out: two app processes and two Rasa servers share one conversation through Redis and PostgreSQL.

App A talks to Rasa 1 and Rasa 1's action endpoint is app A; app B and Rasa 2 likewise. Nothing else connects
them: the trackers and conversation locks live in Redis under one key prefix (Rasa's Redis stores), what the
bot waits for and which messages were seen live in Redis under the database's namespace (ours), tickets live
in PostgreSQL. A resident's report whose messages alternate between A and B must end as if one process had
served it, and a redelivered message must be handled by exactly one of them.

A channel may run in one process only (a wechaty login): the other processes queue its messages and leave
them to that process, without spending their attempts.

The apps are `gridbot serve` subprocesses configured only by environment variables (bot.app_process), not
bot.embedded threads: threads of one process share the action services and caches, which would hide exactly
the process-local state this test is here to catch.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot import rasa_process
from bot.app_process import start_app, stop, wait_healthy
from bot.channels.dispatch import Dispatcher
from bot.channels.outbound import OutboundMessage, OutboundStatus
from bot.channels.ratelimit import MemoryRateLimiter
from bot.channels.registry import ChannelRegistry
from bot.demo import load_demo
from bot.messages import OutgoingMessage, TargetType
from bot.settings import Settings, namespace_for
from grid.tickets import Ticket
from storage.engine import make_engine, make_session_factory, unit_of_work
from tests.servers import Chat, free_port, fresh_postgres
from tests.test_channel_core import FAST_RETRY, RecordingPlatform

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
GROUP = "demo-grid-1"
WORKER = ("worker-1", "张敏")
TICKET_NUMBER = re.compile(r"GD\d{8}-\d{4}")


@dataclass
class Cluster:
    a: Chat  # app A, served by Rasa 1
    b: Chat  # app B, served by Rasa 2
    factory: sessionmaker[Session]
    logs: tuple[Path, Path]  # app A's (request lines on: APP_ACCESS_LOG=true) and app B's (the default: off)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("scale")
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # fail here, not as a Rasa start-up error, when Redis is missing
    key_prefix = f"gridbotscale{uuid.uuid4().hex[:8]}"  # one prefix for both Rasa servers: they share trackers
    model = rasa_process.ensure_model()
    # The database outlives the processes (dropped last); the run's Redis keys are deleted once they have stopped.
    with fresh_postgres(POSTGRES_URL) as database_url, ExitStack() as stack:
        stack.callback(client.close)
        stack.callback(_delete_keys, client, f"{key_prefix}*", f"{namespace_for(Settings(database_url=database_url))}:*")
        load_demo(database_url, updated_by="test")
        app_ports, rasa_ports = (free_port(), free_port()), (free_port(), free_port())
        rasas = []
        for n, (app_port, rasa_port) in enumerate(zip(app_ports, rasa_ports, strict=True), start=1):
            endpoints = rasa_process.write_endpoints(
                folder / f"endpoints{n}.yml", f"http://127.0.0.1:{app_port}/webhook", REDIS_URL, key_prefix
            )
            process = rasa_process.start_rasa(model, rasa_port, endpoints, folder / f"rasa{n}.log")
            stack.callback(stop, process)
            rasas.append((f"http://127.0.0.1:{rasa_port}", process, folder / f"rasa{n}.log"))
        # Both Rasa servers load their model at once; the apps start meanwhile (they only need Rasa per message).
        apps = []
        for n, (app_port, (rasa_url, _, _)) in enumerate(zip(app_ports, rasas, strict=True), start=1):
            env = {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "RASA_URL": rasa_url}
            if n == 1:
                env["APP_ACCESS_LOG"] = "true"
            log_file = folder / f"app{n}.log"
            process = start_app(app_port, env, log_file)
            stack.callback(stop, process)
            apps.append((f"http://127.0.0.1:{app_port}", process, log_file))
        for url, process, log_file in rasas:
            try:
                rasa_process.wait_ready(url, process, timeout=300)
            except (RuntimeError, TimeoutError):
                raise RuntimeError(f"rasa failed to start:\n{log_file.read_text()[-4000:]}") from None
        for url, process, log_file in apps:
            wait_healthy(url, process, log_file)
        engine = make_engine(database_url)
        stack.callback(engine.dispose)
        a, b = Chat(apps[0][0]), Chat(apps[1][0])
        stack.callback(a.http.close)
        stack.callback(b.http.close)
        yield Cluster(a, b, make_session_factory(engine), (apps[0][2], apps[1][2]))


def _delete_keys(client: redis.Redis, *patterns: str) -> None:
    for pattern in patterns:
        for key in client.scan_iter(pattern, count=1000):
            client.unlink(key)


def _room(replies: list[dict[str, str]]) -> list[str]:
    return [r["text"] for r in replies if r["target_type"] == "room" and r["target_id"] == GROUP]


def _to(replies: list[dict[str, str]], contact: str) -> list[str]:
    return [r["text"] for r in replies if r["target_type"] == "contact" and r["target_id"] == contact]


def _count_tickets(factory: sessionmaker[Session], reporter: str) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(Ticket).where(Ticket.reporter_id == reporter)) or 0


@pytest.mark.rasa
def test_report_alternating_between_two_apps_and_two_rasa_servers_completes(cluster: Cluster) -> None:
    sender, name = f"resident-{uuid.uuid4().hex[:8]}", "居民小王"

    # A → Rasa 1: the form opens and asks for the place; the tracker and the expectation go to Redis.
    asked = cluster.a.say("楼道灯坏了 晚上黑乎乎的", group=GROUP, sender=sender, name=name, mention=True)
    assert any("哪个位置" in text for text in _room(asked)), asked

    # B → Rasa 2, without @: B knows the bot waits for this resident, Rasa 2 continues Rasa 1's form.
    filed = cluster.b.say("3号楼2单元", group=GROUP, sender=sender, name=name)
    room, to_worker = _room(filed), _to(filed, WORKER[0])
    assert len(room) == 1 and len(to_worker) == 1, filed
    number = TICKET_NUMBER.search(room[0]).group(0)  # type: ignore[union-attr]
    assert number in to_worker[0] and "3号楼2单元" in to_worker[0]

    # A: the worker resolves it; the resident is asked to rate in the group.
    done = cluster.a.say(f"办结 {number} 已更换灯泡", group=None, sender=WORKER[0], name=WORKER[1])
    assert any(number in text and "已办结" in text for text in _to(done, WORKER[0])), done
    assert any(text.startswith(f"@{name} ") and "满意" in text for text in _room(done)), done

    # B, without @: the rating B never asked for is recognised and recorded.
    rated = cluster.b.say("满意", group=GROUP, sender=sender, name=name)
    assert any("感谢" in text and number in text for text in _room(rated)), rated

    with cluster.factory() as session:
        [ticket] = session.scalars(select(Ticket).where(Ticket.reporter_id == sender)).all()
        assert (ticket.number, ticket.location, ticket.group_id) == (number, "3号楼2单元", GROUP)
        assert (ticket.status, ticket.rating, ticket.result) == ("closed", "满意", "已更换灯泡")
        assert [e.action for e in ticket.events] == ["submit", "dispatch", "resolve", "close"]


@pytest.mark.rasa
def test_request_lines_are_logged_only_where_asked_for(cluster: Cluster) -> None:
    """uvicorn's line per request (two per message) is off unless APP_ACCESS_LOG=true; the app's own records stay."""
    for chat in (cluster.a, cluster.b):
        chat.say("今天天气不错", group=GROUP, sender=f"resident-{uuid.uuid4().hex[:8]}", name="居民")
    with_lines, without = (log.read_text(encoding="utf-8", errors="replace") for log in cluster.logs)
    assert '"POST /api/v1/local/messages HTTP/1.1" 200' in with_lines
    assert "/api/v1/local/messages" not in without and "/webhook" not in without
    assert "Application startup complete" in without  # the process logged; only the request lines are gone


@pytest.mark.rasa
def test_redelivered_message_is_handled_once_across_apps(cluster: Cluster) -> None:
    sender, name = f"resident-{uuid.uuid4().hex[:8]}", "居民小李"
    payload = {
        "group_id": GROUP,
        "sender_id": sender,
        "sender_name": name,
        "text": "@网格助手 27号楼门口的路灯不亮了",
        "mentions_bot": True,
        "message_id": f"wx-{uuid.uuid4().hex}",
    }
    first = cluster.a.post(**payload)
    again = cluster.b.post(**payload)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert any(TICKET_NUMBER.search(text) for text in _room(first.json()["replies"])), first.json()
    assert again.json()["replies"] == []
    assert _count_tickets(cluster.factory, sender) == 1

    # The same redelivery arriving at both apps at the same moment: still exactly one of them handles it.
    racer = f"resident-{uuid.uuid4().hex[:8]}"
    payload |= {"sender_id": racer, "text": "@网格助手 28号楼门口的路灯不亮了", "message_id": f"wx-{uuid.uuid4().hex}"}
    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(lambda chat: chat.post(**payload), (cluster.a, cluster.b)))
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    assert sorted(bool(r.json()["replies"]) for r in responses) == [False, True], [r.json() for r in responses]
    assert _count_tickets(cluster.factory, racer) == 1


def test_a_message_for_a_channel_running_in_another_process_waits_for_that_process(
    session_factory: sessionmaker[Session],
) -> None:
    """wechaty lives in exactly one process: the others queue its messages but must not burn their attempts."""
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    here, there = RecordingPlatform(name="fakechat"), RecordingPlatform(name="otherchat")

    def dispatcher(platform: RecordingPlatform) -> Dispatcher:
        return Dispatcher(ChannelRegistry([platform]), session_factory, MemoryRateLimiter(), namespace, retry=FAST_RETRY)

    elsewhere, owner = dispatcher(there), dispatcher(here)
    contact = f"worker-{uuid.uuid4().hex[:8]}"
    message = OutgoingMessage(TargetType.CONTACT, contact, "工单已派给您", channel="fakechat")

    async def scenario() -> None:
        await elsewhere.send([message], origin="otherchat")
        for _ in range(FAST_RETRY.max_attempts + 1):
            await elsewhere.retry_due()
        with unit_of_work(session_factory) as session:
            [row] = session.scalars(select(OutboundMessage).where(OutboundMessage.target_id == contact)).all()
            assert (row.status, row.attempts) == (OutboundStatus.PENDING, 0)
        assert await owner.retry_due() >= 1

    asyncio.run(scenario())
    assert [(s.kind, s.target, s.text) for s in here.sent] == [("contact", contact, "工单已派给您")]
    assert there.sent == []
    with unit_of_work(session_factory) as session:
        row = session.scalars(select(OutboundMessage).where(OutboundMessage.target_id == contact)).one()
        assert (row.status, row.attempts) == (OutboundStatus.SENT, 1)
