"""Funds database: the service's one declarative ``Base`` (so Alembic sees one
metadata), column types and ``utcnow``/``aware``, ``migrate(url)`` — and, until
the disbursement context takes them, the payment tables and their key helpers.

Each bounded context declares its own tables on this ``Base``
(``ledger/tables.py``, ``programs/tables.py``, ``projections/tables.py`` …); the
bottom of this module imports them, so importing it gives the whole schema.
Ledger tables and the records hanging off them (``payments``, ``donations``,
``payment_failures``, ``bank_results``) are append-only: triggers installed by
the migrations make the database itself refuse UPDATE/DELETE on them
(PostgreSQL and SQLite alike).
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timezone
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ColumnElement,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    and_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jsxcore.db import NAMING


#: Ledger ids outgrow 32 bits on PostgreSQL; SQLite only auto-increments INTEGER keys.
BigId = BigInteger().with_variant(Integer(), "sqlite")
#: Payment keys compare byte by byte ("C" on PostgreSQL, SQLite's default BINARY), so a key
#: prefix is one index range (:func:`key_range`) whatever the database's locale.
KeyString = String(200).with_variant(String(200, collation="C"), "postgresql")


class Base(DeclarativeBase):
    """The funds service's own tables (CoreBase tables live beside them)."""

    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(dt: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything is stored in UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


class PaymentRow(Base):
    """A payment: who is paid how much for which business key, and the journal that carries its money.

    Ids come from the journals' id space, so they never collide with a
    journal: a single payment's id *is* its PAYMENT journal's id (that
    journal has the payment's own EXPENSE line), while the payments of a
    batch take fresh numbers from that space and share the batch's one
    PAYMENT journal (Dr EXPENSE Σ, Cr AVAILABLE Σ). ``verify`` proves, per
    journal, Σ its payments = its EXPENSE debit. Why one journal per batch:
    a month of 特别扶助 is a million payments, and a journal plus two
    entries per payment tripled the rows written (bench/monthly_batch).

    Append-only (triggers). What the bank answered lives in ``bank_results``.
    A payment made from an earmark (预留) names it on its ledger entries.
    """

    __tablename__ = "payments"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    #: The PAYMENT journal carrying the money. No foreign key on purpose: the
    #: check costs ~4 µs a row on PostgreSQL, a quarter of a batch's write
    #: time; the batch writes its journal in the same transaction and
    #: ``verify`` proves every payment's journal exists and covers it.
    journal_id: Mapped[int] = mapped_column(BigId)
    fund_id: Mapped[int] = mapped_column(Integer)
    #: Business key that may be paid once: "applications/42", "visits/…", or a periodic program's
    #: "{program}/{beneficiary}/{period}" ("7/persons/9/2022-08"; migration 0012 shortened "programs/7/beneficiaries/…").
    #: A retry after a bank failure stores "{key}#2", "#3", … (see :func:`attempt_key`), so the
    #: UNIQUE constraint still allows one row per attempt and :func:`live_payment_keys` tells
    #: which business keys are taken by a payment that has not failed.
    payment_key: Mapped[str] = mapped_column(KeyString, unique=True)
    #: Resource name of who is paid ("persons/…", "households/123"), never personal data.
    payee: Mapped[str] = mapped_column(String(200))
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: The payment batch (一卡通 disbursement) it belongs to; NULL for a payment made on its own.
    #: Not indexed: a batch's payments are found by its id range (:func:`in_batch`), and each
    #: index costs a million-payment batch ~2 s (bench/monthly_batch).
    batch_id: Mapped[int | None] = mapped_column(BigId)
    #: The application it pays (batch payments); found through the payment key (:func:`key_range`).
    application_id: Mapped[int | None] = mapped_column(BigId)
    household_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
    village: Mapped[str] = mapped_column(String(12), default="", server_default="")
    #: How the amount was computed (the plugin's basis), for the clerk and the auditor: a batch
    #: payment names it by its position in ``payment_batches.bases`` (a month's million payments
    #: share a handful); a payment from before migration 0007 carries its own in ``basis``.
    basis_no: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    basis: Mapped[list | None] = mapped_column(JSON, nullable=True)  # type: ignore[type-arg]


class PaymentBatchRow(Base):
    """A batch of payments for one program, region and period, sent to the bank together."""

    __tablename__ = "payment_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    region: Mapped[str] = mapped_column(String(12))
    period: Mapped[str] = mapped_column(String(16))
    #: Beneficiaries selected but not paid, with the rules' reasons: [{application, reasons}].
    skipped: Mapped[list] = mapped_column(JSON, default=list)  # type: ignore[type-arg]
    actor: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: The batch's one PAYMENT journal (set when the batch is written).
    journal_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("journals.id"), nullable=True)
    #: Lowest and highest id of its payments: the batch's payments are read as this range of the
    #: payments' primary key (filtered by ``batch_id``, as other payments may share the range).
    first_payment_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    last_payment_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    #: The distinct bases (lists of lines) of its payments' amounts; ``payments.basis_no`` indexes it.
    bases: Mapped[list | None] = mapped_column(JSON, nullable=True)  # type: ignore[type-arg]
    #: How many payments it holds and their total in 分, as written (migration 0013; empty for a batch
    #: written by a service from before it, whose payments are then counted).
    payment_count: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    payment_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class BankResultRow(Base):
    """What the bank answered for one batch payment (成功 with its 流水号, or 失败 with the reason).

    Append-only (triggers): a payment's result is final; a payment with no
    row is still pending at the bank. A failure also has its
    ``payment_failures`` row (the money's way back to the fund).
    """

    __tablename__ = "bank_results"

    payment_id: Mapped[int] = mapped_column(BigId, ForeignKey("payments.id"), primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigId, index=True)
    #: PAID or FAILED.
    state: Mapped[str] = mapped_column(String(8))
    #: The bank's 流水号 once paid.
    bank_reference: Mapped[str] = mapped_column(String(100), default="")
    #: Why the bank could not pay (Chinese), once failed.
    failure_reason: Mapped[str] = mapped_column(String(500), default="")
    paid_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    settled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(200), default="")


