"""Alembic migrations of the members database (CoreBase tables + the service's own).

``migrate(url)`` brings a database to the latest revision; the service runs
it at startup and tests run it on every fresh database. Operators can also
use the alembic CLI with ``-x url=…`` and ``script_location=jsx_members:migrations``.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def sync_url(url: str) -> str:
    """Migrations run on the sync drivers: sqlite3 and psycopg 3."""
    for prefix in ("sqlite+aiosqlite:", "postgresql+psycopg:", "postgresql:", "postgres:"):
        if url.startswith(prefix):
            rest = url[len(prefix):]
            return ("sqlite:" if prefix.startswith("sqlite") else "postgresql+psycopg:") + rest
    return url


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (blocking; call via asyncio.to_thread from async code)."""
    command.upgrade(alembic_config(url), revision)
