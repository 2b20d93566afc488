"""Open311 GeoReport v2 on both databases, through the real app over HTTP: services, filing, lookups, filters
and the GeoReport error form. Needs no Rasa: nothing here goes through the chat."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.webchat import WebChatMessage
from bot.embedded import app_server, free_port
from bot.settings import Settings
from bot.texts import local_time
from grid.categories import load_categories
from grid.labels import status_note
from grid.service import Actor, TicketService
from grid.tickets import Ticket
from grid.workflow import Role
from storage.engine import unit_of_work
from tests.areas import Area

KEY = "test-key"
ADMIN = Actor("admin", Role.ADMIN)


@pytest.fixture(scope="module")
def api(database_url: str) -> Iterator[httpx.Client]:
    settings = Settings(database_url=database_url, rasa_url="http://127.0.0.1:9", app_port=free_port(), open311_api_keys=KEY)
    with app_server(settings) as url, httpx.Client(base_url=f"{url}/open311/v2", timeout=30) as client:
        yield client


def _place() -> str:
    """A place no other test reports at, so duplicate detection links only what a test means to link."""
    return f"幸福路{uuid.uuid4().hex[:6]}号"


def _post(api: httpx.Client, **fields: str) -> httpx.Response:
    form = {
        "api_key": KEY,
        "service_code": "municipal",
        "description": "路灯坏了，晚上一片漆黑",
        "address_string": _place(),
        "attribute[grid]": "grid-1",
        "account_id": "hotline-42",
        "first_name": "三",
        "last_name": "张",
        **fields,
    }
    return api.post("/requests.json", data=form)


def _created(response: httpx.Response) -> str:
    assert response.status_code == 201, response.text
    [created] = response.json()
    assert set(created) == {"service_request_id", "service_notice", "account_id"} and created["account_id"] is None
    return created["service_request_id"]


def _error(response: httpx.Response, status: int) -> list[str]:
    """The GeoReport error list, checked for form; returns the descriptions."""
    assert response.status_code == status, response.text
    errors = response.json()
    assert isinstance(errors, list) and errors and all(e["code"] == status and e["description"] for e in errors)
    return [e["description"] for e in errors]


def _w3(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def test_services_are_the_categories(api: httpx.Client) -> None:
    response = api.get("/services.json")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    services = response.json()
    assert [s["service_name"] for s in services] == [c.name for c in load_categories()]
    codes = [s["service_code"] for s in services]
    assert len(set(codes)) == len(codes) and all(code.isascii() for code in codes)
    municipal = next(s for s in services if s["service_name"] == "市政设施")
    assert municipal["service_code"] == "municipal" and municipal["metadata"] is False and municipal["type"] == "realtime"
    assert "路灯" in municipal["keywords"] and municipal["group"] and municipal["description"]
    assert "format not supported" in _error(api.get("/services.xml"), 400)[0]


def test_posted_request_is_dispatched_and_readable(api: httpx.Client, session_factory: sessionmaker[Session]) -> None:
    place = _place()
    filed = _post(api, address_string=place, description="井盖丢了，很危险")
    number = _created(filed)
    with session_factory() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        assert ticket is not None
        assert (ticket.grid_code, ticket.assignee_id, ticket.status) == ("grid-1", "worker-1", "dispatched")
        # the deadline written as residents and workers read it in the chat: one local_time (bot/texts)
        assert f"处理时限至{local_time(ticket.deadline_at)}" in filed.json()[0]["service_notice"]
        assert (ticket.category, ticket.location, ticket.group_id) == ("市政设施", place, None)
        assert (ticket.reporter_id, ticket.reporter_name) == ("open311:hotline-42", "张三")
    response = api.get(f"/requests/{number}.json")
    assert response.status_code == 200
    [request] = response.json()
    assert request["service_request_id"] == number and request["status"] == "open"
    assert (request["service_code"], request["service_name"]) == ("municipal", "市政设施")
    assert request["description"] == "井盖丢了，很危险" and request["address"] == place
    assert request["agency_responsible"] == "阳光社区第一网格"
    assert request["status_notes"] == status_note("dispatched") == "已派给网格员"  # grid/data/ticket_labels.yml
    assert request["lat"] is None and request["long"] is None
    requested = datetime.fromisoformat(request["requested_datetime"])
    assert abs(requested - datetime.now(UTC)) < timedelta(minutes=5)
    assert datetime.fromisoformat(request["expected_datetime"]) - requested == timedelta(hours=72)
    assert api.get(f"/requests/{number.lower()}.json").json()[0]["service_request_id"] == number


def test_json_body_is_accepted_too(api: httpx.Client, session_factory: sessionmaker[Session]) -> None:
    body = {
        "api_key": KEY,
        "service_code": "sanitation",
        "description": "垃圾桶满了没人清",
        "address_string": _place(),
        "attribute": {"grid": "grid-3"},
        "phone": 13800000000,
        "media_url": "https://media.example.org/12345/bin.jpg",
    }
    number = _created(api.post("/requests.json", json=body))
    with session_factory() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        assert ticket is not None and (ticket.assignee_id, ticket.category) == ("worker-3", "环境卫生")
        assert (ticket.reporter_id, ticket.reporter_name) == ("open311:13800000000", "12345热线")
        assert ticket.events[0].photos == ["https://media.example.org/12345/bin.jpg"]
    [shown] = api.get(f"/requests/{number}.json").json()
    assert shown["media_url"] == "https://media.example.org/12345/bin.jpg"
    bad = {**body, "media_url": "file:///etc/passwd", "address_string": _place()}
    assert any("media_url" in problem for problem in _error(api.post("/requests.json", json=bad), 400))


def test_api_key_is_required(api: httpx.Client) -> None:
    assert "invalid api_key" in _error(_post(api, api_key="wrong"), 403)[0]
    form = {"service_code": "municipal", "description": "路灯坏了", "address_string": _place(), "attribute[grid]": "grid-1"}
    assert "missing" in _error(api.post("/requests.json", data=form), 403)[0]


def test_post_is_refused_when_no_key_is_configured(database_url: str) -> None:
    settings = Settings(database_url=database_url, rasa_url="http://127.0.0.1:9", app_port=free_port())
    with app_server(settings) as url:
        response = httpx.post(f"{url}/open311/v2/requests.json", data={"api_key": "", "service_code": "municipal"})
    assert "disabled" in _error(response, 403)[0]


def test_unknown_service_grid_and_missing_fields_are_refused(api: httpx.Client, session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        before = len(list(session.scalars(select(Ticket.id))))
    assert "unknown service_code 'pothole'" in _error(_post(api, service_code="pothole"), 400)[0]
    assert "unknown grid 'grid-99'" in _error(_post(api, **{"attribute[grid]": "grid-99"}), 400)[0]
    problems = _error(_post(api, description=" ", address_string="", **{"attribute[grid]": ""}), 400)
    assert [p.split(" ")[0] for p in problems] == ["description", "address_string", "attribute[grid]"]
    assert "format not supported" in _error(api.post("/requests.xml", data={"api_key": KEY}), 400)[0]
    with session_factory() as session:
        assert len(list(session.scalars(select(Ticket.id)))) == before


def test_same_problem_same_place_returns_the_open_ticket(api: httpx.Client, session_factory: sessionmaker[Session]) -> None:
    place = _place()
    first = _created(_post(api, address_string=place, account_id="caller-a"))
    response = _post(api, address_string=place + "门口", account_id="caller-b", description="路灯还是不亮")
    assert _created(response) == first and first in response.json()[0]["service_notice"]
    with session_factory() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == first))
        assert ticket is not None and [r.reporter_id for r in ticket.co_reporters] == ["open311:caller-b"]
    assert _created(_post(api, address_string=place, service_code="noise", description="楼上装修太吵")) != first


def test_hotline_reports_of_one_problem_warn_the_lead(
    api: httpx.Client, session_factory: sessionmaker[Session], area: Area
) -> None:
    """Three 12345 callers report one problem in other words: the early warning runs after every filing, whatever
    the source, and its notice reaches the community's lead after the commit (here on the web chat)."""
    reports = [
        ("3号楼东侧的下水井盖丢了，晚上有人差点掉下去", "3号楼东侧"),
        ("三号楼东边井盖没了，路过的人小心", "三号楼东边"),
        ("3栋楼东侧下水道的盖子不见了，一个大窟窿", "3栋楼东侧"),
    ]
    for index, (description, place) in enumerate(reports):
        _created(
            _post(
                api,
                description=description,
                address_string=place,
                account_id=f"hotline-yw-{index}-{uuid.uuid4().hex[:6]}",
                **{"attribute[grid]": area.grid},
            )
        )
    with session_factory() as session:
        told = session.scalars(
            select(WebChatMessage.text).where(WebChatMessage.target_id == area.lead, WebChatMessage.direction == "out")
        ).all()
    assert len([text for text in told if text.startswith("【预警")]) == 1, told


