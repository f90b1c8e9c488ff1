"""WithdrawApplication (撤回) on SQLite and PostgreSQL: from every state before
money moves (READY_TO_PAY included), with its audit record, reason and
ApplicationWithdrawn event; refused with NOT_WITHDRAWABLE once a payment was
made (issued, paid, failed at the bank) or when already rejected/withdrawn,
changing nothing; a withdrawn application frees the program budget and is
never paid by a batch; idempotent on request_id; and once over real gRPC."""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from jsx.common.v1 import common_pb2 as c
from jsx.funds.v1 import events_pb2 as fev
from jsx.funds.v1 import funds_pb2 as pb
from jsx.funds.v1 import funds_pb2_grpc as pb_grpc
from jsx.members.v1 import events_pb2 as mev
from jsx.members.v1 import members_pb2 as mpb
from jsx_funds.adapters.db import migrate
from jsx_funds.disbursement.tables import PaymentRow
from jsx_funds.entrypoints.grpc import build_runtime, compose
from jsx_funds.programs.tables import ApplicationRow, WithdrawalRow
from jsx_funds.projections.consumers import apply_household_event
from jsxcore.auth import Caller, issue_token
from jsxcore.config import ServiceConfig
from jsxcore.db import session_factory, transaction
from jsxcore.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from jsxcore.outbox import EventMeta, OutboxEvent
from jsxcore.pii import generate_key
from jsxcore.plugins import PluginHost
from jsxcore.runtime import error_details
from jsxcore.testing.helpers import Clock, rid, who


def reason_of(err: grpc.RpcError) -> str:
    """The ErrorInfo reason a refused call carries (every refusal checked here carries one)."""
    info = error_details(err)[0]
    assert info is not None
    return info.reason


def details_of(err: grpc.aio.AioRpcError) -> str:
    """A refused call's status message (every refusal checked here carries one)."""
    details = err.details()
    assert details is not None
    return details


HJ_VILLAGE, HJ_TOWNSHIP, HJ = "431281101201", "431281101", "431281"
META = EventMeta(event_id="e", subject="s", event_type="t", num_delivered=1, stream_seq=1, published_at=None)
WITHDRAWN_SUBJECT = "jsx.funds.application.withdrawn"


CLERK = who("clerk-hj", HJ, "county_clerk")
VILLAGE = who("rev-village", HJ_VILLAGE, "village_reviewer")
TOWNSHIP = who("rev-township", HJ_TOWNSHIP, "township_reviewer")
COUNTY = who("appr-county", HJ, "county_approver")
FINANCE = who("fin-hj", HJ, "finance_officer")


async def add_household(sessions: Any, hid: str, village: str = HJ_VILLAGE) -> None:
    msg = mev.HouseholdSituationChanged(
        household=f"households/{hid}",
        village=c.RegionCode(code=village),
        kind=mpb.SITUATION_KIND_SPECIAL_BEREAVED,
        effective_from=c.Date(year=2020, month=1, day=1),
        head_person=f"persons/{hid}-head",
        member_count=2,
    )
    msg.occurred_at.FromSeconds(1_600_000_000)
    async with transaction(sessions) as s:
        await apply_household_event(s, msg, META)


@pytest.fixture
async def env(engine: AsyncEngine, make_api: Any) -> dict[str, Any]:
    sessions = session_factory(engine)
    host = PluginHost({"hunan": ["430000"], "hongjiang": ["431281"]})
    host.discover()
    clock = Clock()
    svc = make_api(compose(sessions, host, clock=clock))
    await add_household(sessions, "hj1")
    return {"sessions": sessions, "svc": svc, "funds": svc, "clock": clock}


