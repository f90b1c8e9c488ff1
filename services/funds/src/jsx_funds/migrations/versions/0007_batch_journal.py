"""one journal per payment batch: payments carry their batch, bank answers move to bank_results

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

Why: a batch wrote six rows per payment (journal, payment, two ledger
entries, batch payment, outbox) with eight foreign-key checks, and a month
of 特别扶助 for a province is a million payments. Now a batch writes one
PAYMENT journal for its total and, per payment, one ``payments`` row (which
carries what ``batch_payments`` held) and its outbox event. The bank's answer
becomes an append-only ``bank_results`` row instead of an UPDATE.

* ``payments.journal_id`` (the PK) is renamed ``id``; a new ``journal_id``
  names the journal carrying the money (= ``id`` for every existing payment,
  which had its own journal). Neither has a foreign key any more (see the
  model); ``verify`` proves both.
* ``batch_payments``' columns move onto ``payments``; its PAID/FAILED rows
  become ``bank_results``; the table is dropped. A batch's payments are
  found by its id range (``first_payment_id``…``last_payment_id``), not an
  index on ``batch_id``; new batch payments name their basis by position in
  ``payment_batches.bases``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MESSAGE = "ledger rows are immutable: post a reversal instead"


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _append_only(table: str, message: str = MESSAGE) -> None:
    if _pg():
        # funds_append_only() comes from 0002.
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION funds_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION funds_append_only()"
        )
    else:
        for name in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{name.lower()} BEFORE {name} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )


def _drop_append_only(table: str) -> None:
    if _pg():
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    else:
        for name in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{name}")


def upgrade() -> None:
    _drop_append_only("payments")
    # A native rename on both: SQLite (≥ 3.26) rewrites the foreign keys of
    # ledger_entries and payment_failures that name this column; a batch
    # table copy would leave them naming a column that no longer exists.
    op.execute("ALTER TABLE payments RENAME COLUMN journal_id TO id")
    with op.batch_alter_table("payments") as b:
        b.drop_constraint("fk_payments_journal_id_journals", type_="foreignkey")
        b.drop_constraint("fk_payments_fund_id_funds", type_="foreignkey")
        b.drop_index("ix_payments_fund_id")
        b.add_column(sa.Column("journal_id", BigId, nullable=True))
        b.add_column(sa.Column("batch_id", BigId, nullable=True))
        b.add_column(sa.Column("application_id", BigId, nullable=True))
        b.add_column(sa.Column("household_id", sa.String(length=64), nullable=False, server_default=""))
        b.add_column(sa.Column("village", sa.String(length=12), nullable=False, server_default=""))
        b.add_column(sa.Column("basis_no", sa.SmallInteger(), nullable=True))
        b.add_column(sa.Column("basis", sa.JSON(), nullable=True))
    op.execute("UPDATE payments SET journal_id = id")
    op.execute(
        "UPDATE payments SET batch_id = bp.batch_id, application_id = bp.application_id, "
        "household_id = bp.household_id, village = bp.village, basis = bp.basis "
        "FROM batch_payments AS bp WHERE bp.payment_id = payments.id"
    )
    with op.batch_alter_table("payments") as b:
        b.alter_column("journal_id", existing_type=BigId, nullable=False)
    if _pg():
        # Byte order, so a key prefix is one range of the UNIQUE index (rebuilds it).
        op.execute('ALTER TABLE payments ALTER COLUMN payment_key TYPE varchar(200) COLLATE "C"')
    _append_only("payments")

    op.create_table(
        "bank_results",
        sa.Column("payment_id", BigId, nullable=False),
        sa.Column("batch_id", BigId, nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("bank_reference", sa.String(length=100), nullable=False),
        sa.Column("failure_reason", sa.String(length=500), nullable=False),
        sa.Column("paid_date", sa.Date(), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_bank_results_payment_id_payments")),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_bank_results")),
    )
    with op.batch_alter_table("bank_results") as b:
        b.create_index(b.f("ix_bank_results_batch_id"), ["batch_id"], unique=False)
    # settled_at was filled with every bank answer; the actor is known for failures only.
    op.execute(
        "INSERT INTO bank_results (payment_id, batch_id, state, bank_reference, failure_reason, paid_date, "
        "settled_at, actor) SELECT bp.payment_id, bp.batch_id, bp.state, bp.bank_reference, bp.failure_reason, "
        "bp.paid_date, COALESCE(bp.settled_at, CURRENT_TIMESTAMP), COALESCE(pf.actor, '') FROM batch_payments AS bp "
        "LEFT JOIN payment_failures AS pf ON pf.payment_id = bp.payment_id WHERE bp.state <> 'PENDING'"
    )
    _append_only("bank_results", "bank results are final")

    with op.batch_alter_table("payment_batches") as b:
        b.add_column(sa.Column("journal_id", BigId, nullable=True))
        b.add_column(sa.Column("first_payment_id", BigId, nullable=True))
        b.add_column(sa.Column("last_payment_id", BigId, nullable=True))
        b.add_column(sa.Column("bases", sa.JSON(), nullable=True))
        b.create_foreign_key(op.f("fk_payment_batches_journal_id_journals"), "journals", ["journal_id"], ["id"])
    # A batch's payments are read as an id range from now on; its payments kept their own basis.
    op.execute(
        "UPDATE payment_batches SET first_payment_id = (SELECT min(payment_id) FROM batch_payments AS bp "
        "WHERE bp.batch_id = payment_batches.id), last_payment_id = (SELECT max(payment_id) FROM batch_payments AS bp "
        "WHERE bp.batch_id = payment_batches.id)"
    )

    op.drop_table("batch_payments")


def downgrade() -> None:
    raise NotImplementedError("0007 folds batch_payments into payments; restore from a backup to go back")
