"""年度有计划 (PLAN cadence target) judged by the plan's items, and ``jsx events plan …``:
service layer and gRPC on SQLite and PostgreSQL, the CLI against a running service."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import date

import grpc
import pytest

from jsx.common.v1 import common_pb2 as cpb
from jsx.events.v1 import events_service_pb2 as pb
from jsx.members.v1 import events_pb2 as mpb
from jsx.members.v1 import members_pb2 as mmpb
from jsx_events.activities.domain import Activity, ActivityStatus
from jsx_events.adapters.db import migrate
from jsx_events.composition import EventsService
from jsx_events.plans.domain import Plan, PlanItem
from jsx_events.reporting.domain import Compliance, ComplianceItem, ComplianceReport
from jsx_events.reporting.wire import compliance_pb
from jsxcore.db import create_engine, session_factory
from jsxcore.errors import InvalidArgument, NotFound
from jsxcore.hookspecs import CadenceTarget, PluginMeta, hookimpl
from jsxcore.outbox import EventMeta
from jsxcore.plugins import PluginHost
from jsxcore.runtime.errors import error_details
from jsxcore.testing.helpers import rid, who
from jsxcore.values import Period, RegionCode

COUNTY = RegionCode.parse("431281")
VILLAGE = RegionCode.parse("431281101201")
AFTER_2022 = date(2023, 1, 5)
CLERK = who("clerk-1", "431281", "county_clerk")


class PlanTargetPlugin:
    JSX_PLUGIN = PluginMeta(name="test_plan", version="0.2.0", regions=("431281",), description="测试")

    @hookimpl
    def jsx_cadence_targets(self, region: RegionCode, year: int) -> tuple[CadenceTarget, ...]:
        return (
            CadenceTarget("WARM_HOME_PLAN", "WARM_HOME", "PLAN", 1, "YEAR", "暖心家园年度有计划"),
            CadenceTarget("WARM_HOME_QUARTERLY_VISIT", "WARM_HOME", "CARE_VISIT", 1, "QUARTER", "暖心家园季度有慰问"),
        )


@pytest.fixture
async def svc(db_url: str):
    await asyncio.to_thread(migrate, db_url)
    engine = create_engine(db_url)
    host = PluginHost()
    host.register(PlanTargetPlugin())
    yield EventsService.build(session_factory(engine), host)
    await engine.dispose()


async def open_warm_home(svc: EventsService, site: str = "warm-1") -> None:
    async with svc.sessions() as s, s.begin():
        await svc.apply_member_event(
            s,
            mpb.SiteOpened(
                site=f"sites/{site}", kind=mmpb.SITE_KIND_WARM_HOME, village=cpb.RegionCode(code=VILLAGE.code)
            ),
            EventMeta(str(uuid.uuid4()), "s", "t", 1, 1, None),
        )


def held(item: str, day: date, type_: str = "HEALTH_LECTURE", site: str = "warm-1") -> Activity:
    plan_id, _, item_id = item.removeprefix("plans/").partition("/items/")
    return Activity(
        id=str(uuid.uuid4()),
        type=type_,
        title="活动",
        region=VILLAGE,
        start=day,
        end=day,
        status=ActivityStatus.HELD,
        site_id=site,
        headcount=30,
        plan_id=plan_id,
        plan_item_id=item_id,
    )


def plan_finding(report: ComplianceReport, site: str = "warm-1") -> ComplianceItem:
    [item] = [i for i in report.items if i.target_key == "WARM_HOME_PLAN" and i.subject_id == site]
    return item


async def test_plan_target_met_only_when_due_items_are_fulfilled(svc: EventsService) -> None:
    await open_warm_home(svc)
    await open_warm_home(svc, "warm-2")
    year = Period.year_of(2022)
    # No plan: the old rule (a plan must exist) and its wording are kept.
    none = plan_finding(await svc.reporting.compliance(COUNTY, year, caller=CLERK, today=AFTER_2022))
    assert none.status is Compliance.SHORT and none.reason.endswith("无年度计划记录（要求每年至少1次）")

    plan = await svc.plans.create_plan(
        Plan(
            str(uuid.uuid4()),
            VILLAGE,
            2022,
            (
                PlanItem("lecture", "HEALTH_LECTURE", 2, "健康人生大讲堂", month=6),
                PlanItem("clinic", "FREE_CLINIC", 1, month=3),
                PlanItem("birthday", "GROUP_BIRTHDAY", 1, month=11),
            ),
            site_id="warm-1",
        ),
        caller=CLERK,
    )
    lecture, clinic, birthday = (i.name for i in plan.items)

    # A plan on paper with nothing held: every item is named, SHORT.
    short = plan_finding(await svc.reporting.compliance(COUNTY, year, caller=CLERK, today=AFTER_2022))
    assert short.status is Compliance.SHORT and (short.required, short.actual) == (3, 0)
    assert short.reason.startswith(
        "暖心家园（warm-1） 2022年度计划中 3 项未完成：健康人生大讲堂（计划2次，已开展0次，6月底前）；"
        "义诊（计划1次，已开展0次，3月底前）；集体生日（计划1次，已开展0次，11月底前）"
    )
    assert set(short.missing_ids) == {lecture, clinic, birthday}
    # The other warm home has no plan: its finding is unchanged by this one's plan.
    assert (
        plan_finding(await svc.reporting.compliance(COUNTY, year, caller=CLERK, today=AFTER_2022), "warm-2").actual == 0
    )

    await svc.activities.create_activity(held(clinic, date(2022, 3, 18), "FREE_CLINIC"), caller=CLERK)
    await svc.activities.create_activity(held(lecture, date(2022, 5, 9)), caller=CLERK)
    await svc.activities.create_activity(held(lecture, date(2022, 9, 2)), caller=CLERK)  # late, after H1
    # A planned (not held) birthday does not fulfil its item.
    await svc.activities.create_activity(
        Activity(**{**held(birthday, date(2022, 11, 20), "GROUP_BIRTHDAY").__dict__, "status": ActivityStatus.PLANNED}),
        caller=CLERK,
    )

    # Q1, asked on 2022-04-02: the March clinic is done; the rest is not yet due.
    q1 = plan_finding(
        await svc.reporting.compliance(COUNTY, Period.quarter(2022, 1), caller=CLERK, today=date(2022, 4, 2))
    )
    assert q1.status is Compliance.DUE and "尚有2项未到期" in q1.reason and q1.actual == 1
    # H1, asked later: the June lecture item had only one lecture by June 30.
    h1 = plan_finding(await svc.reporting.compliance(COUNTY, Period.half(2022, 1), caller=CLERK, today=AFTER_2022))
    assert h1.status is Compliance.SHORT and h1.missing_ids == (lecture,)
    assert "1 项未完成：健康人生大讲堂（计划2次，已开展1次，6月底前）" in h1.reason
    # The year: the September lecture came after the lecture item's deadline (6月底前), so it does
    # not fulfil it (issue 17); the reason says so, and GetPlan does not list it as fulfilling.
    late = plan_finding(await svc.reporting.compliance(COUNTY, year, caller=CLERK, today=AFTER_2022))
    assert late.status is Compliance.SHORT and set(late.missing_ids) == {lecture, birthday} and late.actual == 1
    assert "健康人生大讲堂（计划2次，已开展1次，6月底前；另有1次在期限后开展，不计入）" in late.reason
    got = await svc.reporting.get_plan(plan.name.removeprefix("plans/"), caller=CLERK)
    assert (got.items[0].held_count, got.items[0].fulfilled) == (1, False)
    # The wire form names the open items as plan item resources.
    wire = compliance_pb(await svc.reporting.compliance(COUNTY, Period.half(2022, 1), caller=CLERK, today=AFTER_2022))
    [f] = [f for f in wire.findings if f.rule == "WARM_HOME_PLAN" and f.subject == "sites/warm-1"]
    assert list(f.missing) == [lecture] and f.status == pb.COMPLIANCE_STATUS_SHORT
    # A second lecture held on 20 June (recorded only now) does fulfil it.
    await svc.activities.create_activity(held(lecture, date(2022, 6, 20)), caller=CLERK)
    # The year: the lectures are done by June; the birthday is still only planned.
    full = plan_finding(await svc.reporting.compliance(COUNTY, year, caller=CLERK, today=AFTER_2022))
    assert full.status is Compliance.SHORT and full.missing_ids == (birthday,) and full.actual == 2
    # Asked mid-November for the year: the November item is not overdue yet.
    mid = plan_finding(await svc.reporting.compliance(COUNTY, year, caller=CLERK, today=date(2022, 11, 15)))
    assert mid.status is Compliance.DUE and mid.missing_ids == (birthday,)

    await svc.activities.create_activity(held(birthday, date(2022, 11, 25), "GROUP_BIRTHDAY"), caller=CLERK)
    met = plan_finding(await svc.reporting.compliance(COUNTY, year, caller=CLERK, today=AFTER_2022))
    assert met.status is Compliance.MET and met.reason == "暖心家园（warm-1） 2022年度计划3项均已完成"
    assert met.provenance == "test_plan 0.2.0"
    # The other target kinds are judged as before.
    visit = [
        i
        for i in (await svc.reporting.compliance(COUNTY, Period.quarter(2022, 3), caller=CLERK, today=AFTER_2022)).items
        if i.target_key == "WARM_HOME_QUARTERLY_VISIT" and i.subject_id == "warm-1"
    ]
    assert [v.reason for v in visit] == ["2022年第3季度 暖心家园（warm-1） 无走访慰问记录（要求每季度至少1次）"]


async def test_add_plan_item_and_item_type_checked(svc: EventsService) -> None:
    plan = await svc.plans.create_plan(
        Plan(str(uuid.uuid4()), VILLAGE, 2022, (PlanItem("i1", "FREE_CLINIC", 1),)), caller=CLERK
    )
    plan_id = plan.name.removeprefix("plans/")
    got = await svc.plans.add_plan_item(plan_id, PlanItem("i2", "ANY", 3, "每月活动"), caller=CLERK)
    assert got.name == f"{plan.name}/items/i2" and (got.count, got.held_count, got.fulfilled) == (3, 0, False)
    again = await svc.reporting.get_plan(plan_id, caller=CLERK)
    assert [i.name for i in again.items] == [f"{plan.name}/items/i1", f"{plan.name}/items/i2"]
    assert again.items[1].count == 3 and again.items[1].note == "每月活动"
    with pytest.raises(InvalidArgument) as e:
        await svc.plans.add_plan_item(plan_id, PlanItem("i3", "健康大将堂", 0, month=13), caller=CLERK)
    assert {v.field for v in e.value.violations} == {"plan_item.type", "plan_item.count", "plan_item.month"}
    assert len((await svc.reporting.get_plan(plan_id, caller=CLERK)).items) == 2  # nothing half-added
    with pytest.raises(NotFound):
        await svc.plans.add_plan_item("nope", PlanItem("i4", "ANY", 1), caller=CLERK)
    with pytest.raises(InvalidArgument) as e:
        await svc.plans.create_plan(Plan(str(uuid.uuid4()), VILLAGE, 2023, (PlanItem("x", "乱写", 1),)), caller=CLERK)
    assert e.value.violations[0].field == "items[0].type" and "未定义" in e.value.violations[0].description


# ---------------------------------------------------------------- gRPC and CLI against a running service


async def test_grpc_report_names_unfulfilled_items(events) -> None:
    """The installed 怀化 plugin sets 暖心家园“年度有计划” for 431281."""
    s, md = events.stub, events.md()
    await open_warm_home(events.svc)
    plan = await s.CreatePlan(
        pb.CreatePlanRequest(
            plan=pb.Plan(
                region=cpb.RegionCode(code=VILLAGE.code),
                site="sites/warm-1",
                year=2022,
                items=[
                    pb.PlanItem(type=pb.ACTIVITY_TYPE_GROUP_BIRTHDAY, count=1, month=5),
                    pb.PlanItem(type=pb.ACTIVITY_TYPE_FREE_CLINIC, count=1, note="重阳义诊"),
                ],
            ),
            request_id=rid(),
        ),
        metadata=md,
    )
    birthday, clinic = plan.items

    async def finding() -> pb.ComplianceFinding:
        r = await s.GetComplianceReport(
            pb.GetComplianceReportRequest(region=cpb.RegionCode(code="431281"), period=cpb.Period(code="2022")),
            metadata=md,
        )
        [f] = [f for f in r.findings if f.rule == "huaihua.warm_home.plan" and f.subject == "sites/warm-1"]
        return f

    f = await finding()
    assert f.status == pb.COMPLIANCE_STATUS_SHORT and not f.met and (f.required, f.actual) == (2, 0)
    assert (
        "2022年度计划中 2 项未完成：集体生日（计划1次，已开展0次，5月底前）；重阳义诊（计划1次，已开展0次，年内）"
        in f.reason
    )
    assert set(f.missing) == {birthday.name, clinic.name}
    for item, type_, month in (
        (birthday, pb.ACTIVITY_TYPE_GROUP_BIRTHDAY, 5),
        (clinic, pb.ACTIVITY_TYPE_FREE_CLINIC, 10),
    ):
        await s.CreateActivity(
            pb.CreateActivityRequest(
                activity=pb.Activity(
                    display_name="活动",
                    type=type_,
                    organiser_region=cpb.RegionCode(code=VILLAGE.code),
                    site="sites/warm-1",
                    state=pb.ACTIVITY_STATE_HELD,
                    held_date=cpb.Date(year=2022, month=month, day=9),
                    plan_item=item.name,
                ),
                request_id=rid(),
            ),
            metadata=md,
        )
    f = await finding()
    assert f.status == pb.COMPLIANCE_STATUS_MET and f.met and (f.required, f.actual) == (2, 2) and not f.missing
    # An unknown item type is refused over gRPC as well, with the violation in Chinese.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.CreatePlan(
            pb.CreatePlanRequest(
                plan=pb.Plan(
                    region=cpb.RegionCode(code=VILLAGE.code),
                    year=2023,
                    items=[pb.PlanItem(type=pb.ACTIVITY_TYPE_CUSTOM, custom_type="健康大将堂", count=1)],
                ),
                request_id=rid(),
            ),
            metadata=md,
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_grpc_create_plan_item_idempotent_scoped_and_checked(events) -> None:
    s, md = events.stub, events.md()
    plan = await s.CreatePlan(
        pb.CreatePlanRequest(
            plan=pb.Plan(
                region=cpb.RegionCode(code=VILLAGE.code),
                year=2022,
                items=[pb.PlanItem(type=pb.ACTIVITY_TYPE_FREE_CLINIC, count=1)],
            ),
            request_id=rid(),
        ),
        metadata=md,
    )
    req = pb.CreatePlanItemRequest(
        parent=plan.name,
        request_id=rid(),
        plan_item=pb.PlanItem(type=pb.ACTIVITY_TYPE_HEALTH_LECTURE, count=2, month=6, note="健康人生大讲堂"),
    )
    item = await s.CreatePlanItem(req, metadata=md)
    assert item.name.startswith(plan.name + "/items/") and (item.count, item.month, item.note) == (
        2,
        6,
        "健康人生大讲堂",
    )
    assert await s.CreatePlanItem(req, metadata=md) == item  # same request_id: the first answer, no second item
    got = await s.GetPlan(pb.GetPlanRequest(name=plan.name), metadata=md)
    assert [i.name for i in got.items][1:] == [item.name]
    # An activity can now name the new item.
    act = await s.CreateActivity(
        pb.CreateActivityRequest(
            activity=pb.Activity(
                display_name="大讲堂",
                type=pb.ACTIVITY_TYPE_HEALTH_LECTURE,
                organiser_region=cpb.RegionCode(code=VILLAGE.code),
                state=pb.ACTIVITY_STATE_HELD,
                held_date=cpb.Date(year=2022, month=4, day=1),
                plan_item=item.name,
            ),
            request_id=rid(),
        ),
        metadata=md,
    )
    assert act.plan_item == item.name

    async def refused(request: pb.CreatePlanItemRequest, metadata=md) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await s.CreatePlanItem(request, metadata=metadata)
        return e.value

    bad = await refused(
        pb.CreatePlanItemRequest(
            parent=plan.name,
            request_id=rid(),
            plan_item=pb.PlanItem(type=pb.ACTIVITY_TYPE_CUSTOM, custom_type="健康大将堂", count=0, month=13),
        )
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, br, _ = error_details(bad)
    assert br is not None
    assert {v.field for v in br.field_violations} == {"plan_item.type", "plan_item.count", "plan_item.month"}
    other = events.md(region="431281101202", subject="clerk-2")
    assert (
        await refused(
            pb.CreatePlanItemRequest(
                parent=plan.name, request_id=rid(), plan_item=pb.PlanItem(type=pb.ACTIVITY_TYPE_FREE_CLINIC, count=1)
            ),
            other,
        )
    ).code() == grpc.StatusCode.PERMISSION_DENIED
    missing = await refused(
        pb.CreatePlanItemRequest(
            parent="plans/nope", request_id=rid(), plan_item=pb.PlanItem(type=pb.ACTIVITY_TYPE_FREE_CLINIC, count=1)
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND and missing.details() == "年度计划 plans/nope 不存在"
    assert len((await s.GetPlan(pb.GetPlanRequest(name=plan.name), metadata=md)).items) == 2


async def jsx(capsys, *argv: str) -> tuple[int, str]:
    from jsxcore.cli import main

    rc = await asyncio.to_thread(main, ["events", "plan", *argv])
    return rc, capsys.readouterr().out


@pytest.mark.slow  # a dozen CLI runs, each migrating and opening the database
async def test_cli_plan_commands_against_running_service(events, capsys) -> None:
    s, md = events.stub, events.md()
    await open_warm_home(events.svc)
    rc, out = await jsx(
        capsys,
        "create",
        "--region",
        VILLAGE.code,
        "--year",
        "2022",
        "--site",
        "sites/warm-1",
        "--title",
        "2022年岩门村暖心家园工作计划",
        "--item",
        "健康大讲堂:2:6:健康人生大讲堂",
        "--item",
        "义诊",
    )
    assert rc == 0, out
    created = re.search(r"已登记年度计划 (plans/[\w-]+)", out)
    assert created is not None
    plan_name = created.group(1)
    assert "[未完成] 健康人生大讲堂（健康大讲堂）：计划 2 次，已开展 0 次，待开展 0 次，6月底前" in out
    # The running service sees what the CLI recorded.
    got = await s.GetPlan(pb.GetPlanRequest(name=plan_name), metadata=md)
    assert got.display_name == "2022年岩门村暖心家园工作计划" and got.site == "sites/warm-1"
    assert [(i.type, i.count, i.month) for i in got.items] == [
        (pb.ACTIVITY_TYPE_HEALTH_LECTURE, 2, 6),
        (pb.ACTIVITY_TYPE_FREE_CLINIC, 1, 0),
    ]

    rc, out = await jsx(capsys, "add-item", plan_name, "--type", "集体生日", "--count", "1", "--month", "11")
    assert rc == 0, out
    added = re.search(r"增加计划项 (plans/\S+)", out)
    assert added is not None
    birthday = added.group(1)
    assert birthday.startswith(plan_name + "/items/") and "已完成 0/3 项" in out
    # An activity held through gRPC fulfils the CLI-added item; show lists it.
    act = await s.CreateActivity(
        pb.CreateActivityRequest(
            activity=pb.Activity(
                display_name="集体生日会",
                type=pb.ACTIVITY_TYPE_GROUP_BIRTHDAY,
                organiser_region=cpb.RegionCode(code=VILLAGE.code),
                site="sites/warm-1",
                state=pb.ACTIVITY_STATE_HELD,
                held_date=cpb.Date(year=2022, month=11, day=3),
                plan_item=birthday,
            ),
            request_id=rid(),
        ),
        metadata=md,
    )
    rc, out = await jsx(capsys, "show", plan_name)
    assert rc == 0 and "[已完成] 集体生日：计划 1 次，已开展 1 次，待开展 0 次，11月底前" in out and act.name in out
    assert "已完成 1/3 项" in out
    rc, out = await jsx(capsys, "list", "--region", "431281", "--year", "2022")
    assert rc == 0 and plan_name in out and "阵地 sites/warm-1（431281101201）" in out
    rc, out = await jsx(capsys, "list", "--region", "431281", "--year", "2021")
    assert rc == 0 and "洪江市（431281000000） 没有2021年的年度计划" in out

    # The compliance report names the open items (the 怀化 plugin's 年度有计划).
    from jsxcore.cli import main

    assert await asyncio.to_thread(main, ["events", "report", "--region", "431281", "--period", "2022"]) == 0
    report = capsys.readouterr().out
    assert (
        "[未达标] 暖心家园（warm-1） 2022年度计划中 2 项未完成：健康人生大讲堂（计划2次，已开展0次，6月底前）；"
        "义诊（计划1次，已开展0次，年内）"
    ) in report
    # A lecture held in September for the "6月底前" item is shown apart and not counted.
    late = await s.CreateActivity(
        pb.CreateActivityRequest(
            activity=pb.Activity(
                display_name="健康人生大讲堂（补）",
                type=pb.ACTIVITY_TYPE_HEALTH_LECTURE,
                organiser_region=cpb.RegionCode(code=VILLAGE.code),
                site="sites/warm-1",
                state=pb.ACTIVITY_STATE_HELD,
                held_date=cpb.Date(year=2022, month=9, day=1),
                plan_item=got.items[0].name,
            ),
            request_id=rid(),
        ),
        metadata=md,
    )
    rc, out = await jsx(capsys, "show", plan_name)
    assert rc == 0 and "[未完成] 健康人生大讲堂（健康大讲堂）：计划 2 次，已开展 0 次" in out
    assert f"{late.name}（在期限后开展，不计入）" in out and "已完成 1/3 项" in out

    # Errors: the same Chinese words as the gRPC call.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.GetPlan(pb.GetPlanRequest(name="plans/nope"), metadata=md)
    rc, out = await jsx(capsys, "show", "plans/nope")
    assert rc == 1 and out.strip() == f"错误：{e.value.details()}"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.CreatePlan(
            pb.CreatePlanRequest(
                plan=pb.Plan(
                    region=cpb.RegionCode(code=VILLAGE.code),
                    site="sites/warm-1",
                    year=2022,
                    items=[pb.PlanItem(type=pb.ACTIVITY_TYPE_FREE_CLINIC, count=1)],
                ),
                request_id=rid(),
            ),
            metadata=md,
        )
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    rc, out = await jsx(
        capsys, "create", "--region", VILLAGE.code, "--year", "2022", "--site", "warm-1", "--item", "义诊"
    )
    assert rc == 1 and out.strip() == f"错误：{e.value.details()}"
    rc, out = await jsx(
        capsys, "create", "--region", VILLAGE.code, "--year", "2023", "--item", "健康大将堂:x", "--item", "义诊:1:13"
    )
    assert rc == 1 and "items[0].count：计划次数须为正整数（收到“x”）" in out
    rc, out = await jsx(capsys, "add-item", plan_name, "--type", "乱写", "--count", "0")
    assert rc == 1 and "plan_item.count：计划次数须为正整数" in out and "plan_item.type：活动类型“乱写”未定义" in out
    rc, out = await jsx(capsys, "add-item", "plans/nope", "--type", "义诊")
    assert rc == 1 and out.strip() == "错误：年度计划 plans/nope 不存在"  # CreatePlanItem's NOT_FOUND words
    assert len((await s.GetPlan(pb.GetPlanRequest(name=plan_name), metadata=md)).items) == 3
