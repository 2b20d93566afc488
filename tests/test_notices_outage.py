"""Redis down under the live app: a notice is still accepted and planned (the database is the source of truth),
the outage is logged in words, nothing is sent meanwhile, and everything goes out exactly once when Redis is
back — even though a restarted Redis has forgotten every queued job. Uses a Redis server of its own.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import Settings
from tests.accounts import role_headers
from tests.notice_world import engine_for, notice_database, transcript_counts
from tests.own_services import REDIS_SERVER, OwnRedis
from tests.servers import app_server, free_port

pytestmark = pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="needs the redis-server binary")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[str, sessionmaker[Session]]]:
    with notice_database("sqlite", tmp_path) as url:
        engine, factory = engine_for(url)
        yield url, factory
        engine.dispose()


def _notice(title: str) -> dict[str, object]:
    return {"title": title, "body": "本周六上午社区广场有义诊。", "target": {"all": True}}


def _detail(client: httpx.Client, notice_id: int) -> dict[str, object]:
    return client.get(f"/api/v1/notices/{notice_id}").json()


def _wait_sent(client: httpx.Client, notice_id: int, expected: int, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        detail = _detail(client, notice_id)
        if detail["deliveries"]["sent"] == expected or time.monotonic() > deadline:  # type: ignore[index]
            return detail
        time.sleep(0.2)


def test_redis_down_keeps_notices_pending_and_sends_them_when_it_returns(
    own_redis: OwnRedis, world: tuple[str, sessionmaker[Session]], caplog: pytest.LogCaptureFixture
) -> None:
    url, factory = world
    settings = Settings(
        database_url=url,
        redis_url=own_redis.url,
        rasa_url=f"http://127.0.0.1:{free_port()}",
        app_port=free_port(),
        notice_namespace=f"gridbot-test-{uuid.uuid4().hex[:8]}",
        notice_sweep_seconds=0.5,
        notice_poll_seconds=0.05,
        notice_job_timeout_seconds=4,
        notice_rate_limits=json.dumps({"webchat": {"per_account": None, "per_group": None, "jitter_seconds": 0}}),
        kb_embedding_model="none",
    )
    caplog.set_level(logging.INFO)
    headers = role_headers(factory, "admin", name="社区")
    with app_server(settings) as base, httpx.Client(base_url=base, timeout=30, headers=headers) as client:
        before = client.post("/api/v1/notices", json=_notice("义诊（Redis 正常）")).json()
        assert before["queued"] is True
        assert _wait_sent(client, before["id"], 5, 20)["deliveries"]["sent"] == 5  # type: ignore[index]

        own_redis.stop()
        created = client.post("/api/v1/notices", json=_notice("义诊（Redis 停了）"))
        assert created.status_code == 201 and created.json()["queued"] is False
        notice_id = created.json()["id"]
        # Until the sweep has planned the notice and found it cannot queue the deliveries (it says so): what it
        # would have sent without Redis, it would have sent by then.
        deadline = time.monotonic() + 20
        while _detail(client, notice_id)["status"] != "sending" or "deliveries stay pending in the database" not in " ".join(
            r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
        ):
            assert time.monotonic() < deadline, "the sweep did not plan the notice and report it pending"
            time.sleep(0.1)
        waiting = _detail(client, notice_id)
        assert waiting["status"] == "sending"  # planned in the database by the sweep…
        assert waiting["deliveries"]["pending"] == 5 and waiting["deliveries"]["sent"] == 0  # type: ignore[index]
        assert all(count == 1 for count in transcript_counts(factory).values())  # …and nothing sent
        messages = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
        assert f"notice {notice_id} saved but not queued" in messages
        assert "deliveries stay pending in the database" in messages

        own_redis.start()  # empty: every queued job is gone; the sweep re-queues from the database
        after = _wait_sent(client, notice_id, 5, 45)
    assert after["deliveries"]["sent"] == 5, after  # type: ignore[index]
    assert set(transcript_counts(factory).values()) == {2}  # each group: the first notice and this one, once each
