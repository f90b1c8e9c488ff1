"""Life events' pure rules (no database): 户籍 moves, births and adoptions, 分户, 合户."""

from __future__ import annotations

from datetime import date

import pytest

from jsx_members.adapters.regions import KnownRegions
from jsx_members.households.domain import HouseholdState, Relation
from jsx_members.life import domain as life
from jsx_members.persons.domain import PersonStatus, PersonSummary
from jsxcore.errors import FailedPrecondition, InvalidArgument
from jsxcore.values import RegionCode

TODAY = date(2024, 6, 1)
HOME = RegionCode.parse("431222101201")
PLACES = KnownRegions.of(["431222101201", "431281101002", "431224102203", "431281000000"])
H, S, SON, D = Relation.HEAD, Relation.SPOUSE, Relation.SON, Relation.DAUGHTER


def _move(dest: str | None, out: bool = False, when: date | None = date(2024, 5, 1), whole: bool = False) -> life.Move:
    return life.Move(RegionCode.parse(dest) if dest else None, out, when, whole)


def _check(move: life.Move, status: PersonStatus = PersonStatus.ACTIVE) -> life.CheckedMove:
    return life.check_move(move, home=HOME, birth_date=date(1970, 1, 1), status=status, today=TODAY, places=PLACES)


def test_moves_in_and_out_of_the_province() -> None:
    inside = _check(_move("431281101002"))
    assert inside.village == RegionCode.parse("431281101002") and not inside.out_of_province
    out = _check(_move("440305"))  # 深圳市南山区: out of the province, implied
    assert out.out_of_province and out.abroad == RegionCode.parse("440305") and out.village is None
    unknown = _check(_move(None, out=True))
    assert unknown.out_of_province and unknown.destination is None


