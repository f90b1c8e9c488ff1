"""Ledger domain: funds, sources and the double-entry posting rules.

Pure Python (no I/O). The service layer loads balances, asks this module to
build a :class:`Posting` for a movement, checks it with
:func:`check_balances`, and writes the entries it returns unchanged.

Ledger model (every account belongs to exactly one fund, so every journal
balances inside one fund and "debits = credits per fund" is provable):

=================  ======  ======================================================
account kind       normal  meaning
=================  ======  ======================================================
``INCOME``         credit  money received from one source (one account per
                           fund and source: 省财政, 县财政, a donation source…)
``AVAILABLE``      debit   money in the fund that is free to earmark or pay
``COMMITTED``      debit   money earmarked for an approved purpose; entries carry
                           the commitment (journal) id, so each earmark's
                           remainder derives from its own entries
``EXPENSE``        debit   money paid out; entries carry the payment id, so a
                           payment's net amount (after returns) derives from
                           entries
=================  ======  ======================================================

Movements and their entries (Dr = debit, Cr = credit):

* allocation in / donation in: Dr AVAILABLE, Cr INCOME(source)
* commitment: Dr COMMITTED(c), Cr AVAILABLE
* release of a commitment: Dr AVAILABLE, Cr COMMITTED(c)
* payment: Dr EXPENSE(p), Cr COMMITTED(c) — or Cr AVAILABLE when paid directly
* payment returned (bank failure): Dr AVAILABLE, Cr EXPENSE(p)
* reversal: the original's entries with sides swapped, referencing it.

No account may end on the wrong side of zero after a posting (an earmark
cannot be over-drawn, a payment cannot be returned twice); the fund's
AVAILABLE account alone may go negative, and only when the fund allows it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone

from jsxcore.errors import FailedPrecondition, InvalidArgument
from jsxcore.values import Money, RegionCode

#: China Standard Time: the day a clerk means by a date.
CST = timezone(timedelta(hours=8))


def day_start_utc(day: date) -> datetime:
    """The first instant of ``day`` in China, in UTC."""
    return datetime.combine(day, time(), CST).astimezone(UTC)


def day_end_utc(day: date) -> datetime:
    """The first instant after ``day`` ends in China, in UTC."""
    return datetime.combine(day + timedelta(days=1), time(), CST).astimezone(UTC)


class FundKind(str, enum.Enum):
    """What a fund is for (the wire enum jsx.funds.v1.FundKind without its prefix)."""

    PROGRAM = "PROGRAM"  # 项目资金: one or more programs' money (三结合, 特别扶助 …)
    HAPPINESS = "HAPPINESS"  # a village 幸福基金
    DONATION = "DONATION"  # 捐赠资金 not tied to a program
    CONDOLENCE = "CONDOLENCE"  # 走访慰问金
    OPERATING = "OPERATING"  # 工作经费
    RELIEF = "RELIEF"  # 救助资金 (生育关怀, 暖心行动)

    @property
    def label(self) -> str:
        return _FUND_KIND_LABELS[self]


_FUND_KIND_LABELS = {
    FundKind.PROGRAM: "项目资金",
    FundKind.HAPPINESS: "幸福基金",
    FundKind.DONATION: "捐赠资金",
    FundKind.CONDOLENCE: "慰问金",
    FundKind.OPERATING: "工作经费",
    FundKind.RELIEF: "救助资金",
}


class SourceKind(str, enum.Enum):
    """Where money comes from."""

    PROVINCE_FINANCE = "PROVINCE_FINANCE"  # 省财政
    CITY_FINANCE = "CITY_FINANCE"  # 市财政
    COUNTY_FINANCE = "COUNTY_FINANCE"  # 县财政
    CFPA_PROJECT = "CFPA_PROJECT"  # 中国计生协项目资金
    DONATION = "DONATION"  # 社会捐赠
    VILLAGE_ALLOCATION = "VILLAGE_ALLOCATION"  # 村集体拨付
    OTHER = "OTHER"


class DonorKind(str, enum.Enum):
    """Who gave a donation (幸福基金 donors as the associations list them)."""

    MEMBER = "MEMBER"  # 会员
    NOTABLE = "NOTABLE"  # 社会贤达
    ENTREPRENEUR = "ENTREPRENEUR"  # 企业家
    RETURNEE = "RETURNEE"  # 返乡创业者
    ORGANIZATION = "ORGANIZATION"  # 企业/单位
    OTHER = "OTHER"


class AccountKind(str, enum.Enum):
    INCOME = "INCOME"
    AVAILABLE = "AVAILABLE"
    COMMITTED = "COMMITTED"
    EXPENSE = "EXPENSE"

    @property
    def debit_normal(self) -> bool:
        return self is not AccountKind.INCOME


#: The accounts whose sum is the money a fund still holds (available + committed).
HELD = (AccountKind.AVAILABLE, AccountKind.COMMITTED)


class JournalKind(str, enum.Enum):
    ALLOCATION = "ALLOCATION"  # 拨入
    DONATION = "DONATION"  # 捐赠收入
    COMMITMENT = "COMMITMENT"  # 预留（审批后冻结）
    RELEASE = "RELEASE"  # 释放预留
    PAYMENT = "PAYMENT"  # 支付
    PAYMENT_RETURN = "PAYMENT_RETURN"  # 退回（银行失败）
    REVERSAL = "REVERSAL"  # 冲销

    @property
    def label(self) -> str:
        return {
            "ALLOCATION": "拨入",
            "DONATION": "捐赠收入",
            "COMMITMENT": "预留",
            "RELEASE": "释放预留",
            "PAYMENT": "支付",
            "PAYMENT_RETURN": "支付退回",
            "REVERSAL": "冲销",
        }[self.value]


class Side(str, enum.Enum):
    DEBIT = "D"
    CREDIT = "C"

    def flip(self) -> Side:
        return Side.CREDIT if self is Side.DEBIT else Side.DEBIT


@dataclass(frozen=True, slots=True)
class AccountKey:
    """Identifies a ledger account plus the sub-ledger dimension an entry carries.

    ``source_id`` is set for INCOME accounts; ``commitment_id`` for entries on
    COMMITTED; ``payment_id`` for entries on EXPENSE. Balances are checked per key.
    """

    fund_id: int
    kind: AccountKind
    source_id: int | None = None
    commitment_id: int | None = None
    payment_id: int | None = None


@dataclass(frozen=True, slots=True)
class Line:
    """One ledger entry to be written: an amount (> 0) on one side of one account."""

    account: AccountKey
    side: Side
    amount: Money

    @property
    def signed_debit(self) -> int:
        """+amount for a debit, −amount for a credit (in 分)."""
        return self.amount.fen if self.side is Side.DEBIT else -self.amount.fen


@dataclass(frozen=True)
class Posting:
    """A balanced set of lines: one journal. Built only through :func:`make_posting`."""

    kind: JournalKind
    fund_id: int
    lines: tuple[Line, ...]
    amount: Money
    commitment_id: int | None = None
    payment_id: int | None = None
    reverses_id: int | None = None


def make_posting(
    kind: JournalKind,
    fund_id: int,
    lines: Sequence[Line],
    *,
    commitment_id: int | None = None,
    payment_id: int | None = None,
    reverses_id: int | None = None,
) -> Posting:
    """Check the double-entry rules and return the posting.

    Raises ValueError on a programming error (unbalanced, < 2 lines, a
    non-positive line, lines of another fund): such a posting must never
    reach the database.
    """
    if len(lines) < 2:
        raise ValueError("a journal needs at least two entries")
    debit = credit = 0
    for ln in lines:
        if ln.amount.fen <= 0:
            raise ValueError("entry amounts must be positive (the side carries the sign)")
        if ln.account.fund_id != fund_id:
            raise ValueError("every entry of a journal must belong to the journal's fund")
        if ln.side is Side.DEBIT:
            debit += ln.amount.fen
        else:
            credit += ln.amount.fen
    if debit != credit:
        raise ValueError(f"unbalanced journal: debits {debit} != credits {credit}")
    return Posting(
        kind,
        fund_id,
        tuple(lines),
        Money(debit),
        commitment_id=commitment_id,
        payment_id=payment_id,
        reverses_id=reverses_id,
    )


def require_positive(amount: Money, field_name: str = "amount") -> None:
    if amount.fen <= 0:
        raise InvalidArgument.field(field_name, "金额必须大于 0 元", reason="INVALID_AMOUNT")


def inflow(kind: JournalKind, fund_id: int, source_id: int, amount: Money) -> Posting:
    """Allocation or donation into a fund: Dr AVAILABLE, Cr INCOME(source)."""
    require_positive(amount)
    return make_posting(
        kind,
        fund_id,
        [
            Line(AccountKey(fund_id, AccountKind.AVAILABLE), Side.DEBIT, amount),
            Line(AccountKey(fund_id, AccountKind.INCOME, source_id=source_id), Side.CREDIT, amount),
        ],
    )


def commitment(fund_id: int, commitment_id: int, amount: Money) -> Posting:
    """Earmark: Dr COMMITTED(c), Cr AVAILABLE. ``commitment_id`` is the new journal's id."""
    require_positive(amount)
    return make_posting(
        JournalKind.COMMITMENT,
        fund_id,
        [
            Line(AccountKey(fund_id, AccountKind.COMMITTED, commitment_id=commitment_id), Side.DEBIT, amount),
            Line(AccountKey(fund_id, AccountKind.AVAILABLE), Side.CREDIT, amount),
        ],
        commitment_id=commitment_id,
    )


