"""Households' pure rules (no database): the head, member lists and head
changes, the situation history shown as periods, ending a situation."""

from __future__ import annotations

from datetime import date

import pytest

from jsx_members.households import domain as hh
from jsxcore.errors import FailedPrecondition, InvalidArgument

TODAY = date(2024, 6, 1)
H, S, C = hh.Relation.HEAD, hh.Relation.SPOUSE, hh.Relation.SON


def test_age_is_full_years() -> None:
    assert hh.age_on(date(2006, 6, 1), TODAY) == 18
    assert hh.age_on(date(2006, 6, 2), TODAY) == 17
    assert hh.age_on(date(2000, 2, 29), date(2024, 2, 28)) == 23


def test_registration_puts_the_head_first() -> None:
    assert hh.with_head("a", [("b", S)]) == [("a", H), ("b", S)]
    assert hh.with_head("a", [("b", S), ("a", H)]) == [("b", S), ("a", H)]  # listed: kept where it is
    with pytest.raises(InvalidArgument) as e:
        hh.with_head("a", [("b", H)])
    assert e.value.reason == "HEAD_MISMATCH" and e.value.violations[0].field == "household.head"


def test_head_change_needs_the_head_path_and_members() -> None:
    hh.check_head_change("a", "a", [("a", H), ("b", S)], change_head=False)
    hh.check_head_change("a", "b", [("b", H), ("a", S)], change_head=True)
    with pytest.raises(InvalidArgument) as e:
        hh.check_head_change("a", "a", [("b", H), ("a", S)], change_head=False)
    assert e.value.reason == "HEAD_CHANGE_NOT_REQUESTED"
    with pytest.raises(InvalidArgument) as e:
        hh.check_head_change("a", "c", [("b", H), ("a", S)], change_head=True)
    assert e.value.reason == "HEAD_MISMATCH"
    hh.check_update_paths(frozenset({"head", "members"}))
    hh.check_update_paths(frozenset({"address"}))
    with pytest.raises(InvalidArgument) as e:
        hh.check_update_paths(frozenset({"head"}))
    assert e.value.reason == "HEAD_CHANGE_NEEDS_MEMBERS" and e.value.violations[0].field == "update_mask"


def test_address() -> None:
    assert hh.check_address("  岩门村3组 ") == "岩门村3组"
    with pytest.raises(InvalidArgument) as e:
        hh.check_address("村" * 201)
    assert e.value.reason == "ADDRESS_TOO_LONG"


def test_deceased_head_refused() -> None:
    with pytest.raises(InvalidArgument) as e:
        hh.check_household_members([hh.HouseholdMemberView("a", H, date(1950, 1, 1), deceased=True)], on=TODAY)
    assert e.value.reason == "DECEASED_AS_HEAD" and e.value.violations[0].field == "members[0]"


def test_history_as_periods_leaves_out_the_ends() -> None:
    R = hh.SituationRecord
    history = [
        R(hh.Situation.ONLY_CHILD, date(2000, 1, 1)),
        R(hh.Situation.SPECIAL_DISABLED, date(2022, 7, 1), disability_grade=2),
        R(hh.Situation.NONE, date(2023, 1, 1)),
        R(hh.Situation.SPECIAL_BEREAVED, date(2024, 1, 1)),
    ]
    periods = [(r.situation, until) for r, until in hh.situation_periods(history)]
    assert periods == [
        (hh.Situation.ONLY_CHILD, date(2022, 6, 30)),
        (hh.Situation.SPECIAL_DISABLED, date(2022, 12, 31)),
        (hh.Situation.SPECIAL_BEREAVED, None),
    ]
    assert hh.situation_on(history, date(2023, 6, 1)).situation is hh.Situation.NONE  # type: ignore[union-attr]  # None fails


