"""knowledge retrieval state: cached vectors, calibrated answer policies, asked questions

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "knowledge_vectors",
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("text_sha1", sa.String(length=40), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", "text_sha1", name=op.f("pk_knowledge_vectors")),
    )
    op.create_table(
        "knowledge_answer_policies",
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("lexical_threshold", sa.Float(), nullable=False),
        sa.Column("dense_threshold", sa.Float(), nullable=True),
        sa.Column("dense_floor", sa.Float(), nullable=False),
        sa.Column("margin", sa.Float(), nullable=False),
        sa.Column("combine", sa.String(length=8), nullable=False),
        sa.Column("questions", sa.Integer(), nullable=False),
        sa.Column("correct_rate", sa.Float(), nullable=False),
        sa.Column("wrong_rate", sa.Float(), nullable=False),
        sa.Column("calibrated_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", name=op.f("pk_knowledge_answer_policies")),
    )
    op.create_table(
        "knowledge_questions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asked_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("group_id", sa.String(length=128), nullable=True),
        sa.Column("asker_id", sa.String(length=128), nullable=False),
        sa.Column("asker_name", sa.String(length=128), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answered", sa.Boolean(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=True),
        sa.Column("entry_external_id", sa.String(length=128), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("feedback", sa.String(length=16), nullable=True),
        sa.Column("feedback_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ticket_number", sa.String(length=32), nullable=True),
        sa.Column("handled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_questions")),
    )
    with op.batch_alter_table("knowledge_questions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_knowledge_questions_asked_at"), ["asked_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("knowledge_questions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_knowledge_questions_asked_at"))
    op.drop_table("knowledge_questions")
    op.drop_table("knowledge_answer_policies")
    op.drop_table("knowledge_vectors")
