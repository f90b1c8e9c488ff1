"""Annual plans (年度计划) and their items. Pure Python, no I/O.

Each item has a stable id: activities name the item they fulfil as
``plans/{plan}/items/{item}`` (see :func:`item_name`). Whether an activity may
fulfil an item is the activities context's rule
(``activities.domain.plan_link_problems``); how far a plan is, the reporting
context's (``reporting.domain.plan_progress``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from jsx_events.catalog.domain import BUILT_IN, type_label
from jsxcore.errors import ErrorCollector
from jsxcore.values import Period, RegionCode


def item_name(plan_id: str, item_id: str) -> str:
    """``plans/{plan}/items/{item}`` (``""`` unless both ids are given)."""
    return f"plans/{plan_id}/items/{item_id}" if plan_id and item_id else ""


@dataclass(frozen=True)
class PlanItem:
    """One line of an annual plan: ``count`` activities of ``type`` (``ANY``: any type).

    ``id`` is stable: activities name the item they fulfil as ``plans/{plan}/items/{id}``.
    """

    id: str
    type: str
    count: int
    title: str = ""
    month: int = 0  # 0 = any time in the year

    def problems(self, prefix: str, known_types: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """(field, Chinese description) for each bad value; with ``known_types`` (the plugin's
        types for the region) the type must be built in, one of those, or ``ANY``."""
        out = []
        if self.count < 1:
            out.append((f"{prefix}.count", "计划次数须为正整数"))
        if not self.type:
            out.append((f"{prefix}.type", "请填写计划项目的活动类型"))
        elif known_types is not None and self.type not in {*BUILT_IN, *known_types, "ANY"}:
            out.append(
                (
                    f"{prefix}.type",
                    f"活动类型“{self.type}”未定义：请使用内置类型（如 健康大讲堂、义诊）、"
                    "本地插件提供的类型，或 ANY（任意活动）",
                )
            )
        if not 0 <= self.month <= 12:
            out.append((f"{prefix}.month", "计划月份应为1–12（0表示全年任意时间）"))
        return out

    def check(self, known_types: Iterable[str], prefix: str = "plan_item") -> None:
        """Raise InvalidArgument listing every bad field of an item added to a recorded plan."""
        errs = ErrorCollector()
        for f, msg in self.problems(prefix, known_types):
            errs.add(f, msg)
        errs.raise_if_any("计划项有误，请按字段说明修改后重试")


@dataclass(frozen=True)
class Plan:
    """年度计划 of a site (``site_id``) or an association (its ``region``)."""

    id: str
    region: RegionCode
    year: int
    items: tuple[PlanItem, ...]
    site_id: str = ""
    title: str = ""

    def validate(self, known_types: Iterable[str] | None = None) -> None:
        """Raise InvalidArgument listing every bad field (``known_types``: see :meth:`PlanItem.problems`)."""
        errs = ErrorCollector()
        if not self.items:
            errs.add("items", "年度计划至少要有一项内容")
        for i, item in enumerate(self.items):
            for f, msg in item.problems(f"items[{i}]", known_types):
                errs.add(f, msg)
        errs.raise_if_any("年度计划有误，请按字段说明修改后重试")

    def item(self, item_id: str) -> PlanItem | None:
        return next((i for i in self.items if i.id == item_id), None)


@dataclass(frozen=True)
class ItemProgress:
    """How far a plan item is: the held activities that fulfil it (held by its deadline), those
    still planned, and those held after the deadline (``late_ids``: shown, never counted)."""

    item: PlanItem
    held_ids: tuple[str, ...] = ()
    scheduled_ids: tuple[str, ...] = ()
    late_ids: tuple[str, ...] = ()

    @property
    def fulfilled(self) -> bool:
        return len(self.held_ids) >= self.item.count


def item_due(year: int, item: PlanItem) -> date:
    """The last day a plan item may be done: the end of its month, or 31 December for a whole-year item."""
    return Period.month(year, item.month).end if item.month else date(year, 12, 31)


def item_label(item: PlanItem, custom_labels: Mapping[str, str] | None = None) -> str:
    """How a clerk recognises a plan item: its note, else its type's name."""
    return item.title.strip() or type_label(item.type, custom_labels)
