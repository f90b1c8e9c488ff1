"""application details: the program-specific part of an application (loan, hospital stay, 三结合, 幸福基金 use)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24

Why: SubmitApplication accepted ``Application.details`` on the wire and
dropped it, so a 住院护理补贴 rule could not see the days in hospital and a
三结合 report could not sum the income gained. The details are kept as one
JSON value per application (plain values, money in 分, dates ISO); existing
applications have none (NULL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("applications") as b:
        b.add_column(sa.Column("details", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("applications") as b:
        b.drop_column("details")
