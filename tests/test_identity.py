"""Identity is proven, not claimed (docs/security.md): the web chat is off unless asked for and never acts as a worker of
another channel, Rasa's action endpoint answers only Rasa, and Rasa's own API answers only the app."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.app import create_app
from bot.demo import load_demo
from bot.rasa_tokens import ACTION_TOKEN_HEADER, action_token, rasa_token
from bot.settings import Settings
from grid.geography import Worker
from grid.service import TicketService
from grid.tickets import Ticket
from grid.workflow import Role
from storage.engine import unit_of_work
from tests.servers import Chat, action_call, app_server, free_port

GROUP, GRID, LEAD = "demo-grid-4", "grid-4", "lead-2"  # grid-4's on-duty worker is worker-4; lead-2 leads its community


@pytest.fixture
def wechat_worker(session_factory: sessionmaker[Session]) -> str:
    """A worker of grid-4 whose account is on personal WeChat (wechaty); off duty, so no other test's report reaches them."""
    worker_id = f"wxid_{uuid.uuid4().hex[:10]}"
    with unit_of_work(session_factory) as session:
        session.add(Worker(id=worker_id, name="微信网格员", grid_code=GRID, role="worker", on_duty=False, channel="wechaty"))
    return worker_id


def _ticket_held_by(factory: sessionmaker[Session], worker_id: str) -> str:
    """A report in grid-4, dispatched to worker-4, who transfers it to `worker_id`."""
    with unit_of_work(factory) as session:
        service = TicketService(session)
        filing = service.file_report(
            group_id=GROUP, reporter_id=f"resident-{uuid.uuid4().hex[:8]}", reporter_name="居民小赵",
            description="楼道灯坏了", location=f"{uuid.uuid4().hex[:6]}号楼",
        )  # fmt: skip
        number = filing.ticket.number
        service.transfer(number, service.actor_for("worker-4"), worker_id, "测试")
    return number


def _pooled_ticket(factory: sessionmaker[Session]) -> str:
    """A report in grid-4 that nobody holds: returned by worker-4, put in the grid's pool by the lead."""
    with unit_of_work(factory) as session:
        service = TicketService(session)
        filing = service.file_report(
            group_id=GROUP, reporter_id=f"resident-{uuid.uuid4().hex[:8]}", reporter_name="居民小赵",
            description="路灯不亮", location=f"{uuid.uuid4().hex[:6]}号路口",
        )  # fmt: skip
        number = filing.ticket.number
        service.return_ticket(number, service.actor_for("worker-4"), "测试")
        service.dispatch(number, service.actor_for(LEAD), None)
    return number


def _state(factory: sessionmaker[Session], number: str) -> tuple[str, str | None, list[str]]:
    with factory() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        assert ticket is not None
        return ticket.status, ticket.assignee_id, [e.action for e in ticket.events]


# --- the web chat is a demo channel: off unless asked for ------------------------------------------------------------


def test_the_web_chat_is_off_unless_enabled(database_url: str) -> None:
    """create_app's default, which `gridbot serve` uses: a public server does not let anyone play anyone."""
    settings = Settings(database_url=database_url, rasa_url=f"http://127.0.0.1:{free_port()}", kb_embedding_model="none")
    with TestClient(create_app(settings)) as client:
        message = {"group_id": GROUP, "sender_id": "worker-4", "sender_name": "赵磊", "text": "我的工单"}
        assert client.post("/api/v1/local/messages", json=message).status_code == 404
        transcript = {"target_type": "contact", "target_id": "worker-4"}
        assert client.get("/api/v1/local/transcript", params=transcript).status_code == 404
        assert client.get("/chat").status_code == 404
        assert client.get("/healthz").status_code == 200  # the app itself is up


# --- a worker acts only from the channel workers.channel names ------------------------------------------------------