async def make_program(env: dict[str, Any], budget: int = 0, money: int = 100_000_00) -> pb.Program:
    funds = env["funds"]
    fund = await funds.CreateFund(
        pb.CreateFundRequest(
            request_id=rid(),
            fund=pb.Fund(display_name="特别扶助资金", kind=pb.FUND_KIND_PROGRAM, owner_region=c.RegionCode(code=HJ)),
        ),
        None,
    )
    src = await funds.CreateFundSource(
        pb.CreateFundSourceRequest(
            request_id=rid(),
            fund_source=pb.FundSource(
                display_name="中央和省级特别扶助资金",
                kind=pb.FUND_SOURCE_KIND_PROVINCE_FINANCE,
                region=c.RegionCode(code=HJ),
            ),
        ),
        None,
    )
    await funds.PostAllocation(
        pb.PostAllocationRequest(fund=fund.name, source=src.name, amount=c.Money(fen=money), request_id=rid()), None
    )
    return await env["svc"].CreateProgram(
        pb.CreateProgramRequest(
            request_id=rid(),
            program=pb.Program(
                display_name="2022年洪江市计生特殊家庭特别扶助",
                type=pb.PROGRAM_TYPE_SPECIAL_SUPPORT,
                region=c.RegionCode(code=HJ),
                fund=fund.name,
                year=2022,
                budget=c.Money(fen=budget),
            ),
        ),
        None,
    )


async def submit(env: dict[str, Any], program: pb.Program, person: str) -> str:
    app = await env["svc"].SubmitApplication(
        pb.SubmitApplicationRequest(
            request_id=rid(),
            application=pb.Application(
                program=program.name,
                household="households/hj1",
                person=f"persons/{person}",
                period=c.Period(code="2022-08"),
                attributes={"birth_date": "1965-01-01"},
            ),
        ),
        CLERK,
    )
    return app.name


async def decide(env: dict[str, Any], name: str, *reviewers: Caller, ok: bool = True) -> pb.Application:
    got = None
    for reviewer in reviewers:
        got = await env["svc"].DecideApplication(
            pb.DecideApplicationRequest(
                request_id=rid(),
                name=name,
                comment="同意" if ok else "户籍已迁出本村",
                decision=pb.APPROVAL_DECISION_APPROVE if ok else pb.APPROVAL_DECISION_REJECT,
            ),
            reviewer,
        )
    assert got is not None
    return got


async def approved(env: dict[str, Any], program: pb.Program, person: str) -> str:
    """An application through every review: in 公示 from now."""
    name = await submit(env, program, person)
    assert (await decide(env, name, VILLAGE, TOWNSHIP, COUNTY)).state == pb.APPLICATION_STATE_IN_PUBLICITY
    return name


async def get(env: dict[str, Any], name: str) -> pb.Application:
    return await env["svc"].GetApplication(pb.GetApplicationRequest(name=name), COUNTY)


def withdraw_req(name: str, reason: str = "申请人已外出务工，自愿放弃本期补助") -> pb.WithdrawApplicationRequest:
    return pb.WithdrawApplicationRequest(name=name, reason=reason, request_id=rid())


async def withdrawn_events(env: dict[str, Any]) -> list[fev.ApplicationWithdrawn]:
    async with env["sessions"]() as s:
        rows = (
            (
                await s.execute(
                    select(OutboxEvent.payload)
                    .where(OutboxEvent.subject == WITHDRAWN_SUBJECT)
                    .order_by(OutboxEvent.seq)
                )
            )
            .scalars()
            .all()
        )
    return [fev.ApplicationWithdrawn.FromString(p) for p in rows]


async def counts(env: dict[str, Any]) -> tuple[int, int]:
    """(outbox events, withdrawal records): what a refused withdrawal must not change."""
    async with env["sessions"]() as s:
        events = (await s.execute(select(func.count()).select_from(OutboxEvent))).scalar_one()
        records = (await s.execute(select(func.count()).select_from(WithdrawalRow))).scalar_one()
    return int(events), int(records)


