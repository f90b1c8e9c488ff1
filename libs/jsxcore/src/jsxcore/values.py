"""Value objects shared by every service: Money, RegionCode, IdNumber, Period.

Pure Python, immutable and hashable. Parsing user input (``Money.yuan``,
``RegionCode.parse``, ``IdNumber.parse``, ``Period.parse``) raises
:class:`jsxcore.errors.InvalidArgument` with a Chinese message a clerk can act
on; misuse by code (a float where an int belongs) raises TypeError/ValueError.
"""

from __future__ import annotations

import calendar
import enum
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache, total_ordering
from typing import Any

from jsxcore.errors import InvalidArgument

__all__ = [
    "REGION_NAMES",
    "IdNumber",
    "Money",
    "Period",
    "PeriodKind",
    "RegionCode",
    "RegionLevel",
    "Sex",
]

# Amounts travel as int64 on the wire and BIGINT in the databases.
_INT64_MAX = 2**63 - 1


def _nfkc(s: str) -> str:
    # Excel exports and IMEs produce full-width digits/letters (１２Ｘ); fold them.
    return unicodedata.normalize("NFKC", s)


# ---------------------------------------------------------------- Money


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """An exact amount of money in integer 分 (fen). May be negative (reversals).

    >>> Money.yuan("940") + Money(50)
    Money(fen=94050)
    >>> Money.yuan("940.5").format_yuan()
    '940.50'
    """

    fen: int

    def __post_init__(self) -> None:
        fen: Any = self.fen
        if isinstance(fen, (bool, float)):
            raise TypeError(f"Money takes integer 分, not {type(fen).__name__}")
        if isinstance(fen, Decimal):
            if not fen.is_finite() or fen != fen.to_integral_value():
                raise ValueError(f"Money takes whole 分; {fen} has a fraction of a 分")
            object.__setattr__(self, "fen", int(fen))
        elif not isinstance(fen, int):
            raise TypeError(f"Money takes integer 分, not {type(fen).__name__}")
        if abs(self.fen) > _INT64_MAX:
            raise ValueError("Money amount out of int64 range")

    @classmethod
    def zero(cls) -> Money:
        return cls(0)

    @classmethod
    def yuan(cls, amount: int | str | Decimal, *, field: str = "amount") -> Money:
        """Parse an amount in 元: ``940``, ``"940.5"``, ``"0.01"``, ``Decimal("12.30")``.

        Strings may carry ``¥``/``￥``, a trailing ``元`` and thousands commas
        (as Excel shows them). More than two decimals, floats, NaN → error.
        """
        if isinstance(amount, (bool, float)):
            raise TypeError("Money.yuan does not take float/bool; pass a str or Decimal")
        if isinstance(amount, int):
            return cls(amount * 100)
        if isinstance(amount, str):
            text = _nfkc(amount).strip().replace(",", "").replace(" ", "")
            text = text.removesuffix("元")
            sign = ""
            if text and text[0] in "+-":
                sign, text = text[0], text[1:]
            text = text.removeprefix("¥")
            if not re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", text):
                raise InvalidArgument.field(
                    field, f"金额“{amount}”格式不对，请填写数字，例如 940 或 940.50", reason="INVALID_AMOUNT"
                )
            value = Decimal(sign + text)
        elif isinstance(amount, Decimal):
            value = amount
        else:
            raise TypeError(f"Money.yuan takes int, str or Decimal, not {type(amount).__name__}")
        if not value.is_finite():
            raise InvalidArgument.field(field, "金额必须是有限的数字", reason="INVALID_AMOUNT")
        try:
            fen = value.scaleb(2)
            if fen != fen.to_integral_value():
                raise InvalidArgument.field(
                    field, f"金额“{amount}”最多只能有两位小数（精确到分）", reason="INVALID_AMOUNT"
                )
            return cls(int(fen))
        except (ValueError, InvalidOperation):
            raise InvalidArgument.field(field, f"金额“{amount}”超出允许范围", reason="INVALID_AMOUNT") from None

    # -- arithmetic
    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        return Money(self.fen + other.fen)

    def __sub__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        return Money(self.fen - other.fen)

    def __mul__(self, other: object) -> Money:
        if isinstance(other, bool) or not isinstance(other, int):
            return NotImplemented
        return Money(self.fen * other)

    __rmul__ = __mul__

    def __neg__(self) -> Money:
        return Money(-self.fen)

    def __abs__(self) -> Money:
        return Money(abs(self.fen))

    def __bool__(self) -> bool:
        return self.fen != 0

    @property
    def is_negative(self) -> bool:
        return self.fen < 0

    def mul_ratio(self, numerator: int, denominator: int, rounding: str = ROUND_HALF_UP) -> Money:
        """``self × numerator / denominator`` rounded to whole 分 (exactly, any Decimal rounding mode).

        Used for rates: a 50% interest subsidy is ``interest.mul_ratio(50, 100)``.
        """
        for n in (numerator, denominator):
            if isinstance(n, bool) or not isinstance(n, int):
                raise TypeError("mul_ratio takes int numerator and denominator")
        if denominator == 0:
            raise ZeroDivisionError("mul_ratio denominator is zero")
        product = self.fen * numerator
        negative = (product < 0) != (denominator < 0)
        q, r = divmod(abs(product), abs(denominator))
        # Rounding depends only on where r/d falls against ½, so a stand-in
        # fraction lets Decimal apply the chosen mode without inexact division.
        twice = 2 * r
        frac = "0" if r == 0 else "25" if twice < abs(denominator) else "5" if twice == abs(denominator) else "75"
        proxy = Decimal(f"{'-' if negative else ''}{q}.{frac}")
        return Money(int(proxy.quantize(Decimal(1), rounding=rounding)))

    # -- conversion
    def to_decimal(self) -> Decimal:
        """The amount in 元 as a Decimal with exactly two places."""
        return Decimal(self.fen).scaleb(-2)

    def format_yuan(self) -> str:
        """``"940.00"``; negative amounts get a leading ``-``."""
        return f"{self.to_decimal():.2f}"

    def __str__(self) -> str:
        return f"-¥{(-self).format_yuan()}" if self.fen < 0 else f"¥{self.format_yuan()}"


