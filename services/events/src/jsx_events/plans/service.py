"""Plan use cases (CreatePlan, CreatePlanItem) and the plan lookups other contexts use.

GetPlan and ListPlans show each item's fulfilment by activities: they are the
reporting context's use cases, which read plans through :class:`PlansService`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from jsx.events.v1 import events_service_pb2 as pb
from jsx_events.catalog.domain import plugin_code
from jsx_events.catalog.service import Catalog
from jsx_events.plans.domain import ItemProgress, Plan, PlanItem
from jsx_events.plans.tables import PlanItemRow, PlanRow
from jsx_events.plans.wire import plan_item_pb, plan_pb
from jsx_events.projections.service import ProjectionsService
from jsx_events.scope import Named, check_region, place
from jsxcore.auth import Caller
from jsxcore.errors import AlreadyExists, NotFound
from jsxcore.paging import Page
from jsxcore.usecase import Idem, mutate
from jsxcore.values import RegionCode


def _new_id() -> str:
    return str(uuid.uuid4())


def _not_found(plan_id: str) -> NotFound:
    return NotFound(f"年度计划 plans/{plan_id} 不存在", reason="PLAN_NOT_FOUND")


class PlansService:
    """Plans; a site plan's site is checked against the member projection (:class:`ProjectionsService`)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        catalog: Catalog,
        projections: ProjectionsService,
        notify: Callable[[], None] = lambda: None,
    ) -> None:
        self.sessions = sessions
        self.catalog = catalog
        self.projections = projections
        self.notify = notify

    async def _check_site(self, s: AsyncSession, p: Plan, caller: Caller | None) -> None:
        """A site plan's site exists, lies in the caller's scope and in the plan's region."""
        if not p.site_id:
            return
        named = Named(caller)
        site = await self.projections.name_site(s, named, "plan.site", p.site_id)
        if site is not None and not p.region.contains(site.region):
            named.mismatch(
                "plan.site",
                f"阵地 {site.name} 在{place(site.region)}，不在计划所属的{place(p.region)}范围内"
                "（阵地计划请填写阵地所在村）",
            )
        named.check("年度计划有误，请按字段说明修改后重试")

    async def create_plan(self, p: Plan, *, caller: Caller | None, idem: Idem | None = None) -> pb.Plan:
        """Record an annual plan (one per association or site and year); ids left empty are assigned.
        A site plan's site must be known, in the caller's scope and inside the plan's region."""
        check_region(caller, p.region)
        custom = await self.catalog.activity_types(p.region)
        p = replace(
            p,
            id=p.id or _new_id(),
            items=tuple(replace(i, id=i.id or _new_id(), type=plugin_code(i.type, custom)) for i in p.items),
        )
        p.validate(custom)

        async def work(s: AsyncSession) -> pb.Plan:
            await self._check_site(s, p, caller)
            dup = await s.scalar(
                select(PlanRow.id).where(
                    PlanRow.region == p.region.code, PlanRow.site_id == p.site_id, PlanRow.year == p.year
                )
            )
            if dup:
                raise AlreadyExists(
                    f"{p.year}年的年度计划已登记（plans/{dup}），如需调整请修改原计划",
                    reason="PLAN_EXISTS",
                    metadata={"plan": f"plans/{dup}"},
                )
            row = PlanRow.of(p)
            s.add(row)
            await s.flush()
            return plan_pb(p, row.created_at)

        return await mutate(self.sessions, idem, pb.Plan, work, caller=caller, notify=self.notify)

    async def add_plan_item(
        self, plan_id: str, item: PlanItem, *, caller: Caller | None, idem: Idem | None = None
    ) -> pb.PlanItem:
        """Append ``item`` to a recorded plan in the caller's region (a plan is adjusted, not
        registered twice); returns the new item. Violations name ``plan_item.*`` (CreatePlanItem's field)."""
        item = replace(item, id=item.id or _new_id())

        async def work(s: AsyncSession) -> pb.PlanItem:
            row = await s.scalar(
                select(PlanRow).options(selectinload(PlanRow.items)).where(PlanRow.id == plan_id).with_for_update()
            )
            if row is None:
                raise _not_found(plan_id)
            plan = row.to_domain()
            check_region(caller, plan.region)
            custom = await self.catalog.activity_types(plan.region)
            added = replace(item, type=plugin_code(item.type, custom))
            added.check(custom)
            row.items.append(PlanItemRow.of(added, max((i.position for i in row.items), default=-1) + 1))
            await s.flush()
            return plan_item_pb(plan_id, ItemProgress(added))  # new: nothing links to it yet

        return await mutate(self.sessions, idem, pb.PlanItem, work, caller=caller, notify=self.notify)

    # ---------------------------------------------------------- reads for other contexts (in their session)

    async def plan_with_item(self, s: AsyncSession, plan_id: str, item_id: str) -> tuple[Plan | None, PlanItem | None]:
        """The plan and its item ``item_id`` (None, None when the plan is missing; the plan and None
        when it has no such item)."""
        row = await s.scalar(select(PlanRow).options(selectinload(PlanRow.items)).where(PlanRow.id == plan_id))
        if row is None:
            return None, None
        plan = row.to_domain()
        return plan, plan.item(item_id)

    async def get(self, s: AsyncSession, plan_id: str) -> tuple[Plan, datetime]:
        """The plan and when it was recorded; NotFound (``PLAN_NOT_FOUND``) when there is none."""
        row = await s.scalar(select(PlanRow).options(selectinload(PlanRow.items)).where(PlanRow.id == plan_id))
        if row is None:
            raise _not_found(plan_id)
        return row.to_domain(), row.created_at

    async def page(
        self, s: AsyncSession, region: RegionCode, year: int, site_id: str, page: Page
    ) -> tuple[list[tuple[Plan, datetime]], str]:
        """One page of the plans in ``region`` (optionally of a year and a site), by year and id."""
        q = select(PlanRow).options(selectinload(PlanRow.items)).where(PlanRow.region.like(region.prefix + "%"))
        if year:
            q = q.where(PlanRow.year == year)
        if site_id:
            q = q.where(PlanRow.site_id == site_id)
        rows, token = page.cut(
            list(await s.scalars(page.apply(q, PlanRow.year, PlanRow.id))), key=lambda r: (r.year, r.id)
        )
        return [(r.to_domain(), r.created_at) for r in rows], token

    async def in_region(self, s: AsyncSession, region: RegionCode, years: range) -> list[Plan]:
        """Every plan in ``region`` for ``years``."""
        rows = await s.scalars(
            select(PlanRow)
            .options(selectinload(PlanRow.items))
            .where(PlanRow.region.like(region.prefix + "%"), PlanRow.year.in_(list(years)))
        )
        return [r.to_domain() for r in rows]
