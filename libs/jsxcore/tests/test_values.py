from __future__ import annotations

import pickle
from datetime import date, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jsxcore.errors import InvalidArgument
from jsxcore.values import (
    REGION_NAMES,
    IdNumber,
    Money,
    Period,
    PeriodKind,
    RegionCode,
    RegionLevel,
    Sex,
    id_check_char,
)

fens = st.integers(min_value=-(10**15), max_value=10**15)


# ---------------------------------------------------------------- Money


def test_money_constructor_rejects_non_integers() -> None:
    with pytest.raises(TypeError):
        Money(1.5)  # type: ignore[arg-type]  # wrong on purpose: must raise
    with pytest.raises(TypeError):
        Money(True)
    with pytest.raises(TypeError):
        Money("100")  # type: ignore[arg-type]  # wrong on purpose: must raise
    with pytest.raises(ValueError):
        Money(Decimal("1.5"))  # type: ignore[arg-type]  # wrong on purpose: must raise
    assert Money(Decimal("12")).fen == 12  # type: ignore[arg-type]  # a whole Decimal is accepted too
    assert type(Money(Decimal("12")).fen) is int  # type: ignore[arg-type]  # a whole Decimal is accepted too
    with pytest.raises(ValueError):
        Money(2**63)


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("940", 94000),
        ("940.5", 94050),
        ("0.01", 1),
        (".5", 50),
        ("-3.20", -320),
        ("¥1,234.56", 123456),
        ("１２元", 1200),
        ("  7 ", 700),
        ("+1", 100),
    ],
)
def test_yuan_parses(text: str, fen: int) -> None:
    assert Money.yuan(text).fen == fen


def test_yuan_int_and_decimal() -> None:
    assert Money.yuan(940).fen == 94000
    assert Money.yuan(Decimal("0.10")).fen == 10
    assert Money.yuan(Decimal("5E+1")).fen == 5000