# ---------------------------------------------------------------- RegionCode


class RegionLevel(enum.IntEnum):
    """Administrative level; larger is lower (closer to the village)."""

    PROVINCE = 1
    CITY = 2
    COUNTY = 3
    TOWNSHIP = 4
    VILLAGE = 5

    @property
    def label(self) -> str:
        return _LEVEL_LABELS[self]


_LEVEL_LABELS = {
    RegionLevel.PROVINCE: "省",
    RegionLevel.CITY: "市",
    RegionLevel.COUNTY: "县",
    RegionLevel.TOWNSHIP: "乡",
    RegionLevel.VILLAGE: "村",
}
# Significant digits per level: 省 2, 市 4, 县 6, 乡 9, 村 12.
_PREFIX_LEN = {
    RegionLevel.PROVINCE: 2,
    RegionLevel.CITY: 4,
    RegionLevel.COUNTY: 6,
    RegionLevel.TOWNSHIP: 9,
    RegionLevel.VILLAGE: 12,
}


_REGION_RE = re.compile(r"[0-9]{12}")
_REGION_INPUT_RE = re.compile(r"[0-9]{6}|[0-9]{9}|[0-9]{12}")


@total_ordering
@dataclass(frozen=True, slots=True)
class RegionCode:
    """A 12-digit statistical division code (GB/T 2260 6 digits + 乡 3 + 村 3).

    ``RegionCode.parse("431281")`` → ``RegionCode('431281000000')`` (洪江市).
    The level comes from trailing zeros; 直辖 quirks are not modelled.
    """

    code: str

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _REGION_RE.fullmatch(self.code) or self.code.startswith("00"):
            raise InvalidArgument.field(
                "region_code", f"行政区划代码“{self.code}”无效，应为12位数字", reason="INVALID_REGION_CODE"
            )

    @classmethod
    def parse(cls, value: str | RegionCode, *, field: str = "region_code") -> RegionCode:
        """Accept 6, 9 or 12 digits (padded with zeros to 12)."""
        if isinstance(value, RegionCode):
            return value
        region = _parse_region(str(value))
        if region is None:
            raise InvalidArgument.field(
                field,
                f"行政区划代码“{value}”无效，应为6位（县级）、9位（乡级）或12位（村级）数字，例如 431281",
                reason="INVALID_REGION_CODE",
            )
        return region

    @property
    def level(self) -> RegionLevel:
        c = self.code
        if c[2:] == "0" * 10:
            return RegionLevel.PROVINCE
        if c[4:] == "0" * 8:
            return RegionLevel.CITY
        if c[6:] == "0" * 6:
            return RegionLevel.COUNTY
        if c[9:] == "000":
            return RegionLevel.TOWNSHIP
        return RegionLevel.VILLAGE

    @property
    def parent(self) -> RegionCode | None:
        """The next region up (None for a province)."""
        level = self.level
        if level is RegionLevel.PROVINCE:
            return None
        keep = _PREFIX_LEN[RegionLevel(level - 1)]
        return RegionCode(self.code[:keep].ljust(12, "0"))

    def ancestors(self) -> list[RegionCode]:
        """Self first, then each parent up to the province."""
        chain: list[RegionCode] = []
        node: RegionCode | None = self
        while node is not None:
            chain.append(node)
            node = node.parent
        return chain

    @property
    def prefix(self) -> str:
        """The digits every region inside this one starts with (省 2, 市 4, 县 6,
        乡 9, 村 12): ``code LIKE prefix || '%'`` finds the subtree in SQL."""
        return self.code[: _PREFIX_LEN[self.level]]

    def contains(self, other: RegionCode) -> bool:
        """True if ``other`` is this region or lies within it."""
        return other.code.startswith(self.prefix)

    @property
    def short(self) -> str:
        """The code without padding: 6 digits down to county, else 9 or 12."""
        level = self.level
        return self.code[: 12 if level is RegionLevel.VILLAGE else 9 if level is RegionLevel.TOWNSHIP else 6]

    @property
    def name(self) -> str | None:
        """The built-in name for seed regions, else None (names live in the members service)."""
        return REGION_NAMES.get(self.code)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, RegionCode):
            return NotImplemented
        return self.code < other.code

    def __str__(self) -> str:
        return self.code


