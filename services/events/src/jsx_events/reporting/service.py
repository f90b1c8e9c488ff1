"""Report use cases: GetPlan and ListPlans (each item's fulfilment), GetComplianceReport, GetSummary.

Everything is read through the other contexts' services, in one session per report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.events.v1 import events_service_pb2 as pb
from jsx_events import SERVICE_NAME
from jsx_events.activities.service import ActivitiesService
from jsx_events.awards.domain import AwardDecision
from jsx_events.awards.service import AwardsService
from jsx_events.catalog.service import Catalog
from jsx_events.plans.domain import item_name
from jsx_events.plans.service import PlansService
from jsx_events.plans.wire import plan_pb
from jsx_events.projections.service import ProjectionsService
from jsx_events.reporting.domain import (
    ComplianceReport,
    Facts,
    RegionUnit,
    Target,
    compute_compliance,
    is_community,
    plan_progress,
    summarize,
)
from jsx_events.reporting.wire import compliance_pb, summary_pb
from jsx_events.scope import check_region, region_asked
from jsx_events.visits.service import VisitsService
from jsxcore import paging
from jsxcore.auth import Caller
from jsxcore.plugins import PluginHost
from jsxcore.regions import registry
from jsxcore.values import Period, RegionCode, RegionLevel


def region_units(region: RegionCode, levels: Iterable[RegionLevel]) -> list[RegionUnit]:
    """The townships or villages (``levels``) the region registry lists inside ``region``."""
    reg = registry()
    return [
        RegionUnit(r.code, r.local_name, level is RegionLevel.VILLAGE and is_community(r.name))
        for level in sorted(set(levels))
        if level > region.level
        for r in reg.descendants(region, level=level)
    ]


def region_names(facts: Facts, region: RegionCode) -> dict[str, str]:
    """Names for every region code a report may show (registry names, as a clerk reads them)."""
    reg = registry()
    codes = {
        region,
        *(u.code for u in facts.units),
        *(s.region for s in facts.sites),
        *(f.region for f in facts.families),
    }
    names = {u.code.code: u.name for u in facts.units}
    for code in codes:
        if code.code not in names and (known := reg.get(code)) is not None:
            names[code.code] = known.local_name
    return names


class ReportingService:
    """``today`` bounds what a report counts (a running window is DUE, not SHORT)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        plugins: PluginHost,
        catalog: Catalog,
        *,
        plans: PlansService,
        activities: ActivitiesService,
        visits: VisitsService,
        awards: AwardsService,
        projections: ProjectionsService,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.sessions = sessions
        self.plugins = plugins
        self.catalog = catalog
        self.plans = plans
        self.activities = activities
        self.visits = visits
        self.awards = awards
        self.projections = projections
        self.today = today

    # ---------------------------------------------------------- plan fulfilment

    async def get_plan(self, plan_id: str, *, caller: Caller | None) -> pb.Plan:
        """A plan in the caller's region, each item with the activities that fulfil it."""
        async with self.sessions() as s:
            plan, created = await self.plans.get(s, plan_id)
            check_region(caller, plan.region)
            linked = await self.activities.linked_to(s, [plan_id])
        return plan_pb(plan, created, plan_progress(plan, linked))

    async def late_activities(self, plan_id: str, *, caller: Caller | None) -> dict[str, tuple[str, ...]]:
        """Per plan item (``plans/{plan}/items/{item}``), the activities linked to it but held after its
        deadline (``activities/{id}``): they do not fulfil it, and GetPlan does not list them."""
        async with self.sessions() as s:
            plan, _ = await self.plans.get(s, plan_id)
            check_region(caller, plan.region)
            linked = await self.activities.linked_to(s, [plan_id])
        return {
            item_name(plan.id, g.item.id): tuple(f"activities/{a}" for a in g.late_ids)
            for g in plan_progress(plan, linked)
            if g.late_ids
        }

    async def list_plans(
        self,
        region: RegionCode | None,
        year: int = 0,
        site_id: str = "",
        *,
        page_size: int = 0,
        page_token: str = "",
        caller: Caller | None,
    ) -> pb.ListPlansResponse:
        """Plans in the region asked for (None: the caller's), by year, each item with its fulfilment."""
        region = region_asked(caller, region)
        page = paging.page(
            page_size, page_token, query=f"{SERVICE_NAME}/ListPlans", filters=(region.code, year, site_id)
        )
        async with self.sessions() as s:
            plans, token = await self.plans.page(s, region, year, site_id, page)
            linked = await self.activities.linked_to(s, [p.id for p, _ in plans])
        return pb.ListPlansResponse(
            plans=[plan_pb(p, created, plan_progress(p, linked)) for p, created in plans], next_page_token=token
        )

    # ---------------------------------------------------------- cadence compliance

    async def targets(self, region: RegionCode, period: Period) -> list[Target]:
        """The region plugin's cadence targets for each year of ``period``."""
        out: list[Target] = []
        for year in range(period.start.year, period.end.year + 1):
            dec = await self.plugins.acall("jsx_cadence_targets", region, year=year)
            out += [Target.from_plugin(t, f"{dec.plugin} {dec.plugin_version}") for t in (dec.value or ())]
        return out

    async def facts(self, region: RegionCode, period: Period, levels: Iterable[RegionLevel] = ()) -> Facts:
        """Everything the cadence computation reads for ``region`` and ``period``; with ``levels``,
        the region registry's units of those levels inside ``region`` (every village …)."""
        years = range(period.start.year, period.end.year + 1)
        first = date(period.start.year, 1, 1)  # yearly and semester windows reach back before a quarter
        async with self.sessions() as s:
            plans = await self.plans.in_region(s, region, years)
            facts = Facts(
                sites=await self.projections.sites_in(s, region, period.start),
                families=await self.projections.families_in(s, region),
                activities=await self.activities.in_region(s, region, first, period.end),
                visits=await self.visits.in_region(s, region, first, period.end),
                plans=plans,
                awards=await self.awards.in_region(s, region, years),
                plan_activities=await self.activities.linked_to(s, [p.id for p in plans]),
                units=region_units(region, levels),
            )
        return replace(facts, region_names=region_names(facts, region))

    async def compliance(
        self, region: RegionCode | None, period: Period, *, caller: Caller | None, today: date | None = None
    ) -> ComplianceReport:
        """Every cadence target for every subject and window of ``period`` in the region asked for."""
        region = region_asked(caller, region)
        targets = await self.targets(region, period)
        facts = await self.facts(region, period, {t.level for t in targets if t.level is not None})
        custom = await self.catalog.activity_types(region)
        return compute_compliance(targets, region, period, facts, today=today or self.today(), custom_labels=custom)

    async def get_compliance_report(
        self, region: RegionCode | None, period: Period, *, shortfalls_only: bool = False, caller: Caller | None
    ) -> pb.ComplianceReport:
        return compliance_pb(await self.compliance(region, period, caller=caller), shortfalls_only)

    # ---------------------------------------------------------- summary

    async def summary(self, region: RegionCode | None, period: Period, *, caller: Caller | None) -> pb.Summary:
        """Held activities, people reached, outputs, 慰问服务 and 慰问金 of the region asked for,
        in the reports' style."""
        region = region_asked(caller, region)
        async with self.sessions() as s:
            acts = await self.activities.in_region(s, region, period.start, period.end)
            visits = await self.visits.in_region(s, region, period.start, period.end)
            awards = [
                a
                for a in await self.awards.in_region(s, region, range(period.start.year, period.end.year + 1))
                if a.decision is AwardDecision.AWARDED and period.contains(a.decided_on)
            ]
        summary = summarize(region, period, acts, visits, await self.catalog.activity_types(region))
        return summary_pb(summary, visits, len(awards))
