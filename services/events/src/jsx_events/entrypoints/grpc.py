"""gRPC EventsService: proto ↔ service layer, region scope, and the process main.

Permissions come from each RPC's ``(jsx.common.v1.permission)`` option and
are enforced by the runtime's auth interceptor; this layer adds the region
check (a county clerk sees only that county).
"""
from __future__ import annotations

import base64
import uuid
from datetime import date
from typing import Any

from google.protobuf.field_mask_pb2 import FieldMask
from jsx.common.v1 import common_pb2 as cpb
from jsx.events.v1 import events_service_pb2 as pb
from jsx.events.v1 import events_service_pb2_grpc as pb_grpc

from jsxcore.auth import current_caller
from jsxcore.config import ServiceConfig
from jsxcore.errors import ErrorCollector, InvalidArgument
from jsxcore.outbox import Consumer, Relay, stream_name
from jsxcore.runtime.server import ServiceRuntime, list_plugins_response, run_service
from jsxcore.values import Period, RegionCode

from jsx_events import domain as d
from jsx_events.adapters import bus
from jsx_events.adapters.db import migrate
from jsx_events.service import EventsService, Idem, new_id

SERVICE = "events"
FULL = "jsx.events.v1.EventsService"
DEFAULT_PAGE, MAX_PAGE = 50, 500


def _scope(m: cpb.RegionCode, field: str = "region") -> RegionCode:
    """The requested region (default: the caller's), checked against the caller's scope."""
    caller = current_caller()
    r = RegionCode.parse(m.code, field=field) if m.code else caller.region
    caller.require_region(r)
    return r


def _page(size: int, token: str) -> tuple[int, int]:
    if size < 0:
        raise InvalidArgument.field("page_size", "每页条数（page_size）不能为负数", reason="INVALID_PAGE_SIZE")
    offset = 0
    if token:
        try:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode())
        except ValueError:
            raise InvalidArgument.field("page_token", "翻页标记（page_token）无效，请从第一页重新查询",
                                        reason="INVALID_PAGE_TOKEN") from None
    return offset, min(size or DEFAULT_PAGE, MAX_PAGE)


def _next(offset: int, limit: int, got: int) -> str:
    return base64.urlsafe_b64encode(str(offset + limit).encode()).decode() if got == limit else ""


def _period(m: cpb.Period) -> Period:
    if not m.code:
        raise InvalidArgument.field("period", "请填写期间，例如 2022、2022-H1、2022-Q3 或 2022-08", reason="MISSING_PERIOD")
    return Period.parse(m.code, field="period.code")


#: Activity fields a client cannot set through UpdateActivity.
OUTPUT_ONLY = frozenset({"name", "plan", "create_time", "update_time"})
SETTABLE = tuple(f.name for f in pb.Activity.DESCRIPTOR.fields if f.name not in OUTPUT_ONLY)


def _check_mask(mask: FieldMask) -> None:
    """Every path must name a settable Activity field (AIP-134); violations name each bad path."""
    errs = ErrorCollector()
    for i, path in enumerate(mask.paths):
        if path.split(".")[0] in OUTPUT_ONLY:
            errs.add(f"update_mask.paths[{i}]", f"“{path}”由系统生成，不能修改")
        elif not FieldMask(paths=[path]).IsValidForDescriptor(pb.Activity.DESCRIPTOR):
            errs.add(f"update_mask.paths[{i}]", f"活动没有“{path}”这一项，可修改的有：" + "、".join(SETTABLE))
    errs.raise_if_any("更新字段（update_mask）有误，请按字段说明修改后重试", reason="INVALID_UPDATE_MASK")


def _opt_date(m: cpb.Date, field: str) -> date | None:
    return bus.to_date(m, field, required=False)


