"""贷款贴息 (计生家庭创业贷款贴息): the pure domain — loans, interest receipts, claims.

Pure Python: no database, no protobuf, no I/O. What a clerk types is checked
here and refused with :class:`~jsxcore.errors.InvalidArgument` carrying one
Chinese field violation per bad value; what the region's rule decides comes
from the plugins as plain data (``jsx_loan_purposes``, ``jsx_loan_subsidy_terms``,
``jsx_loan_subsidy``) which the service layer fetches through the
:class:`~jsxcore.plugins.PluginHost` and passes in. The flow a service runs:

1. :meth:`Loan.create` from the contract the clerk types, then
   :meth:`Loan.check_purpose` against the region's purpose list (a forbidden
   use is refused with the rule's reason) and :meth:`Loan.check_terms`
   against the program year's terms (a principal over a ``REFUSE`` cap);
2. :meth:`InterestReceipt.create` for each bank interest certificate;
3. :func:`prepare_claim` — receipts inside the 贴息年度 and the loan term, not
   overlapping, none listed twice or already used by another claim, the
   household not past the number of claims — giving the
   :class:`~jsxcore.hookspecs.LoanClaim` the rule decides;
4. :func:`check_amount` on the rule's decision: not eligible →
   ``FailedPrecondition`` with the rule's reasons; a typed amount that differs
   → ``InvalidArgument`` giving the computed amount and its basis.

Field paths default to the request's (``loan.principal``,
``claim.receipts[2].paid_on``) and can be prefixed for nested requests.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from jsxcore.errors import ErrorCollector, FailedPrecondition, InvalidArgument
from jsxcore.hookspecs import (
    InterestReceiptFacts,
    LoanClaim,
    LoanFacts,
    LoanPurpose,
    LoanPurposes,
    LoanSubsidyDecision,
    LoanSubsidyTerms,
    PriorLoanClaim,
)
from jsxcore.values import Money

__all__ = [
    "MAX_RATE_BP",
    "InterestReceipt",
    "LenderKind",
    "Loan",
    "check_amount",
    "format_rate",
    "parse_rate",
    "prepare_claim",
]

#: Contract rates above 24 %/year are refused: almost always a monthly or daily rate typed as annual.
MAX_RATE_BP = 2400
_MAX_TEXT = 200


class LenderKind(StrEnum):
    """Who lent the money."""

    BANK = "BANK"  # 商业银行
    RURAL_CREDIT = "RURAL_CREDIT"  # 农村信用社 / 农村商业银行
    OTHER = "OTHER"  # 其他持牌金融机构

    @property
    def label(self) -> str:
        return {"BANK": "银行", "RURAL_CREDIT": "农村信用社（农商行）", "OTHER": "其他金融机构"}[self.value]


def format_rate(bp: int) -> str:
    """``435`` → ``"4.35%"``."""
    return f"{bp / 100:.2f}".rstrip("0").rstrip(".") + "%"


def parse_rate(text: str, *, field: str = "loan.annual_rate") -> int:
    """A contract annual rate as a clerk types it (``4.35``, ``4.35%``, ``４．３５％``)
    → basis points (435). At most two decimals of a percent."""
    raw = unicodedata.normalize("NFKC", str(text)).strip().removesuffix("%").strip()
    if not re.fullmatch(r"[0-9]+(\.[0-9]{1,2})?", raw):
        raise InvalidArgument.field(
            field,
            f"合同年利率“{text}”格式不对，请填写百分数，例如 4.35（表示 4.35%），最多两位小数",
            reason="INVALID_RATE",
        )
    try:
        return int(Decimal(raw) * 100)
    except InvalidOperation:  # pragma: no cover - the pattern rules it out
        raise InvalidArgument.field(field, f"合同年利率“{text}”无法识别", reason="INVALID_RATE") from None


def _text(errors: ErrorCollector, field: str, value: str, what: str, *, required: bool = True) -> str:
    clean = unicodedata.normalize("NFKC", value).strip()
    if required and not clean:
        errors.add(field, f"请填写{what}")
    elif len(clean) > _MAX_TEXT:
        errors.add(field, f"{what}过长（最多 {_MAX_TEXT} 字）")
    return clean


@dataclass(frozen=True)
class Loan:
    """A household's business loan (贷款合同): who borrowed from whom, how much,
    at what annual rate, from ``start`` to ``end`` (the contract's last day,
    inclusive), for which purpose (a :class:`~jsxcore.hookspecs.LoanPurpose`
    code of the region's list)."""

    household_id: str
    borrower_person_id: str
    lender: str
    lender_kind: LenderKind
    contract_number: str
    principal: Money
    annual_rate_bp: int
    start: date
    end: date
    purpose: str

    @classmethod
    def create(
        cls,
        *,
        household_id: str,
        borrower_person_id: str,
        lender: str,
        lender_kind: str,
        contract_number: str,
        principal: Money,
        annual_rate_bp: int,
        start: date | None,
        end: date | None,
        purpose: str,
        field: str = "loan",
    ) -> Loan:
        """Check every value a clerk typed; all problems are reported at once
        (``InvalidArgument`` reason ``INVALID_LOAN`` with field violations)."""
        errors = ErrorCollector()
        f = f"{field}." if field else ""
        household = _text(errors, f"{f}household", household_id, "借款家庭")
        borrower = _text(errors, f"{f}borrower", borrower_person_id, "借款人（须为该户家庭成员）")
        lender_name = _text(errors, f"{f}lender", lender, "贷款机构（银行或农村信用社）")
        contract = _text(errors, f"{f}contract_number", contract_number, "贷款合同编号")
        purpose_code = _text(errors, f"{f}purpose", purpose, "贷款用途")
        try:
            kind = LenderKind(lender_kind)
        except ValueError:
            kind = LenderKind.OTHER
            errors.add(f"{f}lender_kind", "请选择贷款机构类型：银行、农村信用社（农商行）或其他金融机构")
        if principal.fen <= 0:
            errors.add(f"{f}principal", f"贷款本金须大于 0 元（填写的是 {principal.format_yuan()} 元）")
        if annual_rate_bp <= 0:
            errors.add(f"{f}annual_rate", "合同年利率须大于 0")
        elif annual_rate_bp > MAX_RATE_BP:
            errors.add(
                f"{f}annual_rate",
                f"合同年利率 {format_rate(annual_rate_bp)} 超过 {format_rate(MAX_RATE_BP)}，"
                "请核对是否把月利率或日利率填成了年利率",
            )
        if start is None:
            errors.add(f"{f}start", "请填写放款日")
        if end is None:
            errors.add(f"{f}end", "请填写到期日")
        if start is not None and end is not None and end <= start:
            errors.add(f"{f}end", f"到期日 {end.isoformat()} 须晚于放款日 {start.isoformat()}")
        errors.raise_if_any("贷款信息有误，请按字段说明修改后重试", reason="INVALID_LOAN")
        assert start is not None and end is not None
        return cls(
            household, borrower, lender_name, kind, contract, principal, annual_rate_bp, start, end, purpose_code
        )

    def facts(self) -> LoanFacts:
        """The loan as the rules see it."""
        return LoanFacts(
            contract_number=self.contract_number,
            lender=self.lender,
            lender_kind=self.lender_kind.value,
            principal=self.principal,
            annual_rate_bp=self.annual_rate_bp,
            start=self.start,
            end=self.end,
            purpose=self.purpose,
            borrower_person_id=self.borrower_person_id,
        )

    def check_purpose(self, purposes: LoanPurposes, *, field: str = "loan.purpose") -> LoanPurpose:
        """The purpose entry the loan is for; a forbidden use is refused with
        the rule's reason (``LOAN_PURPOSE_FORBIDDEN``), an unknown one with the
        list (``LOAN_PURPOSE_UNKNOWN``)."""
        entry = purposes.find(self.purpose)
        if entry is None:
            names = "、".join(p.name for p in purposes.allowed)
            raise InvalidArgument.field(
                field,
                f"贷款用途“{self.purpose}”不在本地区的贴息用途目录中，请从目录中选择：{names}",
                reason="LOAN_PURPOSE_UNKNOWN",
            )
        if not entry.allowed:
            raise InvalidArgument.field(
                field,
                f"贷款用途“{self.purpose}”属于{entry.name}，不能申请贴息：{entry.reason}",
                reason="LOAN_PURPOSE_FORBIDDEN",
            )
        return entry

    def check_terms(self, terms: LoanSubsidyTerms, *, field: str = "loan.principal") -> tuple[str, ...]:
        """Refuse a principal over a ``REFUSE`` cap (``PRINCIPAL_OVER_CAP``);
        under ``CAP`` return the note a clerk should see instead."""
        if self.principal <= terms.principal_cap:
            return ()
        cap = terms.principal_cap.format_yuan()
        if terms.over_cap == "REFUSE":
            raise InvalidArgument.field(
                field,
                f"贷款本金 {self.principal.format_yuan()} 元超过每户贷款额度上限 {cap} 元，不能申请贴息",
                reason="PRINCIPAL_OVER_CAP",
            )
        return (f"贷款本金 {self.principal.format_yuan()} 元超过每户贷款额度 {cap} 元，超过部分不予贴息",)

    def covers(self, first: date, last: date) -> bool:
        """True if ``first``…``last`` lies inside the contract term."""
        return self.start <= first and last <= self.end


@dataclass(frozen=True)
class InterestReceipt:
    """A bank interest certificate (利息凭证/结息单): the interest period
    (both days inclusive), the day it was paid and the interest actually paid."""

    number: str
    period_start: date
    period_end: date
    paid_on: date
    interest_paid: Money

    @classmethod
    def create(
        cls,
        *,
        number: str,
        period_start: date | None,
        period_end: date | None,
        paid_on: date | None,
        interest_paid: Money,
        field: str = "receipt",
    ) -> InterestReceipt:
        """Check a receipt as typed (``InvalidArgument`` ``INVALID_RECEIPT``)."""
        errors = ErrorCollector()
        f = f"{field}." if field else ""
        clean = _text(errors, f"{f}number", number, "利息凭证编号")
        for name, value, what in (
            ("period_start", period_start, "计息起日"),
            ("period_end", period_end, "计息止日"),
            ("paid_on", paid_on, "付息日"),
        ):
            if value is None:
                errors.add(f"{f}{name}", f"请填写{what}")
        if period_start is not None and period_end is not None and period_end < period_start:
            errors.add(f"{f}period_end", f"计息止日 {period_end.isoformat()} 早于计息起日 {period_start.isoformat()}")
        if period_start is not None and paid_on is not None and paid_on < period_start:
            errors.add(f"{f}paid_on", f"付息日 {paid_on.isoformat()} 早于计息起日 {period_start.isoformat()}")
        if interest_paid.fen <= 0:
            errors.add(f"{f}interest_paid", f"实付利息须大于 0 元（填写的是 {interest_paid.format_yuan()} 元）")
        errors.raise_if_any("利息凭证信息有误，请按字段说明修改后重试", reason="INVALID_RECEIPT")
        assert period_start is not None and period_end is not None and paid_on is not None
        return cls(clean, period_start, period_end, paid_on, interest_paid)

    @property
    def days(self) -> int:
        return (self.period_end - self.period_start).days + 1

    def facts(self) -> InterestReceiptFacts:
        return InterestReceiptFacts(self.number, self.period_start, self.period_end, self.paid_on, self.interest_paid)


def prepare_claim(
    loan: Loan,
    receipts: Sequence[InterestReceipt],
    *,
    terms: LoanSubsidyTerms,
    situation: str,
    hukou: str,
    history: Sequence[PriorLoanClaim] = (),
    already_claimed: Collection[str] = (),
    field: str = "claim",
) -> LoanClaim:
    """The claim the rule decides, after the checks that need no rule beyond
    ``terms`` (the program year's, from ``jsx_loan_subsidy_terms``):

    - at least one receipt; none listed twice (``claim.receipts[i].number``),
      none already used by another claim (``already_claimed``: the receipt
      numbers of this loan in the household's other claims), each paid inside
      the 贴息年度 and for days inside the loan term, no two covering the same
      day → ``InvalidArgument`` (reason ``INVALID_CLAIM``, or the one kind of
      problem found: ``RECEIPT_OUTSIDE_YEAR``, ``RECEIPT_ALREADY_CLAIMED`` …);
    - a principal over a ``REFUSE`` cap → ``InvalidArgument`` ``PRINCIPAL_OVER_CAP``;
    - the household already claimed in ``terms.max_claims`` other 贴息年度
      (``history`` across years and programs) → ``FailedPrecondition``
      ``CLAIM_LIMIT_REACHED``.
    """
    loan.check_terms(terms, field=f"{field}.loan.principal" if field else "loan.principal")
    f = f"{field}." if field else ""
    errors = ErrorCollector()
    kinds: set[str] = set()

    def bad(kind: str, path: str, text: str) -> None:
        kinds.add(kind)
        errors.add(path, text)

    if not receipts:
        bad("NO_RECEIPTS", f"{f}receipts", "请至少附一张利息凭证（银行结息单）")
    window = f"{terms.program_year} 贴息年度（{terms.window_start.isoformat()} 至 {terms.window_end.isoformat()}）"
    used = set(already_claimed)
    seen: dict[str, int] = {}
    for i, r in enumerate(receipts):
        path = f"{f}receipts[{i}]"
        if r.number in seen:
            bad(
                "RECEIPT_DUPLICATED",
                f"{path}.number",
                f"利息凭证 {r.number} 与第 {seen[r.number] + 1} 张重复，每张只能填一次",
            )
        else:
            seen[r.number] = i
        if r.number in used:
            bad(
                "RECEIPT_ALREADY_CLAIMED",
                f"{path}.number",
                f"利息凭证 {r.number} 已在该户其他贴息申请中使用，每张凭证只能申请一次",
            )
        if not terms.contains(r.paid_on):
            bad(
                "RECEIPT_OUTSIDE_YEAR",
                f"{path}.paid_on",
                f"利息凭证 {r.number} 的付息日 {r.paid_on.isoformat()} 不在 {window}内，请在对应年度申请",
            )
        if not loan.covers(r.period_start, r.period_end):
            bad(
                "RECEIPT_OUTSIDE_LOAN",
                f"{path}.period_start",
                f"利息凭证 {r.number} 的计息期 {r.period_start.isoformat()} 至 {r.period_end.isoformat()} 超出贷款合同期限 "
                f"{loan.start.isoformat()} 至 {loan.end.isoformat()}",
            )
    ordered = sorted(range(len(receipts)), key=lambda j: (receipts[j].period_start, receipts[j].period_end))
    for a, b in itertools.pairwise(ordered):
        if receipts[b].period_start <= receipts[a].period_end and receipts[a].number != receipts[b].number:
            bad(
                "RECEIPT_OVERLAP",
                f"{f}receipts[{b}].period_start",
                f"利息凭证 {receipts[b].number} 的计息期与 {receipts[a].number} 重叠，同一天的利息只能申请一次",
            )
    reason = next(iter(kinds)) if len(kinds) == 1 else "INVALID_CLAIM"
    errors.raise_if_any("利息凭证有误，请按字段说明修改后重试", reason=reason)

    claim = LoanClaim(
        program_year=terms.program_year,
        situation=situation,
        hukou=hukou,
        loan=loan.facts(),
        receipts=tuple(r.facts() for r in receipts),
        history=tuple(history),
        household_id=loan.household_id,
    )
    prior = claim.prior_years()
    if len(prior) >= terms.max_claims:
        years = "、".join(str(y) for y in prior)
        raise FailedPrecondition(
            f"该户已在 {years} 贴息年度享受贷款贴息 {len(prior)} 次，每户最多 {terms.max_claims} 次，不能再申请",
            reason="CLAIM_LIMIT_REACHED",
            metadata={"claims": str(len(prior)), "max_claims": str(terms.max_claims)},
        )
    return claim


def check_amount(decision: LoanSubsidyDecision, typed: Money | None = None, *, field: str = "claim.amount") -> Money:
    """The subsidy to pay: the rule's. Not eligible → ``FailedPrecondition``
    ``NOT_ELIGIBLE`` with the rule's reasons; a typed amount that differs →
    ``InvalidArgument`` ``AMOUNT_MISMATCH`` giving the computed amount and its
    basis. ``typed=None`` (or the computed amount) passes."""
    if not decision.eligible:
        raise FailedPrecondition("不符合贷款贴息条件：" + "；".join(decision.reasons), reason="NOT_ELIGIBLE")
    if typed is not None and typed != decision.subsidy:
        raise InvalidArgument.field(
            field,
            f"填写的贴息金额 {typed.format_yuan()} 元与按规则核定的 {decision.subsidy.format_yuan()} 元不一致，"
            "贴息金额按规则计算、不能手填。核定依据：" + "；".join(decision.basis),
            reason="AMOUNT_MISMATCH",
        )
    return decision.subsidy
