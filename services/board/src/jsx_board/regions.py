"""Region names as the board shows them.

The one place the board turns a region code into words. Today it knows the
seed regions' names (``jsxcore.values.REGION_NAMES``: 湖南省, 怀化市, 沅陵县,
溆浦县, 洪江市) and shows every other region by its code and level
("431281103205（村）"). When a region registry lands in jsxcore (branch
h-regions), :func:`region_name` is the function to swap: everything else
calls it.
"""

from __future__ import annotations

from jsxcore.values import RegionCode, RegionLevel

_LEVEL = {
    RegionLevel.PROVINCE: "省",
    RegionLevel.CITY: "市",
    RegionLevel.COUNTY: "县",
    RegionLevel.TOWNSHIP: "乡镇",
    RegionLevel.VILLAGE: "村",
}


def region_name(region: RegionCode) -> str | None:
    """The region's name, or None when the board does not know it."""
    return region.name


def region_label(region: RegionCode | str) -> str:
    """What a villager reads: ``洪江市`` or ``431281103205（村）``."""
    code = RegionCode.parse(region)
    name = region_name(code)
    return name if name else f"{code.short}（{_LEVEL[code.level]}）"


def level_word(region: RegionCode | str) -> str:
    """村 / 乡镇 / 县 / 市 / 省."""
    return _LEVEL[RegionCode.parse(region).level]


__all__ = ["level_word", "region_label", "region_name"]
