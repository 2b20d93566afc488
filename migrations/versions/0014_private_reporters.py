"""private reporters (iLink review): the channel a group-less reporter is told on, and what a held message keeps

Revision ID: 0014_private_reporters
Revises: 0013_ilink

`tickets.reporter_channel` / `ticket_reporters.reporter_channel`: the channel a report made in private chat came
from, so its resolve notice and rating request reach the reporter privately on that channel (a group's reporters
are told in the group, whose channel the group row knows). `deferred_messages.grid_code` / `media`: a private
message's grid (an iLink binding's) and its pictures, kept while the message waits for Rasa or a replay after a
crash, so the replay files the report in the same grid with the same photos.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_private_reporters"
down_revision: str | None = "0013_ilink"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("reporter_channel", sa.String(length=32), nullable=True))
    with op.batch_alter_table("ticket_reporters") as batch:
        batch.add_column(sa.Column("reporter_channel", sa.String(length=32), nullable=True))
    with op.batch_alter_table("deferred_messages") as batch:
        batch.add_column(sa.Column("grid_code", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("media", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deferred_messages") as batch:
        batch.drop_column("media")
        batch.drop_column("grid_code")
    with op.batch_alter_table("ticket_reporters") as batch:
        batch.drop_column("reporter_channel")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("reporter_channel")
