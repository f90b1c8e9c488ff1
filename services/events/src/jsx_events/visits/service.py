"""Visit use cases: RecordVisit, GetVisit, ListVisits; funds' booking results; the visit reads
the reporting context uses."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.events.v1 import events_service_pb2 as pb
from jsx_events import SERVICE_NAME
from jsx_events.adapters import bus
from jsx_events.adapters.db import newest_first
from jsx_events.projections.service import ProjectionsService
from jsx_events.scope import Named, check_region, place, region_asked
from jsx_events.visits.domain import BookingResult, Visit, VisitState
from jsx_events.visits.tables import VisitRow
from jsx_events.visits.wire import visit_pb
from jsxcore import paging
from jsxcore.auth import Caller
from jsxcore.errors import NotFound
from jsxcore.outbox import add_event, subject_of
from jsxcore.usecase import Idem, mutate
from jsxcore.values import RegionCode

log = logging.getLogger("jsx.events")


@dataclass(frozen=True)
class VisitFilter:
    """What ListVisits narrows to; ``region`` None = the caller's region."""

    region: RegionCode | None = None
    household_id: str = ""
    state: VisitState | None = None
    start: date | None = None
    end: date | None = None


class VisitsService:
    """Visits; the household, site and volunteer a visit names are checked against the member
    projection through :class:`ProjectionsService`."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        projections: ProjectionsService,
        notify: Callable[[], None] = lambda: None,
    ) -> None:
        self.sessions = sessions
        self.projections = projections
        self.notify = notify

    async def _check_named(self, s: AsyncSession, v: Visit, caller: Caller | None) -> None:
        """The household (and its village), the site and the visitor ``v`` names exist and lie
        in the caller's scope (:class:`~jsx_events.scope.Named`)."""
        named = Named(caller)
        fam = await self.projections.name_household(s, named, "visit.household", v.household_id)
        if fam is not None and fam.region != v.region:
            named.mismatch(
                "visit.region",
                f"该户所在村为{place(fam.region)}（{fam.region.short}，成员服务登记），"
                f"与填写的{place(v.region)}（{v.region.short}）不一致",
            )
        if v.site_id:
            await self.projections.name_site(s, named, "visit.site", v.site_id)
        kind, _, tail = v.visitor_id.partition("/")
        if kind == "volunteers" and tail and "/" not in tail:
            await self.projections.name_volunteer(s, named, "visit.visitor", v.visitor_id)
        elif not (kind == "persons" and tail and "/" not in tail):
            # persons are not projected into events: a staff visitor is taken as named
            named.mismatch(
                "visit.visitor",
                f"走访人“{v.visitor_id[:80]}”格式不对，应写成 volunteers/编号（志愿者）或 persons/编号（工作人员）",
            )
        named.check("走访慰问信息有误，请按字段说明修改后重试")

    async def record_visit(self, v: Visit, *, caller: Caller | None, idem: Idem | None = None) -> pb.Visit:
        """Record a visit to a household in the caller's region. The household, its village, the
        site and the visitor must be known to events and inside the caller's scope. With 慰问金,
        publishes VisitRecorded; funds books the money from it and answers (:meth:`apply_booking`)."""
        check_region(caller, v.region)
        v = replace(v, id=v.id or str(uuid.uuid4())).recorded()

        async def work(s: AsyncSession) -> pb.Visit:
            await self._check_named(s, v, caller)
            row = VisitRow(created_by=caller.subject if caller else "")
            row.set_from(v)
            s.add(row)
            if v.amount:
                add_event(s, subject_of(ev := bus.visit_recorded_event(v)), ev)
            await s.flush()
            return visit_pb(v, row.created_at, row.updated_at)

        return await mutate(self.sessions, idem, pb.Visit, work, caller=caller, notify=self.notify)

    async def get_visit(self, id_: str, *, caller: Caller | None) -> pb.Visit:
        async with self.sessions() as s:
            row = await s.get(VisitRow, id_)
            if row is None:
                raise NotFound(f"走访记录 visits/{id_} 不存在", reason="VISIT_NOT_FOUND")
            v = row.to_domain()
            check_region(caller, v.region)
            return visit_pb(v, row.created_at, row.updated_at)

    async def list_visits(
        self, f: VisitFilter, *, page_size: int = 0, page_token: str = "", caller: Caller | None
    ) -> pb.ListVisitsResponse:
        """Visits in the region (and filters) asked for, newest first."""
        region = region_asked(caller, f.region)
        page = paging.page(
            page_size,
            page_token,
            query=f"{SERVICE_NAME}/ListVisits",
            filters=(region.code, f.household_id, f.state or "", f.start or "", f.end or ""),
        )
        q = select(VisitRow).where(VisitRow.region.like(region.prefix + "%"))
        if f.household_id:
            q = q.where(VisitRow.household_id == f.household_id)
        if f.state:
            q = q.where(VisitRow.state == f.state.value)
        if f.start:
            q = q.where(VisitRow.visited_on >= f.start)
        if f.end:
            q = q.where(VisitRow.visited_on <= f.end)
        async with self.sessions() as s:
            rows = list(await s.scalars(newest_first(page, q, VisitRow.visited_on, VisitRow.id)))
        rows, token = page.cut(rows, key=lambda r: (r.visited_on.toordinal(), r.id))
        return pb.ListVisitsResponse(
            visits=[visit_pb(r.to_domain(), r.created_at, r.updated_at) for r in rows], next_page_token=token
        )

    async def apply_booking(self, s: AsyncSession, result: BookingResult, *, event_id: str = "") -> None:
        """Funds' answer (jsx.funds.visit_expense.*): the visit becomes BOOKED or REJECTED.
        The consumer's inbox makes a redelivered result a no-op; a repeated result with a
        new event id is absorbed by the domain's idempotent transitions."""
        row = await s.get(VisitRow, result.visit_id, with_for_update=True)
        if row is None:
            raise NotFound(f"资金服务回执指向的走访记录 visits/{result.visit_id} 不存在", reason="VISIT_NOT_FOUND")
        v = row.to_domain().answered(result)
        row.set_from(v)
        log.info("visit.booking_result", extra={"visit": result.visit_id, "state": v.state.value, "event_id": event_id})

    # ---------------------------------------------------------- reads for other contexts (in their session)

    async def in_region(self, s: AsyncSession, region: RegionCode, start: date, end: date) -> list[Visit]:
        """Visits in ``region`` between ``start`` and ``end``."""
        rows = await s.scalars(
            select(VisitRow).where(
                VisitRow.region.like(region.prefix + "%"), VisitRow.visited_on >= start, VisitRow.visited_on <= end
            )
        )
        return [r.to_domain() for r in rows]
