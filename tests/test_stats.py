"""Ticket statistics on both databases: the figures of a period built ticket by ticket through the service, local-day
and local-week boundaries, what merged and cancelled tickets count for, and the HTTP API with its refusals.

Other modules file tickets in the same database at the current time, so the exact figures are asserted on March 2021
in grid-3, a slice only this module writes to; the default-range test works on differences it causes itself.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.embedded import app_server, free_port
from bot.settings import Settings
from grid.problems import most_said
from grid.ratings import Rating
from grid.service import LOCAL_TZ, Actor, TicketService
from grid.stats import UnknownGrid, iso_week, local_day_range, ticket_stats
from grid.workflow import Role
from storage.engine import unit_of_work
from tests.accounts import headers_for

WORKER3 = Actor("worker-3", Role.WORKER)  # on duty in grid-3, gets every report of demo-grid-3
FIRST_DAY, LAST_DAY = date(2021, 3, 1), date(2021, 3, 14)  # a Monday and the Sunday of the week after


def _local(day: int, hour: int, minute: int = 0) -> datetime:
    """A local (Asia/Shanghai) moment `day` days after FIRST_DAY."""
    return datetime(2021, 3, 1, hour, minute, tzinfo=LOCAL_TZ) + timedelta(days=day)


@dataclass(frozen=True)
class Report:
    text: str
    place: str
    created: datetime
    resolve_hours: float | None = None
    rating: Rating | None = None
    cancel: bool = False
    merge_into: str | None = None
    group: str = "demo-grid-3"


# Deadlines by category: 市政设施 (路灯) 72 h, 物业管理 (楼道灯) 48 h, 环境卫生 (垃圾) and 噪音扰民 (太吵) 24 h.
SCENARIO: dict[str, Report] = {
    "A": Report("路灯坏了", "5号楼 东侧", _local(0, 9), resolve_hours=10, rating=Rating.SATISFIED),
    "B": Report("路灯坏了", "5号楼东侧", _local(3, 9), resolve_hours=80, rating=Rating.MOSTLY_SATISFIED),  # late
    "C": Report("路灯又坏了", "5号楼东侧", _local(8, 9)),  # open, overdue
    "D": Report("垃圾没人清", "北门", _local(1, 9), resolve_hours=30, rating=Rating.UNSATISFIED),  # late, reopened
    "D2": Report("垃圾没人收", "北门", _local(11, 9)),  # open, overdue
    "E": Report("垃圾桶满了", "北门", _local(9, 9), cancel=True),
    "F": Report("楼道灯不亮", "3号楼", _local(10, 9), resolve_hours=2),
    "G": Report("楼道灯坏了", "3号楼", _local(10, 10), merge_into="F"),
    "H2": Report("装修太吵了", "7号楼", _local(12, 20), resolve_hours=5),
    "H": Report("楼上装修太吵", "7号楼", _local(13, 23, 30)),  # the last local evening of the period, open
    "I": Report("路灯坏了", "5号楼东侧", _local(14, 0, 30)),  # the next local day: outside
    "J": Report("路灯坏了", "5号楼东侧", _local(-1, 23, 59)),  # the local day before: outside
    "K": Report("路灯坏了", "9号楼", _local(5, 9), group="demo-grid-4"),  # inside, another grid
}

EXPECTED_GRID3: dict[str, Any] = {
    "total": 10,
    "excluded_from_rates": 2,  # E cancelled, G merged
    "by_week": [{"week": "2021-W09", "count": 3}, {"week": "2021-W10", "count": 7}],
    "resolved": 5,  # A B D F H2: D still counts, it reached 办结 before the resident reopened it
    "resolved_on_time": 3,
    "on_time_rate": 0.6,
    "rated": 3,
    "satisfied": 2,
    "by_rating": [{"rating": "满意", "count": 1}, {"rating": "基本满意", "count": 1}, {"rating": "不满意", "count": 1}],
    "average_handling_hours": (10 + 80 + 30 + 2 + 5) / 5,
    "overdue_now": 4,  # C D D2 H
    # One problem at one place, by meaning (grid/problems.py): 路灯又坏了 joins 路灯坏了; the summary is the shortest
    # wording without the place, and the count per ISO week says how often it came back.
    "top_recurring": [
        {
            "category": "市政设施",
            "location": "5号楼东侧",
            "count": 3,
            "summary": "路灯坏了",
            "weeks": [{"week": "2021-W09", "count": 2}, {"week": "2021-W10", "count": 1}],
        },
        # ties with 环境卫生 and sorts first by category
        {
            "category": "噪音扰民",
            "location": "7号楼",
            "count": 2,
            "summary": "装修太吵了",
            "weeks": [{"week": "2021-W10", "count": 2}],
        },
        # E is cancelled and not a third
        {
            "category": "环境卫生",
            "location": "北门",
            "count": 2,
            "summary": "垃圾没人清",
            "weeks": [{"week": "2021-W09", "count": 1}, {"week": "2021-W10", "count": 1}],
        },
    ],
}
NONZERO_CATEGORIES_GRID3 = {"市政设施": 3, "环境卫生": 3, "物业管理": 2, "噪音扰民": 2}


def _file(factory: sessionmaker[Session], report: Report, numbers: dict[str, str]) -> str:
    """File through the service, take the ticket through its life, then move it to the report's moment.

    The service stamps the current time; the statistics need exact past moments, so the timestamps are set
    last, keeping the deadline the category gave and the handling time the report asks for.
    """
    reporter = f"stats-{uuid.uuid4().hex[:8]}"
    with unit_of_work(factory) as session:
        service = TicketService(session)
        filing = service.file_report(
            group_id=report.group,
            reporter_id=reporter,
            reporter_name="居民",
            description=report.text,
            location=report.place,
            duplicate_window=timedelta(0),
        )
        assert not filing.duplicate
        ticket = filing.ticket
        deadline_span = ticket.deadline_at - ticket.created_at
        if report.resolve_hours is not None:
            service.accept(ticket.number, WORKER3)
            service.resolve(ticket.number, WORKER3, "已处理")
        if report.rating is not None:
            service.rate(reporter_id=reporter, group_id=report.group, rating=report.rating, comment=None)
        if report.cancel:
            service.cancel(ticket.number, Actor(reporter, Role.RESIDENT))
        if report.merge_into is not None:
            service.merge(ticket.number, numbers[report.merge_into], WORKER3)
        ticket.created_at = report.created.astimezone(UTC)
        ticket.deadline_at = ticket.created_at + deadline_span
        if report.resolve_hours is not None:
            ticket.resolved_at = ticket.created_at + timedelta(hours=report.resolve_hours)
        return ticket.number


@pytest.fixture(scope="module")
def scenario(session_factory: sessionmaker[Session]) -> dict[str, str]:
    """The March 2021 tickets, filed once per database; ticket numbers by report key."""
    numbers: dict[str, str] = {}
    for key, report in SCENARIO.items():
        numbers[key] = _file(session_factory, report, numbers)
    return numbers


@pytest.fixture(scope="module")
def api(database_url: str, session_factory: sessionmaker[Session]) -> Iterator[httpx.Client]:
    """The real app over HTTP on this database, as the demo's read-only viewer; Rasa is not needed for statistics."""
    settings = Settings(database_url=database_url, rasa_url="http://127.0.0.1:9", app_port=free_port())
    headers = headers_for(session_factory, "viewer")
    with app_server(settings) as url, httpx.Client(base_url=url, timeout=30, headers=headers) as client:
        yield client