def release(fund_id: int, commitment_id: int, amount: Money) -> Posting:
    """Give back (part of) an earmark: Dr AVAILABLE, Cr COMMITTED(c)."""
    require_positive(amount)
    return make_posting(
        JournalKind.RELEASE,
        fund_id,
        [
            Line(AccountKey(fund_id, AccountKind.AVAILABLE), Side.DEBIT, amount),
            Line(AccountKey(fund_id, AccountKind.COMMITTED, commitment_id=commitment_id), Side.CREDIT, amount),
        ],
        commitment_id=commitment_id,
    )


def payment(fund_id: int, payment_id: int, amount: Money, commitment_id: int | None) -> Posting:
    """Pay out: Dr EXPENSE(p), Cr COMMITTED(c) (or Cr AVAILABLE when not earmarked)."""
    require_positive(amount)
    credit = (
        AccountKey(fund_id, AccountKind.COMMITTED, commitment_id=commitment_id)
        if commitment_id is not None
        else AccountKey(fund_id, AccountKind.AVAILABLE)
    )
    return make_posting(
        JournalKind.PAYMENT,
        fund_id,
        [
            Line(AccountKey(fund_id, AccountKind.EXPENSE, payment_id=payment_id), Side.DEBIT, amount),
            Line(credit, Side.CREDIT, amount),
        ],
        commitment_id=commitment_id,
        payment_id=payment_id,
    )


