"""Account use cases: create, authenticate, start and end sessions, issue and resolve API tokens.

No HTTP here: the API (bot/api/auth.py, bot/auth/deps.py), the CLI (bot/auth/cli.py) and the demo loader share
these, so a session made in the browser and a token made on the command line are checked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bot.auth.models import Account, AccountRole, AccountSession, ApiToken
from bot.auth.secrets import (
    API_TOKEN_PREFIX,
    hash_password,
    needs_rehash,
    new_token,
    password_problem,
    token_hash,
    verify_password,
)
from grid.geography import Grid, Worker
from storage.base import utcnow

USERNAME_MAX = 64
# Ended sessions are kept this long (who logged in from where, when), then deleted at the account's next login.
ENDED_SESSIONS_KEPT = timedelta(days=90)


class AccountError(Exception):
    """A refused account operation; `code` is stable for callers, the message says what to change."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the API's permission checks need it (no ORM object escapes a unit of work)."""

    account_id: int
    username: str
    display_name: str
    role: AccountRole
    worker_id: str | None
    worker_role: str | None  # "worker" or "lead" (Worker.role) for worker accounts
    grid_codes: frozenset[str]  # grids whose tickets a worker account sees: its own, or its community's for a lead
    via: str  # "session" or "token"

    @property
    def is_admin(self) -> bool:
        return self.role is AccountRole.ADMIN


def create_account(
    session: Session,
    username: str,
    password: str,
    role: AccountRole | str,
    *,
    display_name: str | None = None,
    worker_id: str | None = None,
    hashed: str | None = None,
) -> Account:
    """A new active account; `hashed` is a hash already made of this password (the demo accounts share one)."""
    username = username.strip()
    if not username or len(username) > USERNAME_MAX or any(c.isspace() for c in username):
        raise AccountError("bad_username", f"a username is 1-{USERNAME_MAX} characters without spaces")
    try:
        role = AccountRole(role)
    except ValueError:
        raise AccountError("bad_role", f"unknown role {role!r}: admin, worker or viewer") from None
    if (problem := password_problem(password)) is not None:
        raise AccountError("weak_password", problem)
    if session.scalar(select(Account.id).where(Account.username == username)) is not None:
        raise AccountError("username_taken", f"there is already an account {username!r}")
    worker = _check_worker(session, role, worker_id)
    account = Account(
        username=username,
        display_name=(display_name or "").strip() or (worker.name if worker else username),
        role=role.value,
        password_hash=hashed or hash_password(password),
        active=True,
        worker_id=worker_id if role is AccountRole.WORKER else None,
    )
    session.add(account)
    session.flush()
    return account


def _check_worker(session: Session, role: AccountRole, worker_id: str | None) -> Worker | None:
    if role is not AccountRole.WORKER:
        if worker_id:
            raise AccountError("worker_id_not_allowed", "only worker accounts are linked to a grid worker")
        return None
    if not worker_id:
        raise AccountError("worker_id_required", "a worker account needs --worker-id (the grid worker it acts as)")
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise AccountError("unknown_worker", f"there is no grid worker {worker_id!r}")
    return worker


def set_password(session: Session, username: str, password: str) -> Account:
    account = get_account(session, username)
    if (problem := password_problem(password)) is not None:
        raise AccountError("weak_password", problem)
    account.password_hash = hash_password(password)
    revoke_sessions(session, account.id)  # whoever was logged in with the old password is logged out
    return account


def set_active(session: Session, username: str, active: bool) -> Account:
    account = get_account(session, username)
    account.active = active
    if not active:
        revoke_sessions(session, account.id)
    return account


def get_account(session: Session, username: str) -> Account:
    account = session.scalar(select(Account).where(Account.username == username.strip()))
    if account is None:
        raise AccountError("unknown_account", f"there is no account {username!r}")
    return account


def list_accounts(session: Session) -> list[Account]:
    return list(session.scalars(select(Account).order_by(Account.username)))


