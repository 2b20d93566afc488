"""channels: each group and worker on its own platform; outbound messages queued for retry

Revision ID: 0008_channels
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0008_channels"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chat_groups") as batch:
        batch.add_column(sa.Column("channel", sa.String(length=32), server_default="webchat", nullable=False))
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("channel", sa.String(length=32), server_default="webchat", nullable=False))
    op.create_table(
        "outbound_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("target_type", sa.String(length=8), nullable=False),
        sa.Column("target_id", sa.String(length=128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("mentions", sa.JSON(), nullable=False),
        sa.Column("media", sa.JSON(), nullable=True),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_messages")),
        sa.UniqueConstraint("key", name=op.f("uq_outbound_messages_key")),
    )
    op.create_index(op.f("ix_outbound_messages_status"), "outbound_messages", ["status"], unique=False)
    op.create_index(op.f("ix_outbound_messages_next_attempt_at"), "outbound_messages", ["next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_outbound_messages_next_attempt_at"), table_name="outbound_messages")
    op.drop_index(op.f("ix_outbound_messages_status"), table_name="outbound_messages")
    op.drop_table("outbound_messages")
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("channel")
    with op.batch_alter_table("chat_groups") as batch:
        batch.drop_column("channel")
