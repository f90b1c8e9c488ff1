"""outbox payloads compressed with lz4 on PostgreSQL

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24

Why: a million-payment 特别扶助 batch writes ~1000 PaymentsIssued pages of
~100 kB into the outbox in its one transaction. PostgreSQL TOASTs each page,
compressing it with pglz by default: ~0.5 s of the batch, where lz4 takes
~0.1 s for about the same size on disk (17 MB for the month's 105 MB of
pages either way; bench/monthly_batch). The relay reads them back faster too.

Only where the server has lz4 (PostgreSQL 14+ built ``--with-lz4``, as the
Debian and official images are); elsewhere nothing changes. Existing rows
keep their pglz compression until rewritten; both read back the same.
SQLite stores blobs as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _lz4() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or (bind.dialect.server_version_info or ()) < (14,):
        return False
    # The setting lists lz4 among its values only when the server was built with it.
    values = bind.execute(sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")).scalar()
    return "lz4" in (values or [])


def upgrade() -> None:
    if _lz4():
        op.execute("ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION lz4")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql" and (op.get_bind().dialect.server_version_info or ()) >= (14,):
        op.execute("ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION default")
