"""Pairing under the region's rule (hook jsx_pairing_rules) with every
installed plugin (SQLite and PostgreSQL): 洪江's 会员联系户 let one member keep
up to 10 households, not only special families; elsewhere, and for 双岗联系人,
the built-in 1:1 rule. The rule that allowed a pairing is kept with it; a
refused pairing leaves nothing; the database keeps a volunteer's open
pairings on distinct slots so that a race cannot exceed the rule."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from jsx.common.v1 import common_pb2 as c
from jsx.members.v1 import events_pb2 as ev
from jsx.members.v1 import members_pb2 as pb
from jsx_members.adapters import db
from jsx_members.network.tables import PairingRow
from jsx_members.testdata import VILLAGES, acting, make_id_number, rid
from jsxcore.errors import FailedPrecondition
from jsxcore.outbox import OutboxEvent

HJ, YL = VILLAGES["431281"], VILLAGES["431222"]


async def _person(env, seq: int, village: str, birth: date = date(1970, 1, 1)) -> str:
    idn = make_id_number(village[:6], birth, seq)
    p = await env.api.CreatePerson(
        pb.CreatePersonRequest(
            person=pb.Person(display_name="李四", id_number=idn, village=c.RegionCode(code=village)), request_id=rid()
        )
    )
    return p.name


async def _household(
    env, seq: int, village: str, kind: pb.SituationKind.ValueType = pb.SITUATION_KIND_UNSPECIFIED
) -> str:
    head = await _person(env, seq, village)
    situations = (
        [
            pb.FamilySituation(
                kind=kind,
                effective_from=c.Date(year=2020, month=1, day=1),
                disability_grade=2 if kind == pb.SITUATION_KIND_SPECIAL_DISABLED else 0,
            )
        ]
        if kind
        else []
    )
    h = await env.api.CreateHousehold(
        pb.CreateHouseholdRequest(
            household=pb.Household(head=head, village=c.RegionCode(code=village)),
            situations=situations,
            request_id=rid(),
        )
    )
    return h.name


async def _volunteer(env, seq: int, village: str) -> str:
    vp = await _person(env, seq, village, date(1985, 1, 1))
    v = await env.api.CreateVolunteer(pb.CreateVolunteerRequest(volunteer=pb.Volunteer(person=vp), request_id=rid()))
    return v.name


def _pair(env, volunteer: str, household: str, kind: pb.PairingKind.ValueType = pb.PAIRING_KIND_MEMBER_CONTACT):
    return env.api.PairVolunteer(
        pb.PairVolunteerRequest(volunteer=volunteer, household=household, kind=kind, request_id=rid())
    )


async def _outbox(env) -> int:
    async with env.service.sessions() as s:
        return await db.count(s, OutboxEvent)


async def test_hongjiang_member_keeps_up_to_ten_households(plugin_env) -> None:
    env = plugin_env
    with acting("431281", subject="clerk-hj"):
        member = await _volunteer(env, 900, HJ)
        # 会员联系户 are not only special families: an 独生子女户, a 一般户 …
        homes = [
            await _household(env, 100 + i, HJ, pb.SITUATION_KIND_ONLY_CHILD if i % 2 else pb.SITUATION_KIND_UNSPECIFIED)
            for i in range(11)
        ]
        pairings = [await _pair(env, member, h) for h in homes[:10]]
        rule = pairings[0].rule
        assert (rule.plugin, rule.plugin_version, rule.hook) == ("hongjiang", "0.1.0", "jsx_pairing_rules")
        assert any("16716" in r for r in rule.reasons) and any("假定" in r for r in rule.reasons)
        before = await _outbox(env)
        with pytest.raises(FailedPrecondition) as e:
            await _pair(env, member, homes[10])
        assert (
            e.value.reason == "VOLUNTEER_AT_LIMIT"
            and "最多联系 10 户" in e.value.message
            and "16716" in e.value.message
        )
        assert await _outbox(env) == before
        # a second 会员联系户 for a household is refused whatever the rule
        with pytest.raises(FailedPrecondition) as e:
            await _pair(env, await _volunteer(env, 901, HJ), homes[0])
        assert e.value.reason == "HOUSEHOLD_ALREADY_PAIRED"
        # a freed place is taken again
        await env.api.EndPairing(pb.EndPairingRequest(name=pairings[3].name, reason="搬迁", request_id=rid()))
        again = await _pair(env, member, homes[10])
        assert again.rule.plugin == "hongjiang"

        # 双岗联系人 keep the default: special families only, 1:1 (all the member's households count)
        special = await _household(env, 300, HJ, pb.SITUATION_KIND_SPECIAL_BEREAVED)
        with pytest.raises(FailedPrecondition) as e:
            await _pair(env, member, special, pb.PAIRING_KIND_DUAL_CONTACT)
        assert e.value.reason == "VOLUNTEER_ALREADY_PAIRED"
        contact = await _volunteer(env, 902, HJ)
        with pytest.raises(FailedPrecondition) as e:
            await _pair(env, contact, homes[0], pb.PAIRING_KIND_DUAL_CONTACT)
        assert e.value.reason == "NOT_SPECIAL_FAMILY"
        dual = await _pair(env, contact, special, pb.PAIRING_KIND_DUAL_CONTACT)
        assert dual.rule.plugin == "builtin" and "1 名志愿者联系 1 名计生特殊家庭" in dual.rule.reasons[0]
    async with env.service.sessions() as s:
        slots = sorted(
            (
                await s.execute(
                    select(PairingRow.volunteer_slot).where(
                        PairingRow.end_date.is_(None), PairingRow.volunteer_id == member.split("/")[1]
                    )
                )
            ).scalars()
        )
        assert slots == list(range(10))  # the ended pairing's slot 3 was reused
        paired = (
            (await s.execute(select(OutboxEvent.subject).where(OutboxEvent.subject == "jsx.members.pairing.paired")))
            .scalars()
            .all()
        )
        assert len(paired) == 12  # 10 + the freed place + the 双岗联系人

        # two open pairings of one volunteer on one slot: the database refuses (a race cannot exceed the rule)
        taken = (await s.execute(select(PairingRow).where(PairingRow.end_date.is_(None)).limit(1))).scalar_one()
        s.add(
            PairingRow(
                id=db.new_id(),
                volunteer_id=taken.volunteer_id,
                household_id=homes[3].split("/")[1],
                kind="DUAL_CONTACT",
                start_date=date(2024, 1, 1),
                end_reason="",
                created_at=db.utcnow(),
                volunteer_slot=taken.volunteer_slot,
            )
        )
        with pytest.raises(IntegrityError):
            await s.flush()


async def test_elsewhere_a_volunteer_takes_one_special_family(plugin_env) -> None:
    env = plugin_env
    with acting():
        v = await _volunteer(env, 900, YL)
        a = await _household(env, 100, YL, pb.SITUATION_KIND_SPECIAL_DISABLED)
        b = await _household(env, 101, YL, pb.SITUATION_KIND_SPECIAL_BEREAVED)
        plain = await _household(env, 102, YL, pb.SITUATION_KIND_ONLY_CHILD)
        first = await _pair(env, v, a)
        assert first.rule.plugin == "builtin" and first.rule.reasons
        for household, reason in ((b, "VOLUNTEER_ALREADY_PAIRED"), (plain, "NOT_SPECIAL_FAMILY")):
            with pytest.raises(FailedPrecondition) as e:
                await _pair(env, v, household)
            assert e.value.reason == reason
        got = await env.api.ListPairings(pb.ListPairingsRequest(volunteer=v))
        assert [p.rule.plugin for p in got.pairings] == ["builtin"]
    async with env.service.sessions() as s:
        rows = (
            (await s.execute(select(OutboxEvent).where(OutboxEvent.subject == "jsx.members.pairing.paired")))
            .scalars()
            .all()
        )
    assert len(rows) == 1
    msg = ev.VolunteerPaired.FromString(rows[0].payload)
    assert msg.household == a and msg.village.code == YL
