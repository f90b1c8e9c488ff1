"""贷款贴息 domain (jsx_funds.loans): what a clerk types is checked here, what
the region's rule decides comes from the shipped plugins through a real
PluginHost. No database."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from jsx_funds.loans import InterestReceipt, Loan, check_amount, parse_rate, prepare_claim
from jsx_plugin_hunan import loans as hunan_loans
from jsxcore.errors import DomainError, FailedPrecondition, InvalidArgument
from jsxcore.hookspecs import (
    LoanClaim,
    LoanPurposes,
    LoanSubsidyDecision,
    LoanSubsidyTerms,
    PluginMeta,
    PriorLoanClaim,
    has_chinese,
    hookimpl,
)
from jsxcore.plugins import PluginHost
from jsxcore.values import Money, RegionCode

XUPU_VILLAGE = "431224101201"  # 溆浦县
YUANLING_VILLAGE = "431222101201"  # 沅陵县
STRICT = "431225"  # a county whose scheme refuses a principal over the cap (test plugin below)
STRICT_VILLAGE = "431225101201"


class StrictCounty:
    """A county that took 福清's figures but refuses a loan over the cap."""

    JSX_PLUGIN = PluginMeta("test_strict_loans", "0.1.0", (STRICT,), "测试用：本金超过上限不予贴息")
    SCHEME = replace(hunan_loans.FUQING_2018, over_cap="REFUSE")

    @hookimpl
    def jsx_loan_subsidy_terms(self, region: RegionCode, program_year: int) -> LoanSubsidyTerms:
        return self.SCHEME.terms(program_year)

    @hookimpl
    def jsx_loan_subsidy(self, claim: LoanClaim, region: RegionCode) -> LoanSubsidyDecision:
        return hunan_loans.decide(claim, self.SCHEME, hunan_loans.purposes_for(date(claim.program_year, 1, 1)))


@pytest.fixture(scope="module")
def host() -> PluginHost:
    h = PluginHost(timeout_ms=2000)  # every installed plugin for the regions it declares
    h.discover()
    h.register(StrictCounty())
    return h


def terms(host: PluginHost, village: str = XUPU_VILLAGE, year: int = 2022) -> LoanSubsidyTerms:
    value: LoanSubsidyTerms = host.call("jsx_loan_subsidy_terms", village, program_year=year).value
    return value


def purposes(host: PluginHost, village: str = XUPU_VILLAGE, on: date = date(2021, 7, 1)) -> LoanPurposes:
    value: LoanPurposes = host.call("jsx_loan_purposes", village, on=on).value
    return value


def loan(**changes: Any) -> Loan:
    values: dict[str, Any] = {
        "household_id": "households/h1",
        "borrower_person_id": "persons/p1",
        "lender": "溆浦县农村商业银行",
        "lender_kind": "RURAL_CREDIT",
        "contract_number": "溆农商贷〔2021〕0701号",
        "principal": Money.yuan(50_000),
        "annual_rate_bp": 435,
        "start": date(2021, 7, 1),
        "end": date(2022, 6, 30),
        "purpose": "柑橘种植",
    }
    return Loan.create(**{**values, **changes})


def receipt(number: str, start: date, end: date, paid: str, paid_on: date | None = None) -> InterestReceipt:
    return InterestReceipt.create(
        number=number, period_start=start, period_end=end, paid_on=paid_on or end, interest_paid=Money.yuan(paid)
    )


RECEIPTS = (
    receipt("JX-01", date(2021, 7, 1), date(2021, 9, 20), "495.41"),
    receipt("JX-02", date(2021, 9, 21), date(2021, 12, 20), "549.79"),
    receipt("JX-03", date(2021, 12, 21), date(2022, 3, 20), "543.75"),
    receipt("JX-04", date(2022, 3, 21), date(2022, 6, 30), "610.21"),
)


def fields(e: DomainError) -> dict[str, str]:
    return {v.field: v.description for v in e.violations}


def chinese(e: DomainError) -> bool:
    return has_chinese(e.message) and all(has_chinese(v.description) for v in e.violations)


# -- values a clerk types ------------------------------------------------------------------------


def test_a_loan_as_typed() -> None:
    ok = loan()
    assert ok.principal == Money.yuan(50_000) and ok.lender_kind == "RURAL_CREDIT"
    facts = ok.facts()
    assert (facts.annual_rate_bp, facts.purpose, facts.lender_kind) == (435, "柑橘种植", "RURAL_CREDIT")


