"""The member projection's rows (ids and region codes only)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import JSON, Boolean, Date, String
from sqlalchemy.orm import Mapped, mapped_column

from jsx_events.adapters.db import Base
from jsx_events.projections.domain import Site, site_name
from jsxcore.values import RegionCode


class SiteRow(Base):
    __tablename__ = "member_sites"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200), default="")
    region: Mapped[str] = mapped_column(String(12), index=True)
    opened_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    #: last day the site ran (members' SiteClosed); closed sites stop owing cadence
    closed_on: Mapped[date | None] = mapped_column(Date, nullable=True)

    def to_domain(self) -> Site:
        return Site(
            self.id,
            self.kind,
            site_name(self.id, self.kind, self.name),
            RegionCode(self.region),
            self.opened_on,
            self.closed_on,
        )


class HouseholdRow(Base):
    __tablename__ = "member_households"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    region: Mapped[str] = mapped_column(String(12), index=True)
    #: open special situations (SPECIAL_BEREAVED / SPECIAL_DISABLED), kept as a list so ends are exact
    special_kinds: Mapped[list[str]] = mapped_column(JSON, default=list)


class PairingRow(Base):
    __tablename__ = "member_pairings"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: "volunteers/{volunteer}" as members publish it; events knows a volunteer through its pairings
    volunteer_id: Mapped[str] = mapped_column(String(64), index=True)
    household_id: Mapped[str] = mapped_column(String(64), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
