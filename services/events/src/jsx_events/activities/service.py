"""Activity use cases: CreateActivity, UpdateActivity, GetActivity, ListActivities,
and the activity reads the reporting context uses."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.events.v1 import events_service_pb2 as pb
from jsx_events import SERVICE_NAME
from jsx_events.activities.domain import Activity, ActivityChange, ActivityStatus, plan_link_problems
from jsx_events.activities.tables import ActivityRow
from jsx_events.activities.wire import activity_pb
from jsx_events.adapters import bus
from jsx_events.adapters.db import newest_first
from jsx_events.catalog.domain import plugin_code
from jsx_events.catalog.service import Catalog
from jsx_events.plans.domain import item_name
from jsx_events.plans.service import PlansService
from jsx_events.projections.service import ProjectionsService
from jsx_events.scope import Named, check_region, region_asked
from jsxcore import paging
from jsxcore.auth import Caller
from jsxcore.errors import ErrorCollector, NotFound
from jsxcore.outbox import add_event, subject_of
from jsxcore.usecase import Idem, mutate
from jsxcore.values import RegionCode


@dataclass(frozen=True)
class ActivityFilter:
    """What ListActivities narrows to; ``region`` None = the caller's region."""

    region: RegionCode | None = None
    type: str = ""
    status: ActivityStatus | None = None
    site_id: str = ""
    start: date | None = None
    end: date | None = None


def _not_found(id_: str) -> NotFound:
    return NotFound(f"活动 activities/{id_} 不存在", reason="ACTIVITY_NOT_FOUND")


