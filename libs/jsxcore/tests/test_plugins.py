"""PluginHost against the real installed plugins (entry-point group "jsx")."""

from __future__ import annotations

import argparse
import json
import logging
import time
import types
from datetime import date

import pytest

from jsxcore.errors import ConfigError, FailedPrecondition, InvalidArgument, PluginError
from jsxcore.hookspecs import Amount, Beneficiary, CadenceTarget, PluginMeta, hookimpl
from jsxcore.plugins import BUILTIN, PluginHost, register_cli
from jsxcore.testing.conformance import check_plugin
from jsxcore.values import Money, Period, RegionCode

HONGJIANG_VILLAGE = "431281101201"  # a village under 洪江市
YUANLING = "431222"


def person(
    region: str, situation: str = "SPECIAL_BEREAVED", born: date | None = date(1962, 3, 1), **attrs: str
) -> Beneficiary:
    return Beneficiary("P1", "H1", RegionCode.parse(region), situation, birth_date=born, attributes=attrs)


def amount(
    host: PluginHost, region: str, period: Period, situation: str = "SPECIAL_BEREAVED", program: str = "SPECIAL_SUPPORT"
):
    return host.call(
        "jsx_entitlement_amount",
        region,
        program_type=program,
        beneficiary=person(region, situation),
        period=period,
        context={},
    )


@pytest.fixture
def host() -> PluginHost:
    h = PluginHost(timeout_ms=1000)
    h.discover()
    return h


def test_discovers_installed_plugins_through_entry_points(host: PluginHost) -> None:
    names = [i.name for i in host.list_plugins()]
    assert {"hunan", "hongjiang"} <= set(names)
    assert names == sorted(names)
    hj = next(i for i in host.list_plugins() if i.name == "hongjiang")
    assert hj.distribution == "jsx-plugin-hongjiang" and hj.regions == ("431281",) and hj.enabled
    assert "jsx_entitlement_amount" in hj.hooks and "jsx_approval_chain" not in hj.hooks


def test_hongjiang_village_gets_940_580_with_provenance(host: PluginHost) -> None:
    d = amount(host, HONGJIANG_VILLAGE, Period.month(2022, 8))
    assert d.value.amount == Money.yuan(940)
    assert (d.plugin, d.plugin_version, d.hook) == ("hongjiang", "0.1.0", "jsx_entitlement_amount")
    assert d.region == RegionCode.parse("431281")
    assert any("940 元/人/月" in b for b in d.value.basis)
    assert amount(host, HONGJIANG_VILLAGE, Period.month(2022, 8), "SPECIAL_DISABLED").value.amount == Money.yuan(580)
    # a year is twelve months at the rule in force on each 1st
    assert amount(host, HONGJIANG_VILLAGE, Period.year_of(2022)).value.amount == Money.yuan(940 * 12)


def test_hongjiang_eligibility_falls_through_to_province(host: PluginHost) -> None:
    d = host.call(
        "jsx_program_eligibility",
        HONGJIANG_VILLAGE,
        program_type="SPECIAL_SUPPORT",
        beneficiary=person(HONGJIANG_VILLAGE, born=date(1980, 1, 1)),
        period=Period.month(2022, 8),
        context={},
    )
    assert d.plugin == "hunan" and d.region == RegionCode.parse("430000")
    assert d.value.eligible is False and any("49" in r for r in d.value.reasons)


def test_yuanling_gets_national_floor(host: PluginHost) -> None:
    d = amount(host, YUANLING, Period.month(2022, 8))
    assert (d.value.amount, d.plugin, d.region) == (Money.yuan(590), "hunan", RegionCode.parse("430000"))
    assert d.value.basis == ("国家标准 590 元/人/月（2022-07-01 起）",)
    assert amount(host, YUANLING, Period.month(2022, 8), "SPECIAL_DISABLED").value.amount == Money.yuan(460)


def test_period_before_earliest_rule_is_refused_clearly(host: PluginHost) -> None:
    with pytest.raises(InvalidArgument) as e:
        amount(host, YUANLING, Period.month(2022, 6))
    assert e.value.reason == "NO_RULE_FOR_PERIOD" and "2022-07-01" in e.value.message
    assert e.value.metadata["plugin"] == "hunan"
    # 2022 as a whole reaches back before 2022-07-01 too
    with pytest.raises(InvalidArgument):
        amount(host, YUANLING, Period.year_of(2022))


