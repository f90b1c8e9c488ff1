"""a payment batch keeps its payment count and total

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24

Why: a batch's payments are immutable once written, yet every read of the
batch (the CreatePaymentBatch answer, GetPaymentBatch, a retried request,
the bank import's answer) counted and summed all of them again: ~0.4 s for
a million-payment month, every time. The batch now records both when it is
written; what the bank has answered since is counted from ``bank_results``
(indexed by batch). Knowing the count also tells the payment file whether the
batch's ids are one unbroken range (count = last − first + 1), in which case
each line's 序号 follows from its id and the file can be made in parallel.

Existing batches are filled in from their payments, in one pass over the
table. Both columns stay nullable: a batch written by a service that has not
been upgraded yet (rolling deploy) leaves them empty, and is counted as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_batches") as b:
        b.add_column(sa.Column("payment_count", sa.BigInteger(), nullable=True))
        b.add_column(sa.Column("payment_total", sa.BigInteger(), nullable=True))
    # UPDATE … FROM (PostgreSQL; SQLite ≥ 3.33): one grouped scan of payments, not one per batch.
    op.execute(
        "UPDATE payment_batches SET payment_count = s.n, payment_total = s.total"
        " FROM (SELECT batch_id, count(*) AS n, sum(amount) AS total FROM payments"
        " WHERE batch_id IS NOT NULL GROUP BY batch_id) AS s WHERE s.batch_id = payment_batches.id"
    )


def downgrade() -> None:
    with op.batch_alter_table("payment_batches") as b:
        b.drop_column("payment_total")
        b.drop_column("payment_count")