async def test_each_state_before_payment_withdraws_with_record_and_event(env: dict[str, Any]) -> None:
    svc, clock = env["svc"], env["clock"]
    program = await make_program(env)
    # READY_TO_PAY first: its 公示 must be over while the others' still runs.
    apps = {"READY_TO_PAY": await approved(env, program, "p-ready")}
    clock.now += timedelta(days=10)
    assert (await get(env, apps["READY_TO_PAY"])).state == pb.APPLICATION_STATE_READY_TO_PAY
    apps["SUBMITTED"] = await submit(env, program, "p-sub")
    apps["IN_REVIEW"] = await submit(env, program, "p-rev")
    assert (await decide(env, apps["IN_REVIEW"], VILLAGE)).state == pb.APPLICATION_STATE_IN_REVIEW
    apps["IN_PUBLICITY"] = await approved(env, program, "p-pub")
    apps["OBJECTED"] = await approved(env, program, "p-obj")
    obj = await svc.LodgeObjection(
        pb.LodgeObjectionRequest(request_id=rid(), application=apps["OBJECTED"], reason="该户子女仍健在"), CLERK
    )
    assert obj.state == pb.APPLICATION_STATE_OBJECTED
    # No RPC stops at APPROVED (the last approval starts 公示 at once), but the state is on the
    # wire and in _COMMITTED_STATES: a row in it must be withdrawable too.
    apps["APPROVED"] = await submit(env, program, "p-appr")
    async with transaction(env["sessions"]) as s:
        await s.execute(
            update(ApplicationRow)
            .where(ApplicationRow.id == int(apps["APPROVED"].split("/")[1]))
            .values(state="APPROVED")
        )
    assert (await get(env, apps["APPROVED"])).state == pb.APPLICATION_STATE_APPROVED

    for state, name in apps.items():
        before = await get(env, name)
        req = withdraw_req(name, reason=f"  申请人自愿放弃（{state}）  ")
        got = await svc.WithdrawApplication(req, CLERK)
        assert got.state == pb.APPLICATION_STATE_WITHDRAWN, state
        assert got.withdrawal.reason == f"申请人自愿放弃（{state}）"
        assert (got.withdrawal.audit.actor, got.withdrawal.audit.request_id) == ("clerk-hj", req.request_id)
        assert got.withdrawal.audit.time.ToDatetime(tzinfo=UTC) == clock.now
        # steps and objections stay as they were: the history is kept
        assert list(got.approval_steps) == list(before.approval_steps)
        assert list(got.objections) == list(before.objections)
        assert await get(env, name) == got
        async with env["sessions"]() as s:
            record = await s.get(WithdrawalRow, int(name.split("/")[1]))
        assert record is not None and record.previous_state == state and record.actor == "clerk-hj"

    events = await withdrawn_events(env)
    assert [e.application for e in events] == list(apps.values())
    assert [pb.ApplicationState.Name(e.previous_state)[len("APPLICATION_STATE_") :] for e in events] == list(apps)
    assert all(
        e.event_id
        and e.occurred_at.seconds
        and e.program == program.name
        and e.household == "households/hj1"
        and e.village.code == HJ_VILLAGE
        and e.period.code == "2022-08"
        and e.amount_entitled.fen == 940_00
        for e in events
    )
    # ids only: the free-text reason (it may name people) never goes on the bus
    assert all("自愿放弃" not in e.SerializeToString().decode("utf-8", "replace") for e in events)

    # Gone from 公示 and listed as withdrawn.
    assert (await svc.ListPublicity(pb.ListPublicityRequest(), COUNTY)).entries == []
    listed = await svc.ListApplications(pb.ListApplicationsRequest(state=pb.APPLICATION_STATE_WITHDRAWN), COUNTY)
    assert sorted(a.name for a in listed.applications) == sorted(apps.values())
    assert all(a.withdrawal.reason for a in listed.applications)
    # Withdrawn is over: no review, no objection on it any more.
    with pytest.raises(FailedPrecondition) as e:
        await decide(env, apps["IN_REVIEW"], TOWNSHIP)
    assert e.value.reason == "NOT_IN_REVIEW"


async def paid_program(env: dict[str, Any]) -> tuple[pb.Program, dict[str, str], pb.PaymentBatch]:
    """Three beneficiaries paid by a 2022-09 batch; the bank then paid one and failed one."""
    svc = env["svc"]
    program = await make_program(env)
    apps = {who_: await approved(env, program, who_) for who_ in ("p-issued", "p-paid", "p-failed")}
    env["clock"].now += timedelta(days=30)
    batch = await svc.CreatePaymentBatch(
        pb.CreatePaymentBatchRequest(
            request_id=rid(), program=program.name, region=c.RegionCode(code=HJ), period=c.Period(code="2022-09")
        ),
        FINANCE,
    )
    assert batch.payment_count == 3
    refs = {
        p.application: p.name
        for p in (await svc.ListPayments(pb.ListPaymentsRequest(payment_batch=batch.name), FINANCE)).payments
    }
    await svc.ImportBankResults(
        pb.ImportBankResultsRequest(
            payment_batch=batch.name,
            request_id=rid(),
            results=[
                pb.BankResult(
                    payment=refs[apps["p-paid"]], succeeded=True, paid_date=c.Date(year=2022, month=10, day=8)
                ),
                pb.BankResult(payment=refs[apps["p-failed"]], succeeded=False, failure_reason="账户已销户"),
            ],
        ),
        FINANCE,
    )
    return program, apps, batch