def authenticate(session: Session, username: str, password: str) -> Account | None:
    """The active account these credentials open, else None; the time spent does not tell which part was wrong."""
    account = session.scalar(select(Account).where(Account.username == username.strip()))
    if not verify_password(account.password_hash if account else None, password):
        return None
    assert account is not None
    if not account.active:
        return None
    if needs_rehash(account.password_hash):
        account.password_hash = hash_password(password)
    return account


def start_session(
    session: Session, account: Account, lifetime: timedelta, client_ip: str | None = None, user_agent: str | None = None
) -> tuple[str, AccountSession]:
    """A new session for a successful login; returns the token for the cookie (only its hash is stored)."""
    token = new_token()
    now = utcnow()
    row = AccountSession(
        token_hash=token_hash(token),
        account_id=account.id,
        created_at=now,
        expires_at=now + lifetime,
        client_ip=(client_ip or "")[:64] or None,
        user_agent=(user_agent or "")[:256] or None,
    )
    account.last_login_at = now
    session.execute(
        delete(AccountSession).where(
            AccountSession.account_id == account.id, AccountSession.expires_at < now - ENDED_SESSIONS_KEPT
        )
    )
    session.add(row)
    session.flush()
    return token, row


def end_session(session: Session, token: str) -> bool:
    row = session.scalar(select(AccountSession).where(AccountSession.token_hash == token_hash(token)))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def revoke_sessions(session: Session, account_id: int) -> None:
    now = utcnow()
    for row in session.scalars(
        select(AccountSession).where(AccountSession.account_id == account_id, AccountSession.revoked_at.is_(None))
    ):
        row.revoked_at = now


def session_principal(session: Session, token: str, now: datetime | None = None) -> Principal | None:
    """Who a session cookie belongs to, if the session is live (not revoked, not expired, account active)."""
    row = session.scalar(select(AccountSession).where(AccountSession.token_hash == token_hash(token)))
    now = now or utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now or not row.account.active:
        return None
    return principal_of(session, row.account, "session")


def issue_api_token(session: Session, username: str, label: str = "", lifetime: timedelta | None = None) -> tuple[str, ApiToken]:
    """A new bearer token for scripts; the caller shows it once (only its hash is stored)."""
    account = get_account(session, username)
    if not account.active:
        raise AccountError("inactive_account", f"account {username!r} is disabled")
    token = new_token(API_TOKEN_PREFIX)
    now = utcnow()
    row = ApiToken(
        token_hash=token_hash(token),
        account_id=account.id,
        label=label[:64],
        created_at=now,
        expires_at=now + lifetime if lifetime else None,
    )
    session.add(row)
    session.flush()
    return token, row


def revoke_api_tokens(session: Session, username: str) -> int:
    account = get_account(session, username)
    now = utcnow()
    rows = list(session.scalars(select(ApiToken).where(ApiToken.account_id == account.id, ApiToken.revoked_at.is_(None))))
    for row in rows:
        row.revoked_at = now
    return len(rows)


def token_principal(session: Session, token: str, now: datetime | None = None) -> Principal | None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    now = now or utcnow()
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    if not row.account.active:
        return None
    # Recorded at most once a minute: a busy script should not turn every read into a write.
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now
    return principal_of(session, row.account, "token")


def principal_of(session: Session, account: Account, via: str) -> Principal:
    worker = session.get(Worker, account.worker_id) if account.worker_id else None
    return Principal(
        account_id=account.id,
        username=account.username,
        display_name=account.display_name,
        role=AccountRole(account.role),
        worker_id=worker.id if worker else None,
        worker_role=worker.role if worker else None,
        grid_codes=frozenset(_grids_of(session, worker)) if worker else frozenset(),
        via=via,
    )


def _grids_of(session: Session, worker: Worker) -> list[str]:
    """A worker's own grid; a community lead's every grid of that community (as grid.service's _leads decides)."""
    if worker.role != "lead":
        return [worker.grid_code]
    community = session.scalar(select(Grid.community_code).where(Grid.code == worker.grid_code))
    return list(session.scalars(select(Grid.code).where(Grid.community_code == community)))
