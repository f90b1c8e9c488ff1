"""Members database: SQLAlchemy 2 models and the queries the service needs.

Personal data never sits in plaintext: a 身份证 number is stored as AES-GCM
ciphertext (bound to its row) plus a keyed blind index (HMAC) that is unique,
so duplicates are refused by the database and lookups never scan plaintext;
phones likewise. The masked form (4312**********1234) is kept for messages.

The 1:1 pairing and "one active membership" rules are enforced by partial
unique indexes (``WHERE end_date IS NULL``), so a race cannot break them.
"""
from __future__ import annotations

import operator
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jsxcore.db import NAMING
from jsxcore.values import RegionCode, RegionLevel

_PREFIX = {RegionLevel.PROVINCE: 2, RegionLevel.CITY: 4, RegionLevel.COUNTY: 6, RegionLevel.TOWNSHIP: 9, RegionLevel.VILLAGE: 12}


def new_id() -> str:
    """A random (version 4) UUID string, as ``str(uuid.uuid4())`` but without
    building a UUID object: a roster import makes one per person and household."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


# RFC 4122 variant bits (10xx) over the first hex digit of the fourth group.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def region_prefix(region: RegionCode) -> str:
    """The significant digits of a region: every village inside it starts with them."""
    return region.code[: _PREFIX[region.level]]


class Base(DeclarativeBase):
    """The members service's own tables (CoreBase holds outbox/inbox/idempotency)."""

    metadata = MetaData(naming_convention=NAMING)


class Person(Base):
    __tablename__ = "persons"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(30))
    id_cipher: Mapped[bytes] = mapped_column(LargeBinary)
    id_bidx: Mapped[str] = mapped_column(String(64), unique=True)
    id_masked: Mapped[str] = mapped_column(String(18))
    birth_date: Mapped[date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(1))
    phone_cipher: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_bidx: Mapped[str | None] = mapped_column(String(64), index=True)
    card_cipher: Mapped[bytes | None] = mapped_column(LargeBinary)
    village: Mapped[str] = mapped_column(String(12), index=True)
    hukou: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    death_date: Mapped[date | None] = mapped_column(Date)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Household(Base):
    __tablename__ = "households"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    head_person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    village: Mapped[str] = mapped_column(String(12), index=True)
    address: Mapped[str] = mapped_column(String(200), default="")
    # The situation in force now, denormalised from the history for list filters.
    current_situation: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class HouseholdMember(Base):
    __tablename__ = "household_members"

    household_id: Mapped[str] = mapped_column(ForeignKey("households.id"), primary_key=True)
    # A person belongs to one household (户籍 is single).
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), primary_key=True, unique=True)
    relation: Mapped[str] = mapped_column(String(20))
    position: Mapped[int] = mapped_column(Integer, default=0)


