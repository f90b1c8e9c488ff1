"""What funds keeps of the members service's facts: households and their dated situations.

Ids, village and counts only — no names or ID numbers: those stay in the
members service (DESIGN.md §3 rules 1 and 7).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from jsx_funds.adapters.db import Base, utcnow


class HouseholdProjection(Base):
    """The funds service's copy of a members household (from members events).

    Ids, village and counts only — no names or ID numbers: those stay in the
    members service. ``as_of`` is the ``occurred_at`` of the newest event
    applied, so an older event arriving late never overwrites newer facts.
    """

    __tablename__ = "proj_households"

    #: The members service's id (``households/{id}`` without the prefix).
    household_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    village: Mapped[str] = mapped_column(String(12), index=True)
    #: ``persons/{id}`` of the head (户主), for per-household payments.
    head_person: Mapped[str] = mapped_column(String(100), default="")
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SituationProjection(Base):
    """One dated family-planning situation of a projected household."""

    __tablename__ = "proj_household_situations"
    __table_args__ = (UniqueConstraint("household_id", "kind", "effective_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_id: Mapped[str] = mapped_column(ForeignKey("proj_households.household_id"), index=True)
    #: ONLY_CHILD, TWO_DAUGHTERS, SPECIAL_BEREAVED, SPECIAL_DISABLED (jsxcore.hookspecs.Situation values).
    kind: Mapped[str] = mapped_column(String(24))
    effective_from: Mapped[date] = mapped_column(Date)
    #: Last day it applies; NULL while open.
    effective_to: Mapped[date | None] = mapped_column(Date, nullable=True)
    disability_grade: Mapped[int] = mapped_column(Integer, default=0)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PersonDeathProjection(Base):
    """A person's recorded death, as members reports it (``jsx.members.person.died`` /
    ``…death_corrected``): ids, village and the date only. ``death_date`` is NULL once
    the death was withdrawn as recorded in error; ``as_of`` is the ``occurred_at`` of the
    newest event applied, so a late older event never overwrites a newer one.
    """

    __tablename__ = "proj_person_deaths"

    #: ``persons/{id}`` as applications name the person.
    person: Mapped[str] = mapped_column(String(100), primary_key=True)
    village: Mapped[str] = mapped_column(String(12), index=True)
    #: ``households/{id}`` the person belonged to when they died; empty when in none.
    household: Mapped[str] = mapped_column(String(100), default="")
    death_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
