"""Activities and whether one may fulfil a plan item. Pure Python, no I/O."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from jsx_events.catalog.domain import BUILT_IN, type_label
from jsx_events.plans.domain import Plan, PlanItem
from jsxcore.errors import ErrorCollector, FailedPrecondition
from jsxcore.values import Money, RegionCode

#: No money (Money is immutable, so one shared default is safe).
ZERO = Money(0)


class ActivityStatus(enum.StrEnum):
    PLANNED = "PLANNED"
    HELD = "HELD"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class Outputs:
    """What an activity produced. Counts are whole numbers; 慰问金 in 分."""

    materials: int = 0  # 资料发放份数
    consultations: int = 0  # 咨询人次
    clinic_visits: int = 0  # 义诊人次
    contraceptive_boxes: int = 0  # 药具发放盒数
    care_money: Money = ZERO  # 慰问金 total

    def problems(self, prefix: str = "outputs") -> list[tuple[str, str]]:
        out = []
        for name, label, value in (
            ("materials", "资料发放份数", self.materials),
            ("consultations", "咨询人次", self.consultations),
            ("clinic_visits", "义诊人次", self.clinic_visits),
            ("contraceptive_boxes", "药具发放盒数", self.contraceptive_boxes),
        ):
            if value < 0:
                out.append((f"{prefix}.{name}", f"{label}不能为负数"))
        if self.care_money.is_negative:
            out.append((f"{prefix}.care_money", "慰问金不能为负数"))
        return out

    def __add__(self, other: Outputs) -> Outputs:
        return Outputs(
            self.materials + other.materials,
            self.consultations + other.consultations,
            self.clinic_visits + other.clinic_visits,
            self.contraceptive_boxes + other.contraceptive_boxes,
            self.care_money + other.care_money,
        )


@dataclass(frozen=True)
class Activity:
    """One activity (planned or held) organised by an association.

    ``region`` is the organising association's region; ``site_id`` the
    place (会员之家, 暖心家园, school …) from the members service, if any.
    ``participant_ids`` are member/person ids; ``headcount`` covers people
    not recorded by id, so people reached is ``max(headcount, len(ids))``.
    """

    id: str
    type: str
    title: str
    region: RegionCode
    start: date
    end: date
    status: ActivityStatus = ActivityStatus.PLANNED
    site_id: str = ""
    participant_ids: tuple[str, ...] = ()
    headcount: int = 0
    outputs: Outputs = Outputs()
    attachments: tuple[str, ...] = ()
    plan_item_id: str = ""  # the plan item it fulfils (plans/{plan_id}/items/{plan_item_id})
    plan_id: str = ""  # the plan of that item (alone: a link made before items had ids)
    location: str = ""
    description: str = ""

    @property
    def reached(self) -> int:
        return max(self.headcount, len(set(self.participant_ids)))

    @property
    def link_key(self) -> tuple[object, ...]:
        """What a plan item link depends on: changing any of it re-checks the link."""
        return (self.plan_id, self.plan_item_id, self.type, self.start.year, self.site_id, self.region)

    def validate(self, known_types: Iterable[str] = ()) -> None:
        """Raise InvalidArgument listing every bad field."""
        errs = ErrorCollector()
        if self.type not in BUILT_IN and self.type not in set(known_types):
            errs.add("type", f"活动类型“{self.type}”未定义：请使用内置类型（如 健康大讲堂、义诊）或本地插件提供的类型")
        if not self.title.strip():
            errs.add("title", "请填写活动名称")
        if self.end < self.start:
            errs.add("end_date", "结束日期不能早于开始日期")
        if self.headcount < 0:
            errs.add("headcount", "参与人数不能为负数")
        for f, d in self.outputs.problems():
            errs.add(f, d)
        errs.raise_if_any("活动信息有误，请按字段说明修改后重试")

    def check_change(self, new: Activity) -> None:
        """Refuse a change the activity's state does not allow: a cancelled activity is not held afterwards."""
        if new.status is ActivityStatus.HELD and self.status is ActivityStatus.CANCELLED:
            raise FailedPrecondition("活动已取消，不能登记为已开展；请新建活动", reason="ACTIVITY_CANCELLED")


#: What UpdateActivity does to the stored activity: the request's fields, as its
#: update mask names them, applied (``activities.wire.change_of``).
ActivityChange = Callable[[Activity], Activity]


def plan_link_problems(
    a: Activity,
    plan: Plan | None,
    item: PlanItem | None,
    caller_scope: RegionCode | None,
    ref: str,
    field_name: str = "activity.plan_item",
    custom_labels: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """Why ``a`` cannot fulfil plan item ``ref`` (empty: it can).

    The item must exist, its plan lie in the caller's region, be the
    organiser's own (or an enclosing association's) plan, be for the year
    the activity takes place in, be the site's plan when it is a site plan,
    and plan the activity's type (an ``ANY`` item takes every type).
    """
    if plan is None or item is None:
        return [(field_name, f"年度计划项“{ref}”不存在：请从年度计划中选择（格式 plans/计划编号/items/项目编号）")]
    out = []
    if caller_scope is not None and not caller_scope.contains(plan.region):
        out.append((field_name, f"年度计划项“{ref}”属于{plan.region.name or plan.region.code}的计划，不在您的辖区内"))
    elif not plan.region.contains(a.region):
        out.append(
            (
                field_name,
                f"年度计划项“{ref}”是{plan.region.name or plan.region.code}的计划，"
                f"本活动的组织单位（{a.region.name or a.region.code}）不在其范围内",
            )
        )
    if plan.year != a.start.year:
        out.append(
            (field_name, f"年度计划项“{ref}”是{plan.year}年的计划，活动日期在{a.start.year}年，请选择当年的计划项")
        )
    if plan.site_id and plan.site_id != a.site_id:
        out.append((field_name, f"年度计划项“{ref}”是阵地 sites/{plan.site_id} 的计划，活动须在该阵地开展（site）"))
    if item.type not in ("ANY", a.type):
        out.append(
            (
                field_name,
                f"年度计划项“{ref}”计划的是“{type_label(item.type, custom_labels)}”，"
                f"与本活动类型“{type_label(a.type, custom_labels)}”不符",
            )
        )
    return out
