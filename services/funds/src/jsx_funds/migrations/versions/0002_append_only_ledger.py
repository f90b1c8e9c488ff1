"""append-only ledger: the database refuses UPDATE and DELETE of ledger rows

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("journals", "ledger_entries", "payments", "donations")
MESSAGE = "ledger rows are immutable: post a reversal instead"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION funds_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{MESSAGE} (%% on %%)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
            END $$
            """.replace("%%", "%")
        )
        for t in TABLES:
            op.execute(
                f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                f"FOR EACH ROW EXECUTE FUNCTION funds_append_only()"
            )
            # TRUNCATE skips row triggers; close that path too.
            op.execute(
                f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION funds_append_only()"
            )
    else:
        for t in TABLES:
            for op_name in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {t}_no_{op_name.lower()} BEFORE {op_name} ON {t} "
                    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for t in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {t}_append_only ON {t}")
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}")
        op.execute("DROP FUNCTION IF EXISTS funds_append_only()")
    else:
        for t in TABLES:
            for op_name in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {t}_no_{op_name}")
