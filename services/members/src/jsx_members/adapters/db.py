"""The members database, shared by every context: the one declarative
``Base`` (so Alembic sees one metadata), id and clock helpers, and the
engine-level helpers the use cases share (lookup or NOT_FOUND, counts,
bulk inserts, a large SQLite page cache for an import).

Each context declares its own rows in its ``tables.py`` on this ``Base``;
importing this module imports them all (at the end), so ``Base.metadata``
is always complete, whichever module is imported first.
"""

from __future__ import annotations

import operator
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import MetaData, Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from jsxcore.db import NAMING
from jsxcore.errors import NotFound

T = TypeVar("T")


def new_id() -> str:
    """A random (version 4) UUID string, as ``str(uuid.uuid4())`` but without
    building a UUID object: a roster import makes one per person and household."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


# RFC 4122 variant bits (10xx) over the first hex digit of the fourth group.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """The members service's own tables (CoreBase holds outbox/inbox/idempotency)."""

    metadata = MetaData(naming_convention=NAMING)


# ---------------------------------------------------------------- lookups


async def get_or_404(session: AsyncSession, model: type[T], rid: str, what: str) -> T:
    """The row ``rid`` of ``model``, or NOT_FOUND ``<TABLE>_NOT_FOUND`` naming ``what`` (人员, 家庭户, …)."""
    row = await session.get(model, rid)
    if row is None:
        table: str = model.__tablename__  # type: ignore[attr-defined]  # every model here is a declarative row
        raise NotFound(f"未找到该{what}（编号 {rid}），请核对后重试", reason=f"{table.upper()}_NOT_FOUND")
    return row


def table_of(model: type[Any]) -> Table:
    """The Core table of a declarative row class (for bulk inserts and updates)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


async def count(session: AsyncSession, model: type[Any]) -> int:
    return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


def chunks(items: Sequence[T], size: int = 900) -> list[Sequence[T]]:
    """Slices of ``items`` small enough for an ``IN (…)`` list on every database."""
    return [items[i : i + size] for i in range(0, len(items), size)]


#: SQLite page cache for an import, in KiB. The default 2 MiB holds a few
#: thousand index pages: inserting 100k persons with random keys (UUID, blind
#: index) and checking foreign keys against them would then evict and re-read
#: pages on every row.
_IMPORT_CACHE_KIB = 256 * 1024


@asynccontextmanager
async def large_cache(s: AsyncSession) -> AsyncIterator[None]:
    """A large page cache on this connection for a bulk import, back to what it was afterwards (SQLite only)."""
    if (await s.connection()).dialect.name != "sqlite":
        yield
        return
    before = (await s.execute(text("PRAGMA cache_size"))).scalar_one()
    await s.execute(text(f"PRAGMA cache_size=-{_IMPORT_CACHE_KIB}"))
    try:
        yield
    except BaseException:
        # The transaction may be unusable now; the original error matters more
        # than restoring the cache size of a pooled connection.
        with suppress(Exception):
            await s.execute(text(f"PRAGMA cache_size={int(before)}"))
        raise
    await s.execute(text(f"PRAGMA cache_size={int(before)}"))


# ---------------------------------------------------------------- bulk insert

#: (table, columns, constant columns, dialect) → (SQL, row → parameters).
_BULK: dict[
    tuple[str, tuple[str, ...], tuple[str, ...], str],
    tuple[str, Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]]],
] = {}


async def insert_rows(
    session: AsyncSession,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    const: Mapping[str, Any] | None = None,
) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table``, every row
    also getting the ``const`` values, in the session's transaction.

    On SQLite this is one DB-API ``executemany`` of a statement compiled once,
    with SQLAlchemy's type conversions applied (dates, JSON) but no per-row
    parameter compilation, which for a roster import of 100k persons costs
    more than the insert itself. Other dialects (PostgreSQL) keep Core's
    insertmanyvalues, which batches rows into multi-VALUES statements.
    Columns with a Python-side default must be given (in ``columns`` or
    ``const``): defaults are not applied here."""
    if not rows:
        return
    const = dict(const or {})
    conn = await session.connection()
    dialect = conn.dialect
    if not dialect.positional:
        await conn.execute(table.insert(), [{**const, **dict(zip(columns, r, strict=True))} for r in rows])
        return
    key = (table.name, tuple(columns), tuple(const), dialect.name)
    cached = _BULK.get(key)
    if cached is None:
        cached = _BULK[key] = _compile_bulk(table, tuple(columns), tuple(const), dialect)
    sql, params = cached
    fixed = tuple(_process(table, k, dialect, v) for k, v in const.items())
    await conn.exec_driver_sql(sql, [params(r, fixed) for r in rows])


def _process(table: Table, column: str, dialect: Any, value: Any) -> Any:
    proc = table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    return proc(value) if proc is not None and value is not None else value


def _compile_bulk(
    table: Table, columns: tuple[str, ...], const: tuple[str, ...], dialect: Any
) -> tuple[str, Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]]]:
    keys = columns + const
    compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
    order = list(compiled.positiontup or ())
    missing = set(order) - set(keys)
    if missing or len(order) != len(keys):
        raise ValueError(
            f"insert_rows into {table.name}: give columns {sorted(missing)} (they have defaults), each once"
        )
    pick = operator.itemgetter(*[keys.index(k) for k in order])
    # Only columns whose type converts values on this dialect (dates, JSON on
    # SQLite) cost a Python call per row.
    procs = [
        (i, p)
        for i, k in enumerate(columns)
        if (p := table.c[k].type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]

    def params(row: tuple[Any, ...], fixed: tuple[Any, ...]) -> tuple[Any, ...]:
        if procs:
            lst = list(row)
            for i, p in procs:
                if lst[i] is not None:
                    lst[i] = p(lst[i])
            row = tuple(lst)
        out = pick(row + fixed)
        return out if len(keys) > 1 else (out,)

    return compiled.string, params


# Every context's rows, registered on Base (see the module docstring).
from jsx_members.households import tables as _households  # noqa: E402, F401
from jsx_members.network import tables as _network  # noqa: E402, F401
from jsx_members.persons import tables as _persons  # noqa: E402, F401
from jsx_members.sites import tables as _sites  # noqa: E402, F401
