"""What funds keeps of the members service's facts, and the reads other contexts make of it.

The members service owns households; funds keeps a projection built from its
events (``jsx.members.household.*``, :mod:`jsx_funds.projections.consumers`):
ids, village, the 户主's ``persons/…`` id, member count and the dated
family-planning situations — no names or ID numbers. Facts carry the time
they happened; a row is only overwritten by a fact at least as new, so events
delivered out of order converge to the latest state.

Public reads: :func:`household`, :func:`household_situations` (in force on a
day, for eligibility), :func:`household_heads` (who is paid for a
per-household program), :func:`household_sizes`, :func:`situations_in_force`
(a WHERE clause a set-based query joins on), :func:`deaths_in` (persons recorded dead
in a region, for the batch planner and reconciliation).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from jsx_funds.adapters.db import aware, utcnow
from jsx_funds.projections.tables import HouseholdProjection, PersonDeathProjection, SituationProjection

#: SQLite's cap on bound parameters, with room to spare.
_CHUNK = 5000


@dataclass(frozen=True)
class HouseholdFact:
    """A household as a members event states it at ``occurred_at``."""

    household_id: str
    village: str
    head_person: str
    member_count: int
    occurred_at: datetime


@dataclass(frozen=True)
class SituationFact:
    """A dated situation of a household (ONLY_CHILD, TWO_DAUGHTERS, SPECIAL_BEREAVED, SPECIAL_DISABLED)."""

    kind: str
    effective_from: date
    effective_to: date | None
    disability_grade: int


async def apply_household(s: AsyncSession, fact: HouseholdFact, situation: SituationFact | None = None) -> None:
    """Upsert the household (and, when given, that dated situation), in the caller's transaction."""
    hid, when = fact.household_id, fact.occurred_at
    row = await s.get(HouseholdProjection, hid, with_for_update=True)
    if row is None:
        s.add(
            HouseholdProjection(
                household_id=hid,
                village=fact.village,
                head_person=fact.head_person,
                member_count=fact.member_count,
                as_of=when,
                updated_at=utcnow(),
            )
        )
        await s.flush()
    elif aware(row.as_of) <= when:
        row.village, row.head_person, row.member_count, row.as_of = (
            fact.village,
            fact.head_person,
            fact.member_count,
            when,
        )
        row.updated_at = utcnow()
    if situation is None:
        return
    sit = (
        await s.execute(
            select(SituationProjection).where(
                SituationProjection.household_id == hid,
                SituationProjection.kind == situation.kind,
                SituationProjection.effective_from == situation.effective_from,
            )
        )
    ).scalar()
    if sit is None:
        s.add(
            SituationProjection(
                household_id=hid,
                kind=situation.kind,
                effective_from=situation.effective_from,
                effective_to=situation.effective_to,
                disability_grade=situation.disability_grade,
                as_of=when,
            )
        )
    elif aware(sit.as_of) <= when:
        sit.effective_to, sit.disability_grade, sit.as_of = situation.effective_to, situation.disability_grade, when
    await s.flush()


async def household(s: AsyncSession, household_id: str) -> HouseholdProjection | None:
    """The projected household (bare id, without ``households/``), or None if no event has arrived."""
    return await s.get(HouseholdProjection, household_id)


def situations_in_force(on: date) -> ColumnElement[bool]:
    """A situation in force on ``on`` (its start on or before, no end or an end on or after)."""
    return (SituationProjection.effective_from <= on) & (
        SituationProjection.effective_to.is_(None) | (SituationProjection.effective_to >= on)
    )


async def household_situations(s: AsyncSession, household_id: str, on: date) -> list[SituationProjection]:
    """The household's situations in force on ``on`` (for eligibility), oldest first."""
    return list(
        (
            await s.execute(
                select(SituationProjection)
                .where(
                    SituationProjection.household_id == household_id,
                    situations_in_force(on),
                )
                .order_by(SituationProjection.effective_from)
            )
        ).scalars()
    )


async def household_heads(s: AsyncSession, households: Iterable[str]) -> dict[str, str]:
    """``households/{id}`` (or bare id) → the 户主's ``persons/…`` per the projection; unknown ones left out."""
    ids = list({h.removeprefix("households/") for h in households})
    out: dict[str, str] = {}
    for i in range(0, len(ids), _CHUNK):
        rows = await s.execute(
            select(HouseholdProjection.household_id, HouseholdProjection.head_person).where(
                HouseholdProjection.household_id.in_(ids[i : i + _CHUNK])
            )
        )
        out.update({f"households/{h}": p for h, p in rows if p})
    return out


async def household_sizes(s: AsyncSession, household_ids: Iterable[str]) -> dict[str, int]:
    """Bare household id → its member count per the projection; unknown ones left out."""
    ids = list(set(household_ids))
    out: dict[str, int] = {}
    for i in range(0, len(ids), _CHUNK):
        rows = await s.execute(
            select(HouseholdProjection.household_id, HouseholdProjection.member_count).where(
                HouseholdProjection.household_id.in_(ids[i : i + _CHUNK])
            )
        )
        out.update({h: int(n or 0) for h, n in rows})
    return out


@dataclass(frozen=True)
class DeathFact:
    """A person's death as a members event states it at ``occurred_at``; ``death_date`` None: withdrawn."""

    person: str
    village: str
    household: str
    death_date: date | None
    occurred_at: datetime


async def apply_death(s: AsyncSession, fact: DeathFact) -> bool:
    """Record (or correct, or lift) a person's death, in the caller's transaction; a fact older than
    the one applied is ignored (returns False)."""
    row = await s.get(PersonDeathProjection, fact.person, with_for_update=True)
    if row is None:
        s.add(
            PersonDeathProjection(
                person=fact.person,
                village=fact.village,
                household=fact.household,
                death_date=fact.death_date,
                as_of=fact.occurred_at,
                updated_at=utcnow(),
            )
        )
    elif aware(row.as_of) <= fact.occurred_at:
        row.village, row.death_date, row.as_of = fact.village, fact.death_date, fact.occurred_at
        if fact.household:
            row.household = fact.household
        row.updated_at = utcnow()
    else:
        return False
    await s.flush()
    return True


async def deaths_in(s: AsyncSession, region_prefix: str) -> dict[str, tuple[str, date]]:
    """``persons/…`` → (village, date of death) for everyone recorded dead in villages under the region
    (``RegionCode.prefix``); withdrawn deaths left out."""
    rows = await s.execute(
        select(PersonDeathProjection.person, PersonDeathProjection.village, PersonDeathProjection.death_date).where(
            PersonDeathProjection.village.startswith(region_prefix, autoescape=True),
            PersonDeathProjection.death_date.is_not(None),
        )
    )
    return {p: (v, dd) for p, v, dd in rows if dd is not None}
