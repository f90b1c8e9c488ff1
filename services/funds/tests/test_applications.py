"""Programs and applications on SQLite and PostgreSQL: plugin eligibility and
amounts with provenance (洪江 940 vs 沅陵 national 590 for 2022-08), the
村 → 乡镇 → 县 chain with maker-checker, 公示, objections and events."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from jsx.common.v1 import common_pb2 as c
from jsx.funds.v1 import funds_pb2 as pb
from jsx.members.v1 import events_pb2 as mev
from jsx.members.v1 import members_pb2 as mpb
from jsx_funds.entrypoints.grpc import compose
from jsx_funds.programs.domain import publicity_end
from jsx_funds.projections.consumers import apply_household_event
from jsxcore.auth import Caller
from jsxcore.db import session_factory, transaction
from jsxcore.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from jsxcore.outbox import EventMeta, OutboxEvent
from jsxcore.plugins import PluginHost
from jsxcore.testing.helpers import Clock, rid, who

HJ_VILLAGE, HJ_TOWNSHIP, HJ = "431281101201", "431281101", "431281"
YL_VILLAGE = "431222101201"


CLERK = who("clerk-hj", HJ, "county_clerk")
VILLAGE = who("rev-village", HJ_VILLAGE, "village_reviewer")
TOWNSHIP = who("rev-township", HJ_TOWNSHIP, "township_reviewer")
COUNTY = who("appr-county", HJ, "county_approver")


@pytest.fixture
async def env(engine: AsyncEngine, make_api: Any) -> dict[str, Any]:
    sessions = session_factory(engine)
    host = PluginHost({"hunan": ["430000"], "hongjiang": ["431281"], "yuanling": ["431222"]})
    host.discover()
    clock = Clock()
    funds = programs = make_api(compose(sessions, host, clock=clock))
    meta = EventMeta(event_id="e", subject="s", event_type="t", num_delivered=1, stream_seq=1, published_at=None)

    async def household(hid: str, village: str, kind: mpb.SituationKind.ValueType, since: date) -> None:
        msg = mev.HouseholdSituationChanged(
            household=f"households/{hid}",
            village=c.RegionCode(code=village),
            kind=kind,
            effective_from=c.Date(year=since.year, month=since.month, day=since.day),
            head_person=f"persons/{hid}-head",
            member_count=2,
        )
        msg.occurred_at.FromSeconds(1_600_000_000)
        async with transaction(sessions) as s:
            await apply_household_event(s, msg, meta)

    return {"sessions": sessions, "funds": funds, "programs": programs, "clock": clock, "household": household}


async def make_program(env: dict[str, Any], region: str, budget: int = 0) -> pb.Program:
    fund = await env["funds"].CreateFund(
        pb.CreateFundRequest(
            request_id=rid(),
            fund=pb.Fund(
                display_name="计生特别扶助资金", kind=pb.FUND_KIND_PROGRAM, owner_region=c.RegionCode(code=region)
            ),
        ),
        None,
    )
    return await env["programs"].CreateProgram(
        pb.CreateProgramRequest(
            request_id=rid(),
            program=pb.Program(
                display_name="2022年计生特殊家庭特别扶助",
                type=pb.PROGRAM_TYPE_SPECIAL_SUPPORT,
                region=c.RegionCode(code=region),
                fund=fund.name,
                year=2022,
                budget=c.Money(fen=budget),
            ),
        ),
        None,
    )


def application(
    program: str, hid: str, person: str, period: str = "2022-08", birth: str = "1965-01-01"
) -> pb.SubmitApplicationRequest:
    return pb.SubmitApplicationRequest(
        request_id=rid(),
        application=pb.Application(
            program=program,
            household=f"households/{hid}",
            person=person,
            period=c.Period(code=period),
            attributes={"birth_date": birth},
        ),
    )


async def decide(env: dict[str, Any], caller: Caller, name: str, ok: bool = True, comment: str = "") -> pb.Application:
    return await env["programs"].DecideApplication(
        pb.DecideApplicationRequest(
            request_id=rid(),
            name=name,
            comment=comment or ("同意" if ok else "不符合条件"),
            decision=pb.APPROVAL_DECISION_APPROVE if ok else pb.APPROVAL_DECISION_REJECT,
        ),
        caller,
    )


async def subjects(env: dict[str, Any]) -> list[str]:
    async with env["sessions"]() as s:
        return list((await s.execute(select(OutboxEvent.subject).order_by(OutboxEvent.seq))).scalars())


async def test_amounts_and_provenance_come_from_the_region_plugins(env: dict[str, Any]) -> None:
    await env["household"]("hj1", HJ_VILLAGE, mpb.SITUATION_KIND_SPECIAL_BEREAVED, date(2021, 6, 1))
    await env["household"]("yl1", YL_VILLAGE, mpb.SITUATION_KIND_SPECIAL_BEREAVED, date(2021, 6, 1))
    hj, yl = await make_program(env, HJ), await make_program(env, "431222")
    assert hj.year == 2022 and hj.beneficiary == pb.BENEFICIARY_KIND_PERSON
    a = await env["programs"].SubmitApplication(application(hj.name, "hj1", "persons/hj1-p"), CLERK)
    b = await env["programs"].SubmitApplication(
        application(yl.name, "yl1", "persons/yl1-p"), who("clerk-yl", "431222", "county_clerk")
    )
    assert a.amount_entitled.fen == 940_00 and b.amount_entitled.fen == 590_00
    assert a.state == pb.APPLICATION_STATE_SUBMITTED and a.village.code == HJ_VILLAGE
    prov = {p.hook: p for p in a.provenance}
    assert prov["jsx_entitlement_amount"].plugin == "hongjiang" and "940" in prov["jsx_entitlement_amount"].reasons[0]
    assert prov["jsx_program_eligibility"].plugin == "hunan"
    assert {p.hook: p for p in b.provenance}["jsx_entitlement_amount"].plugin == "hunan"
    assert "jsx_approval_chain" in prov and "jsx_publicity_rule" in prov

    # The same person and month again: refused by the unique key, nothing new written.
    with pytest.raises(AlreadyExists) as e:
        await env["programs"].SubmitApplication(application(hj.name, "hj1", "persons/hj1-p"), CLERK)
    assert e.value.reason == "APPLICATION_EXISTS"
    # An idempotent retry returns the first answer.
    req = application(hj.name, "hj1", "persons/hj1-p", period="2022-09")
    first = await env["programs"].SubmitApplication(req, CLERK)
    assert await env["programs"].SubmitApplication(req, CLERK) == first

    # Not a special family: the plugin's reasons reach the clerk; nothing stored.
    await env["household"]("hj2", HJ_VILLAGE, mpb.SITUATION_KIND_ONLY_CHILD, date(2001, 1, 1))
    with pytest.raises(FailedPrecondition) as refused:
        await env["programs"].SubmitApplication(application(hj.name, "hj2", "persons/hj2-p"), CLERK)
    assert refused.value.reason == "NOT_ELIGIBLE" and "不属于计生特殊家庭" in refused.value.message
    with pytest.raises(NotFound) as not_found:
        await env["programs"].SubmitApplication(application(hj.name, "nobody", "persons/x"), CLERK)
    assert not_found.value.reason == "HOUSEHOLD_NOT_FOUND"
    # Out of the clerk's county.
    with pytest.raises(PermissionDenied):
        await env["programs"].SubmitApplication(application(yl.name, "yl1", "persons/yl1-p", period="2022-10"), CLERK)
    assert (await subjects(env)).count("jsx.funds.application.submitted") == 3


async def test_chain_maker_checker_publicity_and_objections(env: dict[str, Any]) -> None:
    svc, clock = env["programs"], env["clock"]
    await env["household"]("hj1", HJ_VILLAGE, mpb.SITUATION_KIND_SPECIAL_BEREAVED, date(2021, 6, 1))
    program = await make_program(env, HJ)
    app = await svc.SubmitApplication(application(program.name, "hj1", "persons/hj1-p"), VILLAGE)

    # The village reviewer entered it: someone else at the village must review.
    with pytest.raises(PermissionDenied) as e:
        await decide(env, VILLAGE, app.name)
    assert e.value.reason == "MAKER_CHECKER"
    app = await svc.SubmitApplication(application(program.name, "hj1", "persons/hj1-p2"), CLERK)
    with pytest.raises(PermissionDenied) as e:
        await decide(env, CLERK, app.name)
    assert e.value.reason == "MAKER_CHECKER"
    with pytest.raises(PermissionDenied) as e:
        await decide(env, COUNTY, app.name)  # the county cannot skip the village review
    assert e.value.reason == "WRONG_APPROVAL_LEVEL"

    got = await decide(env, VILLAGE, app.name)
    assert got.state == pb.APPLICATION_STATE_IN_REVIEW
    with pytest.raises(PermissionDenied) as e:
        await decide(env, who("rev-village", HJ_TOWNSHIP, "township_reviewer"), app.name)
    assert e.value.reason == "SAME_REVIEWER"
    await decide(env, TOWNSHIP, app.name)
    got = await decide(env, COUNTY, app.name)
    assert got.state == pb.APPLICATION_STATE_IN_PUBLICITY
    assert [(s.level, s.decision, s.audit.actor) for s in got.approval_steps] == [
        (pb.APPROVAL_LEVEL_VILLAGE, pb.APPROVAL_DECISION_APPROVE, "rev-village"),
        (pb.APPROVAL_LEVEL_TOWNSHIP, pb.APPROVAL_DECISION_APPROVE, "rev-township"),
        (pb.APPROVAL_LEVEL_COUNTY, pb.APPROVAL_DECISION_APPROVE, "appr-county"),
    ]
    end = got.publicity_end_time.ToDatetime(tzinfo=UTC)
    assert end == publicity_end(clock.now, 7, False) == datetime(2022, 9, 12, 16, 0, tzinfo=UTC)
    with pytest.raises(FailedPrecondition):
        await decide(env, COUNTY, app.name)  # nothing left to decide

    pub = await svc.ListPublicity(pb.ListPublicityRequest(), COUNTY)
    assert [(e.application, e.beneficiary, e.amount.fen) for e in pub.entries] == [(app.name, "persons/hj1-p2", 940_00)]

    # An objection stops payment until resolved; dismissing it returns to 公示.
    clock.now += timedelta(days=2)
    objected = await svc.LodgeObjection(
        pb.LodgeObjectionRequest(request_id=rid(), application=app.name, reason="该户子女仍健在", lodged_by=""), CLERK
    )
    assert objected.state == pb.APPLICATION_STATE_OBJECTED
    clock.now += timedelta(days=10)  # 公示 is over, but the objection is open: still not payable
    assert (
        await svc.GetApplication(pb.GetApplicationRequest(name=app.name), COUNTY)
    ).state == pb.APPLICATION_STATE_OBJECTED
    done = await svc.ResolveObjection(
        pb.ResolveObjectionRequest(
            request_id=rid(),
            name=objected.objections[0].name,
            upheld=False,
            resolution="经村组核实，子女已于2021年死亡",
        ),
        COUNTY,
    )
    assert done.state == pb.APPLICATION_STATE_READY_TO_PAY
    assert done.objections[0].state == pb.OBJECTION_STATE_DISMISSED
    with pytest.raises(FailedPrecondition) as refused:
        await svc.LodgeObjection(
            pb.LodgeObjectionRequest(request_id=rid(), application=app.name, reason="迟到的异议"), CLERK
        )
    assert refused.value.reason == "NOT_IN_PUBLICITY"
    ready = await svc.ListApplications(pb.ListApplicationsRequest(state=pb.APPLICATION_STATE_READY_TO_PAY), COUNTY)
    assert [a.name for a in ready.applications] == [app.name]

    # Rejection at a step, and an upheld objection, both end in REJECTED.
    await env["household"]("hj3", HJ_VILLAGE, mpb.SITUATION_KIND_SPECIAL_BEREAVED, date(2020, 1, 1))
    r1 = await svc.SubmitApplication(application(program.name, "hj3", "persons/hj3-p"), CLERK)
    rej = await decide(env, VILLAGE, r1.name, ok=False, comment="户籍已迁出本村")
    assert rej.state == pb.APPLICATION_STATE_REJECTED and rej.approval_steps[0].comment == "户籍已迁出本村"
    r2 = await svc.SubmitApplication(application(program.name, "hj3", "persons/hj3-q"), CLERK)
    for reviewer in (VILLAGE, TOWNSHIP, COUNTY):
        await decide(env, reviewer, r2.name)
    obj = await svc.LodgeObjection(
        pb.LodgeObjectionRequest(request_id=rid(), application=r2.name, reason="重复享受"), CLERK
    )
    up = await svc.ResolveObjection(
        pb.ResolveObjectionRequest(
            request_id=rid(), name=obj.objections[0].name, upheld=True, resolution="已在外县享受"
        ),
        COUNTY,
    )
    assert up.state == pb.APPLICATION_STATE_REJECTED
    events = await subjects(env)
    assert events.count("jsx.funds.application.approved") == 2
    assert events.count("jsx.funds.application.rejected") == 2
    assert events.count("jsx.funds.application.objected") == 2


async def test_budget_caps_final_approvals(env: dict[str, Any]) -> None:
    await env["household"]("hj1", HJ_VILLAGE, mpb.SITUATION_KIND_SPECIAL_BEREAVED, date(2021, 6, 1))
    program = await make_program(env, HJ, budget=1500_00)
    apps = [
        await env["programs"].SubmitApplication(application(program.name, "hj1", f"persons/p{i}"), CLERK)
        for i in range(2)
    ]
    for reviewer in (VILLAGE, TOWNSHIP, COUNTY):
        await decide(env, reviewer, apps[0].name)
    await decide(env, VILLAGE, apps[1].name)
    await decide(env, TOWNSHIP, apps[1].name)
    with pytest.raises(FailedPrecondition) as e:
        await decide(env, COUNTY, apps[1].name)
    assert e.value.reason == "BUDGET_EXCEEDED" and "1500.00" in e.value.message
    left = await env["programs"].GetApplication(pb.GetApplicationRequest(name=apps[1].name), COUNTY)
    assert left.state == pb.APPLICATION_STATE_IN_REVIEW and len(left.approval_steps) == 2
