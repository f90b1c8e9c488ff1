"""Persistence base shared by every service (each service has its own database).

* ``CoreBase`` holds the tables every service database carries (outbox,
  inbox, idempotency keys); a service's own models use their own
  DeclarativeBase, and its Alembic env migrates both metadatas.
* ``create_engine`` makes an async engine for a URL: SQLite (default, WAL,
  synchronous=FULL, foreign keys on) or PostgreSQL (psycopg 3).
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class CoreBase(DeclarativeBase):
    """Tables that live in every service's database (outbox, inbox, idempotency)."""

    metadata = MetaData(naming_convention=NAMING)


def normalize_url(url: str) -> str:
    """Accept the URLs operators write and pick the async drivers.

    ``sqlite:///path`` → ``sqlite+aiosqlite:///path``;
    ``postgresql://…`` → ``postgresql+psycopg://…``.
    """
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:"):]
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers never block the writer; FULL: a committed payment survives power loss.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def create_engine(url: str, **kw: Any) -> AsyncEngine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **kw)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 20)
    kw.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kw)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any exception."""
    async with sessions() as session, session.begin():
        yield session


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"
