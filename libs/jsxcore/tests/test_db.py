"""jsxcore.db.read: reads through a thread-pooled sync engine on SQLite files,
AsyncSession.run_sync elsewhere; same results, caller context visible."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Integer, String, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from jsxcore.auth import current_caller, reset_caller, set_caller
from jsxcore.db import _readers, create_engine, read, session_factory, transaction
from jsxcore.testing.helpers import who


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "things"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(20))


async def _setup(url: str) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = session_factory(engine)
    async with transaction(sessions) as s:
        s.add_all([Thing(id=1, label="甲"), Thing(id=2, label="乙")])
    return engine, sessions


async def test_read_returns_orm_objects_and_sees_committed_writes(db_url: str) -> None:
    engine, sessions = await _setup(db_url)
    try:
        thing = await read(sessions, lambda s: s.get(Thing, 1))
        assert thing is not None and thing.label == "甲"  # loaded attributes survive the session
        async with transaction(sessions) as s:
            await s.execute(insert(Thing).values(id=3, label="丙"))
        labels = await read(engine, lambda s: s.scalars(select(Thing.label).order_by(Thing.id)).all())
        assert labels == ["甲", "乙", "丙"]
    finally:
        await engine.dispose()


async def test_read_sees_the_callers_context(db_url: str) -> None:
    engine, sessions = await _setup(db_url)
    caller = who("clerk-1", "431222", "county_clerk", display_name="clerk")
    token = set_caller(caller)
    try:

        def load(s: Session) -> str:
            current_caller().require_region("431222101001")
            return current_caller().subject

        assert await read(sessions, load) == "clerk-1"
    finally:
        reset_caller(token)
        await engine.dispose()


async def test_sqlite_file_reads_run_off_the_event_loop_on_read_only_connections(tmp_path: Path) -> None:
    engine, sessions = await _setup(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        loop_thread = threading.get_ident()
        assert await read(sessions, lambda s: threading.get_ident()) != loop_thread
        with pytest.raises(OperationalError, match="readonly"):
            await read(sessions, lambda s: s.execute(insert(Thing).values(id=9, label="x")))
        # many concurrent reads share the small pool without exhausting it
        got = await asyncio.gather(*(read(sessions, lambda s: s.get_one(Thing, 2).label) for _ in range(50)))
        assert set(got) == {"乙"}
        # WAL and foreign keys hold on read connections too
        assert await read(sessions, lambda s: s.connection().exec_driver_sql("PRAGMA journal_mode").scalar()) == "wal"
        assert await read(sessions, lambda s: s.connection().exec_driver_sql("PRAGMA foreign_keys").scalar()) == 1
    finally:
        await engine.dispose()
    assert engine.sync_engine not in _readers  # disposing the engine closed its readers


async def test_in_memory_sqlite_reads_use_the_async_engine() -> None:
    engine, sessions = await _setup("sqlite:///:memory:")
    try:
        # a second engine would open a different, empty database
        assert (await read(sessions, lambda s: s.get_one(Thing, 1))).label == "甲"
        assert _readers[engine.sync_engine] is None
    finally:
        await engine.dispose()


async def test_inline_point_read_gives_the_same_result_on_every_backend(db_url: str) -> None:
    engine, sessions = await _setup(db_url)
    try:
        assert (await read(sessions, lambda s: s.get_one(Thing, 2), inline=True)).label == "乙"
        assert await read(engine, lambda s: s.get(Thing, 99), inline=True) is None
    finally:
        await engine.dispose()


async def test_inline_sqlite_read_runs_on_the_loop_on_a_read_only_connection(tmp_path: Path) -> None:
    engine, sessions = await _setup(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        assert await read(sessions, lambda s: threading.get_ident(), inline=True) == threading.get_ident()
        with pytest.raises(OperationalError, match="readonly"):
            await read(sessions, lambda s: s.execute(insert(Thing).values(id=9, label="x")), inline=True)
        # a write committed just before is visible to the next inline read
        async with transaction(sessions) as s:
            (await s.get_one(Thing, 1)).label = "丁"
        assert (await read(sessions, lambda s: s.get_one(Thing, 1), inline=True)).label == "丁"
    finally:
        await engine.dispose()


async def test_inline_sqlite_read_never_waits_for_a_lock_on_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    engine, _ = await _setup(f"sqlite:///{path}")
    await engine.dispose()
    # Another connection takes the file for itself (exclusive locking mode
    # keeps every other connection out until it closes — the kind of lock a
    # WAL reader can meet, e.g. while a crashed writer's WAL is recovered).
    holder = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE things SET label='戊' WHERE id=2")
    holder.execute("COMMIT")
    engine = create_engine(f"sqlite:///{path}")
    sessions = session_factory(engine)
    threads: list[int] = []

    def load(s: Session) -> str:
        threads.append(threading.get_ident())
        return s.get_one(Thing, 2).label

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    asyncio.get_running_loop().call_later(0.3, holder.close)
    try:
        started = time.perf_counter()
        assert await read(sessions, load, inline=True) == "戊"
        waited = time.perf_counter() - started
    finally:
        tick_task.cancel()
        await engine.dispose()
    # tried inline, found the lock, waited for it in a worker thread while the loop kept running
    assert threads[0] == threading.get_ident() and threads[-1] != threading.get_ident()
    assert waited >= 0.25 and ticks >= 10
