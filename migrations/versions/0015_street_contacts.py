"""street contacts (early warnings, docs/tickets.md): the person(s) at street level (街道) told of red early warnings

Revision ID: 0015_street_contacts
Revises: 0014_private_reporters

A red early warning named the street only in its outbox event: the map had no person above a community's lead.
`street_contacts` holds the people responsible at a street (a region of level `street`): their chat account id, name
and the channel their private messages go out on, as `workers` holds grid workers and leads.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_street_contacts"
down_revision: str | None = "0014_private_reporters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "street_contacts",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("street_code", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), server_default="webchat", nullable=False),
        sa.ForeignKeyConstraint(["street_code"], ["regions.code"], name=op.f("fk_street_contacts_street_code_regions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_street_contacts")),
    )
    op.create_index(op.f("ix_street_contacts_street_code"), "street_contacts", ["street_code"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_street_contacts_street_code"), table_name="street_contacts")
    op.drop_table("street_contacts")