def _as_dicts(items: Any) -> list[dict[str, Any]]:
    """As the API gives them: nested tuples become lists."""
    return json.loads(json.dumps([asdict(item) for item in items]))


def test_a_clusters_name_is_what_most_of_its_reports_say_the_first_on_a_tie() -> None:
    """One rule for the weekly report's recurring problems and the early warning's category (grid/problems.py)."""
    assert most_said(["市政设施", "环境卫生", "环境卫生"]) == "环境卫生"
    assert most_said(["环境卫生", "市政设施", "市政设施", "环境卫生"]) == "环境卫生"


def test_local_days_become_a_utc_half_open_range() -> None:
    start, end = local_day_range(FIRST_DAY, LAST_DAY)
    assert start == datetime(2021, 2, 28, 16, tzinfo=UTC) and end == datetime(2021, 3, 14, 16, tzinfo=UTC)
    assert iso_week(date(2021, 1, 3)) == "2020-W53" and iso_week(date(2026, 11, 25)) == "2026-W48"


def test_figures_of_a_grid_over_a_period(session_factory: sessionmaker[Session], scenario: dict[str, str]) -> None:
    start, end = local_day_range(FIRST_DAY, LAST_DAY)
    with session_factory() as session:
        stats = ticket_stats(session, start=start, end=end, grid_code="grid-3")
    assert stats.total == EXPECTED_GRID3["total"] and stats.excluded_from_rates == EXPECTED_GRID3["excluded_from_rates"]
    assert _as_dicts(stats.by_week) == EXPECTED_GRID3["by_week"]
    assert (stats.resolved, stats.resolved_on_time, stats.on_time_rate) == (5, 3, pytest.approx(0.6))
    assert (stats.rated, stats.satisfied, stats.satisfaction_rate) == (3, 2, pytest.approx(2 / 3))
    assert _as_dicts(stats.by_rating) == EXPECTED_GRID3["by_rating"]
    assert stats.average_handling_hours == pytest.approx(EXPECTED_GRID3["average_handling_hours"])
    assert stats.overdue_now == EXPECTED_GRID3["overdue_now"]
    assert _as_dicts(stats.top_recurring) == EXPECTED_GRID3["top_recurring"]
    categories = {c.category: c.count for c in stats.by_category}
    assert {k: v for k, v in categories.items() if v} == NONZERO_CATEGORIES_GRID3
    assert categories["违章搭建"] == 0 and "其他" in categories  # every category, so charts keep their axis
    # Most first; equal counts in the order of categories.yml, which puts safety first.
    assert [c.category for c in stats.by_category] == [
        *("市政设施", "环境卫生", "物业管理", "噪音扰民"),
        *("安全隐患", "水电气暖", "占道经营与市容", "邻里纠纷", "违章搭建", "其他", "咨询"),
    ]
    assert _as_dicts(stats.by_grid) == [{"grid_code": "grid-3", "grid_name": "和平社区第一网格", "count": 10}]


