"""The county plugins' seed targets as the events service judges them (issue 13, "Cadence"), with the
installed plugins, the region registry and real SQLite/PostgreSQL:

* 洪江 — “对计生特殊家庭开展了不少于 3 次的走访慰问服务” per special family (only visits that happened:
  booked, or without 慰问金), a village 理事会会议 and a 骨干会员培训 each year;
* 沅陵 — a 会员之家 in every 行政村 (369 in the 2023 list), a yearly “幸福好家庭”评选表彰 counted from
  the association's HAPPY_FAMILY award decisions.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date

import pytest

from jsx.common.v1 import common_pb2 as cpb
from jsx.events.v1 import events_service_pb2 as pb
from jsx.funds.v1 import events_pb2 as fpb
from jsx.members.v1 import members_pb2 as mmpb
from jsx_events.activities.domain import Activity, ActivityStatus
from jsx_events.adapters.db import migrate
from jsx_events.awards.domain import AwardDecision, Nomination
from jsx_events.composition import EventsService
from jsx_events.reporting.domain import Compliance, ComplianceItem
from jsx_events.visits.domain import Visit
from jsxcore.db import create_engine, session_factory
from jsxcore.outbox import EventMeta
from jsxcore.plugins import PluginHost
from jsxcore.regions import registry
from jsxcore.testing.helpers import rid, who
from jsxcore.values import Money, Period, RegionCode

HONGJIANG, YUANLING = RegionCode.parse("431281"), RegionCode.parse("431222")
HJ_VILLAGE = RegionCode.parse("431281101002")  # 洪江市黔城镇玉皇阁社区
HJ_OTHER = RegionCode.parse("431281101007")  # 洪江市黔城镇牛头湾社区
YL_VILLAGE = RegionCode.parse("431222102204")  # 沅陵县麻溪铺镇仰溪铺村
YL_COMMUNITY = RegionCode.parse("431222102001")  # 沅陵县麻溪铺镇麻溪铺社区
YL_TOWN = RegionCode.parse("431222102")  # 沅陵县麻溪铺镇
HJ_CLERK = who("clerk-hj", "431281", "county_clerk")
YL_CLERK = who("clerk-yl", "431222", "county_clerk")
YEAR = Period.year_of(2022)
AFTER = date(2023, 1, 5)


@pytest.fixture
async def svc(db_url: str):
    """The events service with the installed county plugins; decisions recorded on 2022-12-20."""
    await asyncio.to_thread(migrate, db_url)
    engine = create_engine(db_url)
    host = PluginHost()
    host.discover()
    yield EventsService.build(session_factory(engine), host, today=lambda: date(2022, 12, 20))
    await engine.dispose()


def findings(report, key: str) -> dict[str, ComplianceItem]:
    return {i.subject_id: i for i in report.items if i.target_key == key}


def held(type_: str, region: RegionCode, day: date, site: str = "") -> Activity:
    return Activity(str(uuid.uuid4()), type_, "活动", region, day, day, ActivityStatus.HELD, site_id=site, headcount=12)


async def visit(svc: EventsService, household: str, day: date, fen: int = 0) -> str:
    v = Visit(
        "",
        household,
        HJ_VILLAGE,
        "volunteers/hj-v",
        day,
        amount=Money(fen),
        fund_id="fund-1" if fen else "",
    )
    return (await svc.visits.record_visit(v, caller=HJ_CLERK)).name


async def funds_answer(svc: EventsService, visit_name: str, booked: bool) -> None:
    msg = (
        fpb.VisitExpenseBooked(visit=visit_name, ledger_entry="funds/fund-1/ledgerEntries/1")
        if booked
        else fpb.VisitExpenseRejected(visit=visit_name, reason="INSUFFICIENT_FUNDS", message="慰问金账户余额不足")
    )
    async with svc.sessions() as s, s.begin():
        await svc.apply_booking(s, msg, EventMeta(str(uuid.uuid4()), "s", "t", 1, 1, None))


async def test_hongjiang_visits_per_special_family_and_village_meetings(svc: EventsService, members) -> None:
    m = members(svc)
    await m.pairing("volunteers/hj-v", "households/hj-1", HJ_VILLAGE.code)
    await m.household("households/hj-1", HJ_VILLAGE.code, special=True)
    await m.household("households/hj-2", HJ_VILLAGE.code)  # not a special family
    await visit(svc, "hj-1", date(2022, 2, 1))  # no 慰问金: counts
    await visit(svc, "hj-1", date(2022, 6, 1))
    pending = await visit(svc, "hj-1", date(2022, 9, 1), 50000)
    rejected = await visit(svc, "hj-1", date(2022, 9, 20), 900000)
    await funds_answer(svc, rejected, booked=False)

    report = await svc.reporting.compliance(HONGJIANG, YEAR, caller=HJ_CLERK, today=AFTER)
    fam = findings(report, "hongjiang.special_family.visits")
    assert list(fam) == ["hj-1"]  # one finding per special family, none for hj-2
    f = fam["hj-1"]
    assert (f.status, f.required, f.actual, f.subject_region) == (Compliance.SHORT, 3, 2, HJ_VILLAGE)
    assert f.target == "对计生特殊家庭开展了不少于 3 次的走访慰问服务" and f.provenance.startswith("hongjiang ")
    assert f.reason == (
        "2022年 洪江市黔城镇玉皇阁社区 计生特殊家庭 households/hj-1 走访慰问2次，少于要求"
        "（要求每年至少3次：对计生特殊家庭开展了不少于 3 次的走访慰问服务），差1次；"
        "另有1次慰问金待资金服务记账，记账后计入；1次慰问金被资金服务拒绝，不计入"
    )
    # Funds books the pending one: now three visits happened.
    await funds_answer(svc, pending, booked=True)
    f = findings(
        await svc.reporting.compliance(HONGJIANG, YEAR, caller=HJ_CLERK, today=AFTER), "hongjiang.special_family.visits"
    )["hj-1"]
    assert (f.status, f.actual) == (Compliance.MET, 3) and "1次慰问金被资金服务拒绝，不计入" in f.reason

    # Every village of 洪江 (the registry's 218) owes a 理事会会议 and a 骨干会员培训 a year; the
    # plugin's types may be written by their Chinese names.
    await svc.activities.create_activity(held("理事会会议", HJ_VILLAGE, date(2022, 3, 1)), caller=HJ_CLERK)
    await svc.activities.create_activity(held("BACKBONE_TRAINING", HJ_VILLAGE, date(2022, 7, 1)), caller=HJ_CLERK)
    report = await svc.reporting.compliance(HONGJIANG, YEAR, caller=HJ_CLERK, today=AFTER)
    council = findings(report, "hongjiang.village.council_meeting")
    training = findings(report, "hongjiang.village.backbone_training")
    assert len(council) == len(training) == len(registry().villages("431281")) == 218
    assert council[HJ_VILLAGE.code].status is Compliance.MET and training[HJ_VILLAGE.code].status is Compliance.MET
    assert council[HJ_OTHER.code].reason == "2022年 洪江市黔城镇牛头湾社区 无理事会会议记录（要求每年至少1次）"
    assert council[HJ_OTHER.code].target == "村级计生协每年至少召开一次理事会议"
    assert training[HJ_OTHER.code].status is Compliance.SHORT
    # Mid-year the same villages are still due, not short.
    mid = await svc.reporting.compliance(HONGJIANG, YEAR, caller=HJ_CLERK, today=date(2022, 6, 30))
    assert findings(mid, "hongjiang.village.backbone_training")[HJ_OTHER.code].status is Compliance.DUE
    # The city's 暖心家园 targets are still there: the village's booked September visit counts for
    # its warm home's quarter, the refused one does not.
    await m.site("sites/hj-warm", HJ_VILLAGE.code)
    q3 = await svc.reporting.compliance(HONGJIANG, Period.quarter(2022, 3), caller=HJ_CLERK, today=AFTER)
    warm = findings(q3, "huaihua.warm_home.visit")["hj-warm"]
    assert (warm.status, warm.actual) == (Compliance.MET, 1) and "被资金服务拒绝" in warm.reason


async def test_yuanling_member_homes_and_happy_family_selections(svc: EventsService, members) -> None:
    m = members(svc)
    await m.household("households/yl-1", YL_VILLAGE.code)
    await m.site("sites/yl-home", YL_VILLAGE.code, mmpb.SITE_KIND_MEMBER_HOME)
    await m.site("sites/yl-warm", YL_COMMUNITY.code)  # a 暖心家园 is no 会员之家

    report = await svc.reporting.compliance(YUANLING, YEAR, caller=YL_CLERK, today=AFTER)
    homes = findings(report, "yuanling.village.member_home")
    assert len(homes) == 369  # the seed's “全县 369 个行政村”: 404 村级 units less 35 社区
    assert YL_COMMUNITY.code not in homes
    assert homes[YL_VILLAGE.code].status is Compliance.MET
    assert homes[YL_VILLAGE.code].reason == (
        "2022年 沅陵县麻溪铺镇仰溪铺村 已建会员之家1个，达到要求"
        "（在全县 369 个行政村建立“会员之家”：每个行政村建有 1 个会员之家）"
    )
    short = next(i for i in homes.values() if i.status is Compliance.SHORT)
    assert short.reason.startswith("2022年 沅陵县") and "未建会员之家" in short.reason

    # The selection: the village association's awarded HAPPY_FAMILY decision meets it; a decision
    # of another kind, or not awarded, does not; the township has none.
    nominate = Nomination("幸福好家庭", "households/yl-1", YL_VILLAGE, 2022, AwardDecision.AWARDED)
    await svc.awards.decide_award(nominate, caller=YL_CLERK)
    await m.household("households/yl-2", YL_COMMUNITY.code)
    for kind, decision in (("健康之星", AwardDecision.AWARDED), ("幸福好家庭", AwardDecision.NOT_AWARDED)):
        await svc.awards.decide_award(
            Nomination(kind, "households/yl-2", YL_COMMUNITY, 2022, decision), caller=YL_CLERK
        )
    report = await svc.reporting.compliance(YUANLING, YEAR, caller=YL_CLERK, today=AFTER)
    village = findings(report, "yuanling.village.happy_family")
    assert len(village) == 404  # 村（居、社区）: communities too
    assert (village[YL_VILLAGE.code].status, village[YL_VILLAGE.code].actual) == (Compliance.MET, 1)
    assert village[YL_VILLAGE.code].target == "各村（居、社区）计生协每年组织一次“幸福好家庭”评选表彰活动"
    assert village[YL_COMMUNITY.code].status is Compliance.SHORT
    town = findings(report, "yuanling.township.happy_family")
    assert len(town) == len(registry().children("431222"))
    assert town[RegionCode(YL_TOWN.code).code].status is Compliance.SHORT
    await svc.awards.decide_award(
        Nomination("幸福好家庭", "households/yl-1", YL_TOWN, 2022, AwardDecision.AWARDED), caller=YL_CLERK
    )
    town = findings(
        await svc.reporting.compliance(YUANLING, YEAR, caller=YL_CLERK, today=AFTER), "yuanling.township.happy_family"
    )
    assert town[RegionCode(YL_TOWN.code).code].status is Compliance.MET


async def test_grpc_report_names_the_family_and_its_village(events) -> None:
    await events.members.pairing("volunteers/hj-v", "households/hj-1", HJ_VILLAGE.code)
    await events.members.household("households/hj-1", HJ_VILLAGE.code, special=True)
    await events.stub.RecordVisit(
        pb.RecordVisitRequest(
            request_id=rid(),
            visit=pb.Visit(
                household="households/hj-1",
                region=cpb.RegionCode(code=HJ_VILLAGE.code),
                visitor="volunteers/hj-v",
                visit_date=cpb.Date(year=2022, month=4, day=1),
            ),
        ),
        metadata=events.md(),
    )
    report = await events.stub.GetComplianceReport(
        pb.GetComplianceReportRequest(
            region=cpb.RegionCode(code="431281"), period=cpb.Period(code="2022"), shortfalls_only=True
        ),
        metadata=events.md(),
    )
    [f] = [f for f in report.findings if f.rule == "hongjiang.special_family.visits"]
    assert (f.subject, f.region.code, list(f.missing)) == ("households/hj-1", HJ_VILLAGE.code, ["households/hj-1"])
    assert f.status in (pb.COMPLIANCE_STATUS_SHORT, pb.COMPLIANCE_STATUS_DUE) and (f.required, f.actual) == (3, 1)
    assert f.subject_name == "洪江市黔城镇玉皇阁社区 计生特殊家庭 households/hj-1"
    assert f.description == "对计生特殊家庭开展了不少于 3 次的走访慰问服务"
    assert f.provenance.plugin == "hongjiang"
