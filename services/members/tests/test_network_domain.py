"""Network's pure rules (no database): joining and leaving the association,
volunteers, the 1:1 pairing."""

from __future__ import annotations

import functools
from datetime import date

import pytest

from jsx_members.households.domain import Situation, SituationRecord
from jsx_members.network import domain as nw
from jsxcore.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from jsxcore.values import RegionCode

TODAY = date(2024, 6, 1)
HOME = "431222101201"  # a village of 沅陵


def test_association_is_home_or_above() -> None:
    for code in ("431222101201", "431222101", "431222", "431200", "430000"):
        nw.check_association(RegionCode.parse(code), HOME)
    for code in ("431222102", "431224"):
        with pytest.raises(InvalidArgument) as e:
            nw.check_association(RegionCode.parse(code), HOME)
        assert e.value.reason == "ASSOCIATION_NOT_HOME" and e.value.violations[0].field == "member.association"


@pytest.mark.parametrize(
    ("joined", "active", "member", "reason"),
    [
        (date(2024, 6, 2), True, False, "INVALID_JOINED_DATE"),
        (date(1969, 12, 31), True, False, "INVALID_JOINED_DATE"),
        (date(2020, 1, 1), False, False, "PERSON_NOT_ACTIVE"),
        (date(2020, 1, 1), True, True, "ALREADY_MEMBER"),
    ],
)
def test_join_refusals(joined: date, active: bool, member: bool, reason: str) -> None:
    with pytest.raises((InvalidArgument, FailedPrecondition)) as e:
        nw.check_join(joined, birth_date=date(1970, 1, 1), today=TODAY, person_active=active, already_member=member)
    assert e.value.reason == reason


def test_join_on_the_day() -> None:
    nw.check_join(TODAY, birth_date=date(1970, 1, 1), today=TODAY, person_active=True, already_member=False)


def test_ended_membership_takes_only_a_reason() -> None:
    nw.check_member_change(None, frozenset({"member_type", "association"}))
    nw.check_member_change(date(2024, 1, 1), frozenset({"left_reason"}))
    with pytest.raises(FailedPrecondition) as e:
        nw.check_member_change(date(2024, 1, 1), frozenset({"left_reason", "member_type"}))
    assert e.value.reason == "MEMBERSHIP_ENDED"


def test_not_in_the_future() -> None:
    assert nw.check_not_future(TODAY, today=TODAY, field="left_date", message="退会日期不能晚于今天") == TODAY
    with pytest.raises(InvalidArgument) as e:
        nw.check_not_future(
            date(2024, 6, 2),
            today=TODAY,
            field="start_date",
            message="结对开始日期不能晚于今天",
            reason="START_IN_FUTURE",
        )
    assert e.value.reason == "START_IN_FUTURE" and e.value.violations[0].field == "start_date"


def test_volunteers() -> None:
    nw.check_new_volunteer(person_active=True, already_volunteer=False)
    with pytest.raises(FailedPrecondition) as e:
        nw.check_new_volunteer(person_active=False, already_volunteer=False)
    assert e.value.reason == "PERSON_NOT_ACTIVE"
    with pytest.raises(AlreadyExists) as ae:
        nw.check_new_volunteer(person_active=True, already_volunteer=True)
    assert ae.value.reason == "VOLUNTEER_ALREADY_EXISTS"
    assert nw.check_skills(" 心理疏导 ") == "心理疏导"
    with pytest.raises(InvalidArgument) as ia:
        nw.check_skills("长" * 101)
    assert ia.value.reason == "SKILLS_TOO_LONG"


def test_activation() -> None:
    nw.check_activation(False, has_open_pairing=False, person_active=True)
    nw.check_activation(True, has_open_pairing=False, person_active=True)
    with pytest.raises(FailedPrecondition) as e:
        nw.check_activation(False, has_open_pairing=True, person_active=True)
    assert e.value.reason == "VOLUNTEER_HAS_PAIRING"
    with pytest.raises(FailedPrecondition) as e:
        nw.check_activation(True, has_open_pairing=False, person_active=False)
    assert e.value.reason == "PERSON_NOT_ACTIVE"


def test_inactive_volunteer_is_not_paired() -> None:
    with pytest.raises(FailedPrecondition) as e:
        nw.check_pairing(
            household_situation=SituationRecord(Situation.SPECIAL_DISABLED, date(2020, 1, 1), 1),
            household_active=False,
            volunteer_open=0,
            volunteer_deceased=False,
            volunteer_in_household=False,
            volunteer_inactive=True,
        )
    assert e.value.reason == "VOLUNTEER_INACTIVE"
    with pytest.raises(FailedPrecondition) as e:  # 一般户 again: the special situation ended
        nw.check_pairing(
            household_situation=SituationRecord(Situation.NONE, date(2023, 1, 1)),
            household_active=False,
            volunteer_open=0,
            volunteer_deceased=False,
            volunteer_in_household=False,
        )
    assert e.value.reason == "NOT_SPECIAL_FAMILY"


def test_tenure_bounds_are_inclusive() -> None:
    t = nw.Tenure(date(2020, 1, 1), date(2020, 12, 31))
    assert t.active_on(date(2020, 1, 1)) and t.active_on(date(2020, 12, 31)) and not t.active_on(date(2021, 1, 1))
    assert nw.check_end(nw.Tenure(date(2020, 1, 1)), date(2020, 1, 1)).end == date(2020, 1, 1)


# ---------------------------------------------------------------- issue 13: pairing rules from plugins


def test_pairing_follows_the_regions_rule() -> None:
    from jsxcore.hookspecs import PairingRules

    several = PairingRules(3, False, ("测试规则：每名会员联系不超过 3 户",))
    check = functools.partial(
        nw.check_pairing,
        household_situation=SituationRecord(Situation.ONLY_CHILD, date(2020, 1, 1)),
        household_active=False,
        volunteer_deceased=False,
        volunteer_in_household=False,
    )
    check(volunteer_open=2, rules=several)  # not a special family, third household: allowed
    with pytest.raises(FailedPrecondition) as e:
        check(volunteer_open=3, rules=several)
    assert (
        e.value.reason == "VOLUNTEER_AT_LIMIT" and "最多联系 3 户" in e.value.message and "测试规则" in e.value.message
    )
    with pytest.raises(FailedPrecondition) as e:
        check(volunteer_open=1, already_paired_here=True, rules=several)
    assert e.value.reason == "VOLUNTEER_ALREADY_PAIRED_HERE"
    with pytest.raises(FailedPrecondition) as e:  # the default: special families only, 1:1
        check(volunteer_open=0)
    assert e.value.reason == "NOT_SPECIAL_FAMILY"
    assert nw.free_slot(set()) == 0 and nw.free_slot({0, 2}) == 1 and nw.free_slot({0, 1}) == 2
