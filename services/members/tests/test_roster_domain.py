"""Roster import rules without a database: one row, the file's households
against what is registered, and what a valid file adds."""

from __future__ import annotations

from datetime import date
from itertools import count

from jsx_members.households.domain import Membership, Relation, Situation, SituationRecord
from jsx_members.persons.domain import HukouType, RegisteredPerson
from jsx_members.roster import domain as rd
from jsx_members.testdata import TODAY, roster_rows
from jsxcore.values import RegionCode

YUANLING = RegionCode.parse("431222")


def parsed(rows: list[dict[str, str]]) -> tuple[rd.ImportReport, list[tuple[int, rd.RosterRow]]]:
    """Rows through the parser, each given a digest (its 身份证 reversed stands in for the blind index)."""
    parser, report, good = rd.RowParser(today=TODAY, scope=YUANLING), rd.ImportReport(rows=rows), []
    for i, r in enumerate(rows):
        row, errs = parser.parse(r)
        if errs:
            report.errors[i] = errs
        else:
            assert row is not None
            row.digest = row.draft.id_number.value[::-1]
            good.append((i, row))
    return report, good


def test_a_household_of_three_parses() -> None:
    report, good = parsed(list(roster_rows(3)))
    assert report.ok and [r.relation for _, r in good] == [Relation.HEAD, Relation.SPOUSE, Relation.DAUGHTER]
    head = good[0][1]
    assert head.head == head.draft.id_number.value and head.situation is not None
    assert head.situation.situation is Situation.ONLY_CHILD and head.situation.effective_from == date(2020, 1, 1)
    groups = rd.group_households(good)
    assert list(groups) == [head.draft.id_number.value] and len(groups[head.head]) == 3


def test_row_problems_are_all_reported() -> None:
    head, spouse, child = roster_rows(3)
    rows = [
        dict(head, 所属村="431224102203"),  # outside 沅陵
        dict(spouse, 户主身份证号="", 与户主关系="配偶"),  # relation without a head
        dict(child, 家庭类型="失独", 家庭类型生效日期="2021-01-01"),  # situation on a member's row
        dict(spouse, 与户主关系="户主"),  # 户主 whose head number is someone else's
        dict(head, 家庭类型="伤残", 家庭类型生效日期="2021/01/01", 伤残等级="四"),
        dict(head, 家庭类型="独生子女户", 家庭类型生效日期=""),
    ]
    report, good = parsed(rows)
    assert not good and set(report.errors) == set(range(6))
    assert "不在您的辖区" in report.errors[0][0]
    assert report.errors[1] == ["填写了与户主关系，但没有填写户主身份证号"]
    assert report.errors[2] == ["家庭类型只在户主那一行填写"]
    assert report.errors[3] == ["与户主关系为“户主”的行，户主身份证号须是本人的号码"]
    assert report.errors[4] == ["伤残等级应为 1、2 或 3"]
    assert "须填写生效日期" in report.errors[5][0]


def test_households_checked_against_the_registry() -> None:
    rows = list(roster_rows(6))
    report, good = parsed(rows)
    groups, by_id = rd.group_households(good), {r.draft.id_number.value: (i, r) for i, r in good}
    first, second = list(groups)
    registered = {
        by_id[first][1].digest: RegisteredPerson("p-head1", "某", "", None, HukouType.RURAL),
        good[4][1].digest: RegisteredPerson("p-spouse2", "某", "", None, HukouType.RURAL),
    }
    memberships = {
        "p-head1": Membership("h1", Relation.HEAD, 0),
        "p-spouse2": Membership("h-other", Relation.SPOUSE, 1),  # already in another household
    }
    latest = {"h1": SituationRecord(Situation.TWO_DAUGHTERS, date(2021, 1, 1))}  # the file says 独生子女户 from 2020
    rd.check_households(
        report,
        groups,
        by_id,
        head_person={first: registered[by_id[first][1].digest], second: None},
        existing=registered,
        memberships=memberships,
        latest=latest,
        today=TODAY,
    )
    assert set(report.errors) == {0, 4}
    assert "不可改写" in report.errors[0][0] and "另一户（households/h-other）" in report.errors[4][0]


def test_head_neither_in_the_file_nor_registered() -> None:
    rows = list(roster_rows(3))[1:]  # the head's own row is missing
    report, good = parsed(rows)
    groups, by_id = rd.group_households(good), {r.draft.id_number.value: (i, r) for i, r in good}
    rd.check_households(
        report, groups, by_id, head_person=dict.fromkeys(groups), existing={}, memberships={}, latest={}, today=TODAY
    )
    assert report.errors == {
        0: ["户主身份证号在本表和系统中都找不到对应的户主，请先登记户主"],
        1: ["户主身份证号在本表和系统中都找不到对应的户主，请先登记户主"],
    }


def test_plan_new_and_existing_households() -> None:
    rows = list(roster_rows(6))
    report, good = parsed(rows)
    groups = rd.group_households(good)
    first, second = list(groups)
    ids = {r.draft.id_number.value: f"p{i}" for i, r in good}
    memberships = {"p0": Membership("h-known", Relation.HEAD, 0), "p1": Membership("h-known", Relation.SPOUSE, 1)}
    same = SituationRecord(Situation.ONLY_CHILD, date(2020, 1, 1))  # what the file says: nothing to record
    drawn = count()
    plan = rd.plan_households(
        report,
        groups,
        person_ids=ids,
        head_ids={first: "p0", second: "p3"},
        memberships=memberships,
        villages={"h-known": "431222101201"},
        latest={"h-known": same},
        new_id=lambda: f"new{next(drawn)}",
    )
    known, new = plan
    assert (known.household_id, known.new, known.members, known.situation) == (
        "h-known",
        False,
        (("p2", Relation.DAUGHTER),),
        None,
    )
    assert (new.household_id, new.new, new.head_person_id, new.member_count) == ("new0", True, "p3", 3)
    assert [pid for pid, _ in new.members] == ["p3", "p4", "p5"] and new.situation is not None
    assert (report.households_created, report.members_added, report.situations_recorded) == (1, 1, 1)


def test_registered_person_must_agree() -> None:
    _, good = parsed(list(roster_rows(1)))
    row = good[0][1]
    same = RegisteredPerson("p1", row.draft.name, row.draft.village.code, row.phone_digest, row.draft.hukou)
    assert rd.registered_mismatch(same, row) is None
    moved = RegisteredPerson("p1", row.draft.name, "431222101202", row.phone_digest, row.draft.hukou)
    problem = rd.registered_mismatch(moved, row)
    assert problem is not None and "persons/p1" in problem and row.draft.name not in problem  # the name is masked


def test_error_rows_explain_each_bad_row() -> None:
    report = rd.ImportReport(rows=[{"姓名": "甲"}, {"姓名": "乙"}])
    report.add(1, "一")
    report.add(1, "二")
    assert list(report.error_rows()) == [{"姓名": "甲", rd.ERROR_COLUMN: ""}, {"姓名": "乙", rd.ERROR_COLUMN: "一；二"}]
    assert not report.ok
