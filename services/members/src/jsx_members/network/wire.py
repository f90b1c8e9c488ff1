"""Members, volunteers and pairings on the wire: rows → ``jsx.members.v1`` responses and events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from jsx.common.v1 import common_pb2
from jsx.members.v1 import events_pb2
from jsx.members.v1 import members_pb2 as pb
from jsx_members.adapters.pb import day, enum_out, region
from jsx_members.network.domain import MemberType, PairingKind
from jsx_members.network.tables import MemberRow, PairingRow, VolunteerRow
from jsxcore import wire
from jsxcore.values import RegionCode


def member(a: MemberRow) -> pb.AssociationMember:
    return pb.AssociationMember(
        name=f"members/{a.id}",
        person=f"persons/{a.person_id}",
        association=region(a.region),
        level=pb.AssociationLevel.ValueType(RegionCode.parse(a.region).level),
        member_type=enum_out(pb.MemberType, "MEMBER_TYPE_", a.member_type),
        joined_date=day(a.joined_on),
        left_date=day(a.left_on),
        left_reason=a.left_reason,
        create_time=wire.ts_to(a.created_at),
    )


def member_list(rows: Sequence[MemberRow], next_page_token: str) -> pb.ListMembersResponse:
    return pb.ListMembersResponse(members=[member(a) for a in rows], next_page_token=next_page_token)


def joined(a: MemberRow, member_type: MemberType, joined_on: date) -> events_pb2.MemberJoined:
    return events_pb2.MemberJoined(
        member=f"members/{a.id}",
        person=f"persons/{a.person_id}",
        association=region(a.region),
        member_type=enum_out(pb.MemberType, "MEMBER_TYPE_", member_type),
        joined_date=day(joined_on),
    )


def left(a: MemberRow, left_on: date) -> events_pb2.MemberLeft:
    return events_pb2.MemberLeft(
        member=f"members/{a.id}", person=f"persons/{a.person_id}", association=region(a.region), left_date=day(left_on)
    )


def changed(a: MemberRow) -> events_pb2.MemberChanged:
    return events_pb2.MemberChanged(
        member=f"members/{a.id}",
        person=f"persons/{a.person_id}",
        association=region(a.region),
        member_type=enum_out(pb.MemberType, "MEMBER_TYPE_", a.member_type),
    )


def volunteer(v: VolunteerRow) -> pb.Volunteer:
    return pb.Volunteer(
        name=f"volunteers/{v.id}",
        person=f"persons/{v.person_id}",
        village=region(v.region),
        skills=v.skills,
        active=v.active,
        create_time=wire.ts_to(v.created_at),
    )


def volunteer_list(rows: Sequence[VolunteerRow], next_page_token: str) -> pb.ListVolunteersResponse:
    return pb.ListVolunteersResponse(volunteers=[volunteer(v) for v in rows], next_page_token=next_page_token)


def pairing(p: PairingRow) -> pb.Pairing:
    return pb.Pairing(
        name=f"pairings/{p.id}",
        volunteer=f"volunteers/{p.volunteer_id}",
        household=f"households/{p.household_id}",
        kind=enum_out(pb.PairingKind, "PAIRING_KIND_", p.kind),
        start_date=day(p.start_date),
        end_date=day(p.end_date),
        end_reason=p.end_reason,
        create_time=wire.ts_to(p.created_at),
        rule=common_pb2.Provenance(
            plugin=p.rule_plugin,
            plugin_version=p.rule_version,
            hook="jsx_pairing_rules",
            reasons=p.rule_basis.split("\n") if p.rule_basis else [],
        )
        if p.rule_plugin
        else None,
    )


def pairing_list(rows: Sequence[PairingRow], next_page_token: str) -> pb.ListPairingsResponse:
    return pb.ListPairingsResponse(pairings=[pairing(p) for p in rows], next_page_token=next_page_token)


def paired(p: PairingRow, village: str, kind: PairingKind) -> events_pb2.VolunteerPaired:
    return events_pb2.VolunteerPaired(
        pairing=f"pairings/{p.id}",
        volunteer=f"volunteers/{p.volunteer_id}",
        household=f"households/{p.household_id}",
        village=region(village),
        kind=enum_out(pb.PairingKind, "PAIRING_KIND_", kind),
        start_date=day(p.start_date),
    )


def unpaired(p: PairingRow, village: str, end: date) -> events_pb2.VolunteerUnpaired:
    return events_pb2.VolunteerUnpaired(
        pairing=f"pairings/{p.id}",
        volunteer=f"volunteers/{p.volunteer_id}",
        household=f"households/{p.household_id}",
        village=region(village),
        end_date=day(end),
    )


__all__ = [
    "changed",
    "joined",
    "left",
    "member",
    "member_list",
    "paired",
    "pairing",
    "pairing_list",
    "unpaired",
    "volunteer",
    "volunteer_list",
]