class EventsServicer(pb_grpc.EventsServiceServicer):
    def __init__(self, svc: EventsService, plugins: Any) -> None:
        self.svc = svc
        self.plugins = plugins

    async def CreateActivity(self, request: pb.CreateActivityRequest, context: Any) -> pb.Activity:
        a = bus.activity_from_pb(request.activity, new_id())
        current_caller().require_region(a.region)
        return await self.svc.create_activity(a, Idem(f"/{FULL}/CreateActivity", request), current_caller().subject,
                                              scope=current_caller().region)

    async def UpdateActivity(self, request: pb.UpdateActivityRequest, context: Any) -> pb.Activity:
        id_ = bus.bare(request.activity.name, "activities")
        current, _ = await self.svc.get_activity(id_)
        current_caller().require_region(current.region)
        mask = request.update_mask
        _check_mask(mask)

        def change(old: d.Activity) -> d.Activity:
            msg = bus.activity_pb(old)
            if mask.paths:
                # Nested paths ("outputs.materials") change only that sub-field.
                mask.MergeMessage(request.activity, msg, replace_message_field=True, replace_repeated_field=True)
            else:
                msg.CopyFrom(request.activity)
            new = bus.activity_from_pb(msg, old.id)
            if new.region != old.region:
                current_caller().require_region(new.region)  # no moving an activity out of one's scope
            if new.status is d.ActivityStatus.HELD and old.status is d.ActivityStatus.CANCELLED:
                old.held()  # raises the clerk-facing error
            return new

        return await self.svc.update_activity(id_, change, Idem(f"/{FULL}/UpdateActivity", request),
                                              scope=current_caller().region)

    async def GetActivity(self, request: pb.GetActivityRequest, context: Any) -> pb.Activity:
        a, msg = await self.svc.get_activity(bus.bare(request.name, "activities"))
        current_caller().require_region(a.region)
        return msg

    async def ListActivities(self, request: pb.ListActivitiesRequest, context: Any) -> pb.ListActivitiesResponse:
        region = _scope(request.region)
        offset, limit = _page(request.page_size, request.page_token)
        states = {pb.ACTIVITY_STATE_PLANNED: "PLANNED", pb.ACTIVITY_STATE_HELD: "HELD", pb.ACTIVITY_STATE_CANCELLED: "CANCELLED"}
        items = await self.svc.list_activities(
            region, type_=bus.type_code(request.type, "") if request.type else "", status=states.get(request.state, ""),
            site_id=bus.bare(request.site, "sites"), start=_opt_date(request.from_date, "from_date"),
            end=_opt_date(request.to_date, "to_date"), offset=offset, limit=limit)
        return pb.ListActivitiesResponse(activities=items, next_page_token=_next(offset, limit, len(items)))

    async def RecordVisit(self, request: pb.RecordVisitRequest, context: Any) -> pb.Visit:
        fields = bus.visit_fields(request.visit, new_id())
        current_caller().require_region(fields["region"])  # type: ignore[arg-type]
        return await self.svc.record_visit(fields, Idem(f"/{FULL}/RecordVisit", request), current_caller().subject)

    async def GetVisit(self, request: pb.GetVisitRequest, context: Any) -> pb.Visit:
        v, msg = await self.svc.get_visit(bus.bare(request.name, "visits"))
        current_caller().require_region(v.region)
        return msg

    async def ListVisits(self, request: pb.ListVisitsRequest, context: Any) -> pb.ListVisitsResponse:
        region = _scope(request.region)
        offset, limit = _page(request.page_size, request.page_token)
        states = {pb.VISIT_STATE_PENDING: "PENDING", pb.VISIT_STATE_BOOKED: "BOOKED",
                  pb.VISIT_STATE_REJECTED: "REJECTED", pb.VISIT_STATE_NO_MONEY: "NO_MONEY"}
        items = await self.svc.list_visits(
            region, household_id=bus.bare(request.household, "households"), state=states.get(request.state, ""),
            start=_opt_date(request.from_date, "from_date"), end=_opt_date(request.to_date, "to_date"),
            offset=offset, limit=limit)
        return pb.ListVisitsResponse(visits=items, next_page_token=_next(offset, limit, len(items)))

    async def CreatePlan(self, request: pb.CreatePlanRequest, context: Any) -> pb.Plan:
        p = bus.plan_from_pb(request.plan, new_id())
        current_caller().require_region(p.region)
        return await self.svc.create_plan(p, Idem(f"/{FULL}/CreatePlan", request))

    async def ListPlans(self, request: pb.ListPlansRequest, context: Any) -> pb.ListPlansResponse:
        plans = await self.svc.list_plans(_scope(request.region), request.year, bus.bare(request.site, "sites"))
        offset, limit = _page(request.page_size, request.page_token)
        page = plans[offset:offset + limit]
        return pb.ListPlansResponse(plans=page, next_page_token=_next(offset, limit, len(page)))

    async def GetPlan(self, request: pb.GetPlanRequest, context: Any) -> pb.Plan:
        p, msg = await self.svc.get_plan(bus.bare(request.name, "plans"))
        current_caller().require_region(p.region)
        return msg

    async def CreatePlanItem(self, request: pb.CreatePlanItemRequest, context: Any) -> pb.PlanItem:
        plan_id = bus.bare(request.parent, "plans")
        plan, _ = await self.svc.get_plan(plan_id)
        current_caller().require_region(plan.region)
        item = bus.plan_item_from_pb(request.plan_item, new_id())
        return await self.svc.add_plan_item(plan_id, item, Idem(f"/{FULL}/CreatePlanItem", request))

    async def DecideAward(self, request: pb.DecideAwardRequest, context: Any) -> pb.Award:
        a = bus.award_from_pb(request.award, new_id(), date.today())
        current_caller().require_region(a.region)
        return await self.svc.decide_award(a, Idem(f"/{FULL}/DecideAward", request), current_caller().subject)

    async def ListAwards(self, request: pb.ListAwardsRequest, context: Any) -> pb.ListAwardsResponse:
        awards = await self.svc.list_awards(_scope(request.region), request.year)
        offset, limit = _page(request.page_size, request.page_token)
        page = awards[offset:offset + limit]
        return pb.ListAwardsResponse(awards=page, next_page_token=_next(offset, limit, len(page)))

    async def GetComplianceReport(self, request: pb.GetComplianceReportRequest, context: Any) -> pb.ComplianceReport:
        report = await self.svc.compliance(_scope(request.region), _period(request.period))
        return bus.compliance_pb(report, request.shortfalls_only)

    async def GetSummary(self, request: pb.GetSummaryRequest, context: Any) -> pb.Summary:
        return await self.svc.summary(_scope(request.region), _period(request.period))

    async def ListPlugins(self, request: cpb.ListPluginsRequest, context: Any) -> cpb.ListPluginsResponse:
        return list_plugins_response(self.plugins, request)


