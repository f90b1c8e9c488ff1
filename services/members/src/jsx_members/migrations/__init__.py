"""Alembic migrations of the members database (CoreBase tables + the service's own).

``migrate(url)`` brings a database to the latest revision; the service runs
it at startup and tests run it on every fresh database. Operators can also
use the alembic CLI with ``-x url=…`` and ``script_location=jsx_members:migrations``.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from jsxcore import migrations as _m

HERE = Path(__file__).resolve().parent
sync_url = _m.sync_url


def alembic_config(url: str) -> Config:
    return _m.alembic_config(HERE, url)


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (blocking; call via asyncio.to_thread from async code)."""
    _m.migrate(HERE, url, revision)
