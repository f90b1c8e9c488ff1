"""Award use cases: DecideAward, ListAwards; the award reads the reporting context uses."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.events.v1 import events_service_pb2 as pb
from jsx_events import SERVICE_NAME
from jsx_events.activities.service import ActivitiesService
from jsx_events.adapters import bus
from jsx_events.awards.domain import AWARD_LABELS, Award, Nomination
from jsx_events.awards.tables import AwardRow
from jsx_events.awards.wire import award_pb
from jsx_events.projections.service import ProjectionsService
from jsx_events.scope import Named, check_region, place, region_asked
from jsxcore import paging
from jsxcore.auth import Caller
from jsxcore.errors import AlreadyExists, InvalidArgument
from jsxcore.outbox import add_event, subject_of
from jsxcore.regions import registry
from jsxcore.usecase import Idem, mutate
from jsxcore.values import RegionCode


class AwardsService:
    """``today`` is the day a decision is recorded on. The nominee and the selection activity a
    decision names are checked through :class:`ProjectionsService` and :class:`ActivitiesService`."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        projections: ProjectionsService,
        activities: ActivitiesService,
        notify: Callable[[], None] = lambda: None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.sessions = sessions
        self.projections = projections
        self.activities = activities
        self.notify = notify
        self.today = today

    async def _nominee_place(self, s: AsyncSession, named: Named, nominee: str) -> RegionCode | None:
        """Where the nominee is, from events' own data (None: not known here — a person)."""
        kind, _, tail = nominee.partition("/")
        well_formed = bool(tail) and "/" not in tail
        if kind == "households" and well_formed:
            fam = await self.projections.name_household(s, named, "award.nominee", tail)
            return fam.region if fam else None
        if kind == "sites" and well_formed:
            site = await self.projections.name_site(s, named, "award.nominee", tail)
            return site.region if site else None
        if kind == "regions" and well_formed:
            try:
                code = RegionCode.parse(tail, field="award.nominee")
            except InvalidArgument:
                code = None
            if code is None or registry().get(code) is None:
                named.unknown(
                    "award.nominee", f"区划“{tail[:20]}”不存在：请填写统计用区划代码，如 regions/431281101201"
                )
                return None
            named.placed("award.nominee", f"{place(code)}（{code.short}）", (code,))
            return code
        if not (kind == "persons" and well_formed):
            named.mismatch(
                "award.nominee",
                f"被推荐对象“{nominee[:80]}”格式不对，应写成 persons/编号、households/编号、sites/编号 或 regions/区划代码",
            )
        return None  # persons are not projected into events

    async def _check_named(self, s: AsyncSession, n: Nomination, a: Award, caller: Caller | None) -> Award:
        """The nominee and the selection activity exist and lie in the caller's scope; a nominee
        events can place must be inside the awarding association's region, and its region is
        taken from events' data (a typed ``nominee_region`` must agree)."""
        named = Named(caller)
        where = await self._nominee_place(s, named, a.nominee_id)
        if where is not None:
            if n.nominee_region is not None and n.nominee_region != where:
                named.mismatch(
                    "award.nominee_region",
                    f"被推荐对象在{place(where)}（{where.short}），与填写的{place(n.nominee_region)}"
                    f"（{n.nominee_region.short}）不一致",
                )
            elif not a.region.contains(where):
                named.mismatch(
                    "award.nominee",
                    f"被推荐对象在{place(where)}，不在评选单位（{place(a.region)}计生协）的范围内",
                )
            a = replace(a, nominee_region=where)
        if a.activity_id:
            act = await self.activities.get(s, a.activity_id)
            if act is None:
                named.unknown("award.activity", f"评选活动 activities/{a.activity_id} 不存在")
            else:
                named.placed("award.activity", f"评选活动 activities/{a.activity_id}", (act.region,))
        named.check("评选表彰信息有误，请按字段说明修改后重试")
        return a

    async def decide_award(self, n: Nomination, *, caller: Caller | None, idem: Idem | None = None) -> pb.Award:
        """Record the decision of an association in the caller's region (one per kind, nominee,
        association and year); publishes AwardDecided. The nominee (``households/…``,
        ``sites/…``, ``regions/…``; ``persons/…`` as given) and the selection activity must be
        known to events, inside the caller's scope and, for the nominee, the association's."""
        check_region(caller, n.region)
        decided = n.decided(str(uuid.uuid4()), self.today())
        actor = caller.subject if caller else ""

        async def work(s: AsyncSession) -> pb.Award:
            a = await self._check_named(s, n, decided, caller)
            dup = await s.scalar(
                select(AwardRow.id).where(
                    AwardRow.kind == a.kind,
                    AwardRow.nominee_id == a.nominee_id,
                    AwardRow.region == a.region.code,
                    AwardRow.year == a.year,
                )
            )
            if dup:
                raise AlreadyExists(
                    f"{a.year}年该对象的“{AWARD_LABELS.get(a.kind, a.kind)}”评选已有结果（awards/{dup}）",
                    reason="AWARD_ALREADY_DECIDED",
                    metadata={"award": f"awards/{dup}"},
                )
            row = AwardRow.of(a, actor)
            s.add(row)
            add_event(s, subject_of(ev := bus.award_decided_event(a)), ev)
            await s.flush()
            return award_pb(a, actor, row.created_at)

        return await mutate(self.sessions, idem, pb.Award, work, caller=caller, notify=self.notify)

    async def list_awards(
        self,
        region: RegionCode | None,
        year: int = 0,
        *,
        page_size: int = 0,
        page_token: str = "",
        caller: Caller | None,
    ) -> pb.ListAwardsResponse:
        """Decisions of associations in the region asked for (None: the caller's), by year."""
        region = region_asked(caller, region)
        page = paging.page(page_size, page_token, query=f"{SERVICE_NAME}/ListAwards", filters=(region.code, year))
        q = select(AwardRow).where(AwardRow.region.like(region.prefix + "%"))
        if year:
            q = q.where(AwardRow.year == year)
        async with self.sessions() as s:
            rows = list(await s.scalars(page.apply(q, AwardRow.year, AwardRow.id)))
        rows, token = page.cut(rows, key=lambda r: (r.year, r.id))
        return pb.ListAwardsResponse(
            awards=[award_pb(r.to_domain(), r.created_by, r.created_at) for r in rows], next_page_token=token
        )

    # ---------------------------------------------------------- reads for other contexts (in their session)

    async def in_region(self, s: AsyncSession, region: RegionCode, years: range) -> list[Award]:
        """Decisions of associations in ``region`` for ``years``."""
        rows = await s.scalars(
            select(AwardRow).where(AwardRow.region.like(region.prefix + "%"), AwardRow.year.in_(list(years)))
        )
        return [r.to_domain() for r in rows]