@pytest.mark.parametrize(
    ("move", "field"),
    [
        (_move("431281999999"), "destination"),  # well-formed, does not exist
        (_move("991281"), "destination"),  # no such province
        (_move("431281"), "destination"),  # in the province: a village is needed
        (_move("431222101201"), "destination"),  # the home village
        (_move(None), "destination"),
        (_move("431281101002", out=True), "out_of_province"),
        (_move("431281101002", when=None), "moved_date"),
        (_move("431281101002", when=date(2024, 6, 2)), "moved_date"),
        (_move("431281101002", when=date(1969, 12, 31)), "moved_date"),
    ],
)
def test_bad_moves_name_the_field(move: life.Move, field: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        _check(move)
    assert [v.field for v in e.value.violations] == [field]


def test_who_may_move() -> None:
    for status, reason in ((PersonStatus.DECEASED, "PERSON_DECEASED"), (PersonStatus.MOVED_OUT, "PERSON_MOVED_OUT")):
        with pytest.raises(FailedPrecondition) as f:
            _check(_move("431281101002"), status)
        assert f.value.reason == reason
    hh = HouseholdState("h", "head", HOME.code, "", (("head", H), ("wife", S)), None)
    alone = HouseholdState("h", "head", HOME.code, "", (("head", H),), None)
    assert life.household_part(None, "x", whole_household=False) is life.HouseholdPart.NONE
    assert life.household_part(hh, "wife", whole_household=False) is life.HouseholdPart.LEAVE
    assert life.household_part(hh, "head", whole_household=True) is life.HouseholdPart.ALONG
    assert life.household_part(alone, "head", whole_household=False) is life.HouseholdPart.ALONG
    with pytest.raises(FailedPrecondition) as f:
        life.household_part(hh, "head", whole_household=False)
    assert f.value.reason == "HEAD_MUST_STAY"
    for state, pid, reason in ((hh, "wife", "NOT_HEAD"), (None, "x", "NOT_IN_HOUSEHOLD")):
        with pytest.raises(InvalidArgument) as e:
            life.household_part(state, pid, whole_household=True)
        assert e.value.reason == reason and e.value.violations[0].field == "whole_household"


def _child(born: date, sex: str = "男", status: PersonStatus = PersonStatus.ACTIVE) -> PersonSummary:
    return PersonSummary("c", "王小", "4312**********0011", born, status, HOME.code, sex)


def test_births_and_adoptions() -> None:
    assert life.check_birth(life.Birth(SON), _child(date(2024, 5, 20)), today=TODAY) == date(2024, 5, 20)
    adopted = life.Birth(D, adopted=True, adoption_date=date(2024, 3, 1))
    assert life.check_birth(adopted, _child(date(2019, 1, 1), "女"), today=TODAY) == date(2024, 3, 1)
    cases = [
        (life.Birth(Relation.SPOUSE), _child(date(2024, 5, 20)), "relation"),
        (life.Birth(D), _child(date(2024, 5, 20), "男"), "relation"),
        (life.Birth(SON), _child(date(2024, 5, 20), "女"), "relation"),
        (life.Birth(SON), _child(date(1990, 1, 1)), "person"),  # an adult is not "born into" a household
        (life.Birth(SON, adoption_date=date(2024, 1, 1)), _child(date(2020, 1, 1)), "adoption_date"),
        (life.Birth(SON, adopted=True), _child(date(2020, 1, 1)), "adoption_date"),
        (life.Birth(SON, adopted=True, adoption_date=date(2019, 1, 1)), _child(date(2020, 1, 1)), "adoption_date"),
        (life.Birth(SON, adopted=True, adoption_date=date(2024, 6, 2)), _child(date(2020, 1, 1)), "adoption_date"),
        (life.Birth(SON, adopted=True, adoption_date=date(2024, 1, 1)), _child(date(2000, 1, 1)), "adoption_date"),
    ]
    for birth, child, field in cases:
        with pytest.raises(InvalidArgument) as e:
            life.check_birth(birth, child, today=TODAY)
        assert [v.field for v in e.value.violations] == [field], (birth, child)
    with pytest.raises(FailedPrecondition) as f:
        life.check_birth(life.Birth(SON), _child(date(2024, 5, 20), status=PersonStatus.DECEASED), today=TODAY)
    assert f.value.reason == "PERSON_DECEASED"


STATE = HouseholdState(
    "h1", "head", HOME.code, "岩门村1组", (("head", H), ("wife", S), ("son", SON), ("dil", Relation.OTHER)), None
)


def test_split() -> None:
    assert life.check_split(STATE, [("son", H), ("dil", S)], date(2024, 5, 1), today=TODAY) == "son"
    cases = [
        ([("head", H)], "members[0].person"),  # splitting off the head
        ([("son", H), ("stranger", S)], "members[1].person"),  # a person outside the household
        ([("son", S)], "members"),  # nobody to head the new household
        ([], "members"),
    ]
    for members, field in cases:
        with pytest.raises(InvalidArgument) as e:
            life.check_split(STATE, members, date(2024, 5, 1), today=TODAY)
        assert field in [v.field for v in e.value.violations], members
    with pytest.raises(InvalidArgument) as e:
        life.check_split(STATE, [("son", H)], date(2024, 6, 2), today=TODAY)
    assert [v.field for v in e.value.violations] == ["split_date"]


def test_merge() -> None:
    other = HouseholdState("h2", "grandpa", HOME.code, "", (("grandpa", H), ("grandma", S)), None)
    ok = [("grandpa", Relation.FATHER), ("grandma", Relation.MOTHER)]
    life.check_merge(STATE, other, ok, date(2024, 5, 1), today=TODAY)
    cases = [
        (STATE, ok, "merged_household"),
        (
            HouseholdState("h3", "x", "431222101202", "", (("x", H),), None),
            [("x", Relation.FATHER)],
            "merged_household",
        ),
        (other, [("grandpa", Relation.FATHER)], "members"),  # grandma left out
        (other, [*ok, ("son", SON)], "members[2].person"),  # not of the merged household
        (other, [("grandpa", H), ("grandma", S)], "members[0].relation"),  # two heads
    ]
    for merged, members, field in cases:
        with pytest.raises(InvalidArgument) as e:
            life.check_merge(STATE, merged, members, date(2024, 5, 1), today=TODAY)
        assert field in [v.field for v in e.value.violations], (merged.id, members)
    with pytest.raises(InvalidArgument) as e:
        life.check_merge(STATE, other, ok, None, today=TODAY)
    assert [v.field for v in e.value.violations] == ["merge_date"]


def test_known_regions_without_a_registry() -> None:
    bare = KnownRegions()
    assert bare.known(RegionCode.parse("431281999999")) and not bare.known(RegionCode.parse("991281"))
    assert not PLACES.known(RegionCode.parse("431281999999")) and PLACES.known(RegionCode.parse("440305"))
