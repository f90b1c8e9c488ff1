"""The demo the local stack runs after start-up (``python3 dev.py up``).

It talks to the three services only over gRPC, like an integrating system,
with a token signed by the stack's dev secret, and shows facts crossing NATS:

1. every service answers (health is checked by the stack; here ListPlugins);
2. members registers a 洪江市 special family (失独) and opens a 暖心家园 in
   its village — ``HouseholdRegistered`` / ``SiteOpened`` go out through
   members' outbox;
3. the events service's compliance report (怀化市 plugin: every 暖心家园 pairs
   a volunteer with each special family) lists that family as not yet paired
   — events learnt of the family and the site only from those events;
4. members registers a volunteer and pairs it with the family; the report
   then shows the family paired (``VolunteerPaired`` crossed NATS);
5. funds opens a 慰问金 fund and allocates money to it;
6. that volunteer's 走访慰问 visit with 500 元 慰问金 from that fund — events
   records it only for a household and volunteer it knows — goes events → NATS
   → funds (booked on the ledger) → NATS → events, and the visit turns BOOKED;
7. funds opens the 2022 洪江市 特别扶助 program; the family's 户主 applies
   (940 元/月, 洪江市 plugin), the village, township and county approve it —
   three reviewers, each with their own token — and it goes into 公示, where
   the public board (``stack.board_url``) shows it with the name masked.

Request ids are derived from fixed names, so running the demo again against
the same data repeats nothing: every call returns its first response (AIP-155).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

if TYPE_CHECKING:
    from jsx_dev.stack import Stack

T = TypeVar("T")
CST = timezone(timedelta(hours=8))
_NS = uuid.UUID("6f1b2a53-4c1e-4d0b-9a57-3c0e3f7d9a10")
VILLAGE = "431281103205"  # a village of 洪江市
TOWNSHIP = VILLAGE[:9]
COUNTY = "431281"
#: The demo 户主's birth date (in their 身份证 number too): 62 in 2022, past 特别扶助's 49.
DEMO_BIRTH = date(1960, 5, 1)
#: The period the 特别扶助 application claims.
SUPPORT_PERIOD = "2022-08"


def rid(step: str) -> str:
    return str(uuid.uuid5(_NS, step))


def demo_id_number(birth: str = f"{DEMO_BIRTH:%Y%m%d}", seq: str = "013") -> str:
    from jsxcore.values import id_check_char

    body = f"{COUNTY}{birth}{seq}"
    return body + id_check_char(body)


async def _until(what: str, probe: Callable[[], Awaitable[T | None]], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = await probe()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{timeout:.0f} 秒内未等到：{what}")
        await asyncio.sleep(0.3)


async def run(stack: Stack) -> bool:
    from jsx.common.v1 import common_pb2 as c
    from jsx.events.v1 import events_service_pb2 as epb
    from jsx.events.v1 import events_service_pb2_grpc as egrpc
    from jsx.funds.v1 import funds_pb2 as fpb
    from jsx.funds.v1 import funds_pb2_grpc as fgrpc
    from jsx.members.v1 import members_pb2 as mpb
    from jsx.members.v1 import members_pb2_grpc as mgrpc
    from jsxcore.auth import issue_token
    from jsxcore.config import ServiceConfig
    from jsxcore.runtime import error_details

    cfg = ServiceConfig.from_env("demo", {"JSX_DEV": "1", "JSX_DATA_DIR": str(stack.data_dir)})
    token = issue_token(cfg.auth_secret, "demo-admin", ["admin"], COUNTY, name="演示管理员")
    md: Any = (("authorization", f"Bearer {token}"),)
    # one reviewer per level: funds refuses one person deciding two levels (SAME_REVIEWER)
    reviewers: list[Any] = [
        (("authorization", f"Bearer {issue_token(cfg.auth_secret, sub, [role], region, name=name)}"),)
        for sub, role, region, name in (
            ("demo-village", "village_reviewer", VILLAGE, "演示村审核员"),
            ("demo-township", "township_reviewer", TOWNSHIP, "演示乡镇审核员"),
            ("demo-county", "county_approver", COUNTY, "演示县审批员"),
        )
    ]

    def say(msg: str) -> None:
        print(f"  · {msg}", flush=True)

    print("演示：", flush=True)
    chans = {s: grpc.aio.insecure_channel(stack.addr(s)) for s in ("members", "funds", "events")}
    try:
        members = mgrpc.MembersServiceStub(chans["members"])
        funds = fgrpc.FundsServiceStub(chans["funds"])
        events = egrpc.EventsServiceStub(chans["events"])

        for name, stub in (("members", members), ("funds", funds), ("events", events)):
            r = await stub.ListPlugins(c.ListPluginsRequest(), metadata=md, timeout=10)
            say(f"{name} 服务应答，已启用规则插件 {len(r.plugins)} 个：" + "、".join(p.name for p in r.plugins))

        head = await members.CreatePerson(
            mpb.CreatePersonRequest(
                request_id=rid("person-head"),
                person=mpb.Person(
                    display_name="演示户主",
                    id_number=demo_id_number(),
                    phone="13900001234",
                    village=c.RegionCode(code=VILLAGE),
                    hukou_type=mpb.HUKOU_TYPE_RURAL,
                ),
            ),
            metadata=md,
            timeout=10,
        )
        say(f"members 登记人员 {head.name}（身份证 {head.id_number_masked}，电话 {head.phone_masked}）")
        hh = await members.CreateHousehold(
            mpb.CreateHouseholdRequest(
                request_id=rid("household"),
                household=mpb.Household(
                    head=head.name,
                    village=c.RegionCode(code=VILLAGE),
                    members=[mpb.HouseholdMember(person=head.name, relation=mpb.RELATION_HEAD)],
                ),
                situations=[
                    mpb.FamilySituation(
                        kind=mpb.SITUATION_KIND_SPECIAL_BEREAVED, effective_from=c.Date(year=2021, month=3, day=1)
                    )
                ],
            ),
            metadata=md,
            timeout=10,
        )
        say(f"members 登记计生特殊家庭（失独）{hh.name}")
        site = await members.CreateSite(
            mpb.CreateSiteRequest(
                request_id=rid("site"),
                site=mpb.Site(
                    display_name="演示村暖心家园",
                    kind=mpb.SITE_KIND_WARM_HOME,
                    village=c.RegionCode(code=VILLAGE),
                    address="洪江市演示村村部",
                ),
            ),
            metadata=md,
            timeout=10,
        )
        say(f"members 开设暖心家园 {site.name}")

        year = str(date.today().year)

        async def pairing_finding() -> epb.ComplianceFinding | None:
            rep = await events.GetComplianceReport(
                epb.GetComplianceReportRequest(region=c.RegionCode(code=COUNTY), period=c.Period(code=year)),
                metadata=md,
                timeout=10,
            )
            return next(
                (f for f in rep.findings if f.rule == "huaihua.warm_home.pairing" and f.subject == site.name), None
            )

        async def family_seen() -> epb.ComplianceFinding | None:
            # unpaired (missing) on the first run; a rerun finds it paired already
            f = await pairing_finding()
            return f if f is not None and (hh.name in f.missing or f.required >= 1) else None

        finding = await _until("events 服务通过 NATS 获知该特殊家庭", family_seen)
        say(f"events 经 NATS 获知该家庭：{finding.reason or finding.description}")

        person = await members.CreatePerson(
            mpb.CreatePersonRequest(
                request_id=rid("person-volunteer"),
                person=mpb.Person(
                    display_name="演示志愿者",
                    id_number=demo_id_number("19750812", "026"),
                    village=c.RegionCode(code=VILLAGE),
                    hukou_type=mpb.HUKOU_TYPE_RURAL,
                ),
            ),
            metadata=md,
            timeout=10,
        )
        volunteer = await members.CreateVolunteer(
            mpb.CreateVolunteerRequest(
                request_id=rid("volunteer"),
                volunteer=mpb.Volunteer(
                    person=person.name, village=c.RegionCode(code=VILLAGE), skills="村计生专干", active=True
                ),
            ),
            metadata=md,
            timeout=10,
        )
        await members.PairVolunteer(
            mpb.PairVolunteerRequest(
                request_id=rid("pairing"),
                volunteer=volunteer.name,
                household=hh.name,
                kind=mpb.PAIRING_KIND_DUAL_CONTACT,
            ),
            metadata=md,
            timeout=10,
        )

        async def paired_seen() -> epb.ComplianceFinding | None:
            f = await pairing_finding()
            return f if f is not None and f.status == epb.COMPLIANCE_STATUS_MET else None

        finding = await _until("events 服务通过 NATS 获知志愿者结对", paired_seen)
        say(f"members 登记志愿者 {volunteer.name} 并与该家庭结对；events：{finding.reason}")

        src = await funds.CreateFundSource(
            fpb.CreateFundSourceRequest(
                request_id=rid("source"),
                fund_source=fpb.FundSource(
                    display_name="洪江市财政 慰问专项",
                    kind=fpb.FUND_SOURCE_KIND_COUNTY_FINANCE,
                    region=c.RegionCode(code=COUNTY),
                ),
            ),
            metadata=md,
            timeout=10,
        )
        fund = await funds.CreateFund(
            fpb.CreateFundRequest(
                request_id=rid("fund"),
                fund=fpb.Fund(
                    display_name="洪江市计生协 走访慰问金",
                    kind=fpb.FUND_KIND_CONDOLENCE,
                    owner_region=c.RegionCode(code=COUNTY),
                ),
            ),
            metadata=md,
            timeout=10,
        )
        await funds.PostAllocation(
            fpb.PostAllocationRequest(
                request_id=rid("allocation"), fund=fund.name, source=src.name, amount=c.Money(fen=10_000_00)
            ),
            metadata=md,
            timeout=10,
        )
        got = await funds.GetFund(fpb.GetFundRequest(name=fund.name), metadata=md, timeout=10)
        say(f"funds 基金 {fund.name} 拨入 10000.00 元，当前可用 {got.available.fen / 100:.2f} 元")

        visit = await events.RecordVisit(
            epb.RecordVisitRequest(
                request_id=rid("visit"),
                visit=epb.Visit(
                    household=hh.name,
                    region=c.RegionCode(code=VILLAGE),
                    visitor=volunteer.name,
                    visit_date=c.Date(year=2022, month=9, day=10),
                    occasion="中秋走访",
                    money=c.Money(fen=500_00),
                    fund=fund.name,
                ),
            ),
            metadata=md,
            timeout=10,
        )
        say(f"events 记录走访慰问 {visit.name}，慰问金 500.00 元，状态 {epb.VisitState.Name(visit.state)}")

        async def settled() -> epb.Visit | None:
            v = await events.GetVisit(epb.GetVisitRequest(name=visit.name), metadata=md, timeout=10)
            return v if v.state in (epb.VISIT_STATE_BOOKED, epb.VISIT_STATE_REJECTED) else None

        v = await _until("funds 经 NATS 入账并回告 events", settled)
        if v.state != epb.VISIT_STATE_BOOKED:
            say(f"走访慰问金被拒：{v.rejection_message}")
            return False
        got = await funds.GetFund(fpb.GetFundRequest(name=fund.name), metadata=md, timeout=10)
        say(
            f"funds 经 NATS 入账慰问金（{v.ledger_entry or '已入账'}），events 显示 BOOKED；"
            f"基金可用 {got.available.fen / 100:.2f} 元"
        )

        # 6. 特别扶助 through three reviews into 公示, for the board
        psrc = await funds.CreateFundSource(
            fpb.CreateFundSourceRequest(
                request_id=rid("support-source"),
                fund_source=fpb.FundSource(
                    display_name="2022年洪江市特别扶助资金",
                    kind=fpb.FUND_SOURCE_KIND_COUNTY_FINANCE,
                    region=c.RegionCode(code=COUNTY),
                ),
            ),
            metadata=md,
            timeout=10,
        )
        pfund = await funds.CreateFund(
            fpb.CreateFundRequest(
                request_id=rid("support-fund"),
                fund=fpb.Fund(
                    display_name="洪江市特别扶助资金",
                    kind=fpb.FUND_KIND_PROGRAM,
                    owner_region=c.RegionCode(code=COUNTY),
                ),
            ),
            metadata=md,
            timeout=10,
        )
        await funds.PostAllocation(
            fpb.PostAllocationRequest(
                request_id=rid("support-allocation"), fund=pfund.name, source=psrc.name, amount=c.Money(fen=100_000_00)
            ),
            metadata=md,
            timeout=10,
        )
        program = await funds.CreateProgram(
            fpb.CreateProgramRequest(
                request_id=rid("support-program"),
                program=fpb.Program(
                    display_name="2022年洪江市计生特殊家庭特别扶助",
                    type=fpb.PROGRAM_TYPE_SPECIAL_SUPPORT,
                    region=c.RegionCode(code=COUNTY),
                    fund=pfund.name,
                    year=2022,
                    publicity_days=7,
                    approval_levels=[
                        fpb.APPROVAL_LEVEL_VILLAGE,
                        fpb.APPROVAL_LEVEL_TOWNSHIP,
                        fpb.APPROVAL_LEVEL_COUNTY,
                    ],
                ),
            ),
            metadata=md,
            timeout=10,
        )
        submit = fpb.SubmitApplicationRequest(
            request_id=rid("support-application"),
            application=fpb.Application(
                program=program.name,
                household=hh.name,
                person=head.name,
                period=c.Period(code=SUPPORT_PERIOD),
                attributes={"birth_date": DEMO_BIRTH.isoformat()},
            ),
        )

        async def submitted() -> fpb.Application | None:
            try:
                return await funds.SubmitApplication(submit, metadata=md, timeout=10)
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:  # the household is still on its way over NATS
                    return None
                raise

        app = await _until("funds 经 NATS 获知该家庭", submitted)
        for level, rmd in zip(("village", "township", "county"), reviewers, strict=True):
            app = await funds.DecideApplication(
                fpb.DecideApplicationRequest(
                    request_id=rid(f"support-decide-{level}"),
                    name=app.name,
                    decision=fpb.APPROVAL_DECISION_APPROVE,
                    comment="同意",
                ),
                metadata=rmd,
                timeout=10,
            )
        app = await funds.GetApplication(fpb.GetApplicationRequest(name=app.name), metadata=md, timeout=10)
        board = f"{stack.board_url}gongshi?region={VILLAGE}"
        if app.state in (fpb.APPLICATION_STATE_IN_PUBLICITY, fpb.APPLICATION_STATE_OBJECTED):
            listed = await funds.ListPublicity(
                fpb.ListPublicityRequest(region=c.RegionCode(code=VILLAGE), program=program.name, page_size=100),
                metadata=md,
                timeout=10,
            )
            entry = next((e for e in listed.entries if e.application == app.name), None)
            if entry is None:
                say(f"公示名单中未找到 {app.name}")
                return False
            end = entry.publicity_end_time.ToDatetime(tzinfo=CST).date().isoformat()
            say(
                f"funds 特别扶助申请 {app.name} 经村、乡镇、县三级审核进入公示（至 {end}）："
                f"{entry.beneficiary_display_name} {entry.amount.fen / 100:.2f} 元"
            )
        else:
            state = fpb.ApplicationState.Name(app.state).removeprefix("APPLICATION_STATE_")
            say(f"funds 特别扶助申请 {app.name} 公示期已过，当前状态 {state}")
        say(f"公示栏：{board}")
        print("演示完成：三个服务均应答，事件经 NATS 往返，公示栏可查看公示。", flush=True)
        return True
    except grpc.aio.AioRpcError as e:
        _info, bad, loc = error_details(e)
        print(f"演示失败：{e.code().name} {loc.message if loc else e.details()}", flush=True)
        if bad:
            for v in bad.field_violations:
                print(f"    {v.field}: {v.description}", flush=True)
        return False
    except TimeoutError as e:
        print(f"演示失败：{e}（日志见 {stack.data_dir / 'logs'}）", flush=True)
        return False
    finally:
        for ch in chans.values():
            await ch.close()
