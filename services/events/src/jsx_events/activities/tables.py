"""Activity rows."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Date, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from jsx_events.activities.domain import Activity, ActivityStatus, Outputs
from jsx_events.adapters.db import Base, utcnow
from jsxcore.values import Money, RegionCode


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_activities_region_start", "region", "start_date"),)

    def to_domain(self) -> Activity:
        return Activity(
            id=self.id,
            type=self.type,
            title=self.title,
            region=RegionCode(self.region),
            start=self.start_date,
            end=self.end_date,
            status=ActivityStatus(self.status),
            site_id=self.site_id,
            participant_ids=tuple(self.participant_ids or ()),
            headcount=self.headcount,
            outputs=Outputs(
                self.materials,
                self.consultations,
                self.clinic_visits,
                self.contraceptive_boxes,
                Money(self.care_money_fen),
            ),
            attachments=tuple(self.attachments or ()),
            plan_item_id=self.plan_item_id,
            plan_id=self.plan_id,
            location=self.location,
            description=self.description,
        )

    def set_from(self, a: Activity) -> None:
        self.id, self.type, self.title, self.region = a.id, a.type, a.title, a.region.code
        self.site_id, self.start_date, self.end_date, self.status = a.site_id, a.start, a.end, a.status.value
        self.participant_ids, self.headcount = list(a.participant_ids), a.headcount
        o = a.outputs
        self.materials, self.consultations, self.clinic_visits = o.materials, o.consultations, o.clinic_visits
        self.contraceptive_boxes, self.care_money_fen = o.contraceptive_boxes, o.care_money.fen
        self.attachments, self.plan_item_id, self.plan_id = list(a.attachments), a.plan_item_id, a.plan_id
        self.location, self.description = a.location, a.description
