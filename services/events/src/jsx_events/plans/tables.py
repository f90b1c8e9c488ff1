"""Plans and their items."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from jsx_events.adapters.db import Base, utcnow
from jsx_events.plans.domain import Plan, PlanItem
from jsxcore.values import RegionCode


class PlanRow(Base):
    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    region: Mapped[str] = mapped_column(String(12))
    site_id: Mapped[str] = mapped_column(String(64), default="")
    year: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    items: Mapped[list[PlanItemRow]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", order_by="PlanItemRow.position"
    )

    # One annual plan per association (site_id "") or site and year.
    __table_args__ = (UniqueConstraint("region", "site_id", "year"),)

    @classmethod
    def of(cls, p: Plan) -> PlanRow:
        return cls(
            id=p.id,
            region=p.region.code,
            site_id=p.site_id,
            year=p.year,
            title=p.title,
            items=[PlanItemRow.of(i, n) for n, i in enumerate(p.items)],
        )

    def to_domain(self) -> Plan:
        return Plan(
            self.id,
            RegionCode(self.region),
            self.year,
            tuple(PlanItem(i.id, i.type, i.count, i.title, i.month) for i in self.items),
            self.site_id,
            self.title,
        )


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

    @classmethod
    def of(cls, i: PlanItem, position: int) -> PlanItemRow:
        return cls(id=i.id, position=position, type=i.type, count=i.count, title=i.title, month=i.month)
