"""湖南 baseline rules called directly (plain data in, plain data out)."""

from datetime import date
from typing import Any

import pytest

import jsx_plugin_hunan as hunan
from jsxcore.errors import FailedPrecondition, InvalidArgument
from jsxcore.hookspecs import Amount, Beneficiary
from jsxcore.values import Money, Period, RegionCode

AUG = Period.month(2022, 8)


def beneficiary(situation="SPECIAL_DISABLED", born=date(1973, 8, 1), **attrs):
    return Beneficiary("P", "H", RegionCode.parse("431222"), situation, birth_date=born, attributes=attrs)


def _amount(*args: Any) -> Amount:
    """jsx_entitlement_amount for an input that has an amount."""
    a = hunan.jsx_entitlement_amount(*args)
    assert a is not None
    return a


def eligible(b, period=AUG):
    return hunan.jsx_program_eligibility("SPECIAL_SUPPORT", b, period, {})


def test_age_49_on_the_first_of_the_month() -> None:
    assert eligible(beneficiary(child_disability_grade="3")).eligible  # 49 on 2022-08-01
    e = eligible(beneficiary(born=date(1973, 8, 2), child_disability_grade="3"))
    assert not e.eligible and any("未满 49 周岁" in r for r in e.reasons)
    assert not eligible(beneficiary(born=None, child_disability_grade="1")).eligible


def test_disability_grade_and_living_child() -> None:
    e = eligible(beneficiary(child_disability_grade="4"))
    assert not e.eligible and any("三级以上" in r for r in e.reasons)
    assert not eligible(beneficiary()).eligible  # grade missing: ask for the certificate
    assert not eligible(beneficiary("SPECIAL_BEREAVED", has_living_child="true")).eligible
    assert not eligible(beneficiary("ONLY_CHILD")).eligible


def test_amounts_by_month_and_refusals() -> None:
    a = _amount("SPECIAL_SUPPORT", beneficiary("SPECIAL_BEREAVED"), Period.quarter(2022, 3), {})
    assert a.amount == Money.yuan(590 * 3) and a.basis == ("国家标准 590 元/人/月（2022-07-01 起） × 3 个月",)
    with pytest.raises(InvalidArgument, match="2022-07-01"):
        hunan.jsx_entitlement_amount("SPECIAL_SUPPORT", beneficiary(), Period.quarter(2022, 2), {})
    with pytest.raises(FailedPrecondition):
        hunan.jsx_entitlement_amount("SPECIAL_SUPPORT", beneficiary("ONLY_CHILD"), AUG, {})
    assert hunan.jsx_entitlement_amount("GOLDEN_AUTUMN", beneficiary(), AUG, {}) is None


# -- the 2014–2022 national standard (城镇/农村 differ) --------------------------


def _ben_hukou(situation: str, hukou: str | None):
    from jsxcore.hookspecs import Beneficiary
    from jsxcore.values import RegionCode

    attrs = {"hukou_type": hukou} if hukou else {}
    return Beneficiary("p1", "h1", RegionCode.parse("431222"), situation, birth_date=None, attributes=attrs)


def test_before_2022_07_the_urban_and_rural_standards_differ() -> None:
    from jsxcore.values import Money, Period

    f = _amount
    june = Period.month(2022, 6)
    assert f("SPECIAL_SUPPORT", _ben_hukou("SPECIAL_BEREAVED", "农村"), june, {}).amount == Money.yuan(170)
    assert f("SPECIAL_SUPPORT", _ben_hukou("SPECIAL_BEREAVED", "URBAN"), june, {}).amount == Money.yuan(340)
    assert f("SPECIAL_SUPPORT", _ben_hukou("SPECIAL_DISABLED", "RURAL"), june, {}).amount == Money.yuan(150)
    assert f("SPECIAL_SUPPORT", _ben_hukou("SPECIAL_DISABLED", "城镇"), june, {}).amount == Money.yuan(270)
    # a year straddling the change: each month at the rule in force on its 1st
    year = f("SPECIAL_SUPPORT", _ben_hukou("SPECIAL_BEREAVED", "RURAL"), Period.year_of(2022), {})
    assert year.amount == Money.yuan(6 * 170 + 6 * 590)
    assert any("2014-01-01" in b for b in year.basis) and any("2022-07-01" in b for b in year.basis)


def test_without_hukou_only_the_unified_rule_applies_and_earlier_months_ask_for_it() -> None:
    import pytest

    from jsxcore.errors import InvalidArgument
    from jsxcore.values import Money, Period

    f = _amount
    assert f("SPECIAL_SUPPORT", _ben_hukou("SPECIAL_BEREAVED", None), Period.month(2022, 8), {}).amount == Money.yuan(
        590
    )
    with pytest.raises(InvalidArgument) as e:
        f("SPECIAL_SUPPORT", _ben_hukou("SPECIAL_BEREAVED", None), Period.month(2022, 6), {})
    assert e.value.reason == "NO_RULE_FOR_PERIOD" and "户籍类型" in e.value.message


def test_before_2014_is_refused_not_guessed() -> None:
    import pytest

    import jsx_plugin_hunan as hunan
    from jsxcore.errors import InvalidArgument
    from jsxcore.values import Period

    with pytest.raises(InvalidArgument) as e:
        hunan.jsx_entitlement_amount(
            "SPECIAL_SUPPORT", _ben_hukou("SPECIAL_BEREAVED", "RURAL"), Period.month(2013, 12), {}
        )
    assert e.value.reason == "NO_RULE_FOR_PERIOD" and "2014-01-01" in e.value.message
