"""Synthetic but valid data for tests, demos and benchmarks: 身份证 numbers
with correct GB 11643 check characters, phones and roster rows. Never real
people: sequence numbers are generated, not sampled."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta

from jsxcore.auth import Caller, reset_caller, set_caller
from jsxcore.testing.helpers import rid, who
from jsxcore.values import id_check_char

#: Villages used by tests and the demo: one per seed county.
VILLAGES = {
    "431222": "431222101201",  # 沅陵县
    "431224": "431224102203",  # 溆浦县
    "431281": "431281103205",  # 洪江市
}


def make_id_number(
    prefix: str = "431222", birth: date = date(1970, 1, 1), seq: int = 1, *, female: bool = False
) -> str:
    """A valid 18-character number: 6-digit region, birth date, 3-digit
    sequence (odd = male, even = female) and the check character."""
    s = (seq * 2 + (0 if female else 1)) % 1000
    body = f"{prefix}{birth:%Y%m%d}{s:03d}"
    return body + id_check_char(body)


_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


def make_name(seq: int) -> str:
    """A made-up Chinese name (only 汉字, as the name rule requires)."""
    g = len(_GIVEN)
    return _SURNAMES[seq % len(_SURNAMES)] + _GIVEN[(seq // 20) % g] + _GIVEN[(seq // (20 * g)) % g]


def make_phone(seq: int) -> str:
    return f"139{seq % 100_000_000:08d}"


def roster_rows(n: int, county: str = "431222", *, household_size: int = 3) -> Iterator[dict[str, str]]:
    """``n`` roster rows in households of ``household_size``: the 户主 first
    (an adult), then a spouse and children. Unique 身份证 for n < 36 million."""
    village = VILLAGES.get(county, county + "101201")
    base = date(1950, 1, 1)
    head_id = ""
    for i in range(n):
        pos = i % household_size
        # The sequence only holds 499 per birth date: spread births to keep numbers unique.
        birth = (
            base + timedelta(days=(i // 499) % 20000)
            if pos < 2
            else date(2005, 1, 1) + timedelta(days=(i // 499) % 6000)
        )
        idn = make_id_number(county, birth, i % 499, female=pos == 1 or (pos >= 2 and i % 2 == 0))
        if pos == 0:
            head_id = idn
        relation = "户主" if pos == 0 else "配偶" if pos == 1 else ("女" if i % 2 == 0 else "子")
        yield {
            "姓名": make_name(i),
            "身份证号": idn,
            "联系电话": make_phone(i),
            "所属村": village,
            "户籍类型": "农村",
            "户主身份证号": head_id,
            "与户主关系": relation,
            "家庭类型": "独生子女户" if pos == 0 else "",
            "家庭类型生效日期": "2020-01-01" if pos == 0 else "",
            "光荣证": "是" if pos == 0 else "",
        }


# ---------------------------------------------------------------- callers (tests, bench)

#: The fixed "today" the tests run on, so ages and dates do not drift.
TODAY = date(2024, 6, 1)


def clerk(region: str = "431222", roles: tuple[str, ...] = ("county_clerk",), subject: str = "clerk-yl") -> Caller:
    """A verified caller for use cases (``caller=``): ``subject`` with ``roles`` over ``region``."""
    return who(subject, region, *roles)


@contextmanager
def acting(
    region: str = "431222", roles: tuple[str, ...] = ("county_clerk",), subject: str = "clerk-yl"
) -> Iterator[Caller]:
    """Bind that caller as the gRPC auth interceptor does, for code that reads
    :func:`jsxcore.auth.current_caller` — the servicer — when called without a server."""
    caller = clerk(region, roles, subject)
    token = set_caller(caller)
    try:
        yield caller
    finally:
        reset_caller(token)


__all__ = ["TODAY", "VILLAGES", "acting", "clerk", "make_id_number", "make_name", "make_phone", "rid", "roster_rows"]
