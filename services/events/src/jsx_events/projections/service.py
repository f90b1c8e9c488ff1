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
