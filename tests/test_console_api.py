"""The REST endpoints the console added, over a real HTTP server on both databases: the pages' lists (meta),
groups and their bot settings, the weekly XLSX report, the statistics the charts need, and the pages' headers.
The pages themselves are driven in a browser by tests/test_console_browser.py.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from openpyxl import load_workbook
from sqlalchemy.orm import Session, sessionmaker

from bot.embedded import app_server, free_port
from bot.group_settings import GroupPolicies
from bot.settings import Settings
from bot.texts import action_name
from grid.clock import LOCAL_TZ
from grid.labels import labels
from grid.service import TicketService
from grid.stats import iso_week
from storage.engine import unit_of_work
from tests.accounts import headers_for

Factory = sessionmaker[Session]


@pytest.fixture(scope="module")
def base_url(database_url: str) -> Iterator[str]:
    settings = Settings(
        database_url=database_url, rasa_url=f"http://127.0.0.1:{free_port()}", app_port=free_port(), kb_embedding_model="none"
    )
    with app_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def clients(base_url: str, session_factory: Factory) -> Iterator[dict[str, httpx.Client]]:
    made = {
        name: httpx.Client(base_url=base_url, timeout=30, headers=headers_for(session_factory, name))
        for name in ("admin", "viewer", "worker-1")
    }
    yield made
    for client in made.values():
        client.close()


def _file(factory: Factory, location: str, description: str = "楼道灯坏了", grid: str = "grid-2") -> str:
    with unit_of_work(factory) as session:
        return (
            TicketService(session)
            .file_report(
                group_id=None,
                grid_code=grid,
                reporter_id=f"resident-{uuid.uuid4().hex[:6]}",
                reporter_name="居民",
                description=description,
                location=location,
            )
            .ticket.number
        )


def test_meta_lists_what_the_forms_offer(clients: dict[str, httpx.Client]) -> None:
    response = clients["viewer"].get("/api/v1/console/meta")
    assert response.status_code == 200, response.text
    meta = response.json()
    assert meta["statuses"]["resolved"] == "已办结待评价"
    # the chat's names (grid/data/ticket_labels.yml), not a table of the page's own
    assert meta["actions"] == dict(labels().actions) and meta["actions"]["reject"] == action_name("reject") == "审核退回"
    assert meta["actions"]["co_report"] == "其他居民反映" and meta["roles"]["lead"] == "社区负责人"
    assert "worker" in meta["transitions"]["resolve"]["roles"] and "dispatched" in meta["transitions"]["resolve"]["sources"]
    assert {g["code"] for g in meta["grids"]} >= {"grid-1", "grid-2"}
    assert any(w["id"] == "worker-1" for w in meta["workers"])
    assert "老年人多" in meta["tags"]
    assert httpx.get(f"{clients['viewer'].base_url}/api/v1/console/meta").status_code == 401


def test_admin_maps_a_group_and_sets_its_bot_settings(clients: dict[str, httpx.Client], session_factory: Factory) -> None:
    admin = clients["admin"]
    room = f"room-{uuid.uuid4().hex[:8]}@chatroom"
    created = admin.put(
        f"/api/v1/groups/{room}",
        json={"name": " 新小区群 ", "grid_code": "grid-2", "channel": "wechaty", "tags": ["独居老人", "独居老人"]},
    )
    assert created.status_code == 200, created.text
    assert created.json() | {"settings": None} == {
        "id": room, "name": "新小区群", "grid_code": "grid-2", "grid_name": created.json()["grid_name"], "channel": "wechaty",
        "tags": ["独居老人"], "settings": None,
    }  # fmt: skip
    moved = admin.put(f"/api/v1/groups/{room}", json={"name": "新小区群", "grid_code": "grid-3", "channel": "wechaty"})
    assert moved.json()["grid_code"] == "grid-3" and moved.json()["tags"] == []
    settings = {"prefixes": ["小网格", "#问"], "request_confidence": 0.92, "quiet_start": "22:00", "quiet_end": "07:00"}
    saved = admin.put(f"/api/v1/groups/{room}/settings", json=settings)
    assert saved.status_code == 200, saved.text
    assert saved.json()["settings"] == {**settings, "quiet_start": "22:00:00", "quiet_end": "07:00:00"}
    policy = GroupPolicies(session_factory, Settings(), ttl_seconds=0).for_group(room)  # what the router applies
    assert policy.strip_prefix("小网格 楼道灯坏了") == "楼道灯坏了" and policy.request_confidence == 0.92
    assert policy.is_quiet(datetime(2026, 11, 25, 23, 30, tzinfo=LOCAL_TZ))
    listed = clients["viewer"].get("/api/v1/groups", params={"grid": "grid-3"}).json()
    assert any(g["id"] == room and g["settings"]["prefixes"] == ["小网格", "#问"] for g in listed["groups"])
    assert listed["default_confidence"] == Settings().request_confidence
    cleared = admin.put(f"/api/v1/groups/{room}/settings", json={})
    assert cleared.json()["settings"] == {"prefixes": [], "request_confidence": None, "quiet_start": None, "quiet_end": None}


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/api/v1/groups/demo-grid-1", {"name": "x", "grid_code": "grid-404"}, 404, "unknown_grid"),
        ("/api/v1/groups/nobody-here/settings", {}, 404, "unknown_group"),
        ("/api/v1/groups/demo-grid-1/settings", {"quiet_start": "22:00"}, 422, "quiet_hours_half"),
        ("/api/v1/groups/bad%01id", {"name": "x", "grid_code": "grid-1"}, 422, "bad_group_id"),
        ("/api/v1/groups/demo-grid-1/settings", {"prefixes": ["a|b"]}, 422, None),
        ("/api/v1/groups/demo-grid-1/settings", {"request_confidence": 1.5}, 422, None),
        ("/api/v1/groups/demo-grid-1", {"name": "   ", "grid_code": "grid-1"}, 422, None),
    ],
)
def test_group_changes_are_refused_with_a_reason(
    clients: dict[str, httpx.Client], path: str, body: dict[str, object], status: int, code: str | None
) -> None:
    response = clients["admin"].put(path, json=body)
    assert response.status_code == status, response.text
    if code:
        assert response.json()["detail"]["code"] == code and response.json()["detail"]["message"]


def test_only_admins_change_groups(clients: dict[str, httpx.Client]) -> None:
    for name in ("viewer", "worker-1"):
        assert clients[name].put("/api/v1/groups/demo-grid-1/settings", json={}).status_code == 403
        assert clients[name].put("/api/v1/groups/demo-grid-1", json={"name": "x", "grid_code": "grid-1"}).status_code == 403


def test_the_weekly_report_is_a_workbook_of_the_weeks_tickets(clients: dict[str, httpx.Client], session_factory: Factory) -> None:
    number = _file(session_factory, f"{uuid.uuid4().int % 900 + 100}号楼1单元", description='=HYPERLINK("x") 电梯坏了')
    week = iso_week(datetime.now(LOCAL_TZ).date())
    response = clients["viewer"].get("/api/v1/reports/weekly", params={"week": week})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert f"weekly-report-{week}.xlsx" in response.headers["content-disposition"]
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["概览", "分类", "网格", "高发问题", "工单明细"]
    assert week in book["概览"]["A1"].value
    tickets = {row[0]: row for row in book["工单明细"].iter_rows(min_row=2, values_only=True)}
    assert number in tickets and tickets[number][6].endswith("电梯坏了")
    figures = {row[0]: row[1] for row in book["概览"].iter_rows(min_row=6, values_only=True)}
    assert figures["受理工单"] >= 1
    default = clients["admin"].get("/api/v1/reports/weekly")
    assert default.status_code == 200 and f"{week}.xlsx" in default.headers["content-disposition"]
    one_grid = clients["admin"].get("/api/v1/reports/weekly", params={"week": week, "grid": "grid-1"})
    grid_numbers = [
        row[0] for row in load_workbook(io.BytesIO(one_grid.content))["工单明细"].iter_rows(min_row=2, values_only=True)
    ]
    assert number not in grid_numbers  # filed in grid-2


@pytest.mark.parametrize(
    ("params", "status"), [({"week": "2026-W60"}, 422), ({"week": "last week"}, 422), ({"grid": "grid-404"}, 404)]
)
def test_weekly_report_refusals(clients: dict[str, httpx.Client], params: dict[str, str], status: int) -> None:
    assert clients["admin"].get("/api/v1/reports/weekly", params=params).status_code == status


def test_stats_give_volume_by_week_and_category_and_recurring_problems_per_grid(
    clients: dict[str, httpx.Client], session_factory: Factory
) -> None:
    place = f"{uuid.uuid4().int % 900 + 100}号楼3单元"
    first = _file(session_factory, place, grid="grid-4")
    with unit_of_work(session_factory) as session:
        service = TicketService(session)
        ticket = service.get(first)
        service.resolve(first, service.actor_for(ticket.assignee_id or "worker-5"), "已修好")
    second = _file(session_factory, place, grid="grid-4")  # the same problem again after it was handled
    assert second != first
    stats = clients["viewer"].get("/api/v1/stats", params={"grid": "grid-4"}).json()
    week = iso_week(datetime.now(LOCAL_TZ).date())
    this_week = {x["category"]: x["count"] for x in stats["by_category_week"] if x["week"] == week}
    assert this_week.get("物业管理", 0) >= 2
    assert sum(x["count"] for x in stats["by_category_week"]) == stats["total"]
    assert {"grid_code": "grid-4", "category": "物业管理", "location": place, "count": 2}.items() <= next(
        r for r in stats["recurring_by_grid"] if r["location"] == place
    ).items()


def test_console_pages_are_served_with_a_strict_policy(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        assert client.get("/").headers["location"] == "/console/"
        assert client.get("/console/").headers["location"] == "/console/tickets"
        page = client.get("/console/login")
        assert page.status_code == 200 and "网格助手" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert client.get("/console/nothing").status_code == 404
        script = client.get("/console/assets/common.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert "innerHTML" not in script.text
