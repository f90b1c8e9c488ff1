"""payments.commitment_id dropped: a payment's earmark is on its ledger entries

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23

Why: nothing read ``payments.commitment_id``: a payment made from an earmark
(预留) names it on its ledger entries (``ledger_entries.commitment_id``, with
its own foreign key), which is where the balance checks and ``verify`` look.
The copy on ``payments`` cost a foreign-key trigger call for every payment
row, ~1 s for a million-payment 特别扶助 batch that never has an earmark
(bench/monthly_batch). ``downgrade`` puts the column back, filled from the
ledger entries.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MESSAGE = "ledger rows are immutable: post a reversal instead"


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _append_only(on: bool) -> None:
    """The payments table's append-only triggers (from 0002/0007), off while its shape changes."""
    if _pg():
        if on:
            op.execute(
                "CREATE TRIGGER payments_append_only BEFORE UPDATE OR DELETE ON payments "
                "FOR EACH ROW EXECUTE FUNCTION funds_append_only()"
            )
            op.execute(
                "CREATE TRIGGER payments_no_truncate BEFORE TRUNCATE ON payments "
                "FOR EACH STATEMENT EXECUTE FUNCTION funds_append_only()"
            )
        else:
            op.execute("DROP TRIGGER IF EXISTS payments_append_only ON payments")
            op.execute("DROP TRIGGER IF EXISTS payments_no_truncate ON payments")
    else:
        for name in ("update", "delete"):
            if on:
                op.execute(
                    f"CREATE TRIGGER payments_no_{name} BEFORE {name.upper()} ON payments "
                    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
                )
            else:
                op.execute(f"DROP TRIGGER IF EXISTS payments_no_{name}")


def upgrade() -> None:
    _append_only(False)
    with op.batch_alter_table("payments") as b:
        b.drop_constraint("fk_payments_commitment_id_journals", type_="foreignkey")
        b.drop_column("commitment_id")
    _append_only(True)


def downgrade() -> None:
    _append_only(False)
    with op.batch_alter_table("payments") as b:
        b.add_column(sa.Column("commitment_id", BigId, nullable=True))
        b.create_foreign_key("fk_payments_commitment_id_journals", "journals", ["commitment_id"], ["id"])
    op.execute(
        "UPDATE payments SET commitment_id = (SELECT max(e.commitment_id) FROM ledger_entries AS e"
        " WHERE e.payment_id = payments.id)"
    )
    _append_only(True)
