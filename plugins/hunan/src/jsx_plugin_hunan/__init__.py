"""湖南省 (430000) baseline rules: the national 计生特别扶助 floor, who may
receive it, and which programs are provincial projects needing the
province's approval.

Only figures that are documented are encoded. The national floor of
590/460 元/人/月 applies from 2022-07-01 (DESIGN.md §1); from 2014-01-01 to
2022-06-30 the national standard differed for 城镇 and 农村 (国卫家庭发〔2013〕41号:
死亡 340/170, 伤残 270/150), so those months need the 户籍 type
(``attributes["hukou_type"]``). A period before 2014-01-01 is refused with
``NO_RULE_FOR_PERIOD`` instead of paid from a guessed figure. Counties that
pay more (洪江市 940/580) answer first for their own area.

The publicity period is not stated in the province's 2022 plan, so this
plugin leaves it to the system default.

贷款贴息 and 三结合 (since 0.2.0): the province published no figures, so
:mod:`jsx_plugin_hunan.loans` and :mod:`jsx_plugin_hunan.sanjiehe` ship a
baseline of ASSUMED figures (福清市's published 贴息 scheme; 三结合 project
types from the seeds) that says so in every basis line; 怀化 and each county
override them in their own plugins.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from jsx_plugin_hunan import loans, sanjiehe
from jsxcore.errors import FailedPrecondition
from jsxcore.hookspecs import (
    SPECIAL_FAMILY,
    Amount,
    ApprovalChain,
    Beneficiary,
    BirthDateUse,
    Dated,
    DatedTable,
    Eligibility,
    LoanClaim,
    LoanPurposes,
    LoanSubsidyDecision,
    LoanSubsidyTerms,
    PerformanceFacts,
    PerformanceResult,
    PluginMeta,
    ProgramType,
    PublicityRule,
    RuleInputs,
    SanjieheRules,
    Situation,
    SupportEnd,
    TrancheDecision,
    TrancheRequest,
    hookimpl,
)
from jsxcore.values import Money, Period, RegionCode

__version__ = "0.2.0"

JSX_PLUGIN = PluginMeta(
    name="hunan",
    version=__version__,
    regions=("430000",),
    description="湖南省计生协基础规则：国家计生特别扶助标准（按施行日期）、扶助资格、省级项目审批",
    # What the rules below read, so a payment batch asks them once per distinct
    # input rather than per person. 特别扶助: the age on the period's first day
    # (special_support_eligibility), the living-child and disability-grade
    # attributes, and the 户籍 type for months before 2022-07 (_hukou reads
    # hukou_type, falling back to hukou). 健康保险 and 住院护理补贴 eligibility
    # looks at the situation only, so those types are left out (read nothing).
    rule_inputs={
        ProgramType.SPECIAL_SUPPORT.value: RuleInputs(
            frozenset({"has_living_child", "child_disability_grade", "hukou_type", "hukou"}),
            BirthDateUse.AGE_ON_PERIOD_START,
        ),
        # 贷款贴息 / 三结合 applications: the reserved loan.* / sanjiehe.* details (and the 户籍 type for 贴息).
        ProgramType.LOAN_INTEREST.value: RuleInputs(loans.APPLICATION_KEYS, BirthDateUse.UNUSED),
        ProgramType.SANJIEHE.value: RuleInputs(sanjiehe.APPLICATION_KEYS, BirthDateUse.UNUSED),
    },
)

#: National 特别扶助 floor per person per month, by the date it applies from.
#: 2014-01-01 … 2022-06-30: 国卫家庭发〔2013〕41号 — 城镇/农村 differ
#: (死亡 340/170, 伤残 270/150); from 2022-07-01 one national figure (590/460).
#: Keyed by (situation, 户籍 type); the "" key is for a beneficiary whose 户籍
#: type is not recorded: it only knows the unified rule, so an earlier month
#: is refused with a message asking for the 户籍 type instead of guessing.
_UNIFIED_2022 = {
    Situation.SPECIAL_BEREAVED: Dated(date(2022, 7, 1), Money.yuan(590), "国家标准 590 元/人/月（2022-07-01 起）"),
    Situation.SPECIAL_DISABLED: Dated(date(2022, 7, 1), Money.yuan(460), "国家标准 460 元/人/月（2022-07-01 起）"),
}
_BY_HUKOU_2014 = {
    (Situation.SPECIAL_BEREAVED, "URBAN"): (340, "城镇"),
    (Situation.SPECIAL_BEREAVED, "RURAL"): (170, "农村"),
    (Situation.SPECIAL_DISABLED, "URBAN"): (270, "城镇"),
    (Situation.SPECIAL_DISABLED, "RURAL"): (150, "农村"),
}
_WHAT = {
    Situation.SPECIAL_BEREAVED: "国家计生特别扶助金（独生子女死亡家庭）",
    Situation.SPECIAL_DISABLED: "国家计生特别扶助金（独生子女伤残家庭）",
}

SPECIAL_SUPPORT_RATES: Mapping[tuple[str, str], DatedTable[Money]] = {
    **{
        (sit, ""): DatedTable(
            f"{_WHAT[sit]}（未登记户籍类型：2022-07-01 前城镇、农村标准不同，请先登记户籍类型）", [row]
        )
        for sit, row in _UNIFIED_2022.items()
    },
    **{
        (sit, hukou): DatedTable(
            _WHAT[sit],
            [
                Dated(
                    date(2014, 1, 1),
                    Money.yuan(yuan),
                    f"国家标准 {label} {yuan} 元/人/月（2014-01-01 起，国卫家庭发〔2013〕41号）",
                ),
                _UNIFIED_2022[sit],
            ],
        )
        for (sit, hukou), (yuan, label) in _BY_HUKOU_2014.items()
    },
}


def _hukou(beneficiary: Beneficiary) -> str:
    """户籍 type as the members service records it (农村/城镇, or RURAL/URBAN)."""
    raw = str(beneficiary.attributes.get("hukou_type", beneficiary.attributes.get("hukou", ""))).strip().upper()
    return {"农村": "RURAL", "RURAL": "RURAL", "城镇": "URBAN", "URBAN": "URBAN"}.get(raw, "")


#: The national policy pays parents from the age of 49.
MIN_AGE = 49

#: Programs the province's 2022 plan (八、扎实做好惠民项目) names as 省级项目.
PROVINCIAL_PROJECTS = frozenset(
    {ProgramType.SANJIEHE, ProgramType.LOAN_INTEREST, ProgramType.NURSING_SUBSIDY, ProgramType.HEALTH_INSURANCE}
)

_SITUATION_LABEL = {Situation.SPECIAL_BEREAVED: "独生子女死亡家庭", Situation.SPECIAL_DISABLED: "独生子女伤残家庭"}


def _age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def special_support_eligibility(beneficiary: Beneficiary, period: Period) -> Eligibility:
    """National 特别扶助 conditions a clerk can check from the record."""
    reasons: list[str] = []
    ok = True
    if beneficiary.situation not in SPECIAL_FAMILY:
        return Eligibility(False, ("不属于计生特殊家庭（独生子女死亡或伤残），不享受计生特别扶助",))
    reasons.append(f"属于计生特殊家庭：{_SITUATION_LABEL[Situation(beneficiary.situation)]}")
    if beneficiary.birth_date is None:
        ok = False
        reasons.append("未登记出生日期，无法核定是否年满 49 周岁，请补充")
    else:
        age = _age_on(beneficiary.birth_date, period.start)
        if age >= MIN_AGE:
            reasons.append(f"{period.start.isoformat()} 时年满 {age} 周岁，符合国家政策“年满 49 周岁”的条件")
        else:
            ok = False
            reasons.append(f"{period.start.isoformat()} 时 {age} 周岁，未满 49 周岁，按国家政策暂不享受")
    attrs = beneficiary.attributes
    if attrs.get("has_living_child", "").lower() in ("true", "1", "是"):
        ok = False
        reasons.append("现有存活子女（再生育或收养），不符合特别扶助条件")
    if beneficiary.situation == Situation.SPECIAL_DISABLED:
        grade = attrs.get("child_disability_grade", "")
        if grade not in ("1", "2", "3"):
            ok = False
            reasons.append(
                "独生子女伤残等级未登记或低于三级（须三级以上），请补充残疾证明"
                if not grade
                else f"独生子女伤残等级为 {grade} 级，须三级以上（1–3 级）"
            )
        else:
            reasons.append(f"独生子女伤残等级 {grade} 级，达到三级以上")
    return Eligibility(ok, tuple(reasons))


@hookimpl
def jsx_program_eligibility(
    program_type: str, beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]
) -> Eligibility | None:
    if program_type == ProgramType.SPECIAL_SUPPORT:
        return special_support_eligibility(beneficiary, period)
    if program_type in (ProgramType.HEALTH_INSURANCE, ProgramType.NURSING_SUBSIDY):
        if beneficiary.situation in SPECIAL_FAMILY:
            return Eligibility(True, (f"属于计生特殊家庭，可参加{ProgramType(program_type).label}",))
        return Eligibility(False, (f"{ProgramType(program_type).label}只面向计生特殊家庭（独生子女死亡或伤残）",))
    if program_type == ProgramType.LOAN_INTEREST:
        return loans.application_eligibility(beneficiary, period, context)
    if program_type == ProgramType.SANJIEHE:
        return sanjiehe.application_eligibility(beneficiary, period, context)
    return None


@hookimpl
def jsx_entitlement_amount(
    program_type: str, beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]
) -> Amount | None:
    if program_type == ProgramType.LOAN_INTEREST:
        return loans.application_amount(beneficiary, period, context)
    if program_type != ProgramType.SPECIAL_SUPPORT:
        return None
    table = SPECIAL_SUPPORT_RATES.get((beneficiary.situation, _hukou(beneficiary)))
    if table is None:
        raise FailedPrecondition(
            "该对象不属于计生特殊家庭（独生子女死亡或伤残），没有特别扶助金额，请先核实家庭情况",
            reason="NOT_ELIGIBLE",
        )
    return table.monthly_amount(period)


#: Periodic programs that stop when their beneficiary dies.
_ENDS_AT_DEATH = frozenset({ProgramType.SPECIAL_SUPPORT})


@hookimpl
def jsx_support_end(program_type: str, region: RegionCode, event: str, on: date) -> SupportEnd | None:
    """特别扶助 after a death: paid up to and including the month of death.

    The seeds give no stop month; this follows the usual practice of Hunan's
    published 特别扶助 rules (停发自死亡次月起) and says so in its basis.
    """
    if program_type not in _ENDS_AT_DEATH or event != "DEATH":
        return None
    month = on.replace(day=1)
    return SupportEnd(
        month,
        (
            f"扶助对象于 {on.isoformat()} 死亡，发放至死亡当月（{month:%Y 年 %m 月}），次月起停发（假定：资料未给出停发月份，按通行做法）",
        ),
    )


@hookimpl
def jsx_approval_chain(program_type: str, region: RegionCode, amount: Money) -> ApprovalChain | None:
    if program_type in PROVINCIAL_PROJECTS:
        return ApprovalChain(
            ("VILLAGE", "TOWNSHIP", "COUNTY", "PROVINCE"),
            (f"{ProgramType(program_type).label}为省级项目（湖南省计生协 2022 年工作要点），县审批后报省计生协",),
        )
    return ApprovalChain(("VILLAGE", "TOWNSHIP", "COUNTY"), ("村审核→乡镇审核→县审批",))


# ---- 贷款贴息 and 三结合 (assumed baseline: see loans.py, sanjiehe.py) ------


@hookimpl
def jsx_publicity_rule(program_type: str, region: RegionCode) -> PublicityRule | None:
    return loans.publicity() if program_type == ProgramType.LOAN_INTEREST else None


@hookimpl
def jsx_loan_purposes(region: RegionCode, on: date) -> LoanPurposes:
    return loans.purposes_for(on)


@hookimpl
def jsx_loan_subsidy_terms(region: RegionCode, program_year: int) -> LoanSubsidyTerms:
    return loans.terms_for(program_year)


@hookimpl
def jsx_loan_subsidy(claim: LoanClaim, region: RegionCode) -> LoanSubsidyDecision:
    return loans.decide_claim(claim)


@hookimpl
def jsx_sanjiehe_rules(region: RegionCode, year: int) -> SanjieheRules:
    return sanjiehe.scheme_for(year).rules(year)


@hookimpl
def jsx_sanjiehe_tranche(request: TrancheRequest, region: RegionCode) -> TrancheDecision:
    return sanjiehe.decide_tranche(request, sanjiehe.scheme_for(request.year))


@hookimpl
def jsx_sanjiehe_performance(facts: PerformanceFacts, region: RegionCode) -> PerformanceResult:
    return sanjiehe.score(facts, sanjiehe.scheme_for(facts.year))