async def test_refused_once_money_moved_or_already_closed_and_nothing_changes(env: dict[str, Any]) -> None:
    svc = env["svc"]
    program, paid, _ = await paid_program(env)
    rejected = await submit(env, program, "p-rej")
    assert (await decide(env, rejected, VILLAGE, ok=False)).state == pb.APPLICATION_STATE_REJECTED
    withdrawn = await submit(env, program, "p-wd")
    await svc.WithdrawApplication(withdraw_req(withdrawn), CLERK)

    cases = [
        (paid["p-issued"], pb.APPLICATION_STATE_PAYMENT_ISSUED, "支付中"),
        (paid["p-paid"], pb.APPLICATION_STATE_PAID, "已支付"),
        (paid["p-failed"], pb.APPLICATION_STATE_PAYMENT_FAILED, "支付失败"),
        (rejected, pb.APPLICATION_STATE_REJECTED, "未通过"),
        (withdrawn, pb.APPLICATION_STATE_WITHDRAWN, "已撤回"),
    ]
    for name, state, label in cases:
        before = await get(env, name)
        assert before.state == state, name
        seen = await counts(env)
        with pytest.raises(FailedPrecondition) as e:
            await svc.WithdrawApplication(withdraw_req(name), CLERK)
        assert e.value.reason == "NOT_WITHDRAWABLE", label
        assert f"当前状态为“{label}”" in e.value.message and name in e.value.message
        assert e.value.metadata["state"] == pb.ApplicationState.Name(state)[len("APPLICATION_STATE_") :]
        assert await get(env, name) == before
        assert await counts(env) == seen
    with pytest.raises(FailedPrecondition) as e:
        await svc.WithdrawApplication(withdraw_req(paid["p-paid"]), CLERK)
    assert "款项已发放" in e.value.message and "退款" in e.value.message
    with pytest.raises(FailedPrecondition) as e:
        await svc.WithdrawApplication(withdraw_req(withdrawn), CLERK)
    assert "无需再次撤回" in e.value.message

    # A row still reading as in 公示 while a payment names it (a monthly beneficiary's application
    # is not rewritten by later batches): the payment decides, not the state.
    aid = int(paid["p-issued"].split("/")[1])
    async with transaction(env["sessions"]) as s:
        await s.execute(update(ApplicationRow).where(ApplicationRow.id == aid).values(state="IN_PUBLICITY"))
    assert (await get(env, paid["p-issued"])).state == pb.APPLICATION_STATE_READY_TO_PAY
    seen = await counts(env)
    with pytest.raises(FailedPrecondition) as e:
        await svc.WithdrawApplication(withdraw_req(paid["p-issued"]), CLERK)
    assert e.value.reason == "NOT_WITHDRAWABLE" and "已有支付记录" in e.value.message and "待支付" in e.value.message
    assert e.value.metadata["payment"].startswith(f"{program.name.split('/')[1]}/persons/p-issued/")
    assert await counts(env) == seen


async def test_withdrawn_application_is_never_paid_by_a_batch(env: dict[str, Any]) -> None:
    svc = env["svc"]
    program = await make_program(env)
    keep, drop = await approved(env, program, "p-keep"), await approved(env, program, "p-drop")
    env["clock"].now += timedelta(days=30)
    assert (await get(env, drop)).state == pb.APPLICATION_STATE_READY_TO_PAY
    await svc.WithdrawApplication(withdraw_req(drop), CLERK)
    for period in ("2022-09", "2022-10"):  # 特别扶助 pays enrolled beneficiaries every month
        batch = await svc.CreatePaymentBatch(
            pb.CreatePaymentBatchRequest(
                request_id=rid(), program=program.name, region=c.RegionCode(code=HJ), period=c.Period(code=period)
            ),
            FINANCE,
        )
        assert (batch.payment_count, batch.total.fen) == (1, 940_00)
        listed = await svc.ListPayments(pb.ListPaymentsRequest(payment_batch=batch.name), FINANCE)
        assert [p.application for p in listed.payments] == [keep]
    async with env["sessions"]() as s:
        keys = (await s.execute(select(PaymentRow.payment_key))).scalars().all()
    assert keys and not [k for k in keys if "p-drop" in k]
    assert (await get(env, drop)).state == pb.APPLICATION_STATE_WITHDRAWN
    assert (await get(env, keep)).state == pb.APPLICATION_STATE_PAYMENT_ISSUED


