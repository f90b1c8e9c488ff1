"""Life events end to end: the members process on a real gRPC port with the
jsxcore runtime (auth, permissions, rich errors), its outbox relay
publishing to a real nats-server, SQLite and PostgreSQL (the ``stack``
fixture), every installed rule plugin. Each new RPC once with bad input
first; then every fact read back from JetStream: published once, with its
ids, region and dates, never a name or 身份证 number."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date
from typing import Any

import grpc
import pytest

from jsx.common.v1 import common_pb2 as c
from jsx.members.v1 import events_pb2 as ev
from jsx.members.v1 import members_pb2 as pb
from jsx_members.testdata import VILLAGES, make_id_number, rid
from jsxcore.runtime import error_details

YL, HJ = VILLAGES["431222"], VILLAGES["431281"]
MOVE_TO = "431281101002"  # 洪江市黔城镇玉皇阁社区


def day(d: date) -> c.Date:
    return c.Date(year=d.year, month=d.month, day=d.day)


async def _all_events(js: Any, at_least: int) -> list[Any]:
    """Every message on jsx.members.> (at least ``at_least``, then until quiet)."""
    sub = await js.pull_subscribe("jsx.members.>", durable=None, stream="JSX_MEMBERS")
    got: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        try:
            batch = await sub.fetch(200, timeout=1)
        except TimeoutError:  # nats-py raises its own subclass, or the bare one near the deadline
            if len(got) >= at_least:
                break
            continue
        for m in batch:
            await m.ack()  # else JetStream redelivers them after ack_wait
        got += batch
    await sub.unsubscribe()
    return got


async def _refused(call: Any, code: grpc.StatusCode, *, reason: str | None = None, field: str | None = None) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    assert e.value.code() == code, e.value.details()
    info, bad, _ = error_details(e.value)
    if reason is not None:
        assert info is not None and info.reason == reason, info
    if field is not None:
        assert bad is not None and field in [v.field for v in bad.field_violations], bad
        assert all(v.description for v in bad.field_violations)


@pytest.mark.slow  # a whole scenario over gRPC and JetStream
async def test_life_events_over_grpc_published_once(stack) -> None:
    yl, hj = stack["clients"]["yl"], stack["clients"]["hj"]
    ids: list[str] = []

    async def person(client: Any, seq: int, born: date, village: str = YL, female: bool = False) -> str:
        idn = make_id_number(village[:6], born, seq, female=female)
        ids.append(idn)
        p = await client.CreatePerson(
            pb.CreatePersonRequest(
                person=pb.Person(display_name="刘一", id_number=idn, village=c.RegionCode(code=village)),
                request_id=rid(),
            )
        )
        return p.name

    async def household(
        client: Any,
        village: str,
        *members: tuple[str, pb.Relation.ValueType],
        kind: pb.SituationKind.ValueType = pb.SITUATION_KIND_UNSPECIFIED,
        grade: int = 0,
    ) -> str:
        situations = (
            [pb.FamilySituation(kind=kind, disability_grade=grade, effective_from=day(date(2019, 1, 1)))]
            if kind
            else []
        )
        h = await client.CreateHousehold(
            pb.CreateHouseholdRequest(
                household=pb.Household(
                    head=members[0][0],
                    village=c.RegionCode(code=village),
                    members=[pb.HouseholdMember(person=p, relation=r) for p, r in members],
                ),
                situations=situations,
                request_id=rid(),
            )
        )
        return h.name

    head, wife = await person(yl, 1, date(1960, 1, 1)), await person(yl, 2, date(1962, 1, 1), female=True)
    son = await person(yl, 3, date(1990, 1, 1))
    grandma = await person(yl, 4, date(1938, 1, 1), female=True)
    h = await household(yl, YL, (head, pb.RELATION_HEAD), (wife, pb.RELATION_SPOUSE), (son, pb.RELATION_SON))
    old = await household(yl, YL, (grandma, pb.RELATION_HEAD))
    disabled = await household(
        yl,
        YL,
        (await person(yl, 5, date(1958, 1, 1)), pb.RELATION_HEAD),
        kind=pb.SITUATION_KIND_SPECIAL_DISABLED,
        grade=2,
    )

    # 死亡登记: bad dates, then once (a retry with the same request id answers the same)
    await _refused(
        yl.RecordDeath(pb.RecordDeathRequest(person=grandma, death_date=day(date(2099, 1, 1)), request_id=rid())),
        grpc.StatusCode.INVALID_ARGUMENT,
        reason="DEATH_DATE_IN_FUTURE",
        field="death_date",
    )
    await _refused(
        yl.RecordDeath(pb.RecordDeathRequest(person=grandma, death_date=day(date(1937, 1, 1)), request_id=rid())),
        grpc.StatusCode.INVALID_ARGUMENT,
        reason="DEATH_BEFORE_BIRTH",
    )
    death = pb.RecordDeathRequest(person=grandma, death_date=day(date(2024, 1, 15)), request_id=rid())
    first = await yl.RecordDeath(death)
    assert await yl.RecordDeath(death) == first and first.status == pb.PERSON_STATUS_DECEASED
    await _refused(
        yl.RecordDeath(pb.RecordDeathRequest(person=grandma, death_date=day(date(2024, 1, 15)), request_id=rid())),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="ALREADY_DECEASED",
    )

    # 出生登记 of a daughter (registered with the household's village)
    baby = pb.Person(display_name="刘小妹", id_number=make_id_number("431222", date(2024, 1, 2), 6, female=True))
    ids.append(baby.id_number)
    await _refused(
        yl.RecordBirth(pb.RecordBirthRequest(household=h, new_person=baby, relation=pb.RELATION_SON, request_id=rid())),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="relation",
    )
    grown = await yl.RecordBirth(
        pb.RecordBirthRequest(household=h, new_person=baby, relation=pb.RELATION_DAUGHTER, request_id=rid())
    )
    daughter = grown.members[-1].person

    # 分户: the son leaves with a household of his own; the 户主 cannot, nor a stranger
    await _refused(
        yl.SplitHousehold(
            pb.SplitHouseholdRequest(
                household=h,
                members=[pb.HouseholdMember(person=head, relation=pb.RELATION_HEAD)],
                split_date=day(date(2024, 3, 1)),
                request_id=rid(),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="members[0].person",
    )
    split = await yl.SplitHousehold(
        pb.SplitHouseholdRequest(
            household=h,
            members=[pb.HouseholdMember(person=son, relation=pb.RELATION_HEAD)],
            split_date=day(date(2024, 3, 1)),
            request_id=rid(),
        )
    )
    sons = split.new_household.name

    # 合户: the late grandmother's household into the son's (her only member has died: a relation still given)
    await _refused(
        yl.MergeHouseholds(
            pb.MergeHouseholdsRequest(
                household=sons, merged_household=old, merge_date=day(date(2024, 3, 2)), request_id=rid()
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="members",
    )
    merged = await yl.MergeHouseholds(
        pb.MergeHouseholdsRequest(
            household=sons,
            merged_household=old,
            members=[pb.HouseholdMember(person=grandma, relation=pb.RELATION_OTHER)],
            merge_date=day(date(2024, 3, 2)),
            request_id=rid(),
        )
    )
    assert [m.person for m in merged.members] == [son, grandma]

    # 户籍迁移: nowhere real, then the son's household to 洪江 with him
    await _refused(
        yl.MovePerson(
            pb.MovePersonRequest(
                person=son,
                destination=c.RegionCode(code="991281101002"),
                moved_date=day(date(2024, 4, 1)),
                request_id=rid(),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="destination",
    )
    moved = await yl.MovePerson(
        pb.MovePersonRequest(
            person=son,
            destination=c.RegionCode(code=MOVE_TO),
            moved_date=day(date(2024, 4, 1)),
            whole_household=True,
            request_id=rid(),
        )
    )
    assert moved.village.code == MOVE_TO and moved.household == sons

    # 伤残: a grade change and a recovery
    await yl.RecordSituation(
        pb.RecordSituationRequest(
            household=disabled,
            situation=pb.FamilySituation(
                kind=pb.SITUATION_KIND_SPECIAL_DISABLED, disability_grade=1, effective_from=day(date(2023, 1, 1))
            ),
            request_id=rid(),
        )
    )
    await _refused(
        yl.RecordRecovery(
            pb.RecordRecoveryRequest(household=h, recovered_date=day(date(2024, 4, 1)), request_id=rid())
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="NOT_DISABLED_FAMILY",
    )
    await yl.RecordRecovery(
        pb.RecordRecoveryRequest(household=disabled, recovered_date=day(date(2024, 4, 1)), request_id=rid())
    )

    # 洪江: one member, up to ten 会员联系户; the eleventh is refused with the rule's basis
    member_person = await person(hj, 50, date(1980, 1, 1), village=HJ)
    member = (
        await hj.CreateVolunteer(
            pb.CreateVolunteerRequest(volunteer=pb.Volunteer(person=member_person), request_id=rid())
        )
    ).name
    homes = [
        await household(hj, HJ, (await person(hj, 60 + i, date(1970, 1, 1), village=HJ), pb.RELATION_HEAD))
        for i in range(11)
    ]
    for home in homes[:10]:
        p = await hj.PairVolunteer(pb.PairVolunteerRequest(volunteer=member, household=home, request_id=rid()))
        assert p.rule.plugin == "hongjiang"
    await _refused(
        hj.PairVolunteer(pb.PairVolunteerRequest(volunteer=member, household=homes[10], request_id=rid())),
        grpc.StatusCode.FAILED_PRECONDITION,
        reason="VOLUNTEER_AT_LIMIT",
    )

    # funds reads the facts: birth date, sex, 户籍, household
    facts = (await yl.BatchGetPersons(pb.BatchGetPersonsRequest(names=[daughter, wife]))).persons
    assert facts[0].birth_date == day(date(2024, 1, 2)) and facts[0].sex == pb.SEX_FEMALE and facts[0].household == h
    assert facts[1].household_relation == pb.RELATION_SPOUSE and facts[1].hukou_type == pb.HUKOU_TYPE_RURAL

    once = {
        "jsx.members.person.died": 1,
        "jsx.members.household.child_added": 1,
        "jsx.members.household.split": 1,
        "jsx.members.household.merged": 1,
        "jsx.members.person.moved": 1,  # the son; his late grandmother's record stays where she died
        "jsx.members.household.disability_grade_changed": 1,
        "jsx.members.household.disability_recovered": 1,
        "jsx.members.pairing.paired": 10,
    }
    msgs = await _all_events(stack["js"], 57)
    counts = Counter(m.subject for m in msgs)
    assert {s: counts[s] for s in once} == once, counts
    # and the household facts every projection follows: 18 persons, 15 households (the son's new one included),
    # the 伤残 household's situation thrice (registered, new grade, ended), 4 member changes (birth, split, merge, move)
    assert (counts["jsx.members.person.registered"], counts["jsx.members.household.registered"]) == (18, 15)
    assert (counts["jsx.members.household.situation_changed"], counts["jsx.members.household.members_changed"]) == (
        3,
        4,
    )
    assert len(msgs) == 57
    assert len({m.headers["Nats-Msg-Id"] for m in msgs}) == len(msgs)  # no event twice
    by = {m.subject: m for m in msgs}
    died = ev.PersonDied.FromString(by["jsx.members.person.died"].data)
    assert (died.person, died.death_date, died.household, died.relation) == (
        grandma,
        day(date(2024, 1, 15)),
        old,
        pb.RELATION_HEAD,
    )
    added = ev.HouseholdChildAdded.FromString(by["jsx.members.household.child_added"].data)
    assert (added.household, added.person, added.relation, added.adopted) == (h, daughter, pb.RELATION_DAUGHTER, False)
    s = ev.HouseholdSplit.FromString(by["jsx.members.household.split"].data)
    assert (s.household, s.new_household, list(s.persons)) == (h, sons, [son])
    mg = ev.HouseholdMerged.FromString(by["jsx.members.household.merged"].data)
    assert (mg.household, mg.merged_household, mg.merge_date) == (sons, old, day(date(2024, 3, 2)))
    mv = ev.PersonMoved.FromString(by["jsx.members.person.moved"].data)
    assert (mv.person, mv.village.code, mv.destination.code, mv.household, mv.household_moved) == (
        son,
        YL,
        MOVE_TO,
        sons,
        True,
    )
    g = ev.HouseholdDisabilityGradeChanged.FromString(by["jsx.members.household.disability_grade_changed"].data)
    assert (g.household, g.previous_grade, g.disability_grade) == (disabled, 2, 1)
    r = ev.HouseholdDisabilityRecovered.FromString(by["jsx.members.household.disability_recovered"].data)
    assert (r.household, r.recovered_date) == (disabled, day(date(2024, 4, 1)))
    payloads = b"".join(m.data for m in msgs)
    assert not [i for i in ids if i.encode() in payloads] and "刘".encode() not in payloads
