"""Program reports when several programs share one fund (SQLite and PostgreSQL).

Four 洪江 特别扶助 programs are paid from one 30 万 fund. Each enrols a 失独 mother
(940 元) in 岔头乡 (431281101) and a 伤残 mother (580 元) in 沙湾乡 (431281102);
each gets an August batch. The bank fails the first program's 伤残 payment.
资金总额 is what moved for each program — never the fund's 30 万 four times —
and the region and period filters are honoured. Totals are computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from jsx.common.v1 import common_pb2 as c
from jsx.funds.v1 import funds_pb2 as pb
from jsx.members.v1 import events_pb2 as mev
from jsx.members.v1 import members_pb2 as mpb
from jsx_funds.entrypoints.grpc import compose
from jsx_funds.projections.consumers import apply_household_event
from jsxcore.db import session_factory, transaction
from jsxcore.outbox import EventMeta
from jsxcore.plugins import PluginHost
from jsxcore.testing.helpers import Clock, rid, who
from jsxcore.values import RegionCode

HJ = "431281"
T1, T2 = HJ + "101", HJ + "102"
START = datetime(2022, 7, 4, 2, 0, tzinfo=UTC)
META = EventMeta(event_id="e", subject="s", event_type="t", num_delivered=1, stream_seq=1, published_at=None)


@pytest.fixture
async def env(engine: AsyncEngine, make_api: Any) -> Any:
    sessions = session_factory(engine)
    host = PluginHost({"hunan": ["430000"], "hongjiang": ["431281"]})
    host.discover()
    clock = Clock(START)
    api = make_api(compose(sessions, host, clock=clock))
    fund = await api.CreateFund(
        pb.CreateFundRequest(
            request_id=rid(),
            fund=pb.Fund(display_name="特别扶助资金", kind=pb.FUND_KIND_PROGRAM, owner_region=c.RegionCode(code=HJ)),
        )
    )
    src = await api.CreateFundSource(
        pb.CreateFundSourceRequest(
            request_id=rid(),
            fund_source=pb.FundSource(
                display_name="省级特别扶助资金", kind=pb.FUND_SOURCE_KIND_PROVINCE_FINANCE, region=c.RegionCode(code=HJ)
            ),
        )
    )
    await api.PostAllocation(
        pb.PostAllocationRequest(fund=fund.name, source=src.name, amount=c.Money(fen=30_0000_00), request_id=rid())
    )
    programs = []
    for k in range(4):
        program = await api.CreateProgram(
            pb.CreateProgramRequest(
                request_id=rid(),
                program=pb.Program(
                    display_name=f"2022年洪江市计生特别扶助{k + 1}",
                    type=pb.PROGRAM_TYPE_SPECIAL_SUPPORT,
                    region=c.RegionCode(code=HJ),
                    fund=fund.name,
                    year=2022,
                ),
            )
        )
        programs.append(program)
        for hid, kind, grade, village in (
            (f"{k}b", mpb.SITUATION_KIND_SPECIAL_BEREAVED, 0, T1 + "201"),
            (f"{k}d", mpb.SITUATION_KIND_SPECIAL_DISABLED, 3, T2 + "201"),
        ):
            async with transaction(sessions) as s:
                await apply_household_event(
                    s,
                    mev.HouseholdSituationChanged(
                        household=f"households/{HJ}-{hid}",
                        village=c.RegionCode(code=village),
                        kind=kind,
                        effective_from=c.Date(year=2020, month=1, day=1),
                        disability_grade=grade,
                        head_person=f"persons/{HJ}-{hid}-head",
                        member_count=3,
                    ),
                    META,
                )
            app = await api.SubmitApplication(
                pb.SubmitApplicationRequest(
                    request_id=rid(),
                    application=pb.Application(
                        program=program.name,
                        household=f"households/{HJ}-{hid}",
                        person=f"persons/{HJ}-{hid}-mother",
                        period=c.Period(code="2022-07"),
                        attributes={"birth_date": "1966-03-01"},
                    ),
                ),
                who("clerk", HJ),
            )
            for reviewer, region in (("v", village), ("t", village[:9]), ("c", HJ)):
                await api.DecideApplication(
                    pb.DecideApplicationRequest(
                        request_id=rid(), name=app.name, decision=pb.APPROVAL_DECISION_APPROVE, comment="同意"
                    ),
                    who(reviewer, region),
                )
    clock.now += timedelta(days=30)  # 公示 over
    batches = [
        await api.CreatePaymentBatch(
            pb.CreatePaymentBatchRequest(
                request_id=rid(), program=p.name, region=c.RegionCode(code=HJ), period=c.Period(code="2022-08")
            ),
            who("fin", HJ),
        )
        for p in programs
    ]
    return {"api": api, "programs": programs, "batches": batches}


async def report(api: Any, program: pb.Program, region: str = "", period: str = "") -> pb.ProgramReport:
    req = pb.GetProgramReportRequest(program=program.name)
    if region:
        req.region.code = region
    if period:
        req.period.code = period
    return await api.GetProgramReport(req, who("c", HJ))


async def test_programs_sharing_one_fund_report_their_own_money(env: Any) -> None:
    api, programs, batches = env["api"], env["programs"], env["batches"]
    # Issued, the bank has not answered: each program moved 940 + 580 = 1520 元 (not the fund's 30 万).
    for p in programs:
        r = await report(api, p)
        assert (r.fund_total.fen, r.amount_paid.fen) == (1520_00, 0)
        assert r.summary == "资金总额 0.15 万元，惠及计生家庭 0 户 0 人"

    first = await api.ListPayments(pb.ListPaymentsRequest(payment_batch=batches[0].name))
    refs = {p.payee.split("-")[1]: p.name for p in first.payments}  # "0b" (940) / "0d" (580)
    await api.ImportBankResults(
        pb.ImportBankResultsRequest(
            payment_batch=batches[0].name,
            request_id=rid(),
            results=[
                pb.BankResult(payment=refs["0b"], succeeded=True),
                pb.BankResult(payment=refs["0d"], succeeded=False, failure_reason="账户已销户"),
            ],
        )
    )
    totals = [(await report(api, p, period="2022")).fund_total.fen for p in programs]
    assert totals == [940_00, 1520_00, 1520_00, 1520_00]  # the 580 went back to the fund
    assert sum(totals) == 5500_00 < 30_0000_00

    # Region filter: 岔头乡 has each program's 940 元 household, 沙湾乡 the 580 元 one (failed for the first).
    assert [(await report(api, p, region=T1)).fund_total.fen for p in programs] == [940_00] * 4
    assert [(await report(api, p, region=T2)).fund_total.fen for p in programs] == [0, 580_00, 580_00, 580_00]
    r = await report(api, programs[0], region=T1, period="2022")
    assert (r.region.code, r.fund_total.fen, r.amount_paid.fen, r.households_helped) == (T1 + "000", 940_00, 940_00, 1)
    assert r.summary == "资金总额 0.09 万元，惠及计生家庭 1 户 1 人"  # 特别扶助 pays the person

    # Period filter: nothing moved in 2021, nor in July 2022 (the batches are August's).
    for period in ("2021", "2022-07"):
        assert [(await report(api, p, period=period)).fund_total.fen for p in programs] == [0] * 4
    assert (await report(api, programs[1], period="2022-08")).fund_total.fen == 1520_00

    # The CLI's reports for a region and year: one row per program, each with its own money.
    rows = await api.reporting.program_reports(region=RegionCode(T2 + "000"), year=2022, caller=None)
    assert [(name, r.region.code, r.fund_total.fen) for name, r in rows] == [
        (f"2022年洪江市计生特别扶助{k + 1}", T2 + "000", fen) for k, fen in enumerate((0, 580_00, 580_00, 580_00))
    ]
