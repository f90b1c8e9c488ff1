"""Alembic environment: migrates jsxcore's CoreBase tables (outbox, inbox,
idempotency keys) and the events service's own tables in one history."""
from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

import jsxcore.idempotency  # noqa: F401  (registers its table on CoreBase)
import jsxcore.outbox  # noqa: F401
from jsxcore.db import CoreBase

from jsx_events.adapters.db import Base

target_metadata = [CoreBase.metadata, Base.metadata]


def run_migrations_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(
        context.config.get_section(context.config.config_ini_section) or {},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        # render_as_batch: SQLite can only ALTER a table by copying it.
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
