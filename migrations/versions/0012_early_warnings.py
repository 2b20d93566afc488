"""early warnings (预警; docs/tickets.md): bursts of reports of one problem or one category in a community

Revision ID: 0012_early_warnings
Revises: 0011_morning_digest

One row per warning raised to a community's lead; `ticket_ids` are the tickets it covers (a later cluster sharing
one is the same warning, grown, not a new one); `state` is open, acknowledged or closed (the console's buttons).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0012_early_warnings"
down_revision: str | None = "0011_morning_digest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "early_warnings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("community_code", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("colour", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("reports", sa.Integer(), nullable=False),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("ticket_ids", sa.JSON(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("places", sa.JSON(), nullable=False),
        sa.Column("told", sa.JSON(), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("warned_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seen_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=128), nullable=True),
        sa.Column("acknowledged_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=128), nullable=True),
        sa.Column("closed_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["community_code"], ["regions.code"], name=op.f("fk_early_warnings_community_code_regions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_early_warnings")),
    )
    op.create_index(op.f("ix_early_warnings_community_code"), "early_warnings", ["community_code"], unique=False)
    op.create_index(op.f("ix_early_warnings_state"), "early_warnings", ["state"], unique=False)
    op.create_index(op.f("ix_early_warnings_seen_at"), "early_warnings", ["seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_early_warnings_seen_at"), table_name="early_warnings")
    op.drop_index(op.f("ix_early_warnings_state"), table_name="early_warnings")
    op.drop_index(op.f("ix_early_warnings_community_code"), table_name="early_warnings")
    op.drop_table("early_warnings")