@pytest.mark.rasa
def test_a_wechat_workers_id_typed_into_the_web_chat_cannot_act_for_them(
    chat: Chat, session_factory: sessionmaker[Session], wechat_worker: str
) -> None:
    held, pooled = _ticket_held_by(session_factory, wechat_worker), _pooled_ticket(session_factory)
    held_before, pooled_before = _state(session_factory, held), _state(session_factory, pooled)

    def says(text: str) -> list[str]:
        replies = chat.say(text, group=None, sender=wechat_worker, name="微信网格员")
        return [r["text"] for r in replies]

    listed = says("我的工单")
    assert listed and not any(held in text for text in listed), listed
    resolved = says(f"办结 {held} 已修好")
    assert not any("已办结" in text for text in resolved), resolved
    accepted = says(f"接单 {held}") + says(f"接单 {pooled}")
    assert not any("已接单" in text for text in accepted), accepted
    assert _state(session_factory, held) == held_before  # still transferred to them, nothing recorded
    assert _state(session_factory, pooled) == pooled_before  # still in the pool: nobody took it


@pytest.mark.rasa
def test_the_web_chat_does_not_show_a_wechat_workers_messages(app_url: str, wechat_worker: str) -> None:
    def transcript(contact: str) -> httpx.Response:
        return httpx.get(f"{app_url}/api/v1/local/transcript", params={"target_type": "contact", "target_id": contact})

    refused = transcript(wechat_worker)
    assert refused.status_code == 403 and "wechaty" in refused.json()["detail"], refused.text
    assert transcript("worker-4").status_code == 200  # demo workers are on the web chat: /chat keeps working
    offered = httpx.get(f"{app_url}/api/v1/local/demo").json()  # and the page offers only those to play
    assert "worker-4" in [w["worker_id"] for w in offered["workers"]]
    assert wechat_worker not in [w["worker_id"] for w in offered["workers"]] + [g["worker_id"] for g in offered["groups"]]


def test_the_claimed_channel_decides_the_role(session_factory: sessionmaker[Session], wechat_worker: str) -> None:
    with unit_of_work(session_factory) as session:
        service = TicketService(session)
        assert service.actor_for(wechat_worker, "wechaty").role is Role.WORKER
        assert service.actor_for(wechat_worker, "webchat").role is Role.RESIDENT
        assert service.actor_for("worker-4", "webchat").role is Role.WORKER
        assert service.actor_for("lead-2", "wecom").role is Role.RESIDENT
        assert service.actor_for(wechat_worker).role is Role.WORKER  # proven otherwise: a logged-in account


# --- Rasa's action endpoint answers only Rasa -------------------------------------------------------------------------


@pytest.fixture
def actions_app(database_url: str) -> Iterator[str]:
    """The app without Rasa: /webhook is called here the way Rasa calls it (or a stranger would)."""
    settings = Settings(
        database_url=database_url, rasa_url=f"http://127.0.0.1:{free_port()}", app_port=free_port(), kb_embedding_model="none"
    )
    with app_server(settings) as url:
        yield url


def _action_call(action: str, channel: str, sender: str, text: str = "我的工单") -> dict[str, Any]:
    metadata = {"channel": channel, "group_id": None, "sender_id": sender, "sender_name": "网格员"}
    latest = {"text": text, "intent": {"name": "worker_list", "confidence": 1.0}, "metadata": metadata}
    return action_call(action, f"{channel}:private:{sender}", latest)