def test_health_insurance_and_defaults(host: PluginHost) -> None:
    d = amount(host, HONGJIANG_VILLAGE, Period.year_of(2022), program="HEALTH_INSURANCE")
    assert d.value.amount == Money.yuan(150) and d.plugin == "hongjiang"
    with pytest.raises(InvalidArgument) as e:
        amount(host, HONGJIANG_VILLAGE, Period.month(2022, 8), program="HEALTH_INSURANCE")
    assert e.value.reason == "PERIOD_KIND"
    chain = host.call("jsx_approval_chain", HONGJIANG_VILLAGE, program_type="SANJIEHE", amount=Money.yuan(1000))
    assert chain.value.steps[-1] == "PROVINCE" and chain.plugin == "hunan"
    pub = host.call("jsx_publicity_rule", HONGJIANG_VILLAGE, program_type="SPECIAL_SUPPORT")
    assert (pub.plugin, pub.region, pub.value.days) == (BUILTIN, None, 7)


def test_no_rule_anywhere_is_a_clear_error(host: PluginHost) -> None:
    with pytest.raises(FailedPrecondition) as e:
        host.call("jsx_fund_allowed_uses", "440000", fund_kind="HAPPINESS_FUND")
    assert e.value.reason == "NO_RULE" and "基金用途" in e.value.message


def test_enablement_from_config_mapping() -> None:
    only_province = PluginHost({"hunan": ["430000"]})
    only_province.discover()
    only_province.validate_config()
    assert amount(only_province, HONGJIANG_VILLAGE, Period.month(2022, 8)).value.amount == Money.yuan(590)
    assert not next(i for i in only_province.list_plugins() if i.name == "hongjiang").enabled
    # enabling a county plugin only for one township of it
    township = PluginHost({"hunan": ["430000"], "hongjiang": ["431281101"]})
    township.discover()
    assert amount(township, HONGJIANG_VILLAGE, Period.month(2022, 8)).plugin == "hongjiang"
    assert amount(township, "431281102001", Period.month(2022, 8)).plugin == "hunan"
    assert [i.name for i in township.list_plugins("431281102001")] == ["hunan"]
    with pytest.raises(ConfigError, match="不能在地区 431222 启用"):
        PluginHost({"hongjiang": ["431222"]}).discover()
    bad = PluginHost({"nosuch": ["431281"]})
    bad.discover()
    with pytest.raises(ConfigError, match="nosuch"):
        bad.validate_config()
    cfg = types.SimpleNamespace(plugins={"hunan": ["430000"]}, plugin_timeout_ms=500)
    assert PluginHost.from_config(cfg).timeout_ms == 500


# -- misbehaving plugins -----------------------------------------------------


def _plugin(name: str, **hooks: object) -> types.ModuleType:
    module = types.ModuleType(f"jsx_plugin_{name}")  # plugins are modules in real life
    module.JSX_PLUGIN = PluginMeta(name, "0.0.1", ("431281",), "测试插件")  # type: ignore[attr-defined]  # a plugin module built at run time
    vars(module).update(hooks)
    return module


@hookimpl
def _raises(program_type, beneficiary, period, context):
    raise ZeroDivisionError("division by zero")


@hookimpl
def _wrong_type(program_type, beneficiary, period, context):
    return 940  # an int, not Amount


@hookimpl
def _sleeps(program_type, beneficiary, period, context):
    time.sleep(3)
    return Amount(Money(1), ("测试",))


@hookimpl
def _fine(program_type, period):
    return Amount(Money.yuan(1), ("测试标准 1 元",)) if program_type == "WARM_HEART" else None


