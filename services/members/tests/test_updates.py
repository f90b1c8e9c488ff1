"""Update RPCs (AIP-134 field masks): households (members, 户主 change),
memberships, volunteers, sites (and closing them), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import select

from jsx.common.v1 import common_pb2 as c
from jsx.members.v1 import events_pb2
from jsx.members.v1 import members_pb2 as pb
from jsx_members.sites.tables import SiteRow
from jsx_members.testdata import acting, make_id_number, rid
from jsxcore.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from jsxcore.outbox import OutboxEvent

YL, XP = "431222101201", "431224102203"


async def person(env, seq: int, birth: date = date(1970, 1, 1), village: str = YL, female: bool = False) -> str:
    idn = make_id_number(village[:6], birth, seq, female=female)
    p = await env.api.CreatePerson(
        pb.CreatePersonRequest(
            person=pb.Person(display_name="王五", id_number=idn, village=c.RegionCode(code=village)), request_id=rid()
        )
    )
    return p.name


async def events(env, etype: type[Any]) -> list[Any]:
    async with env.service.sessions() as s:
        rows = (
            await s.execute(select(OutboxEvent).where(OutboxEvent.event_type == etype.DESCRIPTOR.full_name))
        ).scalars()
        out = []
        for r in rows:
            msg = etype()
            msg.ParseFromString(r.payload)
            out.append(msg)
        return out


def mask(*paths: str) -> FieldMask:
    return FieldMask(paths=list(paths))


async def household(env) -> tuple[pb.Household, list[str]]:
    head, spouse, child = (
        await person(env, 1),
        await person(env, 2, female=True),
        await person(env, 3, date(2010, 5, 5)),
    )
    h = await env.api.CreateHousehold(
        pb.CreateHouseholdRequest(
            household=pb.Household(
                head=head,
                village=c.RegionCode(code=YL),
                members=[
                    pb.HouseholdMember(person=head, relation=pb.RELATION_HEAD),
                    pb.HouseholdMember(person=spouse, relation=pb.RELATION_SPOUSE),
                    pb.HouseholdMember(person=child, relation=pb.RELATION_SON),
                ],
            ),
            request_id=rid(),
        )
    )
    return h, [head, spouse, child]


def members(*pairs: tuple[str, pb.Relation.ValueType]) -> list[pb.HouseholdMember]:
    return [pb.HouseholdMember(person=p, relation=r) for p, r in pairs]


async def test_household_members_add_remove_and_head_change(env) -> None:
    with acting():
        h, (head, spouse, child) = await household(env)
        grandma = await person(env, 4, date(1945, 2, 2), female=True)
        req = pb.UpdateHouseholdRequest(
            household=pb.Household(
                name=h.name,
                address="岩门村3组",
                members=members((head, pb.RELATION_HEAD), (spouse, pb.RELATION_SPOUSE), (grandma, pb.RELATION_MOTHER)),
            ),
            update_mask=mask("members", "address"),
            request_id=rid(),
        )
        out = await env.api.UpdateHousehold(req)
        assert [x.person for x in out.members] == [head, spouse, grandma] and out.address == "岩门村3组"
        assert await env.api.UpdateHousehold(req) == out  # same request_id → first response
        ev = await events(env, events_pb2.HouseholdMembersChanged)
        assert len(ev) == 1 and list(ev[0].added_persons) == [grandma] and list(ev[0].removed_persons) == [child]
        assert ev[0].member_count == 3 and ev[0].head_person == head and ev[0].previous_head_person == ""

        # The removed child can now join another household; the grandmother cannot (she is in this one).
        other = await person(env, 5, date(1980, 1, 1))
        with pytest.raises(FailedPrecondition) as f:
            await env.api.CreateHousehold(
                pb.CreateHouseholdRequest(
                    household=pb.Household(
                        head=other,
                        village=c.RegionCode(code=YL),
                        members=members((other, pb.RELATION_HEAD), (grandma, pb.RELATION_MOTHER)),
                    ),
                    request_id=rid(),
                )
            )
        assert f.value.reason == "PERSON_IN_OTHER_HOUSEHOLD"
        await env.api.CreateHousehold(
            pb.CreateHouseholdRequest(
                household=pb.Household(
                    head=other,
                    village=c.RegionCode(code=YL),
                    members=members((other, pb.RELATION_HEAD), (child, pb.RELATION_SON)),
                ),
                request_id=rid(),
            )
        )

        # Head change: needs the "head" path, and relations restated to the new head.
        swap = members((spouse, pb.RELATION_HEAD), (head, pb.RELATION_SPOUSE), (grandma, pb.RELATION_OTHER))
        with pytest.raises(InvalidArgument) as e:
            await env.api.UpdateHousehold(
                pb.UpdateHouseholdRequest(
                    household=pb.Household(name=h.name, members=swap), update_mask=mask("members"), request_id=rid()
                )
            )
        assert e.value.reason == "HEAD_CHANGE_NOT_REQUESTED"
        with pytest.raises(InvalidArgument) as e:
            await env.api.UpdateHousehold(
                pb.UpdateHouseholdRequest(
                    household=pb.Household(name=h.name, head=spouse), update_mask=mask("head"), request_id=rid()
                )
            )
        assert e.value.reason == "HEAD_CHANGE_NEEDS_MEMBERS" and e.value.violations[0].field == "update_mask"
        out = await env.api.UpdateHousehold(
            pb.UpdateHouseholdRequest(
                household=pb.Household(name=h.name, head=spouse, members=swap),
                update_mask=mask("head", "members"),
                request_id=rid(),
            )
        )
        assert out.head == spouse
        ev = await events(env, events_pb2.HouseholdMembersChanged)
        assert (
            len(ev) == 2
            and ev[-1].previous_head_person == head
            and ev[-1].head_person == spouse
            and not ev[-1].added_persons
        )


async def test_household_rules_hold_on_update(env) -> None:
    with acting():
        h, (head, spouse, child) = await household(env)
        second = await person(env, 6, female=True)
        cases = {
            "minor head": (child, members((child, pb.RELATION_HEAD), (head, pb.RELATION_MOTHER))),
            "two spouses": (
                head,
                members((head, pb.RELATION_HEAD), (spouse, pb.RELATION_SPOUSE), (second, pb.RELATION_SPOUSE)),
            ),
            "two heads": (head, members((head, pb.RELATION_HEAD), (spouse, pb.RELATION_HEAD))),
            "no head": (head, members((spouse, pb.RELATION_SPOUSE))),
        }
        for label, (new_head, mem) in cases.items():
            with pytest.raises(InvalidArgument) as e:
                await env.api.UpdateHousehold(
                    pb.UpdateHouseholdRequest(
                        household=pb.Household(name=h.name, head=new_head, members=mem),
                        update_mask=mask("head", "members"),
                        request_id=rid(),
                    )
                )
            assert e.value.violations, label
        # A deceased head is refused too.
        await env.api.UpdatePerson(
            pb.UpdatePersonRequest(
                person=pb.Person(
                    name=head, status=pb.PERSON_STATUS_DECEASED, death_date=c.Date(year=2024, month=1, day=2)
                ),
                update_mask=mask("status", "death_date"),
                request_id=rid(),
            )
        )
        with pytest.raises(InvalidArgument):
            await env.api.UpdateHousehold(
                pb.UpdateHouseholdRequest(
                    household=pb.Household(
                        name=h.name, members=members((head, pb.RELATION_HEAD), (spouse, pb.RELATION_SPOUSE))
                    ),
                    update_mask=mask("members"),
                    request_id=rid(),
                )
            )
        # Nothing changed, no event.
        got = await env.api.GetHousehold(pb.GetHouseholdRequest(name=h.name))
        assert [x.person for x in got.members] == [head, spouse, child]
        assert await events(env, events_pb2.HouseholdMembersChanged) == []


async def test_field_masks_unknown_immutable_and_required(env) -> None:
    with acting():
        h, _ = await household(env)
        for path, reason in (
            ("village", "FIELD_NOT_UPDATABLE"),
            ("situations", "FIELD_NOT_UPDATABLE"),
            ("nonsense", "FIELD_NOT_UPDATABLE"),
        ):
            with pytest.raises(InvalidArgument) as e:
                await env.api.UpdateHousehold(
                    pb.UpdateHouseholdRequest(
                        household=pb.Household(name=h.name), update_mask=mask(path), request_id=rid()
                    )
                )
            assert e.value.reason == reason and e.value.violations[0].field == "update_mask"
            assert any("\u4e00" <= ch <= "\u9fff" for ch in e.value.violations[0].description)
        with pytest.raises(InvalidArgument) as e:
            await env.api.UpdateHousehold(
                pb.UpdateHouseholdRequest(household=pb.Household(name=h.name), request_id=rid())
            )
        assert e.value.reason == "UPDATE_MASK_REQUIRED"
        with pytest.raises(InvalidArgument) as e:
            await env.api.UpdatePerson(
                pb.UpdatePersonRequest(
                    person=pb.Person(name=h.head), update_mask=mask("id_number", "sex"), request_id=rid()
                )
            )
        assert len(e.value.violations) == 2 and "身份证号不可修改" in e.value.violations[0].description


async def test_household_region_scope(env) -> None:
    with acting():
        h, (head, _spouse, _child) = await household(env)
    with acting("431224", subject="clerk-xp"):
        xp = await person(env, 7, village=XP)
        with pytest.raises(PermissionDenied):
            await env.api.UpdateHousehold(
                pb.UpdateHouseholdRequest(
                    household=pb.Household(name=h.name, address="x"), update_mask=mask("address"), request_id=rid()
                )
            )
    # A 沅陵 clerk cannot pull a 溆浦 person into a 沅陵 household.
    with acting(), pytest.raises(PermissionDenied):
        await env.api.UpdateHousehold(
            pb.UpdateHouseholdRequest(
                household=pb.Household(name=h.name, members=members((head, pb.RELATION_HEAD), (xp, pb.RELATION_OTHER))),
                update_mask=mask("members"),
                request_id=rid(),
            )
        )


async def test_update_member_type_association_and_leaving(env) -> None:
    with acting():
        p = await person(env, 8)
        a = await env.api.CreateMember(
            pb.CreateMemberRequest(
                member=pb.AssociationMember(
                    person=p,
                    association=c.RegionCode(code=YL),
                    member_type=pb.MEMBER_TYPE_ORDINARY,
                    joined_date=c.Date(year=2020, month=1, day=1),
                ),
                request_id=rid(),
            )
        )
        out = await env.api.UpdateMember(
            pb.UpdateMemberRequest(
                member=pb.AssociationMember(
                    name=a.name, member_type=pb.MEMBER_TYPE_COUNCIL, association=c.RegionCode(code="431222101")
                ),
                update_mask=mask("member_type", "association"),
                request_id=rid(),
            )
        )
        assert out.member_type == pb.MEMBER_TYPE_COUNCIL and out.level == pb.ASSOCIATION_LEVEL_TOWNSHIP
        changed = await events(env, events_pb2.MemberChanged)
        assert len(changed) == 1 and changed[0].member_type == pb.MEMBER_TYPE_COUNCIL
        with pytest.raises(InvalidArgument) as e:  # not the person's home chain
            await env.api.UpdateMember(
                pb.UpdateMemberRequest(
                    member=pb.AssociationMember(name=a.name, association=c.RegionCode(code="431222102")),
                    update_mask=mask("association"),
                    request_id=rid(),
                )
            )
        assert e.value.reason == "ASSOCIATION_NOT_HOME"
        with pytest.raises(InvalidArgument) as e:
            await env.api.UpdateMember(
                pb.UpdateMemberRequest(
                    member=pb.AssociationMember(name=a.name, joined_date=c.Date(year=2019, month=1, day=1)),
                    update_mask=mask("joined_date"),
                    request_id=rid(),
                )
            )
        assert "入会日期不可修改" in e.value.violations[0].description
        with pytest.raises(InvalidArgument):  # before joining
            await env.api.UpdateMember(
                pb.UpdateMemberRequest(
                    member=pb.AssociationMember(name=a.name, left_date=c.Date(year=2019, month=1, day=1)),
                    update_mask=mask("left_date"),
                    request_id=rid(),
                )
            )
        assert await events(env, events_pb2.MemberLeft) == []
        out = await env.api.UpdateMember(
            pb.UpdateMemberRequest(
                member=pb.AssociationMember(
                    name=a.name, left_date=c.Date(year=2024, month=5, day=1), left_reason="迁出"
                ),
                update_mask=mask("left_date", "left_reason"),
                request_id=rid(),
            )
        )
        assert out.left_date.year == 2024 and out.left_reason == "迁出"
        left = await events(env, events_pb2.MemberLeft)
        assert len(left) == 1 and left[0].member == a.name and left[0].left_date.month == 5
        with pytest.raises(FailedPrecondition) as f:
            await env.api.UpdateMember(
                pb.UpdateMemberRequest(
                    member=pb.AssociationMember(name=a.name, member_type=pb.MEMBER_TYPE_BACKBONE),
                    update_mask=mask("member_type"),
                    request_id=rid(),
                )
            )
        assert f.value.reason == "MEMBERSHIP_ENDED"
        out = await env.api.UpdateMember(
            pb.UpdateMemberRequest(
                member=pb.AssociationMember(name=a.name, left_reason="户籍迁往外省"),
                update_mask=mask("left_reason"),
                request_id=rid(),
            )
        )
        assert out.left_reason == "户籍迁往外省" and len(await events(env, events_pb2.MemberLeft)) == 1


async def test_update_volunteer_active_with_pairing(env) -> None:
    with acting():
        h, (_head, _spouse, _child) = await household(env)
        await env.api.RecordSituation(
            pb.RecordSituationRequest(
                household=h.name,
                situation=pb.FamilySituation(
                    kind=pb.SITUATION_KIND_SPECIAL_BEREAVED, effective_from=c.Date(year=2023, month=1, day=1)
                ),
                request_id=rid(),
            )
        )
        v = await env.api.CreateVolunteer(
            pb.CreateVolunteerRequest(volunteer=pb.Volunteer(person=await person(env, 9)), request_id=rid())
        )
        pairing = await env.api.PairVolunteer(
            pb.PairVolunteerRequest(volunteer=v.name, household=h.name, request_id=rid())
        )
        off = pb.UpdateVolunteerRequest(
            volunteer=pb.Volunteer(name=v.name, active=False), update_mask=mask("active"), request_id=rid()
        )
        with pytest.raises(FailedPrecondition) as e:
            await env.api.UpdateVolunteer(off)
        assert e.value.reason == "VOLUNTEER_HAS_PAIRING"
        await env.api.EndPairing(pb.EndPairingRequest(name=pairing.name, request_id=rid()))
        out = await env.api.UpdateVolunteer(
            pb.UpdateVolunteerRequest(
                volunteer=pb.Volunteer(name=v.name, active=False, skills="心理疏导"),
                update_mask=mask("active", "skills"),
                request_id=rid(),
            )
        )
        assert not out.active and out.skills == "心理疏导"
        with pytest.raises(FailedPrecondition):  # an inactive volunteer is not paired
            await env.api.PairVolunteer(pb.PairVolunteerRequest(volunteer=v.name, household=h.name, request_id=rid()))
        with pytest.raises(InvalidArgument):
            await env.api.UpdateVolunteer(
                pb.UpdateVolunteerRequest(
                    volunteer=pb.Volunteer(name=v.name), update_mask=mask("person"), request_id=rid()
                )
            )


async def test_update_and_close_site(env) -> None:
    with acting():
        x = await env.api.CreateSite(
            pb.CreateSiteRequest(
                site=pb.Site(
                    display_name="岩门村暖心家园",
                    kind=pb.SITE_KIND_WARM_HOME,
                    village=c.RegionCode(code=YL),
                    opened_date=c.Date(year=2022, month=3, day=1),
                ),
                request_id=rid(),
            )
        )
        out = await env.api.UpdateSite(
            pb.UpdateSiteRequest(
                site=pb.Site(name=x.name, six_haves=pb.SixHaves(place=True, sign=True)),
                update_mask=mask("six_haves"),
                request_id=rid(),
            )
        )
        assert out.six_haves.place and out.six_haves.sign and not out.six_haves.plan
        with pytest.raises(InvalidArgument) as e:
            await env.api.UpdateSite(
                pb.UpdateSiteRequest(
                    site=pb.Site(name=x.name, kind=pb.SITE_KIND_HEALTH_STATION),
                    update_mask=mask("kind"),
                    request_id=rid(),
                )
            )
        assert "场所类型不可修改" in e.value.violations[0].description
        with pytest.raises(InvalidArgument):
            await env.api.CloseSite(
                pb.CloseSiteRequest(name=x.name, closed_date=c.Date(year=2021, month=1, day=1), request_id=rid())
            )
    with acting("431224", subject="clerk-xp"), pytest.raises(PermissionDenied):
        await env.api.CloseSite(pb.CloseSiteRequest(name=x.name, request_id=rid()))
    with acting():
        closed = await env.api.CloseSite(
            pb.CloseSiteRequest(
                name=x.name, closed_date=c.Date(year=2024, month=5, day=31), reason="并入镇健康驿站", request_id=rid()
            )
        )
        assert closed.closed_date.day == 31 and closed.closed_reason == "并入镇健康驿站"
        ev = await events(env, events_pb2.SiteClosed)
        assert (
            len(ev) == 1 and ev[0].site == x.name and ev[0].kind == pb.SITE_KIND_WARM_HOME and ev[0].village.code == YL
        )
        with pytest.raises(FailedPrecondition) as f:
            await env.api.CloseSite(pb.CloseSiteRequest(name=x.name, request_id=rid()))
        assert f.value.reason == "SITE_CLOSED"
        with pytest.raises(FailedPrecondition):
            await env.api.UpdateSite(
                pb.UpdateSiteRequest(
                    site=pb.Site(name=x.name, address="新址"), update_mask=mask("address"), request_id=rid()
                )
            )
        assert [s.name for s in (await env.api.ListSites(pb.ListSitesRequest())).sites] == []
        assert [s.name for s in (await env.api.ListSites(pb.ListSitesRequest(include_closed=True))).sites] == [x.name]
        async with env.service.sessions() as s:
            assert (await s.get(SiteRow, x.name.split("/")[1])).closed_on == date(2024, 5, 31)
