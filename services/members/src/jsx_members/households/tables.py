"""Households, their members and the append-only situation history."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from jsx_members.adapters.db import Base, new_id, utcnow


class HouseholdRow(Base):
    __tablename__ = "households"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    head_person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    village: Mapped[str] = mapped_column(String(12), index=True)
    address: Mapped[str] = mapped_column(String(200), default="")
    # The situation in force now, denormalised from the history for list filters.
    current_situation: Mapped[str] = mapped_column(String(20))
    # 合户 (MergeHouseholds): the last day it existed on its own, and the household it joined.
    closed_on: Mapped[date | None] = mapped_column(Date)
    merged_into: Mapped[str | None] = mapped_column(ForeignKey("households.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class HouseholdMemberRow(Base):
    __tablename__ = "household_members"

    household_id: Mapped[str] = mapped_column(ForeignKey("households.id"), primary_key=True)
    # A person belongs to one household (户籍 is single).
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), primary_key=True, unique=True)
    relation: Mapped[str] = mapped_column(String(20))
    position: Mapped[int] = mapped_column(Integer, default=0)


class SituationRow(Base):
    """Append-only history of a household's family-planning situation."""

    __tablename__ = "household_situations"
    __table_args__ = (UniqueConstraint("household_id", "effective_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    household_id: Mapped[str] = mapped_column(ForeignKey("households.id"), index=True)
    situation: Mapped[str] = mapped_column(String(20))
    effective_from: Mapped[date] = mapped_column(Date)
    disability_grade: Mapped[int | None] = mapped_column(Integer)
    honor_certificate: Mapped[str] = mapped_column(String(40), default="")
    note: Mapped[str] = mapped_column(String(200), default="")
    recorded_by: Mapped[str] = mapped_column(String(100), default="")
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


__all__ = ["HouseholdMemberRow", "HouseholdRow", "SituationRow"]
