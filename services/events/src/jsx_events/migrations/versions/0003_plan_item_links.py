"""activities link a plan item: activities.plan_id (+ index), wider item ids

Before this revision the wire's ``plan`` ("plans/{plan}") was stored in
activities.plan_item_id although it named a plan; those links move to
plan_id and plan_item_id is cleared (the clerk picks the item anew).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.add_column(sa.Column("plan_id", sa.String(length=36), nullable=False, server_default=""))
        batch.alter_column(
            "plan_item_id", type_=sa.String(length=64), existing_type=sa.String(length=36), existing_nullable=False
        )
        batch.create_index(batch.f("ix_activities_plan_id"), ["plan_id"], unique=False)
    op.execute("UPDATE activities SET plan_id = plan_item_id WHERE plan_item_id IN (SELECT id FROM plans)")
    op.execute("UPDATE activities SET plan_item_id = ''")
    with op.batch_alter_table("activities") as batch:
        batch.alter_column("plan_id", server_default=None, existing_type=sa.String(length=36), existing_nullable=False)
    with op.batch_alter_table("plan_items") as batch:
        batch.alter_column(
            "id", type_=sa.String(length=64), existing_type=sa.String(length=36), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("plan_items") as batch:
        batch.alter_column(
            "id", type_=sa.String(length=36), existing_type=sa.String(length=64), existing_nullable=False
        )
    # back to the old meaning: the column held the plan
    op.execute("UPDATE activities SET plan_item_id = plan_id")
    with op.batch_alter_table("activities") as batch:
        batch.drop_index(batch.f("ix_activities_plan_id"))
        batch.alter_column(
            "plan_item_id", type_=sa.String(length=36), existing_type=sa.String(length=64), existing_nullable=False
        )
        batch.drop_column("plan_id")
