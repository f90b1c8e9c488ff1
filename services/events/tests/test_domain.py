"""Pure domain rules: cadence compliance, visit states, summaries."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from jsx_events.activities.domain import Activity, ActivityStatus, Outputs
from jsx_events.awards.domain import Award, AwardDecision
from jsx_events.catalog.domain import normalize_type
from jsx_events.plans.domain import Plan, PlanItem
from jsx_events.projections.domain import Family, Site
from jsx_events.reporting.domain import (
    Compliance,
    Facts,
    Target,
    approx,
    approx_yuan,
    compute_compliance,
    summarize,
    windows,
)
from jsx_events.visits.domain import Visit, VisitState
from jsxcore.errors import FailedPrecondition, InvalidArgument
from jsxcore.values import Money, Period, RegionCode, RegionLevel

COUNTY = RegionCode.parse("431281")
VILLAGE_A = RegionCode.parse("431281101201")
VILLAGE_B = RegionCode.parse("431281101202")
HOME = Site("site-x", "WARM_HOME", "暖心家园X", VILLAGE_A)
QUARTERLY_VISIT = Target("warm_home_visit", "WARM_HOME", "CARE_VISIT", 1, "QUARTER", "暖心家园季度有慰问")
MONTHLY_ACT = Target("warm_home_monthly", "WARM_HOME", "ANY", 1, "MONTH", "暖心家园每月有活动")


def visit(day: date, site: str = "site-x", hh: str = "hh-1") -> Visit:
    return Visit.record(
        id=f"v-{day}-{hh}", household_id=hh, region=VILLAGE_A, visitor_id="vol-1", visited_on=day, site_id=site
    )


def held(type_: str, day: date, *, site: str = "", region: RegionCode = VILLAGE_A, n: int = 10, **kw) -> Activity:
    return Activity(
        id=f"a-{type_}-{day}-{site}-{region}",
        type=type_,
        title="t",
        region=region,
        start=day,
        end=day,
        status=ActivityStatus.HELD,
        site_id=site,
        headcount=n,
        **kw,
    )


def test_quarter_without_visits_is_short_with_reason() -> None:
    report = compute_compliance([QUARTERLY_VISIT], COUNTY, Period.quarter(2022, 3), Facts(sites=[HOME]))
    [item] = report.items
    assert item.status is Compliance.SHORT
    assert (item.required, item.actual) == (1, 0)
    assert item.reason == "2022年第3季度 暖心家园X 无走访慰问记录（要求每季度至少1次）"


def test_quarter_with_visit_is_met_and_other_sites_visits_do_not_count() -> None:
    other = Site("site-y", "WARM_HOME", "暖心家园Y", VILLAGE_B)
    facts = Facts(sites=[HOME, other], visits=[visit(date(2022, 8, 3)), visit(date(2022, 6, 30))])
    report = compute_compliance([QUARTERLY_VISIT], COUNTY, Period.quarter(2022, 3), facts)
    by_site = {i.subject_id: i for i in report.items}
    assert by_site["site-x"].status is Compliance.MET and by_site["site-x"].actual == 1
    assert by_site["site-y"].status is Compliance.SHORT
    assert [i.subject_name for i in report.shortfalls] == ["暖心家园Y"]


def test_monthly_activity_per_month_of_quarter() -> None:
    facts = Facts(
        sites=[HOME],
        activities=[
            held("GROUP_BIRTHDAY", date(2022, 7, 9), site="site-x"),
            held("FREE_CLINIC", date(2022, 9, 1), site="site-x"),
        ],
    )
    report = compute_compliance([MONTHLY_ACT], COUNTY, Period.quarter(2022, 3), facts)
    assert [(i.window, i.status) for i in report.items] == [
        ("2022年7月", Compliance.MET),
        ("2022年8月", Compliance.SHORT),
        ("2022年9月", Compliance.MET),
    ]


def test_planned_activity_does_not_count() -> None:
    act = held("FREE_CLINIC", date(2022, 7, 9), site="site-x")
    planned = Activity(**{**act.__dict__, "status": ActivityStatus.PLANNED})
    report = compute_compliance([MONTHLY_ACT], COUNTY, Period.month(2022, 7), Facts(sites=[HOME], activities=[planned]))
    assert report.items[0].status is Compliance.SHORT


def test_village_lectures_per_year_counted_with_shortfall_and_due() -> None:
    target = Target("yl_lecture", "VILLAGE", normalize_type("健康人生大讲堂"), 2, "YEAR")
    facts = Facts(
        families=[Family("hh-a", VILLAGE_A), Family("hh-b", VILLAGE_B)],
        activities=[
            held("HEALTH_LECTURE", date(2022, 3, 1)),
            held("HEALTH_LECTURE", date(2022, 9, 1)),
            held("HEALTH_LECTURE", date(2022, 4, 1), region=VILLAGE_B),
        ],
        region_names={VILLAGE_B.code: "茶溪村"},
    )
    full = compute_compliance([target], COUNTY, Period.year_of(2022), facts)
    assert [(i.subject_id, i.actual, i.status) for i in full.items] == [
        (VILLAGE_A.code, 2, Compliance.MET),
        (VILLAGE_B.code, 1, Compliance.SHORT),
    ]
    assert "茶溪村 健康大讲堂1次，少于要求（要求每年至少2次），差1次" in full.items[1].reason
    # Asked in the middle of the year: the year is still running, so not yet a shortfall.
    mid = compute_compliance([target], COUNTY, Period.quarter(2022, 2), facts)
    assert mid.items[1].status is Compliance.DUE and "还需1次" in mid.items[1].reason


def test_semester_windows_and_plan_and_pairing() -> None:
    assert [w.label for w in windows("SEMESTER", Period.year_of(2022))] == [
        "2022年上半年（春季学期）",
        "2022年下半年（秋季学期）",
    ]
    plan_t = Target("plan", "WARM_HOME", "PLAN", 1, "YEAR")
    pair_t = Target("pair", "WARM_HOME", "PAIRING", 1, "YEAR")
    fams = [
        Family("hh-1", VILLAGE_A, True, "site-x", ("vol-1",)),
        Family("hh-2", VILLAGE_A, True, "site-x"),
        Family("hh-3", VILLAGE_A, False, "site-x"),
    ]
    plan = Plan("p1", VILLAGE_A, 2022, (PlanItem("i1", "GROUP_BIRTHDAY", 1),), site_id="site-x")
    done = held("GROUP_BIRTHDAY", date(2022, 5, 1), site="site-x", plan_id="p1", plan_item_id="i1")
    report = compute_compliance(
        [plan_t, pair_t],
        COUNTY,
        Period.year_of(2022),
        Facts(sites=[HOME], families=fams, plans=[plan], plan_activities=[done]),
    )
    plan_item, pair_item = report.items
    assert plan_item.status is Compliance.MET and plan_item.reason == "暖心家园X 2022年度计划1项均已完成"
    assert pair_item.status is Compliance.SHORT and pair_item.missing_ids == ("hh-2",)
    assert "1户计生特殊家庭未结对志愿者" in pair_item.reason


def test_award_selection_counts_decisions_of_the_unit() -> None:
    t = Target("xf", "TOWNSHIP", "评选表彰", 1, "YEAR")
    town = RegionCode.parse("431281101")
    award = Award(
        "w1", "HAPPY_FAMILY", "hh-1", town, RegionLevel.TOWNSHIP, 2022, AwardDecision.AWARDED, date(2022, 12, 1)
    )
    facts = Facts(families=[Family("hh-1", VILLAGE_A)], awards=[award])
    assert compute_compliance([t], COUNTY, Period.year_of(2022), facts).items[0].status is Compliance.MET
    assert compute_compliance([t], COUNTY, Period.year_of(2023), facts).items[0].status is Compliance.SHORT


def test_visit_states() -> None:
    with pytest.raises(InvalidArgument) as e:
        Visit.record(
            id="v",
            household_id="hh",
            region=VILLAGE_A,
            visitor_id="vol",
            visited_on=date(2022, 1, 1),
            amount=Money(50000),
        )
    assert e.value.violations[0].field == "fund_id"
    v = Visit.record(
        id="v",
        household_id="hh",
        region=VILLAGE_A,
        visitor_id="vol",
        visited_on=date(2022, 1, 1),
        amount=Money(50000),
        fund_id="f1",
    )
    assert v.state is VisitState.PENDING
    booked = v.booked("entry-1")
    assert booked.booked("entry-1") is booked
    with pytest.raises(FailedPrecondition):
        booked.rejected("余额不足")
    r = v.rejected("资金余额不足")
    assert r.state is VisitState.REJECTED and r.reject_reason == "资金余额不足"
    assert (
        Visit.record(id="w", household_id="hh", region=VILLAGE_A, visitor_id="vol", visited_on=date(2022, 1, 1)).state
        is VisitState.NO_MONEY
    )


def test_activity_validation_lists_fields() -> None:
    a = Activity(
        id="a",
        type="BOGUS",
        title="",
        region=VILLAGE_A,
        start=date(2022, 5, 29),
        end=date(2022, 5, 1),
        outputs=Outputs(materials=-1),
    )
    with pytest.raises(InvalidArgument) as e:
        a.validate()
    assert {v.field for v in e.value.violations} == {"type", "title", "end_date", "outputs.materials"}
    a2 = Activity(
        id="a", type="DRAGON_BOAT", title="端午", region=VILLAGE_A, start=date(2022, 6, 3), end=date(2022, 6, 3)
    )
    a2.validate(known_types={"DRAGON_BOAT"})


def test_summary_shape() -> None:
    vis = [
        Visit.record(
            id=f"v{i}",
            household_id=f"hh-{i}",
            region=VILLAGE_A,
            visitor_id="vol",
            visited_on=date(2022, 5, 29),
            amount=Money(300000),
            fund_id="f",
        ).booked(f"e{i}")
        for i in range(67)
    ]
    vis.append(
        Visit.record(
            id="vp",
            household_id="hh-x",
            region=VILLAGE_A,
            visitor_id="vol",
            visited_on=date(2022, 5, 30),
            amount=Money(100000),
            fund_id="f",
        )
    )
    acts = [
        held(
            "MEMBER_DAY",
            date(2022, 5, 29),
            n=1000,
            outputs=Outputs(materials=12050, consultations=2637, clinic_visits=768, contraceptive_boxes=812),
        )
    ]
    s = summarize(COUNTY, Period.year_of(2022), acts, vis)
    assert s.care_services == 68 and s.care_money_paid == Money(20100000) and s.visits_pending == 1
    text = s.text()
    assert "开展各类慰问服务 68 场次，慰问人数 68 人，发放慰问金 20 余万元" in text
    assert "发放宣传资料 1.2 万余份" in text and "接受咨询 2600 余人次" in text and "免费义诊 760 余人次" in text
    assert approx(1043) == "1000 余" and approx_yuan(Money(20530000)) == "20 余万元"


def test_plan_link_problems_and_progress() -> None:
    from jsx_events.activities.domain import plan_link_problems
    from jsx_events.reporting.domain import plan_progress

    lecture, anything = PlanItem("i1", "HEALTH_LECTURE", 2), PlanItem("i2", "ANY", 1)
    site_plan = Plan("p1", VILLAGE_A, 2022, (lecture, anything), site_id="site-x")
    act = held("HEALTH_LECTURE", date(2022, 5, 1), site="site-x", plan_id="p1", plan_item_id="i1")
    assert plan_link_problems(act, site_plan, lecture, COUNTY, "plans/p1/items/i1") == []
    assert plan_link_problems(held("TRAINING", date(2022, 5, 1), site="site-x"), site_plan, anything, None, "r") == []
    [(f, msg)] = plan_link_problems(held("HEALTH_LECTURE", date(2022, 5, 1)), site_plan, lecture, None, "r")
    assert f == "activity.plan_item" and "阵地 sites/site-x" in msg
    # an enclosing (county) association's plan takes village activities; a village plan does not take another village's
    county_plan = Plan("p2", COUNTY, 2022, (lecture,))
    assert plan_link_problems(act, county_plan, lecture, COUNTY, "r") == []
    [(_, msg)] = plan_link_problems(
        held("HEALTH_LECTURE", date(2022, 5, 1), region=VILLAGE_B),
        Plan("p3", VILLAGE_A, 2022, (lecture,)),
        lecture,
        COUNTY,
        "r",
    )
    assert "不在其范围内" in msg
    assert "不存在" in plan_link_problems(act, None, None, None, "plans/x/items/y")[0][1]

    acts = [
        act,
        held("HEALTH_LECTURE", date(2022, 3, 1), site="site-x", plan_id="p1", plan_item_id="i1"),
        Activity(
            "a-plan", "FREE_CLINIC", "t", VILLAGE_A, date(2022, 9, 1), date(2022, 9, 1), plan_id="p1", plan_item_id="i2"
        ),
        Activity(
            "a-off",
            "FREE_CLINIC",
            "t",
            VILLAGE_A,
            date(2022, 9, 1),
            date(2022, 9, 1),
            ActivityStatus.CANCELLED,
            plan_id="p1",
            plan_item_id="i2",
        ),
    ]
    g1, g2 = plan_progress(site_plan, acts)
    assert g1.fulfilled and g1.held_ids == (acts[1].id, acts[0].id)
    assert not g2.fulfilled and (g2.held_ids, g2.scheduled_ids) == ((), ("a-plan",))


def test_half_year_label_and_summary_window() -> None:
    from jsx_events.reporting.domain import period_code, period_label

    h2 = Period.half(2022, 2)
    assert (period_label(h2), period_code(h2), period_code(Period.quarter(2022, 3))) == (
        "2022年下半年",
        "2022-H2",
        "2022-Q3",
    )
    s = summarize(COUNTY, h2, [held("FREE_CLINIC", date(2022, 6, 30)), held("FREE_CLINIC", date(2022, 7, 1))], [])
    assert s.activities_held == 1 and s.text().startswith("2022年下半年共开展各类活动 1 场次")


def test_plan_target_needs_the_items_due_by_the_period_end_done() -> None:
    """年度有计划: a plan counts only when its items due so far are fulfilled by held, linked activities."""
    plan_t = Target("plan", "WARM_HOME", "PLAN", 1, "YEAR", "暖心家园年度有计划")
    lecture = PlanItem("i1", "HEALTH_LECTURE", 2, "健康人生大讲堂", month=6)
    clinic = PlanItem("i2", "FREE_CLINIC", 1, month=3)
    birthday = PlanItem("i3", "GROUP_BIRTHDAY", 1, month=11)
    plan = Plan("p1", VILLAGE_A, 2022, (lecture, clinic, birthday), site_id="site-x")
    l1 = held("HEALTH_LECTURE", date(2022, 4, 8), site="site-x", plan_id="p1", plan_item_id="i1")
    l2 = held("HEALTH_LECTURE", date(2022, 8, 8), site="site-x", plan_id="p1", plan_item_id="i1")
    unlinked = held("FREE_CLINIC", date(2022, 3, 8), site="site-x")  # not linked: does not fulfil i2
    facts = Facts(sites=[HOME], plans=[plan], activities=[unlinked], plan_activities=[l1, l2])

    def plan_finding(period: Period, today: date, f: Facts = facts):
        [item] = compute_compliance([plan_t], COUNTY, period, f, today=today).items
        return item

    # Q1, asked in April: the March clinic is overdue (SHORT, named); the rest not yet due.
    q1 = plan_finding(Period.quarter(2022, 1), date(2022, 4, 2))
    assert q1.status is Compliance.SHORT and q1.missing_ids == ("plans/p1/items/i2",)
    assert q1.reason.startswith("暖心家园X 2022年度计划中 1 项未完成：义诊（计划1次，已开展0次，3月底前）")
    assert "plan_item" in q1.reason
    # Q1 with the clinic done and linked: nothing is due yet that is open, so DUE (not MET: items remain).
    clinic_done = held("FREE_CLINIC", date(2022, 3, 20), site="site-x", plan_id="p1", plan_item_id="i2")
    with_clinic = Facts(sites=[HOME], plans=[plan], plan_activities=[l1, l2, clinic_done])
    q1_ok = plan_finding(Period.quarter(2022, 1), date(2022, 4, 2), with_clinic)
    assert q1_ok.status is Compliance.DUE and (q1_ok.required, q1_ok.actual) == (3, 1)
    assert "尚有2项未到期" in q1_ok.reason and "健康人生大讲堂（计划2次，已开展0次，6月底前）" in q1_ok.reason
    # H1 seen later: only one lecture was held by June 30 (the August one is after the period end).
    h1 = plan_finding(Period.half(2022, 1), date(2023, 1, 5), with_clinic)
    assert h1.status is Compliance.SHORT and h1.missing_ids == ("plans/p1/items/i1",)
    assert "健康人生大讲堂（计划2次，已开展1次，6月底前）" in h1.reason
    # The whole year: the August lecture came after the item's deadline (6月底前), so it does not
    # fulfil it (issue 17); the reason says it was held late.
    late = plan_finding(Period.year_of(2022), date(2023, 1, 5), with_clinic)
    assert late.status is Compliance.SHORT and late.missing_ids == ("plans/p1/items/i1", "plans/p1/items/i3")
    assert "健康人生大讲堂（计划2次，已开展1次，6月底前；另有1次在期限后开展，不计入）" in late.reason
    # With a second lecture held in June, the whole year, finished: the November birthday was never held.
    l3 = held("HEALTH_LECTURE", date(2022, 6, 20), site="site-x", plan_id="p1", plan_item_id="i1")
    in_time = Facts(sites=[HOME], plans=[plan], plan_activities=[l1, l2, l3, clinic_done])
    year = plan_finding(Period.year_of(2022), date(2023, 1, 5), in_time)
    assert year.status is Compliance.SHORT and year.missing_ids == ("plans/p1/items/i3",)
    assert "2022年度计划中 1 项未完成：集体生日（计划1次，已开展0次，11月底前）" in year.reason
    # A held birthday linked to it: MET. A cancelled or still planned one would not count.
    bday = held("GROUP_BIRTHDAY", date(2022, 11, 3), site="site-x", plan_id="p1", plan_item_id="i3")
    planned_bday = Activity(**{**bday.__dict__, "id": "b2", "status": ActivityStatus.PLANNED})
    all_done = Facts(sites=[HOME], plans=[plan], plan_activities=[l1, l2, l3, clinic_done, bday])
    assert plan_finding(Period.year_of(2022), date(2023, 1, 5), all_done).status is Compliance.MET
    not_held = Facts(sites=[HOME], plans=[plan], plan_activities=[l1, l2, l3, clinic_done, planned_bday])
    assert plan_finding(Period.year_of(2022), date(2023, 1, 5), not_held).status is Compliance.SHORT
    # No plan at all: the old rule and wording stay.
    none = plan_finding(Period.year_of(2022), date(2023, 1, 5), Facts(sites=[HOME]))
    assert none.status is Compliance.SHORT and none.reason == "2022年 暖心家园X 无年度计划记录（要求每年至少1次）"
    assert plan_finding(Period.quarter(2022, 1), date(2022, 4, 2), Facts(sites=[HOME])).status is Compliance.DUE


# ---------------------------------------------------------------- cadence counts what happened (issue 13/17)


def money_visit(day: date, hh: str, state: VisitState) -> Visit:
    v = Visit.record(
        id=f"m-{day}-{hh}-{state}",
        household_id=hh,
        region=VILLAGE_A,
        visitor_id="volunteers/v1",
        visited_on=day,
        amount=Money(20000),
        fund_id="f1",
    )
    return {
        VisitState.PENDING: v,
        VisitState.BOOKED: v.booked("funds/f1/ledgerEntries/1"),
        VisitState.REJECTED: v.rejected("余额不足", "INSUFFICIENT_FUNDS"),
    }[state]


def test_only_visits_that_happened_count() -> None:
    """Booked visits and visits without 慰问金 count; pending ones once booked; refused ones never."""
    assert [money_visit(date(2022, 8, 1), "hh-1", s).counts for s in (VisitState.BOOKED, VisitState.PENDING)] == [
        True,
        False,
    ]
    assert not money_visit(date(2022, 8, 1), "hh-1", VisitState.REJECTED).counts
    assert visit(date(2022, 8, 1)).counts  # no money: nothing to book
    facts = Facts(
        sites=[HOME],
        visits=[
            money_visit(date(2022, 8, 1), "hh-1", VisitState.REJECTED),
            money_visit(date(2022, 8, 2), "hh-1", VisitState.PENDING),
        ],
    )
    [item] = compute_compliance([QUARTERLY_VISIT], COUNTY, Period.quarter(2022, 3), facts).items
    assert item.status is Compliance.SHORT and item.actual == 0
    assert item.reason == (
        "2022年第3季度 暖心家园X 无走访慰问记录（要求每季度至少1次）；"
        "另有1次慰问金待资金服务记账，记账后计入；1次慰问金被资金服务拒绝，不计入"
    )
    booked = Facts(sites=[HOME], visits=[money_visit(date(2022, 8, 2), "hh-1", VisitState.BOOKED)])
    [ok] = compute_compliance([QUARTERLY_VISIT], COUNTY, Period.quarter(2022, 3), booked).items
    assert ok.status is Compliance.MET and ok.actual == 1


FAMILY_VISITS = Target("hj", "SPECIAL_FAMILY", "CARE_VISIT", 3, "YEAR", "对计生特殊家庭开展了不少于 3 次的走访慰问服务")


def test_visits_per_special_family_named_by_place() -> None:
    fams = [Family("hh-1", VILLAGE_A, True), Family("hh-2", VILLAGE_B, True), Family("hh-3", VILLAGE_A, False)]
    visits = [
        visit(date(2022, 3, 1), site="", hh="hh-1"),
        money_visit(date(2022, 6, 1), "hh-1", VisitState.BOOKED),
        money_visit(date(2022, 9, 1), "hh-1", VisitState.REJECTED),
        visit(date(2022, 10, 1), site="", hh="hh-2"),
        visit(date(2022, 11, 1), site="", hh="hh-2"),
        visit(date(2022, 12, 1), site="", hh="hh-2"),
        visit(date(2022, 5, 1), site="", hh="hh-3"),  # not a special family: no finding
    ]
    facts = Facts(families=fams, visits=visits, region_names={VILLAGE_A.code: "洪江市黔城镇甲村"})
    report = compute_compliance([FAMILY_VISITS], COUNTY, Period.year_of(2022), facts, today=date(2023, 1, 5))
    by = {i.subject_id: i for i in report.items}
    assert set(by) == {"hh-1", "hh-2"}
    short = by["hh-1"]
    assert (short.status, short.required, short.actual, short.missing_ids) == (Compliance.SHORT, 3, 2, ("hh-1",))
    assert short.reason == (
        "2022年 洪江市黔城镇甲村 计生特殊家庭 households/hh-1 走访慰问2次，少于要求"
        "（要求每年至少3次：对计生特殊家庭开展了不少于 3 次的走访慰问服务），差1次；1次慰问金被资金服务拒绝，不计入"
    )
    assert by["hh-2"].status is Compliance.MET and by["hh-2"].subject_region == VILLAGE_B
    # Mid-year the year is still running: DUE, with what is still needed.
    mid = compute_compliance([FAMILY_VISITS], COUNTY, Period.year_of(2022), facts, today=date(2022, 7, 1))
    assert {i.subject_id: i.status for i in mid.items} == {"hh-1": Compliance.DUE, "hh-2": Compliance.DUE}
    assert "还需1次" in next(i.reason for i in mid.items if i.subject_id == "hh-1")


def test_a_site_in_every_administrative_village() -> None:
    """会员之家 in every 行政村: the registry's villages without its communities, plus any the projection knows."""
    from jsx_events.reporting.domain import RegionUnit, is_community

    assert is_community("麻溪铺社区居委会") and is_community("城东居委会") and not is_community("仰溪铺村村委会")
    county = RegionCode.parse("431222")
    v1, v2, comm = (RegionCode.parse(c) for c in ("431222102204", "431222102205", "431222102001"))
    units = [
        RegionUnit(v1, "沅陵县麻溪铺镇仰溪铺村"),
        RegionUnit(v2, "沅陵县麻溪铺镇李家村"),
        RegionUnit(comm, "社区", True),
    ]
    t = Target("yl", "ADMIN_VILLAGE", "SITE", 1, "YEAR", "在全县 369 个行政村建立“会员之家”", site_kind="会员之家")
    assert t.site_kind == "MEMBER_HOME" and t.level is RegionLevel.VILLAGE
    homes = [
        Site("mh-1", "MEMBER_HOME", "会员之家（mh-1）", v1, opened_on=date(2021, 5, 1)),
        Site("mh-2", "MEMBER_HOME", "会员之家（mh-2）", v2, closed_on=date(2022, 6, 30)),  # closed mid-year
        Site("wh", "WARM_HOME", "暖心家园（wh）", v2),  # another kind
    ]
    facts = Facts(sites=homes, units=units, region_names={u.code.code: u.name for u in units})
    report = compute_compliance([t], county, Period.year_of(2022), facts, today=date(2023, 1, 5))
    by = {i.subject_id: i for i in report.items}
    assert set(by) == {v1.code, v2.code}  # the community is not a 行政村
    assert by[v1.code].status is Compliance.MET
    assert (
        by[v1.code].reason
        == "2022年 沅陵县麻溪铺镇仰溪铺村 已建会员之家1个，达到要求（在全县 369 个行政村建立“会员之家”）"
    )
    assert by[v2.code].status is Compliance.SHORT
    assert by[v2.code].reason == "2022年 沅陵县麻溪铺镇李家村 未建会员之家（在全县 369 个行政村建立“会员之家”）"
    # Asked in May: the closed one was still open then, so both villages have theirs.
    may = compute_compliance([t], county, Period.year_of(2022), facts, today=date(2022, 5, 31))
    assert {i.status for i in may.items} == {Compliance.MET}
    # VILLAGE scope takes the communities too.
    every = compute_compliance([replace(t, scope="VILLAGE")], county, Period.year_of(2022), facts)
    assert {i.subject_id for i in every.items} == {v1.code, v2.code, comm.code}