def test_a_hotline_ticket_reaches_its_worker_in_chat(
    api: httpx.Client, session_factory: sessionmaker[Session], area: Area
) -> None:
    """A 12345 ticket is the worker's new ticket like a chat report: told privately after the commit (the web chat
    here); a second caller joining it tells nobody again."""
    place = _place()
    number = _created(_post(api, address_string=place, **{"attribute[grid]": area.grid}))
    _created(_post(api, address_string=place, account_id="hotline-43", **{"attribute[grid]": area.grid}))

    def told(person: str) -> list[str]:
        with session_factory() as session:
            return list(
                session.scalars(
                    select(WebChatMessage.text).where(WebChatMessage.target_id == person, WebChatMessage.direction == "out")
                ).all()
            )

    assert len([text for text in told(area.worker) if number in text]) == 1, told(area.worker)


def test_unknown_request_is_404(api: httpx.Client) -> None:
    assert "GD19990101-0001" in _error(api.get("/requests/GD19990101-0001.json"), 404)[0]
    assert api.get("/requests.json", params={"service_request_id": "GD19990101-0001"}).json() == []


def test_requests_filter_by_id_status_service_and_date(api: httpx.Client, session_factory: sessionmaker[Session]) -> None:
    open_number = _created(_post(api))
    closed_number = _created(_post(api, service_code="noise", description="广场舞音响太吵"))
    with unit_of_work(session_factory) as session:
        TicketService(session).cancel(closed_number, ADMIN, "居民来电撤诉")

    def numbers(**params: str) -> list[str]:
        response = api.get("/requests.json", params=params)
        assert response.status_code == 200, response.text
        return [r["service_request_id"] for r in response.json()]

    listed = numbers()
    assert open_number in listed and closed_number in listed
    assert open_number in numbers(status="open") and closed_number not in numbers(status="open")
    assert closed_number in numbers(status="closed") and open_number not in numbers(status="closed")
    assert set(numbers(status="open,closed")) >= {open_number, closed_number}
    assert open_number in numbers(service_code="municipal") and closed_number not in numbers(service_code="municipal")
    assert numbers(service_request_id=f"{closed_number},{open_number}") == [closed_number, open_number]
    [closed] = api.get(f"/requests/{closed_number}.json").json()
    assert closed["status"] == "closed" and closed["status_notes"] == "居民来电撤诉"

    now = datetime.now(UTC)
    assert open_number in numbers(start_date=_w3(now - timedelta(hours=1)), end_date=_w3(now + timedelta(hours=1)))
    assert open_number in numbers(start_date=_w3(now - timedelta(hours=1)))
    assert open_number not in numbers(start_date=_w3(now - timedelta(days=2)), end_date=_w3(now - timedelta(days=1)))
    assert open_number not in numbers(end_date=_w3(now - timedelta(days=1)))
    beijing = (now - timedelta(hours=1)).astimezone(timezone(timedelta(hours=8))).isoformat(timespec="seconds")
    assert open_number in numbers(start_date=beijing)
    assert open_number in numbers(start_date=beijing.replace("+", " "))  # an unencoded + arrives as a space

    assert "status" in _error(api.get("/requests.json", params={"status": "pending"}), 400)[0]
    assert "service_code" in _error(api.get("/requests.json", params={"service_code": "pothole"}), 400)[0]
    assert "ISO 8601" in _error(api.get("/requests.json", params={"start_date": "yesterday"}), 400)[0]
    assert "time zone" in _error(api.get("/requests.json", params={"start_date": "2026-01-01T00:00:00"}), 400)[0]
    wide = {"start_date": _w3(now - timedelta(days=200)), "end_date": _w3(now)}
    assert "90 days" in _error(api.get("/requests.json", params=wide), 400)[0]
    backwards = {"start_date": _w3(now), "end_date": _w3(now - timedelta(days=1))}
    assert "after" in _error(api.get("/requests.json", params=backwards), 400)[0]
