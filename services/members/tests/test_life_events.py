"""Life events through the servicer (as the server calls it after
authentication), SQLite and PostgreSQL: RecordDeath (and deaths through
UpdatePerson), MovePerson, RecordBirth, SplitHousehold, MergeHouseholds,
RecordRecovery and 伤残 grade changes; the facts members owns as
BatchGetPersons returns them. Each change publishes its event once (outbox
rows in the same transaction, a retry with the same request id adds none);
each refusal names the field or the state, and leaves nothing behind."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import select

from jsx.common.v1 import common_pb2 as c
from jsx.members.v1 import events_pb2 as ev
from jsx.members.v1 import members_pb2 as pb
from jsx_members.adapters import db
from jsx_members.adapters.regions import KnownRegions
from jsx_members.households.tables import HouseholdMemberRow, HouseholdRow, SituationRow
from jsx_members.persons.tables import PersonRow
from jsx_members.testdata import TODAY, acting, make_id_number, rid
from jsxcore.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from jsxcore.outbox import OutboxEvent

YL, YL2, XP = "431222101201", "431222101202", "431224102203"
HJ_REAL = "431281101002"  # 洪江市黔城镇玉皇阁社区 (in the 2023 list)


def day(d: date) -> c.Date:
    return c.Date(year=d.year, month=d.month, day=d.day)


async def person(env, seq: int, birth: date = date(1970, 1, 1), *, female: bool = False, village: str = YL) -> str:
    idn = make_id_number(village[:6], birth, seq, female=female)
    p = await env.api.CreatePerson(
        pb.CreatePersonRequest(
            person=pb.Person(display_name="王五", id_number=idn, village=c.RegionCode(code=village)), request_id=rid()
        )
    )
    return p.name


async def household(
    env, *members: tuple[str, pb.Relation.ValueType], village: str = YL, situations: tuple[pb.FamilySituation, ...] = ()
) -> pb.Household:
    head = members[0][0]
    return await env.api.CreateHousehold(
        pb.CreateHouseholdRequest(
            household=pb.Household(
                head=head,
                village=c.RegionCode(code=village),
                members=[pb.HouseholdMember(person=p, relation=rel) for p, rel in members],
            ),
            situations=list(situations),
            request_id=rid(),
        )
    )


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


async def snapshot(env) -> dict[str, Any]:
    """Everything a refused request must leave as it was."""
    async with env.service.sessions() as s:
        return {
            "outbox": Counter((await s.execute(select(OutboxEvent.subject))).scalars()),
            "persons": sorted(
                (p.id, p.village, p.status, p.death_date, p.moved_on, p.version)
                for p in (await s.execute(select(PersonRow))).scalars()
            ),
            "households": sorted(
                (h.id, h.village, h.head_person_id, h.current_situation, h.closed_on, h.version)
                for h in (await s.execute(select(HouseholdRow))).scalars()
            ),
            "members": sorted(
                (m.household_id, m.person_id, m.relation)
                for m in (await s.execute(select(HouseholdMemberRow))).scalars()
            ),
            "situations": await db.count(s, SituationRow),
        }


async def refused(
    env, error: type[DomainError], call: Any, *, reason: str | None = None, field: str | None = None
) -> DomainError:
    before = await snapshot(env)
    with pytest.raises(error) as e:
        await call
    if reason is not None:
        assert e.value.reason == reason, e.value
    if field is not None:
        assert field in [v.field for v in e.value.violations], e.value.violations
    assert await snapshot(env) == before, "a refused request left something behind"
    return e.value


# ---------------------------------------------------------------- deaths


async def test_record_death_publishes_once_and_refuses_bad_dates(env) -> None:
    with acting():
        head, wife = await person(env, 1, date(1950, 3, 1)), await person(env, 2, date(1952, 1, 1), female=True)
        h = await household(env, (head, pb.RELATION_HEAD), (wife, pb.RELATION_SPOUSE))
        for when, reason in ((date(2024, 6, 2), "DEATH_DATE_IN_FUTURE"), (date(1950, 2, 28), "DEATH_BEFORE_BIRTH")):
            await refused(
                env,
                InvalidArgument,
                env.api.RecordDeath(pb.RecordDeathRequest(person=wife, death_date=day(when), request_id=rid())),
                reason=reason,
                field="death_date",
            )
        await refused(
            env,
            InvalidArgument,
            env.api.RecordDeath(pb.RecordDeathRequest(person=wife, request_id=rid())),
            field="death_date",
        )
        await refused(
            env,
            NotFound,
            env.api.RecordDeath(
                pb.RecordDeathRequest(person="persons/nobody", death_date=day(TODAY), request_id=rid())
            ),
        )
        req = pb.RecordDeathRequest(person=wife, death_date=day(date(2024, 5, 20)), request_id=rid())
        died = await env.api.RecordDeath(req)
        assert died.status == pb.PERSON_STATUS_DECEASED and died.death_date == day(date(2024, 5, 20))
        assert died.household == h.name and died.household_relation == pb.RELATION_SPOUSE
        assert await env.api.RecordDeath(req) == died  # AIP-155: the first answer, no second event
        await refused(
            env,
            FailedPrecondition,
            env.api.RecordDeath(pb.RecordDeathRequest(person=wife, death_date=day(TODAY), request_id=rid())),
            reason="ALREADY_DECEASED",
        )
    with acting("431224", subject="clerk-xp"):
        await refused(
            env,
            PermissionDenied,
            env.api.RecordDeath(pb.RecordDeathRequest(person=head, death_date=day(TODAY), request_id=rid())),
        )
    [e] = await events(env, ev.PersonDied)
    assert (e.person, e.village.code, e.household, e.relation) == (wife, YL, h.name, pb.RELATION_SPOUSE)
    assert e.death_date == day(date(2024, 5, 20)) and e.event_id and e.occurred_at.seconds


async def test_deaths_through_update_person(env) -> None:
    with acting():
        p = await person(env, 5, date(1940, 1, 1))

        async def update(status: pb.PersonStatus.ValueType, when: date | None) -> pb.Person:
            return await env.api.UpdatePerson(
                pb.UpdatePersonRequest(
                    person=pb.Person(name=p, status=status, death_date=day(when) if when else None),
                    update_mask=FieldMask(paths=["status", "death_date"]),
                    request_id=rid(),
                )
            )

        await update(pb.PERSON_STATUS_DECEASED, date(2024, 1, 2))
        await update(pb.PERSON_STATUS_DECEASED, date(2024, 1, 5))  # a wrong date corrected
        await update(pb.PERSON_STATUS_ACTIVE, None)  # recorded in error
        await refused(
            env,
            InvalidArgument,
            update(pb.PERSON_STATUS_MOVED_OUT, None),
            field="person.status",
        )
    [died] = await events(env, ev.PersonDied)
    assert died.death_date == day(date(2024, 1, 2)) and died.household == ""
    fixed, withdrawn = await events(env, ev.PersonDeathCorrected)
    assert (fixed.death_date, fixed.previous_death_date) == (day(date(2024, 1, 5)), day(date(2024, 1, 2)))
    assert not withdrawn.HasField("death_date") and withdrawn.previous_death_date == day(date(2024, 1, 5))


# ---------------------------------------------------------------- 户籍 moves


async def test_move_person(env) -> None:
    env.service.life.places = KnownRegions.of([YL, YL2, HJ_REAL, XP])
    with acting():
        head, wife, son = (
            await person(env, 1),
            await person(env, 2, female=True),
            await person(env, 3, date(2000, 1, 1)),
        )
        h = await household(env, (head, pb.RELATION_HEAD), (wife, pb.RELATION_SPOUSE), (son, pb.RELATION_SON))

        def move(who: str, dest: str = "", **kw: Any) -> Any:
            return env.api.MovePerson(
                pb.MovePersonRequest(
                    person=who,
                    destination=c.RegionCode(code=dest) if dest else None,
                    moved_date=kw.pop("moved_date", day(date(2024, 5, 1))),
                    request_id=rid(),
                    **kw,
                )
            )

        await refused(env, InvalidArgument, move(son, "431281999999"), reason="INVALID_MOVE", field="destination")
        await refused(env, InvalidArgument, move(son, "431281"), field="destination")
        await refused(env, InvalidArgument, move(son, YL), field="destination")
        await refused(env, InvalidArgument, move(son), field="destination")
        await refused(env, InvalidArgument, move(son, HJ_REAL, moved_date=day(date(2024, 6, 2))), field="moved_date")
        await refused(env, FailedPrecondition, move(head, HJ_REAL), reason="HEAD_MUST_STAY")
        await refused(env, InvalidArgument, move(son, HJ_REAL, whole_household=True), reason="NOT_HEAD")

        # a member moves to 洪江 alone: leaves the household, the village follows
        moved = await move(son, HJ_REAL)
        assert moved.village.code == HJ_REAL and moved.status == pb.PERSON_STATUS_ACTIVE and moved.household == ""
        assert moved.moved_date == day(date(2024, 5, 1))
        got = await env.api.GetHousehold(pb.GetHouseholdRequest(name=h.name))
        assert [m.person for m in got.members] == [head, wife]

        # the 户主 takes the household along to another 沅陵 village
        await move(head, YL2, whole_household=True)
        got = await env.api.GetHousehold(pb.GetHouseholdRequest(name=h.name))
        assert got.village.code == YL2 and len(got.members) == 2
        wife_now = (await env.api.BatchGetPersons(pb.BatchGetPersonsRequest(names=[wife]))).persons[0]
        assert wife_now.village.code == YL2 and wife_now.household == h.name

        # out of the province: status 迁出, destination kept, the household keeps its village
        out = await move(head, "440305", whole_household=True)
        assert out.status == pb.PERSON_STATUS_MOVED_OUT and out.moved_to.code == "440305000000"
        assert out.village.code == YL2
        await refused(env, FailedPrecondition, move(head, HJ_REAL), reason="PERSON_MOVED_OUT")
    son_ev, head_ev, wife_ev, head_out, wife_out = await events(env, ev.PersonMoved)
    assert (son_ev.person, son_ev.village.code, son_ev.destination.code, son_ev.household) == (son, YL, HJ_REAL, h.name)
    assert not son_ev.household_moved and not son_ev.out_of_province
    assert (
        {head_ev.person, wife_ev.person} == {head, wife} and head_ev.household_moved and head_ev.destination.code == YL2
    )
    assert head_out.out_of_province and head_out.destination.code == "440305000000" and head_out.village.code == YL2
    assert (wife_out.person, wife_out.out_of_province, wife_out.household_moved) == (wife, True, True)
    changes = await events(env, ev.HouseholdMembersChanged)
    assert [list(x.removed_persons) for x in changes] == [[son], []]  # the son left; then the whole household moved
    assert changes[-1].village.code == YL2


# ---------------------------------------------------------------- births and adoptions


async def test_record_birth_and_adoption(env) -> None:
    with acting():
        head, wife = await person(env, 1), await person(env, 2, female=True)
        h = await household(env, (head, pb.RELATION_HEAD), (wife, pb.RELATION_SPOUSE))
        baby_id = make_id_number("431222", date(2024, 5, 20), 7, female=True)

        def born(relation: pb.Relation.ValueType, **kw: Any) -> Any:
            return env.api.RecordBirth(
                pb.RecordBirthRequest(household=h.name, relation=relation, request_id=rid(), **kw)
            )

        baby = pb.Person(display_name="王小花", id_number=baby_id)
        await refused(env, InvalidArgument, born(pb.RELATION_SON, new_person=baby), field="relation")
        await refused(env, InvalidArgument, born(pb.RELATION_DAUGHTER), reason="CHILD_REQUIRED")
        await refused(
            env,
            InvalidArgument,
            born(pb.RELATION_DAUGHTER, new_person=pb.Person(display_name="王", id_number="123")),
            field="new_person.id_number",
        )
        got = await born(pb.RELATION_DAUGHTER, new_person=baby)
        assert [m.relation for m in got.members] == [pb.RELATION_HEAD, pb.RELATION_SPOUSE, pb.RELATION_DAUGHTER]
        child = got.members[2].person

        # an adoption of a registered child, and one who already belongs elsewhere
        orphan = await person(env, 9, date(2019, 2, 2))
        other_head = await person(env, 11)
        taken = await person(env, 12, date(2018, 1, 1))
        await household(env, (other_head, pb.RELATION_HEAD), (taken, pb.RELATION_SON))
        await refused(env, InvalidArgument, born(pb.RELATION_SON, person=orphan, adopted=True), field="adoption_date")
        await refused(
            env,
            FailedPrecondition,
            born(pb.RELATION_SON, person=taken, adopted=True, adoption_date=day(date(2024, 3, 1))),
            reason="PERSON_IN_OTHER_HOUSEHOLD",
        )
        got = await born(pb.RELATION_SON, person=orphan, adopted=True, adoption_date=day(date(2024, 3, 1)))
        assert len(got.members) == 4
    birth, adoption = await events(env, ev.HouseholdChildAdded)
    assert (birth.person, birth.relation, birth.adopted, birth.date) == (
        child,
        pb.RELATION_DAUGHTER,
        False,
        day(date(2024, 5, 20)),
    )
    assert (birth.household, birth.village.code, birth.head_person, birth.member_count) == (h.name, YL, head, 3)
    assert (adoption.person, adoption.adopted, adoption.date, adoption.member_count) == (
        orphan,
        True,
        day(date(2024, 3, 1)),
        4,
    )
    registered = [e.person for e in await events(env, ev.PersonRegistered)]
    assert registered.count(child) == 1


# ---------------------------------------------------------------- 分户 and 合户


async def test_split_household(env) -> None:
    with acting():
        head, wife = await person(env, 1), await person(env, 2, female=True)
        son, dil = await person(env, 3, date(1995, 1, 1)), await person(env, 4, date(1996, 1, 1), female=True)
        kid = await person(env, 5, date(2012, 1, 1))
        only_child = pb.FamilySituation(kind=pb.SITUATION_KIND_ONLY_CHILD, effective_from=day(date(2000, 1, 1)))
        h = await household(
            env,
            (head, pb.RELATION_HEAD),
            (wife, pb.RELATION_SPOUSE),
            (son, pb.RELATION_SON),
            (dil, pb.RELATION_OTHER),
            (kid, pb.RELATION_GRANDCHILD),
            situations=(only_child,),
        )

        def split(*members: tuple[str, pb.Relation.ValueType], when: date = date(2024, 5, 1)) -> Any:
            return env.api.SplitHousehold(
                pb.SplitHouseholdRequest(
                    household=h.name,
                    members=[pb.HouseholdMember(person=p, relation=r) for p, r in members],
                    split_date=day(when),
                    address="岩门村2组",
                    request_id=rid(),
                )
            )

        await refused(env, InvalidArgument, split((head, pb.RELATION_HEAD)), field="members[0].person")
        stranger = await person(env, 8)
        await refused(
            env,
            InvalidArgument,
            split((son, pb.RELATION_HEAD), (stranger, pb.RELATION_SPOUSE)),
            field="members[1].person",
        )
        await refused(env, InvalidArgument, split((kid, pb.RELATION_HEAD)), reason="MINOR_AS_HEAD")
        await refused(env, InvalidArgument, split((son, pb.RELATION_HEAD), when=date(2024, 6, 2)), field="split_date")
        out = await split((son, pb.RELATION_HEAD), (dil, pb.RELATION_SPOUSE), (kid, pb.RELATION_SON))
        assert [m.person for m in out.household.members] == [head, wife]
        assert out.household.situations[0].kind == pb.SITUATION_KIND_ONLY_CHILD  # the parents' situation stays
        new = out.new_household
        assert new.head == son and [m.person for m in new.members] == [son, dil, kid] and not new.situations
        assert new.village.code == YL and new.address == "岩门村2组"
    [e] = await events(env, ev.HouseholdSplit)
    assert (e.household, e.new_household, list(e.persons), e.new_head_person) == (
        h.name,
        new.name,
        [son, dil, kid],
        son,
    )
    assert e.member_count == 2 and e.split_date == day(date(2024, 5, 1))
    assert [x.household for x in await events(env, ev.HouseholdRegistered)] == [h.name, new.name]


async def test_merge_households(env) -> None:
    with acting():
        head, wife = await person(env, 1, date(1975, 1, 1)), await person(env, 2, date(1976, 1, 1), female=True)
        grandpa, grandma = await person(env, 3, date(1945, 1, 1)), await person(env, 4, date(1947, 1, 1), female=True)
        h = await household(env, (head, pb.RELATION_HEAD), (wife, pb.RELATION_SPOUSE))
        bereaved = pb.FamilySituation(kind=pb.SITUATION_KIND_SPECIAL_BEREAVED, effective_from=day(date(2015, 1, 1)))
        old = await household(env, (grandpa, pb.RELATION_HEAD), (grandma, pb.RELATION_SPOUSE), situations=(bereaved,))

        def merge(*members: tuple[str, pb.Relation.ValueType], into: str = h.name, gone: str = old.name) -> Any:
            return env.api.MergeHouseholds(
                pb.MergeHouseholdsRequest(
                    household=into,
                    merged_household=gone,
                    members=[pb.HouseholdMember(person=p, relation=r) for p, r in members],
                    merge_date=day(date(2024, 5, 31)),
                    request_id=rid(),
                )
            )

        ok = ((grandpa, pb.RELATION_FATHER), (grandma, pb.RELATION_MOTHER))
        await refused(env, InvalidArgument, merge((grandpa, pb.RELATION_FATHER)), field="members")
        await refused(env, InvalidArgument, merge(*ok, (head, pb.RELATION_SON)), field="members[2].person")
        await refused(
            env,
            InvalidArgument,
            merge((grandpa, pb.RELATION_HEAD), (grandma, pb.RELATION_MOTHER)),
            field="members[0].relation",
        )
        await refused(env, InvalidArgument, merge(*ok, gone=h.name), field="merged_household")
        # an open pairing of the merged household must end first
        vp = await person(env, 20)
        v = await env.api.CreateVolunteer(
            pb.CreateVolunteerRequest(volunteer=pb.Volunteer(person=vp), request_id=rid())
        )
        pairing = await env.api.PairVolunteer(
            pb.PairVolunteerRequest(volunteer=v.name, household=old.name, request_id=rid())
        )
        await refused(env, FailedPrecondition, merge(*ok), reason="HOUSEHOLD_HAS_PAIRING")
        await env.api.EndPairing(pb.EndPairingRequest(name=pairing.name, request_id=rid()))

        got = await merge(*ok)
        assert [m.person for m in got.members] == [head, wife, grandpa, grandma]
        closed = await env.api.GetHousehold(pb.GetHouseholdRequest(name=old.name))
        assert closed.merged_into == h.name and closed.closed_date == day(date(2024, 5, 31)) and not closed.members
        assert closed.situations[-1].effective_to == day(date(2024, 5, 31))
        listed = await env.api.ListHouseholds(pb.ListHouseholdsRequest())
        assert [x.name for x in listed.households] == [h.name]
        await refused(
            env,
            FailedPrecondition,
            env.api.RecordSituation(
                pb.RecordSituationRequest(
                    household=old.name,
                    situation=pb.FamilySituation(kind=pb.SITUATION_KIND_ONLY_CHILD, effective_from=day(TODAY)),
                    request_id=rid(),
                )
            ),
            reason="HOUSEHOLD_CLOSED",
        )
    [e] = await events(env, ev.HouseholdMerged)
    assert (e.household, e.merged_household, list(e.persons), e.member_count) == (
        h.name,
        old.name,
        [grandpa, grandma],
        4,
    )
    ended = [
        x
        for x in await events(env, ev.HouseholdSituationChanged)
        if x.household == old.name and x.HasField("effective_to")
    ]
    assert [(x.kind, x.effective_to) for x in ended] == [(pb.SITUATION_KIND_SPECIAL_BEREAVED, day(date(2024, 5, 31)))]


# ---------------------------------------------------------------- 伤残: grade changes and recovery


async def test_disability_grade_change_and_recovery(env) -> None:
    with acting():
        head = await person(env, 1)
        disabled = pb.FamilySituation(
            kind=pb.SITUATION_KIND_SPECIAL_DISABLED, disability_grade=3, effective_from=day(date(2018, 1, 1))
        )
        h = await household(env, (head, pb.RELATION_HEAD), situations=(disabled,))
        await env.api.RecordSituation(
            pb.RecordSituationRequest(
                household=h.name,
                situation=pb.FamilySituation(
                    kind=pb.SITUATION_KIND_SPECIAL_DISABLED, disability_grade=1, effective_from=day(date(2022, 3, 1))
                ),
                request_id=rid(),
            )
        )

        def recover(when: date | None, note: str = "复评为四级（县残联〔2024〕5号）") -> Any:
            return env.api.RecordRecovery(
                pb.RecordRecoveryRequest(
                    household=h.name, recovered_date=day(when) if when else None, note=note, request_id=rid()
                )
            )

        await refused(env, InvalidArgument, recover(date(2024, 6, 2)), field="recovered_date")
        await refused(env, InvalidArgument, recover(None), field="recovered_date")
        await refused(env, FailedPrecondition, recover(date(2022, 3, 1)), reason="SITUATION_NOT_AFTER_LATEST")
        got = await recover(date(2024, 4, 1))
        assert got.situations[-1].kind == pb.SITUATION_KIND_SPECIAL_DISABLED
        assert got.situations[-1].effective_to == day(date(2024, 3, 31))
        await refused(env, FailedPrecondition, recover(date(2024, 5, 1)), reason="NOT_DISABLED_FAMILY")
    [g] = await events(env, ev.HouseholdDisabilityGradeChanged)
    assert (g.household, g.previous_grade, g.disability_grade, g.effective_from) == (
        h.name,
        3,
        1,
        day(date(2022, 3, 1)),
    )
    [r] = await events(env, ev.HouseholdDisabilityRecovered)
    assert (r.household, r.previous_grade, r.recovered_date) == (h.name, 1, day(date(2024, 4, 1)))


# ---------------------------------------------------------------- facts other services read


async def test_batch_get_persons_gives_the_facts_members_owns(env) -> None:
    with acting():
        head = await person(env, 1, date(1966, 7, 8))
        wife = await person(env, 2, date(1968, 2, 3), female=True)
        alone = await person(env, 3, date(1990, 1, 1))
        h = await household(env, (head, pb.RELATION_HEAD), (wife, pb.RELATION_SPOUSE))
    with acting(roles=("system",), subject="funds-service"):
        got = (await env.api.BatchGetPersons(pb.BatchGetPersonsRequest(names=[wife, alone, head]))).persons
        assert [p.name for p in got] == [wife, alone, head]
        assert (got[0].sex, got[0].birth_date, got[0].household, got[0].household_relation) == (
            pb.SEX_FEMALE,
            day(date(1968, 2, 3)),
            h.name,
            pb.RELATION_SPOUSE,
        )
        assert (
            got[0].village.code == YL
            and got[0].hukou_type == pb.HUKOU_TYPE_RURAL
            and got[0].status == pb.PERSON_STATUS_ACTIVE
        )
        assert got[1].household == "" and got[1].household_relation == pb.RELATION_UNSPECIFIED
        assert (
            got[2].household_relation == pb.RELATION_HEAD and got[2].display_name == "王*"
        )  # masked whatever the caller
        one = await env.api.GetPerson(pb.GetPersonRequest(name=wife))
        assert one.household == h.name
        listed = await env.api.ListPersons(pb.ListPersonsRequest())
        assert {p.name: p.household for p in listed.persons} == {head: h.name, wife: h.name, alone: ""}
