"""Programs tables: programs, applications, their review steps, objections and withdrawals."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from jsx_funds.adapters.db import Base, BigId, utcnow


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
    provenance: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    #: Inputs the clerk gave for the rules (key → value); never 身份证 numbers or phones.
    attributes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    #: The program-specific details (Application.details), plain values: {"kind": "loan_interest" |
    #: "hospital_care" | "sanjiehe" | "happiness_fund", …}, money in 分 (``*_fen`` ints), dates ISO
    #: (see ``jsx_funds.programs.details.parse_details``); None when the program takes none.
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
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

    application_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("applications.id"), primary_key=True, autoincrement=False
    )
    #: The state it was withdrawn from, as read then (READY_TO_PAY when its 公示 was over).
    previous_state: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(String(1000))
    actor: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
