"""Events use cases: one transaction each, outbox rows for what others must
learn, AIP-155 idempotency for every mutation, and the event handlers that
keep visits and the member projection up to date."""
from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from google.protobuf.message import Message
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from jsx.events.v1 import events_service_pb2 as pb
from jsx.funds.v1 import events_pb2 as fpb
from jsx.members.v1 import events_pb2 as mpb

from jsxcore.db import transaction
from jsxcore.errors import AlreadyExists, ErrorCollector, InvalidArgument, NotFound
from jsxcore.idempotency import run_idempotent
from jsxcore.outbox import EventMeta, add_event
from jsxcore.values import Period, RegionCode

from jsx_events import domain as d
from jsx_events.adapters import bus
from jsx_events.adapters import db

log = logging.getLogger("jsx.events")
M = TypeVar("M", bound=Message)


def _link_key(a: d.Activity) -> tuple[object, ...]:
    """What a plan item link depends on: changing any of it re-checks the link."""
    return (a.plan_id, a.plan_item_id, a.type, a.start.year, a.site_id, a.region)


@dataclass(frozen=True)
class Idem:
    """The AIP-155 identity of a mutating call: RPC full name and its request."""

    method: str
    request: Message


def new_id() -> str:
    return str(uuid.uuid4())


class EventsService:
    """Use cases over one events database. ``notify`` wakes the outbox relay."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], plugins: Any,
                 notify: Callable[[], None] = lambda: None) -> None:
        self.sessions = sessions
        self.plugins = plugins
        self.notify = notify

    async def _mutate(self, idem: Idem | None, response_type: type[M],
                      work: Callable[[AsyncSession], Awaitable[M]]) -> M:
        async with transaction(self.sessions) as s:
            if idem is None:
                resp = await work(s)
            else:
                resp = await run_idempotent(s, method=idem.method, request=idem.request,
                                            response_type=response_type, handler=lambda: work(s))
        self.notify()
        return resp

    async def activity_types(self, region: RegionCode) -> dict[str, str]:
        """Plugin-provided types for a region: code → Chinese name."""
        decision = await self.plugins.acall("jsx_activity_types", region)
        return {t.code: t.name for t in (decision.value or ())}

    # ---------------------------------------------------------- activities

    async def _check_plan_link(self, s: AsyncSession, a: d.Activity, scope: RegionCode | None) -> None:
        """Refuse (InvalidArgument, field ``activity.plan_item``) a plan item ``a`` cannot fulfil."""
        if not a.plan_item_id:
            return
        plan, item = await db.plan_with_item(s, a.plan_id, a.plan_item_id)
        ref = bus.plan_item_name(a.plan_id, a.plan_item_id)
        problems = d.plan_link_problems(a, plan, item, scope, ref, custom_labels=await self.activity_types(a.region))
        if problems:
            errs = ErrorCollector()
            for f, msg in problems:
                errs.add(f, msg)
            errs.raise_if_any("活动不能对应所选的年度计划项，请按字段说明修改后重试", reason="INVALID_PLAN_ITEM")

    async def create_activity(self, a: d.Activity, idem: Idem | None = None, actor: str = "",
                              scope: RegionCode | None = None) -> pb.Activity:
        """Record an activity. ``scope`` is the caller's region: a plan item
        the activity names must belong to a plan inside it."""
        a.validate(await self.activity_types(a.region))

        async def work(s: AsyncSession) -> pb.Activity:
            await self._check_plan_link(s, a, scope)
            row = db.ActivityRow(created_by=actor)
            row.set_from(a)
            s.add(row)
            if a.status is d.ActivityStatus.HELD:
                add_event(s, bus.subject_of(pb_held := bus.activity_held_event(a)), pb_held)
            await s.flush()
            return bus.activity_pb(a, row.created_at, row.updated_at)

        return await self._mutate(idem, pb.Activity, work)

    async def update_activity(self, id_: str, change: Callable[[d.Activity], d.Activity],
                              idem: Idem | None = None, scope: RegionCode | None = None) -> pb.Activity:
        """Apply ``change`` to the stored activity; publishes ActivityHeld when it becomes held.
        The plan item link is checked again when it or what it depends on changes."""
        async def work(s: AsyncSession) -> pb.Activity:
            row = await s.get(db.ActivityRow, id_, with_for_update=True)
            if row is None:
                raise NotFound(f"活动 activities/{id_} 不存在", reason="ACTIVITY_NOT_FOUND")
            before = row.to_domain()
            after = change(before)
            after.validate(await self.activity_types(after.region))
            if _link_key(after) != _link_key(before):
                await self._check_plan_link(s, after, scope)
            row.set_from(after)
            if after.status is d.ActivityStatus.HELD and before.status is not d.ActivityStatus.HELD:
                add_event(s, bus.subject_of(ev := bus.activity_held_event(after)), ev)
            await s.flush()
            return bus.activity_pb(after, row.created_at, row.updated_at)

        return await self._mutate(idem, pb.Activity, work)

    async def get_activity(self, id_: str) -> tuple[d.Activity, pb.Activity]:
        async with self.sessions() as s:
            row = await s.get(db.ActivityRow, id_)
            if row is None:
                raise NotFound(f"活动 activities/{id_} 不存在", reason="ACTIVITY_NOT_FOUND")
            return row.to_domain(), bus.activity_pb(row.to_domain(), row.created_at, row.updated_at)

    async def list_activities(self, region: RegionCode, *, type_: str = "", status: str = "", site_id: str = "",
                              start: date | None = None, end: date | None = None, offset: int = 0,
                              limit: int = 100) -> list[pb.Activity]:
        q = select(db.ActivityRow).where(db._in_region(db.ActivityRow.region, region))
        if type_:
            q = q.where(db.ActivityRow.type == type_)
        if status:
            q = q.where(db.ActivityRow.status == status)
        if site_id:
            q = q.where(db.ActivityRow.site_id == site_id)
        if start:
            q = q.where(db.ActivityRow.start_date >= start)
        if end:
            q = q.where(db.ActivityRow.start_date <= end)
        async with self.sessions() as s:
            rows = await s.scalars(q.order_by(db.ActivityRow.start_date.desc(), db.ActivityRow.id).offset(offset).limit(limit))
            return [bus.activity_pb(r.to_domain(), r.created_at, r.updated_at) for r in rows]

    # ---------------------------------------------------------- visits

    async def record_visit(self, fields: dict[str, Any], idem: Idem | None = None, actor: str = "") -> pb.Visit:
        v = d.Visit.record(**fields)

        async def work(s: AsyncSession) -> pb.Visit:
            row = db.VisitRow(created_by=actor)
            row.set_from(v)
            s.add(row)
            if v.amount:
                # Funds books the money from this event and answers with VisitExpenseBooked/Rejected.
                add_event(s, bus.subject_of(ev := bus.visit_recorded_event(v)), ev)
            await s.flush()
            return bus.visit_pb(v, row.created_at, row.updated_at)

        return await self._mutate(idem, pb.Visit, work)

    async def get_visit(self, id_: str) -> tuple[d.Visit, pb.Visit]:
        async with self.sessions() as s:
            row = await s.get(db.VisitRow, id_)
            if row is None:
                raise NotFound(f"走访记录 visits/{id_} 不存在", reason="VISIT_NOT_FOUND")
            return row.to_domain(), bus.visit_pb(row.to_domain(), row.created_at, row.updated_at)

    async def list_visits(self, region: RegionCode, *, household_id: str = "", state: str = "",
                          start: date | None = None, end: date | None = None, offset: int = 0,
                          limit: int = 100) -> list[pb.Visit]:
        q = select(db.VisitRow).where(db._in_region(db.VisitRow.region, region))
        if household_id:
            q = q.where(db.VisitRow.household_id == household_id)
        if state:
            q = q.where(db.VisitRow.state == state)
        if start:
            q = q.where(db.VisitRow.visited_on >= start)
        if end:
            q = q.where(db.VisitRow.visited_on <= end)
        async with self.sessions() as s:
            rows = await s.scalars(q.order_by(db.VisitRow.visited_on.desc(), db.VisitRow.id).offset(offset).limit(limit))
            return [bus.visit_pb(r.to_domain(), r.created_at, r.updated_at) for r in rows]

    async def apply_booking(self, s: AsyncSession, msg: Message, meta: EventMeta) -> None:
        """Handler for jsx.funds.visit_expense.*: the visit becomes BOOKED or REJECTED.
        The consumer's inbox makes a redelivered result a no-op; a repeated
        result with a new event id is absorbed by the domain's idempotent transitions."""
        vid = bus.bare(msg.visit, "visits")  # type: ignore[attr-defined]
        row = await s.get(db.VisitRow, vid, with_for_update=True)
        if row is None:
            raise NotFound(f"资金服务回执指向的走访记录 visits/{vid} 不存在", reason="VISIT_NOT_FOUND")
        v = row.to_domain()
        if isinstance(msg, fpb.VisitExpenseBooked):
            v = v.booked(msg.ledger_entry)
        else:
            v = v.rejected(msg.message, msg.reason)  # type: ignore[attr-defined]
        row.set_from(v)
        log.info("visit.booking_result", extra={"visit": vid, "state": v.state.value, "event_id": meta.event_id})

    # ---------------------------------------------------------- plans and awards

    async def create_plan(self, p: d.Plan, idem: Idem | None = None) -> pb.Plan:
        p.validate(await self.activity_types(p.region))

        async def work(s: AsyncSession) -> pb.Plan:
            dup = await s.scalar(select(db.PlanRow.id).where(db.PlanRow.region == p.region.code,
                                                            db.PlanRow.site_id == p.site_id, db.PlanRow.year == p.year))
            if dup:
                raise AlreadyExists(f"{p.year}年的年度计划已登记（plans/{dup}），如需调整请修改原计划",
                                    reason="PLAN_EXISTS", metadata={"plan": f"plans/{dup}"})
            row = db.PlanRow(id=p.id, region=p.region.code, site_id=p.site_id, year=p.year, title=p.title,
                             items=[db.PlanItemRow(id=i.id, position=n, type=i.type, count=i.count, title=i.title,
                                                   month=i.month) for n, i in enumerate(p.items)])
            s.add(row)
            await s.flush()
            return bus.plan_pb(p, row.created_at)

        return await self._mutate(idem, pb.Plan, work)

    async def add_plan_item(self, plan_id: str, item: d.PlanItem, idem: Idem | None = None) -> pb.PlanItem:
        """Append ``item`` to a recorded plan (a plan is adjusted, not registered twice);
        returns the new item. Violations name ``plan_item.*`` (CreatePlanItem's field)."""
        async def work(s: AsyncSession) -> pb.PlanItem:
            row = await s.scalar(select(db.PlanRow).options(selectinload(db.PlanRow.items))
                                 .where(db.PlanRow.id == plan_id).with_for_update())
            if row is None:
                raise NotFound(f"年度计划 plans/{plan_id} 不存在", reason="PLAN_NOT_FOUND")
            plan = row.to_domain()
            errs = ErrorCollector()
            for f, msg in item.problems("plan_item", await self.activity_types(plan.region)):
                errs.add(f, msg)
            errs.raise_if_any("计划项有误，请按字段说明修改后重试")
            row.items.append(db.PlanItemRow(id=item.id, position=max((i.position for i in row.items), default=-1) + 1,
                                            type=item.type, count=item.count, title=item.title, month=item.month))
            await s.flush()
            return bus.plan_item_pb(plan_id, d.ItemProgress(item))  # new: nothing links to it yet

        return await self._mutate(idem, pb.PlanItem, work)

    async def list_plans(self, region: RegionCode, year: int = 0, site_id: str = "") -> list[pb.Plan]:
        """Plans in ``region``, each item with the activities that fulfil it."""
        q = select(db.PlanRow).options(selectinload(db.PlanRow.items)).where(db._in_region(db.PlanRow.region, region))
        if year:
            q = q.where(db.PlanRow.year == year)
        if site_id:
            q = q.where(db.PlanRow.site_id == site_id)
        async with self.sessions() as s:
            rows = list(await s.scalars(q.order_by(db.PlanRow.year, db.PlanRow.id)))
            linked = await db.activities_for_plans(s, [r.id for r in rows])
        return [bus.plan_pb(p := r.to_domain(), r.created_at, d.plan_progress(p, linked)) for r in rows]

    async def get_plan(self, id_: str) -> tuple[d.Plan, pb.Plan]:
        async with self.sessions() as s:
            row = await s.scalar(select(db.PlanRow).options(selectinload(db.PlanRow.items)).where(db.PlanRow.id == id_))
            if row is None:
                raise NotFound(f"年度计划 plans/{id_} 不存在", reason="PLAN_NOT_FOUND")
            linked = await db.activities_for_plans(s, [id_])
        p = row.to_domain()
        return p, bus.plan_pb(p, row.created_at, d.plan_progress(p, linked))

    async def decide_award(self, a: d.Award, idem: Idem | None = None, actor: str = "") -> pb.Award:
        a.validate()

        async def work(s: AsyncSession) -> pb.Award:
            dup = await s.scalar(select(db.AwardRow.id).where(
                db.AwardRow.kind == a.kind, db.AwardRow.nominee_id == a.nominee_id,
                db.AwardRow.region == a.region.code, db.AwardRow.year == a.year))
            if dup:
                raise AlreadyExists(f"{a.year}年该对象的“{d.AWARD_LABELS.get(a.kind, a.kind)}”评选已有结果（awards/{dup}）",
                                    reason="AWARD_ALREADY_DECIDED", metadata={"award": f"awards/{dup}"})
            row = db.AwardRow(id=a.id, kind=a.kind, nominee_id=a.nominee_id, region=a.region.code, level=int(a.level),
                              year=a.year, decision=a.decision.value, decided_on=a.decided_on, note=a.note, title=a.title,
                              nominee_region=a.nominee_region.code if a.nominee_region else "",
                              activity_id=a.activity_id, created_by=actor)
            s.add(row)
            add_event(s, bus.subject_of(ev := bus.award_decided_event(a)), ev)
            await s.flush()
            return bus.award_pb(a, actor, row.created_at)

        return await self._mutate(idem, pb.Award, work)

    async def list_awards(self, region: RegionCode, year: int = 0) -> list[pb.Award]:
        q = select(db.AwardRow).where(db._in_region(db.AwardRow.region, region))
        if year:
            q = q.where(db.AwardRow.year == year)
        async with self.sessions() as s:
            return [bus.award_pb(r.to_domain(), r.created_by, r.created_at)
                    for r in await s.scalars(q.order_by(db.AwardRow.year, db.AwardRow.id))]

    # ---------------------------------------------------------- reports

    async def _facts(self, region: RegionCode, period: Period) -> d.Facts:
        years = range(period.start.year, period.end.year + 1)
        first = date(period.start.year, 1, 1)  # yearly and semester windows reach back before a quarter
        async with self.sessions() as s:
            plans = await db.plans_in(s, region, years)
            return d.Facts(
                sites=await db.sites_in(s, region, period.start), families=await db.families_in(s, region),
                activities=await db.activities_in(s, region, first, period.end),
                visits=await db.visits_in(s, region, first, period.end),
                plans=plans, awards=await db.awards_in(s, region, years),
                plan_activities=await db.activities_for_plans(s, [p.id for p in plans]),
            )

    async def targets(self, region: RegionCode, period: Period) -> list[d.Target]:
        out: list[d.Target] = []
        for year in range(period.start.year, period.end.year + 1):
            dec = await self.plugins.acall("jsx_cadence_targets", region, year=year)
            out += [d.Target.from_plugin(t, f"{dec.plugin} {dec.plugin_version}") for t in (dec.value or ())]
        return out

    async def compliance(self, region: RegionCode, period: Period, today: date | None = None) -> d.ComplianceReport:
        targets = await self.targets(region, period)
        facts = await self._facts(region, period)
        custom = await self.activity_types(region)
        return d.compute_compliance(targets, region, period, facts, today=today or date.today(), custom_labels=custom)

    async def summary(self, region: RegionCode, period: Period) -> pb.Summary:
        async with self.sessions() as s:
            acts = await db.activities_in(s, region, period.start, period.end)
            visits = await db.visits_in(s, region, period.start, period.end)
            awards = [a for a in await db.awards_in(s, region, range(period.start.year, period.end.year + 1))
                      if a.decision is d.AwardDecision.AWARDED and period.contains(a.decided_on)]
        summary = d.summarize(region, period, acts, visits, await self.activity_types(region))
        return bus.summary_pb(summary, visits, len(awards))

    # ---------------------------------------------------------- member projection

    async def apply_member_event(self, s: AsyncSession, msg: Message, meta: EventMeta) -> None:
        """Handler for jsx.members.{site,household,pairing}.*: keep the local projection."""
        if isinstance(msg, mpb.SiteOpened):
            sid = bus.bare(msg.site, "sites")
            row = await s.get(db.SiteRow, sid) or db.SiteRow(id=sid)
            row.kind, row.region = bus.site_kind(msg.kind), RegionCode.parse(msg.village.code).code
            row.opened_on = bus.to_date(msg.opened_date, "opened_date", required=False)
            fields = msg.DESCRIPTOR.fields_by_name
            if "display_name" in fields:  # the name is public (挂牌), not personal data
                row.name = getattr(msg, "display_name")
            s.add(row)
        elif isinstance(msg, mpb.SiteClosed):
            sid = bus.bare(msg.site, "sites")
            row = await s.get(db.SiteRow, sid) or db.SiteRow(
                id=sid, kind=bus.site_kind(msg.kind), region=RegionCode.parse(msg.village.code).code)
            row.closed_on = bus.to_date(msg.closed_date, "closed_date", required=False) or date.today()
            s.add(row)
        elif isinstance(msg, mpb.HouseholdMembersChanged):
            # events keeps no member lists; the household's place is all it needs
            hid = bus.bare(msg.household, "households")
            row = await s.get(db.HouseholdRow, hid) or db.HouseholdRow(id=hid, special_kinds=[])
            row.region = RegionCode.parse(msg.village.code).code
            s.add(row)
        elif isinstance(msg, (mpb.HouseholdRegistered, mpb.HouseholdSituationChanged)):
            hid = bus.bare(msg.household, "households")
            row = await s.get(db.HouseholdRow, hid) or db.HouseholdRow(id=hid, special_kinds=[])
            row.region = RegionCode.parse(msg.village.code).code
            if isinstance(msg, mpb.HouseholdSituationChanged):
                kind = bus.mmpb.SituationKind.Name(msg.kind).removeprefix("SITUATION_KIND_")
                kinds = set(row.special_kinds or ())
                if kind.startswith("SPECIAL_"):
                    ended = bus.to_date(msg.effective_to, "effective_to", required=False)
                    if ended is not None and ended < date.today():
                        kinds.discard(kind)
                    else:
                        kinds.add(kind)
                row.special_kinds = sorted(kinds)
            s.add(row)
        elif isinstance(msg, (mpb.VolunteerPaired, mpb.VolunteerUnpaired)):
            pid = bus.bare(msg.pairing, "pairings")
            row = await s.get(db.PairingRow, pid) or db.PairingRow(id=pid)
            row.volunteer_id, row.household_id = msg.volunteer, bus.bare(msg.household, "households")
            row.active = isinstance(msg, mpb.VolunteerPaired)
            s.add(row)
            if await s.get(db.HouseholdRow, row.household_id) is None:
                s.add(db.HouseholdRow(id=row.household_id, region=RegionCode.parse(msg.village.code).code, special_kinds=[]))
