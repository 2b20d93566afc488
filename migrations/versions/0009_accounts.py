"""accounts, their sessions and API tokens (console and REST API; docs/security.md)

Revision ID: 0009_accounts
Revises: 0008_channels

Sessions and tokens store only the SHA-256 of the secret handed out; passwords are argon2id hashes. A worker
account points at the `workers` row it acts as.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0009_accounts"
down_revision: str | None = "0008_channels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("worker_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["worker_id"], ["workers.id"], name=op.f("fk_accounts_worker_id_workers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("username", name=op.f("uq_accounts_username")),
    )
    op.create_index(op.f("ix_accounts_worker_id"), "accounts", ["worker_id"], unique=False)

    for table in ("account_sessions", "api_tokens"):
        extra = (
            [
                sa.Column("client_ip", sa.String(length=64), nullable=True),
                sa.Column("user_agent", sa.String(length=256), nullable=True),
            ]
            if table == "account_sessions"
            else [
                sa.Column("label", sa.String(length=64), nullable=False),
                sa.Column("last_used_at", storage.types.UTCDateTime(timezone=True), nullable=True),
            ]
        )
        op.create_table(
            table,
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("token_hash", sa.String(length=64), nullable=False),
            sa.Column("account_id", sa.Integer(), nullable=False),
            sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
            sa.Column("expires_at", storage.types.UTCDateTime(timezone=True), nullable=table == "api_tokens"),
            sa.Column("revoked_at", storage.types.UTCDateTime(timezone=True), nullable=True),
            *extra,
            sa.ForeignKeyConstraint(
                ["account_id"], ["accounts.id"], name=op.f(f"fk_{table}_account_id_accounts"), ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
            sa.UniqueConstraint("token_hash", name=op.f(f"uq_{table}_token_hash")),
        )
        op.create_index(op.f(f"ix_{table}_account_id"), table, ["account_id"], unique=False)


def downgrade() -> None:
    for table in ("api_tokens", "account_sessions"):
        op.drop_index(op.f(f"ix_{table}_account_id"), table_name=table)
        op.drop_table(table)
    op.drop_index(op.f("ix_accounts_worker_id"), table_name="accounts")
    op.drop_table("accounts")
