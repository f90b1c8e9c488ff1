"""members household projection (ids, village, situations; no personal data)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proj_households",
        sa.Column("household_id", sa.String(length=64), nullable=False),
        sa.Column("village", sa.String(length=12), nullable=False),
        sa.Column("head_person", sa.String(length=100), nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("household_id", name=op.f("pk_proj_households")),
    )
    op.create_index(op.f("ix_proj_households_village"), "proj_households", ["village"])
    op.create_table(
        "proj_household_situations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.Column("disability_grade", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["proj_households.household_id"],
            name=op.f("fk_proj_household_situations_household_id_proj_households"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proj_household_situations")),
        sa.UniqueConstraint(
            "household_id",
            "kind",
            "effective_from",
            name=op.f("uq_proj_household_situations_household_id_kind_effective_from"),
        ),
    )
    op.create_index(op.f("ix_proj_household_situations_household_id"), "proj_household_situations", ["household_id"])


def downgrade() -> None:
    op.drop_table("proj_household_situations")
    op.drop_table("proj_households")