class PaymentFailureRow(Base):
    """The bank could not pay a payment; its money went back to the fund by ``return_journal_id``.

    Append-only (triggers): a failed payment stays failed. Its business key is
    free again, so the beneficiary and period can be paid in a later batch.
    """

    __tablename__ = "payment_failures"

    payment_id: Mapped[int] = mapped_column(BigId, ForeignKey("payments.id"), primary_key=True)
    return_journal_id: Mapped[int] = mapped_column(BigId, ForeignKey("journals.id"))
    reason: Mapped[str] = mapped_column(String(500))
    actor: Mapped[str] = mapped_column(String(200))
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


#: Tables no code path may update or delete; the migrations add triggers enforcing it.
APPEND_ONLY_TABLES = ("journals", "ledger_entries", "payments", "donations", "payment_failures", "bank_results")


# ---------------------------------------------------------------- repository


def in_batch(batch: PaymentBatchRow) -> ColumnElement[bool]:
    """The batch's payments: a range of the primary key (see ``PaymentBatchRow.first_payment_id``)."""
    if batch.first_payment_id is None or batch.last_payment_id is None:
        return PaymentRow.batch_id == batch.id  # being written
    return and_(PaymentRow.id.between(batch.first_payment_id, batch.last_payment_id), PaymentRow.batch_id == batch.id)


def key_range(prefix: str) -> ColumnElement[bool]:
    """Payment keys starting with ``prefix``, as a range of the UNIQUE key index (LIKE would not use it on SQLite)."""
    return and_(PaymentRow.payment_key >= prefix, PaymentRow.payment_key < prefix + "\U0010ffff")


def periodic_key_affixes(program_id: int, period: object) -> tuple[str, str]:
    """What a periodic program's payment key puts around the beneficiary: ``{program}/`` and ``/{period}``
    (``7/persons/9/2022-08``, migration 0012). Ordered program → beneficiary → period, so one
    beneficiary's payments of every period are one range of the key index (:func:`beneficiary_keys`)."""
    return f"{program_id}/", f"/{period}"


def payment_key(program_id: int, beneficiary: str, period: object) -> str:
    """A periodic program's business key paid at most once (UNIQUE in ``payments``)."""
    prefix, suffix = periodic_key_affixes(program_id, period)
    return prefix + beneficiary + suffix


def beneficiary_keys(program_id: int, beneficiary: str) -> ColumnElement[bool]:
    """Every payment key of a beneficiary of a periodic program: all periods, all retries."""
    return key_range(periodic_key_affixes(program_id, "")[0] + beneficiary + "/")


def attempt_key(business_key: str, attempt: int) -> str:
    """The stored ``payments.payment_key`` of the n-th attempt to pay a business key (1 → the key itself)."""
    return business_key if attempt == 1 else f"{business_key}#{attempt}"


def business_key(stored: str) -> str:
    """``"…/periods/2022-08#2"`` → ``"…/periods/2022-08"``."""
    head, sep, tail = stored.rpartition("#")
    return head if sep and tail.isdigit() else stored


async def payment_attempts(session: AsyncSession, key: str) -> list[tuple[PaymentRow, bool]]:
    """Every stored attempt to pay the business key ``key``, oldest first, with whether it failed."""
    def attempts(cond):  # type: ignore[no-untyped-def]
        return select(PaymentRow, PaymentFailureRow.payment_id.is_not(None)).outerjoin(
            PaymentFailureRow, PaymentFailureRow.payment_id == PaymentRow.id).where(cond)

    # The first attempt is found by the UNIQUE index; only a failed one (rare) needs the prefix scan for retries.
    first = (await session.execute(attempts(PaymentRow.payment_key == key))).first()
    if first is None:
        return []
    if not first[1]:
        return [(first[0], False)]
    rows = (await session.execute(attempts(key_range(key + "#"))
                                  .order_by(PaymentRow.id))).all()
    return [(first[0], True)] + [(p, bool(failed)) for p, failed in rows if business_key(p.payment_key) == key]


async def live_payment_keys(session: AsyncSession, keys: Iterable[str]) -> set[str]:
    """Which of the business ``keys`` are taken by a payment the bank has not failed.

    This is the "already paid" test for batches: a key whose every attempt
    failed may be paid again (``service.pay`` stores the retry as ``key#n``).
    """
    wanted = set(keys)
    out: set[str] = set()
    retried: list[str] = []  # first attempt failed: look for a later attempt (rare, so a prefix query each)
    chunk = sorted(wanted)
    for i in range(0, len(chunk), 1000):
        rows = (await session.execute(
            select(PaymentRow.payment_key, PaymentFailureRow.payment_id.is_not(None))
            .outerjoin(PaymentFailureRow, PaymentFailureRow.payment_id == PaymentRow.id)
            .where(PaymentRow.payment_key.in_(chunk[i:i + 1000])))).all()
        for key, failed in rows:
            if failed:
                retried.append(key)
            else:
                out.add(key)
    for key in retried:
        if any(not failed for _, failed in await payment_attempts(session, key)):
            out.add(key)
    return out


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
    import jsx_funds.ledger.tables  # noqa: F401
    import jsx_funds.programs.tables  # noqa: F401
    import jsx_funds.projections.tables  # noqa: F401


_register_tables()
