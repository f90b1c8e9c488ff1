"""沅陵县 (431222) rules: 150 元/人/年 health insurance for special families,
and the activity cadence the county set itself.

Source: 怀化市计生协 2022 年第二十一期简报, 沅陵县 report: “每个村（居、社区）
每年开展不少于 2 次‘健康人生’大讲堂活动，每所学校每学期至少开展 1 次青春健康
教育活动”; “各乡（镇）、村（居、社区）计生协每年组织一次‘幸福好家庭’评选表彰
活动”; “在全县 369 个行政村建立‘会员之家’”; “为计划生育特殊困难家庭每人每年购买
150 元的健康保险”. The report is of
2022; the insurance figure is encoded from 2022-01-01 (no earlier date given).
The city's 暖心家园 targets (plugin huaihua) still apply and are included.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from jsx_plugin_huaihua import WARM_HOME_TARGETS
from jsxcore.errors import InvalidArgument
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
    PluginMeta,
    ProgramType,
    RuleInputs,
    hookimpl,
)
from jsxcore.plugins import NATIONAL_ACTIVITY_TYPES
from jsxcore.values import Money, Period, PeriodKind, RegionCode

__version__ = "0.1.0"

JSX_PLUGIN = PluginMeta(
    name="yuanling",
    version=__version__,
    regions=("431222",),
    description=(
        "沅陵县计生协规则：特殊家庭健康保险 150 元/人/年，健康大讲堂、青春健康教育、幸福好家庭评选频次，"
        "每个行政村建有会员之家"
    ),
    # 健康保险: eligibility by situation, premium by period: no attribute, not the birth date.
    rule_inputs={ProgramType.HEALTH_INSURANCE.value: RuleInputs(frozenset(), BirthDateUse.UNUSED)},
)

SOURCE = "依据怀化市计生协2022年第二十一期简报（沅陵县）"

HAPPY_FAMILY_AWARD = ActivityType("HAPPY_FAMILY_AWARD", "“幸福好家庭”评选表彰", ("表彰户数",))

CADENCE: tuple[CadenceTarget, ...] = (
    CadenceTarget(
        "yuanling.village.health_lecture",
        "VILLAGE",
        "HEALTH_LECTURE",
        2,
        "YEAR",
        "每个村（居、社区）每年开展不少于 2 次“健康人生”大讲堂",
    ),
    CadenceTarget(
        "yuanling.school.youth_health",
        "SCHOOL",
        "YOUTH_HEALTH",
        1,
        "SEMESTER",
        "每所学校每学期至少开展 1 次青春健康教育活动",
    ),
    # The selection counts as a “幸福好家庭”评选表彰 activity or as the awarded HAPPY_FAMILY
    # decisions (DecideAward) of the unit's association for the year.
    CadenceTarget(
        "yuanling.township.happy_family",
        "TOWNSHIP",
        HAPPY_FAMILY_AWARD.code,
        1,
        "YEAR",
        "各乡（镇）计生协每年组织一次“幸福好家庭”评选表彰活动",
        award_kind="HAPPY_FAMILY",
    ),
    CadenceTarget(
        "yuanling.village.happy_family",
        "VILLAGE",
        HAPPY_FAMILY_AWARD.code,
        1,
        "YEAR",
        "各村（居、社区）计生协每年组织一次“幸福好家庭”评选表彰活动",
        award_kind="HAPPY_FAMILY",
    ),
    # 369 行政村 in the seed = the 2023 region list's 404 村级 units of 沅陵县 less its 35 社区.
    CadenceTarget(
        "yuanling.village.member_home",
        "ADMIN_VILLAGE",
        "SITE",
        1,
        "YEAR",
        "在全县 369 个行政村建立“会员之家”：每个行政村建有 1 个会员之家",
        site_kind="MEMBER_HOME",
    ),
)

HEALTH_INSURANCE_PREMIUM: DatedTable[Money] = DatedTable(
    "沅陵县计生特殊家庭健康保险",
    [Dated(date(2022, 1, 1), Money.yuan(150), "沅陵县计生特殊困难家庭健康保险 150 元/人/年（2022 年起）")],
)


@hookimpl
def jsx_program_eligibility(
    program_type: str, beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]
) -> Eligibility | None:
    if program_type != ProgramType.HEALTH_INSURANCE:
        return None
    if beneficiary.situation in SPECIAL_FAMILY:
        return Eligibility(True, ("沅陵县为计生特殊困难家庭每人每年购买健康保险，该对象属于计生特殊家庭",))
    return Eligibility(False, ("沅陵县健康保险只面向计生特殊困难家庭（独生子女死亡或伤残）",))


@hookimpl
def jsx_entitlement_amount(
    program_type: str, beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]
) -> Amount | None:
    if program_type != ProgramType.HEALTH_INSURANCE:
        return None
    if period.kind is not PeriodKind.YEAR:
        raise InvalidArgument.field(
            "period",
            f"健康保险按年度办理，请选择年度期间（如 {period.start.year}），收到 {period}",
            reason="PERIOD_KIND",
        )
    row = HEALTH_INSURANCE_PREMIUM.at(period.start)
    return Amount(row.value, (row.source, SOURCE))


@hookimpl
def jsx_cadence_targets(region: RegionCode, year: int) -> tuple[CadenceTarget, ...]:
    return CADENCE + WARM_HOME_TARGETS


@hookimpl
def jsx_activity_types(region: RegionCode) -> tuple[ActivityType, ...]:
    return (*NATIONAL_ACTIVITY_TYPES, HAPPY_FAMILY_AWARD)
