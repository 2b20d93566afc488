"""`gridbot user …`: console and API accounts — the first admin is made here, and API tokens for scripts."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from sqlalchemy.orm import Session

from bot.auth.accounts import (
    AccountError,
    create_account,
    issue_api_token,
    list_accounts,
    revoke_api_tokens,
    set_active,
    set_password,
)
from bot.auth.models import AccountRole
from bot.settings import get_settings
from storage.engine import make_engine, make_session_factory, unit_of_work

user_app = typer.Typer(help="Console and API accounts (admin, worker, viewer).", no_args_is_help=True)
console = Console()
T = TypeVar("T")
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin (for scripts).")
]


@contextmanager
def _session() -> Iterator[Session]:
    engine = make_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _run(action: Callable[[Session], T]) -> T:
    """Run one use case in one transaction; a refusal is printed with its reason and exits 1."""
    try:
        with _session() as session:
            return action(session)
    except AccountError as err:
        console.print(err.message, style="red", markup=False)
        raise typer.Exit(1) from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@user_app.command("create")
def create(
    username: str,
    role: Annotated[AccountRole, typer.Option(help="admin, worker (acts as a grid worker) or viewer (read-only).")],
    worker_id: Annotated[str | None, typer.Option("--worker-id", help="Worker accounts: the grid worker it acts as.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name (default: the worker's name or the username).")] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create an account; asks for the password twice (or reads it with --password-stdin)."""
    password = _read_password(password_stdin)
    account = _run(lambda s: create_account(s, username, password, role, display_name=name, worker_id=worker_id))
    link = f", acts as worker {account.worker_id}" if account.worker_id else ""
    console.print(f"created {account.role} account {account.username} ({account.display_name}{link})", markup=False)


@user_app.command("list")
def list_users() -> None:
    """Every account with its role, worker link, state and last login."""
    from rich.table import Table

    from grid.clock import LOCAL_TZ

    def rows(session: Session) -> list[tuple[str, ...]]:
        return [
            (
                a.username,
                a.display_name,
                a.role,
                a.worker_id or "-",
                "active" if a.active else "disabled",
                f"{a.last_login_at.astimezone(LOCAL_TZ):%Y-%m-%d %H:%M}" if a.last_login_at else "never",
            )
            for a in list_accounts(session)
        ]

    found = _run(rows)
    table = Table(title=f"{len(found)} account(s)")
    for column in ("username", "name", "role", "worker", "state", "last login"):
        table.add_column(column)
    for row in found:
        table.add_row(*row)
    console.print(table)


@user_app.command("token")
def token(
    username: str,
    label: Annotated[str, typer.Option(help="What the token is for, e.g. the script's name.")] = "",
    days: Annotated[int | None, typer.Option(min=1, help="Expires after this many days (default: never).")] = None,
) -> None:
    """Print a new API token for USERNAME, once: scripts send it as `Authorization: Bearer <token>`."""
    lifetime = timedelta(days=days) if days else None
    secret, _ = _run(lambda s: issue_api_token(s, username, label, lifetime))
    console.print("New API token (shown once; store it now):", style="bold", markup=False)
    print(secret)


@user_app.command("revoke-tokens")
def revoke_tokens(username: str) -> None:
    """Revoke every API token of USERNAME."""
    count = _run(lambda s: revoke_api_tokens(s, username))
    console.print(f"revoked {count} token(s) of {username}", markup=False)


@user_app.command("password")
def password(
    username: str,
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a new password for USERNAME (its browser sessions are logged out)."""
    new = _read_password(password_stdin)
    _run(lambda s: set_password(s, username, new))
    console.print(f"password of {username} changed; its sessions were logged out", markup=False)


@user_app.command("disable")
def disable(username: str) -> None:
    """Disable USERNAME: no login, its sessions and tokens stop working (tokens come back with `enable`)."""
    _run(lambda s: set_active(s, username, False))
    console.print(f"{username} disabled", markup=False)


@user_app.command("enable")
def enable(username: str) -> None:
    """Enable USERNAME again (its old sessions stay logged out)."""
    _run(lambda s: set_active(s, username, True))
    console.print(f"{username} enabled", markup=False)