def batch_payment(fund_id: int, amount: Money) -> Posting:
    """A payment batch's one journal: Dr EXPENSE (the batch total), Cr AVAILABLE.

    The batch's payments (``payments`` rows naming this journal) are its
    breakdown; ``verify`` proves they add up to the EXPENSE debit."""
    require_positive(amount)
    return make_posting(
        JournalKind.PAYMENT,
        fund_id,
        [
            Line(AccountKey(fund_id, AccountKind.EXPENSE), Side.DEBIT, amount),
            Line(AccountKey(fund_id, AccountKind.AVAILABLE), Side.CREDIT, amount),
        ],
    )


def payment_returned(fund_id: int, payment_id: int | None, amount: Money) -> Posting:
    """The bank could not pay: the money returns to the fund's available balance.

    ``payment_id`` names the payment's own EXPENSE line; None for a payment of
    a batch, whose expense is the batch journal's one EXPENSE line."""
    require_positive(amount)
    return make_posting(
        JournalKind.PAYMENT_RETURN,
        fund_id,
        [
            Line(AccountKey(fund_id, AccountKind.AVAILABLE), Side.DEBIT, amount),
            Line(AccountKey(fund_id, AccountKind.EXPENSE, payment_id=payment_id), Side.CREDIT, amount),
        ],
        payment_id=payment_id,
    )


def reversal(original_id: int, original_kind: JournalKind, fund_id: int, lines: Sequence[Line]) -> Posting:
    """The original journal's lines with their sides swapped."""
    if original_kind is JournalKind.REVERSAL:
        raise FailedPrecondition(
            "冲销凭证不能再次冲销；如需恢复原业务，请重新登记",
            reason="CANNOT_REVERSE_REVERSAL",
            metadata={"journal_id": str(original_id)},
        )
    return make_posting(
        JournalKind.REVERSAL,
        fund_id,
        [Line(ln.account, ln.side.flip(), ln.amount) for ln in lines],
        reverses_id=original_id,
    )


def yuan(fen: int) -> str:
    return Money(fen).format_yuan()


