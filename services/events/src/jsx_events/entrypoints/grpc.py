"""gRPC EventsService: each RPC maps its request to a use case's plain arguments, and the process main.

Permissions come from each RPC's ``(jsx.common.v1.permission)`` option and are
enforced by the runtime's auth interceptor; the region scope (a county clerk
sees only that county) is checked by the use cases, which get the caller.
"""

from __future__ import annotations

from typing import Any

from jsx.common.v1 import common_pb2 as cpb
from jsx.events.v1 import events_service_pb2 as pb
from jsx.events.v1 import events_service_pb2_grpc as pb_grpc
from jsx_events import SERVICE_NAME
from jsx_events.activities import wire as activities_wire
from jsx_events.activities.service import ActivityFilter
from jsx_events.adapters import bus
from jsx_events.adapters.db import migrate
from jsx_events.awards import wire as awards_wire
from jsx_events.catalog.wire import type_code
from jsx_events.composition import EventsService
from jsx_events.plans import wire as plans_wire
from jsx_events.visits import wire as visits_wire
from jsx_events.visits.service import VisitFilter
from jsxcore import wire
from jsxcore.auth import current_caller
from jsxcore.config import ServiceConfig
from jsxcore.outbox import Consumer, Relay, stream_name
from jsxcore.plugins import PluginHost
from jsxcore.runtime.server import ServiceRuntime, list_plugins_response, run_service
from jsxcore.usecase import Idem
from jsxcore.values import Period, RegionCode

SERVICE = "events"
FULL = SERVICE_NAME


def _region(m: cpb.RegionCode) -> RegionCode | None:
    """A list's or report's ``region`` (empty: the caller's)."""
    return wire.region_from(m, "region", required=False)


def _period(m: cpb.Period) -> Period:
    period = wire.period_from(m, "period.code" if m.code else "period")
    assert period is not None  # required
    return period


