"""bank results: payment failures (append-only) and the bank's answer on batch payments

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MESSAGE = "payment failures are immutable"


def upgrade() -> None:
    op.create_table(
        "payment_failures",
        sa.Column("payment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("return_journal_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.journal_id"], name=op.f("fk_payment_failures_payment_id_payments")
        ),
        sa.ForeignKeyConstraint(
            ["return_journal_id"], ["journals.id"], name=op.f("fk_payment_failures_return_journal_id_journals")
        ),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_payment_failures")),
    )
    with op.batch_alter_table("batch_payments") as b:
        b.add_column(sa.Column("bank_reference", sa.String(length=100), nullable=False, server_default=""))
        b.add_column(sa.Column("failure_reason", sa.String(length=500), nullable=False, server_default=""))
        b.add_column(sa.Column("paid_date", sa.Date(), nullable=True))
        b.add_column(sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # funds_append_only() comes from 0002.
        op.execute(
            "CREATE TRIGGER payment_failures_append_only BEFORE UPDATE OR DELETE ON payment_failures "
            "FOR EACH ROW EXECUTE FUNCTION funds_append_only()"
        )
        op.execute(
            "CREATE TRIGGER payment_failures_no_truncate BEFORE TRUNCATE ON payment_failures "
            "FOR EACH STATEMENT EXECUTE FUNCTION funds_append_only()"
        )
    else:
        for name in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER payment_failures_no_{name.lower()} BEFORE {name} ON payment_failures "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
            )


def downgrade() -> None:
    op.drop_table("payment_failures")  # its triggers go with it
    with op.batch_alter_table("batch_payments") as b:
        for col in ("settled_at", "paid_date", "failure_reason", "bank_reference"):
            b.drop_column(col)
