"""Alembic environment: migrates jsxcore's CoreBase tables (outbox, inbox,
idempotency keys) and the members Base together, on SQLite or PostgreSQL."""
from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData, create_engine, pool

import jsxcore.idempotency  # noqa: F401  (registers its table on CoreBase)
import jsxcore.outbox  # noqa: F401
from jsx_members.adapters.db import Base
from jsxcore.db import CoreBase

target_metadata: list[MetaData] = [CoreBase.metadata, Base.metadata]


def run() -> None:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        # SQLite cannot ALTER constraints in place: batch mode rebuilds tables.
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=conn.dialect.name == "sqlite",
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
