"""Ledger tables: funds, sources, accounts, journals and their entries, donations, receipt
counters — and the queries the ledger's operations run on them.

``journals``, ``ledger_entries`` and ``donations`` are append-only: this module
has no update or delete path for them, and triggers installed by the
migrations make the database itself refuse UPDATE/DELETE on them
(PostgreSQL and SQLite alike).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ColumnElement,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    case,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from jsx_funds.adapters.db import Base, BigId, utcnow
from jsx_funds.ledger import domain as d
from jsxcore.values import Money


class FundRow(Base):
    __tablename__ = "funds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    #: 12-digit region of the owning association (county, township or village).
    region: Mapped[str] = mapped_column(String(12), index=True)
    owner: Mapped[str] = mapped_column(String(200), default="")
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(String(2000), default="")
    #: Bumped by every posting: the row lock that serialises a fund's postings.
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")


class SourceRow(Base):
    __tablename__ = "fund_sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(12), index=True)
    #: Budget document or project number (文号/项目编号), free text.
    reference: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fund_id: Mapped[int] = mapped_column(ForeignKey("funds.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("fund_sources.id"))
    #: "<fund>:<kind>[:<source>]" — unique, because NULLs in a composite unique key never collide.
    code: Mapped[str] = mapped_column(String(64), unique=True)


class JournalRow(Base):
    __tablename__ = "journals"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    fund_id: Mapped[int] = mapped_column(ForeignKey("funds.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    amount: Mapped[int] = mapped_column(BigInteger)
    #: A journal is reversed at most once: the unique key makes a second reversal fail.
    reverses_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("journals.id"), unique=True)
    #: Document number (拨款文号, 凭证号) the clerk gave.
    reference: Mapped[str] = mapped_column(String(200), default="")
    #: The other side: "fundSources/3", "payments/17", "visits/…".
    counterparty: Mapped[str] = mapped_column(String(200), default="")
    request_id: Mapped[str] = mapped_column(String(64), default="")
    memo: Mapped[str] = mapped_column(String(500), default="")
    actor: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EntryRow(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("side IN ('D', 'C')", name="side_valid"),
        Index("ix_ledger_entries_account_commitment", "account_id", "commitment_id"),
        Index("ix_ledger_entries_account_payment", "account_id", "payment_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    journal_id: Mapped[int] = mapped_column(BigId, ForeignKey("journals.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    side: Mapped[str] = mapped_column(String(1))
    amount: Mapped[int] = mapped_column(BigInteger)
    commitment_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("journals.id"))
    payment_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("payments.id"))


class DonationRow(Base):
    __tablename__ = "donations"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    journal_id: Mapped[int] = mapped_column(BigId, ForeignKey("journals.id"), primary_key=True)
    fund_id: Mapped[int] = mapped_column(ForeignKey("funds.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("fund_sources.id"))
    receipt_no: Mapped[str] = mapped_column(String(40), unique=True)
    donor_kind: Mapped[str] = mapped_column(String(16))
    #: Donors to a 幸福基金 are publicly thanked (公示); the name is not a protected field.
    donor_name: Mapped[str] = mapped_column(String(200))
    #: Published as 匿名 in 公示 and listings.
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    amount: Mapped[int] = mapped_column(BigInteger)
    received_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReceiptCounterRow(Base):
    """Last receipt number per (region, year); bumped in the donation's transaction, so gap-free."""

    __tablename__ = "receipt_counters"

    region: Mapped[str] = mapped_column(String(12), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_no: Mapped[int] = mapped_column(Integer, default=0)


# ---------------------------------------------------------------- queries


def account_code(fund_id: int, kind: d.AccountKind, source_id: int | None) -> str:
    return f"{fund_id}:{kind.value}" + (f":{source_id}" if source_id is not None else "")


async def lock_fund(session: AsyncSession, fund_id: int) -> FundRow | None:
    """Serialise postings on one fund for the rest of the transaction.

    An UPDATE takes PostgreSQL's row lock (like SELECT … FOR UPDATE) and, on
    SQLite, makes this the first write of the transaction so it holds the
    single writer lock before any balance is read.
    """
    res = await session.execute(
        update(FundRow).where(FundRow.id == fund_id).values(version=FundRow.version + 1).returning(FundRow.id)
    )
    if res.scalar_one_or_none() is None:
        return None
    return await session.get(FundRow, fund_id, populate_existing=True)


async def lock_fund_where(session: AsyncSession, fund_id: int | ColumnElement[int]) -> None:
    """Take the fund's row lock as :func:`lock_fund` does, without reading the row: ``fund_id`` may be a
    scalar subquery (the fund of an application), so the lock is one statement — on SQLite the
    transaction's first write, which takes the writer lock before anything is read."""
    await session.execute(update(FundRow).where(FundRow.id == fund_id).values(version=FundRow.version + 1))


async def account_ids(
    session: AsyncSession, keys: Iterable[d.AccountKey]
) -> dict[tuple[int, d.AccountKind, int | None], int]:
    """Ids of the accounts for ``keys``, creating missing ones (caller holds the fund lock)."""
    wanted = {(k.fund_id, k.kind, k.source_id) for k in keys}
    codes = {account_code(*w): w for w in wanted}
    rows = (await session.execute(select(AccountRow.code, AccountRow.id).where(AccountRow.code.in_(codes)))).all()
    found = {codes[code]: aid for code, aid in rows}
    for w in wanted - found.keys():
        row = AccountRow(fund_id=w[0], kind=w[1].value, source_id=w[2], code=account_code(*w))
        session.add(row)
        await session.flush()
        found[w] = row.id
    return found


#: Σdebit − Σcredit of the entries in a query (a balance on the debit side).
NET = func.coalesce(func.sum(case((EntryRow.side == "D", EntryRow.amount), else_=-EntryRow.amount)), 0)


async def balances_for(session: AsyncSession, keys: Iterable[d.AccountKey]) -> dict[d.AccountKey, int]:
    """Current Σdebit − Σcredit for each key (account plus its sub-ledger dimension)."""
    out: dict[d.AccountKey, int] = {}
    for key in keys:
        stmt = (
            select(NET)
            .select_from(EntryRow)
            .join(AccountRow, AccountRow.id == EntryRow.account_id)
            .where(AccountRow.code == account_code(key.fund_id, key.kind, key.source_id))
        )
        if key.commitment_id is not None:
            stmt = stmt.where(EntryRow.commitment_id == key.commitment_id)
        if key.payment_id is not None:
            stmt = stmt.where(EntryRow.payment_id == key.payment_id)
        out[key] = int((await session.execute(stmt)).scalar_one())
    return out


async def write_posting(session: AsyncSession, journal: JournalRow, posting: d.Posting) -> list[EntryRow]:
    """Insert the posting's entries under an already flushed journal header."""
    ids = await account_ids(session, (ln.account for ln in posting.lines))
    rows = [
        EntryRow(
            journal_id=journal.id,
            account_id=ids[(ln.account.fund_id, ln.account.kind, ln.account.source_id)],
            side=ln.side.value,
            amount=ln.amount.fen,
            commitment_id=ln.account.commitment_id,
            payment_id=ln.account.payment_id,
        )
        for ln in posting.lines
    ]
    session.add_all(rows)
    await session.flush()
    return rows


async def journal_lines(session: AsyncSession, journal_id: int) -> list[d.Line]:
    """A journal's entries as domain lines (for reversal and display)."""
    rows = (
        await session.execute(
            select(EntryRow, AccountRow)
            .join(AccountRow, AccountRow.id == EntryRow.account_id)
            .where(EntryRow.journal_id == journal_id)
            .order_by(EntryRow.id)
        )
    ).all()
    return [
        d.Line(
            d.AccountKey(a.fund_id, d.AccountKind(a.kind), a.source_id, e.commitment_id, e.payment_id),
            d.Side(e.side),
            Money(e.amount),
        )
        for e, a in rows
    ]


async def fund_balance(session: AsyncSession, fund_id: int, *, before: datetime | None = None) -> d.FundBalance:
    """The fund's position derived from its entries; ``before`` counts only journals written before that instant."""
    stmt = (
        select(AccountRow.kind, AccountRow.source_id, NET)
        .select_from(EntryRow)
        .join(AccountRow, AccountRow.id == EntryRow.account_id)
        .where(AccountRow.fund_id == fund_id)
        .group_by(AccountRow.kind, AccountRow.source_id)
    )
    if before is not None:
        stmt = stmt.join(JournalRow, JournalRow.id == EntryRow.journal_id).where(JournalRow.created_at < before)
    rows = (await session.execute(stmt)).all()
    return d.balance_from_rows(fund_id, [(d.AccountKind(k), s, int(n)) for k, s, n in rows])


async def held_available_before(session: AsyncSession, fund_id: int, journal_id: int) -> tuple[int, int]:
    """Σ(held), Σ(available) over the fund's journals with id < ``journal_id``."""
    rows = (
        await session.execute(
            select(AccountRow.kind, NET)
            .select_from(EntryRow)
            .join(AccountRow, AccountRow.id == EntryRow.account_id)
            .where(
                AccountRow.fund_id == fund_id,
                EntryRow.journal_id < journal_id,
                AccountRow.kind.in_([k.value for k in d.HELD]),
            )
            .group_by(AccountRow.kind)
        )
    ).all()
    by = {k: int(v) for k, v in rows}
    return sum(by.values()), by.get(d.AccountKind.AVAILABLE.value, 0)


async def last_posting(session: AsyncSession, fund_id: int) -> datetime | None:
    """When the fund's newest journal was written (its ``update_time``)."""
    return (
        await session.execute(select(func.max(JournalRow.created_at)).where(JournalRow.fund_id == fund_id))
    ).scalar()


async def source_names(session: AsyncSession, source_ids: Iterable[int]) -> dict[int, str]:
    ids = list(source_ids)
    if not ids:
        return {}
    return {
        int(i): str(n)
        for i, n in (await session.execute(select(SourceRow.id, SourceRow.name).where(SourceRow.id.in_(ids)))).all()
    }


async def next_receipt_seq(session: AsyncSession, region: str, year: int) -> int:
    """Bump and return the (region, year) receipt counter inside the caller's transaction."""
    res = await session.execute(
        update(ReceiptCounterRow)
        .where(ReceiptCounterRow.region == region, ReceiptCounterRow.year == year)
        .values(last_no=ReceiptCounterRow.last_no + 1)
        .returning(ReceiptCounterRow.last_no)
    )
    seq = res.scalar_one_or_none()
    if seq is not None:
        return int(seq)
    # First receipt of the year: the fund lock the caller holds keeps a second
    # writer for the same region out, and the primary key catches any that slips by.
    session.add(ReceiptCounterRow(region=region, year=year, last_no=1))
    await session.flush()
    return 1


async def expense_total(session: AsyncSession, journal_ids: Iterable[int], side: d.Side) -> int:
    """Σ of the entries ``journal_ids`` booked on EXPENSE accounts on ``side`` (1000 journals a query)."""
    total = 0
    ids = sorted(journal_ids)
    for i in range(0, len(ids), 1000):
        total += int(
            (
                await session.execute(
                    select(func.coalesce(func.sum(EntryRow.amount), 0))
                    .join(AccountRow, AccountRow.id == EntryRow.account_id)
                    .where(
                        AccountRow.kind == d.AccountKind.EXPENSE.value,
                        EntryRow.side == side.value,
                        EntryRow.journal_id.in_(ids[i : i + 1000]),
                    )
                )
            ).scalar_one()
        )
    return total