def build_runtime(config: ServiceConfig, **runtime_kw: Any) -> tuple[ServiceRuntime, EventsService, Relay]:
    """Runtime with the servicer, the outbox relay and the two consumers
    (funds booking results, members projection)."""
    rt = ServiceRuntime(config, **runtime_kw)
    relay = Relay(rt.sessions, config.nats_url, service=SERVICE, replicas=config.stream_replicas)
    svc = EventsService(rt.sessions, rt.plugins, relay.notify)
    rt.add_servicer(pb_grpc.add_EventsServiceServicer_to_server, EventsServicer(svc, rt.plugins), FULL)
    funds = Consumer(config.nats_url, stream=stream_name("funds"), durable="events-funds-results",
                     subjects=list(bus.FUNDS_SUBJECTS), handler=svc.apply_booking, sessionmaker=rt.sessions,
                     message_types=bus.FUNDS_TYPES, on_commit=relay.notify)
    members = Consumer(config.nats_url, stream=stream_name("members"), durable="events-members-projection",
                       subjects=list(bus.MEMBER_SUBJECTS), handler=svc.apply_member_event, sessionmaker=rt.sessions,
                       message_types=bus.MEMBER_TYPES)
    rt.add_background("outbox-relay", relay.run)
    rt.add_background("funds-results", funds.run)
    rt.add_background("members-projection", members.run)
    rt.on_shutdown(relay.stop)
    rt.on_shutdown(funds.stop)
    rt.on_shutdown(members.stop)
    return rt, svc, relay


def main() -> None:
    run_service(SERVICE, migrate, build_runtime)


if __name__ == "__main__":
    main()