def test_overdue_is_judged_at_the_moment_asked(session_factory: sessionmaker[Session], scenario: dict[str, str]) -> None:
    start, end = local_day_range(FIRST_DAY, LAST_DAY)
    with session_factory() as session:
        # An hour after H was reported, its 24 h are still running; C, D and D2 are already late.
        early = ticket_stats(session, start=start, end=end, grid_code="grid-3", now=_local(14, 0, 30))
        assert early.overdue_now == 3
        assert ticket_stats(session, start=start, end=end, grid_code="grid-3", now=_local(0, 0)).overdue_now == 0


def test_every_grid_and_an_empty_period(session_factory: sessionmaker[Session], scenario: dict[str, str]) -> None:
    start, end = local_day_range(FIRST_DAY, LAST_DAY)
    with session_factory() as session:
        everywhere = ticket_stats(session, start=start, end=end, grid_code=None)
        empty_start, empty_end = local_day_range(date(2019, 12, 30), date(2020, 1, 12))
        empty = ticket_stats(session, start=empty_start, end=empty_end, grid_code="grid-3")
        with pytest.raises(UnknownGrid):
            ticket_stats(session, start=start, end=end, grid_code="grid-99")
    assert everywhere.total == 11
    counts = {g.grid_code: g.count for g in everywhere.by_grid}  # other test modules add grids of their own
    assert {code: n for code, n in counts.items() if n} == {"grid-3": 10, "grid-4": 1}
    assert counts["grid-1"] == counts["grid-2"] == 0
    assert everywhere.by_grid[0].grid_code == "grid-3"
    assert (empty.total, empty.on_time_rate, empty.satisfaction_rate, empty.average_handling_hours) == (0, None, None, None)
    assert (empty.overdue_now, empty.top_recurring, empty.excluded_from_rates) == (0, (), 0)
    assert _as_dicts(empty.by_week) == [{"week": "2020-W01", "count": 0}, {"week": "2020-W02", "count": 0}]
    assert [r.count for r in empty.by_rating] == [0, 0, 0]


