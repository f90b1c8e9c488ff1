"""member_pairings by volunteer: a request naming a volunteer is checked against its pairings

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_member_pairings_volunteer_id", "member_pairings", ["volunteer_id"])


def downgrade() -> None:
    op.drop_index("ix_member_pairings_volunteer_id", table_name="member_pairings")
