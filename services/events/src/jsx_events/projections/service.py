"""The member projection: applied from members' events, read by the reports."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from jsx_events.projections.domain import (
    Family,
    HouseholdPlaced,
    MemberFact,
    PairingChanged,
    Site,
    SiteClosed,
    SiteOpened,
    SituationChanged,
    special_kinds_after,
)
from jsx_events.projections.tables import HouseholdRow, PairingRow, SiteRow
from jsx_events.scope import Named
from jsxcore.values import RegionCode


class ProjectionsService:
    """Keeps sites, households and pairings as members' events tell them.

    ``today`` is the day a closing without a date, or a situation's end, is judged against.
    """

    def __init__(self, today: Callable[[], date] = date.today) -> None:
        self.today = today

    async def apply(self, s: AsyncSession, fact: MemberFact) -> None:
        """Apply one member fact inside the consumer's transaction (its inbox row dedupes redeliveries)."""
        if isinstance(fact, SiteOpened):
            site = await s.get(SiteRow, fact.site_id) or SiteRow(id=fact.site_id)
            site.kind, site.region, site.opened_on = fact.kind, fact.region.code, fact.opened_on
            if fact.name is not None:  # the name is public (挂牌), not personal data
                site.name = fact.name
            s.add(site)
        elif isinstance(fact, SiteClosed):
            site = await s.get(SiteRow, fact.site_id) or SiteRow(
                id=fact.site_id, kind=fact.kind, region=fact.region.code
            )
            site.closed_on = fact.closed_on or self.today()
            s.add(site)
        elif isinstance(fact, (HouseholdPlaced, SituationChanged)):
            # events keeps no member lists; the household's place is all it needs
            hh = await s.get(HouseholdRow, fact.household_id) or HouseholdRow(id=fact.household_id, special_kinds=[])
            hh.region = fact.region.code
            if isinstance(fact, SituationChanged):
                hh.special_kinds = special_kinds_after(hh.special_kinds or (), fact, self.today())
            s.add(hh)
        elif isinstance(fact, PairingChanged):
            pairing = await s.get(PairingRow, fact.pairing_id) or PairingRow(id=fact.pairing_id)
            pairing.volunteer_id, pairing.household_id, pairing.active = (
                fact.volunteer_id,
                fact.household_id,
                fact.active,
            )
            s.add(pairing)
            if await s.get(HouseholdRow, fact.household_id) is None:
                s.add(HouseholdRow(id=fact.household_id, region=fact.region.code, special_kinds=[]))

    # ---------------------------------------------------------- what a request names (in the use case's session)

    async def household(self, s: AsyncSession, household_id: str) -> Family | None:
        """The household as members last published it (None: events has not heard of it)."""
        row = await s.get(HouseholdRow, household_id)
        if row is None:
            return None
        return Family(row.id, RegionCode(row.region), bool(row.special_kinds))

    async def site(self, s: AsyncSession, site_id: str) -> Site | None:
        """The site as members last published it (None: events has not heard of it)."""
        row = await s.get(SiteRow, site_id)
        return row.to_domain() if row is not None else None

    async def volunteer_places(self, s: AsyncSession, volunteer: str) -> tuple[RegionCode, ...] | None:
        """Where a volunteer (``volunteers/{id}``) serves, as events knows it: the villages of the
        households it is or was paired with. None: no pairing of it has reached events
        (members publish no event for a volunteer on its own)."""
        rows = list(
            await s.execute(
                select(PairingRow.id, HouseholdRow.region)
                .join(HouseholdRow, HouseholdRow.id == PairingRow.household_id, isouter=True)
                .where(PairingRow.volunteer_id == volunteer)
            )
        )
        if not rows:
            return None
        return tuple(sorted({RegionCode(region) for _, region in rows if region}))

    async def name_household(self, s: AsyncSession, named: Named, field: str, household_id: str) -> Family | None:
        """Check a household a request names (``households/{id}``): known, inside the caller's scope."""
        fam = await self.household(s, household_id)
        if fam is None:
            named.unknown(
                field,
                f"家庭户 households/{household_id} 不存在：本服务没有收到成员服务对该户的登记"
                "（请核对户编号；刚登记的户请稍候片刻再试）",
            )
        else:
            named.placed(field, f"家庭户 households/{household_id}", (fam.region,))
        return fam

    async def name_site(self, s: AsyncSession, named: Named, field: str, site_id: str) -> Site | None:
        """Check a site a request names (``sites/{id}``): known, inside the caller's scope."""
        site = await self.site(s, site_id)
        if site is None:
            named.unknown(
                field,
                f"阵地 sites/{site_id} 不存在：本服务没有收到成员服务对该阵地的登记"
                "（请核对阵地编号；刚挂牌的阵地请稍候片刻再试）",
            )
        else:
            named.placed(field, f"阵地 {site.name}", (site.region,))
        return site

    async def name_volunteer(
        self, s: AsyncSession, named: Named, field: str, volunteer: str
    ) -> tuple[RegionCode, ...] | None:
        """Check a volunteer a request names (``volunteers/{id}``): known through a pairing, serving
        somewhere inside the caller's scope."""
        places = await self.volunteer_places(s, volunteer)
        if places is None:
            named.unknown(
                field,
                f"志愿者 {volunteer} 不存在或尚未结对：本服务从成员服务的结对记录得知志愿者"
                "（请核对志愿者编号，或先在成员服务为其结对联系户）",
            )
        else:
            named.placed(field, f"志愿者 {volunteer}", places)
        return places

    # ---------------------------------------------------------- reads for the reports

    async def sites_in(self, s: AsyncSession, region: RegionCode, active_from: date | None = None) -> list[Site]:
        """Sites in ``region``; with ``active_from``, leaves out those closed before it."""
        q = select(SiteRow).where(SiteRow.region.like(region.prefix + "%"))
        if active_from is not None:
            q = q.where((SiteRow.closed_on.is_(None)) | (SiteRow.closed_on >= active_from))
        return [r.to_domain() for r in await s.scalars(q.order_by(SiteRow.id))]

    async def families_in(self, s: AsyncSession, region: RegionCode) -> list[Family]:
        """Households in ``region`` with their active volunteers."""
        hh = list(await s.scalars(select(HouseholdRow).where(HouseholdRow.region.like(region.prefix + "%"))))
        pairs: dict[str, list[str]] = {}
        if hh:
            rows = await s.execute(
                select(PairingRow.household_id, PairingRow.volunteer_id).where(
                    PairingRow.active.is_(True), PairingRow.household_id.in_([h.id for h in hh])
                )
            )
            for household_id, volunteer_id in rows:
                pairs.setdefault(household_id, []).append(volunteer_id)
        return [
            Family(h.id, RegionCode(h.region), bool(h.special_kinds), "", tuple(sorted(pairs.get(h.id, ()))))
            for h in hh
        ]