def check_balances(
    posting: Posting,
    before: Mapping[AccountKey, int],
    *,
    allow_negative: bool,
) -> dict[AccountKey, int]:
    """Apply ``posting`` to the balances it touches and refuse if any goes wrong-side.

    ``before`` maps each touched key to its current balance as Σdebit − Σcredit
    (in 分). Returns the balances after. Raises FailedPrecondition (nothing
    is posted) with a message a clerk can act on.
    """
    after = dict(before)
    for ln in posting.lines:
        after[ln.account] = after.get(ln.account, 0) + ln.signed_debit
    for key, bal in after.items():
        normal = bal if key.kind.debit_normal else -bal
        if normal >= 0:
            continue
        was = before.get(key, 0)
        was_normal = was if key.kind.debit_normal else -was
        need = was_normal - normal  # how much this posting takes from the account
        if key.kind is AccountKind.AVAILABLE:
            if allow_negative:
                continue
            raise FailedPrecondition(
                f"基金余额不足：可用 {yuan(max(was_normal, 0))} 元，本次需要 {yuan(need)} 元",
                reason="INSUFFICIENT_FUNDS",
                metadata={"fund_id": str(key.fund_id), "available_fen": str(was_normal), "required_fen": str(need)},
            )
        if key.kind is AccountKind.COMMITTED:
            raise FailedPrecondition(
                f"预留资金不足：该笔预留剩余 {yuan(max(was_normal, 0))} 元，本次需要 {yuan(need)} 元",
                reason="COMMITMENT_EXCEEDED",
                metadata={"commitment_id": str(key.commitment_id), "remaining_fen": str(was_normal)},
            )
        if key.kind is AccountKind.EXPENSE:
            raise FailedPrecondition(
                f"该笔支付的实付金额不足：实付 {yuan(max(was_normal, 0))} 元，本次需冲减 {yuan(need)} 元"
                "（已部分退回的支付须先冲正退回记录）",
                reason="PAYMENT_RETURN_EXCEEDED",
                metadata={"payment_id": str(key.payment_id), "net_paid_fen": str(was_normal)},
            )
        raise FailedPrecondition(
            f"该来源拨入的资金已不足以冲销：剩余 {yuan(max(was_normal, 0))} 元，本次需要 {yuan(need)} 元",
            reason="INCOME_EXCEEDED",
            metadata={"source_id": str(key.source_id)},
        )
    return after


def touched_keys(posting: Posting) -> set[AccountKey]:
    return {ln.account for ln in posting.lines}


def receipt_number(region: RegionCode, year: int, seq: int) -> str:
    """A donation receipt number: ``431224-2022-000123`` (region, year, gap-free sequence)."""
    return f"{region.short}-{year:04d}-{seq:06d}"


@dataclass(frozen=True)
class FundBalance:
    """A fund's position, all in 分, derived from its entries."""

    fund_id: int
    available: Money
    committed: Money
    expended: Money
    income: Money
    income_by_source: dict[int, Money] = field(default_factory=dict)

    @property
    def held(self) -> Money:
        """Money the fund still holds: available + committed."""
        return self.available + self.committed


def balance_from_rows(fund_id: int, rows: Iterable[tuple[AccountKind, int | None, int]]) -> FundBalance:
    """Build a :class:`FundBalance` from (account kind, source id, Σdebit − Σcredit) rows."""
    totals = dict.fromkeys(AccountKind, 0)
    by_source: dict[int, Money] = {}
    for kind, source_id, net in rows:
        totals[kind] += net
        if kind is AccountKind.INCOME and source_id is not None:
            by_source[source_id] = by_source.get(source_id, Money(0)) + Money(-net)
    return FundBalance(
        fund_id,
        available=Money(totals[AccountKind.AVAILABLE]),
        committed=Money(totals[AccountKind.COMMITTED]),
        expended=Money(totals[AccountKind.EXPENSE]),
        income=Money(-totals[AccountKind.INCOME]),
        income_by_source=by_source,
    )


# ---------------------------------------------------------------- use-case inputs


@dataclass(frozen=True)
class NewSource:
    """A fund source to register (省财政, 县财政, 中国计生协项目 …)."""

    name: str
    kind: SourceKind
    region: RegionCode


@dataclass(frozen=True)
class NewFund:
    """A fund to open."""

    name: str
    kind: FundKind
    region: RegionCode
    owner: str = ""
    allow_negative: bool = False
    description: str = ""


@dataclass(frozen=True)
class Allocation:
    """Money in from a (non-donation) source."""

    fund_id: int
    source_id: int
    amount: Money
    reference: str = ""
    memo: str = ""


@dataclass(frozen=True)
class NewDonation:
    """A donation received (幸福基金 donors are thanked publicly unless anonymous)."""

    fund_id: int
    donor_name: str
    donor_kind: DonorKind
    amount: Money
    received_on: date
    anonymous: bool = False
