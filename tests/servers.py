"""Test helpers: fresh PostgreSQL databases per run and a web chat client; the app server is bot.embedded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

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


__all__ = ["Chat", "app_server", "free_port", "fresh_postgres"]
