"""洪江市 (431281) rules: the city's raised 计生特别扶助 standard and the
150 元/人/年 health insurance for special families, and the activity cadence
its report sets.

Source: 怀化市计生协 2022 年第二十一期简报, 洪江市 report: “本级财政年度预算
专项资金 288 万元，将全市独生子女死亡、伤残夫妻的计生特别扶助标准分别提高到
940 元/月、580 元/月” and “为全市 901 个计生特殊家庭办理 150 元/人·年健康保险”
(reported among its 2021 work); “对计生特殊家庭开展了不少于 3 次的走访慰问服务”;
“村级计生协基本做到了每年至少召开一次理事会议，组织基层计生协骨干会员培训一次以上”.

The report gives no start date for 940/580; it is encoded from 2022-01-01
(the year of the report) and every basis line says so. Who is eligible for
特别扶助 is the national rule, answered by the province plugin.

会员联系户: the same report — “进一步完善了会员联系户制度，发动会员开展‘一对一’
帮扶服务活动，落实会员重点帮扶联系户 16716 个” — counts 16,716 households
kept in touch with by members, against 901 special families: one member
keeps several households, not only special families. The report gives
neither a cap per member nor a start date; the rule is encoded with at most
10 households per member from 2021-01-01, both marked as assumed in its
basis. 双岗联系人 keep the default 1:1 rule.

The city's 暖心家园 targets (plugin huaihua) still apply and are included.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from jsx_plugin_huaihua import WARM_HOME_TARGETS
from jsxcore.errors import FailedPrecondition, InvalidArgument
from jsxcore.hookspecs import (
    SPECIAL_FAMILY,
    ActivityType,
    Amount,
    Beneficiary,
    BirthDateUse,
    CadenceTarget,
    Dated,
    DatedTable,
    Eligibility,
    PairingKind,
    PairingRules,
    PluginMeta,
    ProgramType,
    RuleInputs,
    Situation,
    hookimpl,
)
from jsxcore.plugins import NATIONAL_ACTIVITY_TYPES
from jsxcore.values import Money, Period, PeriodKind, RegionCode

__version__ = "0.1.0"

JSX_PLUGIN = PluginMeta(
    name="hongjiang",
    version=__version__,
    regions=("431281",),
    description=(
        "洪江市计生协规则：特别扶助 940/580 元/人/月，特殊家庭健康保险 150 元/人/年，会员联系户一名会员联系多户，"
        "特殊家庭每年不少于 3 次走访慰问，村级理事会会议和骨干会员培训每年至少一次"
    ),
    # Rates by situation and period only; 健康保险 eligibility by situation:
    # no attribute and not the birth date (a batch may group by situation).
    rule_inputs={
        ProgramType.SPECIAL_SUPPORT.value: RuleInputs(frozenset(), BirthDateUse.UNUSED),
        ProgramType.HEALTH_INSURANCE.value: RuleInputs(frozenset(), BirthDateUse.UNUSED),
    },
)

_SOURCE = "依据怀化市计生协2022年第二十一期简报（洪江市）"
_DATE_NOTE = "简报未载明施行日期，按 2022-01-01 起计"

SPECIAL_SUPPORT_RATES: Mapping[str, DatedTable[Money]] = {
    Situation.SPECIAL_BEREAVED: DatedTable(
        "洪江市计生特别扶助金（独生子女死亡家庭）",
        [Dated(date(2022, 1, 1), Money.yuan(940), f"洪江市标准 940 元/人/月（2022-01-01 起，{_DATE_NOTE}）")],
    ),
    Situation.SPECIAL_DISABLED: DatedTable(
        "洪江市计生特别扶助金（独生子女伤残家庭）",
        [Dated(date(2022, 1, 1), Money.yuan(580), f"洪江市标准 580 元/人/月（2022-01-01 起，{_DATE_NOTE}）")],
    ),
}

HEALTH_INSURANCE_PREMIUM: DatedTable[Money] = DatedTable(
    "洪江市计生特殊家庭健康保险",
    [Dated(date(2021, 1, 1), Money.yuan(150), "洪江市计生特殊家庭健康保险 150 元/人/年（2021 年起）")],
)


def _yearly(table: DatedTable[Money], period: Period) -> Amount:
    if period.kind is not PeriodKind.YEAR:
        raise InvalidArgument.field(
            "period",
            f"健康保险按年度办理，请选择年度期间（如 {period.start.year}），收到 {period}",
            reason="PERIOD_KIND",
        )
    row = table.at(period.start)
    return Amount(row.value, (row.source, _SOURCE))


@hookimpl
def jsx_program_eligibility(
    program_type: str, beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]
) -> Eligibility | None:
    if program_type != ProgramType.HEALTH_INSURANCE:
        return None  # 特别扶助 conditions are national: the province plugin decides
    if beneficiary.situation in SPECIAL_FAMILY:
        return Eligibility(True, ("洪江市为全市计生特殊家庭成员办理健康保险，该对象属于计生特殊家庭",))
    return Eligibility(False, ("洪江市健康保险只面向计生特殊家庭（独生子女死亡或伤残）",))


@hookimpl
def jsx_entitlement_amount(
    program_type: str, beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]
) -> Amount | None:
    if program_type == ProgramType.HEALTH_INSURANCE:
        return _yearly(HEALTH_INSURANCE_PREMIUM, period)
    if program_type != ProgramType.SPECIAL_SUPPORT:
        return None
    table = SPECIAL_SUPPORT_RATES.get(beneficiary.situation)
    if table is None:
        raise FailedPrecondition(
            "该对象不属于计生特殊家庭（独生子女死亡或伤残），没有特别扶助金额，请先核实家庭情况",
            reason="NOT_ELIGIBLE",
        )
    return table.monthly_amount(period, _SOURCE)


#: 会员联系户: how many households one member may keep in touch with (assumed: the report gives no cap).
MEMBER_CONTACT_HOUSEHOLDS = 10
MEMBER_CONTACT_SINCE = date(2021, 1, 1)
MEMBER_CONTACT_BASIS = (
    f"洪江市进一步完善会员联系户制度，发动会员开展“一对一”帮扶服务活动，落实会员重点帮扶联系户 16716 个（{_SOURCE}）",
    "会员联系户不限于计生特殊家庭，一名会员可联系多户",
    f"简报未载明每名会员联系户数上限和施行日期，按每名会员至多联系 {MEMBER_CONTACT_HOUSEHOLDS} 户、"
    f"{MEMBER_CONTACT_SINCE.isoformat()} 起计（假定）",
)


# ---- activity cadence (events service) ------------------------------------

#: Activity types the cadence targets below count (besides the national ones).
COUNCIL_MEETING = ActivityType("COUNCIL_MEETING", "理事会会议", ("参会人数",))
BACKBONE_TRAINING = ActivityType("BACKBONE_TRAINING", "骨干会员培训", ("参训人数", "资料份数"))

CADENCE: tuple[CadenceTarget, ...] = (
    CadenceTarget(
        "hongjiang.special_family.visits",
        "SPECIAL_FAMILY",
        "CARE_VISIT",
        3,
        "YEAR",
        "对计生特殊家庭开展了不少于 3 次的走访慰问服务",
    ),
    CadenceTarget(
        "hongjiang.village.council_meeting",
        "VILLAGE",
        COUNCIL_MEETING.code,
        1,
        "YEAR",
        "村级计生协每年至少召开一次理事会议",
    ),
    CadenceTarget(
        "hongjiang.village.backbone_training",
        "VILLAGE",
        BACKBONE_TRAINING.code,
        1,
        "YEAR",
        "组织基层计生协骨干会员培训一次以上",
    ),
)


@hookimpl
def jsx_pairing_rules(kind: str, region: RegionCode, on: date) -> PairingRules | None:
    if kind != PairingKind.MEMBER_CONTACT or on < MEMBER_CONTACT_SINCE:
        return None  # 双岗联系人, and 会员联系户 before the reform: the default 1:1 rule
    return PairingRules(MEMBER_CONTACT_HOUSEHOLDS, False, MEMBER_CONTACT_BASIS)


@hookimpl
def jsx_cadence_targets(region: RegionCode, year: int) -> tuple[CadenceTarget, ...]:
    return CADENCE + WARM_HOME_TARGETS


@hookimpl
def jsx_activity_types(region: RegionCode) -> tuple[ActivityType, ...]:
    return (*NATIONAL_ACTIVITY_TYPES, COUNCIL_MEETING, BACKBONE_TRAINING)
