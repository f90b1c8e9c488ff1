"""The disbursement context's tables: payments, payment batches, the bank's answers, failures — and the
queries of payment keys (a key is paid at most once; see :mod:`jsx_funds.disbursement.domain`).

Declared on the service's one ``Base`` (``adapters/db.py``), so Alembic sees one metadata. ``payments``,
``bank_results`` and ``payment_failures`` are append-only (triggers, migrations 0002/0006/0007).

Other contexts read these only through the functions below or the disbursement service: the ledger's
``verify`` and ``reverse`` (a payment's journal), programs (an application's payment), reporting (what the
bank confirmed).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ColumnElement,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    Select,
    SmallInteger,
    String,
    and_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from jsx_funds.adapters.db import Base, BigId, KeyString, utcnow
from jsx_funds.disbursement.domain import ATTEMPT_MARK, attempt_key, business_key, payment_key, periodic_key_affixes

__all__ = [
    "BankResultRow",
    "PaymentBatchRow",
    "PaymentFailureRow",
    "PaymentRow",
    "attempt_key",
    "beneficiary_keys",
    "business_key",
    "in_batch",
    "key_range",
    "live_payment_keys",
    "payment_attempts",
    "payment_key",
    "periodic_key_affixes",
]


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
    basis: Mapped[list | None] = mapped_column(JSON, nullable=True)


class PaymentBatchRow(Base):
    """A batch of payments for one program, region and period, sent to the bank together."""

    __tablename__ = "payment_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    region: Mapped[str] = mapped_column(String(12))
    period: Mapped[str] = mapped_column(String(16))
    #: Beneficiaries selected but not paid, with the rules' reasons: [{application, reasons}].
    skipped: Mapped[list] = mapped_column(JSON, default=list)
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
    bases: Mapped[list | None] = mapped_column(JSON, nullable=True)
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


# ---------------------------------------------------------------- payment keys


def in_batch(batch: PaymentBatchRow) -> ColumnElement[bool]:
    """The batch's payments: a range of the primary key (see ``PaymentBatchRow.first_payment_id``)."""
    if batch.first_payment_id is None or batch.last_payment_id is None:
        return PaymentRow.batch_id == batch.id  # being written
    return and_(PaymentRow.id.between(batch.first_payment_id, batch.last_payment_id), PaymentRow.batch_id == batch.id)


def key_range(prefix: str) -> ColumnElement[bool]:
    """Payment keys starting with ``prefix``, as a range of the UNIQUE key index (LIKE would not use it on SQLite)."""
    return and_(PaymentRow.payment_key >= prefix, PaymentRow.payment_key < prefix + "\U0010ffff")


def beneficiary_keys(program_id: int, beneficiary: str) -> ColumnElement[bool]:
    """Every payment key of a beneficiary of a periodic program: all periods, all retries."""
    return key_range(periodic_key_affixes(program_id, "")[0] + beneficiary + "/")


async def payment_attempts(session: AsyncSession, key: str) -> list[tuple[PaymentRow, bool]]:
    """Every stored attempt to pay the business key ``key``, oldest first, with whether it failed."""

    def attempts(cond: ColumnElement[bool]) -> Select[PaymentRow, bool]:
        return (
            select(PaymentRow, PaymentFailureRow.payment_id.is_not(None))
            .outerjoin(PaymentFailureRow, PaymentFailureRow.payment_id == PaymentRow.id)
            .where(cond)
        )

    # The first attempt is found by the UNIQUE index; only a failed one (rare) needs the prefix scan for retries.
    first = (await session.execute(attempts(PaymentRow.payment_key == key))).first()
    if first is None:
        return []
    if not first[1]:
        return [(first[0], False)]
    rows = (await session.execute(attempts(key_range(key + ATTEMPT_MARK)).order_by(PaymentRow.id))).all()
    return [(first[0], True)] + [(p, bool(failed)) for p, failed in rows if business_key(p.payment_key) == key]


async def live_payment_keys(session: AsyncSession, keys: Iterable[str]) -> set[str]:
    """Which of the business ``keys`` are taken by a payment the bank has not failed.

    This is the "already paid" test for batches: a key whose every attempt
    failed may be paid again (``DisbursementService.pay`` stores the retry as ``key#n``).
    """
    wanted = set(keys)
    out: set[str] = set()
    retried: list[str] = []  # first attempt failed: look for a later attempt (rare, so a prefix query each)
    chunk = sorted(wanted)
    for i in range(0, len(chunk), 1000):
        rows = (
            await session.execute(
                select(PaymentRow.payment_key, PaymentFailureRow.payment_id.is_not(None))
                .outerjoin(PaymentFailureRow, PaymentFailureRow.payment_id == PaymentRow.id)
                .where(PaymentRow.payment_key.in_(chunk[i : i + 1000]))
            )
        ).all()
        for key, failed in rows:
            if failed:
                retried.append(key)
            else:
                out.add(key)
    for key in retried:
        if any(not failed for _, failed in await payment_attempts(session, key)):
            out.add(key)
    return out


async def application_payment(
    session: AsyncSession, program_id: int, beneficiary: str, application_id: int
) -> str | None:
    """The stored key of a payment made for an application, if any (a batch payment of any period, or a
    payment keyed ``applications/{id}`` made on its own); ``None`` when it was never paid."""
    own = f"applications/{application_id}"
    return (
        await session.execute(
            select(PaymentRow.payment_key)
            .where(
                (beneficiary_keys(program_id, beneficiary) & (PaymentRow.application_id == application_id))
                | (PaymentRow.payment_key == own)
                | key_range(own + ATTEMPT_MARK)
            )
            .limit(1)
        )
    ).scalar()


async def is_payment_journal_of_a_batch(session: AsyncSession, journal_id: int) -> bool:
    """Whether the journal carries batch payments (a batch's PAYMENT journal, or a batch payment's id)."""
    return (
        await session.execute(select(PaymentBatchRow.id).where(PaymentBatchRow.journal_id == journal_id))
    ).scalar() is not None or (
        await session.execute(
            select(PaymentRow.id).where(PaymentRow.id == journal_id, PaymentRow.batch_id.is_not(None))
        )
    ).scalar() is not None


async def is_return_journal(session: AsyncSession, journal_id: int) -> bool:
    """Whether the journal returned a payment the bank failed (its ``payment_failures`` row names it)."""
    return (
        await session.execute(
            select(PaymentFailureRow.payment_id).where(PaymentFailureRow.return_journal_id == journal_id)
        )
    ).scalar() is not None
