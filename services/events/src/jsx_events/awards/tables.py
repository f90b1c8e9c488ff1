"""Award decision rows."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from jsx_events.adapters.db import Base, utcnow
from jsx_events.awards.domain import Award, AwardDecision
from jsxcore.values import RegionCode, RegionLevel


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    # One decision per nominee, kind, awarding association and year.
    __table_args__ = (UniqueConstraint("kind", "nominee_id", "region", "year"),)

    @classmethod
    def of(cls, a: Award, created_by: str) -> AwardRow:
        return cls(
            id=a.id,
            kind=a.kind,
            nominee_id=a.nominee_id,
            region=a.region.code,
            level=int(a.level),
            year=a.year,
            decision=a.decision.value,
            decided_on=a.decided_on,
            note=a.note,
            title=a.title,
            nominee_region=a.nominee_region.code if a.nominee_region else "",
            activity_id=a.activity_id,
            created_by=created_by,
        )

    def to_domain(self) -> Award:
        return Award(
            self.id,
            self.kind,
            self.nominee_id,
            RegionCode(self.region),
            RegionLevel(self.level),
            self.year,
            AwardDecision(self.decision),
            self.decided_on,
            self.note,
            self.title,
            RegionCode(self.nominee_region) if self.nominee_region else None,
            self.activity_id,
        )
