"""The pure domain of each context, without a database (cadence and summaries: test_domain.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from jsx_events.activities.domain import Activity, ActivityStatus, Outputs
from jsx_events.awards.domain import AwardDecision, Nomination, normalize_award_kind
from jsx_events.catalog.domain import ActivityKind, normalize_type, type_label
from jsx_events.plans.domain import ItemProgress, Plan, PlanItem, item_due, item_label, item_name
from jsx_events.projections.domain import SituationChanged, normalize_site_kind, site_name, special_kinds_after
from jsx_events.reporting.domain import Target, windows
from jsx_events.visits.domain import BookingResult, Visit, VisitState
from jsxcore.errors import FailedPrecondition, InvalidArgument
from jsxcore.hookspecs import CadenceTarget
from jsxcore.values import Money, Period, RegionCode, RegionLevel

TOWN = RegionCode.parse("431281101")
VILLAGE = RegionCode.parse("431281101201")


# ---------------------------------------------------------------- catalog


def test_type_names_fold_onto_codes_and_back() -> None:
    assert normalize_type(" 健康人生大讲堂 ") == ActivityKind.HEALTH_LECTURE
    assert normalize_type("“义诊”") == ActivityKind.FREE_CLINIC
    assert normalize_type("5.29") == ActivityKind.MEMBER_DAY
    assert normalize_type("走访") == normalize_type("慰问") == "CARE_VISIT"
    assert normalize_type("dragon_boat") == "DRAGON_BOAT"  # a plugin's code, upper-cased
    assert normalize_type("端午节") == "端午节"
    assert type_label("HEALTH_LECTURE") == "健康大讲堂" and type_label("PLAN") == "年度计划"
    assert type_label("DRAGON_BOAT", {"DRAGON_BOAT": "端午活动"}) == "端午活动"
    assert type_label("UNKNOWN") == "UNKNOWN"


def test_a_plugin_type_may_be_written_by_its_name() -> None:
    from jsx_events.catalog.domain import plugin_code

    custom = {"COUNCIL_MEETING": "理事会会议", "BACKBONE_TRAINING": "骨干会员培训"}
    assert plugin_code(normalize_type("理事会会议"), custom) == "COUNCIL_MEETING"
    assert plugin_code(normalize_type(" “骨干会员培训” "), custom) == "BACKBONE_TRAINING"
    assert plugin_code("COUNCIL_MEETING", custom) == "COUNCIL_MEETING"
    assert plugin_code("HEALTH_LECTURE", custom) == "HEALTH_LECTURE" and plugin_code("乱写", custom) == "乱写"


# ---------------------------------------------------------------- projections


def test_site_kinds_and_names() -> None:
    assert normalize_site_kind("暖心家园") == "WARM_HOME"
    assert normalize_site_kind("school") == normalize_site_kind("学校") == "YOUTH_HEALTH_BASE"
    assert normalize_site_kind(" member_home ") == "MEMBER_HOME"
    assert site_name("warm-1", "WARM_HOME") == "暖心家园（warm-1）"
    assert site_name("warm-1", "WARM_HOME", "岩门村暖心家园") == "岩门村暖心家园"


def test_special_situations_open_and_close_by_their_end() -> None:
    today = date(2022, 9, 1)

    def change(kind: str, ended: date | None = None) -> SituationChanged:
        return SituationChanged("hh-1", VILLAGE, kind, ended)

    assert special_kinds_after([], change("SPECIAL_BEREAVED"), today) == ["SPECIAL_BEREAVED"]
    both = special_kinds_after(["SPECIAL_BEREAVED"], change("SPECIAL_DISABLED", date(2023, 1, 1)), today)
    assert both == ["SPECIAL_BEREAVED", "SPECIAL_DISABLED"]  # ends later: still open
    assert special_kinds_after(both, change("SPECIAL_DISABLED", date(2022, 8, 31)), today) == ["SPECIAL_BEREAVED"]
    assert special_kinds_after(["SPECIAL_BEREAVED"], change("LOW_INCOME"), today) == ["SPECIAL_BEREAVED"]


# ---------------------------------------------------------------- plans


def test_plan_items_checked_with_the_regions_types() -> None:
    item = PlanItem("i1", "DRAGON_BOAT", 0, month=13)
    assert {f for f, _ in item.problems("items[0]")} == {"items[0].count", "items[0].month"}  # types not checked
    assert {f for f, _ in item.problems("items[0]", ())} == {"items[0].count", "items[0].month", "items[0].type"}
    assert not PlanItem("i1", "DRAGON_BOAT", 1).problems("x", {"DRAGON_BOAT"})
    assert not PlanItem("i1", "ANY", 1).problems("x", ())
    with pytest.raises(InvalidArgument) as e:
        PlanItem("i1", "", 1).check(())
    assert [v.field for v in e.value.violations] == ["plan_item.type"]
    with pytest.raises(InvalidArgument) as e:
        Plan("p", VILLAGE, 2022, ()).validate()
    assert [v.field for v in e.value.violations] == ["items"]
    with pytest.raises(InvalidArgument) as e:
        Plan("p", VILLAGE, 2022, (PlanItem("a", "FREE_CLINIC", 1), PlanItem("b", "乱写", 2))).validate(())
    assert [v.field for v in e.value.violations] == ["items[1].type"]


def test_plan_item_due_label_name_and_progress() -> None:
    birthday = PlanItem("i1", "GROUP_BIRTHDAY", 1, month=2)
    lecture = PlanItem("i2", "HEALTH_LECTURE", 2, "健康人生大讲堂")
    assert item_due(2024, birthday) == date(2024, 2, 29) and item_due(2022, lecture) == date(2022, 12, 31)
    assert item_label(birthday) == "集体生日" and item_label(lecture) == "健康人生大讲堂"
    assert item_name("p1", "i1") == "plans/p1/items/i1" and item_name("p1", "") == ""
    plan = Plan("p1", VILLAGE, 2022, (birthday, lecture))
    assert plan.item("i2") is lecture and plan.item("nope") is None
    assert ItemProgress(lecture, ("a1", "a2")).fulfilled and not ItemProgress(lecture, ("a1",), ("a3",)).fulfilled


# ---------------------------------------------------------------- activities


def activity(**kw: object) -> Activity:
    base = Activity("a1", "FREE_CLINIC", "义诊", VILLAGE, date(2022, 5, 1), date(2022, 5, 1))
    return replace(base, **kw)  # type: ignore[arg-type]  # each test passes Activity fields by name


def test_a_cancelled_activity_is_not_held_afterwards() -> None:
    planned, cancelled = activity(), activity(status=ActivityStatus.CANCELLED)
    planned.check_change(activity(status=ActivityStatus.HELD))
    cancelled.check_change(activity(status=ActivityStatus.CANCELLED, title="改名"))
    with pytest.raises(FailedPrecondition) as e:
        cancelled.check_change(activity(status=ActivityStatus.HELD))
    assert e.value.reason == "ACTIVITY_CANCELLED"


def test_what_a_plan_link_depends_on_and_people_reached() -> None:
    a = activity(plan_id="p1", plan_item_id="i1")
    assert a.link_key == activity(plan_id="p1", plan_item_id="i1", title="改名", headcount=9).link_key
    for change in (
        {"type": "TRAINING"},
        {"start": date(2023, 1, 1)},
        {"site_id": "warm-1"},
        {"region": TOWN},
        {"plan_item_id": "i2"},
    ):
        assert activity(**{"plan_id": "p1", "plan_item_id": "i1", **change}).link_key != a.link_key, change
    assert activity(headcount=3, participant_ids=("p1", "p2", "p2", "p4", "p5")).reached == 4
    assert activity(headcount=30, participant_ids=("p1",)).reached == 30


def test_outputs_add_up_and_refuse_negatives() -> None:
    total = Outputs(1, 2, 3, 4, Money(500)) + Outputs(10, 20, 30, 40, Money(5000))
    assert total == Outputs(11, 22, 33, 44, Money(5500))
    assert [f for f, _ in Outputs(consultations=-1, care_money=Money(-1)).problems()] == [
        "outputs.consultations",
        "outputs.care_money",
    ]


# ---------------------------------------------------------------- visits


def test_booking_answers_move_a_pending_visit_once() -> None:
    v = Visit.record(
        id="v1",
        household_id="hh",
        region=VILLAGE,
        visitor_id="vol",
        visited_on=date(2022, 1, 1),
        amount=Money(50000),
        fund_id="f1",
    )
    booked = v.answered(BookingResult("v1", True, ledger_entry="funds/f1/ledgerEntries/9"))
    assert (booked.state, booked.booking_ref) == (VisitState.BOOKED, "funds/f1/ledgerEntries/9")
    assert booked.answered(BookingResult("v1", True, ledger_entry="funds/f1/ledgerEntries/9")) is booked
    with pytest.raises(FailedPrecondition):
        booked.answered(BookingResult("v1", False, reason="INSUFFICIENT_FUNDS"))
    rejected = v.answered(BookingResult("v1", False, reason="INSUFFICIENT_FUNDS"))
    assert (rejected.state, rejected.reject_code) == (VisitState.REJECTED, "INSUFFICIENT_FUNDS")
    assert rejected.reject_reason == "资金服务拒绝记账（未说明原因）"
    no_money = Visit.record(id="v2", household_id="hh", region=VILLAGE, visitor_id="vol", visited_on=date(2022, 1, 1))
    with pytest.raises(FailedPrecondition) as e:
        no_money.answered(BookingResult("v2", True))
    assert "无慰问金" in e.value.message
    with pytest.raises(InvalidArgument) as bad:
        Visit("v3", "", VILLAGE, "", date(2022, 1, 1), amount=Money(-5)).recorded()
    assert [x.field for x in bad.value.violations] == ["household_id", "visitor_id", "amount", "fund_id"]


# ---------------------------------------------------------------- awards


def test_a_nomination_decided_by_an_association() -> None:
    assert normalize_award_kind("幸福好家庭") == normalize_award_kind("幸福家庭") == "HAPPY_FAMILY"
    assert normalize_award_kind(" health_star ") == "HEALTH_STAR"
    n = Nomination("HAPPY_FAMILY", "hh-1", TOWN, 2022, AwardDecision.AWARDED)
    a = n.decided("w1", date(2022, 12, 1))
    assert (a.level, a.nominee_region, a.decided_on, a.label) == (
        RegionLevel.TOWNSHIP,
        TOWN,
        date(2022, 12, 1),
        "幸福家庭",
    )
    assert (
        replace(n, nominee_region=VILLAGE, title="十佳幸福家庭").decided("w2", date(2022, 12, 1)).label
        == "十佳幸福家庭"
    )
    with pytest.raises(InvalidArgument) as e:
        Nomination("", "", TOWN, 1800, AwardDecision.NOT_AWARDED).decided("w3", date(2022, 12, 1))
    assert {v.field for v in e.value.violations} == {"kind", "nominee_id", "year"}


# ---------------------------------------------------------------- reporting (targets and windows)


def test_a_plugins_target_is_normalised() -> None:
    t = Target.from_plugin(CadenceTarget("k", "SCHOOL", "健康人生大讲堂", 2, "SEMESTER", "学校每学期两次讲座"), "p 1.0")
    assert (t.scope, t.type, t.per, t.provenance) == ("SCHOOL", "HEALTH_LECTURE", "SEMESTER", "p 1.0")
    assert Target("k", "暖心家园", "走访", 1, "quarter").scope == "WARM_HOME"
    assert Target("k", "school", "ANY", 1, "year").scope == "SCHOOL"
    assert [w.code for w in windows("QUARTER", Period.half(2022, 2))] == ["2022-Q3", "2022-Q4"]
    assert [w.code for w in windows("MONTH", Period.quarter(2022, 1))] == ["2022-01", "2022-02", "2022-03"]
    with pytest.raises(InvalidArgument) as e:
        windows("WEEK", Period.year_of(2022))
    assert e.value.violations[0].field == "per"


def test_new_target_kinds_are_normalised() -> None:
    t = Target.from_plugin(
        CadenceTarget("k", "ADMIN_VILLAGE", "SITE", 1, "YEAR", "每个行政村建有会员之家", site_kind="MEMBER_HOME"),
        "yuanling 0.1.0",
    )
    assert (t.scope, t.type, t.site_kind, t.award_kind, t.level) == (
        "ADMIN_VILLAGE",
        "SITE",
        "MEMBER_HOME",
        "",
        RegionLevel.VILLAGE,
    )
    assert Target("k", "计生特殊家庭", "走访", 3, "YEAR").scope == "SPECIAL_FAMILY"
    assert Target("k", "行政村", "阵地覆盖", 1, "YEAR", site_kind="会员之家").type == "SITE"
    award = Target("k", "TOWNSHIP", "HAPPY_FAMILY_AWARD", 1, "YEAR", award_kind="幸福好家庭")
    assert award.award_kind == "HAPPY_FAMILY" and award.counts_awards and award.level is RegionLevel.TOWNSHIP
    assert Target("k", "VILLAGE", "评选表彰", 1, "YEAR").counts_awards
    assert not Target("k", "SPECIAL_FAMILY", "CARE_VISIT", 3, "YEAR").counts_awards


# ---------------------------------------------------------------- what a request names (scope.Named)


def test_named_resources_unknown_mismatched_and_out_of_scope() -> None:
    from jsx_events.scope import Named, place
    from jsxcore.errors import PermissionDenied
    from jsxcore.testing.helpers import who

    yuanling = who("clerk-yl", "431222", "county_clerk")
    hongjiang_village = RegionCode.parse("431281101002")
    assert place(hongjiang_village) == "洪江市黔城镇玉皇阁社区" and place(VILLAGE) == "431281101201"

    ok = Named(yuanling)
    ok.placed("visit.household", "家庭户 households/a", (RegionCode.parse("431222102204"),))
    ok.placed("visit.visitor", "志愿者 volunteers/v", (hongjiang_village, RegionCode.parse("431222102204")))
    ok.check()  # a volunteer serving in both counties may be named by either

    denied = Named(yuanling)
    denied.unknown("visit.site", "阵地 sites/x 不存在")
    denied.placed("visit.household", "家庭户 households/hj", (hongjiang_village,))
    with pytest.raises(PermissionDenied) as e:
        denied.check()  # scope first, whatever else is wrong
    assert e.value.reason == "OUT_OF_REGION"
    assert e.value.metadata == {
        "field": "visit.household",
        "resource": "家庭户 households/hj",
        "region": "431281101002",
        "caller_region": "431222000000",
    }
    assert "洪江市黔城镇玉皇阁社区" in e.value.message and "沅陵县" in e.value.message

    unknown = Named(yuanling)
    unknown.unknown("visit.household", "家庭户 households/x 不存在")
    unknown.mismatch("visit.visitor", "走访人格式不对")
    with pytest.raises(InvalidArgument) as bad:
        unknown.check()
    assert bad.value.reason == "UNKNOWN_REFERENCE"
    assert [v.field for v in bad.value.violations] == ["visit.household", "visit.visitor"]

    mismatch = Named(None)  # the service itself / its operator: no scope, same existence checks
    mismatch.placed("visit.household", "家庭户 households/hj", (hongjiang_village,))
    mismatch.mismatch("visit.region", "与该户所在村不一致")
    with pytest.raises(InvalidArgument) as bad:
        mismatch.check()
    assert bad.value.reason == "INVALID_REFERENCE"
