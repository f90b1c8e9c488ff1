"""Sites (阵地)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from jsx_members.adapters.db import Base, new_id, utcnow


class SiteRow(Base):
    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(100))
    village: Mapped[str] = mapped_column(String(12), index=True)
    address: Mapped[str] = mapped_column(String(200), default="")
    # 六有 items held, in canonical order, joined by "、" (empty: none).
    six_haves: Mapped[str] = mapped_column(String(40), default="")
    opened_on: Mapped[date] = mapped_column(Date)
    manager_person_id: Mapped[str | None] = mapped_column(ForeignKey("persons.id"))
    # Set when the site closed (摘牌); the row is kept for history and reports.
    closed_on: Mapped[date | None] = mapped_column(Date)
    closed_reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


__all__ = ["SiteRow"]