@pytest.mark.parametrize(
    ("impl", "reason", "words"),
    [
        (_raises, "PLUGIN_FAILED", "ZeroDivisionError"),
        (_wrong_type, "PLUGIN_BAD_RESULT", "返回值类型"),
        (_sleeps, "PLUGIN_TIMEOUT", "毫秒"),
    ],
)
async def test_misbehaving_plugin_fails_only_that_call(impl, reason, words, caplog: pytest.LogCaptureFixture) -> None:
    host = PluginHost({"hunan": ["430000"], "bad": ["431281"]}, timeout_ms=300)
    host.discover()
    host.register(_plugin("bad", jsx_entitlement_amount=impl))
    with caplog.at_level(logging.ERROR, logger="jsx.plugins"), pytest.raises(PluginError) as e:
        await host.acall(
            "jsx_entitlement_amount",
            HONGJIANG_VILLAGE,
            program_type="SPECIAL_SUPPORT",
            beneficiary=person(HONGJIANG_VILLAGE),
            period=Period.month(2022, 8),
            context={},
        )
    err = e.value
    assert err.reason == reason and words in err.message
    assert err.message.startswith("规则插件 bad 0.0.1 在 jsx_entitlement_amount 中出错") and "系统管理员" in err.message
    assert err.metadata == {"plugin": "bad", "version": "0.0.1", "hook": "jsx_entitlement_amount"}
    assert any("bad" in r.getMessage() for r in caplog.records)
    if reason == "PLUGIN_FAILED":
        assert caplog.records[-1].exc_info is not None  # traceback logged
    # the host keeps serving: other hooks and other regions still answer
    assert amount(host, YUANLING, Period.month(2022, 8)).value.amount == Money.yuan(590)
    ok = await host.acall("jsx_approval_chain", HONGJIANG_VILLAGE, program_type="SPECIAL_SUPPORT", amount=Money(1))
    assert ok.plugin == "hunan"


def test_conformance_kit_flags_bad_plugins() -> None:
    assert check_plugin(_plugin("bad", jsx_entitlement_amount=_raises))
    assert check_plugin(_plugin("bad", jsx_entitlement_amount=_wrong_type))
    unknown = check_plugin(_plugin("bad", jsx_no_such_hook=_raises))
    assert any("jsx_no_such_hook" in p for p in unknown)
    no_meta = _plugin("bad", jsx_entitlement_amount=_raises)
    del no_meta.JSX_PLUGIN
    assert "JSX_PLUGIN" in check_plugin(no_meta)[0]
    bad_meta = _plugin("bad")
    bad_meta.JSX_PLUGIN = PluginMeta("Bad", "1.0", ("12",), "")  # type: ignore[attr-defined]  # a plugin module built at run time
    assert len(check_plugin(bad_meta)) >= 3
    assert check_plugin(_plugin("fine", jsx_entitlement_amount=_fine)) == []


@hookimpl
def _unworded_targets(region, year):
    return (
        CadenceTarget("t1", "SPECIAL_FAMILY", "CARE_VISIT", 3, "YEAR", "特殊家庭每年走访 3 次"),
        CadenceTarget("t1", "VILLAGE", "COUNCIL_MEETING", 1, "YEAR", "council meeting"),
    )


@hookimpl
def _misscoped_targets(region, year):
    return (CadenceTarget("t2", "SPECIAL_FAMILIES", "CARE_VISIT", 3, "YEAR", "特殊家庭每年走访 3 次"),)  # type: ignore[arg-type]  # the mistake the kit must catch


def test_conformance_kit_checks_cadence_targets() -> None:
    text = "\n".join(check_plugin(_plugin("targets", jsx_cadence_targets=_unworded_targets)))
    assert "目标 t1 的 description 须用中文" in text and "key“t1”重复" in text
    assert "SPECIAL_FAMILIES" in "\n".join(check_plugin(_plugin("targets", jsx_cadence_targets=_misscoped_targets)))
    assert check_plugin(_plugin("targets", jsx_cadence_targets=lambda region, year: ())) != []  # not a @hookimpl
    with pytest.raises(ValueError, match="site_kind"):
        CadenceTarget("c", "ADMIN_VILLAGE", "SITE", 1, "YEAR", "每个行政村建有会员之家")  # no site kind


def test_plugins_list_cli(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="jsx")
    register_cli(parser.add_subparsers())

    def run(*argv: str) -> int:
        args = parser.parse_args(list(argv))
        return args.func(args)

    assert run("plugins", "list", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert by_name["hongjiang"]["version"] == "0.1.0" and by_name["hongjiang"]["regions"] == ["431281"]
    assert set(by_name["hunan"]) >= {"name", "version", "regions", "hooks", "description", "enabled"}
    assert run("plugins", "list", "--region", "431222", "--all", "--json") == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)][-1] == BUILTIN
    assert run("plugins", "list") == 0
    assert "hongjiang 0.1.0" in capsys.readouterr().out


