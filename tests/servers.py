"""Test helpers: fresh PostgreSQL databases per run, a web chat client and a stand-in Rasa server; the app
server is bot.embedded."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.embedded import app_server, free_port


@contextmanager
def fresh_postgres(admin_url: str) -> Iterator[str]:
    """A new PostgreSQL database for this run, dropped afterwards: tests never share state through it."""
    name = f"gridbot_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Chat:
    """Speaks to the web chat API like the /chat page does."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=60)

    def post(self, **payload: object) -> httpx.Response:
        return self.http.post("/api/v1/local/messages", json=payload)

    def say(self, text: str, *, group: str | None, sender: str, name: str, mention: bool = False) -> list[dict[str, str]]:
        response = self.post(group_id=group, sender_id=sender, sender_name=name, text=text, mentions_bot=mention)
        assert response.status_code == 200, response.text
        return response.json()["replies"]


def action_call(action: str, conversation: str, latest_message: dict[str, Any]) -> dict[str, Any]:
    """The body Rasa 3.6's RemoteAction posts to the action endpoint (/webhook) for `action`, after a user message."""
    return {
        "next_action": action,
        "sender_id": conversation,
        "version": "3.6.21",
        "domain": {},
        "tracker": {
            "sender_id": conversation,
            "slots": {},
            "latest_message": latest_message,
            "latest_event_time": None,
            "followup_action": None,
            "paused": False,
            "events": [],
            "latest_input_channel": "rest",
            "active_loop": {},
            "latest_action": {"action_name": "action_listen"},
            "latest_action_name": "action_listen",
        },
    }


__all__ = ["Chat", "action_call", "app_server", "free_port", "fresh_postgres"]


class FakeRasa:
    """A real HTTP server on loopback answering like Rasa's `/model/parse` (POST) and `/status` (GET).

    `parse` is the JSON that /model/parse answers (set it between requests), `status` the HTTP status of every
    answer, `raw` bytes sent instead of any JSON; `hits` counts the requests. With `reply` set, the project's
    turn endpoint (/webhooks/gridbot/webhook) answers it as the bot's messages and notes each turn's payload in
    `turns`, each turn waiting first for `open_turns` (cleared: turns hang, as in a Rasa stuck mid-turn).
    Another POST path gets 404, as from Rasa. `tokens` notes the `?token=` (Rasa's API token) of each request.
    """

    TURN_PATH = "/webhooks/gridbot/webhook"

    def __init__(
        self, parse: dict[str, object], status: int = 200, raw: bytes | None = None, reply: list[dict[str, object]] | None = None
    ) -> None:
        self.parse, self.status, self.raw, self.hits, self.reply = parse, status, raw, 0, reply
        self.turns: list[dict[str, object]] = []
        self.tokens: list[str | None] = []
        self.open_turns = threading.Event()
        self.open_turns.set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, object] | list[dict[str, object]]) -> None:
                owner.hits += 1
                data = owner.raw if owner.raw is not None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _path(self) -> str:
                url = urlsplit(self.path)
                owner.tokens.append(parse_qs(url.query).get("token", [None])[0])
                return url.path

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self._path()
                if path == "/model/parse":
                    self._answer(owner.status, owner.parse)
                elif path == owner.TURN_PATH and owner.reply is not None:
                    owner.turns.append(json.loads(body))
                    owner.open_turns.wait(timeout=120)
                    self._answer(owner.status, owner.reply)
                else:
                    self._answer(404, {"message": f"no route {path}"})

            def do_GET(self) -> None:
                self._path()
                self._answer(owner.status, {"model_file": "gridbot.tar.gz"})

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # A short poll: `close` (shutdown) waits for the loop to look, which at the default 0.5 s was most of a
        # router test's time.
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.open_turns.set()  # a hanging turn's thread ends (its client may be gone)
        self.httpd.shutdown()
        self.httpd.server_close()