class EventsServicer(pb_grpc.EventsServiceServicer):
    def __init__(self, svc: EventsService, plugins: PluginHost) -> None:
        self.svc = svc
        self.plugins = plugins

    async def CreateActivity(self, request: pb.CreateActivityRequest, context: Any) -> pb.Activity:
        return await self.svc.activities.create_activity(
            activities_wire.activity_from_pb(request.activity),
            caller=current_caller(),
            idem=Idem.of(FULL, "CreateActivity", request),
        )

    async def UpdateActivity(self, request: pb.UpdateActivityRequest, context: Any) -> pb.Activity:
        return await self.svc.activities.update_activity(
            wire.id_from(request.activity.name, "activities", "activity.name", required=False),
            activities_wire.change_of(request.activity, request.update_mask),
            caller=current_caller(),
            idem=Idem.of(FULL, "UpdateActivity", request),
        )

    async def GetActivity(self, request: pb.GetActivityRequest, context: Any) -> pb.Activity:
        return await self.svc.activities.get_activity(
            wire.id_from(request.name, "activities", "name", required=False), caller=current_caller()
        )

    async def ListActivities(self, request: pb.ListActivitiesRequest, context: Any) -> pb.ListActivitiesResponse:
        return await self.svc.activities.list_activities(
            ActivityFilter(
                region=_region(request.region),
                type=type_code(request.type, "") if request.type else "",
                status=activities_wire.status_from(request.state),
                site_id=wire.id_from(request.site, "sites", "site", required=False),
                start=wire.date_from(request.from_date, "from_date"),
                end=wire.date_from(request.to_date, "to_date"),
            ),
            page_size=request.page_size,
            page_token=request.page_token,
            caller=current_caller(),
        )

    async def RecordVisit(self, request: pb.RecordVisitRequest, context: Any) -> pb.Visit:
        return await self.svc.visits.record_visit(
            visits_wire.visit_from_pb(request.visit),
            caller=current_caller(),
            idem=Idem.of(FULL, "RecordVisit", request),
        )

    async def GetVisit(self, request: pb.GetVisitRequest, context: Any) -> pb.Visit:
        return await self.svc.visits.get_visit(
            wire.id_from(request.name, "visits", "name", required=False), caller=current_caller()
        )

    async def ListVisits(self, request: pb.ListVisitsRequest, context: Any) -> pb.ListVisitsResponse:
        return await self.svc.visits.list_visits(
            VisitFilter(
                region=_region(request.region),
                household_id=wire.id_from(request.household, "households", "household", required=False),
                state=visits_wire.state_from(request.state),
                start=wire.date_from(request.from_date, "from_date"),
                end=wire.date_from(request.to_date, "to_date"),
            ),
            page_size=request.page_size,
            page_token=request.page_token,
            caller=current_caller(),
        )

    async def CreatePlan(self, request: pb.CreatePlanRequest, context: Any) -> pb.Plan:
        return await self.svc.plans.create_plan(
            plans_wire.plan_from_pb(request.plan), caller=current_caller(), idem=Idem.of(FULL, "CreatePlan", request)
        )

    async def ListPlans(self, request: pb.ListPlansRequest, context: Any) -> pb.ListPlansResponse:
        return await self.svc.reporting.list_plans(
            _region(request.region),
            request.year,
            wire.id_from(request.site, "sites", "site", required=False),
            page_size=request.page_size,
            page_token=request.page_token,
            caller=current_caller(),
        )

    async def GetPlan(self, request: pb.GetPlanRequest, context: Any) -> pb.Plan:
        return await self.svc.reporting.get_plan(
            wire.id_from(request.name, "plans", "name", required=False), caller=current_caller()
        )

    async def CreatePlanItem(self, request: pb.CreatePlanItemRequest, context: Any) -> pb.PlanItem:
        return await self.svc.plans.add_plan_item(
            wire.id_from(request.parent, "plans", "parent", required=False),
            plans_wire.plan_item_from_pb(request.plan_item),
            caller=current_caller(),
            idem=Idem.of(FULL, "CreatePlanItem", request),
        )

    async def DecideAward(self, request: pb.DecideAwardRequest, context: Any) -> pb.Award:
        return await self.svc.awards.decide_award(
            awards_wire.nomination_from_pb(request.award),
            caller=current_caller(),
            idem=Idem.of(FULL, "DecideAward", request),
        )

    async def ListAwards(self, request: pb.ListAwardsRequest, context: Any) -> pb.ListAwardsResponse:
        return await self.svc.awards.list_awards(
            _region(request.region),
            request.year,
            page_size=request.page_size,
            page_token=request.page_token,
            caller=current_caller(),
        )

    async def GetComplianceReport(self, request: pb.GetComplianceReportRequest, context: Any) -> pb.ComplianceReport:
        return await self.svc.reporting.get_compliance_report(
            _region(request.region),
            _period(request.period),
            shortfalls_only=request.shortfalls_only,
            caller=current_caller(),
        )

    async def GetSummary(self, request: pb.GetSummaryRequest, context: Any) -> pb.Summary:
        return await self.svc.reporting.summary(
            _region(request.region), _period(request.period), caller=current_caller()
        )

    async def ListPlugins(self, request: cpb.ListPluginsRequest, context: Any) -> cpb.ListPluginsResponse:
        return list_plugins_response(self.plugins, request)


def build_runtime(config: ServiceConfig, **runtime_kw: Any) -> tuple[ServiceRuntime, EventsService, Relay]:
    """Runtime with the servicer, the outbox relay and the two consumers
    (funds booking results, members projection)."""
    rt = ServiceRuntime(config, **runtime_kw)
    relay = Relay(rt.sessions, config.nats_url, service=SERVICE, replicas=config.stream_replicas)
    svc = EventsService.build(rt.sessions, rt.plugins, relay.notify)
    rt.add_servicer(pb_grpc.add_EventsServiceServicer_to_server, EventsServicer(svc, rt.plugins), FULL)
    funds = Consumer(
        config.nats_url,
        stream=stream_name("funds"),
        durable="events-funds-results",
        subjects=list(bus.FUNDS_SUBJECTS),
        handler=svc.apply_booking,
        sessionmaker=rt.sessions,
        message_types=bus.FUNDS_TYPES,
        on_commit=relay.notify,
    )
    members = Consumer(
        config.nats_url,
        stream=stream_name("members"),
        durable="events-members-projection",
        subjects=list(bus.MEMBER_SUBJECTS),
        handler=svc.apply_member_event,
        sessionmaker=rt.sessions,
        message_types=bus.MEMBER_TYPES,
    )
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
