"""Life events on the wire: the facts other services consume
(``PersonMoved``, ``HouseholdChildAdded``, ``HouseholdSplit``,
``HouseholdMerged``) and SplitHousehold's response. Ids, regions and dates
only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from jsx.members.v1 import events_pb2
from jsx.members.v1 import members_pb2 as pb
from jsx_members.adapters.pb import day, enum_out, region
from jsx_members.households.domain import Relation
from jsx_members.life.domain import CheckedMove
from jsxcore import wire


def _household(household_id: str | None) -> str:
    return f"households/{household_id}" if household_id else ""


def moved(
    person_id: str, village: str, move: CheckedMove, household_id: str | None, household_moved: bool
) -> events_pb2.PersonMoved:
    dest = move.destination
    return events_pb2.PersonMoved(
        person=f"persons/{person_id}",
        village=region(village),
        destination=region(dest.code) if dest is not None else None,
        out_of_province=move.out_of_province,
        moved_date=wire.date_to(move.moved_date),
        household=_household(household_id),
        household_moved=household_moved,
    )


def child_added(
    household_id: str,
    village: str,
    person_id: str,
    relation: Relation,
    *,
    adopted: bool,
    on: date,
    head_person_id: str,
    member_count: int,
) -> events_pb2.HouseholdChildAdded:
    return events_pb2.HouseholdChildAdded(
        household=_household(household_id),
        village=region(village),
        person=f"persons/{person_id}",
        relation=enum_out(pb.Relation, "RELATION_", relation),
        adopted=adopted,
        date=day(on),
        head_person=f"persons/{head_person_id}",
        member_count=member_count,
    )


def split(
    household_id: str,
    village: str,
    new_household_id: str,
    persons: Sequence[str],
    new_head: str,
    on: date,
    member_count: int,
) -> events_pb2.HouseholdSplit:
    return events_pb2.HouseholdSplit(
        household=_household(household_id),
        village=region(village),
        new_household=_household(new_household_id),
        persons=[f"persons/{p}" for p in persons],
        new_head_person=f"persons/{new_head}",
        split_date=day(on),
        member_count=member_count,
    )


def merged(
    household_id: str, village: str, merged_id: str, persons: Sequence[str], on: date, member_count: int
) -> events_pb2.HouseholdMerged:
    return events_pb2.HouseholdMerged(
        household=_household(household_id),
        village=region(village),
        merged_household=_household(merged_id),
        persons=[f"persons/{p}" for p in persons],
        merge_date=day(on),
        member_count=member_count,
    )


def split_response(household: pb.Household, new_household: pb.Household) -> pb.SplitHouseholdResponse:
    return pb.SplitHouseholdResponse(household=household, new_household=new_household)


__all__ = ["child_added", "merged", "moved", "split", "split_response"]
