"""Award use cases: DecideAward, ListAwards; the award reads the reporting context uses."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.events.v1 import events_service_pb2 as pb
from jsx_events import SERVICE_NAME
from jsx_events.adapters import bus
from jsx_events.awards.domain import AWARD_LABELS, Award, Nomination
from jsx_events.awards.tables import AwardRow
from jsx_events.awards.wire import award_pb
from jsx_events.scope import check_region, region_asked
from jsxcore import paging
from jsxcore.auth import Caller
from jsxcore.errors import AlreadyExists
from jsxcore.outbox import add_event, subject_of
from jsxcore.usecase import Idem, mutate
from jsxcore.values import RegionCode


class AwardsService:
    """``today`` is the day a decision is recorded on."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        notify: Callable[[], None] = lambda: None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.sessions = sessions
        self.notify = notify
        self.today = today

    async def decide_award(self, n: Nomination, *, caller: Caller | None, idem: Idem | None = None) -> pb.Award:
        """Record the decision of an association in the caller's region (one per kind, nominee,
        association and year); publishes AwardDecided."""
        check_region(caller, n.region)
        a = n.decided(str(uuid.uuid4()), self.today())
        actor = caller.subject if caller else ""

        async def work(s: AsyncSession) -> pb.Award:
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
