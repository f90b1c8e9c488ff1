"""Region names as the board shows them, and the regions a villager picks from.

The one place the board turns a region code into words or walks the region
tree; everything else calls these functions. Names come from the process's
region registry (:func:`jsxcore.regions.registry`: the built-in 2023 统计用区划代码
for 湖南省, or the operator's merged list named by ``JSX_REGIONS_FILE``):

* :func:`region_label` — a heading or a card's village: the name from the
  county down, ``洪江市托口镇马田村``; a city or the province by its own name;
* :func:`short_label` — one entry of a list of a region's children, where the
  parent is already on the page: ``马田村``, ``托口镇``;
* :func:`children` and :func:`trail` — choosing a region with links only
  (county → townships → villages), no JavaScript.

A code the registry does not have (records made under an older list, test
data such as 431281101201) never fails a page: it is named by its nearest
known ancestor and its own code, ``洪江市黔城镇 431281101201（村）``, or by the
code alone when nothing above it is known either.
"""

from __future__ import annotations

from jsxcore.regions import registry
from jsxcore.values import RegionCode, RegionLevel

_LEVEL = {
    RegionLevel.PROVINCE: "省",
    RegionLevel.CITY: "市",
    RegionLevel.COUNTY: "县",
    RegionLevel.TOWNSHIP: "乡镇",
    RegionLevel.VILLAGE: "村",
}

#: What the regions one level below are called, by the level of the region above them.
_CHILDREN_WORDS = {
    RegionLevel.PROVINCE: "市（州）",
    RegionLevel.CITY: "县（市、区）",
    RegionLevel.COUNTY: "乡镇（街道）",
    RegionLevel.TOWNSHIP: "村（社区）",
}


def warm() -> None:
    """Load the registry now (at start-up) rather than on the first page view."""
    registry()


def region_name(region: RegionCode | str) -> str | None:
    """The region's name from the county down (``洪江市托口镇马田村``), or None when the
    registry does not know the code."""
    known = registry().get(region)
    return known.local_name if known is not None else None


def _fallback(code: RegionCode) -> str:
    """A code the registry lacks: its nearest known ancestor's name, then the code and level."""
    own = f"{code.short}（{_LEVEL[code.level]}）"
    up = code.parent
    while up is not None:
        name = region_name(up)
        if name is not None:
            return f"{name} {own}"
        up = up.parent
    return own


def region_label(region: RegionCode | str) -> str:
    """What a villager reads: ``洪江市托口镇马田村``, ``怀化市``, or for an unknown code
    ``洪江市黔城镇 431281101201（村）``."""
    code = RegionCode.parse(region)
    name = region_name(code)
    return name if name is not None else _fallback(code)


def short_label(region: RegionCode | str) -> str:
    """The region's own name (``马田村``, ``托口镇``, ``洪江市``), for a list under its parent;
    an unknown code as ``431281101201（村）``."""
    code = RegionCode.parse(region)
    known = registry().get(code)
    return known.short_name if known is not None else f"{code.short}（{_LEVEL[code.level]}）"


def level_word(region: RegionCode | str) -> str:
    """村 / 乡镇 / 县 / 市 / 省."""
    return _LEVEL[RegionCode.parse(region).level]


def children_word(region: RegionCode | str) -> str:
    """What the regions below ``region`` are called: ``乡镇（街道）`` below a county; "" below a village."""
    return _CHILDREN_WORDS.get(RegionCode.parse(region).level, "")


def children(region: RegionCode | str) -> list[RegionCode]:
    """The regions one level below ``region`` in the current list, in code order ([] for a
    village or a code the registry does not know)."""
    return [r.code for r in registry().children(region)]


def trail(home: RegionCode, region: RegionCode) -> list[RegionCode]:
    """The way from the board's own region ``home`` down to ``region``, both included
    (``[怀化市, 洪江市, 托口镇, 马田村]``); [home] when ``region`` is not within it."""
    if not home.contains(region):
        return [home]
    out = [region]
    up = region.parent
    while up is not None and home.contains(up):
        out.append(up)
        up = up.parent
    return out[::-1]


__all__ = [
    "children",
    "children_word",
    "level_word",
    "region_label",
    "region_name",
    "short_label",
    "trail",
    "warm",
]