def _listed(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return "\n".join(r.get("text") or "" for r in response.json()["responses"])


def test_the_action_endpoint_wants_rasas_token(
    actions_app: str, session_factory: sessionmaker[Session], wechat_worker: str
) -> None:
    number = _ticket_held_by(session_factory, wechat_worker)
    call = _action_call("action_worker_list", "wechaty", wechat_worker)
    with httpx.Client(base_url=actions_app, timeout=30) as client:
        missing = client.post("/webhook", json=call)
        wrong = client.post("/webhook", json=call, headers={ACTION_TOKEN_HEADER: "guess"})
        wrong_query = client.post("/webhook", json=call, params={"token": "guess"})
        assert (missing.status_code, wrong.status_code, wrong_query.status_code) == (401, 403, 403), missing.text
        assert number not in missing.text + wrong.text
        assert client.get("/actions").status_code == 401

        rasa = {ACTION_TOKEN_HEADER: action_token()}  # what write_endpoints gave this run's Rasa
        assert number in _listed(client.post("/webhook", json=call, headers=rasa))
        assert number in _listed(client.post("/webhook", json=call, params={"token": action_token()}))  # Rasa's `token:`
        # Even Rasa's call does not make the web chat a WeChat worker: the turn's channel decides.
        from_web_chat = _action_call("action_worker_list", "webchat", wechat_worker)
        assert number not in _listed(client.post("/webhook", json=from_web_chat, headers=rasa))
        assert client.get("/actions", headers=rasa).status_code == 200


def test_each_app_in_a_process_acts_on_its_own_services(
    actions_app: str, session_factory: sessionmaker[Session], wechat_worker: str, tmp_path: Path
) -> None:
    """The action services were a module global that every app started in the process replaced: after another app
    started (tests serve several from threads), Rasa's calls to the first ran on the other's database and duplicate
    rule — a resident's repeat report became a new ticket in the full test run."""
    number = _ticket_held_by(session_factory, wechat_worker)
    other_database = f"sqlite:///{tmp_path / 'other.db'}"
    load_demo(other_database, updated_by="test")
    other = Settings(
        database_url=other_database, rasa_url=f"http://127.0.0.1:{free_port()}", app_port=free_port(), kb_embedding_model="none"
    )
    call, rasa = _action_call("action_worker_list", "wechaty", wechat_worker), {ACTION_TOKEN_HEADER: action_token()}
    with app_server(other) as other_url:  # started after actions_app
        assert number in _listed(httpx.post(f"{actions_app}/webhook", json=call, headers=rasa, timeout=30))
        assert number not in _listed(httpx.post(f"{other_url}/webhook", json=call, headers=rasa, timeout=30))
    assert number in _listed(httpx.post(f"{actions_app}/webhook", json=call, headers=rasa, timeout=30))  # and after it


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b'{"next_action": "action_worker_list"}', "tracker"),
        (b'{"next_action": "action_worker_list", "tracker": "webchat:private:x"}', "tracker"),
        (b'{"next_action": "action_worker_list", "tracker": {}}', "sender_id"),
        (b'{"next_action": "action_worker_list", "tracker": {"sender_id": "a:b:c", "latest_message": []}}', "latest_message"),
        (b'{"next_action": "action_worker_list", "tracker": {"sender_id": "a:b:c", "events": {}}}', "events"),
        (b'{"tracker": {"sender_id": "a:b:c"}}', "next_action"),
    ],
)
def test_a_malformed_action_call_is_a_400_with_the_reason(actions_app: str, body: bytes, reason: str) -> None:
    headers = {ACTION_TOKEN_HEADER: action_token(), "content-type": "application/json"}
    response = httpx.post(f"{actions_app}/webhook", content=body, headers=headers, timeout=30)
    assert response.status_code == 400 and reason in response.json()["detail"], response.text


# --- Rasa's own HTTP API answers only the app ---------------------------------------------------------------------


@pytest.mark.rasa
def test_rasas_api_and_turn_channel_want_the_token(rasa_url: str) -> None:
    turn = {"sender": f"webchat:private:{uuid.uuid4().hex[:8]}", "message": "我的工单",
            "metadata": {"channel": "webchat", "sender_id": "worker-4", "sender_name": "赵磊"}}  # fmt: skip
    assert httpx.post(f"{rasa_url}/model/parse", json={"text": "你好"}, timeout=30).status_code == 401
    assert httpx.get(f"{rasa_url}/status", timeout=30).status_code == 401
    assert httpx.post(f"{rasa_url}/webhooks/gridbot/webhook", json=turn, timeout=30).status_code == 401
    wrong = httpx.post(f"{rasa_url}/webhooks/gridbot/webhook", json=turn, params={"token": "guess"}, timeout=30)
    assert wrong.status_code == 401
    token = {"token": rasa_token()}  # what the app's client sends (bot/rasa_client.py)
    parsed = httpx.post(f"{rasa_url}/model/parse", json={"text": "你好"}, params=token, timeout=30)
    assert parsed.status_code == 200 and parsed.json()["intent"]["name"]
