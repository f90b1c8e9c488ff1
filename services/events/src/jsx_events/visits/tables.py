"""Visit rows."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Date, DateTime, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from jsx_events.adapters.db import Base, utcnow
from jsx_events.visits.domain import Visit, VisitState
from jsxcore.values import Money, RegionCode


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_visits_region_date", "region", "visited_on"),)

    def to_domain(self) -> Visit:
        return Visit(
            self.id,
            self.household_id,
            RegionCode(self.region),
            self.visitor_id,
            self.visited_on,
            self.notes,
            Money(self.amount_fen),
            self.fund_id,
            self.site_id,
            VisitState(self.state),
            self.reject_reason,
            self.booking_ref,
            self.occasion,
            tuple(self.attachments or ()),
            self.reject_code,
        )

    def set_from(self, v: Visit) -> None:
        self.id, self.household_id, self.region, self.site_id = v.id, v.household_id, v.region.code, v.site_id
        self.visitor_id, self.visited_on, self.notes = v.visitor_id, v.visited_on, v.notes
        self.amount_fen, self.fund_id, self.state = v.amount.fen, v.fund_id, v.state.value
        self.reject_reason, self.booking_ref, self.reject_code = v.reject_reason, v.booking_ref, v.reject_code
        self.occasion, self.attachments = v.occasion, list(v.attachments)
