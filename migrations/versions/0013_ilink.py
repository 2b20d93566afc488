"""personal WeChat through the official iLink route (docs/channels.md): bindings and per-contact reply windows

Revision ID: 0013_ilink
Revises: 0012_early_warnings

`ilink_bindings`: one confirmed QR scan each — the bot identity, the WeChat user who scanned, the bot token, the
API base, the grid the person's private reports go to, and the long-poll cursor (moved in the transaction that
notes the messages it covers). `ilink_contacts`: each person's reply window — the context token of their last
message, when it came, how many messages went out since (WeChat takes at most 10 per message, within 24 h), and
why the last send was refused.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0013_ilink"
down_revision: str | None = "0012_early_warnings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ilink_bindings",
        sa.Column("bot_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("bot_token", sa.Text(), nullable=False),
        sa.Column("base_url", sa.String(length=256), nullable=False),
        sa.Column("grid_code", sa.String(length=64), nullable=True),
        sa.Column("get_updates_buf", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("paused_until", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("bound_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("bot_id", name=op.f("pk_ilink_bindings")),
    )
    op.create_index(op.f("ix_ilink_bindings_user_id"), "ilink_bindings", ["user_id"], unique=False)
    op.create_table(
        "ilink_contacts",
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("bot_id", sa.String(length=128), nullable=False),
        sa.Column("context_token", sa.Text(), nullable=True),
        sa.Column("last_inbound_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("closed", sa.Text(), nullable=True),
        sa.Column("last_refusal", sa.Text(), nullable=True),
        sa.Column("last_refusal_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("contact_id", name=op.f("pk_ilink_contacts")),
    )


def downgrade() -> None:
    op.drop_table("ilink_contacts")
    op.drop_index(op.f("ix_ilink_bindings_user_id"), table_name="ilink_bindings")
    op.drop_table("ilink_bindings")
