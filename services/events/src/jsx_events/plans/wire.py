"""Plans on the wire: requests → :class:`Plan`/:class:`PlanItem`, and the presenters."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from jsx.events.v1 import events_service_pb2 as pb
from jsx_events.catalog.wire import type_code, type_pb
from jsx_events.plans.domain import ItemProgress, Plan, PlanItem, item_name
from jsxcore import wire
from jsxcore.errors import InvalidArgument
from jsxcore.values import RegionCode


def plan_from_pb(m: pb.Plan) -> Plan:
    """A CreatePlan request's plan (ids are assigned by the use case)."""
    if not 1900 <= m.year <= 2999:
        raise InvalidArgument.field("plan.year", "请填写计划年度，例如 2022", reason="INVALID_YEAR")
    items = tuple(plan_item_from_pb(it) for it in m.items)
    return Plan(
        "",
        RegionCode.parse(m.region.code, field="plan.region"),
        m.year,
        items,
        wire.id_from(m.site, "sites", "plan.site", required=False),
        m.display_name,
    )


def plan_item_from_pb(m: pb.PlanItem) -> PlanItem:
    return PlanItem("", type_code(m.type, m.custom_type), m.count, m.note, m.month)


def plan_item_pb(plan_id: str, g: ItemProgress) -> pb.PlanItem:
    """One item of plan ``plan_id`` with its fulfilment."""
    it = g.item
    t, custom = type_pb(it.type)
    return pb.PlanItem(
        type=t,
        custom_type=custom,
        month=it.month,
        count=it.count,
        note=it.title,
        name=item_name(plan_id, it.id),
        fulfilled_by=[wire.name_to("activities", a) for a in g.held_ids],
        held_count=len(g.held_ids),
        scheduled_count=len(g.scheduled_ids),
        fulfilled=g.fulfilled,
    )


def plan_pb(p: Plan, created: datetime | None = None, progress: Iterable[ItemProgress] = ()) -> pb.Plan:
    """The plan; with ``progress`` (``reporting.domain.plan_progress``) each item shows its fulfilment."""
    by_item = {g.item.id: g for g in progress}
    items = [plan_item_pb(p.id, by_item.get(it.id) or ItemProgress(it)) for it in p.items]
    return pb.Plan(
        name=wire.name_to("plans", p.id),
        display_name=p.title,
        region=wire.region_to(p.region),
        site=wire.name_to("sites", p.site_id),
        year=p.year,
        items=items,
        create_time=wire.ts_to(created),
    )
