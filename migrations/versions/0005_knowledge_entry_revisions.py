"""knowledge entry revisions (edit history)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 11:00:00

One row per create, update and delete of a knowledge entry. No foreign key to knowledge_entries: the
history of a deleted entry must outlive it. Entries that exist before this migration get their first
revision at their next change.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "knowledge_entry_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("change IN ('created', 'updated', 'deleted')", name=op.f("ck_knowledge_entry_revisions_change")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_entry_revisions")),
    )
    op.create_index(op.f("ix_knowledge_entry_revisions_external_id"), "knowledge_entry_revisions", ["external_id"], unique=False)
    op.create_index(op.f("ix_knowledge_entry_revisions_entry_id"), "knowledge_entry_revisions", ["entry_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_knowledge_entry_revisions_entry_id"), table_name="knowledge_entry_revisions")
    op.drop_index(op.f("ix_knowledge_entry_revisions_external_id"), table_name="knowledge_entry_revisions")
    op.drop_table("knowledge_entry_revisions")
