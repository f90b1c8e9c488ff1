"""Funds database: the service's one declarative ``Base`` (so Alembic sees one
metadata), column types and ``utcnow``/``aware``, ``migrate(url)``.

Each bounded context declares its own tables on this ``Base``
(``ledger/tables.py``, ``programs/tables.py``, ``projections/tables.py``, ``disbursement/tables.py``); the
bottom of this module imports them, so importing it gives the whole schema.
Ledger tables and the records hanging off them (``payments``, ``donations``,
``payment_failures``, ``bank_results``) are append-only: triggers installed by
the migrations make the database itself refuse UPDATE/DELETE on them
(PostgreSQL and SQLite alike).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import BigInteger, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase

from jsxcore.db import NAMING

#: Ledger ids outgrow 32 bits on PostgreSQL; SQLite only auto-increments INTEGER keys.
BigId = BigInteger().with_variant(Integer(), "sqlite")
#: Payment keys compare byte by byte ("C" on PostgreSQL, SQLite's default BINARY), so a key
#: prefix is one index range (``disbursement.tables.key_range``) whatever the database's locale.
KeyString = String(200).with_variant(String(200, collation="C"), "postgresql")


class Base(DeclarativeBase):
    """The funds service's own tables (CoreBase tables live beside them)."""

    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything is stored in UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


# ---------------------------------------------------------------- migrations

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (run at startup and by tests).

    Synchronous: call it before the event loop starts, or through
    ``asyncio.to_thread`` from async code.
    """
    from jsxcore.migrations import migrate as _migrate

    _migrate(MIGRATIONS, url, revision)


def _register_tables() -> None:
    """Every context's tables on :class:`Base` (Alembic, ``create_all`` and tests see one metadata).
    Imported here, at the end, because each of those modules imports ``Base`` from this one."""
    import jsx_funds.disbursement.tables
    import jsx_funds.ledger.tables
    import jsx_funds.programs.tables
    import jsx_funds.projections.tables  # noqa: F401


_register_tables()
