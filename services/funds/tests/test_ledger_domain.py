"""The ledger's pure domain (no database): postings are balanced, each movement's entries, and the
balance rules that refuse a posting leaving an account on the wrong side of zero."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from jsx_funds.ledger import domain as d
from jsxcore.errors import FailedPrecondition, InvalidArgument
from jsxcore.values import Money, RegionCode

FUND = 7
A = d.AccountKey(FUND, d.AccountKind.AVAILABLE)


def entries(p: d.Posting) -> set[tuple[d.AccountKind, str, int, int | None, int | None, int | None]]:
    return {
        (
            ln.account.kind,
            ln.side.value,
            ln.amount.fen,
            ln.account.source_id,
            ln.account.commitment_id,
            ln.account.payment_id,
        )
        for ln in p.lines
    }


def test_make_posting_refuses_what_must_never_reach_the_database() -> None:
    one = d.Line(A, d.Side.DEBIT, Money(100))
    with pytest.raises(ValueError, match="at least two"):
        d.make_posting(d.JournalKind.ALLOCATION, FUND, [one])
    with pytest.raises(ValueError, match="unbalanced"):
        d.make_posting(d.JournalKind.ALLOCATION, FUND, [one, d.Line(A, d.Side.CREDIT, Money(99))])
    with pytest.raises(ValueError, match="positive"):
        d.make_posting(
            d.JournalKind.ALLOCATION,
            FUND,
            [one, d.Line(A, d.Side.CREDIT, Money(100)), d.Line(A, d.Side.DEBIT, Money(0))],
        )
    other = d.AccountKey(FUND + 1, d.AccountKind.AVAILABLE)
    with pytest.raises(ValueError, match="journal's fund"):
        d.make_posting(d.JournalKind.ALLOCATION, FUND, [one, d.Line(other, d.Side.CREDIT, Money(100))])


def test_each_movement_posts_its_entries() -> None:
    assert entries(d.inflow(d.JournalKind.ALLOCATION, FUND, 3, Money(500))) == {
        (d.AccountKind.AVAILABLE, "D", 500, None, None, None),
        (d.AccountKind.INCOME, "C", 500, 3, None, None),
    }
    c = d.commitment(FUND, 11, Money(300))
    assert entries(c) == {
        (d.AccountKind.COMMITTED, "D", 300, None, 11, None),
        (d.AccountKind.AVAILABLE, "C", 300, None, None, None),
    }
    assert c.commitment_id == 11 and c.amount == Money(300)
    assert entries(d.release(FUND, 11, Money(50))) == {
        (d.AccountKind.AVAILABLE, "D", 50, None, None, None),
        (d.AccountKind.COMMITTED, "C", 50, None, 11, None),
    }
    assert entries(d.payment(FUND, 12, Money(200), 11)) == {
        (d.AccountKind.EXPENSE, "D", 200, None, None, 12),
        (d.AccountKind.COMMITTED, "C", 200, None, 11, None),
    }
    assert entries(d.payment(FUND, 13, Money(20), None)) == {
        (d.AccountKind.EXPENSE, "D", 20, None, None, 13),
        (d.AccountKind.AVAILABLE, "C", 20, None, None, None),
    }
    assert entries(d.batch_payment(FUND, Money(1520))) == {
        (d.AccountKind.EXPENSE, "D", 1520, None, None, None),
        (d.AccountKind.AVAILABLE, "C", 1520, None, None, None),
    }
    assert entries(d.payment_returned(FUND, 12, Money(80))) == {
        (d.AccountKind.AVAILABLE, "D", 80, None, None, None),
        (d.AccountKind.EXPENSE, "C", 80, None, None, 12),
    }
    # a batch payment's return credits the batch journal's one EXPENSE line
    assert (d.AccountKind.EXPENSE, "C", 80, None, None, None) in entries(d.payment_returned(FUND, None, Money(80)))


def test_every_movement_needs_a_positive_amount() -> None:
    for build in (
        lambda m: d.inflow(d.JournalKind.DONATION, FUND, 1, m),
        lambda m: d.commitment(FUND, 1, m),
        lambda m: d.release(FUND, 1, m),
        lambda m: d.payment(FUND, 1, m, None),
        lambda m: d.batch_payment(FUND, m),
        lambda m: d.payment_returned(FUND, 1, m),
    ):
        with pytest.raises(InvalidArgument) as e:
            build(Money(0))
        assert e.value.reason == "INVALID_AMOUNT"


def test_a_reversal_mirrors_the_original_and_is_never_reversed_itself() -> None:
    original = d.commitment(FUND, 11, Money(300))
    rev = d.reversal(11, d.JournalKind.COMMITMENT, FUND, original.lines)
    assert rev.kind is d.JournalKind.REVERSAL and rev.reverses_id == 11 and rev.amount == Money(300)
    assert {(ln.account, ln.side.flip(), ln.amount) for ln in rev.lines} == {
        (ln.account, ln.side, ln.amount) for ln in original.lines
    }
    with pytest.raises(FailedPrecondition) as e:
        d.reversal(12, d.JournalKind.REVERSAL, FUND, rev.lines)
    assert e.value.reason == "CANNOT_REVERSE_REVERSAL"


def test_balance_rules_refuse_the_wrong_side_of_zero() -> None:
    # available 1000.00: paying 1000.01 directly is refused with the clerk's message
    with pytest.raises(FailedPrecondition) as e:
        d.check_balances(d.payment(FUND, 1, Money(1000_01), None), {A: 1000_00}, allow_negative=False)
    assert e.value.reason == "INSUFFICIENT_FUNDS"
    assert e.value.message == "基金余额不足：可用 1000.00 元，本次需要 1000.01 元"
    # … unless the fund may go below zero (垫付); the balances after are returned
    after = d.check_balances(d.payment(FUND, 1, Money(1000_01), None), {A: 1000_00}, allow_negative=True)
    assert after[A] == -1
    # an earmark cannot be over-drawn, even when the fund may go negative
    c = d.AccountKey(FUND, d.AccountKind.COMMITTED, commitment_id=11)
    with pytest.raises(FailedPrecondition) as e:
        d.check_balances(d.payment(FUND, 2, Money(301), 11), {c: 300}, allow_negative=True)
    assert e.value.reason == "COMMITMENT_EXCEEDED"
    # a payment cannot be returned beyond what was paid
    p = d.AccountKey(FUND, d.AccountKind.EXPENSE, payment_id=2)
    with pytest.raises(FailedPrecondition) as e:
        d.check_balances(d.payment_returned(FUND, 2, Money(201)), {p: 200, A: 0}, allow_negative=False)
    assert e.value.reason == "PAYMENT_RETURN_EXCEEDED"
    # income already spent cannot be reversed away (INCOME is credit-normal: −500 is 500 received)
    inc = d.AccountKey(FUND, d.AccountKind.INCOME, source_id=3)
    allocation = d.inflow(d.JournalKind.ALLOCATION, FUND, 3, Money(500))
    undo = d.reversal(9, d.JournalKind.ALLOCATION, FUND, allocation.lines)
    with pytest.raises(FailedPrecondition) as e:
        d.check_balances(undo, {A: 500, inc: -400}, allow_negative=True)
    assert e.value.reason == "INCOME_EXCEEDED"
    assert d.check_balances(undo, {A: 500, inc: -500}, allow_negative=False) == {A: 0, inc: 0}


def test_balances_from_entries_and_what_a_fund_holds() -> None:
    bal = d.balance_from_rows(
        FUND,
        [
            (d.AccountKind.INCOME, 3, -1000_00),
            (d.AccountKind.INCOME, 4, -200_00),
            (d.AccountKind.INCOME, 4, -5_00),
            (d.AccountKind.AVAILABLE, None, 600_00),
            (d.AccountKind.COMMITTED, None, 400_00),
            (d.AccountKind.EXPENSE, None, 205_00),
        ],
    )
    assert bal.income == Money(1205_00) and bal.income_by_source == {3: Money(1000_00), 4: Money(205_00)}
    assert (bal.available, bal.committed, bal.expended) == (Money(600_00), Money(400_00), Money(205_00))
    assert bal.held == Money(1000_00)
    assert d.balance_from_rows(FUND, []).held == Money(0)
    assert set(d.HELD) == {d.AccountKind.AVAILABLE, d.AccountKind.COMMITTED}
    assert d.AccountKind.INCOME.debit_normal is False and d.AccountKind.EXPENSE.debit_normal is True


def test_receipt_numbers_and_china_days() -> None:
    assert d.receipt_number(RegionCode.parse("431224"), 2022, 123) == "431224-2022-000123"
    # a day in China starts at 16:00 UTC the day before
    assert d.day_start_utc(date(2022, 9, 5)) == datetime(2022, 9, 4, 16, 0, tzinfo=UTC)
    assert d.day_end_utc(date(2022, 9, 5)) == datetime(2022, 9, 5, 16, 0, tzinfo=UTC)
    assert d.yuan(12_34) == "12.34"
