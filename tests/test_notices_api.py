"""Notices over REST and the CLI against the live app (embedded default: jobs in-process, no Redis).

Refused requests (empty title, huge body, unknown codes, expiry before publish…) answer 422 with a code and
a Chinese sentence and write nothing; unknown notices are 404; cancelling a finished one is 409.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import PROJECT_ROOT, Settings
from grid.notices import Notice
from storage.base import utcnow
from tests.accounts import role_headers
from tests.notice_world import engine_for, notice_database, transcript_counts
from tests.servers import app_server, free_port

GRIDBOT = str(Path(sys.executable).parent / "gridbot")
NO_LIMITS = json.dumps({"webchat": {"per_account": None, "per_group": None, "jitter_seconds": 0}})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, sessionmaker[Session]]]:
    with notice_database("sqlite", tmp_path_factory.mktemp("notices-api")) as url:
        engine, factory = engine_for(url)
        yield url, factory
        engine.dispose()


@pytest.fixture(scope="module")
def api(world: tuple[str, sessionmaker[Session]]) -> Iterator[httpx.Client]:
    """The live app as an admin whose display name is recorded as the notices' author."""
    url, factory = world
    settings = Settings(
        database_url=url,
        redis_url=None,
        rasa_url=f"http://127.0.0.1:{free_port()}",
        app_port=free_port(),
        notice_sweep_seconds=0.3,
        notice_rate_limits=NO_LIMITS,
        kb_embedding_model="none",
    )
    headers = role_headers(factory, "admin", name="街道办小李")
    with app_server(settings) as base, httpx.Client(base_url=base, timeout=30, headers=headers) as client:
        yield client


def _notice(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "医保缴费提醒",
        "body": "2027年度城乡居民医保开始缴费，截止12月31日。",
        "target": {"all": True},
    }
    return body | overrides