class ActivitiesService:
    """Activities; a link to a plan item is checked against the plan through :class:`PlansService`."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        catalog: Catalog,
        plans: PlansService,
        projections: ProjectionsService,
        notify: Callable[[], None] = lambda: None,
    ) -> None:
        self.sessions = sessions
        self.catalog = catalog
        self.plans = plans
        self.projections = projections
        self.notify = notify

    async def _check_site(self, s: AsyncSession, a: Activity, caller: Caller | None) -> None:
        """The site ``a`` names exists (member projection) and lies in the caller's scope."""
        if a.site_id:
            named = Named(caller)
            await self.projections.name_site(s, named, "activity.site", a.site_id)
            named.check("活动信息有误，请按字段说明修改后重试")

    async def _check_plan_link(self, s: AsyncSession, a: Activity, caller: Caller | None) -> None:
        """Refuse (InvalidArgument, field ``activity.plan_item``) a plan item ``a`` cannot fulfil."""
        if not a.plan_item_id:
            return
        plan, item = await self.plans.plan_with_item(s, a.plan_id, a.plan_item_id)
        problems = plan_link_problems(
            a,
            plan,
            item,
            caller.region if caller else None,
            item_name(a.plan_id, a.plan_item_id),
            custom_labels=await self.catalog.activity_types(a.region),
        )
        if problems:
            errs = ErrorCollector()
            for f, msg in problems:
                errs.add(f, msg)
            errs.raise_if_any("活动不能对应所选的年度计划项，请按字段说明修改后重试", reason="INVALID_PLAN_ITEM")

    async def create_activity(self, a: Activity, *, caller: Caller | None, idem: Idem | None = None) -> pb.Activity:
        """Record an activity organised in the caller's region. The site it names must be known
        and in that region; a plan item it names must belong to a plan inside that region too.
        Held: publishes ActivityHeld."""
        check_region(caller, a.region)
        custom = await self.catalog.activity_types(a.region)
        a = replace(a, id=a.id or str(uuid.uuid4()), type=plugin_code(a.type, custom))
        a.validate(custom)

        async def work(s: AsyncSession) -> pb.Activity:
            await self._check_site(s, a, caller)
            await self._check_plan_link(s, a, caller)
            row = ActivityRow(created_by=caller.subject if caller else "")
            row.set_from(a)
            s.add(row)
            if a.status is ActivityStatus.HELD:
                add_event(s, subject_of(ev := bus.activity_held_event(a)), ev)
            await s.flush()
            return activity_pb(a, row.created_at, row.updated_at)

        return await mutate(self.sessions, idem, pb.Activity, work, caller=caller, notify=self.notify)

    async def update_activity(
        self, id_: str, change: ActivityChange, *, caller: Caller | None, idem: Idem | None = None
    ) -> pb.Activity:
        """Apply ``change`` to a stored activity in the caller's region; it must stay in that region,
        and a cancelled activity cannot become held. Becoming held publishes ActivityHeld once.
        The plan item link is checked again when it or what it depends on changes."""

        async def work(s: AsyncSession) -> pb.Activity:
            row = await s.get(ActivityRow, id_, with_for_update=True)
            if row is None:
                raise _not_found(id_)
            before = row.to_domain()
            check_region(caller, before.region)
            after = change(before)
            custom = await self.catalog.activity_types(after.region)
            after = replace(after, type=plugin_code(after.type, custom))
            if after.region != before.region:
                check_region(caller, after.region)  # no moving an activity out of one's scope
            before.check_change(after)
            after.validate(custom)
            if after.site_id != before.site_id:
                await self._check_site(s, after, caller)
            if after.link_key != before.link_key:
                await self._check_plan_link(s, after, caller)
            row.set_from(after)
            if after.status is ActivityStatus.HELD and before.status is not ActivityStatus.HELD:
                add_event(s, subject_of(ev := bus.activity_held_event(after)), ev)
            await s.flush()
            return activity_pb(after, row.created_at, row.updated_at)

        return await mutate(self.sessions, idem, pb.Activity, work, caller=caller, notify=self.notify)

    async def get_activity(self, id_: str, *, caller: Caller | None) -> pb.Activity:
        async with self.sessions() as s:
            row = await s.get(ActivityRow, id_)
            if row is None:
                raise _not_found(id_)
            a = row.to_domain()
            check_region(caller, a.region)
            return activity_pb(a, row.created_at, row.updated_at)

    async def list_activities(
        self, f: ActivityFilter, *, page_size: int = 0, page_token: str = "", caller: Caller | None
    ) -> pb.ListActivitiesResponse:
        """Activities in the region (and filters) asked for, newest first."""
        region = region_asked(caller, f.region)
        page = paging.page(
            page_size,
            page_token,
            query=f"{SERVICE_NAME}/ListActivities",
            filters=(region.code, f.type, f.status or "", f.site_id, f.start or "", f.end or ""),
        )
        q = select(ActivityRow).where(ActivityRow.region.like(region.prefix + "%"))
        if f.type:
            q = q.where(ActivityRow.type == f.type)
        if f.status:
            q = q.where(ActivityRow.status == f.status.value)
        if f.site_id:
            q = q.where(ActivityRow.site_id == f.site_id)
        if f.start:
            q = q.where(ActivityRow.start_date >= f.start)
        if f.end:
            q = q.where(ActivityRow.start_date <= f.end)
        async with self.sessions() as s:
            rows = list(await s.scalars(newest_first(page, q, ActivityRow.start_date, ActivityRow.id)))
        rows, token = page.cut(rows, key=lambda r: (r.start_date.toordinal(), r.id))
        return pb.ListActivitiesResponse(
            activities=[activity_pb(r.to_domain(), r.created_at, r.updated_at) for r in rows], next_page_token=token
        )

    # ---------------------------------------------------------- reads for other contexts (in their session)

    async def in_region(self, s: AsyncSession, region: RegionCode, start: date, end: date) -> list[Activity]:
        """Activities organised in ``region`` starting between ``start`` and ``end``."""
        rows = await s.scalars(
            select(ActivityRow).where(
                ActivityRow.region.like(region.prefix + "%"),
                ActivityRow.start_date >= start,
                ActivityRow.start_date <= end,
            )
        )
        return [r.to_domain() for r in rows]

    async def get(self, s: AsyncSession, id_: str) -> Activity | None:
        """The activity ``id_`` (None when there is none)."""
        row = await s.get(ActivityRow, id_)
        return row.to_domain() if row is not None else None

    async def linked_to(self, s: AsyncSession, plan_ids: list[str]) -> list[Activity]:
        """Activities linked to an item of any of these plans (for their fulfilment)."""
        if not plan_ids:
            return []
        rows = await s.scalars(
            select(ActivityRow).where(ActivityRow.plan_id.in_(plan_ids), ActivityRow.plan_item_id != "")
        )
        return [r.to_domain() for r in rows]