@pytest.mark.parametrize("text", ["1.234", "abc", "", "1.2.3", "--1", "1e3", "NaN"])
def test_yuan_rejects_bad_text(text: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        Money.yuan(text, field="rows[3].金额")
    assert e.value.reason == "INVALID_AMOUNT"
    assert e.value.violations[0].field == "rows[3].金额"


def test_yuan_rejects_float_and_bad_decimal() -> None:
    with pytest.raises(TypeError):
        Money.yuan(940.5)  # type: ignore[arg-type]  # wrong on purpose: must raise
    with pytest.raises(InvalidArgument, match="两位小数"):
        Money.yuan(Decimal("0.001"))
    with pytest.raises(InvalidArgument):
        Money.yuan(Decimal("Infinity"))


def test_money_arithmetic_and_formatting() -> None:
    a, b = Money.yuan("940"), Money.yuan("580")
    assert a + b == Money(152000)
    assert b - a == Money(-36000) and (b - a).is_negative
    assert a * 3 == 3 * a == Money(282000)
    assert -a == Money(-94000)
    assert abs(Money(-5)) == Money(5)
    assert not Money.zero() and Money(1)
    assert a > b and b < a and a >= a
    assert str(a) == "¥940.00" and str(Money(-1)) == "-¥0.01"
    assert a.format_yuan() == "940.00" and Money(-150).format_yuan() == "-1.50"
    assert a.to_decimal() == Decimal("940.00") and str(Money(5).to_decimal()) == "0.05"
    assert sum([a, b, Money(1)], Money.zero()) == Money(152001)
    assert len({Money(1), Money(1), Money(2)}) == 2
    with pytest.raises(TypeError):
        a + 1
    with pytest.raises(TypeError):
        a * 1.5
    with pytest.raises(TypeError):
        a < 5  # type: ignore[operator]  # noqa: B015  (wrong on purpose: the comparison itself must raise)


def test_mul_ratio_rounding_modes() -> None:
    assert Money(5).mul_ratio(1, 2) == Money(3)  # half up
    assert Money(5).mul_ratio(1, 2, ROUND_HALF_EVEN) == Money(2)
    assert Money(-5).mul_ratio(1, 2) == Money(-3)  # half away from zero
    assert Money(100).mul_ratio(1, 3) == Money(33)
    assert Money(200).mul_ratio(1, 3) == Money(67)
    assert Money(200).mul_ratio(1, 3, ROUND_DOWN) == Money(66)
    assert Money(100).mul_ratio(1, 3, ROUND_UP) == Money(34)
    assert Money(100).mul_ratio(-1, 3) == Money(-33)
    with pytest.raises(ZeroDivisionError):
        Money(1).mul_ratio(1, 0)
    with pytest.raises(TypeError):
        Money(1).mul_ratio(0.5, 1)  # type: ignore[arg-type]  # wrong on purpose: must raise


@given(fens, st.integers(-1000, 1000), st.integers(1, 1000).flatmap(lambda d: st.sampled_from([d, -d])))
def test_mul_ratio_matches_exact_half_up(fen: int, num: int, den: int) -> None:
    exact = Fraction(fen * num, den)
    # half away from zero, computed independently on the exact fraction
    mag = abs(exact)
    expected = int(mag) + (1 if mag - int(mag) >= Fraction(1, 2) else 0)
    expected = -expected if exact < 0 else expected
    assert Money(fen).mul_ratio(num, den).fen == expected


@given(fens, fens)
def test_money_group_laws(a: int, b: int) -> None:
    ma, mb = Money(a), Money(b)
    assert ma + mb - mb == ma
    assert ma + mb == mb + ma
    assert (ma < mb) == (a < b)


@given(fens)
def test_money_yuan_round_trip(fen: int) -> None:
    m = Money(fen)
    assert Money.yuan(m.format_yuan()) == m
    assert Money.yuan(m.to_decimal()) == m
    assert Money.yuan(str(m).replace("¥", "")) == m


# ---------------------------------------------------------------- RegionCode


def test_region_parse_and_levels() -> None:
    assert RegionCode.parse("430000").code == "430000000000"
    assert RegionCode.parse(" 431281 ").level is RegionLevel.COUNTY
    cases = {
        "430000": RegionLevel.PROVINCE,
        "431200": RegionLevel.CITY,
        "431281": RegionLevel.COUNTY,
        "431281101": RegionLevel.TOWNSHIP,
        "431281101201": RegionLevel.VILLAGE,
    }
    for text, level in cases.items():
        assert RegionCode.parse(text).level is level
    assert RegionLevel.COUNTY.label == "县" and RegionLevel.VILLAGE > RegionLevel.COUNTY


@pytest.mark.parametrize("text", ["43", "4312811", "43128110120", "4312811012011", "43a000", "000000", ""])
def test_region_parse_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        RegionCode.parse(text)
    assert e.value.reason == "INVALID_REGION_CODE" and "行政区划代码" in e.value.message


def test_region_constructor_requires_12_digits() -> None:
    with pytest.raises(InvalidArgument):
        RegionCode("431281")


def test_region_hierarchy() -> None:
    village = RegionCode.parse("431281101201")
    assert [r.short for r in village.ancestors()] == ["431281101201", "431281101", "431281", "431200", "430000"]
    assert RegionCode.parse("430000").parent is None
    county = RegionCode.parse("431281")
    assert county.contains(village) and county.contains(county)
    assert RegionCode.parse("430000").contains(village)
    assert not village.contains(county)
    assert not RegionCode.parse("431222").contains(village)
    assert not RegionCode.parse("431200").contains(RegionCode.parse("440100"))
    assert str(county) == "431281000000"
    assert (county.prefix, village.prefix, RegionCode.parse("430000").prefix) == ("431281", "431281101201", "43")


def test_region_names_and_ordering() -> None:
    assert RegionCode.parse("431281").name == "洪江市"
    assert RegionCode.parse("431222").name == "沅陵县"
    assert RegionCode.parse("431224").name == "溆浦县"
    assert RegionCode.parse("431200").name == "怀化市"
    assert RegionCode.parse("430000").name == "湖南省"
    assert RegionCode.parse("431281101").name is None
    assert REGION_NAMES["431281"] == REGION_NAMES["431281000000"] == REGION_NAMES[RegionCode.parse("431281")]
    assert "999999" not in REGION_NAMES and "bad" not in REGION_NAMES and len(REGION_NAMES) == 5
    codes = [RegionCode.parse(c) for c in ("431281", "430000", "431222")]
    assert [c.short for c in sorted(codes)] == ["430000", "431222", "431281"]
    assert len({RegionCode.parse("431281"), RegionCode.parse("431281000000")}) == 1


@given(st.from_regex(r"[1-9][0-9]{11}", fullmatch=True))
def test_region_ancestors_contain_self(code: str) -> None:
    r = RegionCode(code)
    chain = r.ancestors()
    assert chain[0] == r and chain[-1].level is RegionLevel.PROVINCE
    assert all(a.contains(r) for a in chain)
    assert [a.level for a in chain] == sorted((a.level for a in chain), reverse=True)
    assert RegionCode.parse(r.short) == r


# ---------------------------------------------------------------- IdNumber

VALID = "11010519491231002X"


def test_id_known_valid_and_properties() -> None:
    idn = IdNumber.parse(" 110105 19491231 002x ")
    assert idn.value == VALID and idn == IdNumber(VALID)
    assert idn.birth_date == date(1949, 12, 31)
    assert idn.sex is Sex.FEMALE and idn.sex == "女"
    assert idn.region_prefix == "110105"
    assert idn.age_on(date(2022, 12, 30)) == 72 and idn.age_on(date(2022, 12, 31)) == 73
    assert idn.masked == "1101**********002X"
    assert str(idn) == repr(idn) == f"{idn}" == "1101**********002X"
    assert "19491231" not in repr([idn]) and "19491231" not in str({"p": idn})
    assert hash(idn) == hash(IdNumber(VALID))


def test_id_fullwidth_input() -> None:
    assert IdNumber.parse("１１０１０５１９４９１２３１００２ｘ").value == VALID


@pytest.mark.parametrize(
    ("text", "reason", "words"),
    [
        ("130402198207290622", "ID_NUMBER_CHECKSUM", "校验位错误"),
        ("11010519491231002", "ID_NUMBER_LENGTH", "18位"),
        ("110105194912310", "ID_NUMBER_LENGTH", "15位旧证"),
        ("1101051949123100XX", "ID_NUMBER_FORMAT", "前17位"),
        ("110105194902300021", "ID_NUMBER_BIRTH_DATE", "出生日期"),
        ("110105180001010021", "ID_NUMBER_BIRTH_DATE", "1900"),
        ("", "ID_NUMBER_REQUIRED", "请填写"),
    ],
)
def test_id_rejects(text: str, reason: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        IdNumber.parse(text, field="person.id_number")
    assert e.value.reason == reason and words in e.value.message
    assert e.value.violations[0].field == "person.id_number"
    if text:
        assert text not in e.value.message  # never echo the number


def test_id_future_birth_date_rejected() -> None:
    tomorrow = date.today() + timedelta(days=1)
    body = "430000" + tomorrow.strftime("%Y%m%d") + "001"
    with pytest.raises(InvalidArgument, match="晚于今天"):
        IdNumber.parse(body + id_check_char(body))
    body = "430000" + "20220810" + "001"
    with pytest.raises(InvalidArgument, match="晚于今天"):
        IdNumber.parse(body + id_check_char(body), today=date(2022, 8, 9))
    assert IdNumber.parse(body + id_check_char(body), today=date(2022, 8, 10)).sex is Sex.MALE


def test_id_constructor_validates() -> None:
    with pytest.raises(InvalidArgument):
        IdNumber("130402198207290622")


@given(
    st.from_regex(r"[1-6][0-9]{5}", fullmatch=True),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2020, 12, 31)),
    st.from_regex(r"[0-9]{3}", fullmatch=True),
    st.integers(0, 16),
    st.integers(1, 9),
)
def test_id_checksum_detects_single_digit_change(prefix: str, born: date, seq: str, pos: int, delta: int) -> None:
    body = prefix + born.strftime("%Y%m%d") + seq
    idn = IdNumber.parse(body + id_check_char(body))
    assert idn.birth_date == born
    assert idn.sex is (Sex.MALE if int(seq[-1]) % 2 else Sex.FEMALE)
    changed = body[:pos] + str((int(body[pos]) + delta) % 10) + body[pos + 1 :]
    with pytest.raises(InvalidArgument):
        IdNumber.parse(changed + idn.value[17])


