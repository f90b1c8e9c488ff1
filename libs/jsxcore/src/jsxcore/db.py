"""Persistence base shared by every service (each service has its own database).

* ``CoreBase`` holds the tables every service database carries (outbox,
  inbox, idempotency keys); a service's own models use their own
  DeclarativeBase, and its Alembic env migrates both metadatas.
* ``create_engine`` makes an async engine for a URL: SQLite (default, WAL,
  synchronous=FULL, foreign keys on) or PostgreSQL (psycopg 3).
* ``read`` runs a read-only unit of work written as plain synchronous
  SQLAlchemy code; on a SQLite file it skips aiosqlite (see ``read``), and
  ``read(..., inline=True)`` runs a single-row key lookup on the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Engine, MetaData, Result, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import SingletonThreadPool

R = TypeVar("R")

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
        return "sqlite+aiosqlite:" + url[len("sqlite:") :]
    if url.startswith(("postgresql://", "postgres://")):
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


# ---------------------------------------------------------------- reads

#: Worker threads (and pooled read connections) per SQLite database file.
READ_THREADS = 4


def _sqlite_read_pragmas(dbapi_conn: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_conn, record)
    cur = dbapi_conn.cursor()
    # A read connection must never write: a slip in a read function fails loudly.
    cur.execute("PRAGMA query_only=ON")
    cur.close()


def _sqlite_inline_pragmas(dbapi_conn: Any, record: Any) -> None:
    _sqlite_read_pragmas(dbapi_conn, record)
    cur = dbapi_conn.cursor()
    # On the event loop a lock wait would stall every call: fail at once
    # (SQLITE_BUSY) and let ``read`` retry in a worker thread instead.
    cur.execute("PRAGMA busy_timeout=0")
    cur.close()


#: SQLite result codes (low byte) meaning "someone holds a lock": BUSY, LOCKED.
_SQLITE_LOCK_CODES = (5, 6)


def _is_lock_error(e: OperationalError) -> bool:
    return (getattr(e.orig, "sqlite_errorcode", 0) & 0xFF) in _SQLITE_LOCK_CODES


class _SqliteReader:
    """Read connections to one SQLite file, used from a few worker threads.

    aiosqlite hands every cursor call (execute, fetch, close, rollback) to its
    connection's thread and back: ~6 thread hops and ~400 µs of CPU for a
    one-row read. Here a whole read function runs in one hop (~80 µs) on the
    stdlib driver; SQLite releases the GIL while it works, and WAL lets these
    readers run beside the one writer.
    """

    def __init__(self, url: Any, threads: int) -> None:
        self.engine: Engine = create_sync_engine(url.set(drivername="sqlite"), pool_size=threads, max_overflow=0)
        event.listen(self.engine, "connect", _sqlite_read_pragmas)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="jsx-sqlite-read")
        # One connection per calling thread (the loop's) for inline reads: a
        # synchronous call never overlaps itself there, so it never waits for
        # a pooled connection the worker threads hold. timeout=0: see
        # _sqlite_inline_pragmas (the driver's own default waits 5 s).
        self.inline_engine: Engine = create_sync_engine(
            url.set(drivername="sqlite"), poolclass=SingletonThreadPool, connect_args={"timeout": 0}
        )
        event.listen(self.inline_engine, "connect", _sqlite_inline_pragmas)

    def run(self, fn: Callable[[Session], R]) -> R:
        with Session(self.engine, expire_on_commit=False, autoflush=False) as session:
            return fn(session)

    def run_inline(self, fn: Callable[[Session], R]) -> R:
        with Session(self.inline_engine, expire_on_commit=False, autoflush=False) as session:
            return fn(session)

    def close(self) -> None:
        self.pool.shutdown(wait=False)
        self.engine.dispose()
        self.inline_engine.dispose()


_readers: weakref.WeakKeyDictionary[Engine, _SqliteReader | None] = weakref.WeakKeyDictionary()


def _reader_for(engine: AsyncEngine) -> _SqliteReader | None:
    sync = engine.sync_engine
    try:
        return _readers[sync]
    except KeyError:
        pass
    reader: _SqliteReader | None = None
    db = engine.url.database or ""
    # An in-memory database is private to its connection: another engine
    # would see an empty one, so those reads stay on the async engine.
    if engine.dialect.name == "sqlite" and db and db != ":memory:" and not db.startswith("file:"):
        reader = _SqliteReader(engine.url, READ_THREADS)

        def _dispose(_engine: Any, reader: _SqliteReader = reader) -> None:
            reader.close()
            _readers.pop(sync, None)

        event.listen(sync, "engine_disposed", _dispose)
    _readers[sync] = reader
    return reader


async def read(
    sessions: async_sessionmaker[AsyncSession] | AsyncEngine, fn: Callable[[Session], R], *, inline: bool = False
) -> R:
    """Run ``fn(session)`` — synchronous SQLAlchemy code that only reads —
    and return its result (ORM objects come back detached, attributes loaded).

    On a SQLite file, ``fn`` runs in a worker thread on a read-only
    (``PRAGMA query_only``) connection of a sync engine over the same file;
    anywhere else (PostgreSQL, in-memory SQLite) it runs through
    ``AsyncSession.run_sync`` on the async engine. Either way the caller's
    context variables (``current_caller()``) are visible inside ``fn``::

        def load(s: Session) -> Person:
            return s.get(Person, person_id)

        person = await read(sessions, load)

    ``inline=True`` is for a single-row lookup by primary or unique key
    only: on a SQLite file ``fn`` then runs on the event loop itself, which
    saves the thread hop (~80–120 µs of CPU against ~35 µs for the lookup).
    Sound because the work is bounded — a B-tree descent, normally page-cache
    hits; a cold page costs one disk read during which the loop waits — and
    because in WAL mode a reader does not wait for the writer; in the rare
    case it would (a lock held during WAL recovery or a journal-mode change),
    the inline connection fails at once instead of waiting and ``fn`` is run
    again in a worker thread, so ``fn`` must be safe to run twice (reads
    are). Never for scans, ranges or lists. Elsewhere (PostgreSQL,
    in-memory SQLite) ``inline`` changes nothing: a network round trip must
    not block the loop.
    """
    engine = sessions if isinstance(sessions, AsyncEngine) else sessions.kw["bind"]
    reader = _reader_for(engine)
    if reader is None:
        factory = sessions if not isinstance(sessions, AsyncEngine) else session_factory(engine)
        async with factory() as session:
            return await session.run_sync(fn)
    if inline:
        try:
            return reader.run_inline(fn)
        except OperationalError as e:
            if not _is_lock_error(e):
                raise
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(reader.pool, contextvars.copy_context().run, reader.run, fn)


def rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched. ``AsyncSession.execute`` is
    typed as returning a plain ``Result``; for those statements it is a
    ``CursorResult``, which has the count."""
    return int(cast("CursorResult[Any]", result).rowcount or 0)
