"""application withdrawals: who withdrew an application (撤回), when and why

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25

Why: the WITHDRAWN state existed with no way to reach it. WithdrawApplication
keeps its audit record beside the application (like approval steps and
objections) rather than as columns on ``applications``: withdrawals are rare,
and the hot applications table (a million rows a month for 特别扶助) stays as
it is. The application id is the key, so one application is withdrawn once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "application_withdrawals",
        sa.Column(
            "application_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("previous_state", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"], ["applications.id"], name=op.f("fk_application_withdrawals_application_id_applications")
        ),
        sa.PrimaryKeyConstraint("application_id", name=op.f("pk_application_withdrawals")),
    )


def downgrade() -> None:
    op.drop_table("application_withdrawals")
