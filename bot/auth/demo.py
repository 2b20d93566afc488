"""Demo accounts so the embedded default's console can be tried at once: an admin, a viewer, and one worker
account per demo grid worker (username = the worker's id), all with one documented password.

Loaded only with the demo data (`gridbot run`, `gridbot demo load`): never load the demo into a real database.
Loading again creates only what is missing and never resets a password someone has changed.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.auth.accounts import create_account
from bot.auth.models import Account, AccountRole
from bot.auth.secrets import hash_password
from grid.geography import Worker

DEMO_PASSWORD = "gridbot-demo"
DEMO_STAFF = (("admin", "演示管理员", AccountRole.ADMIN), ("viewer", "街道领导（只读）", AccountRole.VIEWER))


def ensure_demo_accounts(session: Session) -> int:
    """Create the missing demo accounts; returns how many were created."""
    existing = set(session.scalars(select(Account.username)))
    wanted = [(username, name, role, None) for username, name, role in DEMO_STAFF] + [
        (worker.id, None, AccountRole.WORKER, worker.id) for worker in session.scalars(select(Worker).order_by(Worker.id))
    ]
    missing = [account for account in wanted if account[0] not in existing]
    hashed = hash_password(DEMO_PASSWORD) if missing else None  # one slow hash for all: they share the password
    for username, name, role, worker_id in missing:
        create_account(session, username, DEMO_PASSWORD, role, display_name=name, worker_id=worker_id, hashed=hashed)
    return len(missing)


def demo_logins(session: Session) -> list[tuple[str, str, str]]:
    """(username, display name, role) of the demo accounts present, for the start-up log."""
    usernames = [u for u, _, _ in DEMO_STAFF] + list(session.scalars(select(Worker.id).order_by(Worker.id)))
    accounts = {a.username: a for a in session.scalars(select(Account).where(Account.username.in_(usernames)))}
    return [(u, accounts[u].display_name, accounts[u].role) for u in usernames if u in accounts]
