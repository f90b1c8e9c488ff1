"""Events database: SQLAlchemy models, row ↔ domain mapping, queries, migrations.

Own tables (activities, plans, visits, awards) plus a projection of member
facts (sites, households with their special-family state, volunteer
pairings) fed by the members service's events; ids and region codes only.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

from sqlalchemy import (
    JSON, BigInteger, Boolean, Date, DateTime, ForeignKey, Index, Integer, MetaData, String, Text,
    UniqueConstraint, select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload

from jsxcore.db import NAMING
from jsxcore.values import Money, RegionCode, RegionLevel

from jsx_events import domain as d

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ActivityRow(Base):
    __tablename__ = "activities"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(12), index=True)
    site_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    participant_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    headcount: Mapped[int] = mapped_column(Integer, default=0)
    materials: Mapped[int] = mapped_column(Integer, default=0)
    consultations: Mapped[int] = mapped_column(Integer, default=0)
    clinic_visits: Mapped[int] = mapped_column(Integer, default=0)
    contraceptive_boxes: Mapped[int] = mapped_column(Integer, default=0)
    care_money_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    attachments: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: the plan item it fulfils; plan_id alone is a link made before plan items had ids
    plan_id: Mapped[str] = mapped_column(String(36), default="", index=True)
    plan_item_id: Mapped[str] = mapped_column(String(64), default="")
    location: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)

    __table_args__ = (Index("ix_activities_region_start", "region", "start_date"),)

    def to_domain(self) -> d.Activity:
        return d.Activity(
            id=self.id, type=self.type, title=self.title, region=RegionCode(self.region), start=self.start_date,
            end=self.end_date, status=d.ActivityStatus(self.status), site_id=self.site_id,
            participant_ids=tuple(self.participant_ids or ()), headcount=self.headcount,
            outputs=d.Outputs(self.materials, self.consultations, self.clinic_visits, self.contraceptive_boxes,
                              Money(self.care_money_fen)),
            attachments=tuple(self.attachments or ()), plan_item_id=self.plan_item_id, plan_id=self.plan_id, location=self.location,
            description=self.description,
        )

    def set_from(self, a: d.Activity) -> None:
        self.id, self.type, self.title, self.region = a.id, a.type, a.title, a.region.code
        self.site_id, self.start_date, self.end_date, self.status = a.site_id, a.start, a.end, a.status.value
        self.participant_ids, self.headcount = list(a.participant_ids), a.headcount
        o = a.outputs
        self.materials, self.consultations, self.clinic_visits = o.materials, o.consultations, o.clinic_visits
        self.contraceptive_boxes, self.care_money_fen = o.contraceptive_boxes, o.care_money.fen
        self.attachments, self.plan_item_id, self.plan_id = list(a.attachments), a.plan_item_id, a.plan_id
        self.location, self.description = a.location, a.description


class PlanRow(Base):
    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    region: Mapped[str] = mapped_column(String(12))
    site_id: Mapped[str] = mapped_column(String(64), default="")
    year: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    items: Mapped[list[PlanItemRow]] = relationship(back_populates="plan", cascade="all, delete-orphan",
                                                    order_by="PlanItemRow.position")

    # One annual plan per association (site_id "") or site and year.
    __table_args__ = (UniqueConstraint("region", "site_id", "year"),)

    def to_domain(self) -> d.Plan:
        return d.Plan(self.id, RegionCode(self.region), self.year,
                      tuple(d.PlanItem(i.id, i.type, i.count, i.title, i.month) for i in self.items), self.site_id, self.title)


class PlanItemRow(Base):
    __tablename__ = "plan_items"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200), default="")
    month: Mapped[int] = mapped_column(Integer, default=0)
    plan: Mapped[PlanRow] = relationship(back_populates="items")


class VisitRow(Base):
    __tablename__ = "visits"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    household_id: Mapped[str] = mapped_column(String(64), index=True)
    region: Mapped[str] = mapped_column(String(12))
    site_id: Mapped[str] = mapped_column(String(64), default="")
    visitor_id: Mapped[str] = mapped_column(String(64))
    visited_on: Mapped[date] = mapped_column(Date)
    notes: Mapped[str] = mapped_column(Text, default="")
    amount_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    fund_id: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(16))
    reject_reason: Mapped[str] = mapped_column(Text, default="")
    reject_code: Mapped[str] = mapped_column(String(64), default="")
    booking_ref: Mapped[str] = mapped_column(String(200), default="")
    occasion: Mapped[str] = mapped_column(String(100), default="")
    attachments: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)

    __table_args__ = (Index("ix_visits_region_date", "region", "visited_on"),)

    def to_domain(self) -> d.Visit:
        return d.Visit(self.id, self.household_id, RegionCode(self.region), self.visitor_id, self.visited_on,
                       self.notes, Money(self.amount_fen), self.fund_id, self.site_id, d.VisitState(self.state),
                       self.reject_reason, self.booking_ref, self.occasion, tuple(self.attachments or ()),
                       self.reject_code)

    def set_from(self, v: d.Visit) -> None:
        self.id, self.household_id, self.region, self.site_id = v.id, v.household_id, v.region.code, v.site_id
        self.visitor_id, self.visited_on, self.notes = v.visitor_id, v.visited_on, v.notes
        self.amount_fen, self.fund_id, self.state = v.amount.fen, v.fund_id, v.state.value
        self.reject_reason, self.booking_ref, self.reject_code = v.reject_reason, v.booking_ref, v.reject_code
        self.occasion, self.attachments = v.occasion, list(v.attachments)


class AwardRow(Base):
    __tablename__ = "awards"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    nominee_id: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(12), index=True)
    level: Mapped[int] = mapped_column(Integer)
    year: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))
    decided_on: Mapped[date] = mapped_column(Date)
    note: Mapped[str] = mapped_column(Text, default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    nominee_region: Mapped[str] = mapped_column(String(12), default="")
    activity_id: Mapped[str] = mapped_column(String(36), default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

    # One decision per nominee, kind, awarding association and year.
    __table_args__ = (UniqueConstraint("kind", "nominee_id", "region", "year"),)

    def to_domain(self) -> d.Award:
        return d.Award(self.id, self.kind, self.nominee_id, RegionCode(self.region), RegionLevel(self.level),
                       self.year, d.AwardDecision(self.decision), self.decided_on, self.note, self.title,
                       RegionCode(self.nominee_region) if self.nominee_region else None, self.activity_id)


# ---------------------------------------------------------------- member projection


class SiteRow(Base):
    __tablename__ = "member_sites"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200), default="")
    region: Mapped[str] = mapped_column(String(12), index=True)
    opened_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    #: last day the site ran (members' SiteClosed); closed sites stop owing cadence
    closed_on: Mapped[date | None] = mapped_column(Date, nullable=True)


class HouseholdRow(Base):
    __tablename__ = "member_households"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    region: Mapped[str] = mapped_column(String(12), index=True)
    #: open special situations (SPECIAL_BEREAVED / SPECIAL_DISABLED), kept as a list so ends are exact
    special_kinds: Mapped[list[str]] = mapped_column(JSON, default=list)


class PairingRow(Base):
    __tablename__ = "member_pairings"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    volunteer_id: Mapped[str] = mapped_column(String(64))
    household_id: Mapped[str] = mapped_column(String(64), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


# ---------------------------------------------------------------- queries


def _in_region(col, region: RegionCode):  # type: ignore[no-untyped-def]
    prefix = {1: 2, 2: 4, 3: 6, 4: 9, 5: 12}[int(region.level)]
    return col.like(region.code[:prefix] + "%")


async def activities_in(s: AsyncSession, region: RegionCode, start: date, end: date) -> list[d.Activity]:
    rows = await s.scalars(select(ActivityRow).where(_in_region(ActivityRow.region, region),
                                                     ActivityRow.start_date >= start, ActivityRow.start_date <= end))
    return [r.to_domain() for r in rows]


async def visits_in(s: AsyncSession, region: RegionCode, start: date, end: date) -> list[d.Visit]:
    rows = await s.scalars(select(VisitRow).where(_in_region(VisitRow.region, region),
                                                  VisitRow.visited_on >= start, VisitRow.visited_on <= end))
    return [r.to_domain() for r in rows]


async def plans_in(s: AsyncSession, region: RegionCode, years: range) -> list[d.Plan]:
    rows = await s.scalars(select(PlanRow).options(selectinload(PlanRow.items))
                           .where(_in_region(PlanRow.region, region), PlanRow.year.in_(list(years))))
    return [r.to_domain() for r in rows]


async def plan_with_item(s: AsyncSession, plan_id: str, item_id: str) -> tuple[d.Plan | None, d.PlanItem | None]:
    """The plan and its item ``item_id`` (None, None when either is missing or they do not belong together)."""
    row = await s.scalar(select(PlanRow).options(selectinload(PlanRow.items)).where(PlanRow.id == plan_id))
    if row is None:
        return None, None
    plan = row.to_domain()
    return plan, next((i for i in plan.items if i.id == item_id), None)


async def activities_for_plans(s: AsyncSession, plan_ids: list[str]) -> list[d.Activity]:
    """Activities linked to any item of these plans (for fulfilment)."""
    if not plan_ids:
        return []
    rows = await s.scalars(select(ActivityRow).where(ActivityRow.plan_id.in_(plan_ids), ActivityRow.plan_item_id != ""))
    return [r.to_domain() for r in rows]


async def awards_in(s: AsyncSession, region: RegionCode, years: range) -> list[d.Award]:
    rows = await s.scalars(select(AwardRow).where(_in_region(AwardRow.region, region), AwardRow.year.in_(list(years))))
    return [r.to_domain() for r in rows]


async def sites_in(s: AsyncSession, region: RegionCode, active_from: date | None = None) -> list[d.Site]:
    """Sites in ``region``; with ``active_from``, leaves out those closed before it."""
    q = select(SiteRow).where(_in_region(SiteRow.region, region))
    if active_from is not None:
        q = q.where((SiteRow.closed_on.is_(None)) | (SiteRow.closed_on >= active_from))
    rows = await s.scalars(q.order_by(SiteRow.id))
    return [d.Site(r.id, r.kind, r.name or f"{d.SITE_KIND_LABELS.get(r.kind, r.kind)}（{r.id}）", RegionCode(r.region))
            for r in rows]


async def families_in(s: AsyncSession, region: RegionCode) -> list[d.Family]:
    hh = list(await s.scalars(select(HouseholdRow).where(_in_region(HouseholdRow.region, region))))
    pairs: dict[str, list[str]] = {}
    if hh:
        rows = await s.execute(select(PairingRow.household_id, PairingRow.volunteer_id)
                               .where(PairingRow.active.is_(True), PairingRow.household_id.in_([h.id for h in hh])))
        for household_id, volunteer_id in rows:
            pairs.setdefault(household_id, []).append(volunteer_id)
    return [d.Family(h.id, RegionCode(h.region), bool(h.special_kinds), "", tuple(sorted(pairs.get(h.id, ()))))
            for h in hh]


# ---------------------------------------------------------------- migrations


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (startup and tests).

    Synchronous: call before the event loop starts or via ``asyncio.to_thread``.
    """
    from jsxcore.migrations import migrate as _migrate

    _migrate(MIGRATIONS, url, revision)
