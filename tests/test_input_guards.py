"""Bad input never gets a 500 (docs/security.md): NaN/Infinity, lone surrogates, NUL characters and oversized bodies are
refused with a short 4xx at the edge (bot/api/guards.py), on SQLite and PostgreSQL alike, and nothing is written.

In-process (Starlette's TestClient, the app's own lifespan) where a real socket changes nothing; against the live
uvicorn server where it does: a body refused before it is read, and a chunked body counted as it streams. Rasa is
not running: the web chat then answers a message it must pass on with "please wait", so a test that gets no reply
also shows the message never went to Rasa.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.api.guards import EXCERPT_CHARS, OWN_LIMITS, excerpt
from bot.app import create_app
from bot.channels.webchat import WebChatMessage
from bot.embedded import app_server, free_port
from bot.settings import Settings
from grid.tickets import Ticket

CHAT = "/api/v1/local/messages"
SEARCH = "/api/v1/knowledge/search"  # a console JSON API (admin)
OPEN311 = "/open311/v2/requests.json"
OPEN311_KEY = "guard-test-key"
GOOD = {"group_id": "demo-grid-1", "sender_id": "resident-guard", "sender_name": "居民", "mentions_bot": True}
JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
SHORT = 600  # bytes: an answer longer than this is echoing what it was sent


def _settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=None,
        rasa_url=f"http://127.0.0.1:{free_port()}",  # nothing listens: Rasa is down
        app_port=free_port(),
        kb_embedding_model="none",
        local_chat_enabled=True,
        open311_api_keys=OPEN311_KEY,
    )


@pytest.fixture(scope="module")
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(database_url)), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def live(database_url: str) -> Iterator[str]:
    with app_server(_settings(database_url)) as url:
        yield url


def _rows(factory: sessionmaker[Session]) -> tuple[int, int]:
    """Web chat transcript lines and tickets: what a refused request must not have added to."""
    with factory() as session:
        return session.scalar(select(func.count(WebChatMessage.id))) or 0, session.scalar(select(func.count(Ticket.id))) or 0


def _open311(fields: str) -> str:
    return f'{{"api_key": "{OPEN311_KEY}", "service_code": "市政设施", "address_string": "3号楼", {fields}}}'


# ---------------------------------------------------------------- NaN, Infinity, overflow


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize(
    ("path", "body", "admin"),
    [
        (CHAT, '{"group_id": "demo-grid-1", "sender_id": "r", "sender_name": "居民", "text": %s}', False),
        (CHAT, '{"group_id": "demo-grid-1", "sender_id": %s, "sender_name": "居民", "text": "路灯坏了"}', False),
        (SEARCH, '{"query": %s}', True),
        (SEARCH, '{"query": "高龄补贴", "top_k": %s}', True),
        (OPEN311, _open311('"description": %s'), False),
    ],
)
def test_not_finite_numbers_are_a_short_422(
    client: TestClient,
    session_factory: sessionmaker[Session],
    admin_headers: dict[str, str],
    path: str,
    body: str,
    admin: bool,
    number: str,
) -> None:
    before = _rows(session_factory)
    response = client.post(path, content=(body % number).encode(), headers=JSON | (admin_headers if admin else {}))
    assert response.status_code == 422, response.text
    assert "NaN, Infinity" in response.text and len(response.content) < SHORT
    assert _rows(session_factory) == before


# ---------------------------------------------------------------- lone surrogates and NUL


@pytest.mark.parametrize("bad", ["\\ud800", "\\udfff tail", "\\u0000", "路灯\\u0000坏了"])
@pytest.mark.parametrize(
    ("path", "body", "admin"),
    [
        (CHAT, '{"group_id": "demo-grid-1", "sender_id": "r", "sender_name": "居民", "text": "%s"}', False),
        (CHAT, '{"group_id": "demo-grid-1", "sender_id": "%s", "sender_name": "居民", "text": "路灯坏了"}', False),
        (CHAT, '{"group_id": "%s", "sender_id": "r", "sender_name": "居民", "text": "路灯坏了"}', False),
        (CHAT, '{"group_id": "demo-grid-1", "sender_id": "r", "sender_name": "居民", "text": "路灯坏了", "%s": 1}', False),
        (SEARCH, '{"query": "%s"}', True),
        (OPEN311, _open311('"description": "%s"'), False),
        ("/api/v1/auth/login", '{"username": "%s", "password": "whatever-it-is"}', False),
    ],
)
def test_surrogates_and_nul_in_json_are_a_short_422(
    client: TestClient,
    session_factory: sessionmaker[Session],
    admin_headers: dict[str, str],
    path: str,
    body: str,
    admin: bool,
    bad: str,
) -> None:
    before = _rows(session_factory)
    response = client.post(path, content=(body % bad).encode(), headers=JSON | (admin_headers if admin else {}))
    assert response.status_code == 422, response.text
    assert ("surrogate" in response.text) != ("NUL" in response.text) and len(response.content) < SHORT
    assert _rows(session_factory) == before


@pytest.mark.parametrize(
    ("method", "url", "body", "admin"),
    [
        ("GET", "/api/v1/knowledge/entries?q=%E8%B7%AF%00", None, True),  # PostgreSQL refused it: 500
        ("GET", "/api/v1/tickets/GD%00", None, True),
        ("GET", "/open311/v2/requests.json?service_request_id=GD%00", None, False),
        ("POST", "/api/v1/auth/login", b"username=admin%00&password=gridbot-demo", False),  # a form
        ("POST", OPEN311, f"api_key={OPEN311_KEY}&service_code=%E5%B8%82&description=a%00b".encode(), False),
    ],
)
def test_nul_in_path_query_or_form_is_a_422_on_both_databases(
    client: TestClient, admin_headers: dict[str, str], method: str, url: str, body: bytes | None, admin: bool
) -> None:
    headers = (admin_headers if admin else {}) | (FORM if body else {})
    response = client.request(method, url, content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert "NUL" in response.text and len(response.content) < SHORT


def test_a_surrogate_in_the_path_is_a_422(client: TestClient, admin_headers: dict[str, str]) -> None:
    """HTTP cannot carry one (uvicorn decodes %ED%A0%80 to U+FFFD), but a server that decodes paths otherwise could
    hand one over: the guard looks at the path the app is given. Driven at the ASGI level for that reason."""
    assert client.get("/api/v1/tickets/%ED%A0%80", headers=admin_headers).status_code == 404  # U+FFFD: just unknown
    messages: list[dict[str, object]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v1/tickets/GD\ud800",
        "raw_path": b"/api/v1/tickets/GD",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *((k.lower().encode(), v.encode()) for k, v in admin_headers.items())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        messages.append(message)

    client.portal.call(client.app, scope, receive, send)  # type: ignore[union-attr, arg-type]
    assert messages[0]["status"] == 422
    assert b"surrogate" in messages[1]["body"]  # type: ignore[operator]


# ---------------------------------------------------------------- body size


def test_a_100_kb_chat_body_is_a_413(client: TestClient, session_factory: sessionmaker[Session]) -> None:
    """Padding in a field the model ignores: before the cap this was read whole and answered 200."""
    before = _rows(session_factory)
    response = client.post(CHAT, json=GOOD | {"text": "你好", "padding": "x" * 100_000})
    assert response.status_code == 413, response.text
    assert "65536 bytes" in response.json()["detail"]
    assert _rows(session_factory) == before


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        (CHAT, json.dumps(GOOD | {"sender_id": "x" * 5_000_000, "text": "你好"}).encode(), JSON),
        (OPEN311, b"api_key=not-the-key&description=" + b"a" * 5_000_000, FORM),  # refused before its key is read
    ],
)
def test_a_5_mb_body_with_a_declared_length_is_refused_before_it_is_read(
    live: str, path: str, body: bytes, headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=live, timeout=30) as http:
        started = time.monotonic()
        response = http.post(path, content=body, headers=headers)
        took = time.monotonic() - started
        assert response.status_code == 413, response.text[:300]
        assert len(response.content) < SHORT and "larger than 65536 bytes" in response.text
        assert took < 5, took
        assert http.get("/healthz").status_code == 200


def test_a_chunked_body_is_counted_as_it_streams(live: str) -> None:
    """No Content-Length: the guard counts while it reads and answers 413 at the limit (before: read whole, 200)."""

    def chunks() -> Iterator[bytes]:
        yield b'{"group_id": "demo-grid-1", "sender_id": "r", "sender_name": "n", "text": "hi", "padding": "'
        for _ in range(100):
            yield b"a" * 50_000
        yield b'"}'

    with httpx.Client(base_url=live, timeout=30) as http:
        response = http.post(CHAT, content=chunks(), headers=JSON)
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert response.status_code == 413, response.text[:300]
        assert len(response.content) < SHORT
        assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize(("size", "status"), [(100_000, 404), (300_000, 413)])
def test_wecom_callbacks_keep_their_own_limit(client: TestClient, size: int, status: int) -> None:
    """256 KB (bot/channels/wecom/channel.py), not the 64 KB default: 100 KB reaches the route (404: WeCom is not
    configured here), 300 KB is refused before it (was a 400 "malformed" once read)."""
    response = client.post(
        "/channels/wecom/callback",
        params={"msg_signature": "s", "timestamp": "1", "nonce": "n"},
        content=b"<xml>" + b"x" * size + b"</xml>",
        headers={"content-type": "text/xml"},
    )
    assert response.status_code == status, response.text
    assert len(response.content) < SHORT


def test_own_limits_name_real_routes(client: TestClient) -> None:
    """The upload routes that keep their own limits still exist under these paths (a renamed route would fall under
    the 64 KB default and refuse every upload)."""
    assert set(OWN_LIMITS) <= set(client.get("/openapi.json").json()["paths"])


# ---------------------------------------------------------------- what an error may echo


def test_a_422_echoes_only_an_excerpt_of_a_large_field(client: TestClient) -> None:
    response = client.post(CHAT, json=GOOD | {"sender_id": "楼" * 20_000, "text": "你好"})  # 60 KB: under the cap
    assert response.status_code == 422
    assert len(response.content) < 2 * SHORT, len(response.content)
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "sender_id"] and error["input"].startswith("楼楼楼")
    assert len(error["input"]) <= EXCERPT_CHARS + 1


def test_a_422_for_bytes_that_are_not_utf8_is_not_a_500(client: TestClient) -> None:
    """FastAPI's own handler decoded the echoed bytes as UTF-8 and failed."""
    response = client.post(CHAT, content=b"\xff\xfe\xfa", headers={"content-type": "text/plain"})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("-inf"), "\ud800" * 300, b"\xff" * 1000, 10**5000, {"k": [float("nan")]}],
    ids=["nan", "-inf", "surrogates", "bytes", "huge-int", "nested-nan"],
)
def test_excerpts_are_always_short_json(value: object) -> None:
    shown = excerpt(value)
    text = json.dumps(shown, allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")
    assert len(shown if isinstance(shown, str) else text) <= EXCERPT_CHARS + 1


# ---------------------------------------------------------------- web chat identities and word-less messages


@pytest.mark.parametrize("field", ["sender_id", "sender_name"])
@pytest.mark.parametrize("blank", [" ", "\t\n\u3000"])
def test_a_blank_sender_is_a_422(client: TestClient, session_factory: sessionmaker[Session], field: str, blank: str) -> None:
    before = _rows(session_factory)
    response = client.post(CHAT, json=GOOD | {field: blank, "text": "路灯坏了"})
    assert response.status_code == 422, response.text
    assert field in response.text
    assert _rows(session_factory) == before


@pytest.mark.parametrize("text", ["[强][强]", "😀👍🎉", "？？？", "。。。!!", "[玫瑰] 🌹 ……"])
@pytest.mark.parametrize("mentioned", [True, False])
def test_emoji_and_punctuation_are_ordinary_chat(
    client: TestClient, session_factory: sessionmaker[Session], text: str, mentioned: bool
) -> None:
    """200, no reply (not even Rasa's "please wait": it is never asked), and in the transcript: the group saw it."""
    before_lines, before_tickets = _rows(session_factory)
    response = client.post(CHAT, json=GOOD | {"text": text, "mentions_bot": mentioned})
    assert response.status_code == 200, response.text
    assert response.json() == {"replies": []}
    assert _rows(session_factory) == (before_lines + 1, before_tickets)
    shown = client.get("/api/v1/local/transcript", params={"target_type": "room", "target_id": "demo-grid-1"}).json()
    assert shown["messages"][-1]["text"] == text
