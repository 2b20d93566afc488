"""Faults mid-conversation (docs/operations.md): a dependency goes away and comes back; nothing is lost or doubled.

This module runs a whole stack of its own — PostgreSQL and Redis servers it can restart, a Rasa server it can
kill, the app on its own port — because an outage test must never touch the servers other tests share.
Redis runs with an append-only file, as a deployment should: Rasa's conversation trackers live there.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from bot import rasa_process
from bot.deferred import DeferredMessage
from bot.demo import load_demo
from bot.embedded import app_server, free_port
from bot.settings import Settings
from bot.texts import text as t
from grid.tickets import Ticket
from storage.engine import make_engine, make_session_factory, unit_of_work
from tests.own_services import PG_BIN, REDIS_SERVER, OwnPostgres, OwnRedis

pytestmark = [
    pytest.mark.rasa,
    pytest.mark.skipif(not (Path(REDIS_SERVER).exists() and PG_BIN), reason="needs redis-server and PostgreSQL binaries"),
]
GROUP = "demo-grid-1"


@dataclass
class Stack:
    app_url: str
    rasa_url: str
    postgres: OwnPostgres
    redis: OwnRedis
    restart_rasa: Callable[[], None]
    kill_rasa: Callable[[], None]

    def factory(self):  # type: ignore[no-untyped-def]
        return make_session_factory(make_engine(self.postgres.url))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("faults")
    postgres = OwnPostgres()
    postgres.init()
    postgres.start()
    redis = OwnRedis(folder / "redis", persistent=True)
    (folder / "redis").mkdir()
    redis.start()
    load_demo(postgres.url, updated_by="test")
    app_port, rasa_port = free_port(), free_port()
    model = rasa_process.ensure_model()
    endpoints = rasa_process.write_endpoints(
        folder / "endpoints.yml", f"http://127.0.0.1:{app_port}/webhook", redis.url, key_prefix="faults"
    )
    rasa_url = f"http://127.0.0.1:{rasa_port}"
    processes: list[subprocess.Popen[bytes]] = []

    def start_rasa() -> None:
        process = rasa_process.start_rasa(model, rasa_port, endpoints, folder / "rasa.log")
        processes.append(process)
        rasa_process.wait_ready(rasa_url, process, timeout=240)

    def kill_rasa() -> None:
        processes[-1].send_signal(signal.SIGKILL)
        processes[-1].wait(timeout=30)

    start_rasa()
    settings = Settings(
        database_url=postgres.url,
        redis_url=redis.url,
        rasa_url=rasa_url,
        app_port=app_port,
        rasa_timeout_seconds=10,
        deferred_retry_seconds=1,
        outbound_retry_seconds=1,
    )
    try:
        with app_server(settings) as app_url:
            yield Stack(app_url, rasa_url, postgres, redis, start_rasa, kill_rasa)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        redis.stop()
        postgres.stop()


def _say(stack: Stack, sender: str, text: str, *, message_id: str | None = None, patience: float = 60) -> list[str]:
    """Post like the chat page does; while the app answers 503 (its database is down) try again, same message id."""
    payload = {
        "group_id": GROUP, "sender_id": sender, "sender_name": "居民", "text": text, "mentions_bot": True,
        "message_id": message_id or uuid.uuid4().hex,
    }
    deadline = time.monotonic() + patience
    while True:
        response = httpx.post(f"{stack.app_url}/api/v1/local/messages", json=payload, timeout=60)
        if response.status_code != 503 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            return [r["text"] for r in response.json()["replies"]]
        time.sleep(0.3)


def _tickets_of(stack: Stack, sender: str) -> list[Ticket]:
    factory = stack.factory()
    with unit_of_work(factory) as session:
        tickets = list(session.scalars(select(Ticket).where(Ticket.reporter_id == sender)))
        session.expunge_all()
    return tickets


def _held_statuses(stack: Stack, sender: str) -> list[str]:
    """The status of each message of `sender` that was held for Rasa (or noted and not yet settled)."""
    factory = stack.factory()
    with unit_of_work(factory) as session:
        return list(session.scalars(select(DeferredMessage.status).where(DeferredMessage.sender_id == sender)))


def _wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.5)


def test_postgres_restarted_while_tickets_are_filed_loses_and_doubles_nothing(stack: Stack) -> None:
    residents = [f"pg-{uuid.uuid4().hex[:6]}-{i}" for i in range(6)]
    places = ["1号楼", "2号楼", "3号楼", "5号楼", "6号楼", "8号楼"]
    errors: list[BaseException] = []

    def report(sender: str, place: str) -> None:
        try:
            message_id = uuid.uuid4().hex
            assert _say(stack, sender, f"{place}楼道灯坏了一个星期了", message_id=message_id)
            # The same message delivered again (a client retry after a timeout) is not a second report.
            assert _say(stack, sender, f"{place}楼道灯坏了一个星期了", message_id=message_id) == []
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=report, args=(r, p)) for r, p in zip(residents, places, strict=True)]
    for thread in threads[:3]:
        thread.start()
    stack.postgres.restart()
    for thread in threads[3:]:
        thread.start()
    stack.postgres.restart()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    for sender, place in zip(residents, places, strict=True):
        tickets = _tickets_of(stack, sender)
        assert len(tickets) == 1, (sender, [t.number for t in tickets])
        assert place in tickets[0].location


def test_rasa_killed_mid_conversation_resident_told_to_wait_then_served(stack: Stack) -> None:
    sender = f"rasa-{uuid.uuid4().hex[:6]}"
    asked = _say(stack, sender, "楼道里的灯坏了好几天了")
    assert asked and not _tickets_of(stack, sender)  # the bot asks where
    stack.kill_rasa()
    assert _say(stack, sender, "7号楼2单元") == [f"@居民 {t('router.rasa_down')}"]
    stack.restart_rasa()
    _wait_for(lambda: len(_tickets_of(stack, sender)) == 1, timeout=90)  # the held message is replayed
    [ticket] = _tickets_of(stack, sender)
    assert "7号楼" in ticket.location
    # Its replay is done, and a done message is never picked again: a second replay would have to come before.
    _wait_for(lambda: _held_statuses(stack, sender) == ["done"])
    assert len(_tickets_of(stack, sender)) == 1


def test_redis_restarted_mid_conversation_the_conversation_goes_on(stack: Stack) -> None:
    sender = f"redis-{uuid.uuid4().hex[:6]}"
    asked = _say(stack, sender, "路灯不亮了晚上特别黑")
    assert asked and not _tickets_of(stack, sender)
    stack.redis.stop()
    assert _say(stack, sender, "9号楼门口") == [f"@居民 {t('router.rasa_down')}"]  # Rasa's tracker store is down
    stack.redis.start()
    _wait_for(lambda: len(_tickets_of(stack, sender)) == 1, timeout=90)
    [ticket] = _tickets_of(stack, sender)
    assert "9号楼" in ticket.location
    follow_up = _say(stack, sender, "我的工单怎么样了")
    assert any(ticket.number in line for line in follow_up)


def test_every_held_message_is_answered_once(stack: Stack) -> None:
    """After the outages above, nothing is left held and nothing was replayed twice."""
    with unit_of_work(stack.factory()) as session:
        held = session.scalar(select(func.count()).select_from(DeferredMessage).where(DeferredMessage.status == "held"))
    assert held == 0
