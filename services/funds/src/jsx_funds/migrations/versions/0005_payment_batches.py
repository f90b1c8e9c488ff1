"""payment batches

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 17:22:43.888443
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_batches",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(length=12), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("skipped", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_payment_batches_program_id_programs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_batches")),
    )
    with op.batch_alter_table("payment_batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payment_batches_program_id"), ["program_id"], unique=False)

    op.create_table(
        "batch_payments",
        sa.Column("payment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("application_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("household_id", sa.String(length=64), nullable=False),
        sa.Column("payee", sa.String(length=100), nullable=False),
        sa.Column("village", sa.String(length=12), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("basis", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"], ["applications.id"], name=op.f("fk_batch_payments_application_id_applications")
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["payment_batches.id"], name=op.f("fk_batch_payments_batch_id_payment_batches")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.journal_id"], name=op.f("fk_batch_payments_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_batch_payments")),
    )
    with op.batch_alter_table("batch_payments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_batch_payments_application_id"), ["application_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_batch_payments_batch_id"), ["batch_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("batch_payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batch_payments_batch_id"))
        batch_op.drop_index(batch_op.f("ix_batch_payments_application_id"))

    op.drop_table("batch_payments")
    with op.batch_alter_table("payment_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_batches_program_id"))

    op.drop_table("payment_batches")
