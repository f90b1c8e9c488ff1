"""members' recorded deaths, projected (persons' ids, village, date; no personal data)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

Why: a death recorded in members never reached funds, so 特别扶助 went on
being paid (issue 13). The projection is filled from ``jsx.members.person.died``
and ``jsx.members.person.death_corrected``; the batch planner stops a person's
periodic payments after the month the region's rule (``jsx_support_end``) says.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proj_person_deaths",
        sa.Column("person", sa.String(length=100), nullable=False),
        sa.Column("village", sa.String(length=12), nullable=False),
        sa.Column("household", sa.String(length=100), nullable=False),
        sa.Column("death_date", sa.Date(), nullable=True),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("person", name=op.f("pk_proj_person_deaths")),
    )
    op.create_index(op.f("ix_proj_person_deaths_village"), "proj_person_deaths", ["village"])


def downgrade() -> None:
    op.drop_table("proj_person_deaths")
