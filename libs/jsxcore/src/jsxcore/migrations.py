"""Alembic, once for every service.

Each service keeps its own migration history (``migrations/versions``) in its
own package; what is the same everywhere lives here:

* ``run_env(Base.metadata)`` — the whole body of a service's ``env.py``: it
  migrates jsxcore's CoreBase tables (outbox, inbox, idempotency keys) and the
  service's tables together, online or offline (``alembic upgrade --sql``),
  with batch mode on SQLite (which can only ALTER a table by copying it).
* ``migrate(script_location, url)`` — bring a database to a revision; services
  call it at startup and tests on every fresh database.

Operators can also run the alembic CLI against a service's folder with
``-x url=postgresql://…``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import MetaData, create_engine, pool

if TYPE_CHECKING:
    from alembic.config import Config


def sync_url(url: str) -> str:
    """Alembic runs on the synchronous drivers: sqlite3 and psycopg 3."""
    if url.startswith("sqlite+aiosqlite:"):
        return "sqlite:" + url[len("sqlite+aiosqlite:") :]
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def alembic_config(script_location: Path | str, url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    # ConfigParser interpolation: a literal % in a password must be doubled
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def migrate(script_location: Path | str, url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision``. Blocking: call it
    before the event loop starts, or through ``asyncio.to_thread``."""
    from alembic import command

    command.upgrade(alembic_config(script_location, url), revision)


def run_env(*service_metadata: MetaData) -> None:
    """The body of a service's ``migrations/env.py``."""
    from alembic import context

    import jsxcore.idempotency  # registers its table on CoreBase
    import jsxcore.outbox  # noqa: F401  (registers its tables on CoreBase)
    from jsxcore.db import CoreBase

    target = [CoreBase.metadata, *service_metadata]
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    url = sync_url(url or "")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target, literal_binds=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context.configure(
                connection=conn,
                target_metadata=target,
                compare_type=True,
                render_as_batch=conn.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
