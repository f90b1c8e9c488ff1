"""Households on the wire: rows → ``jsx.members.v1`` responses and events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from jsx.members.v1 import events_pb2
from jsx.members.v1 import members_pb2 as pb
from jsx_members.adapters.pb import day, enum_out, region
from jsx_members.households.domain import Relation, SituationRecord, situation_periods
from jsx_members.households.tables import HouseholdRow
from jsxcore import wire


def name(household_id: str) -> str:
    return f"households/{household_id}"


def household(
    h: HouseholdRow, members: Sequence[tuple[str, Relation]], history: Sequence[SituationRecord]
) -> pb.Household:
    """A household with its members (in order) and its situations, each with the last day it was in force."""
    out = pb.Household(
        name=name(h.id),
        head=f"persons/{h.head_person_id}",
        village=region(h.village),
        address=h.address,
        create_time=wire.ts_to(h.created_at),
        update_time=wire.ts_to(h.updated_at),
        closed_date=day(h.closed_on),
        merged_into=name(h.merged_into) if h.merged_into else "",
    )
    for person_id, relation in members:
        out.members.add(person=f"persons/{person_id}", relation=enum_out(pb.Relation, "RELATION_", relation))
    for e, until in situation_periods(history):
        out.situations.add(
            kind=enum_out(pb.SituationKind, "SITUATION_KIND_", e.situation),
            disability_grade=e.disability_grade or 0,
            honor_certificate=e.honor_certificate,
            effective_from=day(e.effective_from),
            effective_to=day(until),
            note=e.note,
        )
    return out


def household_list(households: Sequence[pb.Household], next_page_token: str) -> pb.ListHouseholdsResponse:
    return pb.ListHouseholdsResponse(households=households, next_page_token=next_page_token)


def unpaired_list(households: Sequence[pb.Household], next_page_token: str) -> pb.ListUnpairedFamiliesResponse:
    return pb.ListUnpairedFamiliesResponse(households=households, next_page_token=next_page_token)


def registered(
    household_id: str, village: str, head_person_id: str, member_count: int
) -> events_pb2.HouseholdRegistered:
    return events_pb2.HouseholdRegistered(
        household=name(household_id),
        village=region(village),
        head_person=f"persons/{head_person_id}",
        member_count=member_count,
    )


def situation_changed(
    household_id: str,
    village: str,
    record: SituationRecord,
    ended: date | None,
    *,
    head_person_id: str,
    member_count: int,
) -> events_pb2.HouseholdSituationChanged:
    return events_pb2.HouseholdSituationChanged(
        household=name(household_id),
        village=region(village),
        kind=enum_out(pb.SituationKind, "SITUATION_KIND_", record.situation),
        effective_from=day(record.effective_from),
        effective_to=day(ended),
        disability_grade=record.disability_grade or 0,
        head_person=f"persons/{head_person_id}",
        member_count=member_count,
    )


def grade_changed(
    household_id: str, village: str, previous_grade: int, record: SituationRecord
) -> events_pb2.HouseholdDisabilityGradeChanged:
    return events_pb2.HouseholdDisabilityGradeChanged(
        household=name(household_id),
        village=region(village),
        previous_grade=previous_grade,
        disability_grade=record.disability_grade or 0,
        effective_from=day(record.effective_from),
    )


def recovered(
    household_id: str, village: str, previous_grade: int, on: date
) -> events_pb2.HouseholdDisabilityRecovered:
    return events_pb2.HouseholdDisabilityRecovered(
        household=name(household_id), village=region(village), previous_grade=previous_grade, recovered_date=day(on)
    )


def members_changed(
    h: HouseholdRow, member_count: int, added: Sequence[str], removed: Sequence[str], previous_head: str
) -> events_pb2.HouseholdMembersChanged:
    return events_pb2.HouseholdMembersChanged(
        household=name(h.id),
        village=region(h.village),
        head_person=f"persons/{h.head_person_id}",
        member_count=member_count,
        added_persons=[f"persons/{x}" for x in added],
        removed_persons=[f"persons/{x}" for x in removed],
        previous_head_person=f"persons/{previous_head}" if previous_head != h.head_person_id else "",
    )


__all__ = [
    "grade_changed",
    "household",
    "household_list",
    "members_changed",
    "name",
    "recovered",
    "registered",
    "situation_changed",
    "unpaired_list",
]
