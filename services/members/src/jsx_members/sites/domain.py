"""Sites the association runs (阵地): 会员之家, 暖心家园, 健康驿站,
青春健康教育基地; the 六有 checklist of a 暖心家园; 摘牌 (closing). Pure."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from jsx_members.labels import fold
from jsxcore.errors import ErrorCollector, FailedPrecondition, InvalidArgument
from jsxcore.values import RegionCode, RegionLevel


class SiteKind(str, enum.Enum):
    MEMBER_HOME = "会员之家"
    WARM_HOME = "暖心家园"
    HEALTH_STATION = "健康驿站"
    YOUTH_HEALTH_BASE = "青春健康教育基地"


#: The 六有 checklist every 暖心家园 must satisfy, in the order the
#: associations list it: 有场所 有标识 有制度 有计划 有活动 有管理.
SIX_HAVES: tuple[str, ...] = ("场所", "标识", "制度", "计划", "活动", "管理")


@dataclass(frozen=True)
class SixHaves:
    """The 六有 checklist of a 暖心家园: which of 场所 标识 制度 计划 活动 管理 it has."""

    have: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, items: Iterable[str], *, field: str = "six_haves") -> SixHaves:
        got = {fold(i).removeprefix("有") for i in items if fold(i)}
        unknown = got - set(SIX_HAVES)
        if unknown:
            raise InvalidArgument.field(
                field,
                f"六有清单只能包含：{'、'.join(SIX_HAVES)}；无法识别：{'、'.join(sorted(unknown))}",
                reason="INVALID_SIX_HAVES",
            )
        return cls(frozenset(got))

    @classmethod
    def stored(cls, text: str) -> SixHaves:
        """From the stored form (items joined by 、)."""
        return cls(frozenset(text.split("、")) if text else frozenset())

    @property
    def missing(self) -> list[str]:
        return [i for i in SIX_HAVES if i not in self.have]

    @property
    def complete(self) -> bool:
        return not self.missing

    def ordered(self) -> list[str]:
        return [i for i in SIX_HAVES if i in self.have]

    def text(self) -> str:
        """The stored form: the items held, in canonical order, joined by 、."""
        return "、".join(self.ordered())


def validate_site(
    *, kind: SiteKind, name: str, village: str, address: str, six_haves: Iterable[str]
) -> tuple[str, RegionCode, str, SixHaves]:
    errors = ErrorCollector()
    n = fold(name)
    if not n or len(n) > 100:
        errors.add("site.name", "请填写场所名称（最长100字）")
    region: RegionCode | None = None
    try:
        region = RegionCode.parse(village, field="site.village")
        if region.level < RegionLevel.TOWNSHIP:
            errors.add("site.village", "场所所在地应为乡镇或村（社区）级行政区划代码")
    except InvalidArgument as e:
        errors.violations.extend(e.violations)
    addr = fold(address)
    if len(addr) > 200:
        errors.add("site.address", "地址最长200字")
    checklist = SixHaves()
    items = list(six_haves)
    if items and kind is not SiteKind.WARM_HOME:
        errors.add("site.six_haves", "六有清单只适用于暖心家园")
    else:
        try:
            checklist = SixHaves.of(items, field="site.six_haves")
        except InvalidArgument as e:
            errors.violations.extend(e.violations)
    errors.raise_if_any("场所信息有误，请按字段说明修改后重试")
    assert region is not None
    return n, region, addr, checklist


def require_open(closed_on: date | None) -> None:
    """A closed (摘牌) site is history: it cannot be changed any more."""
    if closed_on is not None:
        raise FailedPrecondition(f"该场所已于 {closed_on.isoformat()} 摘牌，不能再修改", reason="SITE_CLOSED")


def check_closing(closed: date, *, opened: date, today: date) -> date:
    if closed > today:
        raise InvalidArgument.field("closed_date", "摘牌日期不能晚于今天", reason="END_IN_FUTURE")
    if closed < opened:
        raise InvalidArgument.field(
            "closed_date", f"摘牌日期不能早于挂牌日期 {opened.isoformat()}", reason="END_BEFORE_START"
        )
    return closed


@dataclass(frozen=True)
class NewSite:
    """CreateSite's input."""

    kind: SiteKind
    name: str
    village: str
    address: str = ""
    six_haves: tuple[str, ...] = ()
    opened_date: date | None = None
    manager_id: str = ""


@dataclass(frozen=True)
class SiteUpdate:
    """UpdateSite's input: ``paths`` ⊆ {display_name, address, six_haves, manager}."""

    paths: frozenset[str]
    name: str = ""
    address: str = ""
    six_haves: tuple[str, ...] = ()
    manager_id: str = ""


__all__ = [
    "SIX_HAVES",
    "NewSite",
    "SiteKind",
    "SiteUpdate",
    "SixHaves",
    "check_closing",
    "require_open",
    "validate_site",
]
