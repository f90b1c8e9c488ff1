"""Pure rules of the members contexts (no I/O)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from jsx_members.households import domain as households
from jsx_members.network import domain as network
from jsx_members.persons import domain as persons
from jsx_members.sites import domain as sites
from jsx_members.testdata import make_id_number, roster_rows
from jsxcore.errors import FailedPrecondition, InvalidArgument
from jsxcore.values import IdNumber

TODAY = date(2024, 6, 1)


def test_generated_id_numbers_are_valid_and_known_good_one_parses() -> None:
    assert IdNumber.parse("11010519491231002X").sex.value == "女"
    idn = IdNumber.parse(make_id_number("431224", date(1980, 5, 6), 7))
    assert idn.birth_date == date(1980, 5, 6) and idn.sex.value == "男"
    ids = [r["身份证号"] for r in roster_rows(5000)]
    assert len(set(ids)) == 5000
    for i in ids[:200]:
        IdNumber.parse(i)


def test_validate_person_collects_all_violations_without_echoing_the_number() -> None:
    bad = make_id_number()[:-1] + ("0" if make_id_number()[-1] != "0" else "1")
    with pytest.raises(InvalidArgument) as e:
        persons.validate_person(name="", id_number=bad, phone="12345", village="431222", hukou="外星", today=TODAY)
    fields = {v.field for v in e.value.violations}
    assert fields == {"name", "id_number", "phone", "village", "hukou"}
    assert bad not in str(e.value.violations)
    assert any("校验位" in v.description for v in e.value.violations)


def test_validate_person_normalises() -> None:
    p = persons.validate_person(
        name=" 张三 ",
        id_number=make_id_number().lower(),
        phone="139 1234 5678",
        village="431222101201",
        hukou="",
        today=TODAY,
    )
    assert p.name == "张三" and p.phone == "13912345678" and p.hukou is persons.HukouType.RURAL
    assert p.village.code == "431222101201" and p.birth_date == date(1970, 1, 1)
    assert "**********" in repr(p)


def test_minor_cannot_be_head() -> None:
    with pytest.raises(InvalidArgument) as e:
        households.check_head(date(2010, 1, 1), False, on=TODAY)
    assert e.value.reason == "MINOR_AS_HEAD"
    households.check_head(date(2006, 6, 1), False, on=TODAY)  # 18 today
    with pytest.raises(InvalidArgument):
        households.check_head(date(2006, 6, 2), False, on=TODAY)


def test_household_needs_exactly_one_head_and_one_spouse_at_most() -> None:
    adult = date(1980, 1, 1)
    M = households.HouseholdMemberView
    households.check_household_members(
        [M("a", households.Relation.HEAD, adult), M("b", households.Relation.SPOUSE, adult)], on=TODAY
    )
    with pytest.raises(InvalidArgument):
        households.check_household_members([M("a", households.Relation.SON, adult)], on=TODAY)
    with pytest.raises(InvalidArgument):
        households.check_household_members(
            [
                M("a", households.Relation.HEAD, adult),
                M("b", households.Relation.SPOUSE, adult),
                M("c", households.Relation.SPOUSE, adult),
            ],
            on=TODAY,
        )
    with pytest.raises(InvalidArgument):
        households.check_household_members(
            [M("a", households.Relation.HEAD, adult), M("a", households.Relation.SON, adult)], on=TODAY
        )
    with pytest.raises(InvalidArgument) as e:
        households.check_household_members([M("k", households.Relation.HEAD, date(2015, 1, 1))], on=TODAY)
    assert e.value.reason == "MINOR_AS_HEAD"


def test_situation_history_is_appended_never_rewritten() -> None:
    S = households.SituationRecord
    h = households.append_situation(
        [], S(households.Situation.ONLY_CHILD, date(2010, 1, 1), honor_certificate="湘0001"), today=TODAY
    )
    h = households.append_situation(
        h,
        S(households.Situation.SPECIAL_DISABLED, date(2020, 3, 1), disability_grade=2, honor_certificate="湘0001"),
        today=TODAY,
    )
    assert len(h) == 2
    assert households.situation_on(h, date(2009, 12, 31)) is None
    assert households.situation_on(h, date(2015, 1, 1)).situation is households.Situation.ONLY_CHILD  # type: ignore[union-attr]  # None fails the assertion
    assert households.situation_on(h, TODAY).situation is households.Situation.SPECIAL_DISABLED  # type: ignore[union-attr]  # None fails the assertion
    with pytest.raises(FailedPrecondition) as e:
        households.append_situation(h, S(households.Situation.SPECIAL_BEREAVED, date(2019, 1, 1)), today=TODAY)
    assert e.value.reason == "SITUATION_NOT_AFTER_LATEST"
    with pytest.raises(FailedPrecondition):
        households.append_situation(
            h,
            S(households.Situation.SPECIAL_DISABLED, date(2021, 1, 1), disability_grade=2, honor_certificate="湘0001"),
            today=TODAY,
        )
    with pytest.raises(InvalidArgument):
        households.append_situation(h, S(households.Situation.SPECIAL_DISABLED, date(2021, 1, 1)), today=TODAY)
    with pytest.raises(InvalidArgument):
        households.append_situation(
            h, S(households.Situation.ONLY_CHILD, date(2021, 1, 1), disability_grade=1), today=TODAY
        )
    with pytest.raises(InvalidArgument):
        households.append_situation(h, S(households.Situation.SPECIAL_BEREAVED, date(2030, 1, 1)), today=TODAY)


def test_situation_parse_accepts_short_forms() -> None:
    assert households.Situation.parse("失独") is households.Situation.SPECIAL_BEREAVED
    assert households.Situation.parse("双女户") is households.Situation.TWO_DAUGHTERS
    with pytest.raises(InvalidArgument):
        households.Situation.parse("三女户")


def test_pairing_is_one_to_one_and_only_for_special_families() -> None:
    special = households.SituationRecord(households.Situation.SPECIAL_BEREAVED, date(2020, 1, 1))
    ok: dict[str, Any] = {
        "household_situation": special,
        "household_active": False,
        "volunteer_open": 0,
        "volunteer_deceased": False,
        "volunteer_in_household": False,
    }
    network.check_pairing(**ok)
    changes: list[tuple[dict[str, Any], str]] = [
        (
            {"household_situation": households.SituationRecord(households.Situation.ONLY_CHILD, date(2020, 1, 1))},
            "NOT_SPECIAL_FAMILY",
        ),
        ({"household_situation": None}, "NOT_SPECIAL_FAMILY"),
        ({"household_active": True}, "HOUSEHOLD_ALREADY_PAIRED"),
        ({"volunteer_open": 1}, "VOLUNTEER_ALREADY_PAIRED"),
        ({"volunteer_deceased": True}, "VOLUNTEER_DECEASED"),
        ({"volunteer_in_household": True}, "VOLUNTEER_OWN_HOUSEHOLD"),
    ]
    for change, reason in changes:
        with pytest.raises(FailedPrecondition) as e:
            network.check_pairing(**{**ok, **change})
        assert e.value.reason == reason


def test_tenure_end() -> None:
    t = network.Tenure(date(2020, 1, 1))
    assert t.active_on(TODAY)
    ended = network.check_end(t, date(2021, 1, 1))
    assert not ended.active_on(TODAY) and ended.active_on(date(2020, 6, 1))
    with pytest.raises(FailedPrecondition):
        network.check_end(ended, date(2022, 1, 1))
    with pytest.raises(InvalidArgument):
        network.check_end(t, date(2019, 1, 1))


def test_six_haves_checklist() -> None:
    s = sites.SixHaves.of(["有场所", "标识", "活动"])
    assert s.missing == ["制度", "计划", "管理"] and not s.complete
    assert sites.SixHaves.of(sites.SIX_HAVES).complete
    with pytest.raises(InvalidArgument):
        sites.SixHaves.of(["场所", "食堂"])
    with pytest.raises(InvalidArgument):
        sites.validate_site(
            kind=sites.SiteKind.HEALTH_STATION, name="驿站", village="431222101201", address="", six_haves=["场所"]
        )
    with pytest.raises(InvalidArgument) as e:
        sites.validate_site(kind=sites.SiteKind.WARM_HOME, name="", village="431222", address="", six_haves=[])
    with pytest.raises(InvalidArgument):
        households.append_situation(
            [],
            households.SituationRecord(households.Situation.SPECIAL_DISABLED, date(2021, 1, 1), disability_grade=4),
            today=TODAY,
        )
    assert {v.field for v in e.value.violations} == {"site.name", "site.village"}


def test_phone_and_village_rules() -> None:
    assert persons.normalize_phone("0745-2223333") == "0745-2223333"
    assert persons.normalize_phone("+8613912345678") == "13912345678"
    assert persons.normalize_phone("") is None
    with pytest.raises(InvalidArgument):
        persons.parse_village("431222101000")