def test_closing_a_situation() -> None:
    rec = hh.SituationRecord(hh.Situation.SPECIAL_BEREAVED, date(2020, 1, 1), note="户籍迁出")
    closing = hh.close_situation(hh.Situation.SPECIAL_BEREAVED, rec, date(2024, 5, 31), today=TODAY)
    assert closing == hh.SituationRecord(hh.Situation.NONE, date(2024, 6, 1), note="户籍迁出")
    with pytest.raises(FailedPrecondition) as e:
        hh.close_situation(hh.Situation.ONLY_CHILD, rec, date(2024, 5, 31), today=TODAY)
    assert e.value.reason == "SITUATION_NOT_OPEN"
    with pytest.raises(InvalidArgument) as ia:
        hh.close_situation(hh.Situation.SPECIAL_BEREAVED, rec, date(2024, 6, 2), today=TODAY)
    assert ia.value.reason == "END_IN_FUTURE" and ia.value.violations[0].field == "situation.effective_to"


def test_same_state_ignores_dates_and_notes() -> None:
    a = hh.SituationRecord(hh.Situation.SPECIAL_DISABLED, date(2020, 1, 1), 2, "湘1", "旧")
    assert a.same_state(hh.SituationRecord(hh.Situation.SPECIAL_DISABLED, date(2021, 1, 1), 2, "湘1", "新"))
    assert not a.same_state(hh.SituationRecord(hh.Situation.SPECIAL_DISABLED, date(2020, 1, 1), 3, "湘1"))
    assert hh.SituationRecord(hh.Situation.ONLY_CHILD, TODAY).same_state(
        hh.SituationRecord(hh.Situation.ONLY_CHILD, TODAY, 0)
    )


def test_situation_record_field_rules() -> None:
    with pytest.raises(InvalidArgument) as e:
        hh.validate_situation(
            hh.SituationRecord(hh.Situation.ONLY_CHILD, TODAY, honor_certificate="湘" * 41, note="备" * 201)
        )
    assert [v.field for v in e.value.violations] == ["situation.honor_certificate", "situation.note"]


# ---------------------------------------------------------------- issue 13: grade changes, recovery


def test_grade_change_and_recovery() -> None:
    d2 = hh.SituationRecord(hh.Situation.SPECIAL_DISABLED, date(2020, 1, 1), 2)
    d1 = hh.SituationRecord(hh.Situation.SPECIAL_DISABLED, date(2023, 1, 1), 1)
    assert hh.grade_change(d2, d1) == 2 and hh.grade_change(None, d1) is None
    assert hh.grade_change(d2, hh.SituationRecord(hh.Situation.SPECIAL_BEREAVED, date(2023, 1, 1))) is None
    assert hh.grade_change(d2, d2) is None
    opened, last = hh.check_recovery(d2, date(2024, 3, 1), today=TODAY)
    assert opened is d2 and last == date(2024, 2, 29)
    with pytest.raises(InvalidArgument) as e:
        hh.check_recovery(d2, None, today=TODAY)
    assert e.value.violations[0].field == "recovered_date"
    with pytest.raises(InvalidArgument) as e:
        hh.check_recovery(d2, date(2024, 6, 2), today=TODAY)
    assert e.value.reason == "RECOVERED_DATE_IN_FUTURE"
    with pytest.raises(FailedPrecondition) as f:
        hh.check_recovery(hh.SituationRecord(hh.Situation.ONLY_CHILD, date(2020, 1, 1)), date(2024, 1, 1), today=TODAY)
    assert f.value.reason == "NOT_DISABLED_FAMILY"
    with pytest.raises(FailedPrecondition) as f:
        hh.check_recovery(d2, date(2020, 1, 1), today=TODAY)
    assert f.value.reason == "SITUATION_NOT_AFTER_LATEST"


def test_full_width_labels_fold_like_the_text() -> None:
    for text in ("计生特殊家庭（失独）", "计生特殊家庭(失独)", "计生特殊家庭（失独） ", "失独", "SPECIAL_BEREAVED"):
        assert hh.Situation.parse(text) is hh.Situation.SPECIAL_BEREAVED
    assert hh.Situation.parse("计生特殊家庭（伤残）") is hh.Situation.SPECIAL_DISABLED
