"""a worker's morning digest (docs/tickets.md, "A worker's day"): opted in or not, and the local day it was last sent

Revision ID: 0011_morning_digest
Revises: 0010_suggestion_floor

`morning_digest` is off for everyone: the digest is optional, each worker turns it on in words (开启早报).
`digest_sent_on` (YYYY-MM-DD, local) is the claim that makes the digest go out once a day even with several app
processes: one UPDATE moves it to today, and only the process whose UPDATE changed the row sends.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_morning_digest"
down_revision: str | None = "0010_suggestion_floor"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("morning_digest", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("digest_sent_on", sa.String(length=10), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("digest_sent_on")
        batch.drop_column("morning_digest")
