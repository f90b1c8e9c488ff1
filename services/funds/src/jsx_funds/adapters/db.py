"""Funds database: SQLAlchemy models, repository queries and ``migrate(url)``.

Ledger tables (``journals``, ``ledger_entries``) and the records hanging off
them (``payments``, ``donations``) are append-only: this module has no update
or delete path for them, and triggers installed by the migrations make the
database itself refuse UPDATE/DELETE on them (PostgreSQL and SQLite alike).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timezone
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ColumnElement,
    Date,
    DateTime,
    ForeignKey,
    Index,
    JSON,
    Integer,
    MetaData,
    SmallInteger,
    String,
    UniqueConstraint,
    and_,
    case,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jsxcore.db import NAMING

from jsx_funds import domain as d


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


class HouseholdProjection(Base):
    """The funds service's copy of a members household (from members events).

    Ids, village and counts only — no names or ID numbers: those stay in the
    members service. ``as_of`` is the ``occurred_at`` of the newest event
    applied, so an older event arriving late never overwrites newer facts.
    """

    __tablename__ = "proj_households"

    #: The members service's id (``households/{id}`` without the prefix).
    household_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    village: Mapped[str] = mapped_column(String(12), index=True)
    #: ``persons/{id}`` of the head (户主), for per-household payments.
    head_person: Mapped[str] = mapped_column(String(100), default="")
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SituationProjection(Base):
    """One dated family-planning situation of a projected household."""

    __tablename__ = "proj_household_situations"
    __table_args__ = (UniqueConstraint("household_id", "kind", "effective_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_id: Mapped[str] = mapped_column(ForeignKey("proj_households.household_id"), index=True)
    #: ONLY_CHILD, TWO_DAUGHTERS, SPECIAL_BEREAVED, SPECIAL_DISABLED (jsxcore.hookspecs.Situation values).
    kind: Mapped[str] = mapped_column(String(24))
    effective_from: Mapped[date] = mapped_column(Date)
    #: Last day it applies; NULL while open.
    effective_to: Mapped[date | None] = mapped_column(Date, nullable=True)
    disability_grade: Mapped[int] = mapped_column(Integer, default=0)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProgramRow(Base):
    """A help program run by a region and paid from one fund."""

    __tablename__ = "programs"
    __table_args__ = (CheckConstraint("budget >= 0", name="budget_not_negative"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: jsx.funds.v1.ProgramType without its prefix (SPECIAL_SUPPORT, SANJIEHE …).
    type: Mapped[str] = mapped_column(String(32))
    custom_type: Mapped[str] = mapped_column(String(64), default="")
    region: Mapped[str] = mapped_column(String(12), index=True)
    fund_id: Mapped[int] = mapped_column(ForeignKey("funds.id"))
    #: HOUSEHOLD (paid to the 户主) or PERSON (paid to the person's own card).
    beneficiary: Mapped[str] = mapped_column(String(16))
    #: Review levels fixed by the program ("VILLAGE,TOWNSHIP,COUNTY"); "" = the region plugin's chain.
    approval_levels: Mapped[str] = mapped_column(String(100), default="")
    #: 公示 days fixed by the program; 0 = the region plugin's rule.
    publicity_days: Mapped[int] = mapped_column(Integer, default=0)
    year: Mapped[int] = mapped_column(Integer)
    #: 分; 0 = not capped.
    budget: Mapped[int] = mapped_column(BigInteger, default=0)
    start_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    end_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    description: Mapped[str] = mapped_column(String(2000), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")


class ApplicationRow(Base):
    """An application for a program's help; one per (program, beneficiary, period)."""

    __tablename__ = "applications"
    __table_args__ = (
        UniqueConstraint("program_id", "beneficiary", "period"),
        CheckConstraint("amount_entitled >= 0", name="amount_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True)
    household_id: Mapped[str] = mapped_column(String(64), index=True)
    person: Mapped[str] = mapped_column(String(100), default="")
    #: Who is paid: "persons/…" for per-person programs, the household for per-household ones.
    beneficiary: Mapped[str] = mapped_column(String(100))
    village: Mapped[str] = mapped_column(String(12), index=True)
    period: Mapped[str] = mapped_column(String(16))
    amount_requested: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_entitled: Mapped[int] = mapped_column(BigInteger, default=0)
    #: jsx.funds.v1.ApplicationState without its prefix.
    state: Mapped[str] = mapped_column(String(24), index=True)
    #: The review levels, fixed at submission ("VILLAGE,TOWNSHIP,COUNTY").
    chain: Mapped[str] = mapped_column(String(100))
    publicity_days: Mapped[int] = mapped_column(Integer)
    publicity_working_days: Mapped[bool] = mapped_column(Boolean, default=False)
    publicity_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    publicity_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: [{plugin, plugin_version, hook, region, reasons: [...]}, …]: who decided what, and why.
    provenance: Mapped[list] = mapped_column(JSON, default=list)  # type: ignore[type-arg]
    #: Inputs the clerk gave for the rules (key → value); never 身份证 numbers or phones.
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)  # type: ignore[type-arg]
    #: The program-specific details (Application.details), plain values: {"kind": "loan_interest" |
    #: "hospital_care" | "sanjiehe" | "happiness_fund", …}, money in 分 (``*_fen`` ints), dates ISO
    #: (see ``jsx_funds.programs.parse_details``); None when the program takes none.
    details: Mapped[dict | None] = mapped_column(JSON(none_as_null=True), nullable=True)  # type: ignore[type-arg]
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApprovalStepRow(Base):
    """One review decision; (application, seq) is unique, so two reviewers racing for a step cannot both record it."""

    __tablename__ = "approval_steps"
    __table_args__ = (UniqueConstraint("application_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    application_id: Mapped[int] = mapped_column(BigId, ForeignKey("applications.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(12))
    decision: Mapped[str] = mapped_column(String(8))
    comment: Mapped[str] = mapped_column(String(1000), default="")
    actor: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ObjectionRow(Base):
    """An objection lodged during 公示."""

    __tablename__ = "objections"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    application_id: Mapped[int] = mapped_column(BigId, ForeignKey("applications.id"), index=True)
    reason: Mapped[str] = mapped_column(String(2000))
    lodged_by: Mapped[str] = mapped_column(String(200), default="")
    #: OPEN, UPHELD, DISMISSED.
    state: Mapped[str] = mapped_column(String(12))
    resolution: Mapped[str] = mapped_column(String(2000), default="")
    lodged_actor: Mapped[str] = mapped_column(String(200))
    resolved_actor: Mapped[str] = mapped_column(String(200), default="")
    lodged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WithdrawalRow(Base):
    """Who withdrew an application (撤回), when and why; one per application (the key is the application)."""

    __tablename__ = "application_withdrawals"

    application_id: Mapped[int] = mapped_column(BigId, ForeignKey("applications.id"), primary_key=True,
                                                autoincrement=False)
    #: The state it was withdrawn from, as read then (READY_TO_PAY when its 公示 was over).
    previous_state: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(String(1000))
    actor: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


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


def account_code(fund_id: int, kind: d.AccountKind, source_id: int | None) -> str:
    return f"{fund_id}:{kind.value}" + (f":{source_id}" if source_id is not None else "")


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


async def account_ids(session: AsyncSession, keys: Iterable[d.AccountKey]) -> dict[tuple[int, d.AccountKind, int | None], int]:
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


_NET = func.coalesce(func.sum(case((EntryRow.side == "D", EntryRow.amount), else_=-EntryRow.amount)), 0)


async def balances_for(session: AsyncSession, keys: Iterable[d.AccountKey]) -> dict[d.AccountKey, int]:
    """Current Σdebit − Σcredit for each key (account plus its sub-ledger dimension)."""
    out: dict[d.AccountKey, int] = {}
    for key in keys:
        stmt = (
            select(_NET)
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


async def write_posting(
    session: AsyncSession, journal: JournalRow, posting: d.Posting
) -> list[EntryRow]:
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
            d.Money(e.amount),
        )
        for e, a in rows
    ]


async def fund_balance(session: AsyncSession, fund_id: int) -> d.FundBalance:
    rows = (
        await session.execute(
            select(AccountRow.kind, AccountRow.source_id, _NET)
            .select_from(EntryRow)
            .join(AccountRow, AccountRow.id == EntryRow.account_id)
            .where(AccountRow.fund_id == fund_id)
            .group_by(AccountRow.kind, AccountRow.source_id)
        )
    ).all()
    return d.balance_from_rows(fund_id, [(d.AccountKind(k), s, int(n)) for k, s, n in rows])


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


async def entries_page(
    session: AsyncSession, fund_id: int, *, after_id: int, limit: int, journal_id: int | None = None
) -> Sequence[tuple[EntryRow, AccountRow, JournalRow]]:
    stmt = (
        select(EntryRow, AccountRow, JournalRow)
        .join(AccountRow, AccountRow.id == EntryRow.account_id)
        .join(JournalRow, JournalRow.id == EntryRow.journal_id)
        .where(JournalRow.fund_id == fund_id, EntryRow.id > after_id)
        .order_by(EntryRow.id)
        .limit(limit)
    )
    if journal_id is not None:
        stmt = stmt.where(EntryRow.journal_id == journal_id)
    return (await session.execute(stmt)).tuples().all()


# ---------------------------------------------------------------- migrations

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (run at startup and by tests).

    Synchronous: call it before the event loop starts, or through
    ``asyncio.to_thread`` from async code.
    """
    from jsxcore.migrations import migrate as _migrate

    _migrate(MIGRATIONS, url, revision)