def test_api_gives_the_figures(api: httpx.Client, scenario: dict[str, str]) -> None:
    response = api.get("/api/v1/stats", params={"from": "2021-03-01", "to": "2021-03-14", "grid": "grid-3"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"], body["grid"], body["timezone"]) == ("2021-03-01", "2021-03-14", "grid-3", "Asia/Shanghai")
    assert datetime.fromisoformat(body["start"]) == datetime(2021, 2, 28, 16, tzinfo=UTC)
    assert datetime.fromisoformat(body["end"]) == datetime(2021, 3, 14, 16, tzinfo=UTC)
    for key, value in EXPECTED_GRID3.items():
        assert body[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    assert body["satisfaction_rate"] == pytest.approx(2 / 3)
    assert {c["category"]: c["count"] for c in body["by_category"] if c["count"]} == NONZERO_CATEGORIES_GRID3
    assert body["by_grid"] == [{"grid_code": "grid-3", "grid_name": "和平社区第一网格", "count": 10}]

    everywhere = api.get("/api/v1/stats", params={"from": "2021-03-01", "to": "2021-03-14"}).json()
    assert everywhere["grid"] is None and everywhere["total"] == 11

    one_day = api.get("/api/v1/stats", params={"from": "2021-03-14", "to": "2021-03-14", "grid": "grid-3"}).json()
    assert one_day["total"] == 1 and one_day["by_week"] == [{"week": "2021-W10", "count": 1}]  # H, at 23:30 local


def test_api_refuses_a_backwards_range_an_unknown_grid_and_a_bad_date(api: httpx.Client) -> None:
    backwards = api.get("/api/v1/stats", params={"from": "2021-03-14", "to": "2021-03-01"})
    assert backwards.status_code == 422
    assert backwards.json()["detail"] == "'from' (2021-03-14) is after 'to' (2021-03-01): give the earlier day first"

    unknown = api.get("/api/v1/stats", params={"grid": "grid-99"})
    assert unknown.status_code == 404 and "unknown grid 'grid-99'" in unknown.json()["detail"]

    assert api.get("/api/v1/stats", params={"from": "2021-02-30"}).status_code == 422
    too_long = api.get("/api/v1/stats", params={"from": "2000-01-01", "to": "2021-01-01"})
    assert too_long.status_code == 422 and "at most" in too_long.json()["detail"]
    assert api.get("/api/v1/stats", params={"from": "9999-12-30", "to": "9999-12-31"}).status_code == 422


def test_api_default_is_the_last_30_local_days(api: httpx.Client, session_factory: sessionmaker[Session]) -> None:
    today = datetime.now(LOCAL_TZ).date()
    before = api.get("/api/v1/stats", params={"grid": "grid-3"}).json()
    assert (before["from"], before["to"]) == ((today - timedelta(days=29)).isoformat(), today.isoformat())
    explicit = api.get("/api/v1/stats", params={"grid": "grid-3", "from": before["from"], "to": before["to"]}).json()
    assert explicit == before

    noon = datetime.combine(today, datetime.min.time(), LOCAL_TZ) + timedelta(hours=12)
    for days_ago in (29, 30):  # the first day of the default range, and the day before it
        created = noon - timedelta(days=days_ago)
        _file(session_factory, Report("违建加盖了一层", f"{uuid.uuid4().hex[:6]}号楼", created), {})

    after = api.get("/api/v1/stats", params={"grid": "grid-3"}).json()
    assert after["total"] == before["total"] + 1
    category = {c["category"]: c["count"] for c in after["by_category"]}
    assert category["违章搭建"] == {c["category"]: c["count"] for c in before["by_category"]}["违章搭建"] + 1
    only_to = api.get("/api/v1/stats", params={"grid": "grid-3", "to": today.isoformat()}).json()
    assert only_to["total"] == after["total"] and only_to["from"] == after["from"]


def test_openapi_documents_the_stats_response(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    operation = spec["paths"]["/api/v1/stats"]["get"]
    assert operation["tags"] == ["stats"]
    assert [p["name"] for p in operation["parameters"]] == ["from", "to", "grid"]
    schema = spec["components"]["schemas"]["StatsOut"]
    assert {"from", "to", "on_time_rate", "satisfaction_rate", "top_recurring"} <= set(schema["properties"])
