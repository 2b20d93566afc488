"""The tickets REST API over a real HTTP server, on both databases: listing, detail with history, the loop's
actions with their refusals, and the chat notices those actions send. Each step is taken by the worker's own
account (the demo's worker accounts are named after the worker ids); who may see what is in test_auth.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.embedded import app_server, free_port
from bot.settings import Settings
from grid.service import TicketService
from storage.engine import unit_of_work
from tests.accounts import headers_for

As = Callable[[str], httpx.Client]


@pytest.fixture(scope="module")
def as_(database_url: str, session_factory: sessionmaker[Session]) -> Iterator[As]:
    """A client logged in (bearer token) as the named account, e.g. as_("worker-2") or as_("admin")."""
    settings = Settings(database_url=database_url, rasa_url=f"http://127.0.0.1:{free_port()}", app_port=free_port())
    clients: dict[str, httpx.Client] = {}

    def client(username: str) -> httpx.Client:
        if username not in clients:
            clients[username] = httpx.Client(base_url=url, timeout=30, headers=headers_for(session_factory, username))
        return clients[username]

    with app_server(settings) as url:
        yield client
        for open_client in clients.values():
            open_client.close()


@pytest.fixture(scope="module")
def api(as_: As) -> httpx.Client:
    return as_("admin")


def _new_ticket(factory: sessionmaker[Session], text: str = "路灯坏了") -> str:
    with unit_of_work(factory) as session:
        return (
            TicketService(session)
            .file_report(
                group_id="demo-grid-2",
                reporter_id=f"r-{uuid.uuid4().hex[:6]}",
                reporter_name="居民小李",
                description=text,
                location=f"{uuid.uuid4().hex[:6]}号楼",
            )
            .ticket.number
        )


def _act(client: httpx.Client, number: str, **body: object) -> httpx.Response:
    return client.post(f"/api/v1/tickets/{number}/actions", json=body)


def _inbox(api: httpx.Client, contact: str) -> list[str]:
    response = api.get("/api/v1/local/transcript", params={"target_type": "contact", "target_id": contact})
    return [m["text"] for m in response.json()["messages"]]


def test_detail_list_and_filters(api: httpx.Client, session_factory: sessionmaker[Session]) -> None:
    number = _new_ticket(session_factory)
    detail = api.get(f"/api/v1/tickets/{number}").json()
    assert detail["status"] == "dispatched" and detail["assignee_id"] == "worker-2" and not detail["overdue"]
    assert [e["action"] for e in detail["events"]] == ["submit", "dispatch"]
    listed = api.get("/api/v1/tickets", params={"grid": "grid-2", "status": "dispatched", "limit": 500}).json()
    assert number in [t["number"] for t in listed] and {t["grid_code"] for t in listed} == {"grid-2"}
    assert api.get("/api/v1/tickets/GD19990101-0001").status_code == 404


def test_transfer_notifies_the_new_worker_and_return_notifies_the_lead(
    api: httpx.Client, as_: As, session_factory: sessionmaker[Session]
) -> None:
    number = _new_ticket(session_factory)
    moved = _act(as_("worker-2"), number, action="transfer", target="孙丽", note="我今天休息")
    assert moved.status_code == 200 and moved.json()["assignee_id"] == "worker-5"
    assert moved.json()["events"][-1]["actor_id"] == "worker-2"  # the account's worker, not anything in the body
    assert any(number in text and "张敏" not in text and "转派" in text for text in _inbox(api, "worker-5"))
    back = _act(as_("worker-5"), number, action="return", note="不是我片区的")
    assert back.status_code == 200 and back.json()["status"] == "submitted"
    assert any(number in text and "不是我片区的" in text for text in _inbox(api, "lead-1"))


def test_refusals_have_reasons(api: httpx.Client, as_: As, session_factory: sessionmaker[Session]) -> None:
    number = _new_ticket(session_factory)
    not_mine = _act(as_("worker-5"), number, action="resolve", note="修好了")  # grid-2, but not the assignee
    assert not_mine.status_code == 403 and not_mine.json()["detail"]["code"] == "not_assignee"
    assert "不是派给您的" in not_mine.json()["detail"]["message"]
    missing = _act(as_("worker-2"), number, action="transfer")
    assert missing.status_code == 422 and "target worker" in missing.text
    assert _act(as_("worker-2"), number, action="resolve", note="修好了").status_code == 200
    again = _act(as_("worker-2"), number, action="accept")
    assert again.status_code == 409 and again.json()["detail"]["code"] == "invalid_transition"
    dept = _act(api, number, action="resolve", actor_id="d", actor_role="department")  # an admin acting for a department
    assert dept.status_code == 422 and "department_code" in dept.text
    assert _act(as_("worker-2"), "GD19990101-0001", action="accept").status_code == 404


def test_resolving_through_the_api_asks_the_resident_to_rate(
    api: httpx.Client, as_: As, session_factory: sessionmaker[Session]
) -> None:
    number = _new_ticket(session_factory)
    assert _act(as_("worker-2"), number, action="resolve", note="已更换灯泡").status_code == 200
    room = api.get("/api/v1/local/transcript", params={"target_type": "room", "target_id": "demo-grid-2"}).json()["messages"]
    asked = [m["text"] for m in room if number in m["text"]]
    assert asked and asked[-1].startswith("@居民小李 ") and "已更换灯泡" in asked[-1] and "满意" in asked[-1]


def test_result_photos_are_kept_with_the_step_and_sent_to_connectors(as_: As, session_factory: sessionmaker[Session]) -> None:
    from sqlalchemy import select

    from grid.outbox import OutboxMessage

    number = _new_ticket(session_factory)
    photos = ["https://media.example.org/gd/after-1.jpg", "media:7f3a"]
    worker = as_("worker-2")
    wrong = _act(worker, number, action="accept", photos=photos)
    assert wrong.status_code == 422 and "resolve" in wrong.text
    done = _act(worker, number, action="resolve", note="已更换灯泡", photos=photos)
    assert done.status_code == 200 and done.json()["events"][-1]["photos"] == photos
    assert _act(worker, number, action="resolve", note="x", photos=["p"] * 10).status_code == 422
    with session_factory() as session:
        payloads = session.scalars(select(OutboxMessage.payload).where(OutboxMessage.topic == "resolve")).all()
        assert any(p["ticket"]["number"] == number and p["photos"] == photos for p in payloads)


def test_viewers_see_residents_phone_and_room_numbers_masked(as_: As, session_factory: sessionmaker[Session]) -> None:
    with unit_of_work(session_factory) as session:
        number = (
            TicketService(session)
            .file_report(
                group_id="demo-grid-2",
                reporter_id=f"r-{uuid.uuid4().hex[:6]}",
                reporter_name="居民小李",
                description="楼道漏水 联系我13812345678",
                location=f"{uuid.uuid4().int % 90 + 10}号楼2单元301室",
            )
            .ticket.number
        )
    admin = as_("admin").get(f"/api/v1/tickets/{number}").json()
    viewer = as_("viewer").get(f"/api/v1/tickets/{number}").json()
    listed = {t["number"]: t for t in as_("viewer").get("/api/v1/tickets", params={"limit": 200}).json()}
    assert "13812345678" in admin["description"] and "301室" in admin["location"]
    assert "138****5678" in viewer["description"] and "13812345678" not in viewer["description"]
    assert viewer["location"].endswith("2单元***室")
    assert listed[number]["description"] == viewer["description"]
