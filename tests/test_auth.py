"""Accounts, sessions and per-route permissions over a real HTTP server, on both databases.

Passwords are argon2id; a browser logs in for an HttpOnly SameSite=Lax cookie and must send its CSRF token with
every change; scripts use bearer tokens; failed logins are throttled per username and per address (in memory and
in Redis); and every protected route refuses the roles it is not for — above all, a worker account neither sees
nor touches another grid's tickets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from bot.app import create_app
from bot.auth.accounts import AccountError, authenticate, create_account, session_principal, start_session
from bot.auth.demo import DEMO_PASSWORD
from bot.auth.models import Account, AccountSession, ApiToken
from bot.auth.secrets import hash_password, needs_rehash, token_hash, verify_password
from bot.embedded import app_server, free_port
from bot.settings import Settings
from grid.service import TicketService
from grid.tickets import Ticket
from storage.base import utcnow
from storage.engine import unit_of_work
from tests.accounts import PASSWORD, bearer, new_account, token_for
from tests.conftest import REDIS_URL

PROJECT_ROOT = Path(__file__).resolve().parent.parent
Factory = sessionmaker[Session]


def _settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "rasa_url": f"http://127.0.0.1:{free_port()}",
        "app_port": free_port(),
        "kb_embedding_model": "none",
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def base_url(database_url: str) -> Iterator[str]:
    with app_server(_settings(database_url)) as url:
        yield url


@pytest.fixture
def browser(base_url: str) -> Iterator[httpx.Client]:
    """A cookie jar of its own, like one browser."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


As = Callable[[str], httpx.Client]


@pytest.fixture(scope="module")
def as_(base_url: str, session_factory: Factory) -> Iterator[As]:
    """A client holding a bearer token of the named account (demo accounts: admin, viewer, worker-1, lead-1…)."""
    clients: dict[str, httpx.Client] = {}

    def client(username: str) -> httpx.Client:
        if username not in clients:
            clients[username] = httpx.Client(base_url=base_url, timeout=30, headers=bearer(token_for(session_factory, username)))
        return clients[username]

    yield client
    for open_client in clients.values():
        open_client.close()


def _login(client: httpx.Client, username: str, password: str = DEMO_PASSWORD) -> httpx.Response:
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def _ticket(factory: Factory, group: str) -> str:
    with unit_of_work(factory) as session:
        filing = TicketService(session).file_report(
            group_id=group,
            reporter_id=f"r-{uuid.uuid4().hex[:6]}",
            reporter_name="居民小赵",
            description="路灯坏了",
            location=f"{uuid.uuid4().hex[:6]}号楼",
        )
        return filing.ticket.number


# ---------------------------------------------------------------- passwords and accounts


def test_passwords_are_argon2id_and_checked_in_constant_shape() -> None:
    stored = hash_password("长城长城长城123")
    assert stored.startswith("$argon2id$") and "长城" not in stored
    assert verify_password(stored, "长城长城长城123")
    assert not verify_password(stored, "长城长城长城124")
    assert not verify_password(None, "长城长城长城123")  # unknown account: a real check's time, and False
    assert not verify_password("not a hash", "x")
    assert not needs_rehash(stored)
    assert hash_password("same") != hash_password("same")  # salted