async def test_withdrawal_frees_the_program_budget(env: dict[str, Any]) -> None:
    program = await make_program(env, budget=1500_00)
    first = await approved(env, program, "p1")
    second = await submit(env, program, "p2")
    await decide(env, second, VILLAGE, TOWNSHIP)
    with pytest.raises(FailedPrecondition) as e:
        await decide(env, second, COUNTY)
    assert e.value.reason == "BUDGET_EXCEEDED"
    await env["svc"].WithdrawApplication(withdraw_req(first), CLERK)
    assert (await decide(env, second, COUNTY)).state == pb.APPLICATION_STATE_IN_PUBLICITY


async def test_idempotent_replay_input_checks_and_region(env: dict[str, Any]) -> None:
    svc = env["svc"]
    program = await make_program(env)
    name = await submit(env, program, "p1")
    req = withdraw_req(name)
    first = await svc.WithdrawApplication(req, CLERK)
    seen = await counts(env)
    assert await svc.WithdrawApplication(req, CLERK) == first  # the first answer, nothing done twice
    assert await counts(env) == seen and seen[1] == 1
    assert len(await withdrawn_events(env)) == 1
    changed = pb.WithdrawApplicationRequest(name=name, reason="另一个原因", request_id=req.request_id)
    with pytest.raises(InvalidArgument) as e:
        await svc.WithdrawApplication(changed, CLERK)
    assert e.value.reason == "REQUEST_ID_REUSED"

    other = await submit(env, program, "p2")
    for bad, field, words in (
        (withdraw_req(other, reason="   "), "reason", "请填写撤回原因"),
        (withdraw_req(other, reason="原" * 1001), "reason", "不能超过 1000 个字"),
        (withdraw_req("applications/abc"), "name", ""),
    ):
        with pytest.raises(InvalidArgument) as e:
            await svc.WithdrawApplication(bad, CLERK)
        assert [v.field for v in e.value.violations] == [field] and words in e.value.violations[0].description
    with pytest.raises(NotFound) as not_found:
        await svc.WithdrawApplication(withdraw_req("applications/999999"), CLERK)
    assert not_found.value.reason == "APPLICATION_NOT_FOUND"
    # 沅陵's clerk does not cover a 洪江 village.
    with pytest.raises(PermissionDenied) as denied:
        await svc.WithdrawApplication(withdraw_req(other), who("clerk-yl", "431222"))
    assert denied.value.reason == "OUT_OF_REGION"
    # a village clerk of the household's own village may withdraw for the applicant
    got = await svc.WithdrawApplication(withdraw_req(other), who("clerk-village", HJ_VILLAGE))
    assert got.state == pb.APPLICATION_STATE_WITHDRAWN and got.withdrawal.audit.actor == "clerk-village"
    assert (await get(env, name)).state == pb.APPLICATION_STATE_WITHDRAWN


# ------------------------------------------------------------------ over gRPC

SECRET = "w" * 40