def test_every_bad_value_of_a_loan_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as e:
        loan(
            principal=Money(0),
            annual_rate_bp=3000,
            end=date(2021, 7, 1),
            lender=" ",
            lender_kind="PAWNSHOP",
            contract_number="",
        )
    got = fields(e.value)
    assert e.value.reason == "INVALID_LOAN" and chinese(e.value)
    assert set(got) == {
        "loan.principal",
        "loan.annual_rate",
        "loan.end",
        "loan.lender",
        "loan.lender_kind",
        "loan.contract_number",
    }
    assert "月利率或日利率" in got["loan.annual_rate"] and "须晚于放款日" in got["loan.end"]
    with pytest.raises(InvalidArgument) as neg:
        loan(principal=Money.yuan(-1), annual_rate_bp=0, start=None)
    assert set(fields(neg.value)) == {"loan.principal", "loan.annual_rate", "loan.start"}


def test_rates_as_a_clerk_types_them() -> None:
    assert parse_rate("4.35") == parse_rate("4.35%") == parse_rate("４．３５％") == 435
    assert parse_rate("5") == 500
    for bad in ("4.355", "abc", "-1", ""):
        with pytest.raises(InvalidArgument) as e:
            parse_rate(bad)
        assert e.value.reason == "INVALID_RATE" and "loan.annual_rate" in fields(e.value)


def test_a_receipt_as_typed() -> None:
    with pytest.raises(InvalidArgument) as e:
        InterestReceipt.create(
            number="",
            period_start=date(2022, 3, 21),
            period_end=date(2022, 3, 1),
            paid_on=date(2022, 3, 20),
            interest_paid=Money(0),
        )
    assert e.value.reason == "INVALID_RECEIPT" and chinese(e.value)
    assert set(fields(e.value)) == {"receipt.number", "receipt.period_end", "receipt.paid_on", "receipt.interest_paid"}


# -- what the region's rule decides (hunan baseline: 福清's assumed figures) -------------------


def test_a_forbidden_purpose_is_refused_with_the_rules_reason(host: PluginHost) -> None:
    assert loan().check_purpose(purposes(host)).code == "PLANTING"
    for text, name in (("赌博", "赌博"), ("用于还债", "还债"), ("子女上学学费", "子女上学"), ("放高利贷", "放高利贷")):
        with pytest.raises(InvalidArgument) as e:
            loan(purpose=text).check_purpose(purposes(host))
        assert e.value.reason == "LOAN_PURPOSE_FORBIDDEN"
        assert f"属于{name}" in fields(e.value)["loan.purpose"] and "不得用于" in e.value.message
    with pytest.raises(InvalidArgument) as unknown:
        loan(purpose="买房").check_purpose(purposes(host, YUANLING_VILLAGE))
    assert unknown.value.reason == "LOAN_PURPOSE_UNKNOWN" and "种植、养殖" in unknown.value.message


def test_a_principal_over_the_cap(host: PluginHost) -> None:
    big = loan(principal=Money.yuan(80_000))
    # the Hunan baseline follows 福清: 超过部分不予贴息 — accepted, subsidised on 5 万元, and the clerk is told
    assert big.check_terms(terms(host)) == ("贷款本金 80000.00 元超过每户贷款额度 50000.00 元，超过部分不予贴息",)
    assert loan().check_terms(terms(host)) == ()
    # a county whose rule refuses it
    with pytest.raises(InvalidArgument) as e:
        big.check_terms(terms(host, STRICT_VILLAGE))
    assert (
        e.value.reason == "PRINCIPAL_OVER_CAP"
        and "超过每户贷款额度上限 50000.00 元" in fields(e.value)["loan.principal"]
    )
    with pytest.raises(InvalidArgument) as claimed:
        prepare_claim(big, RECEIPTS, terms=terms(host, STRICT_VILLAGE), situation="ONLY_CHILD", hukou="RURAL")
    assert claimed.value.reason == "PRINCIPAL_OVER_CAP" and "claim.loan.principal" in fields(claimed.value)


def decided(host: PluginHost, claim: LoanClaim, village: str = XUPU_VILLAGE) -> LoanSubsidyDecision:
    value: LoanSubsidyDecision = host.call("jsx_loan_subsidy", village, claim=claim).value
    return value


def test_a_claim_end_to_end_the_amount_is_the_rules(host: PluginHost) -> None:
    claim = prepare_claim(loan(), RECEIPTS, terms=terms(host), situation="ONLY_CHILD", hukou="RURAL")
    d = decided(host, claim)
    # 5 万元 × 4.35% × days ÷ 360 per receipt, never more than paid (JX-04: cap 616.25, paid 610.21)
    assert d.eligible and d.subsidy == Money.yuan("2199.16")
    assert check_amount(d) == check_amount(d, Money.yuan("2199.16")) == d.subsidy
    with pytest.raises(InvalidArgument) as e:
        check_amount(d, Money.yuan(2_500))
    assert e.value.reason == "AMOUNT_MISMATCH" and chinese(e.value)
    text = fields(e.value)["claim.amount"]
    assert "填写的贴息金额 2500.00 元与按规则核定的 2199.16 元不一致" in text and "假定标准" in text and "JX-04" in text


