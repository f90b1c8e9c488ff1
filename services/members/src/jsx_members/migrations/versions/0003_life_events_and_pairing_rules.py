"""Life events and pairing rules: 户籍 moves on persons (moved_on, moved_to),
merged households (closed_on, merged_into), and pairings that record the
rule that allowed them with a slot per volunteer (the 1:1 unique index on
the volunteer becomes a unique index on (volunteer, slot), so a rule that
lets a member keep several households is still enforced by the database).

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = sa.text("end_date IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.add_column(sa.Column("moved_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("moved_to", sa.String(length=12), nullable=True))
    with op.batch_alter_table("households", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("merged_into", sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_households_merged_into_households"), "households", ["merged_into"], ["id"]
        )
    with op.batch_alter_table("pairings", schema=None) as batch_op:
        # Every open pairing today is its volunteer's only one: slot 0.
        batch_op.add_column(sa.Column("volunteer_slot", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("rule_plugin", sa.String(length=64), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("rule_version", sa.String(length=40), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("rule_basis", sa.String(length=2000), nullable=False, server_default=""))
        batch_op.drop_index("uq_pairings_active_volunteer", sqlite_where=_OPEN, postgresql_where=_OPEN)
        batch_op.create_index(
            "uq_pairings_active_volunteer_slot",
            ["volunteer_id", "volunteer_slot"],
            unique=True,
            sqlite_where=_OPEN,
            postgresql_where=_OPEN,
        )


def downgrade() -> None:
    with op.batch_alter_table("pairings", schema=None) as batch_op:
        batch_op.drop_index("uq_pairings_active_volunteer_slot", sqlite_where=_OPEN, postgresql_where=_OPEN)
        batch_op.create_index(
            "uq_pairings_active_volunteer", ["volunteer_id"], unique=True, sqlite_where=_OPEN, postgresql_where=_OPEN
        )
        batch_op.drop_column("rule_basis")
        batch_op.drop_column("rule_version")
        batch_op.drop_column("rule_plugin")
        batch_op.drop_column("volunteer_slot")
    with op.batch_alter_table("households", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_households_merged_into_households"), type_="foreignkey")
        batch_op.drop_column("merged_into")
        batch_op.drop_column("closed_on")
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_column("moved_to")
        batch_op.drop_column("moved_on")