def test_account_rules(session_factory: Factory) -> None:
    with unit_of_work(session_factory) as session:
        for kwargs, code in (
            ({"username": "has space", "role": "viewer"}, "bad_username"),
            ({"username": f"u{uuid.uuid4().hex[:6]}", "role": "boss"}, "bad_role"),
            ({"username": f"u{uuid.uuid4().hex[:6]}", "role": "viewer", "password": "short"}, "weak_password"),
            ({"username": "admin", "role": "admin"}, "username_taken"),
            ({"username": f"u{uuid.uuid4().hex[:6]}", "role": "worker"}, "worker_id_required"),
            ({"username": f"u{uuid.uuid4().hex[:6]}", "role": "worker", "worker_id": "worker-99"}, "unknown_worker"),
            ({"username": f"u{uuid.uuid4().hex[:6]}", "role": "viewer", "worker_id": "worker-1"}, "worker_id_not_allowed"),
        ):
            password = str(kwargs.pop("password", PASSWORD))
            with pytest.raises(AccountError) as refused:
                create_account(session, str(kwargs.pop("username")), password, str(kwargs.pop("role")), **kwargs)  # type: ignore[arg-type]
            assert refused.value.code == code
    username = new_account(session_factory, "worker", worker_id="worker-3")
    with unit_of_work(session_factory) as session:
        account = authenticate(session, username, PASSWORD)
        assert account is not None and account.display_name == "王芳" and account.worker_id == "worker-3"
        assert authenticate(session, username, PASSWORD + "x") is None
        assert authenticate(session, "nobody-" + username, PASSWORD) is None
        account.active = False
    with unit_of_work(session_factory) as session:
        assert authenticate(session, username, PASSWORD) is None  # disabled


# ---------------------------------------------------------------- browser sessions and CSRF


def test_login_me_csrf_and_logout(browser: httpx.Client, session_factory: Factory) -> None:
    assert browser.get("/api/v1/me").status_code == 401
    response = _login(browser, "lead-1")
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    assert "gridbot_session=" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    body = response.json()
    assert (body["username"], body["role"], body["worker_role"], body["auth"]) == ("lead-1", "worker", "lead", "session")
    assert body["grids"] == ["grid-1", "grid-2"]  # a lead: every grid of its community
    csrf = body["csrf_token"]
    token = browser.cookies["gridbot_session"]
    with session_factory() as session:  # only the hash is stored
        assert session.scalar(select(AccountSession).where(AccountSession.token_hash == token_hash(token))) is not None
        assert session.scalar(select(AccountSession).where(AccountSession.token_hash == token)) is None

    me = browser.get("/api/v1/me").json()
    assert me["display_name"] == "陈书记" and me["csrf_token"] == csrf

    # A change made with the cookie alone (what a forged form from another site would do) is refused.
    search = {"query": "高龄补贴怎么申请"}
    forged = browser.post("/api/v1/knowledge/search", json=search)
    assert forged.status_code == 403 and forged.json()["detail"]["code"] == "csrf_failed"
    assert "请刷新" in forged.json()["detail"]["message"] and "X-CSRF-Token" in forged.json()["detail"]["message"]
    altered = csrf[:-1] + ("1" if csrf.endswith("0") else "0")  # one character off (never the token itself)
    wrong = browser.post("/api/v1/knowledge/search", json=search, headers={"X-CSRF-Token": altered})
    assert wrong.status_code == 403
    assert browser.post("/api/v1/knowledge/search", json=search, headers={"X-CSRF-Token": csrf}).status_code == 200
    number = _ticket(session_factory, "demo-grid-2")
    triaged = browser.post(
        f"/api/v1/tickets/{number}/actions",
        json={"action": "triage", "colour": "red", "note": "电线裸露"},
        headers={"X-CSRF-Token": csrf},
    )
    assert triaged.status_code == 200 and triaged.json()["events"][-1]["actor_id"] == "lead-1"

    assert browser.post("/api/v1/auth/logout").status_code == 403  # logging someone out needs the token too
    # An HTML form (no JavaScript to set headers) sends the token as a field instead.
    assert browser.post("/api/v1/auth/logout", data={"csrf_token": csrf}).status_code == 204
    assert "gridbot_session" not in browser.cookies
    assert browser.get("/api/v1/me").status_code == 401
    # The old cookie, replayed after logout, opens nothing.
    replay = httpx.get(f"{browser.base_url}/api/v1/me", cookies={"gridbot_session": token}, timeout=30)
    assert replay.status_code == 401 and replay.json()["detail"]["code"] == "session_expired"


