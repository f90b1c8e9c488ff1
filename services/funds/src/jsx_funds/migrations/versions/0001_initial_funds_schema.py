"""initial funds schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("method", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=200), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("response_type", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("method", "request_id", name=op.f("pk_idempotency_keys")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_keys_created_at", ["created_at"], unique=False)

    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_inbox")),
    )
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_unpublished",
            ["seq"],
            unique=False,
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        )

    op.create_table(
        "fund_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=12), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fund_sources")),
    )
    with op.batch_alter_table("fund_sources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fund_sources_region"), ["region"], unique=False)

    op.create_table(
        "funds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=12), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("allow_negative", sa.Boolean(), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_funds")),
    )
    with op.batch_alter_table("funds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_funds_region"), ["region"], unique=False)

    op.create_table(
        "receipt_counters",
        sa.Column("region", sa.String(length=12), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last_no", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("region", "year", name=op.f("pk_receipt_counters")),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fund_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["fund_id"], ["funds.id"], name=op.f("fk_accounts_fund_id_funds")),
        sa.ForeignKeyConstraint(["source_id"], ["fund_sources.id"], name=op.f("fk_accounts_source_id_fund_sources")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("code", name=op.f("uq_accounts_code")),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_accounts_fund_id"), ["fund_id"], unique=False)

    op.create_table(
        "journals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("fund_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reverses_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("counterparty", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("memo", sa.String(length=500), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_journals_amount_positive")),
        sa.ForeignKeyConstraint(["fund_id"], ["funds.id"], name=op.f("fk_journals_fund_id_funds")),
        sa.ForeignKeyConstraint(["reverses_id"], ["journals.id"], name=op.f("fk_journals_reverses_id_journals")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journals")),
        sa.UniqueConstraint("reverses_id", name=op.f("uq_journals_reverses_id")),
    )
    with op.batch_alter_table("journals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_journals_fund_id"), ["fund_id"], unique=False)

    op.create_table(
        "donations",
        sa.Column("journal_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("fund_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("receipt_no", sa.String(length=40), nullable=False),
        sa.Column("donor_kind", sa.String(length=16), nullable=False),
        sa.Column("donor_name", sa.String(length=200), nullable=False),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_donations_amount_positive")),
        sa.ForeignKeyConstraint(["fund_id"], ["funds.id"], name=op.f("fk_donations_fund_id_funds")),
        sa.ForeignKeyConstraint(["journal_id"], ["journals.id"], name=op.f("fk_donations_journal_id_journals")),
        sa.ForeignKeyConstraint(["source_id"], ["fund_sources.id"], name=op.f("fk_donations_source_id_fund_sources")),
        sa.PrimaryKeyConstraint("journal_id", name=op.f("pk_donations")),
        sa.UniqueConstraint("receipt_no", name=op.f("uq_donations_receipt_no")),
    )
    with op.batch_alter_table("donations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_donations_fund_id"), ["fund_id"], unique=False)

    op.create_table(
        "payments",
        sa.Column("journal_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("fund_id", sa.Integer(), nullable=False),
        sa.Column("payment_key", sa.String(length=200), nullable=False),
        sa.Column("payee", sa.String(length=200), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("commitment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_amount_positive")),
        sa.ForeignKeyConstraint(["commitment_id"], ["journals.id"], name=op.f("fk_payments_commitment_id_journals")),
        sa.ForeignKeyConstraint(["fund_id"], ["funds.id"], name=op.f("fk_payments_fund_id_funds")),
        sa.ForeignKeyConstraint(["journal_id"], ["journals.id"], name=op.f("fk_payments_journal_id_journals")),
        sa.PrimaryKeyConstraint("journal_id", name=op.f("pk_payments")),
        sa.UniqueConstraint("payment_key", name=op.f("uq_payments_payment_key")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payments_fund_id"), ["fund_id"], unique=False)

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("journal_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("side", sa.String(length=1), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("commitment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("payment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.CheckConstraint("side IN ('D', 'C')", name=op.f("ck_ledger_entries_side_valid")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_entries_amount_positive")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_ledger_entries_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["commitment_id"], ["journals.id"], name=op.f("fk_ledger_entries_commitment_id_journals")
        ),
        sa.ForeignKeyConstraint(["journal_id"], ["journals.id"], name=op.f("fk_ledger_entries_journal_id_journals")),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.journal_id"], name=op.f("fk_ledger_entries_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_entries_account_commitment", ["account_id", "commitment_id"], unique=False)
        batch_op.create_index("ix_ledger_entries_account_payment", ["account_id", "payment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_entries_journal_id"), ["journal_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entries_journal_id"))
        batch_op.drop_index("ix_ledger_entries_account_payment")
        batch_op.drop_index("ix_ledger_entries_account_commitment")

    op.drop_table("ledger_entries")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_fund_id"))

    op.drop_table("payments")
    with op.batch_alter_table("donations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_donations_fund_id"))

    op.drop_table("donations")
    with op.batch_alter_table("journals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_journals_fund_id"))

    op.drop_table("journals")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_fund_id"))

    op.drop_table("accounts")
    op.drop_table("receipt_counters")
    with op.batch_alter_table("funds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_funds_region"))

    op.drop_table("funds")
    with op.batch_alter_table("fund_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fund_sources_region"))

    op.drop_table("fund_sources")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_outbox_unpublished",
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        )

    op.drop_table("outbox")
    op.drop_table("inbox")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_keys_created_at")

    op.drop_table("idempotency_keys")
