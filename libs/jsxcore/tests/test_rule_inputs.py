"""RuleInputs: what plugins declare their eligibility and amount rules read,
how PluginHost unites the declarations along a region's chain, and how the
conformance kit catches a declaration that does not match the rules.

Real PluginHost, real plugin modules (discovered or registered), no mocks."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import date
from typing import Any

import pytest

import jsx_plugin_hongjiang
import jsx_plugin_huaihua
import jsx_plugin_hunan
from jsxcore.errors import ConfigError
from jsxcore.hookspecs import Beneficiary, Eligibility, PluginMeta, ProgramType, hookimpl
from jsxcore.plugins import BirthDateUse, PluginHost, RuleInputs
from jsxcore.testing.conformance import check_plugin, check_rule_inputs
from jsxcore.values import Period, RegionCode

DATE, AGE, UNUSED = BirthDateUse.DATE, BirthDateUse.AGE_ON_PERIOD_START, BirthDateUse.UNUSED
NOTHING = RuleInputs(frozenset(), UNUSED)
HONGJIANG_VILLAGE = "431281101201"
OTHER_HONGJIANG_VILLAGE = "431281102001"  # another township of 洪江市
HUNAN_SPECIAL_SUPPORT = RuleInputs(
    frozenset({"has_living_child", "child_disability_grade", "hukou_type", "hukou"}), AGE
)
# 贷款贴息 / 三结合 applications: the reserved detail keys (and the 户籍 type for 贴息), never the birth date
HUNAN_LOAN_INTEREST = RuleInputs(
    frozenset(
        {
            "loan.lender",
            "loan.principal_fen",
            "loan.annual_rate_bp",
            "loan.interest_paid_fen",
            "loan.start",
            "loan.end",
            "loan.purpose",
            "hukou_type",
            "hukou",
        }
    ),
    UNUSED,
)
HUNAN_SANJIEHE = RuleInputs(frozenset({"sanjiehe.project", "sanjiehe.industry", "sanjiehe.agreement_number"}), UNUSED)


def hunan_and_hongjiang() -> PluginHost:
    host = PluginHost({"hunan": ["430000"], "hongjiang": ["431281"]})
    host.discover()
    return host


class Township:
    """A township plugin answering 特别扶助 eligibility from an attribute."""

    def __init__(
        self, name: str, rule_inputs: Mapping[str, RuleInputs] | None, regions: tuple[str, ...] = ("431281101",)
    ) -> None:
        self.JSX_PLUGIN = PluginMeta(name, "0.1.0", regions, "测试乡镇规则", rule_inputs)

    @hookimpl
    def jsx_program_eligibility(
        self, program_type: str, beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]
    ):
        if program_type != ProgramType.SPECIAL_SUPPORT or beneficiary.attributes.get("village_note") != "困难":
            return None
        return Eligibility(True, ("村里登记为困难家庭，乡镇特别认定",))


class CadenceOnly:
    """Undeclared, but implements no eligibility or amount hook."""

    JSX_PLUGIN = PluginMeta("cadence_only", "0.1.0", ("431281",), "只有活动频次规则")

    @hookimpl
    def jsx_cadence_targets(self, region: RegionCode, year: int):
        return ()


# -- the value type ------------------------------------------------------------


def test_union_unites_keys_and_the_finer_birth_date_use_wins() -> None:
    a = RuleInputs(frozenset({"hukou"}), UNUSED)
    b = RuleInputs(frozenset({"has_living_child"}), AGE)
    assert a.union(b) == b.union(a) == RuleInputs(frozenset({"hukou", "has_living_child"}), AGE)
    order = [UNUSED, AGE, DATE]
    for i, x in enumerate(order):
        for j, y in enumerate(order):
            assert RuleInputs(birth_date=x).union(RuleInputs(birth_date=y)).birth_date is order[max(i, j)]
    assert HUNAN_SPECIAL_SUPPORT.union(NOTHING) == HUNAN_SPECIAL_SUPPORT
    # the safe default is: no attribute named, the exact date
    assert RuleInputs() == RuleInputs(frozenset(), DATE)
    # a set literal is the natural way to write keys
    assert RuleInputs({"hukou"}, AGE).attributes == frozenset({"hukou"})  # type: ignore[arg-type]  # the point
    assert BirthDateUse("AGE_ON_PERIOD_START") is AGE and AGE == "AGE_ON_PERIOD_START"


def test_shipped_declarations() -> None:
    assert jsx_plugin_hunan.JSX_PLUGIN.rule_inputs == {
        "SPECIAL_SUPPORT": HUNAN_SPECIAL_SUPPORT,
        "LOAN_INTEREST": HUNAN_LOAN_INTEREST,
        "SANJIEHE": HUNAN_SANJIEHE,
    }
    assert jsx_plugin_hongjiang.JSX_PLUGIN.rule_inputs is not None
    assert set(jsx_plugin_hongjiang.JSX_PLUGIN.rule_inputs.values()) == {NOTHING}
    assert jsx_plugin_huaihua.JSX_PLUGIN.rule_inputs is None  # no eligibility or amount rule: nothing to declare
    hash(jsx_plugin_hunan.JSX_PLUGIN)  # the metadata stays hashable with a mapping in it


# -- PluginHost.rule_inputs ----------------------------------------------------


def test_hongjiang_village_gets_hunans_special_support_declaration() -> None:
    host = hunan_and_hongjiang()
    assert host.rule_inputs("SPECIAL_SUPPORT", HONGJIANG_VILLAGE) == HUNAN_SPECIAL_SUPPORT
    assert host.rule_inputs(ProgramType.SPECIAL_SUPPORT, RegionCode.parse(HONGJIANG_VILLAGE)) == HUNAN_SPECIAL_SUPPORT
    # health insurance: hunan's mapping lacks it, hongjiang declares nothing read
    assert host.rule_inputs("HEALTH_INSURANCE", HONGJIANG_VILLAGE) == NOTHING
    assert host.rule_inputs("LOAN_INTEREST", "431281") == HUNAN_LOAN_INTEREST
    # hunan alone decides in 沅陵 (yuanling is installed but not enabled here)
    assert host.rule_inputs("SPECIAL_SUPPORT", "431222101001") == HUNAN_SPECIAL_SUPPORT


def test_no_rule_plugin_in_the_chain_reads_nothing() -> None:
    host = PluginHost()  # only the built-in defaults, which decide no eligibility or amount
    assert host.rule_inputs("SPECIAL_SUPPORT", HONGJIANG_VILLAGE) == NOTHING
    host = hunan_and_hongjiang()
    assert host.rule_inputs("SPECIAL_SUPPORT", "440000") == NOTHING  # outside 湖南: no plugin enabled


def test_an_undeclared_rule_plugin_in_the_chain_gives_none() -> None:
    host = PluginHost({"hunan": ["430000"], "hongjiang": ["431281"], "town": ["431281101"]})
    host.register(jsx_plugin_hunan)
    host.register(jsx_plugin_hongjiang)
    host.register(Township("town", None))
    assert host.rule_inputs("SPECIAL_SUPPORT", HONGJIANG_VILLAGE) is None
    assert host.rule_inputs("HEALTH_INSURANCE", HONGJIANG_VILLAGE) is None  # not declared: nothing is known
    # the township's plugin is not in another township's chain
    assert host.rule_inputs("SPECIAL_SUPPORT", OTHER_HONGJIANG_VILLAGE) == HUNAN_SPECIAL_SUPPORT
    # ... but a county-wide batch pays that township's villages too
    assert host.rule_inputs("SPECIAL_SUPPORT", "431281") == HUNAN_SPECIAL_SUPPORT
    assert host.rule_inputs("SPECIAL_SUPPORT", "431281", within=True) is None


def test_an_undeclared_plugin_without_rule_hooks_does_not_count() -> None:
    host = PluginHost({"hunan": ["430000"], "huaihua": ["431200"], "cadence_only": ["431281"]})
    host.register(jsx_plugin_hunan)
    host.register(jsx_plugin_huaihua)
    host.register(CadenceOnly())
    assert host.rule_inputs("SPECIAL_SUPPORT", HONGJIANG_VILLAGE) == HUNAN_SPECIAL_SUPPORT


def test_declarations_are_united_along_the_chain_and_a_missing_type_adds_nothing() -> None:
    town = Township(
        "town",
        {
            "SPECIAL_SUPPORT": RuleInputs(frozenset({"village_note"}), UNUSED),
            "COUNTY_ELDER_CARE": RuleInputs(frozenset({"score"}), DATE),
        },
    )
    host = PluginHost({"hunan": ["430000"], "hongjiang": ["431281"], "town": ["431281101"]})
    for plugin in (jsx_plugin_hunan, jsx_plugin_hongjiang, town):
        host.register(plugin)
    assert host.rule_inputs("SPECIAL_SUPPORT", HONGJIANG_VILLAGE) == RuleInputs(
        HUNAN_SPECIAL_SUPPORT.attributes | {"village_note"}, AGE
    )
    # a custom program type only the township declares; hunan and hongjiang lack it
    assert host.rule_inputs("COUNTY_ELDER_CARE", HONGJIANG_VILLAGE) == RuleInputs(frozenset({"score"}), DATE)
    # the township lacks HEALTH_INSURANCE: still nothing read
    assert host.rule_inputs("HEALTH_INSURANCE", HONGJIANG_VILLAGE) == NOTHING


# -- PluginMeta.problems -------------------------------------------------------


@pytest.mark.parametrize(
    ("rule_inputs", "expected"),
    [
        ([("SPECIAL_SUPPORT", RuleInputs())], "须为“项目类型 → RuleInputs”的映射"),
        ({"": RuleInputs()}, "项目类型 '' 无效"),
        ({"SPECIAL_SUPORT": RuleInputs()}, "疑似拼写错误"),
        ({"special_support": RuleInputs()}, "疑似拼写错误"),
        ({"SPECIAL_SUPPORT": {"attributes": ["hukou"]}}, "须为 RuleInputs"),
        ({"SPECIAL_SUPPORT": RuleInputs(frozenset({""}), AGE)}, "属性名 '' 无效"),
        ({"SPECIAL_SUPPORT": RuleInputs(frozenset({" hukou"}), AGE)}, "属性名 ' hukou' 无效"),
        ({"SPECIAL_SUPPORT": RuleInputs("hukou", AGE)}, "attributes 须为属性名集合"),  # type: ignore[arg-type]  # wrong on purpose
        ({"SPECIAL_SUPPORT": RuleInputs(frozenset(), "AGE")}, "birth_date 须为 BirthDateUse"),  # type: ignore[arg-type]  # wrong on purpose
    ],
)
def test_problems_flag_a_bad_declaration(rule_inputs: Any, expected: str) -> None:
    meta = dataclasses.replace(jsx_plugin_hunan.JSX_PLUGIN, name="bad_decl", rule_inputs=rule_inputs)
    problems = meta.problems()
    assert any(expected in p for p in problems), problems
    with pytest.raises(ConfigError, match="rule_inputs"):
        PluginHost().register(Township("bad_decl", rule_inputs))


def test_problems_accept_good_declarations() -> None:
    custom = {"SPECIAL_SUPPORT_TOPUP": RuleInputs(), "county_elder_care": RuleInputs({"score"}, DATE)}  # type: ignore[arg-type]  # a set literal, stored as frozenset
    for rule_inputs in (None, {}, {"SPECIAL_SUPPORT": HUNAN_SPECIAL_SUPPORT}, custom):
        assert dataclasses.replace(jsx_plugin_hunan.JSX_PLUGIN, rule_inputs=rule_inputs).problems() == []


# -- the conformance kit -------------------------------------------------------


class BornOnTheFirst:
    """Reads the exact birth date: eligible only if born on the 1st of a month."""

    def __init__(self, birth_date: BirthDateUse) -> None:
        self.JSX_PLUGIN = PluginMeta(
            "born_first",
            "0.1.0",
            ("431281",),
            "测试规则：每月 1 日出生者可享受",
            {"SPECIAL_SUPPORT": RuleInputs(frozenset(), birth_date)},
        )

    @hookimpl
    def jsx_program_eligibility(
        self, program_type: str, beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]
    ):
        if program_type != ProgramType.SPECIAL_SUPPORT:
            return None
        if beneficiary.birth_date is not None and beneficiary.birth_date.day == 1:
            return Eligibility(True, ("每月 1 日出生，可以享受",))
        return Eligibility(False, ("不是每月 1 日出生，不能享受",))


class AgeAndHukou:
    """Reads the age on the period's first day and the 户籍 type."""

    def __init__(self, rule_inputs: Mapping[str, RuleInputs]) -> None:
        self.JSX_PLUGIN = PluginMeta("age_hukou", "0.1.0", ("431281",), "测试规则：按年龄和户籍认定", rule_inputs)

    @hookimpl
    def jsx_program_eligibility(
        self, program_type: str, beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]
    ):
        if program_type != ProgramType.SPECIAL_SUPPORT or beneficiary.birth_date is None:
            return None
        b, s = beneficiary.birth_date, period.start
        age = s.year - b.year - ((s.month, s.day) < (b.month, b.day))
        rural = beneficiary.attributes.get("hukou") == "RURAL"
        return Eligibility(age >= 60 and rural, (f"{s} 时 {age} 周岁，{'农村' if rural else '非农村'}户籍",))