def test_form_login_for_server_rendered_pages(browser: httpx.Client) -> None:
    response = browser.post("/api/v1/auth/login", data={"username": "viewer", "password": DEMO_PASSWORD})
    assert response.status_code == 200 and response.json()["role"] == "viewer"
    other_site = browser.post(
        "/api/v1/auth/login",
        data={"username": "viewer", "password": DEMO_PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert other_site.status_code == 403 and other_site.json()["detail"]["code"] == "cross_site_login"


def test_sessions_expire(browser: httpx.Client, session_factory: Factory) -> None:
    assert _login(browser, "viewer").status_code == 200
    token = browser.cookies["gridbot_session"]
    assert browser.get("/api/v1/me").status_code == 200
    with unit_of_work(session_factory) as session:
        session.execute(
            update(AccountSession)
            .where(AccountSession.token_hash == token_hash(token))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    expired = browser.get("/api/v1/me")
    assert expired.status_code == 401 and "重新登录" in expired.json()["detail"]["message"]
    with unit_of_work(session_factory) as session:  # and at the use-case level, against a clock
        account = session.scalar(select(Account).where(Account.username == "viewer"))
        assert account is not None
        fresh, row = start_session(session, account, timedelta(hours=12))
        assert session_principal(session, fresh) is not None
        assert session_principal(session, fresh, now=row.expires_at) is None


def test_wrong_password_is_401_in_both_languages(browser: httpx.Client) -> None:
    response = _login(browser, "admin", "not-the-password")
    assert response.status_code == 401
    assert "用户名或密码错误" in response.json()["detail"]["message"] and "Wrong" in response.json()["detail"]["message"]
    assert "gridbot_session" not in browser.cookies
    assert browser.post("/api/v1/auth/login", json={"username": "admin"}).status_code == 422


# ---------------------------------------------------------------- login rate limit


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_failed_logins_lock_the_username_at_that_address_then_the_address(
    database_url: str, session_factory: Factory, redis_client: redis.Redis, store: str
) -> None:
    username = new_account(session_factory, "viewer")
    namespace = f"gridbot-test-{uuid.uuid4().hex[:8]}"
    shared = {"redis_url": REDIS_URL, "notice_namespace": namespace} if store == "redis" else {}
    settings = _settings(
        database_url, auth_login_max_failures=3, auth_login_max_failures_per_address=6, auth_login_window_seconds=600, **shared
    )
    with app_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(3):
            assert _login(client, username, "guess-guess").status_code == 401
        locked = _login(client, username, PASSWORD)  # even the right password, while locked
        assert locked.status_code == 429
        assert "登录失败次数过多" in locked.json()["detail"]["message"] and "10分钟" in locked.json()["detail"]["message"]
        assert 0 < int(locked.headers["retry-after"]) <= 600
        assert _login(client, "viewer").status_code == 200  # other accounts are not locked out by it

        # The address: guesses spread over many usernames add up (3 above + 3 here = 6).
        for i in range(3):
            assert _login(client, f"{username}-{i}", "guess-guess").status_code == 401
        assert _login(client, "viewer").status_code == 429
    counted = redis_client.get(f"{namespace}:auth:login:user:{username}:addr:127.0.0.1")
    assert counted == (b"3" if store == "redis" else None)  # shared by every app process through Redis


def test_a_successful_login_resets_the_username_count(database_url: str, session_factory: Factory) -> None:
    username = new_account(session_factory, "viewer")
    settings = _settings(database_url, auth_login_max_failures=3, auth_login_max_failures_per_address=100)
    with app_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(2):
            assert _login(client, username, "typo-typo").status_code == 401
        assert _login(client, username, PASSWORD).status_code == 200
        for _ in range(2):
            assert _login(client, username, "typo-typo").status_code == 401
        assert _login(client, username, PASSWORD).status_code == 200


# ---------------------------------------------------------------- lockout cannot be turned against the owner
# In-process (the app's own lifespan, no socket): each request's TCP peer is set from X-Test-Peer, standing in for
# clients at other addresses, which a test on one machine cannot open connections from.


@contextmanager
def _peers(settings: Settings) -> Iterator[Callable[..., httpx.Response]]:
    app = create_app(settings)

    async def with_peer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (peer := dict(scope["headers"]).get(b"x-test-peer")):
            scope = {**scope, "client": (peer.decode(), 40000)}
        await app(scope, receive, send)

    with TestClient(with_peer) as client:

        def login(username: str, password: str, peer: str, **headers: str) -> httpx.Response:
            sent = {"x-test-peer": peer} | {name.replace("_", "-"): value for name, value in headers.items()}
            return client.post("/api/v1/auth/login", json={"username": username, "password": password}, headers=sent)

        yield login


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_guessing_at_admin_from_one_address_does_not_lock_the_owner_out(database_url: str, store: str) -> None:
    """Behind the proxy (TRUSTED_PROXIES=127.0.0.1): nginx appends the address it saw to X-Forwarded-For."""
    shared = {"redis_url": REDIS_URL, "notice_namespace": f"gridbot-test-{uuid.uuid4().hex[:8]}"} if store == "redis" else {}
    settings = _settings(database_url, trusted_proxies="127.0.0.1", auth_login_max_failures=5, **shared)
    with _peers(settings) as login:
        # The attacker writes an address of its own choosing first; nginx adds the one it really came from.
        attacker = {"x_forwarded_for": "10.9.9.9, 203.0.113.66"}
        tries = [login("admin", "guess-guess", "127.0.0.1", **attacker).status_code for _ in range(7)]
        assert tries == [401] * 5 + [429] * 2
        assert login("admin", DEMO_PASSWORD, "127.0.0.1", **attacker).status_code == 429  # locked there, right or not
        # The owner, from another address, is not locked out: not by the attacker, not by the attacker naming it.
        assert login("admin", DEMO_PASSWORD, "127.0.0.1", x_forwarded_for="198.51.100.7").status_code == 200
        assert login("admin", DEMO_PASSWORD, "127.0.0.1", x_real_ip="198.51.100.8").status_code == 200
        assert login("admin", "guess-guess", "127.0.0.1", x_forwarded_for="198.51.100.7, 203.0.113.66").status_code == 429


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(database_url: str) -> None:
    """TRUSTED_PROXIES unset (the default): X-Forwarded-For and X-Real-IP are whatever the client wrote."""
    settings = _settings(database_url, auth_login_max_failures=3, auth_login_max_failures_per_address=6)
    with _peers(settings) as login:
        tries = [
            login("admin", "guess-guess", "203.0.113.66", x_forwarded_for=f"10.0.0.{i}", x_real_ip=f"10.1.0.{i}").status_code
            for i in range(4)
        ]
        assert tries == [401] * 3 + [429]  # a new made-up address each time changed nothing: counted by the peer
        for i in range(3):  # other usernames from the same peer use up its budget for all usernames
            assert login(f"nobody-{i}", "guess-guess", "203.0.113.66", x_forwarded_for=f"10.2.0.{i}").status_code == 401
        assert login("viewer", DEMO_PASSWORD, "203.0.113.66", x_forwarded_for="198.51.100.7").status_code == 429
        # Another peer, even one the attacker claimed to be, logs in.
        assert login("admin", DEMO_PASSWORD, "198.51.100.7").status_code == 200
        assert login("viewer", DEMO_PASSWORD, "10.0.0.1").status_code == 200



def test_the_served_app_does_not_believe_a_local_peers_forwarded_for(database_url: str, session_factory: Factory) -> None:
    """Over a real socket from 127.0.0.1: uvicorn's own proxy handling (which believes X-Forwarded-For from any local
    peer) is off, so a made-up address per guess does not buy a fresh budget; TRUSTED_PROXIES alone decides."""
    username = new_account(session_factory, "viewer")
    settings = _settings(database_url, auth_login_max_failures=3, auth_login_max_failures_per_address=100)
    with app_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        tries = [
            client.post(
                "/api/v1/auth/login",
                json={"username": username, "password": "guess-guess"},
                headers={"x-forwarded-for": f"198.51.100.{i}"},
            ).status_code
            for i in range(4)
        ]
        assert tries == [401] * 3 + [429]

# ---------------------------------------------------------------- bearer tokens


def test_bearer_tokens(base_url: str, session_factory: Factory) -> None:
    username = new_account(session_factory, "admin", name="脚本")
    token = token_for(session_factory, username)
    assert token.startswith("gbt_")
    with httpx.Client(base_url=base_url, timeout=30, headers=bearer(token)) as client:
        me = client.get("/api/v1/me").json()
        assert (me["username"], me["auth"], me["csrf_token"]) == (username, "token", None)
        # No CSRF token needed: a browser never attaches an Authorization header by itself.
        assert client.post("/api/v1/knowledge/search", json={"query": "低保"}).status_code == 200
    with session_factory() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
        assert row is not None and row.last_used_at is not None
    with unit_of_work(session_factory) as session:
        session.execute(update(ApiToken).where(ApiToken.token_hash == token_hash(token)).values(revoked_at=utcnow()))
    revoked = httpx.get(f"{base_url}/api/v1/me", headers=bearer(token), timeout=30)
    assert revoked.status_code == 401 and revoked.json()["detail"]["code"] == "bad_token"
    assert httpx.get(f"{base_url}/api/v1/me", headers=bearer("gbt_made-up"), timeout=30).status_code == 401


def test_not_logged_in_is_401_in_chinese_and_english_and_open_routes_stay_open(base_url: str) -> None:
    for method, path in (
        ("GET", "/api/v1/tickets"),
        ("GET", "/api/v1/tickets/GD20260101-0001"),
        ("POST", "/api/v1/tickets/GD20260101-0001/actions"),
        ("GET", "/api/v1/stats"),
        ("POST", "/api/v1/knowledge/search"),
        ("GET", "/api/v1/knowledge/entries"),
        ("GET", "/api/v1/knowledge/export"),
        ("POST", "/api/v1/knowledge/import"),
        ("GET", "/api/v1/notices"),
        ("POST", "/api/v1/notices"),
        ("GET", "/api/v1/me"),
    ):
        response = httpx.request(method, f"{base_url}{path}", timeout=30)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        message = response.json()["detail"]["message"]
        assert "请先登录" in message and "Not logged in" in message
    assert httpx.get(f"{base_url}/healthz", timeout=30).status_code == 200
    assert httpx.get(f"{base_url}/chat", timeout=30).status_code == 200
    assert httpx.get(f"{base_url}/open311/v2/services.json", timeout=30).status_code == 200
    transcript = {"target_type": "room", "target_id": "demo-grid-1"}
    assert httpx.get(f"{base_url}/api/v1/local/transcript", params=transcript, timeout=30).status_code == 200


# ---------------------------------------------------------------- roles


def test_viewer_reads_and_changes_nothing(as_: As, session_factory: Factory) -> None:
    viewer = as_("viewer")
    number = _ticket(session_factory, "demo-grid-3")
    assert viewer.get(f"/api/v1/tickets/{number}").status_code == 200
    assert number in [t["number"] for t in viewer.get("/api/v1/tickets", params={"limit": 500}).json()]
    assert viewer.get("/api/v1/stats").status_code == 200
    assert viewer.get("/api/v1/notices").status_code == 200
    assert viewer.post("/api/v1/knowledge/search", json={"query": "低保"}).status_code == 200
    refused = viewer.post(f"/api/v1/tickets/{number}/actions", json={"action": "cancel", "note": "x"})
    assert refused.status_code == 403 and refused.json()["detail"]["code"] == "forbidden_role"
    assert "只读账号" in refused.json()["detail"]["message"]
    for method, path in (
        ("GET", "/api/v1/knowledge/entries"),
        ("GET", "/api/v1/knowledge/export"),
        ("GET", "/api/v1/knowledge/questions?kind=unanswered"),
        ("POST", "/api/v1/knowledge/questions/1/handled"),
        ("DELETE", "/api/v1/knowledge/entries/1"),
        ("POST", "/api/v1/notices/1/cancel"),
    ):
        assert viewer.request(method, path).status_code == 403, (method, path)
    notice = {"title": "停水通知", "body": "明天停水。", "target": {"all": True}}
    assert viewer.post("/api/v1/notices", json=notice).status_code == 403
    with session_factory() as session:
        assert session.scalar(select(Ticket.status).where(Ticket.number == number)) == "dispatched"


def test_workers_are_not_admins(as_: As) -> None:
    worker = as_("worker-1")
    assert worker.get("/api/v1/knowledge/entries").status_code == 403
    assert worker.get("/api/v1/knowledge/questions", params={"kind": "unanswered"}).status_code == 403
    assert worker.post("/api/v1/notices", json={"title": "t", "body": "b", "target": {"all": True}}).status_code == 403
    assert worker.get("/api/v1/notices").status_code == 200 and worker.get("/api/v1/stats").status_code == 200


def test_a_worker_neither_sees_nor_touches_another_grids_tickets(as_: As, session_factory: Factory) -> None:
    """worker-1 works grid-1; a grid-2 ticket is invisible and untouchable to it, whatever it puts in the body."""
    mine, theirs = _ticket(session_factory, "demo-grid-1"), _ticket(session_factory, "demo-grid-2")
    worker = as_("worker-1")

    assert worker.get(f"/api/v1/tickets/{mine}").status_code == 200
    hidden = worker.get(f"/api/v1/tickets/{theirs}")
    assert hidden.status_code == 403 and hidden.json()["detail"]["code"] == "not_your_grid"
    assert "不在您负责的网格" in hidden.json()["detail"]["message"]
    listed = worker.get("/api/v1/tickets", params={"limit": 500}).json()
    assert mine in [t["number"] for t in listed] and theirs not in [t["number"] for t in listed]
    assert {t["grid_code"] for t in listed} == {"grid-1"}
    assert worker.get("/api/v1/tickets", params={"grid": "grid-2"}).status_code == 403
    assert worker.get("/api/v1/tickets", params={"assignee": "worker-2"}).json() == []

    for body in (
        {"action": "accept"},
        {"action": "resolve", "note": "修好了"},
        {"action": "transfer", "target": "张敏", "note": "我来"},
        {"action": "triage", "colour": "blue", "note": "不急"},
    ):
        refused = worker.post(f"/api/v1/tickets/{theirs}/actions", json=body)
        assert refused.status_code == 403 and refused.json()["detail"]["code"] == "not_your_grid", body
    merged = worker.post(f"/api/v1/tickets/{mine}/actions", json={"action": "merge", "target": theirs})
    assert merged.status_code == 403  # nor fold its own ticket into another grid's
    # Claiming to be another worker (or a department) is for admins only.
    posing = worker.post(f"/api/v1/tickets/{theirs}/actions", json={"action": "resolve", "note": "x", "actor_id": "worker-2"})
    assert posing.status_code == 403 and posing.json()["detail"]["code"] == "act_for_others"
    dept = {"action": "resolve", "note": "x", "actor_id": "d", "actor_role": "department", "department_code": "dept-urban"}
    assert worker.post(f"/api/v1/tickets/{mine}/actions", json=dept).status_code == 403

    with session_factory() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == theirs))
        assert ticket is not None and (ticket.status, ticket.assignee_id, ticket.colour) == ("dispatched", "worker-2", "yellow")
        assert [e.action for e in ticket.events] == ["submit", "dispatch"]

    # Its own grid's ticket, it handles; grid-2's own worker handles that one.
    assert worker.post(f"/api/v1/tickets/{mine}/actions", json={"action": "accept"}).status_code == 200
    assert as_("worker-2").post(f"/api/v1/tickets/{theirs}/actions", json={"action": "accept"}).status_code == 200


def test_a_lead_works_its_communitys_grids_and_an_admin_everything(as_: As, session_factory: Factory) -> None:
    grid2, grid3 = _ticket(session_factory, "demo-grid-2"), _ticket(session_factory, "demo-grid-3")
    lead = as_("lead-1")  # 阳光社区: grid-1 and grid-2
    assert lead.get(f"/api/v1/tickets/{grid2}").status_code == 200
    assert lead.get(f"/api/v1/tickets/{grid3}").status_code == 403
    assert {t["grid_code"] for t in lead.get("/api/v1/tickets", params={"limit": 500}).json()} <= {"grid-1", "grid-2"}
    triage = {"action": "triage", "colour": "red", "note": "有安全隐患"}
    assert lead.post(f"/api/v1/tickets/{grid2}/actions", json=triage).status_code == 200
    assert lead.post(f"/api/v1/tickets/{grid3}/actions", json=triage).status_code == 403

    admin = as_("admin")
    assert admin.get(f"/api/v1/tickets/{grid3}").status_code == 200
    done = admin.post(f"/api/v1/tickets/{grid3}/actions", json=triage)
    assert done.status_code == 200 and done.json()["events"][-1]["actor_role"] == "admin"
    assert done.json()["events"][-1]["actor_id"] == "admin"
    # An admin may record a step for someone else, e.g. the grid's worker who phoned it in.
    for_worker = admin.post(f"/api/v1/tickets/{grid3}/actions", json={"action": "accept", "actor_id": "worker-3"})
    assert for_worker.status_code == 200 and for_worker.json()["events"][-1]["actor_id"] == "worker-3"


# ---------------------------------------------------------------- command line


def test_cli_creates_lists_and_issues_tokens(database_url: str, base_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200"}
    username = f"cli-{uuid.uuid4().hex[:6]}"

    def gridbot(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "bot.cli", "user", *args]
        return subprocess.run(command, cwd=PROJECT_ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=120)

    password = "一二三四五六七八\n"
    made = gridbot("create", username, "--role", "worker", "--worker-id", "worker-4", "--password-stdin", stdin=password)
    assert made.returncode == 0, made.stdout + made.stderr
    assert f"created worker account {username} (赵磊, acts as worker worker-4)" in made.stdout
    again = gridbot("create", username, "--role", "viewer", "--password-stdin", stdin="一二三四五六七八\n")
    assert again.returncode == 1 and "already an account" in again.stdout
    weak = gridbot("create", username + "x", "--role", "viewer", "--password-stdin", stdin="123\n")
    assert weak.returncode == 1 and "at least 8" in weak.stdout
    listed = gridbot("list")
    assert listed.returncode == 0 and username in listed.stdout and "worker-4" in listed.stdout and "admin" in listed.stdout

    issued = gridbot("token", username, "--label", "nightly export")
    assert issued.returncode == 0, issued.stdout + issued.stderr
    token = issued.stdout.strip().splitlines()[-1]
    assert token.startswith("gbt_")
    me = httpx.get(f"{base_url}/api/v1/me", headers=bearer(token), timeout=30).json()
    assert (me["username"], me["worker_id"], me["grids"]) == (username, "worker-4", ["grid-4"])

    with httpx.Client(base_url=base_url, timeout=30) as client:
        assert _login(client, username, "一二三四五六七八").status_code == 200
    assert gridbot("token", "nobody-" + username).returncode == 1


def test_demo_accounts_are_there_once_and_announced(database_url: str, session_factory: Factory) -> None:
    from bot.auth.demo import ensure_demo_accounts
    from bot.demo import demo_login_text

    with unit_of_work(session_factory) as session:
        assert ensure_demo_accounts(session) == 0  # loading the demo again creates nothing, resets nothing
        demo = {a.username: a for a in session.scalars(select(Account))}
        assert (demo["admin"].role, demo["viewer"].role, demo["worker-1"].worker_id) == ("admin", "viewer", "worker-1")
        assert authenticate(session, "lead-2", DEMO_PASSWORD) is not None
    announced = demo_login_text(database_url)
    assert f"password {DEMO_PASSWORD}" in announced
    assert "admin（演示管理员，admin）" in announced and "worker-1（张敏，worker）" in announced