@lru_cache(maxsize=4096)
def _parse_region(text: str) -> RegionCode | None:
    # Cached (RegionCode is immutable): a 100k-row roster names a few hundred villages.
    t = _nfkc(text).strip()
    if not _REGION_INPUT_RE.fullmatch(t) or t.startswith("00"):
        return None
    return RegionCode(t.ljust(12, "0"))


class _RegionNames(Mapping[str | RegionCode, str]):
    """Read-only name table keyed by 12-digit code; lookups also accept 6/9
    digits or a RegionCode, so ``REGION_NAMES["431281"]`` works."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self._names = {RegionCode.parse(k).code: v for k, v in names.items()}

    @staticmethod
    def _key(key: object) -> str | None:
        if isinstance(key, RegionCode):
            return key.code
        if isinstance(key, str):
            try:
                return RegionCode.parse(key).code
            except InvalidArgument:
                return None
        return None

    def __getitem__(self, key: object) -> str:
        k = self._key(key)
        if k is None or k not in self._names:
            raise KeyError(key)
        return self._names[k]

    def __contains__(self, key: object) -> bool:
        k = self._key(key)
        return k is not None and k in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


#: Names of the seed regions (湖南省 → 怀化市 → the three seed counties).
REGION_NAMES: Mapping[str | RegionCode, str] = _RegionNames(
    {
        "430000": "湖南省",
        "431200": "怀化市",
        "431222": "沅陵县",
        "431224": "溆浦县",
        "431281": "洪江市",
    }
)


# ---------------------------------------------------------------- IdNumber


class Sex(str, enum.Enum):
    MALE = "男"
    FEMALE = "女"

    def __str__(self) -> str:
        return self.value


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_RE = re.compile(r"[0-9]{17}[0-9X]")
_SPACES = re.compile(r"\s+")
_ID_CHECK = "10X98765432"
_ID_ZERO = ord("0") * sum(_ID_WEIGHTS)


def id_check_char(first17: str) -> str:
    """GB 11643-1999 check character for the first 17 digits (ValueError otherwise)."""
    # Unrolled over the bytes: a roster import checks 100k numbers and the
    # generator form was a third of IdNumber.parse.
    d = first17.encode("ascii", "replace")
    if len(d) != 17 or not d.isdigit():
        raise ValueError("id_check_char needs 17 ASCII digits")
    total = (
        7 * d[0]
        + 9 * d[1]
        + 10 * d[2]
        + 5 * d[3]
        + 8 * d[4]
        + 4 * d[5]
        + 2 * d[6]
        + d[7]
        + 6 * d[8]
        + 3 * d[9]
        + 7 * d[10]
        + 9 * d[11]
        + 10 * d[12]
        + 5 * d[13]
        + 8 * d[14]
        + 4 * d[15]
        + 2 * d[16]
    )
    # Bytes are ASCII codes (digit + 48): take 48 × Σweights off once.
    return _ID_CHECK[(total - _ID_ZERO) % 11]


@dataclass(frozen=True, slots=True)
class IdNumber:
    """An 18-character 居民身份证号码 (GB 11643-1999), validated.

    ``str()``/``repr()`` give only the masked form (``1101**********002X``) so
    the number cannot leak into logs by accident; ``.value`` is the plaintext.
    """

    value: str = field(repr=False)

    def __post_init__(self) -> None:
        _check_id(self.value, "id_number", None)

    @classmethod
    def parse(cls, text: str, *, field: str = "id_number", today: date | None = None) -> IdNumber:
        """Normalise (spaces, full-width, lower-case x) and validate; raises
        InvalidArgument naming the check that failed (never echoing the number)."""
        if not isinstance(text, str):
            raise InvalidArgument.field(field, "身份证号码必须是文字", reason="ID_NUMBER_FORMAT")
        value = _SPACES.sub("", _nfkc(text)).upper()
        _check_id(value, field, today)
        obj = object.__new__(cls)
        object.__setattr__(obj, "value", value)
        return obj

    @property
    def birth_date(self) -> date:
        v = self.value
        return date(int(v[6:10]), int(v[10:12]), int(v[12:14]))

    @property
    def sex(self) -> Sex:
        return Sex.MALE if int(self.value[16]) % 2 else Sex.FEMALE

    @property
    def region_prefix(self) -> str:
        """The 6-digit address code at registration (may be a since-renamed county)."""
        return self.value[:6]

    def age_on(self, on: date) -> int:
        """Full years of age on ``on``."""
        b = self.birth_date
        return on.year - b.year - ((on.month, on.day) < (b.month, b.day))

    @property
    def masked(self) -> str:
        return self.value[:4] + "*" * 10 + self.value[-4:]

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return self.masked


def _check_id(value: Any, field: str, today: date | None) -> None:
    def bad(reason: str, msg: str) -> InvalidArgument:
        return InvalidArgument.field(field, msg, reason=reason)

    if not isinstance(value, str) or not value:
        raise bad("ID_NUMBER_REQUIRED", "请填写身份证号码")
    if len(value) != 18:
        raise bad(
            "ID_NUMBER_LENGTH",
            f"身份证号码应为18位，当前为{len(value)}位，请核对后重新输入（15位旧证请换用18位号码）",
        )
    if not _ID_RE.fullmatch(value):
        raise bad("ID_NUMBER_FORMAT", "身份证号码前17位必须是数字，最后一位是数字或X，请核对后重新输入")
    try:
        birth = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise bad("ID_NUMBER_BIRTH_DATE", "身份证号码中的出生日期（第7至14位）不是有效日期，请核对后重新输入") from None
    if birth.year < 1900:
        raise bad("ID_NUMBER_BIRTH_DATE", "身份证号码中的出生年份早于1900年，请核对后重新输入")
    if birth > (today or date.today()):
        raise bad("ID_NUMBER_BIRTH_DATE", "身份证号码中的出生日期晚于今天，请核对后重新输入")
    if id_check_char(value[:17]) != value[17]:
        raise bad("ID_NUMBER_CHECKSUM", "身份证号码校验位错误，请核对后重新输入")


# ---------------------------------------------------------------- Period


class PeriodKind(str, enum.Enum):
    MONTH = "month"
    QUARTER = "quarter"
    HALF = "half"  # 上半年 / 下半年
    YEAR = "year"


_PERIOD_PATTERNS: tuple[tuple[re.Pattern[str], PeriodKind], ...] = (
    (re.compile(r"([0-9]{4})-([0-9]{1,2})"), PeriodKind.MONTH),
    (re.compile(r"([0-9]{4})年([0-9]{1,2})月"), PeriodKind.MONTH),
    (re.compile(r"([0-9]{4})-?Q([0-9])"), PeriodKind.QUARTER),
    (re.compile(r"([0-9]{4})年第?([0-9])季度?"), PeriodKind.QUARTER),
    (re.compile(r"([0-9]{4})-?H([0-9])"), PeriodKind.HALF),
    (re.compile(r"([0-9]{4})年?"), PeriodKind.YEAR),
)
_PERIOD_MIN_YEAR, _PERIOD_MAX_YEAR = 1900, 2999
_PERIOD_COUNT = {PeriodKind.MONTH: 12, PeriodKind.QUARTER: 4, PeriodKind.HALF: 2, PeriodKind.YEAR: 1}
_PERIOD_MONTHS = {PeriodKind.MONTH: 1, PeriodKind.QUARTER: 3, PeriodKind.HALF: 6, PeriodKind.YEAR: 12}
_HALF_WORDS = (("年上半年", "H1"), ("年下半年", "H2"), ("上半年", "H1"), ("下半年", "H2"))


class _YearAttribute:
    """``Period.year(2022)`` builds a year period; ``period.year`` is its int year."""

    def __get__(self, obj: Period | None, owner: type[Period]) -> Any:
        if obj is None:
            return owner.year_of
        return obj._year


@total_ordering
class Period:
    """A calendar month, quarter, half year or year (the unit payments and targets are counted in).

    ``number`` is the month (1–12), quarter (1–4) or half (1 = 上半年, 2 = 下半年);
    1 for a year. Periods sort by start date, shorter first on a tie
    (2022-01 < 2022Q1 < 2022H1 < 2022).
    Immutable and hashable.
    """

    __slots__ = ("_year", "kind", "number")
    _year: int
    kind: PeriodKind
    number: int
    year = _YearAttribute()

    def __init__(self, kind: PeriodKind | str, year: int, number: int = 1) -> None:
        kind = PeriodKind(kind)
        for v in (year, number):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError("Period year and number must be int")
        if not _PERIOD_MIN_YEAR <= year <= _PERIOD_MAX_YEAR:
            raise InvalidArgument.field("period", f"年份 {year} 不在 1900–2999 之间，请核对", reason="INVALID_PERIOD")
        if not 1 <= number <= _PERIOD_COUNT[kind]:
            what = {
                PeriodKind.MONTH: "月份应为1–12",
                PeriodKind.QUARTER: "季度应为1–4",
                PeriodKind.HALF: "半年应为1（上半年）或2（下半年）",
                PeriodKind.YEAR: "年度期间序号只能是1",
            }
            raise InvalidArgument.field("period", f"{what[kind]}，收到 {number}", reason="INVALID_PERIOD")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "_year", year)
        object.__setattr__(self, "number", number)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Period is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Period, (self.kind, self._year, self.number))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Period):
            return NotImplemented
        return (self.kind, self._year, self.number) == (other.kind, other._year, other.number)

    def __hash__(self) -> int:
        return hash((self.kind, self._year, self.number))

    def __repr__(self) -> str:
        return f"Period.parse({str(self)!r})"

    @classmethod
    def month(cls, year: int, month: int) -> Period:
        return cls(PeriodKind.MONTH, year, month)

    @classmethod
    def quarter(cls, year: int, quarter: int) -> Period:
        return cls(PeriodKind.QUARTER, year, quarter)

    @classmethod
    def half(cls, year: int, half: int) -> Period:
        """上半年 (``half=1``, Jan–Jun) or 下半年 (``half=2``, Jul–Dec)."""
        return cls(PeriodKind.HALF, year, half)

    @classmethod
    def year_of(cls, year: int) -> Period:
        return cls(PeriodKind.YEAR, year, 1)

    @classmethod
    def of_month(cls, day: date) -> Period:
        """The month containing ``day``."""
        return cls.month(day.year, day.month)

    @classmethod
    def of(cls, day: date, kind: PeriodKind | str) -> Period:
        """The month, quarter, half year or year containing ``day``."""
        kind = PeriodKind(kind)
        return cls(kind, day.year, (day.month - 1) // _PERIOD_MONTHS[kind] + 1)

    @classmethod
    def parse(cls, text: str | Period, *, field: str = "period") -> Period:
        """``"2022-08"``, ``"2022Q3"``, ``"2022H1"``, ``"2022"`` (also ``2022年8月``,
        ``2022年第3季度``, ``2022-H1``, ``2022年上半年``, ``2022年``)."""
        if isinstance(text, Period):
            return text
        s = _nfkc(str(text)).strip().upper().replace(" ", "")
        for words, code in _HALF_WORDS:
            s = s.replace(words, code)
        for pattern, kind in _PERIOD_PATTERNS:
            m = pattern.fullmatch(s)
            if m:
                try:
                    return cls(kind, int(m.group(1)), int(m.group(2)) if m.lastindex == 2 else 1)
                except InvalidArgument as e:
                    raise InvalidArgument.field(
                        field, f"期间“{text}”无效：{e.message}", reason="INVALID_PERIOD"
                    ) from None
        raise InvalidArgument.field(
            field,
            f"期间“{text}”格式不对，应写成 2022-08（月）、2022Q3（季度）、2022H1（半年）或 2022（年）",
            reason="INVALID_PERIOD",
        )

    @property
    def start(self) -> date:
        return date(self.year, (self.number - 1) * _PERIOD_MONTHS[self.kind] + 1, 1)

    @property
    def end(self) -> date:
        """The last day (inclusive)."""
        m = self.number * _PERIOD_MONTHS[self.kind]
        return date(self.year, m, calendar.monthrange(self.year, m)[1])

    def contains(self, item: date | Period) -> bool:
        """Whether a day (or a whole shorter period) falls inside this period."""
        if isinstance(item, Period):
            return self.start <= item.start and item.end <= self.end
        return self.start <= item <= self.end

    def months(self) -> Iterator[Period]:
        """Each month of this period, in order."""
        first = self.start.month
        for m in range(first, self.end.month + 1):
            yield Period.month(self.year, m)

    def next(self) -> Period:
        """The period of the same kind right after this one."""
        if self.number < _PERIOD_COUNT[self.kind]:
            return Period(self.kind, self.year, self.number + 1)
        return Period(self.kind, self.year + 1, 1)

    def previous(self) -> Period:
        """The period of the same kind right before this one."""
        if self.number > 1:
            return Period(self.kind, self.year, self.number - 1)
        return Period(self.kind, self.year - 1, _PERIOD_COUNT[self.kind])

    def _sort_key(self) -> tuple[date, date]:
        return (self.start, self.end)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Period):
            return NotImplemented
        return self._sort_key() < other._sort_key()

    def __str__(self) -> str:
        if self.kind is PeriodKind.MONTH:
            return f"{self.year:04d}-{self.number:02d}"
        if self.kind is PeriodKind.QUARTER:
            return f"{self.year:04d}Q{self.number}"
        if self.kind is PeriodKind.HALF:
            return f"{self.year:04d}H{self.number}"
        return f"{self.year:04d}"