def test_award_targets_count_the_awarded_selections_of_their_kind() -> None:
    town = RegionCode.parse("431222102")
    t = Target(
        "yl.happy",
        "VILLAGE",
        "HAPPY_FAMILY_AWARD",
        1,
        "YEAR",
        "各村（居、社区）计生协每年组织一次“幸福好家庭”评选表彰活动",
        award_kind="幸福好家庭",
    )
    assert t.award_kind == "HAPPY_FAMILY" and t.counts_awards

    def award(kind: str, region: RegionCode, year: int, decided: date, decision=AwardDecision.AWARDED) -> Award:
        return Award(
            f"w-{kind}-{region}-{decided}", kind, "households/hh-1", region, region.level, year, decision, decided
        )

    facts = Facts(
        families=[Family("hh-1", VILLAGE_A), Family("hh-2", VILLAGE_B)],
        awards=[
            award("HAPPY_FAMILY", VILLAGE_A, 2022, date(2023, 1, 10)),  # 2022's selection, decided in January
            award("HEALTH_STAR", VILLAGE_B, 2022, date(2022, 12, 1)),  # another kind
            award("HAPPY_FAMILY", VILLAGE_B, 2022, date(2022, 12, 1), AwardDecision.NOT_AWARDED),  # nobody awarded
            award("HAPPY_FAMILY", town, 2022, date(2022, 12, 1)),  # the township's, not a village's
        ],
    )
    report = compute_compliance([t], COUNTY, Period.year_of(2022), facts, today=date(2023, 2, 1))
    by = {i.subject_id: i for i in report.items}
    assert (by[VILLAGE_A.code].status, by[VILLAGE_A.code].actual) == (Compliance.MET, 1)
    assert by[VILLAGE_A.code].reason.endswith("“幸福家庭”评选表彰1次，达到要求（要求每年至少1次）")
    assert (by[VILLAGE_B.code].status, by[VILLAGE_B.code].actual) == (Compliance.SHORT, 0)
    # Asked before the January decision, 2022 is not met yet.
    early = compute_compliance([t], COUNTY, Period.year_of(2022), facts, today=date(2022, 12, 31))
    assert {i.subject_id: i.actual for i in early.items}[VILLAGE_A.code] == 0
    # A "幸福好家庭"评选表彰 activity counts as the selection too.
    act = held("HAPPY_FAMILY_AWARD", date(2022, 11, 1), region=VILLAGE_B)
    with_act = replace(facts, activities=[act])
    assert {i.subject_id: i.status for i in compute_compliance([t], COUNTY, Period.year_of(2022), with_act).items}[
        VILLAGE_B.code
    ] is Compliance.MET


def test_plan_item_deadlines_keep_late_activities_apart() -> None:
    from jsx_events.reporting.domain import plan_progress

    plan = Plan("p", VILLAGE_A, 2022, (PlanItem("june", "HEALTH_LECTURE", 1, month=6), PlanItem("year", "ANY", 1)))
    sept = held("HEALTH_LECTURE", date(2022, 9, 2), plan_id="p", plan_item_id="june")
    june30 = held("HEALTH_LECTURE", date(2022, 6, 30), plan_id="p", plan_item_id="june", site="s")
    dec = held("FREE_CLINIC", date(2022, 12, 31), plan_id="p", plan_item_id="year")
    june, year = plan_progress(plan, [sept, dec])
    assert (june.held_ids, june.late_ids, june.fulfilled) == ((), (sept.id,), False)
    assert year.fulfilled  # a whole-year item is due on 31 December
    june, _ = plan_progress(plan, [sept, june30, dec])
    assert (june.held_ids, june.late_ids, june.fulfilled) == ((june30.id,), (sept.id,), True)
