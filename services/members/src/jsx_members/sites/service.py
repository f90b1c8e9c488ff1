"""Sites use cases: open (挂牌), change name, address, 六有 checklist and
manager, close (摘牌 — the record is kept), read and list."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.members.v1 import members_pb2 as pb
from jsx_members.adapters import bus, db
from jsx_members.persons.service import PersonsService
from jsx_members.sites import wire
from jsx_members.sites.domain import NewSite, SiteKind, SiteUpdate, SixHaves, check_closing, require_open, validate_site
from jsx_members.sites.tables import SiteRow
from jsxcore.auth import Caller
from jsxcore.paging import Page
from jsxcore.usecase import Idem, mutate
from jsxcore.values import RegionCode


class SitesService:
    """Use cases of the sites context. ``today`` is injectable for tests."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        persons: PersonsService,
        *,
        notify: Callable[[], None] | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.sessions = sessions
        self.persons = persons
        self.notify = notify
        self.today = today

    async def _row(self, s: AsyncSession, site_id: str, caller: Caller) -> SiteRow:
        x = await db.get_or_404(s, SiteRow, site_id, "场所")
        caller.require_region(x.village)
        return x

    async def create_site(self, new: NewSite, *, caller: Caller, idem: Idem | None) -> pb.Site:
        async def work(s: AsyncSession) -> pb.Site:
            name, region, addr, six = validate_site(
                kind=new.kind, name=new.name, village=new.village, address=new.address, six_haves=new.six_haves
            )
            caller.require_region(region)
            opened = new.opened_date or self.today()
            manager = (await self.persons.summary(s, new.manager_id, caller=caller)).id if new.manager_id else None
            x = SiteRow(
                id=db.new_id(),
                kind=new.kind.name,
                name=name,
                village=region.code,
                address=addr,
                six_haves=six.text(),
                opened_on=opened,
                manager_person_id=manager,
                version=1,
                created_at=db.utcnow(),
                updated_at=db.utcnow(),
            )
            s.add(x)
            await s.flush()
            bus.emit(s, wire.opened(x, opened))
            return wire.site(x)

        return await mutate(self.sessions, idem, pb.Site, work, caller=caller, notify=self.notify)

    async def get_site(self, site_id: str, *, caller: Caller) -> pb.Site:
        async with self.sessions() as s:
            return wire.site(await self._row(s, site_id, caller))

    async def list_sites(
        self, *, region: RegionCode | None, kind: SiteKind | None, include_closed: bool, page: Page, caller: Caller
    ) -> pb.ListSitesResponse:
        scope = region or caller.region
        caller.require_region(scope)
        q = select(SiteRow).where(SiteRow.village.like(scope.prefix + "%"))
        if kind is not None:
            q = q.where(SiteRow.kind == kind.name)
        if not include_closed:
            q = q.where(SiteRow.closed_on.is_(None))
        async with self.sessions() as s:
            return wire.site_list(
                *page.cut(list((await s.execute(page.apply(q, SiteRow.id))).scalars()), key=lambda x: x.id)
            )

    async def update_site(self, site_id: str, update: SiteUpdate, *, caller: Caller, idem: Idem | None) -> pb.Site:
        paths = update.paths

        async def work(s: AsyncSession) -> pb.Site:
            x = await self._row(s, site_id, caller)
            require_open(x.closed_on)
            name, _, addr, six = validate_site(
                kind=SiteKind[x.kind],
                village=x.village,
                name=update.name if "display_name" in paths else x.name,
                address=update.address if "address" in paths else x.address,
                six_haves=update.six_haves if "six_haves" in paths else SixHaves.stored(x.six_haves).ordered(),
            )
            x.name, x.address, x.six_haves = name, addr, six.text()
            if "manager" in paths:
                x.manager_person_id = (
                    (await self.persons.summary(s, update.manager_id, caller=caller)).id if update.manager_id else None
                )
            x.version += 1
            x.updated_at = db.utcnow()
            await s.flush()
            return wire.site(x)

        return await mutate(self.sessions, idem, pb.Site, work, caller=caller, notify=self.notify)

    async def close_site(
        self, site_id: str, *, closed_date: date | None, reason: str, caller: Caller, idem: Idem | None
    ) -> pb.Site:
        """摘牌: the site stops on ``closed_date`` (default today); kept for history."""

        async def work(s: AsyncSession) -> pb.Site:
            x = await self._row(s, site_id, caller)
            require_open(x.closed_on)
            closed = check_closing(closed_date or self.today(), opened=x.opened_on, today=self.today())
            x.closed_on, x.closed_reason = closed, reason.strip()[:200]
            x.version += 1
            x.updated_at = db.utcnow()
            bus.emit(s, wire.closed(x, closed))
            await s.flush()
            return wire.site(x)

        return await mutate(self.sessions, idem, pb.Site, work, caller=caller, notify=self.notify)


__all__ = ["SitesService"]
