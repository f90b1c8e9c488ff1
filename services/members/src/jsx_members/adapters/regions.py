"""Which region codes exist, for checks that need more than a well-formed
code (a 户籍 move's destination: 431281999999 is well-formed and does not
exist). A :class:`~jsx_members.life.domain.Places`.

With the region registry (``jsxcore.regions``: 国家统计局's 统计用区划代码)
installed, a code of a province the registry lists must be in it; a code of
another province (a move out of the province) needs a real province prefix
(GB/T 2260). Without the registry, only the province prefix is checked.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from jsxcore.values import RegionCode

#: GB/T 2260 province-level codes (the first two digits of every division code).
PROVINCES = frozenset(
    [
        "11",
        "12",
        "13",
        "14",
        "15",
        "21",
        "22",
        "23",
        "31",
        "32",
        "33",
        "34",
        "35",
        "36",
        "37",
        "41",
        "42",
        "43",
        "44",
        "45",
        "46",
        "50",
        "51",
        "52",
        "53",
        "54",
        "61",
        "62",
        "63",
        "64",
        "65",
        "71",
        "81",
        "82",
    ]
)


class KnownRegions:
    """``known(code)``: the code's province exists, and where ``listed`` covers
    that province, the code is listed."""

    def __init__(self, listed: Callable[[RegionCode], bool] | None = None, covers: Iterable[str] = ()) -> None:
        self._listed = listed
        self._covers = frozenset(covers)

    def known(self, region: RegionCode) -> bool:
        province = region.code[:2]
        if province not in PROVINCES:
            return False
        if self._listed is not None and province in self._covers:
            return self._listed(region)
        return True

    @classmethod
    def of(cls, codes: Iterable[str]) -> KnownRegions:
        """A fixed list of 12-digit codes (tests; a county's own list)."""
        listed = frozenset(RegionCode.parse(c).code for c in codes)
        return cls(lambda r: r.code in listed, {c[:2] for c in listed})


def default_places() -> KnownRegions:
    """The registry when this jsxcore has one, else province prefixes only."""
    try:
        regions: Any = importlib.import_module("jsxcore.regions")
    except ImportError:
        return KnownRegions()
    reg = regions.registry()
    covers = [p for p in PROVINCES if reg.get(p + "0" * 10) is not None]
    return KnownRegions(lambda r: r.code in reg, covers)


__all__ = ["PROVINCES", "KnownRegions", "default_places"]
