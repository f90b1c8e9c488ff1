"""Association members, volunteers and pairings. The 1:1 pairing and "one
active membership" rules are enforced by partial unique indexes too
(``WHERE end_date IS NULL``), so a race cannot break them."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from jsx_members.adapters.db import Base, new_id, utcnow


class MemberRow(Base):
    __tablename__ = "association_members"
    __table_args__ = (
        Index(
            "uq_association_members_active_person",
            "person_id",
            unique=True,
            sqlite_where=text("left_on IS NULL"),
            postgresql_where=text("left_on IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    # The association the person belongs to (its level follows from the code).
    region: Mapped[str] = mapped_column(String(12), index=True)
    member_type: Mapped[str] = mapped_column(String(20))
    joined_on: Mapped[date] = mapped_column(Date)
    left_on: Mapped[date | None] = mapped_column(Date)
    left_reason: Mapped[str] = mapped_column(String(200), default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class VolunteerRow(Base):
    __tablename__ = "volunteers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), unique=True)
    region: Mapped[str] = mapped_column(String(12), index=True)
    skills: Mapped[str] = mapped_column(String(100), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PairingRow(Base):
    """A volunteer's open pairings hold distinct slots 0 … n-1, n being what the
    region's pairing rule allows (1 by default): the unique index on
    (volunteer, slot) of open pairings keeps a race from exceeding the rule,
    as the old unique index on the volunteer kept the 1:1 rule."""

    __tablename__ = "pairings"
    __table_args__ = (
        Index(
            "uq_pairings_active_volunteer_slot",
            "volunteer_id",
            "volunteer_slot",
            unique=True,
            sqlite_where=text("end_date IS NULL"),
            postgresql_where=text("end_date IS NULL"),
        ),
        Index(
            "uq_pairings_active_household",
            "household_id",
            "kind",
            unique=True,
            sqlite_where=text("end_date IS NULL"),
            postgresql_where=text("end_date IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    volunteer_id: Mapped[str] = mapped_column(ForeignKey("volunteers.id"), index=True)
    household_id: Mapped[str] = mapped_column(ForeignKey("households.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    end_reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    volunteer_slot: Mapped[int] = mapped_column(Integer, default=0)
    # The pairing rule that allowed it (jsx_pairing_rules): plugin, version, basis lines joined by "\n".
    rule_plugin: Mapped[str] = mapped_column(String(64), default="")
    rule_version: Mapped[str] = mapped_column(String(40), default="")
    rule_basis: Mapped[str] = mapped_column(String(2000), default="")


__all__ = ["MemberRow", "PairingRow", "VolunteerRow"]