def _wait_status(client: httpx.Client, notice_id: int, status: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        detail = client.get(f"/api/v1/notices/{notice_id}").json()
        if detail["status"] == status or time.monotonic() > deadline:
            return detail
        time.sleep(0.1)


def _count(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(Notice)) or 0


def test_create_deliver_list_detail_and_cancel(api: httpx.Client, world: tuple[str, sessionmaker[Session]]) -> None:
    _, factory = world
    created = api.post("/api/v1/notices", json=_notice(target={"tags": ["老年人多"]}, link="https://example.org/yb"))
    assert created.status_code == 201, created.text
    notice = created.json()
    assert notice["queued"] is True and notice["status"] in ("scheduled", "sending", "done")

    done = _wait_status(api, notice["id"], "done")
    assert done["status"] == "done" and done["deliveries"]["sent"] == 2
    assert {(g["group_id"], g["status"], g["attempts"]) for g in done["groups"]} == {
        ("demo-grid-1", "sent", 0),
        ("group-5", "sent", 0),
    }
    assert transcript_counts(factory).get("demo-grid-2", 0) == 0

    listed = api.get("/api/v1/notices", params={"status": "done"}).json()
    assert notice["id"] in [n["id"] for n in listed]
    only_failed = api.get(f"/api/v1/notices/{notice['id']}", params={"delivery_status": "failed"}).json()
    assert only_failed["groups"] == []

    assert notice["author"] == "街道办小李"  # the account's name, not a field of the body
    finished = api.post(f"/api/v1/notices/{notice['id']}/cancel")
    assert finished.status_code == 409 and finished.json()["detail"]["code"] == "notice_finished"

    later = (utcnow() + timedelta(hours=3)).isoformat()
    scheduled = api.post("/api/v1/notices", json=_notice(title="明天停水", publish_at=later)).json()
    assert scheduled["status"] == "scheduled"
    cancelled = api.post(f"/api/v1/notices/{scheduled['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cancelled_by"] == "街道办小李"
    again = api.post(f"/api/v1/notices/{scheduled['id']}/cancel")
    assert again.status_code == 409 and "撤回" in again.json()["detail"]["message"]


def test_unknown_notices_are_404(api: httpx.Client) -> None:
    assert api.get("/api/v1/notices/999999").status_code == 404
    response = api.post("/api/v1/notices/999999/cancel")
    assert response.status_code == 404 and response.json()["detail"]["code"] == "notice_not_found"


def test_naive_times_are_local_time(api: httpx.Client) -> None:
    response = api.post("/api/v1/notices", json=_notice(publish_at="2099-01-01T09:00:00", expires_at="2099-01-02T09:00:00"))
    assert response.status_code == 201
    assert response.json()["publish_at"].startswith("2099-01-01T01:00:00")  # 09:00 in Shanghai is 01:00 UTC


BAD = {
    "empty title": (_notice(title="   "), "empty_title"),
    "huge body": (_notice(body="补" * 20_000), None),
    "unknown street": (_notice(target={"streets": ["no-such-street"]}), "unknown_streets"),
    "community given as street": (_notice(target={"streets": ["demo-community-1"]}), "unknown_streets"),
    "unknown grid": (_notice(target={"grids": ["grid-1", "grid-99"]}), "unknown_grids"),
    "unknown tag": (_notice(target={"tags": ["没人用的标签"]}), "unknown_tags"),
    "no target": (_notice(target={}), "target_empty"),
    "all and places": (_notice(target={"all": True, "grids": ["grid-1"]}), "target_all_and_places"),
    "expiry before publish": (
        _notice(publish_at="2099-01-02T09:00:00+08:00", expires_at="2099-01-01T09:00:00+08:00"),
        "expires_before_publish",
    ),
    "expiry already past": (_notice(expires_at="2001-01-01T00:00:00+08:00"), "expires_before_publish"),
    "bad link": (_notice(link="javascript:alert(1)"), "bad_link"),
    "author in the body": (_notice(author="冒名的人"), None),  # the author is the logged-in account
    "unknown field": (_notice(priority="high"), None),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_422_and_writes_nothing(api: httpx.Client, world: tuple[str, sessionmaker[Session]], case: str) -> None:
    _, factory = world
    body, code = BAD[case]
    before = _count(factory)
    response = api.post("/api/v1/notices", json=body)
    assert response.status_code == 422, response.text
    if code is not None:
        assert response.json()["detail"]["code"] == code
        assert response.json()["detail"]["message"]  # a sentence the admin can act on
    assert _count(factory) == before


def _gridbot(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "DATABASE_URL", "NOTICE_"))}
    env |= {"DATABASE_URL": url, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([GRIDBOT, *args], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=120)


def test_cli_create_list_status_cancel_and_group_tags(api: httpx.Client, world: tuple[str, sessionmaker[Session]]) -> None:
    url, factory = world
    tagged = _gridbot(url, "group", "tags", "demo-grid-3", "独居老人", "老年人多")
    assert tagged.returncode == 0 and "独居老人、老年人多" in tagged.stdout, tagged.stderr

    made = _gridbot(
        url, "notice", "create", "--title", "独居老人走访", "--body", "本周社区上门走访独居老人。", "--tag", "独居老人",
        "--author", "社区王主任",
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    notice_id = int(made.stdout.split("notice ")[1].split()[0])
    assert "within" in made.stdout  # no Redis: the running app's sweep plans it

    done = _wait_status(api, notice_id, "done")  # the live app (same database) sends it
    assert [(g["group_id"], g["status"]) for g in done["groups"]] == [("demo-grid-3", "sent")]

    status = _gridbot(url, "notice", "status", str(notice_id))
    assert status.returncode == 0 and "demo-grid-3" in status.stdout and "sent" in status.stdout
    listed = _gridbot(url, "notice", "list")
    assert listed.returncode == 0 and "独居老人走访" in listed.stdout

    future = _gridbot(
        url, "notice", "create", "--title", "元旦活动", "--body", "元旦游园会。", "--grid", "grid-1",
        "--publish-at", "2099-01-01 09:00", "--author", "社区王主任",
    )  # fmt: skip
    future_id = int(future.stdout.split("notice ")[1].split()[0])
    cancelled = _gridbot(url, "notice", "cancel", str(future_id), "--by", "社区王主任")
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    refused = _gridbot(url, "notice", "cancel", str(future_id))
    assert refused.returncode == 2 and "撤回" in refused.stdout

    before = _count(factory)
    bad = _gridbot(url, "notice", "create", "--title", "x", "--body", "y", "--grid", "grid-77", "--author", "a")
    assert bad.returncode == 2 and "grid-77" in bad.stdout
    assert _count(factory) == before


def test_cli_worker_needs_redis(world: tuple[str, sessionmaker[Session]]) -> None:
    url, _ = world
    refused = _gridbot(url, "worker")
    assert refused.returncode == 2 and "REDIS_URL" in refused.stdout
