"""Real servers for the tests: the gridbot app under uvicorn in a thread, databases made fresh per run."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.app import create_app
from bot.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def app_server(settings: Settings) -> Iterator[str]:
    """Serve the real app on settings.app_port until the block ends; yields its base URL."""
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.app_port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.app_port}"
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("app server did not start")
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=20)


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