@pytest.mark.slow
async def test_withdraw_over_grpc(db_url: str, nats_url: str, tmp_path: Path) -> None:
    config = ServiceConfig.from_env(
        "funds",
        {
            "JSX_FUNDS_DATABASE_URL": db_url,
            "JSX_FUNDS_NATS_URL": nats_url,
            "JSX_FUNDS_GRPC_ADDR": "127.0.0.1:0",
            "JSX_FUNDS_DATA_DIR": str(tmp_path),
            "JSX_PII_KEY": generate_key(),
            "JSX_BLIND_INDEX_KEY": generate_key(),
            "JSX_AUTH_SECRET": SECRET,
        },
    )
    await asyncio.to_thread(migrate, db_url)
    rt, service, _ = build_runtime(config)
    port = await rt.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.FundsServiceStub(channel)

    def md(subject: str, roles: list[str], region: str = HJ) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {issue_token(SECRET, subject, roles, region)}"),)

    clerk, appr, fin = (
        md("clerk-hj", ["county_clerk"]),
        md("appr-hj", ["county_approver"]),
        md("fin-hj", ["finance_officer"]),
    )
    try:
        await add_household(service.sessions, "g1")
        fund = await stub.CreateFund(
            pb.CreateFundRequest(
                request_id=rid(),
                fund=pb.Fund(
                    display_name="特别扶助资金", kind=pb.FUND_KIND_PROGRAM, owner_region=c.RegionCode(code=HJ)
                ),
            ),
            metadata=fin,
        )
        program = await stub.CreateProgram(
            pb.CreateProgramRequest(
                request_id=rid(),
                program=pb.Program(
                    display_name="2022年洪江市计生特殊家庭特别扶助",
                    type=pb.PROGRAM_TYPE_SPECIAL_SUPPORT,
                    region=c.RegionCode(code=HJ),
                    fund=fund.name,
                    year=2022,
                ),
            ),
            metadata=appr,
        )
        app = await stub.SubmitApplication(
            pb.SubmitApplicationRequest(
                request_id=rid(),
                application=pb.Application(
                    program=program.name,
                    household="households/g1",
                    person="persons/g1-mother",
                    period=c.Period(code="2022-08"),
                    attributes={"birth_date": "1965-01-01"},
                ),
            ),
            metadata=clerk,
        )

        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.WithdrawApplication(withdraw_req(app.name, reason=""), metadata=clerk)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        _, bad_request, _ = error_details(e.value)
        assert bad_request is not None
        assert [v.field for v in bad_request.field_violations] == ["reason"]
        assert "请填写撤回原因" in bad_request.field_violations[0].description
        # an approver holds no funds.applications.write
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.WithdrawApplication(withdraw_req(app.name), metadata=appr)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED

        got = await stub.WithdrawApplication(withdraw_req(app.name), metadata=clerk)
        assert got.state == pb.APPLICATION_STATE_WITHDRAWN and got.withdrawal.audit.actor == "clerk-hj"
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.WithdrawApplication(withdraw_req(app.name), metadata=clerk)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "当前状态为“已撤回”" in details_of(e.value) and "无需再次撤回" in details_of(e.value)
        assert reason_of(e.value) == "NOT_WITHDRAWABLE"
    finally:
        await channel.close()
        await rt.stop(0)


async def test_withdrawal_racing_a_batch_is_either_withdrawn_or_paid(env: dict[str, Any]) -> None:
    """The withdrawal takes the fund's row lock the batch holds: never withdrawn *and* paid."""
    svc = env["svc"]
    program = await make_program(env)
    names = [await approved(env, program, f"p{i}") for i in range(12)]
    env["clock"].now += timedelta(days=30)

    async def withdraw(name: str, delay: float) -> None:
        await asyncio.sleep(delay)  # spread over the batch's run: before, inside and after its lock
        try:
            await svc.WithdrawApplication(withdraw_req(name), CLERK)
        except FailedPrecondition as e:
            reason = e.reason
        else:
            return
        assert reason == "NOT_WITHDRAWABLE"

    batch = svc.CreatePaymentBatch(
        pb.CreatePaymentBatchRequest(
            request_id=rid(), program=program.name, region=c.RegionCode(code=HJ), period=c.Period(code="2022-09")
        ),
        FINANCE,
    )
    await asyncio.gather(batch, *(withdraw(n, i * 0.01) for i, n in enumerate(names[::2])))
    async with env["sessions"]() as s:
        paid = set((await s.execute(select(PaymentRow.application_id))).scalars())
        gone = set((await s.execute(select(WithdrawalRow.application_id))).scalars())
        states = dict((await s.execute(select(ApplicationRow.id, ApplicationRow.state))).all())
    assert not paid & gone
    assert {i for i, st in states.items() if st == "WITHDRAWN"} == gone
    assert paid | gone == set(states)  # every application either paid or withdrawn