def test_city_and_county_tables(host: PluginHost) -> None:
    # 沅陵 village: the county's own targets plus the city's 暖心家园 ones
    t = host.call("jsx_cadence_targets", "431222101001", year=2022)
    assert t.plugin == "yuanling"
    by_key = {c.key: c for c in t.value}
    lecture = by_key["yuanling.village.health_lecture"]
    assert (lecture.scope, lecture.activity_type, lecture.count, lecture.per) == (
        "VILLAGE",
        "HEALTH_LECTURE",
        2,
        "YEAR",
    )
    assert by_key["yuanling.school.youth_health"].per == "SEMESTER"
    assert by_key["huaihua.warm_home.visit"].per == "QUARTER"
    # 洪江 has its own cadence targets since its seed report's were encoded; the city's
    # 暖心家园 ones are part of its answer (it used to fall through to huaihua)
    hj = host.call("jsx_cadence_targets", HONGJIANG_VILLAGE, year=2022)
    assert hj.plugin == "hongjiang"
    assert {"hongjiang.special_family.visits", "huaihua.warm_home.visit"} <= {c.key for c in hj.value}
    uses = host.call("jsx_fund_allowed_uses", "431224101001", fund_kind="HAPPINESS_FUND")
    assert uses.plugin == "xupu" and uses.value.uses == (
        "尊老爱幼",
        "生育关怀",
        "文体公益",
        "奖学助学",
        "扶贫帮困",
        "村民慰问",
    )
    types_ = host.call("jsx_activity_types", "431222").value
    assert "HAPPY_FAMILY_AWARD" in {a.code for a in types_}
    assert host.call("jsx_activity_types", "431224").plugin == BUILTIN
    ins = amount(host, "431222101001", Period.year_of(2022), program="HEALTH_INSURANCE")
    assert (ins.value.amount, ins.plugin) == (Money.yuan(150), "yuanling")


# -- pairing rules (since 0.3) -------------------------------------------------


def test_pairing_rules_default_is_one_to_one_and_hongjiang_lets_a_member_keep_several(host: PluginHost) -> None:
    from jsxcore.hookspecs import PairingRules

    d = host.call("jsx_pairing_rules", YUANLING + "101201", kind="MEMBER_CONTACT", on=date(2022, 5, 1))
    assert d.plugin == BUILTIN and d.region is None
    assert (d.value.max_households_per_volunteer, d.value.special_families_only) == (1, True) and d.value.one_to_one
    assert "1 名志愿者联系 1 名计生特殊家庭" in d.value.basis[0]
    hj = host.call("jsx_pairing_rules", HONGJIANG_VILLAGE, kind="MEMBER_CONTACT", on=date(2022, 5, 1))
    assert (hj.plugin, hj.region) == ("hongjiang", RegionCode.parse("431281"))
    assert hj.value.max_households_per_volunteer == 10 and not hj.value.special_families_only
    assert any("16716" in b for b in hj.value.basis) and any("假定" in b for b in hj.value.basis)
    # 双岗联系人, and 会员联系户 before the reform, keep the default
    assert host.call("jsx_pairing_rules", HONGJIANG_VILLAGE, kind="DUAL_CONTACT", on=date(2022, 5, 1)).plugin == BUILTIN
    assert (
        host.call("jsx_pairing_rules", HONGJIANG_VILLAGE, kind="MEMBER_CONTACT", on=date(2020, 5, 1)).plugin == BUILTIN
    )
    for bad in (0, 101, True):
        with pytest.raises(ValueError):
            PairingRules(bad, True, ("测试",))
    with pytest.raises(ValueError):
        PairingRules(2, True, ("no chinese",))


@hookimpl
def _dual_for_anyone(kind, region, on):
    from jsxcore.hookspecs import PairingRules

    return PairingRules(3, False, ("测试规则：任何家庭都可结对",))


def test_conformance_kit_holds_dual_contacts_to_special_families() -> None:
    problems = check_plugin(_plugin("loose", jsx_pairing_rules=_dual_for_anyone))
    assert problems and all("双岗联系人只为计生特殊家庭设立" in p for p in problems)
