"""走访慰问 visits and their 慰问金 booking state. Pure Python, no I/O.

A visit with 慰问金 waits (PENDING) for the funds service to book it (BOOKED, with
the ledger entry) or refuse it (REJECTED, with funds' reason); a visit without
money has nothing to book (NO_MONEY).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import date

from jsxcore.errors import ErrorCollector, FailedPrecondition
from jsxcore.values import Money, RegionCode

#: No 慰问金 (Money is immutable, so one shared default is safe).
ZERO = Money(0)


class VisitState(enum.StrEnum):
    """``NO_MONEY``: a visit without 慰问金, nothing for funds to book."""

    NO_MONEY = "NO_MONEY"
    PENDING = "PENDING"
    BOOKED = "BOOKED"
    REJECTED = "REJECTED"


VISIT_STATE_LABELS = {
    VisitState.NO_MONEY: "无慰问金",
    VisitState.PENDING: "待记账",
    VisitState.BOOKED: "已记账",
    VisitState.REJECTED: "被拒绝",
}


@dataclass(frozen=True)
class BookingResult:
    """Funds' answer for a visit's 慰问金: booked (with its ledger entry) or rejected (with its reason)."""

    visit_id: str
    booked: bool
    ledger_entry: str = ""
    reason: str = ""  # funds' reason code, e.g. INSUFFICIENT_FUNDS
    message: str = ""  # funds' Chinese message


@dataclass(frozen=True)
class Visit:
    """走访慰问: a visitor (volunteer/clerk id) visits a household.

    With 慰问金 (``amount`` > 0) a ``fund_id`` is required and the visit waits
    (PENDING) for the funds service to book or reject it.
    """

    id: str
    household_id: str
    region: RegionCode
    visitor_id: str
    visited_on: date
    notes: str = ""
    amount: Money = ZERO
    fund_id: str = ""
    site_id: str = ""
    state: VisitState = VisitState.NO_MONEY
    reject_reason: str = ""
    booking_ref: str = ""
    occasion: str = ""
    attachments: tuple[str, ...] = ()
    reject_code: str = ""

    @classmethod
    def record(
        cls,
        *,
        id: str,
        household_id: str,
        region: RegionCode,
        visitor_id: str,
        visited_on: date,
        notes: str = "",
        amount: Money = ZERO,
        fund_id: str = "",
        site_id: str = "",
        occasion: str = "",
        attachments: tuple[str, ...] = (),
    ) -> Visit:
        """A new visit, validated, in its initial state."""
        return cls(
            id,
            household_id,
            region,
            visitor_id,
            visited_on,
            notes,
            amount,
            fund_id,
            site_id,
            occasion=occasion,
            attachments=attachments,
        ).recorded()

    def recorded(self) -> Visit:
        """This visit as recorded: validated, in its initial state (PENDING with 慰问金, else NO_MONEY)."""
        errs = ErrorCollector()
        if not self.household_id:
            errs.add("household_id", "请填写走访的家庭（户编号）")
        if not self.visitor_id:
            errs.add("visitor_id", "请填写走访人（志愿者或工作人员编号）")
        if self.amount.is_negative:
            errs.add("amount", "慰问金不能为负数")
        if self.amount and not self.fund_id:
            errs.add("fund_id", "发放慰问金时须指明由哪个资金（fund）列支")
        errs.raise_if_any("走访慰问信息有误，请按字段说明修改后重试")
        return replace(self, state=VisitState.PENDING if self.amount else VisitState.NO_MONEY)

    @property
    def counts(self) -> bool:
        """Whether the visit counts as 走访慰问 done (cadence targets): booked, or without
        慰问金 (nothing to book). A visit waiting for funds (PENDING) counts once booked;
        one whose 慰问金 funds refused (REJECTED) never does."""
        return self.state in (VisitState.BOOKED, VisitState.NO_MONEY)

    def booked(self, booking_ref: str) -> Visit:
        """Funds booked the 慰问金. Repeating the same result is a no-op."""
        if self.state is VisitState.BOOKED:
            return self
        if self.state is not VisitState.PENDING:
            raise FailedPrecondition(
                f"走访记录状态为“{VISIT_STATE_LABELS[self.state]}”，不能再记账", reason="VISIT_NOT_PENDING"
            )
        return replace(self, state=VisitState.BOOKED, booking_ref=booking_ref)

    def rejected(self, reason: str, code: str = "") -> Visit:
        """Funds refused the 慰问金 (e.g. the fund cannot cover it)."""
        if self.state is VisitState.REJECTED:
            return self
        if self.state is not VisitState.PENDING:
            raise FailedPrecondition(
                f"走访记录状态为“{VISIT_STATE_LABELS[self.state]}”，不能再改为被拒绝", reason="VISIT_NOT_PENDING"
            )
        return replace(
            self, state=VisitState.REJECTED, reject_reason=reason or "资金服务拒绝记账（未说明原因）", reject_code=code
        )

    def answered(self, result: BookingResult) -> Visit:
        """The visit after funds' answer (a repeated answer changes nothing; a contradicting one is refused)."""
        return self.booked(result.ledger_entry) if result.booked else self.rejected(result.message, result.reason)