# ---------------------------------------------------------------- Period


def test_period_constructors_and_str() -> None:
    assert str(Period.month(2022, 8)) == "2022-08"
    assert str(Period.quarter(2022, 3)) == "2022Q3"
    assert str(Period.year(2022)) == "2022"
    assert Period.year(2022).year == 2022 and Period.year(2022).kind is PeriodKind.YEAR
    assert Period.month(2022, 8).year == 2022 and Period.month(2022, 8).number == 8
    for text in ("2022-08", "2022Q3", "2022"):
        assert str(Period.parse(text)) == text
    assert Period.parse("2022年8月") == Period.parse("2022-8") == Period.month(2022, 8)
    assert Period.parse("2022年第3季度") == Period.parse("2022q3") == Period.parse("2022-Q3") == Period.quarter(2022, 3)
    assert Period.parse("2022年") == Period.year(2022)
    assert repr(Period.quarter(2022, 3)) == "Period.parse('2022Q3')"


def test_period_half_year() -> None:
    h1, h2 = Period.half(2022, 1), Period.half(2022, 2)
    assert str(h1) == "2022H1" and h1.kind is PeriodKind.HALF and h1.year == 2022
    assert (
        Period.parse("2022-H1")
        == Period.parse("2022h1")
        == Period.parse("2022年上半年")
        == Period.parse("2022上半年")
        == h1
    )
    assert Period.parse("2022年下半年") == Period.parse("2022-H2") == h2
    assert (h1.start, h1.end, h2.start, h2.end) == (
        date(2022, 1, 1),
        date(2022, 6, 30),
        date(2022, 7, 1),
        date(2022, 12, 31),
    )
    assert [str(m) for m in h2.months()] == [f"2022-{m:02d}" for m in range(7, 13)]
    assert h1.contains(Period.quarter(2022, 2)) and not h1.contains(Period.quarter(2022, 3))
    assert Period.year(2022).contains(h2) and not h2.contains(Period.year(2022))
    assert h2.next() == Period.half(2023, 1) and h1.previous() == Period.half(2021, 2)
    assert Period.of(date(2022, 7, 1), PeriodKind.HALF) == h2 and Period.of(date(2022, 6, 30), "half") == h1
    assert sorted([Period.year(2022), h1, Period.quarter(2022, 1), Period.month(2022, 1)]) == [
        Period.month(2022, 1),
        Period.quarter(2022, 1),
        h1,
        Period.year(2022),
    ]
    with pytest.raises(InvalidArgument) as e:
        Period.parse("2022H3")
    assert e.value.reason == "INVALID_PERIOD" and "上半年" in e.value.message