def test_kit_reports_a_rule_reading_the_exact_date_declared_as_age() -> None:
    problems = check_plugin(BornOnTheFirst(AGE))
    assert problems and all("rule_inputs 声明与规则不符" in p for p in problems), problems
    assert any("出生日期" in p and "周岁相同" in p and "SPECIAL_SUPPORT" in p for p in problems), problems
    assert any("出生日期" in p and "UNUSED" in p for p in check_plugin(BornOnTheFirst(UNUSED)))


@pytest.mark.slow
def test_kit_accepts_honest_declarations() -> None:
    assert check_plugin(BornOnTheFirst(DATE)) == []
    honest = {"SPECIAL_SUPPORT": RuleInputs(frozenset({"hukou"}), AGE)}
    assert check_plugin(AgeAndHukou(honest)) == []
    # declaring more than the rules read is honest too (only slower)
    assert check_plugin(AgeAndHukou({"SPECIAL_SUPPORT": RuleInputs(frozenset({"hukou", "hukou_type"}), DATE)})) == []
    for shipped in (jsx_plugin_hunan, jsx_plugin_hongjiang):
        assert check_rule_inputs(shipped) == []


def test_kit_reports_an_undeclared_attribute_and_a_missing_type() -> None:
    problems = check_plugin(AgeAndHukou({"SPECIAL_SUPPORT": RuleInputs(frozenset(), AGE)}))
    assert any("读取了属性 hukou" in p for p in problems), problems
    assert any("未声明的属性 hukou" in p for p in problems), problems
    # a mapping without SPECIAL_SUPPORT says its rules read nothing for it: the age and hukou are caught
    problems = check_plugin(AgeAndHukou({"HEALTH_INSURANCE": RuleInputs()}))
    assert any("未声明的属性 hukou" in p for p in problems) and any("出生日期" in p for p in problems), problems


def test_kit_reports_a_dishonest_shipped_declaration() -> None:
    # hunan with hukou_type/hukou left out: months before 2022-07 depend on them
    meta = dataclasses.replace(
        jsx_plugin_hunan.JSX_PLUGIN,
        rule_inputs={"SPECIAL_SUPPORT": RuleInputs(frozenset({"has_living_child", "child_disability_grade"}), AGE)},
    )
    problems = check_rule_inputs(jsx_plugin_hunan, meta)
    assert any("jsx_entitlement_amount" in p and "未声明的属性 hukou_type" in p for p in problems), problems
    assert not any("出生日期" in p for p in problems), problems


def test_the_twin_birth_dates_keep_the_age() -> None:
    from jsxcore.testing.conformance import _age_on, _births, _twin_birth

    for start in (date(2022, 8, 1), date(2024, 3, 1), date(2023, 1, 1), date(2024, 2, 29)):
        for birth in _births(start):
            twin = _twin_birth(birth, start, AGE)
            if birth is None:
                assert twin is None
            else:
                assert twin is not None and twin != birth and _age_on(twin, start) == _age_on(birth, start)
            assert _twin_birth(birth, start, DATE) == birth
            assert _twin_birth(birth, start, UNUSED) != birth
