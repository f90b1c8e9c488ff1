"""湖南 贷款贴息 baseline (福清's published figures, marked as assumed) — called
directly and through the PluginHost with every shipped plugin."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest

import jsx_plugin_hunan as hunan
from jsx_plugin_hunan import loans
from jsxcore.errors import FailedPrecondition, InvalidArgument
from jsxcore.hookspecs import (
    Beneficiary,
    InterestReceiptFacts,
    LoanClaim,
    LoanFacts,
    LoanSubsidyDecision,
    PriorLoanClaim,
)
from jsxcore.plugins import PluginHost
from jsxcore.values import Money, Period, RegionCode

YUANLING = RegionCode.parse("431222")
SEED_VILLAGES = ("431222101201", "431281101201", "431224101201")  # 沅陵, 洪江, 溆浦


FIFTY_THOUSAND = Money.yuan(50_000)


def receipts(principal: Money = FIFTY_THOUSAND, bp: int = 435) -> tuple[InterestReceiptFacts, ...]:
    """Quarterly 结息 over the 2022 贴息年度 (2021-07-01 … 2022-06-30), interest at ``bp`` ÷ 360."""
    spans = [
        (date(2021, 7, 1), date(2021, 9, 20)),
        (date(2021, 9, 21), date(2021, 12, 20)),
        (date(2021, 12, 21), date(2022, 3, 20)),
        (date(2022, 3, 21), date(2022, 6, 30)),  # the last 结息 at the loan's end
    ]
    out = []
    for i, (a, b) in enumerate(spans, 1):
        days = (b - a).days + 1
        out.append(InterestReceiptFacts(f"R{i}", a, b, b, principal.mul_ratio(bp * days, 3_600_000, "ROUND_DOWN")))
    return tuple(out)


def claim(**changes: Any) -> LoanClaim:
    loan = LoanFacts(
        "沅农商贷字2021第0701号",
        "沅陵县农村商业银行",
        "RURAL_CREDIT",
        Money.yuan(50_000),
        435,
        date(2021, 7, 1),
        date(2022, 6, 30),
        "PLANTING",
    )
    base = LoanClaim(2022, "ONLY_CHILD", "RURAL", loan, receipts())
    return replace(base, **changes)


def with_loan(**changes: Any) -> LoanClaim:
    c = claim()
    return replace(c, loan=replace(c.loan, **changes))


def decide(c: LoanClaim) -> LoanSubsidyDecision:
    return hunan.jsx_loan_subsidy(c, YUANLING)


def assumed(lines: tuple[str, ...]) -> bool:
    return bool(lines) and all("假定" in line for line in lines)


def test_terms_are_fuqings_figures_and_say_they_are_assumed() -> None:
    t = hunan.jsx_loan_subsidy_terms(YUANLING, 2022)
    assert (t.window_start, t.window_end) == (date(2021, 7, 1), date(2022, 6, 30))  # 上年 7 月 1 日至当年 6 月 30 日
    assert t.principal_cap == Money.yuan(50_000) and t.over_cap == "CAP"
    assert t.subsidy_rate_cap_bp == 500 and t.yearly_cap == Money.yuan(2_500) and t.max_claims == 3
    assert t.households == ("ONLY_CHILD", "TWO_DAUGHTERS") and t.rural_only and t.term_days == 365
    assert assumed(t.basis) and "福清" in t.basis[0]
    # effective-dated: the rule starts with 福清's 2018 scheme; nothing is guessed before it
    with pytest.raises(InvalidArgument) as e:
        hunan.jsx_loan_subsidy_terms(YUANLING, 2017)
    assert e.value.reason == "NO_RULE_FOR_PERIOD"


def test_subsidy_is_the_interest_paid_within_the_rate_and_principal_caps() -> None:
    d = decide(claim())
    assert d.eligible and d.receipts == ("R1", "R2", "R3", "R4")
    # each receipt: min(paid, 5 万元 × 4.35% × days ÷ 360); the bank charged exactly that
    assert d.subsidy == sum((r.interest_paid for r in receipts()), Money(0))
    assert assumed(d.reasons) and assumed(d.basis)
    assert any("× 4.35% × 82 天 ÷ 360" in b for b in d.basis)
    # paid less than the cap: the interest paid
    cheap = claim(receipts=tuple(replace(r, interest_paid=Money.yuan(100)) for r in receipts()))
    assert decide(cheap).subsidy == Money.yuan(400)


def test_rate_above_the_cap_is_subsidised_at_five_percent_and_the_year_at_2500() -> None:
    high = claim(loan=replace(claim().loan, annual_rate_bp=600), receipts=receipts(bp=600))
    d = decide(high)
    # 5% of 5 万元 over 365 days ÷ 360 is 2534.72: the yearly 贴息限额 of 2,500 元 binds
    assert d.subsidy == Money.yuan(2_500)
    assert any("高于年贴息率上限 5%" in b for b in d.basis) and any("2500.00 元" in b for b in d.basis)


def test_principal_over_the_cap_is_subsidised_on_the_cap_only() -> None:
    big = claim(loan=replace(claim().loan, principal=Money.yuan(80_000)), receipts=receipts(Money.yuan(80_000)))
    d = decide(big)
    assert d.eligible and d.subsidy == decide(claim()).subsidy  # as for a 5 万元 loan: 超过部分不予贴息
    assert any("超过部分不予贴息，按 5 万元计算" in b for b in d.basis)


def test_a_county_that_refuses_over_the_cap() -> None:
    strict = replace(loans.FUQING_2018, over_cap="REFUSE")
    big = claim(loan=replace(claim().loan, principal=Money.yuan(80_000)))
    d = loans.decide(big, strict, loans.purposes_for(date(2021, 7, 1)))
    assert not d.eligible and d.subsidy == Money(0) and any("超过每户贷款额度上限 5 万元" in r for r in d.reasons)


@pytest.mark.parametrize(
    ("purpose", "words"),
    [
        ("GAMBLING", "赌博"),
        ("USURY", "放高利贷"),
        ("SCHOOLING", "子女上学"),
        ("用于还债", "还债"),
        ("种植还债", "还债"),  # a forbidden use hidden in an allowed one is still refused
        ("看病住院", "看病"),
    ],
)
def test_forbidden_uses_are_refused_with_the_rules_reason(purpose: str, words: str) -> None:
    d = decide(with_loan(purpose=purpose))
    assert not d.eligible and d.subsidy == Money(0)
    assert any(words in r and "不得用于" in r for r in d.reasons)


def test_purpose_list_and_free_text() -> None:
    p = hunan.jsx_loan_purposes(YUANLING, date(2022, 3, 1))
    assert [x.name for x in p.allowed][:5] == ["种植", "养殖", "农产品加工", "休闲农业", "乡村旅游"]
    assert {x.name for x in p.forbidden} == {"子女上学", "看病", "还债", "赌博", "放高利贷"}
    assert getattr(p.find("柑橘种植"), "code", None) == "PLANTING"
    assert getattr(p.find("生猪养殖"), "code", None) == "BREEDING"
    assert getattr(p.find("农家乐"), "code", None) == "RURAL_TOURISM" and p.find("买房") is None
    assert all("假定" in b for b in p.basis)
    assert not decide(with_loan(purpose="买房")).eligible  # not in the list


def test_at_most_three_claims_across_years_and_programs() -> None:
    two = (PriorLoanClaim(2020, "programs/3", Money.yuan(2_000)), PriorLoanClaim(2021, "programs/9", Money.yuan(1_800)))
    d = decide(claim(history=two))
    assert d.eligible and any("第 3 次" in r for r in d.reasons)
    fourth = decide(claim(history=(*two, PriorLoanClaim(2019, "programs/1", Money.yuan(900)))))
    assert not fourth.eligible and any(
        "已在 2019、2020、2021 贴息年度享受贴息 3 次，每户最多享受 3 次" in r for r in fourth.reasons
    )


def test_the_yearly_cap_counts_other_programs_this_year() -> None:
    other = (PriorLoanClaim(2022, "programs/county", Money.yuan(2_000)),)
    d = decide(claim(history=other))
    assert d.eligible and d.subsidy == Money.yuan(500)
    full = decide(claim(history=(PriorLoanClaim(2022, "programs/county", Money.yuan(2_500)),)))
    assert not full.eligible and any("已达每户每年 2500.00 元的上限" in r for r in full.reasons)


def test_receipts_outside_the_year_twice_or_outside_the_loan_are_refused() -> None:
    late = replace(
        receipts()[3],
        number="R5",
        period_start=date(2022, 7, 1),
        period_end=date(2022, 9, 20),
        paid_on=date(2022, 9, 20),
    )
    d = decide(claim(loan=replace(claim().loan, end=date(2022, 9, 30)), receipts=(*receipts(), late)))
    assert not d.eligible and any("付息日 2022-09-20 不在 2022 贴息年度" in r for r in d.reasons)
    twice = decide(claim(receipts=(*receipts(), receipts()[0])))
    assert not twice.eligible and any("R1 重复" in r for r in twice.reasons)
    outside = decide(with_loan(start=date(2021, 8, 1)))
    assert not outside.eligible and any("超出贷款合同期限" in r for r in outside.reasons)
    assert not decide(claim(receipts=())).eligible


def test_household_type_and_hukou() -> None:
    assert decide(claim(situation="TWO_DAUGHTERS")).eligible
    for situation in ("SPECIAL_BEREAVED", "OTHER"):
        assert not decide(claim(situation=situation)).eligible
    urban = decide(claim(hukou="URBAN"))
    assert not urban.eligible and any("城镇户籍" in r for r in urban.reasons)
    unknown = decide(claim(hukou=""))
    assert not unknown.eligible and any("请先登记户籍类型" in r for r in unknown.reasons)


# -- the generic application path (jsx_program_eligibility / jsx_entitlement_amount) ------------


def application(**attrs: str) -> Beneficiary:
    details = {
        "loan.lender": "溆浦县农村商业银行",
        "loan.principal_fen": "5000000",
        "loan.annual_rate_bp": "435",
        "loan.interest_paid_fen": "217500",
        "loan.start": "2021-07-01",
        "loan.end": "2022-06-30",
        "loan.purpose": "柑橘种植",
        "hukou_type": "农村",
    }
    return Beneficiary(
        "P", "H", RegionCode.parse(SEED_VILLAGES[2]), "ONLY_CHILD", "HOUSEHOLD", None, {**details, **attrs}
    )


def test_an_application_is_decided_by_the_same_rule() -> None:
    year = Period.year_of(2022)
    e = hunan.jsx_program_eligibility("LOAN_INTEREST", application(), year, {"program_year": 2022})
    assert e is not None and e.eligible and assumed(e.reasons)
    a = hunan.jsx_entitlement_amount("LOAN_INTEREST", application(), year, {"program_year": 2022})
    # 5 万元 × 4.35% × 365 天 ÷ 360 = 2205.21 > 2175.00 paid: the interest paid
    assert a is not None and a.amount == Money.yuan(2_175) and assumed(a.basis)
    bad = hunan.jsx_program_eligibility("LOAN_INTEREST", application(**{"loan.purpose": "赌博"}), year, {})
    assert bad is not None and not bad.eligible and any("赌博" in r for r in bad.reasons)
    with pytest.raises(FailedPrecondition) as refused:
        hunan.jsx_entitlement_amount("LOAN_INTEREST", application(**{"loan.principal_fen": ""}), year, {})
    assert refused.value.reason == "NOT_ELIGIBLE" and "贷款本金" in refused.value.message
    again = hunan.jsx_program_eligibility(
        "LOAN_INTEREST", application(), year, {"program_year": 2022, "claims_so_far": 1}
    )
    assert again is not None and not again.eligible and any("一份申请" in r for r in again.reasons)
    three = {"program_year": 2022, "loan_claim_years": [2019, 2020, 2021]}
    capped = hunan.jsx_program_eligibility("LOAN_INTEREST", application(), year, three)
    assert capped is not None and not capped.eligible


@pytest.fixture(scope="module")
def host() -> PluginHost:
    h = PluginHost(timeout_ms=2000)
    h.discover()
    return h


@pytest.mark.parametrize("village", SEED_VILLAGES)
def test_seed_counties_answer_loan_interest_and_sanjiehe_instead_of_no_rule(host: PluginHost, village: str) -> None:
    b = replace(application(), region=RegionCode.parse(village))
    kw = {"beneficiary": b, "period": Period.year_of(2022), "context": {"program_year": 2022}}
    e = host.call("jsx_program_eligibility", village, program_type="LOAN_INTEREST", **kw)
    a = host.call("jsx_entitlement_amount", village, program_type="LOAN_INTEREST", **kw)
    assert (e.plugin, e.plugin_version, e.value.eligible) == ("hunan", hunan.__version__, True)
    assert a.plugin == "hunan" and a.value.amount == Money.yuan(2_175)
    s = replace(
        b,
        attributes={
            "sanjiehe.industry": "种养",
            "sanjiehe.project": "蓝莓种植",
            "sanjiehe.agreement_number": "帮〔2022〕1号",
        },
    )
    sj = host.call(
        "jsx_program_eligibility",
        village,
        program_type="SANJIEHE",
        beneficiary=s,
        period=Period.year_of(2022),
        context={},
    )
    assert sj.plugin == "hunan" and sj.value.eligible
    pub = host.call("jsx_publicity_rule", village, program_type="LOAN_INTEREST")
    assert (pub.value.days, pub.value.working_days, pub.plugin) == (7, True, "hunan")
    d = host.call("jsx_loan_subsidy", village, claim=claim())
    assert d.plugin == "hunan" and d.value.eligible
