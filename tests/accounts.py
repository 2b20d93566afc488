"""Test helpers for the authenticated API: accounts and bearer tokens made through the real account use cases."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.auth.accounts import create_account, issue_api_token
from bot.auth.demo import DEMO_PASSWORD
from bot.auth.models import Account
from storage.engine import unit_of_work

PASSWORD = "correct horse battery"


def token_for(factory: sessionmaker[Session], username: str) -> str:
    """A new API token of an existing account (the demo's admin, viewer, worker-1… or one made here)."""
    with unit_of_work(factory) as session:
        token, _ = issue_api_token(session, username, "tests")
        return token


def new_account(
    factory: sessionmaker[Session], role: str, *, worker_id: str | None = None, name: str | None = None, password: str = PASSWORD
) -> str:
    """A fresh account of this role; returns its username."""
    username = f"t-{role}-{uuid.uuid4().hex[:8]}"
    with unit_of_work(factory) as session:
        create_account(session, username, password, role, display_name=name, worker_id=worker_id)
    return username


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def headers_for(factory: sessionmaker[Session], username: str = "admin") -> dict[str, str]:
    """Authorization headers of an existing account; the demo admin by default."""
    return bearer(token_for(factory, username))


def role_headers(factory: sessionmaker[Session], role: str, **kwargs: str | None) -> dict[str, str]:
    """Authorization headers of a fresh account of this role (e.g. an admin with its own display name)."""
    return bearer(token_for(factory, new_account(factory, role, **kwargs)))


def has_account(factory: sessionmaker[Session], username: str) -> bool:
    with factory() as session:
        return session.scalar(select(Account.id).where(Account.username == username)) is not None


__all__ = ["DEMO_PASSWORD", "PASSWORD", "bearer", "has_account", "headers_for", "new_account", "role_headers", "token_for"]
