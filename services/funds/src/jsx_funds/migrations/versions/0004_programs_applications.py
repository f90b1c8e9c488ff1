"""programs, applications, approval steps, objections

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 17:20:08.656837
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "programs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("custom_type", sa.String(length=64), nullable=False),
        sa.Column("region", sa.String(length=12), nullable=False),
        sa.Column("fund_id", sa.Integer(), nullable=False),
        sa.Column("beneficiary", sa.String(length=16), nullable=False),
        sa.Column("approval_levels", sa.String(length=100), nullable=False),
        sa.Column("publicity_days", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("budget", sa.BigInteger(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.CheckConstraint("budget >= 0", name=op.f("ck_programs_budget_not_negative")),
        sa.ForeignKeyConstraint(["fund_id"], ["funds.id"], name=op.f("fk_programs_fund_id_funds")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programs")),
    )
    with op.batch_alter_table("programs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_programs_region"), ["region"], unique=False)

    op.create_table(
        "applications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.String(length=64), nullable=False),
        sa.Column("person", sa.String(length=100), nullable=False),
        sa.Column("beneficiary", sa.String(length=100), nullable=False),
        sa.Column("village", sa.String(length=12), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("amount_requested", sa.BigInteger(), nullable=False),
        sa.Column("amount_entitled", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("chain", sa.String(length=100), nullable=False),
        sa.Column("publicity_days", sa.Integer(), nullable=False),
        sa.Column("publicity_working_days", sa.Boolean(), nullable=False),
        sa.Column("publicity_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("publicity_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provenance", sa.JSON(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_entitled >= 0", name=op.f("ck_applications_amount_not_negative")),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_applications_program_id_programs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_applications")),
        sa.UniqueConstraint(
            "program_id", "beneficiary", "period", name=op.f("uq_applications_program_id_beneficiary_period")
        ),
    )
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_applications_household_id"), ["household_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_applications_program_id"), ["program_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_applications_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_applications_village"), ["village"], unique=False)

    op.create_table(
        "approval_steps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("application_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("region", sa.String(length=12), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("comment", sa.String(length=1000), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"], ["applications.id"], name=op.f("fk_approval_steps_application_id_applications")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_steps")),
        sa.UniqueConstraint("application_id", "seq", name=op.f("uq_approval_steps_application_id_seq")),
    )
    with op.batch_alter_table("approval_steps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_approval_steps_application_id"), ["application_id"], unique=False)

    op.create_table(
        "objections",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("application_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        sa.Column("lodged_by", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("resolution", sa.String(length=2000), nullable=False),
        sa.Column("lodged_actor", sa.String(length=200), nullable=False),
        sa.Column("resolved_actor", sa.String(length=200), nullable=False),
        sa.Column("lodged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["application_id"], ["applications.id"], name=op.f("fk_objections_application_id_applications")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_objections")),
    )
    with op.batch_alter_table("objections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_objections_application_id"), ["application_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("objections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_objections_application_id"))

    op.drop_table("objections")
    with op.batch_alter_table("approval_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approval_steps_application_id"))

    op.drop_table("approval_steps")
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_applications_village"))
        batch_op.drop_index(batch_op.f("ix_applications_state"))
        batch_op.drop_index(batch_op.f("ix_applications_program_id"))
        batch_op.drop_index(batch_op.f("ix_applications_household_id"))

    op.drop_table("applications")
    with op.batch_alter_table("programs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_programs_region"))

    op.drop_table("programs")