class SituationEntry(Base):
    """Append-only history of a household's family-planning situation."""

    __tablename__ = "household_situations"
    __table_args__ = (UniqueConstraint("household_id", "effective_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    household_id: Mapped[str] = mapped_column(ForeignKey("households.id"), index=True)
    situation: Mapped[str] = mapped_column(String(20))
    effective_from: Mapped[date] = mapped_column(Date)
    disability_grade: Mapped[int | None] = mapped_column(Integer)
    honor_certificate: Mapped[str] = mapped_column(String(40), default="")
    note: Mapped[str] = mapped_column(String(200), default="")
    recorded_by: Mapped[str] = mapped_column(String(100), default="")
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AssociationMember(Base):
    __tablename__ = "association_members"
    __table_args__ = (
        Index(
            "uq_association_members_active_person",
            "person_id",
            unique=True,
            sqlite_where=text("left_on IS NULL"),
            postgresql_where=text("left_on IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    # The association the person belongs to (its level follows from the code).
    region: Mapped[str] = mapped_column(String(12), index=True)
    member_type: Mapped[str] = mapped_column(String(20))
    joined_on: Mapped[date] = mapped_column(Date)
    left_on: Mapped[date | None] = mapped_column(Date)
    left_reason: Mapped[str] = mapped_column(String(200), default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Volunteer(Base):
    __tablename__ = "volunteers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), unique=True)
    region: Mapped[str] = mapped_column(String(12), index=True)
    skills: Mapped[str] = mapped_column(String(100), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Pairing(Base):
    __tablename__ = "pairings"
    __table_args__ = (
        Index("uq_pairings_active_volunteer", "volunteer_id", unique=True,
              sqlite_where=text("end_date IS NULL"), postgresql_where=text("end_date IS NULL")),
        Index("uq_pairings_active_household", "household_id", "kind", unique=True,
              sqlite_where=text("end_date IS NULL"), postgresql_where=text("end_date IS NULL")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    volunteer_id: Mapped[str] = mapped_column(ForeignKey("volunteers.id"), index=True)
    household_id: Mapped[str] = mapped_column(ForeignKey("households.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    end_reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(100))
    village: Mapped[str] = mapped_column(String(12), index=True)
    address: Mapped[str] = mapped_column(String(200), default="")
    # 六有 items held, in canonical order, joined by "、" (empty: none).
    six_haves: Mapped[str] = mapped_column(String(40), default="")
    opened_on: Mapped[date] = mapped_column(Date)
    manager_person_id: Mapped[str | None] = mapped_column(ForeignKey("persons.id"))
    # Set when the site closed (摘牌); the row is kept for history and reports.
    closed_on: Mapped[date | None] = mapped_column(Date)
    closed_reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# ---------------------------------------------------------------- queries


async def person_by_bidx(session: AsyncSession, bidx: str) -> Person | None:
    return (await session.execute(select(Person).where(Person.id_bidx == bidx))).scalar_one_or_none()


async def persons_by_bidx(session: AsyncSession, digests: list[str]) -> dict[str, Person]:
    """Batch lookup for roster import (chunks keep the IN list within limits)."""
    found: dict[str, Person] = {}
    for i in range(0, len(digests), 900):
        rows = await session.execute(select(Person).where(Person.id_bidx.in_(digests[i : i + 900])))
        for p in rows.scalars():
            found[p.id_bidx] = p
    return found


async def household_of(session: AsyncSession, person_id: str) -> HouseholdMember | None:
    q = select(HouseholdMember).where(HouseholdMember.person_id == person_id)
    return (await session.execute(q)).scalar_one_or_none()


async def household_members(session: AsyncSession, household_id: str) -> list[tuple[HouseholdMember, Person]]:
    rows = await session.execute(
        select(HouseholdMember, Person)
        .join(Person, Person.id == HouseholdMember.person_id)
        .where(HouseholdMember.household_id == household_id)
        .order_by(HouseholdMember.position)
    )
    return [(m, p) for m, p in rows.all()]


async def situation_history(session: AsyncSession, household_id: str) -> list[SituationEntry]:
    rows = await session.execute(
        select(SituationEntry).where(SituationEntry.household_id == household_id).order_by(SituationEntry.effective_from)
    )
    return list(rows.scalars())


async def active_pairing(
    session: AsyncSession, *, volunteer_id: str | None = None, household_id: str | None = None, kind: str | None = None
) -> Pairing | None:
    q = select(Pairing).where(Pairing.end_date.is_(None))
    if kind:
        q = q.where(Pairing.kind == kind)
    if volunteer_id:
        q = q.where(Pairing.volunteer_id == volunteer_id)
    if household_id:
        q = q.where(Pairing.household_id == household_id)
    return (await session.execute(q)).scalars().first()


async def active_membership(session: AsyncSession, person_id: str) -> AssociationMember | None:
    q = select(AssociationMember).where(AssociationMember.person_id == person_id, AssociationMember.left_on.is_(None))
    return (await session.execute(q)).scalar_one_or_none()


async def count(session: AsyncSession, model: type[Base]) -> int:
    return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


# ---------------------------------------------------------------- bulk insert

#: (table, columns, constant columns, dialect) → (SQL, row → parameters).
_BULK: dict[tuple[str, tuple[str, ...], tuple[str, ...], str], tuple[str, Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]]]] = {}


async def insert_rows(session: AsyncSession, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]],
                      const: Mapping[str, Any] | None = None) -> None:
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
        await conn.execute(table.insert(), [{**const, **dict(zip(columns, r))} for r in rows])
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


def _compile_bulk(table: Table, columns: tuple[str, ...], const: tuple[str, ...], dialect: Any
                  ) -> tuple[str, Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]]]:
    keys = columns + const
    compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
    order = list(compiled.positiontup or ())
    missing = set(order) - set(keys)
    if missing or len(order) != len(keys):
        raise ValueError(f"insert_rows into {table.name}: give columns {sorted(missing)} (they have defaults), each once")
    pick = operator.itemgetter(*[keys.index(k) for k in order])
    # Only columns whose type converts values on this dialect (dates, JSON on
    # SQLite) cost a Python call per row.
    procs = [(i, p) for i, k in enumerate(columns)
             if (p := table.c[k].type.dialect_impl(dialect).bind_processor(dialect)) is not None]

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
