"""Persons' pure rules (no database): names, cards, life status, what other contexts see."""

from __future__ import annotations

from datetime import date

import pytest

from jsx_members.persons import domain as persons
from jsx_members.testdata import make_id_number
from jsxcore.errors import ErrorCollector, FailedPrecondition, InvalidArgument

TODAY = date(2024, 6, 1)


def test_names_fold_and_refuse_digits() -> None:
    assert persons.normalize_name("  欧阳•娜娜 ") == "欧阳·娜娜"
    assert persons.normalize_name("ＡＢ") == "AB"  # full-width letters fold to ASCII
    with pytest.raises(InvalidArgument) as e:
        persons.normalize_name("", field="person.display_name")
    assert e.value.reason == "NAME_REQUIRED" and e.value.violations[0].field == "person.display_name"
    with pytest.raises(InvalidArgument) as e:
        persons.normalize_name("张三3")
    assert e.value.reason == "NAME_FORMAT"


def test_card_numbers() -> None:
    assert persons.normalize_card("6217 0012 3456 7890") == "6217001234567890"
    assert persons.normalize_card("") == ""
    for bad in ("1234567", "6217-0012-3456", "1" * 31):
        with pytest.raises(InvalidArgument) as e:
            persons.normalize_card(bad)
        assert e.value.reason == "CARD_NUMBER_FORMAT" and e.value.violations[0].field == "person.card_number"


def test_death_date_rules_on_registration() -> None:
    idn = make_id_number("431222", date(1970, 1, 1), 3)
    draft = persons.validate_person(
        name="张三",
        id_number=idn,
        phone="",
        village="431222101201",
        hukou="城镇",
        death_date=date(2020, 1, 1),
        today=TODAY,
    )
    assert (
        draft.status is persons.PersonStatus.DECEASED and draft.hukou is persons.HukouType.URBAN and draft.phone is None
    )
    with pytest.raises(InvalidArgument) as e:
        persons.validate_person(
            name="张三",
            id_number=idn,
            phone="",
            village="431222101201",
            hukou="",
            death_date=date(1960, 1, 1),
            today=TODAY,
        )
    assert [v.field for v in e.value.violations] == ["death_date"]
    with pytest.raises(InvalidArgument) as e:
        persons.validate_person(
            name="张三",
            id_number=idn,
            phone="",
            village="431222101201",
            hukou="",
            death_date=date(2025, 1, 1),
            today=TODAY,
            prefix="person.",
        )
    assert [v.field for v in e.value.violations] == ["person.death_date"]


@pytest.mark.parametrize(
    ("status", "death", "fields"),
    [
        (persons.PersonStatus.DECEASED, None, ["person.death_date"]),
        (persons.PersonStatus.ACTIVE, date(2020, 1, 1), ["person.status"]),
        (persons.PersonStatus.DECEASED, date(1960, 1, 1), ["person.death_date"]),
        (persons.PersonStatus.DECEASED, date(2025, 1, 1), ["person.death_date"]),
        (persons.PersonStatus.DECEASED, date(2020, 1, 1), []),
        (persons.PersonStatus.MOVED_OUT, None, []),
        (None, None, []),  # an unreadable status is reported by whoever read it
    ],
)
def test_life_status_change(status: persons.PersonStatus | None, death: date | None, fields: list[str]) -> None:
    errors = ErrorCollector()
    persons.check_life_status(errors, status, death, birth_date=date(1970, 1, 1), today=TODAY)
    assert [v.field for v in errors.violations] == fields


def test_villages_must_be_village_level() -> None:
    assert persons.parse_village("431222101201").code == "431222101201"
    with pytest.raises(InvalidArgument) as e:
        persons.parse_village("431222", field="person.village")
    assert e.value.reason == "VILLAGE_REQUIRED" and e.value.violations[0].field == "person.village"


def test_summary_status() -> None:
    s = persons.PersonSummary(
        "p1", "张三", "4312**********0011", date(1970, 1, 1), persons.PersonStatus.DECEASED, "431222101201"
    )
    assert s.deceased and not s.active
    assert persons.PersonSummary("p2", "李四", "", date(1970, 1, 1), persons.PersonStatus.ACTIVE, "").active


# ---------------------------------------------------------------- issue 13: roster cards, deaths


def test_luhn_and_roster_cards() -> None:
    assert persons.luhn_ok("4111111111111111") and not persons.luhn_ok("4111111111111112")
    assert persons.is_bank_card("6217000000000000012") and not persons.is_bank_card("880123456789")
    assert persons.normalize_roster_card(" ６２１７ ０００００００００００００１２ ") == "6217000000000000012"
    assert persons.normalize_roster_card("880123456789") == "880123456789"  # a passbook account: no checksum
    assert persons.normalize_roster_card("") == ""
    with pytest.raises(InvalidArgument) as e:
        persons.normalize_roster_card("6217000000000000013")
    assert e.value.reason == "CARD_NUMBER_CHECKSUM" and e.value.violations[0].field == "一卡通账号"
    assert "6217000000000000013" not in e.value.message
    with pytest.raises(InvalidArgument) as e:
        persons.normalize_roster_card("6.21700E+18")  # what Excel makes of a number cell
    assert e.value.reason == "CARD_NUMBER_FORMAT"


def test_recording_a_death() -> None:
    born = date(1950, 3, 1)
    ok = persons.check_death(date(2024, 5, 1), status=persons.PersonStatus.ACTIVE, birth_date=born, today=TODAY)
    assert ok == date(2024, 5, 1)
    for day, reason in (
        (None, "DEATH_DATE_REQUIRED"),
        (date(2024, 6, 2), "DEATH_DATE_IN_FUTURE"),
        (date(1949, 12, 31), "DEATH_BEFORE_BIRTH"),
    ):
        with pytest.raises(InvalidArgument) as e:
            persons.check_death(day, status=persons.PersonStatus.ACTIVE, birth_date=born, today=TODAY)
        assert e.value.reason == reason and e.value.violations[0].field == "death_date"
    for status, reason in (
        (persons.PersonStatus.DECEASED, "ALREADY_DECEASED"),
        (persons.PersonStatus.MOVED_OUT, "PERSON_MOVED_OUT"),
    ):
        with pytest.raises(FailedPrecondition) as f:
            persons.check_death(date(2024, 5, 1), status=status, birth_date=born, today=TODAY)
        assert f.value.reason == reason


def test_death_changes_and_status_rules() -> None:
    A, D, M = persons.PersonStatus.ACTIVE, persons.PersonStatus.DECEASED, persons.PersonStatus.MOVED_OUT
    d1, d2 = date(2024, 1, 2), date(2024, 1, 3)
    assert persons.death_change((A, None), (D, d1)) is persons.DeathChange.DIED
    assert persons.death_change((D, d1), (D, d2)) is persons.DeathChange.CORRECTED
    assert persons.death_change((D, d1), (A, None)) is persons.DeathChange.WITHDRAWN
    assert persons.death_change((D, d1), (D, d1)) is persons.DeathChange.NONE
    assert persons.death_change((A, None), (A, None)) is persons.DeathChange.NONE
    errors = ErrorCollector()
    persons.check_status_change(errors, A, M)
    persons.check_status_change(errors, M, A)
    persons.check_status_change(errors, A, D)
    assert [v.field for v in errors.violations] == ["person.status", "person.status"]
    assert "MovePerson" in errors.violations[0].description