def test_the_rules_refusal_is_a_failed_precondition_with_its_reasons(host: PluginHost) -> None:
    urban = prepare_claim(loan(), RECEIPTS, terms=terms(host), situation="ONLY_CHILD", hukou="URBAN")
    with pytest.raises(FailedPrecondition) as e:
        check_amount(decided(host, urban), Money.yuan(100))
    assert e.value.reason == "NOT_ELIGIBLE" and "城镇户籍" in e.value.message
    gambling = prepare_claim(loan(purpose="赌博"), RECEIPTS, terms=terms(host), situation="ONLY_CHILD", hukou="RURAL")
    with pytest.raises(FailedPrecondition) as g:
        check_amount(decided(host, gambling))
    assert "赌博" in g.value.message


def test_a_fourth_claim_across_years_and_programs(host: PluginHost) -> None:
    history = [
        PriorLoanClaim(2019, "programs/1", Money.yuan(2_000)),
        PriorLoanClaim(2020, "programs/4", Money.yuan(2_100)),
    ]
    third = prepare_claim(loan(), RECEIPTS, terms=terms(host), situation="ONLY_CHILD", hukou="RURAL", history=history)
    assert decided(host, third).eligible
    history.append(PriorLoanClaim(2021, "programs/county-7", Money.yuan(1_900)))  # another program counts too
    with pytest.raises(FailedPrecondition) as e:
        prepare_claim(loan(), RECEIPTS, terms=terms(host), situation="ONLY_CHILD", hukou="RURAL", history=history)
    assert e.value.reason == "CLAIM_LIMIT_REACHED"
    assert "2019、2020、2021 贴息年度享受贷款贴息 3 次，每户最多 3 次" in e.value.message
    # the rule says so itself as well, should a service ask it directly
    direct = replace(third, history=tuple(history))
    assert not decided(host, direct).eligible


def test_receipts_outside_the_year_claimed_twice_or_overlapping(host: PluginHost) -> None:
    later = loan(end=date(2022, 12, 31))
    outside = receipt("JX-05", date(2022, 7, 1), date(2022, 9, 20), "490.00")
    with pytest.raises(InvalidArgument) as e:
        prepare_claim(later, (*RECEIPTS, outside), terms=terms(host), situation="ONLY_CHILD", hukou="RURAL")
    assert e.value.reason == "RECEIPT_OUTSIDE_YEAR"
    assert "不在 2022 贴息年度（2021-07-01 至 2022-06-30）内" in fields(e.value)["claim.receipts[4].paid_on"]
    # …but it is the 2023 claim's
    assert prepare_claim(later, (outside,), terms=terms(host, year=2023), situation="ONLY_CHILD", hukou="RURAL")

    with pytest.raises(InvalidArgument) as used:
        prepare_claim(
            loan(), RECEIPTS, terms=terms(host), situation="ONLY_CHILD", hukou="RURAL", already_claimed={"JX-02"}
        )
    assert used.value.reason == "RECEIPT_ALREADY_CLAIMED"
    assert "已在该户其他贴息申请中使用，每张凭证只能申请一次" in fields(used.value)["claim.receipts[1].number"]

    with pytest.raises(InvalidArgument) as twice:
        prepare_claim(loan(), (*RECEIPTS, RECEIPTS[0]), terms=terms(host), situation="ONLY_CHILD", hukou="RURAL")
    assert twice.value.reason == "RECEIPT_DUPLICATED" and "claim.receipts[4].number" in fields(twice.value)

    overlap = receipt("JX-09", date(2021, 9, 1), date(2021, 10, 20), "100.00")
    outside_loan = receipt("JX-00", date(2021, 6, 1), date(2021, 7, 5), "30.00")
    with pytest.raises(InvalidArgument) as mixed:
        prepare_claim(
            loan(), (*RECEIPTS, overlap, outside_loan), terms=terms(host), situation="ONLY_CHILD", hukou="RURAL"
        )
    assert mixed.value.reason == "INVALID_CLAIM" and chinese(mixed.value)
    assert "超出贷款合同期限" in fields(mixed.value)["claim.receipts[5].period_start"]
    assert any("重叠" in v for v in fields(mixed.value).values())

    with pytest.raises(InvalidArgument) as none:
        prepare_claim(loan(), (), terms=terms(host), situation="ONLY_CHILD", hukou="RURAL")
    assert none.value.reason == "NO_RECEIPTS"


@pytest.mark.parametrize("village", ["431222101201", "431281101201", "431224101201"])
def test_every_seed_county_decides_through_the_province_baseline(host: PluginHost, village: str) -> None:
    t = terms(host, village)
    claim = prepare_claim(loan(), RECEIPTS, terms=t, situation="TWO_DAUGHTERS", hukou="RURAL")
    d = host.call("jsx_loan_subsidy", village, claim=claim)
    assert (d.plugin, d.region) == ("hunan", RegionCode.parse("430000")) and d.value.eligible
    assert all("假定" in line for line in d.value.basis)
