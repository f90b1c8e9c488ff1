"""Events service on real SQLite/PostgreSQL and a real nats-server."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from datetime import date

import nats
import pytest

from jsx.common.v1 import common_pb2 as cpb
from jsx.events.v1 import events_pb2 as epb
from jsx.events.v1 import events_service_pb2 as pb
from jsx.funds.v1 import events_pb2 as fpb
from jsx.members.v1 import events_pb2 as mpb
from jsx.members.v1 import members_pb2 as mmpb
from jsx_events import SERVICE_NAME
from jsx_events.adapters import bus
from jsx_events.adapters.db import migrate
from jsx_events.composition import EventsService
from jsx_events.reporting.domain import Compliance
from jsx_events.reporting.wire import compliance_pb
from jsx_events.visits.domain import Visit
from jsx_events.visits.service import VisitFilter
from jsxcore.db import create_engine, session_factory
from jsxcore.errors import InvalidArgument
from jsxcore.hookspecs import CadenceTarget, PluginMeta, hookimpl
from jsxcore.outbox import Consumer, Relay, ensure_stream, subject_of
from jsxcore.plugins import PluginHost
from jsxcore.testing.helpers import who
from jsxcore.usecase import Idem
from jsxcore.values import Money, Period, RegionCode

COUNTY = RegionCode.parse("431281")
VILLAGE = RegionCode.parse("431281101201")
CLERK = who("clerk-1", "431281", "county_clerk")


class WarmHomePlugin:
    JSX_PLUGIN = PluginMeta(name="test_warm_home", version="0.1.0", regions=("431281",), description="测试")

    @hookimpl
    def jsx_cadence_targets(self, region: RegionCode, year: int) -> tuple[CadenceTarget, ...]:
        return (
            CadenceTarget("WARM_HOME_QUARTERLY_VISIT", "WARM_HOME", "CARE_VISIT", 1, "QUARTER", "暖心家园季度有慰问"),
            CadenceTarget("WARM_HOME_PAIRING", "WARM_HOME", "PAIRING", 1, "YEAR", "每户特殊家庭结对志愿者"),
        )


@pytest.fixture
async def svc(db_url: str):
    await asyncio.to_thread(migrate, db_url)
    engine = create_engine(db_url)
    host = PluginHost()
    host.register(WarmHomePlugin())
    yield EventsService.build(session_factory(engine), host)
    await engine.dispose()


def visit_fields(amount: int = 50000, site: str = "") -> dict:
    return {
        "id": str(uuid.uuid4()),
        "household_id": "hh-1",
        "region": VILLAGE,
        "visitor_id": "volunteers/v1",
        "visited_on": date(2022, 8, 3),
        "notes": "送去米油",
        "amount": Money(amount),
        "fund_id": "fund-1" if amount else "",
        "site_id": site,
    }


async def record(svc: EventsService, fields: dict, idem: Idem | None = None):
    return await svc.visits.record_visit(Visit(**fields), caller=CLERK, idem=idem)


async def feed_members(svc: EventsService) -> None:
    from jsxcore.outbox import EventMeta

    meta = EventMeta("e", "s", "t", 1, 1, None)
    async with svc.sessions() as s, s.begin():
        await svc.apply_member_event(
            s,
            mpb.SiteOpened(
                site="sites/warm-1", kind=mmpb.SITE_KIND_WARM_HOME, village=cpb.RegionCode(code=VILLAGE.code)
            ),
            meta,
        )
        await svc.apply_member_event(
            s,
            mpb.HouseholdSituationChanged(
                household="households/hh-1",
                village=cpb.RegionCode(code=VILLAGE.code),
                kind=mmpb.SITUATION_KIND_SPECIAL_BEREAVED,
                effective_from=cpb.Date(year=2020, month=1, day=1),
            ),
            meta,
        )
        await svc.apply_member_event(
            s,
            mpb.VolunteerPaired(
                pairing="pairings/p1",
                volunteer="volunteers/v1",
                household="households/hh-1",
                village=cpb.RegionCode(code=VILLAGE.code),
            ),
            meta,
        )


async def test_cadence_quarter_with_and_without_visits(svc: EventsService) -> None:
    await feed_members(svc)
    before = await svc.reporting.compliance(COUNTY, Period.quarter(2022, 3), caller=CLERK, today=date(2023, 1, 1))
    visit_item = next(i for i in before.items if i.target_key == "WARM_HOME_QUARTERLY_VISIT")
    assert visit_item.status is Compliance.SHORT and visit_item.actual == 0
    assert visit_item.reason == "2022年第3季度 暖心家园（warm-1） 无走访慰问记录（要求每季度至少1次）"
    assert visit_item.provenance.startswith("test_warm_home 0.1.0")
    pairing = next(i for i in before.items if i.target_key == "WARM_HOME_PAIRING")
    assert pairing.status is Compliance.MET

    await record(svc, visit_fields(0, site="warm-1"))
    after = await svc.reporting.compliance(COUNTY, Period.quarter(2022, 3), caller=CLERK, today=date(2023, 1, 1))
    visit_item = next(i for i in after.items if i.target_key == "WARM_HOME_QUARTERLY_VISIT")
    assert (visit_item.status, visit_item.actual) == (Compliance.MET, 1)
    report = compliance_pb(after)
    assert report.met_count == 2 and report.shortfall_count == 0


async def test_idempotent_record_visit(svc: EventsService) -> None:
    await feed_members(svc)  # the household and volunteer the visit names
    req = pb.RecordVisitRequest(request_id=str(uuid.uuid4()))
    fields = visit_fields()
    idem = Idem.of(SERVICE_NAME, "RecordVisit", req)
    first = await record(svc, fields, idem)
    again = await record(svc, {**fields, "id": str(uuid.uuid4())}, idem)
    assert again == first and first.state == pb.VISIT_STATE_PENDING
    assert len((await svc.visits.list_visits(VisitFilter(COUNTY), caller=CLERK)).visits) == 1
    with pytest.raises(InvalidArgument) as e:
        await record(svc, {**fields, "amount": Money(-1)})
    assert e.value.violations[0].field == "amount"


async def test_visit_event_published_once_and_booking_results(svc: EventsService, nats_url: str) -> None:
    relay = Relay(svc.sessions, nats_url, service="events", poll_interval=0.2)
    svc.notify = relay.notify
    run = asyncio.create_task(relay.run())
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await feed_members(svc)  # the household and volunteer the visits name
    try:
        await record(svc, visit_fields(0))  # no money: nothing to publish
        booked_visit = await record(svc, visit_fields(50000))
        rejected_visit = await record(svc, visit_fields(900000))
        await relay.wait_idle()
        await relay.publish_pending()  # a second pass must not publish again
        sub = await js.pull_subscribe(
            "jsx.events.visit.recorded", durable=f"t{uuid.uuid4().hex[:8]}", stream="JSX_EVENTS"
        )
        msgs = await sub.fetch(10, timeout=2)
        mine = [
            m for m in msgs if epb.VisitRecorded.FromString(m.data).visit in (booked_visit.name, rejected_visit.name)
        ]
        assert len(mine) == 2
        ev = epb.VisitRecorded.FromString(mine[0].data)
        assert (
            ev.money.fen == 50000
            and ev.fund == "funds/fund-1"
            and "米油" not in mine[0].data.decode("utf-8", "replace")
        )
        assert mine[0].headers is not None and mine[0].headers["Jsx-Event-Type"] == "jsx.events.v1.VisitRecorded"

        # Funds answers; each result is published twice with the same Nats-Msg-Id
        # (JetStream dedupe) and once more with a fresh id (a funds-side replay).
        await ensure_stream(js, "funds")
        booked = fpb.VisitExpenseBooked(
            event_id=str(uuid.uuid4()),
            visit=booked_visit.name,
            fund="funds/fund-1",
            amount=cpb.Money(fen=50000),
            ledger_entry="funds/fund-1/ledgerEntries/9",
        )
        rejected = fpb.VisitExpenseRejected(
            event_id=str(uuid.uuid4()),
            visit=rejected_visit.name,
            fund="funds/fund-1",
            amount=cpb.Money(fen=900000),
            reason="INSUFFICIENT_FUNDS",
            message="慰问金账户余额不足：余额 3000.00 元，需 9000.00 元",
        )
        for m in (booked, rejected):
            for eid in (m.event_id, m.event_id, str(uuid.uuid4())):
                await js.publish(
                    subject_of(m),
                    m.SerializeToString(),
                    headers={"Nats-Msg-Id": eid, "Jsx-Event-Type": m.DESCRIPTOR.full_name},
                )
        consumer = Consumer(
            nats_url,
            stream="JSX_FUNDS",
            durable=f"events-funds-{uuid.uuid4().hex[:6]}",
            subjects=list(bus.FUNDS_SUBJECTS),
            handler=svc.apply_booking,
            sessionmaker=svc.sessions,
            message_types=bus.FUNDS_TYPES,
            fetch_timeout=0.3,
        )
        task = asyncio.create_task(consumer.run())
        # The session-wide broker keeps earlier tests' results for visits this
        # database never had: those are terminated as poison, ours applied.
        for _ in range(100):
            if consumer.applied >= 4:
                break
            await asyncio.sleep(0.1)
        await consumer.stop()
        task.cancel()
        # Same-id copies were dropped by JetStream; fresh-id replays were applied but changed nothing.
        assert consumer.applied == 4
        got = await svc.visits.get_visit(booked_visit.name.removeprefix("visits/"), caller=CLERK)
        assert got.state == pb.VISIT_STATE_BOOKED and got.ledger_entry == "funds/fund-1/ledgerEntries/9"
        got = await svc.visits.get_visit(rejected_visit.name.removeprefix("visits/"), caller=CLERK)
        assert got.state == pb.VISIT_STATE_REJECTED and got.rejection_reason == "INSUFFICIENT_FUNDS"
        assert got.rejection_message.startswith("慰问金账户余额不足")
        summary = await svc.reporting.summary(COUNTY, Period.year_of(2022), caller=CLERK)
        assert summary.visit_money.fen == 50000 and summary.visits_rejected == 1 and summary.visit_count == 3
        assert "开展各类慰问服务 3 场次" in summary.text
    finally:
        await relay.stop()
        run.cancel()
        await nc.close()


@pytest.mark.slow  # runs the CLI five times, each migrating and opening the database
async def test_cli_record_list_report_xlsx(db_url: str, tmp_path, monkeypatch, capsys, members) -> None:
    from openpyxl import load_workbook

    from jsxcore.auth import issue_token
    from jsxcore.cli import main
    from jsxcore.config import ServiceConfig

    monkeypatch.setenv("JSX_EVENTS_DATABASE_URL", db_url)
    monkeypatch.setenv("JSX_EVENTS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JSX_DEV", "1")
    # `record` authenticates like RecordVisit: a 洪江 clerk's token
    secret = ServiceConfig.from_env("events").auth_secret
    monkeypatch.setenv("JSX_TOKEN", issue_token(secret, "clerk-1", ["county_clerk"], "431281"))
    # the household and volunteer it names, as the members service published them
    await asyncio.to_thread(migrate, db_url)
    engine = create_engine(db_url)
    try:
        await members(EventsService.build(session_factory(engine), PluginHost())).pairing(
            "volunteers/v1", "households/hh-7", VILLAGE.code
        )
    finally:
        await engine.dispose()
    assert (
        await asyncio.to_thread(
            main,
            [
                "events",
                "record",
                "--household",
                "hh-7",
                "--region",
                VILLAGE.code,
                "--visitor",
                "volunteers/v1",
                "--date",
                "2022-09-10",
                "--money",
                "300",
                "--fund",
                "f1",
            ],
        )
        == 0
    )
    assert "慰问金 300.00 元，状态 待记账" in capsys.readouterr().out
    assert (
        await asyncio.to_thread(
            main,
            [
                "events",
                "record",
                "--household",
                "hh-7",
                "--region",
                VILLAGE.code,
                "--visitor",
                "v",
                "--date",
                "2022-09-10",
                "--money",
                "300",
            ],
        )
        == 1
    )
    assert "fund_id" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["events", "list", "--region", "431281"]) == 0
    assert "households/hh-7" in capsys.readouterr().out
    out = tmp_path / "r.xlsx"
    assert (
        await asyncio.to_thread(
            main, ["events", "report", "--region", "431281", "--period", "2022Q3", "--xlsx", str(out)]
        )
        == 0
    )
    assert "开展各类慰问服务 1 场次" in capsys.readouterr().out
    sheet = load_workbook(out).active
    assert sheet is not None and sheet["A2"].value == "结果"


@pytest.mark.slow  # runs the CLI several times, each migrating and opening the database
async def test_cli_record_takes_resource_names_checks_them_and_the_token(
    db_url: str, tmp_path, monkeypatch, capsys, members
) -> None:
    """`jsx events record` with the names `jsx members list` prints, checked like RecordVisit."""
    from jsxcore.auth import issue_token
    from jsxcore.cli import main
    from jsxcore.config import ServiceConfig

    monkeypatch.setenv("JSX_EVENTS_DATABASE_URL", db_url)
    monkeypatch.setenv("JSX_EVENTS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JSX_DEV", "1")
    monkeypatch.delenv("JSX_TOKEN", raising=False)
    secret = ServiceConfig.from_env("events").auth_secret
    await asyncio.to_thread(migrate, db_url)
    engine = create_engine(db_url)
    try:
        svc = EventsService.build(session_factory(engine), PluginHost())
        await members(svc).pairing("volunteers/v1", "households/hh-7", VILLAGE.code)
        await members(svc).site("sites/warm-1", VILLAGE.code)
    finally:
        await engine.dispose()

    def record(*extra: str, household: str = "households/hh-7", token: str | None = None) -> tuple[int, str]:
        argv = ["events", "record", "--household", household, "--region", VILLAGE.code, "--date", "2022-09-10"]
        argv += ["--visitor", "volunteers/v1", *extra]
        if token is not None:
            argv += ["--token", token]
        rc = main(argv)
        return rc, capsys.readouterr().out

    clerk = issue_token(secret, "clerk-1", ["county_clerk"], "431281")
    # No token, another county's token, a role without events.visits.write: refused like the RPC.
    rc, out = await asyncio.to_thread(record)
    assert rc == 1 and "缺少访问令牌" in out
    rc, out = await asyncio.to_thread(record, token=issue_token(secret, "clerk-yl", ["county_clerk"], "431222"))
    assert rc == 1 and "不在您的辖区内" in out
    rc, out = await asyncio.to_thread(record, token=issue_token(secret, "approver", ["county_approver"], "431281"))
    assert rc == 1 and "events.visits.write" in out
    rc, out = await asyncio.to_thread(record, token="not-a-token")
    assert rc == 1 and "访问令牌无效" in out
    # Names as the other commands print them: stored once, not as households/households/….
    rc, out = await asyncio.to_thread(
        record, "--money", "300", "--fund", "funds/12", "--site", "sites/warm-1", token=clerk
    )
    assert rc == 0 and "慰问金 300.00 元，状态 待记账" in out, out
    async with create_engine_ctx(db_url) as svc:
        [v] = (await svc.visits.list_visits(VisitFilter(COUNTY), caller=CLERK)).visits
    assert (v.household, v.visitor, v.fund, v.site) == ("households/hh-7", "volunteers/v1", "funds/12", "sites/warm-1")
    # Unknown household and volunteer, a bad date and amount: the violations a gRPC caller gets.
    rc, out = await asyncio.to_thread(record, household="households/nope", token=clerk)
    assert rc == 1 and "visit.household：家庭户 households/nope 不存在" in out
    monkeypatch.setenv("JSX_TOKEN", clerk)
    rc, out = await asyncio.to_thread(record, "--visitor", "volunteers/ghost")
    assert rc == 1 and "visit.visitor：志愿者 volunteers/ghost 不存在或尚未结对" in out
    rc, out = await asyncio.to_thread(record, "--date", "2022-13-40", "--money", "abc")
    assert rc == 1 and "visit.visit_date" in out and "visit.money" in out
    async with create_engine_ctx(db_url) as svc:
        assert len((await svc.visits.list_visits(VisitFilter(COUNTY), caller=CLERK)).visits) == 1


@asynccontextmanager
async def create_engine_ctx(db_url: str):
    engine = create_engine(db_url)
    try:
        yield EventsService.build(session_factory(engine), PluginHost())
    finally:
        await engine.dispose()


async def test_closed_site_stops_owing_cadence_and_member_changes_are_understood(svc: EventsService) -> None:
    from jsx_events.adapters import bus as events_bus
    from jsxcore.outbox import EventMeta

    # the consumer would have terminated these as unknown types before
    names = {t.DESCRIPTOR.full_name for t in events_bus.MEMBER_TYPES}
    assert {"jsx.members.v1.SiteClosed", "jsx.members.v1.HouseholdMembersChanged"} <= names

    await feed_members(svc)
    meta = EventMeta("e2", "s", "t", 1, 1, None)
    q3 = Period.quarter(2022, 3)
    assert any(
        i.subject_id == "warm-1"
        for i in (await svc.reporting.compliance(COUNTY, q3, caller=CLERK, today=date(2023, 1, 1))).items
    )
    async with svc.sessions() as s, s.begin():
        await svc.apply_member_event(
            s,
            mpb.SiteClosed(
                site="sites/warm-1",
                kind=mmpb.SITE_KIND_WARM_HOME,
                village=cpb.RegionCode(code=VILLAGE.code),
                closed_date=cpb.Date(year=2022, month=6, day=30),
            ),
            meta,
        )
        await svc.apply_member_event(
            s, mpb.HouseholdMembersChanged(household="households/hh-1", village=cpb.RegionCode(code=VILLAGE.code)), meta
        )
    # closed before Q3 began: no Q3 findings for it; Q2 (when it ran) still reported
    after = await svc.reporting.compliance(COUNTY, q3, caller=CLERK, today=date(2023, 1, 1))
    assert not any(i.subject_id == "warm-1" for i in after.items)
    q2 = await svc.reporting.compliance(COUNTY, Period.quarter(2022, 2), caller=CLERK, today=date(2023, 1, 1))
    assert any(i.subject_id == "warm-1" for i in q2.items)
    # the special family is still known after a membership change
    fams = [f for f in (await svc.reporting.facts(COUNTY, q3)).families if f.household_id == "hh-1"]
    assert fams and fams[0].special


async def test_migration_0003_moves_old_plan_links_to_plan_id(db_url: str) -> None:
    """Before 0003 the wire's "plans/{plan}" was stored in plan_item_id: it becomes the
    plan link, and the item link is left for the clerk to choose."""
    import sqlalchemy as sa

    await asyncio.to_thread(migrate, db_url, "0002")
    engine = create_engine(db_url)
    cols = (
        "id, type, title, region, site_id, start_date, end_date, status, participant_ids, headcount, materials, "
        "consultations, clinic_visits, contraceptive_boxes, care_money_fen, attachments, plan_item_id, location, "
        "description, created_by, created_at, updated_at"
    )
    vals = "'HEALTH_LECTURE', 't', '431281101201', '', '2022-05-01', '2022-05-01', 'HELD', '[]', 0, 0, 0, 0, 0, 0, '[]'"
    async with engine.begin() as c:
        await c.execute(
            sa.text(
                "INSERT INTO plans (id, region, site_id, year, title, created_at) "
                "VALUES ('p-old', '431281101201', '', 2022, '', '2022-01-01')"
            )
        )
        for aid, link in (("a-linked", "p-old"), ("a-dangling", "gone"), ("a-free", "")):
            await c.execute(
                sa.text(
                    f"INSERT INTO activities ({cols}) VALUES ('{aid}', {vals}, '{link}', '', '', '', "
                    "'2022-01-01', '2022-01-01')"
                )
            )
    await engine.dispose()
    await asyncio.to_thread(migrate, db_url)
    engine = create_engine(db_url)
    async with engine.connect() as c:
        result = await c.execute(sa.text("SELECT id, plan_id || '|' || plan_item_id FROM activities"))
        rows: dict[str, str] = {row[0]: row[1] for row in result.all()}
    await engine.dispose()
    assert rows == {"a-linked": "p-old|", "a-dangling": "|", "a-free": "|"}
