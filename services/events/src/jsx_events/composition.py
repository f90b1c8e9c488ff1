"""The events service: its bounded contexts composed (never inherited), and the two event handlers.

::

    catalog       activity types (built in + the region plugin's)
    projections   members' sites, households, pairings as events keeps them
    plans         年度计划 and their items                    ← catalog, projections
    activities    activities, their plan item links           ← catalog, plans, projections
    visits        走访慰问 and their 慰问金 booking state       ← projections
    awards        评选表彰 decisions                          ← projections, activities
    reporting     plan fulfilment, cadence compliance, summaries ← all of the above

A request's named households, sites and volunteers are checked against ``projections``
(``jsx_events.scope.Named``).

A context uses another only through that context's service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx_events.activities.service import ActivitiesService
from jsx_events.adapters import bus
from jsx_events.awards.service import AwardsService
from jsx_events.catalog.service import Catalog
from jsx_events.plans.service import PlansService
from jsx_events.projections.service import ProjectionsService
from jsx_events.reporting.service import ReportingService
from jsx_events.visits.service import VisitsService
from jsxcore.outbox import EventMeta
from jsxcore.plugins import PluginHost


@dataclass
class EventsService:
    sessions: async_sessionmaker[AsyncSession]
    plugins: PluginHost
    catalog: Catalog
    projections: ProjectionsService
    plans: PlansService
    activities: ActivitiesService
    visits: VisitsService
    awards: AwardsService
    reporting: ReportingService

    @classmethod
    def build(
        cls,
        sessions: async_sessionmaker[AsyncSession],
        plugins: PluginHost,
        notify: Callable[[], None] = lambda: None,
        today: Callable[[], date] = date.today,
    ) -> EventsService:
        """Every context over one events database. ``notify`` wakes the outbox relay after a commit;
        ``today`` is the day decisions are recorded on and reports are judged by."""
        catalog = Catalog(plugins)
        projections = ProjectionsService(today)
        plans = PlansService(sessions, catalog, projections, notify)
        activities = ActivitiesService(sessions, catalog, plans, projections, notify)
        visits = VisitsService(sessions, projections, notify)
        awards = AwardsService(sessions, projections, activities, notify, today)
        reporting = ReportingService(
            sessions,
            plugins,
            catalog,
            plans=plans,
            activities=activities,
            visits=visits,
            awards=awards,
            projections=projections,
            today=today,
        )
        return cls(sessions, plugins, catalog, projections, plans, activities, visits, awards, reporting)

    @property
    def notify(self) -> Callable[[], None]:
        return self.visits.notify

    @notify.setter
    def notify(self, fn: Callable[[], None]) -> None:
        """Wake ``fn`` (the relay) after every mutating use case's commit."""
        for svc in (self.plans, self.activities, self.visits, self.awards):
            svc.notify = fn

    # ---------------------------------------------------------- consumers (jsxcore.outbox.Consumer handlers)

    async def apply_booking(self, s: AsyncSession, msg: Message, meta: EventMeta) -> None:
        """jsx.funds.visit_expense.booked|rejected → the visit BOOKED or REJECTED."""
        await self.visits.apply_booking(s, bus.booking_result(msg), event_id=meta.event_id)

    async def apply_member_event(self, s: AsyncSession, msg: Message, meta: EventMeta) -> None:
        """jsx.members.{site,household,pairing}.* → the member projection."""
        await self.projections.apply(s, bus.member_fact(msg))