@pytest.mark.parametrize(
    "text", ["2022-13", "2022-00", "2022Q5", "2022H0", "2022H3", "上半年", "22", "2022-08-01", "abc", "1899", ""]
)
def test_period_parse_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        Period.parse(text, field="period")
    assert e.value.reason == "INVALID_PERIOD" and "期间" in e.value.message


def test_period_bounds_and_membership() -> None:
    q3 = Period.quarter(2022, 3)
    assert (q3.start, q3.end) == (date(2022, 7, 1), date(2022, 9, 30))
    assert Period.month(2024, 2).end == date(2024, 2, 29)
    assert Period.year(2022).end == date(2022, 12, 31)
    assert q3.contains(date(2022, 9, 30)) and not q3.contains(date(2022, 10, 1))
    assert q3.contains(Period.month(2022, 8)) and not Period.month(2022, 8).contains(q3)
    assert [str(p) for p in q3.months()] == ["2022-07", "2022-08", "2022-09"]
    assert len(list(Period.year(2022).months())) == 12
    assert Period.of_month(date(2022, 8, 15)) == Period.month(2022, 8)
    assert Period.of(date(2022, 8, 15), PeriodKind.QUARTER) == q3
    assert Period.month(2022, 12).next() == Period.month(2023, 1)
    assert Period.quarter(2022, 1).previous() == Period.quarter(2021, 4)
    assert Period.year(2022).next() == Period.year(2023)


def test_period_is_immutable_hashable_ordered() -> None:
    p = Period.month(2022, 8)
    with pytest.raises(AttributeError):
        p.number = 9
    assert len({p, Period.parse("2022-08"), Period.year(2022)}) == 2
    assert pickle.loads(pickle.dumps(p)) == p
    assert sorted([Period.year(2022), Period.quarter(2022, 1), Period.month(2022, 1), Period.month(2021, 12)]) == [
        Period.month(2021, 12),
        Period.month(2022, 1),
        Period.quarter(2022, 1),
        Period.year(2022),
    ]
    assert Period.month(2022, 8) != Period.quarter(2022, 3)
    with pytest.raises(TypeError):
        Period.month(2022, True)


periods = st.one_of(
    st.builds(Period.month, st.integers(1900, 2999), st.integers(1, 12)),
    st.builds(Period.quarter, st.integers(1900, 2999), st.integers(1, 4)),
    st.builds(Period.half, st.integers(1900, 2999), st.integers(1, 2)),
    st.builds(Period.year, st.integers(1900, 2999)),
)


@given(periods)
def test_period_properties(p: Period) -> None:
    assert Period.parse(str(p)) == p
    months = list(p.months())
    assert months[0].start == p.start and months[-1].end == p.end
    assert all(p.contains(m) for m in months)
    assert len(months) == {PeriodKind.MONTH: 1, PeriodKind.QUARTER: 3, PeriodKind.HALF: 6, PeriodKind.YEAR: 12}[p.kind]
    if p.year < 2999:
        assert p.next().previous() == p and p < p.next() and p.next().start == p.end + timedelta(days=1)
    assert Period.of(p.start, p.kind) == p == Period.of(p.end, p.kind)
