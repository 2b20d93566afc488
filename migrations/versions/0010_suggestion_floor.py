"""the "您想问的是…" floor beside each model's answer thresholds (docs/architecture.md, "您想问的是…")

Revision ID: 0010_suggestion_floor
Revises: 0009_accounts

Nullable: thresholds calibrated before suggestions existed have no floor and offer nothing until
knowledge.calibration.ensure_calibrated (at start-up) or `gridbot kb calibrate` calibrates one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_suggestion_floor"
down_revision: str | None = "0009_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("knowledge_answer_policies") as batch:
        batch.add_column(sa.Column("suggest_floor", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("knowledge_answer_policies") as batch:
        batch.drop_column("suggest_floor")
