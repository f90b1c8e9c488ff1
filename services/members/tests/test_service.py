"""Members use cases on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import select

from jsx.common.v1 import common_pb2 as c
from jsx.members.v1 import members_pb2 as pb
from jsx_members.adapters import db
from jsx_members.households.tables import HouseholdRow
from jsx_members.persons.tables import PersonRow
from jsx_members.testdata import TODAY, acting, make_id_number, rid
from jsxcore.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from jsxcore.outbox import OutboxEvent

YL = "431222101201"  # 沅陵
XP = "431224102203"  # 溆浦


def person(idn: str, name: str = "张三", village: str = YL, phone: str = "13912345678") -> pb.Person:
    return pb.Person(display_name=name, id_number=idn, phone=phone, village=c.RegionCode(code=village))


async def new_person(env, idn: str, **kw: Any) -> pb.Person:
    return await env.api.CreatePerson(pb.CreatePersonRequest(person=person(idn, **kw), request_id=rid()))


async def test_create_get_lookup_masked_and_full(env) -> None:
    idn = make_id_number("431222", date(1970, 3, 4), 11)
    with acting():
        p = await new_person(env, idn)
        assert p.name.startswith("persons/") and p.id_number == "" and p.phone == ""
        assert p.id_number_masked == idn[:4] + "*" * 10 + idn[-4:] and p.phone_masked == "139****5678"
        assert p.display_name == "张*" and p.sex == pb.SEX_MALE and p.birth_date.year == 1970
        # A clerk asking for the full view still gets masked data (no PII permission).
        full = await env.api.GetPerson(pb.GetPersonRequest(name=p.name, view=pb.PERSON_VIEW_FULL))
        assert full.id_number == ""
        found = await env.api.LookupPerson(pb.LookupPersonRequest(id_number=idn.lower()))
        assert found.name == p.name
        with pytest.raises(NotFound):
            await env.api.LookupPerson(pb.LookupPersonRequest(id_number=make_id_number("431222", date(1970, 3, 4), 12)))
    with acting(roles=("auditor",)):
        full = await env.api.GetPerson(pb.GetPersonRequest(name=p.name, view=pb.PERSON_VIEW_FULL))
        assert full.id_number == idn and full.phone == "13912345678" and full.display_name == "张三"


async def test_duplicate_id_number_names_existing_person_masked(env) -> None:
    idn = make_id_number("431222", date(1980, 1, 2), 3)
    with acting():
        p = await new_person(env, idn)
        with pytest.raises(AlreadyExists) as e:
            await new_person(env, idn.replace("X", "x"), name="李四")
    assert p.name in e.value.message and idn[:4] + "**********" + idn[-4:] in e.value.message
    assert idn not in e.value.message and e.value.reason == "PERSON_ALREADY_EXISTS"


async def test_invalid_person_gives_field_violations(env) -> None:
    good = make_id_number("431222", date(1980, 1, 2), 3)
    bad = good[:-1] + ("1" if good[-1] != "1" else "2")
    with acting(), pytest.raises(InvalidArgument) as e:
        await env.api.CreatePerson(pb.CreatePersonRequest(person=person(bad, village="999999"), request_id=rid()))
    fields = {v.field for v in e.value.violations}
    assert {"person.id_number", "person.village"} <= fields
    async with env.service.sessions() as s:
        assert await db.count(s, PersonRow) == 0


async def test_region_scope(env) -> None:
    with acting("431224", subject="clerk-xp"):
        xp = await new_person(env, make_id_number("431224", date(1975, 5, 5), 1), village=XP)
    with acting("431222"):
        with pytest.raises(PermissionDenied):
            await env.api.GetPerson(pb.GetPersonRequest(name=xp.name))
        with pytest.raises(PermissionDenied):
            await env.api.LookupPerson(pb.LookupPersonRequest(id_number=make_id_number("431224", date(1975, 5, 5), 1)))
        with pytest.raises(PermissionDenied):
            await env.api.UpdatePerson(
                pb.UpdatePersonRequest(
                    person=pb.Person(name=xp.name, phone="13800000000"),
                    update_mask=FieldMask(paths=["phone"]),
                    request_id=rid(),
                )
            )
        with pytest.raises(PermissionDenied):
            await new_person(env, make_id_number("431224", date(1975, 5, 5), 2), village=XP)
        with pytest.raises(PermissionDenied):
            await env.api.ListPersons(pb.ListPersonsRequest(region=c.RegionCode(code="431224")))
        assert len((await env.api.ListPersons(pb.ListPersonsRequest())).persons) == 0
    with acting("431200", roles=("auditor",)):  # 怀化市 sees both counties
        assert len((await env.api.ListPersons(pb.ListPersonsRequest())).persons) == 1


async def test_idempotent_create(env) -> None:
    req = pb.CreatePersonRequest(person=person(make_id_number(seq=5)), request_id=rid())
    with acting():
        a = await env.api.CreatePerson(req)
        b = await env.api.CreatePerson(req)
        assert a == b
        other = pb.CreatePersonRequest(person=person(make_id_number(seq=6)), request_id=req.request_id)
        with pytest.raises(InvalidArgument) as e:
            await env.api.CreatePerson(other)
        assert e.value.reason == "REQUEST_ID_REUSED"
    async with env.service.sessions() as s:
        assert await db.count(s, PersonRow) == 1
        subjects = (await s.execute(select(OutboxEvent.subject))).scalars().all()
    assert subjects == ["jsx.members.person.registered"]


async def test_update_person_field_mask(env) -> None:
    with acting():
        p = await new_person(env, make_id_number(seq=7))
        u = await env.api.UpdatePerson(
            pb.UpdatePersonRequest(
                person=pb.Person(name=p.name, phone="13700001111", display_name="被忽略"),
                update_mask=FieldMask(paths=["phone"]),
                request_id=rid(),
            )
        )
        assert u.phone_masked == "137****1111" and u.display_name == p.display_name
        with pytest.raises(InvalidArgument):
            await env.api.UpdatePerson(
                pb.UpdatePersonRequest(
                    person=pb.Person(name=p.name, id_number=make_id_number(seq=8)),
                    update_mask=FieldMask(paths=["id_number"]),
                    request_id=rid(),
                )
            )
        d = await env.api.UpdatePerson(
            pb.UpdatePersonRequest(
                person=pb.Person(
                    name=p.name, status=pb.PERSON_STATUS_DECEASED, death_date=c.Date(year=2024, month=1, day=2)
                ),
                update_mask=FieldMask(paths=["status", "death_date"]),
                request_id=rid(),
            )
        )
        assert d.status == pb.PERSON_STATUS_DECEASED


async def _household(env, situations: Sequence[pb.FamilySituation] = (), minor_head: bool = False) -> pb.Household:
    head = await new_person(
        env, make_id_number("431222", date(2010, 1, 1) if minor_head else date(1970, 1, 1), 21), name="王五"
    )
    wife = await new_person(env, make_id_number("431222", date(1972, 1, 1), 22, female=True), name="赵六")
    return await env.api.CreateHousehold(
        pb.CreateHouseholdRequest(
            household=pb.Household(
                head=head.name,
                village=c.RegionCode(code=YL),
                members=[
                    pb.HouseholdMember(person=head.name, relation=pb.RELATION_HEAD),
                    pb.HouseholdMember(person=wife.name, relation=pb.RELATION_SPOUSE),
                ],
            ),
            situations=list(situations),
            request_id=rid(),
        )
    )


def sit(kind: pb.SituationKind.ValueType, y: int, mo: int = 1, d: int = 1, **kw: Any) -> pb.FamilySituation:
    return pb.FamilySituation(kind=kind, effective_from=c.Date(year=y, month=mo, day=d), **kw)


async def test_household_minor_head_refused(env) -> None:
    with acting(), pytest.raises(InvalidArgument) as e:
        await _household(env, minor_head=True)
    assert (
        e.value.reason == "INVALID_ARGUMENT"
        or "MINOR" in e.value.reason
        or any("户主" in v.description for v in e.value.violations)
    )
    async with env.service.sessions() as s:
        assert await db.count(s, HouseholdRow) == 0


async def test_situation_history_and_pairing(env) -> None:
    with acting():
        h = await _household(env, [sit(pb.SITUATION_KIND_ONLY_CHILD, 2000, honor_certificate="湘001")])
        assert [s.kind for s in h.situations] == [pb.SITUATION_KIND_ONLY_CHILD]
        h = await env.api.RecordSituation(
            pb.RecordSituationRequest(
                household=h.name,
                situation=sit(pb.SITUATION_KIND_SPECIAL_DISABLED, 2022, 7, 1, disability_grade=2),
                request_id=rid(),
            )
        )
        assert [s.kind for s in h.situations] == [pb.SITUATION_KIND_ONLY_CHILD, pb.SITUATION_KIND_SPECIAL_DISABLED]
        assert (
            h.situations[0].effective_to.year,
            h.situations[0].effective_to.month,
            h.situations[0].effective_to.day,
        ) == (2022, 6, 30)
        with pytest.raises(FailedPrecondition):  # history is never rewritten
            await env.api.RecordSituation(
                pb.RecordSituationRequest(
                    household=h.name, situation=sit(pb.SITUATION_KIND_SPECIAL_BEREAVED, 2021), request_id=rid()
                )
            )
        # as_of filter reads history
        old = await env.api.ListHouseholds(
            pb.ListHouseholdsRequest(situation=pb.SITUATION_KIND_ONLY_CHILD, as_of=c.Date(year=2010, month=1, day=1))
        )
        assert [x.name for x in old.households] == [h.name]
        now = await env.api.ListHouseholds(pb.ListHouseholdsRequest(situation=pb.SITUATION_KIND_ONLY_CHILD))
        assert not now.households
        unpaired = await env.api.ListUnpairedFamilies(pb.ListUnpairedFamiliesRequest())
        assert [x.name for x in unpaired.households] == [h.name]

        vp = await new_person(env, make_id_number("431222", date(1985, 1, 1), 31), name="志愿者")
        v = await env.api.CreateVolunteer(
            pb.CreateVolunteerRequest(volunteer=pb.Volunteer(person=vp.name), request_id=rid())
        )
        pr = await env.api.PairVolunteer(pb.PairVolunteerRequest(volunteer=v.name, household=h.name, request_id=rid()))
        assert not (await env.api.ListUnpairedFamilies(pb.ListUnpairedFamiliesRequest())).households
        # 1:1 — the same volunteer cannot take a second family, nor the family a second 会员联系户.
        with pytest.raises(FailedPrecondition) as e:
            await env.api.PairVolunteer(pb.PairVolunteerRequest(volunteer=v.name, household=h.name, request_id=rid()))
        assert e.value.reason == "HOUSEHOLD_ALREADY_PAIRED"
        vp2 = await new_person(env, make_id_number("431222", date(1985, 1, 1), 32), name="志愿者二")
        v2 = await env.api.CreateVolunteer(
            pb.CreateVolunteerRequest(volunteer=pb.Volunteer(person=vp2.name), request_id=rid())
        )
        with pytest.raises(FailedPrecondition):
            await env.api.PairVolunteer(pb.PairVolunteerRequest(volunteer=v2.name, household=h.name, request_id=rid()))
        ended = await env.api.EndPairing(pb.EndPairingRequest(name=pr.name, reason="志愿者外出务工", request_id=rid()))
        assert ended.end_date.year == TODAY.year
        await env.api.PairVolunteer(pb.PairVolunteerRequest(volunteer=v2.name, household=h.name, request_id=rid()))
        hist = await env.api.ListPairings(pb.ListPairingsRequest(household=h.name, include_ended=True))
        assert len(hist.pairings) == 2


async def test_pairing_needs_special_family(env) -> None:
    with acting():
        h = await _household(env, [sit(pb.SITUATION_KIND_ONLY_CHILD, 2000)])
        vp = await new_person(env, make_id_number("431222", date(1985, 1, 1), 41))
        v = await env.api.CreateVolunteer(
            pb.CreateVolunteerRequest(volunteer=pb.Volunteer(person=vp.name), request_id=rid())
        )
        with pytest.raises(FailedPrecondition) as e:
            await env.api.PairVolunteer(pb.PairVolunteerRequest(volunteer=v.name, household=h.name, request_id=rid()))
        assert e.value.reason == "NOT_SPECIAL_FAMILY"


async def test_members_join_and_leave(env) -> None:
    with acting():
        p = await new_person(env, make_id_number(seq=51))
        a = await env.api.CreateMember(
            pb.CreateMemberRequest(
                member=pb.AssociationMember(
                    person=p.name, association=c.RegionCode(code="431222"), member_type=pb.MEMBER_TYPE_BACKBONE
                ),
                request_id=rid(),
            )
        )
        assert a.level == pb.ASSOCIATION_LEVEL_COUNTY
        with pytest.raises(FailedPrecondition):
            await env.api.CreateMember(
                pb.CreateMemberRequest(
                    member=pb.AssociationMember(
                        person=p.name, association=c.RegionCode(code=YL), member_type=pb.MEMBER_TYPE_ORDINARY
                    ),
                    request_id=rid(),
                )
            )
        with pytest.raises(PermissionDenied):
            await env.api.CreateMember(
                pb.CreateMemberRequest(
                    member=pb.AssociationMember(
                        person=p.name, association=c.RegionCode(code="431200"), member_type=pb.MEMBER_TYPE_ORDINARY
                    ),
                    request_id=rid(),
                )
            )
        lst = await env.api.ListMembers(pb.ListMembersRequest(member_type=pb.MEMBER_TYPE_BACKBONE))
        assert [x.name for x in lst.members] == [a.name]
        left = await env.api.EndMembership(pb.EndMembershipRequest(name=a.name, reason="迁出", request_id=rid()))
        assert left.left_date.year == 2024
        assert not (await env.api.ListMembers(pb.ListMembersRequest())).members
        assert len((await env.api.ListMembers(pb.ListMembersRequest(include_ended=True))).members) == 1


async def test_sites_and_six_haves(env) -> None:
    with acting():
        s = await env.api.CreateSite(
            pb.CreateSiteRequest(
                site=pb.Site(
                    display_name="岩门村暖心家园",
                    kind=pb.SITE_KIND_WARM_HOME,
                    village=c.RegionCode(code=YL),
                    six_haves=pb.SixHaves(place=True, sign=True),
                ),
                request_id=rid(),
            )
        )
        assert s.six_haves.place and not s.six_haves.plan
        u = await env.api.UpdateSite(
            pb.UpdateSiteRequest(
                site=pb.Site(
                    name=s.name,
                    six_haves=pb.SixHaves(
                        place=True, sign=True, rules=True, plan=True, activities=True, management=True
                    ),
                ),
                update_mask=FieldMask(paths=["six_haves"]),
                request_id=rid(),
            )
        )
        assert u.six_haves.management and u.display_name == "岩门村暖心家园"
        with pytest.raises(InvalidArgument):
            await env.api.CreateSite(
                pb.CreateSiteRequest(
                    site=pb.Site(
                        display_name="驿站",
                        kind=pb.SITE_KIND_HEALTH_STATION,
                        village=c.RegionCode(code=YL),
                        six_haves=pb.SixHaves(place=True),
                    ),
                    request_id=rid(),
                )
            )
        assert len((await env.api.ListSites(pb.ListSitesRequest(kind=pb.SITE_KIND_WARM_HOME))).sites) == 1


async def test_pagination(env) -> None:
    with acting():
        for i in range(7):
            await new_person(env, make_id_number(seq=60 + i))
        seen, token = [], ""
        while True:
            page = await env.api.ListPersons(pb.ListPersonsRequest(page_size=3, page_token=token))
            seen += [p.name for p in page.persons]
            token = page.next_page_token
            if not token:
                break
        assert len(seen) == len(set(seen)) == 7
        with pytest.raises(InvalidArgument):
            await env.api.ListPersons(pb.ListPersonsRequest(page_token="garbage"))
