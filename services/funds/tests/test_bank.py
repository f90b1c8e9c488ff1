"""Bank results, reconciliation and program reports on SQLite and PostgreSQL:
a 洪江 特别扶助 batch comes back half paid, half failed; the failed money
returns to the fund, the failed beneficiary/period may be paid again (and
only once), a bad file is refused whole with one Chinese violation per line,
re-importing changes nothing, and the reconciliation equation holds."""

from __future__ import annotations

import asyncio
import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from jsx.common.v1 import common_pb2 as c
from jsx.funds.v1 import events_pb2 as fev
from jsx.funds.v1 import funds_pb2 as pb
from jsx.members.v1 import events_pb2 as mev
from jsx.members.v1 import members_pb2 as mpb
from jsx_funds.disbursement import tables as db
from jsx_funds.disbursement.bank_file import read_bank_file
from jsx_funds.disbursement.service import STATE
from jsx_funds.disbursement.tables import BankResultRow, PaymentFailureRow, PaymentRow, payment_key
from jsx_funds.entrypoints.grpc import compose
from jsx_funds.ledger.tables import JournalRow
from jsx_funds.ledger.verify import verify
from jsx_funds.projections.consumers import apply_household_event
from jsx_funds.reporting.wire import summary, wan_yuan
from jsxcore.db import session_factory, transaction
from jsxcore.errors import AlreadyExists, InvalidArgument
from jsxcore.outbox import EventMeta, OutboxEvent
from jsxcore.plugins import PluginHost
from jsxcore.testing.helpers import Clock, rid, who
from jsxcore.values import Money

HJ = "431281"


#: The day the program is set up (公示 starts): 2022-07-04, 10:00 in China.
START = datetime(2022, 7, 4, 2, 0, tzinfo=UTC)


async def enrol(svc: Any, funds: Any, sessions: Any, county: str, fund_fen: int) -> pb.Program:
    """A 特别扶助 program with a 失独 (940 元 in 洪江) and a 伤残 (580 元) mother enrolled."""
    village, township = county + "101201", county + "101"
    meta = EventMeta(event_id="e", subject="s", event_type="t", num_delivered=1, stream_seq=1, published_at=None)
    for hid, kind, grade in (
        ("b", mpb.SITUATION_KIND_SPECIAL_BEREAVED, 0),
        ("d", mpb.SITUATION_KIND_SPECIAL_DISABLED, 3),
    ):
        async with transaction(sessions) as s:
            await apply_household_event(
                s,
                mev.HouseholdSituationChanged(
                    household=f"households/{county}-{hid}",
                    village=c.RegionCode(code=village),
                    kind=kind,
                    effective_from=c.Date(year=2020, month=1, day=1),
                    disability_grade=grade,
                    head_person=f"persons/{county}-{hid}-head",
                    member_count=3,
                ),
                meta,
            )
    fund = await funds.CreateFund(
        pb.CreateFundRequest(
            request_id=rid(),
            fund=pb.Fund(
                display_name="特别扶助资金", kind=pb.FUND_KIND_PROGRAM, owner_region=c.RegionCode(code=county)
            ),
        ),
        None,
    )
    src = await funds.CreateFundSource(
        pb.CreateFundSourceRequest(
            request_id=rid(),
            fund_source=pb.FundSource(
                display_name="中央和省级特别扶助资金",
                kind=pb.FUND_SOURCE_KIND_PROVINCE_FINANCE,
                region=c.RegionCode(code=county),
            ),
        ),
        None,
    )
    await funds.PostAllocation(
        pb.PostAllocationRequest(fund=fund.name, source=src.name, amount=c.Money(fen=fund_fen), request_id=rid()), None
    )
    program = await svc.CreateProgram(
        pb.CreateProgramRequest(
            request_id=rid(),
            program=pb.Program(
                display_name="2022年洪江市计生特别扶助",
                type=pb.PROGRAM_TYPE_SPECIAL_SUPPORT,
                region=c.RegionCode(code=county),
                fund=fund.name,
                year=2022,
            ),
        ),
        None,
    )
    for hid in ("b", "d"):
        app = await svc.SubmitApplication(
            pb.SubmitApplicationRequest(
                request_id=rid(),
                application=pb.Application(
                    program=program.name,
                    household=f"households/{county}-{hid}",
                    person=f"persons/{county}-{hid}-mother",
                    period=c.Period(code="2022-07"),
                    attributes={"birth_date": "1966-03-01"},
                ),
            ),
            who(f"clerk-{county}", county),
        )
        for reviewer, region in (("v", village), ("t", township), ("c", county)):
            await svc.DecideApplication(
                pb.DecideApplicationRequest(
                    request_id=rid(), name=app.name, decision=pb.APPROVAL_DECISION_APPROVE, comment="同意"
                ),
                who(f"{reviewer}-{county}", region),
            )
    return program


@pytest.fixture
async def env(engine: AsyncEngine, make_api: Any) -> dict[str, Any]:
    sessions = session_factory(engine)
    host = PluginHost({"hunan": ["430000"], "hongjiang": ["431281"], "yuanling": ["431222"]})
    host.discover()
    clock = Clock(START)
    svc = funds = reports = make_api(compose(sessions, host, clock=clock))
    program = await enrol(svc, funds, sessions, HJ, 10_000_00)
    clock.now += timedelta(days=30)  # 公示 over
    batch = await svc.CreatePaymentBatch(
        pb.CreatePaymentBatchRequest(
            request_id=rid(), program=program.name, region=c.RegionCode(code=HJ), period=c.Period(code="2022-08")
        ),
        who("fin-hj", HJ),
    )
    listed = await svc.ListPayments(pb.ListPaymentsRequest(payment_batch=batch.name), None)
    refs = {p.payee.split("-")[1]: p.name for p in listed.payments}  # "b" (940) / "d" (580) → reference
    fund_id = int((await svc.GetProgram(pb.GetProgramRequest(name=program.name), None)).fund.split("/")[1])
    return {
        "svc": svc,
        "reports": reports,
        "funds": funds,
        "sessions": sessions,
        "program": program,
        "batch": batch,
        "refs": refs,
        "fund": fund_id,
    }


def write_csv(path: Any, rows: Any) -> None:
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(["序号", "业务参考号", "收款人编号", "金额（元）", "状态", "失败原因", "银行流水号", "支付日期"])
        for i, (ref, status, reason) in enumerate(rows, 1):
            w.writerow([i, ref, "", "", status, reason, f"HJ2022080{i}" if status == "成功" else "", "2022-08-15"])


async def count(env: dict[str, Any], table: Any) -> int:
    async with env["sessions"]() as s:
        return int((await s.execute(select(func.count()).select_from(table))).scalar_one())


async def outbox(env: dict[str, Any], subject: str) -> list[bytes]:
    async with env["sessions"]() as s:
        return list((await s.execute(select(OutboxEvent.payload).where(OutboxEvent.subject == subject))).scalars())


async def test_results_return_failed_money_reconcile_and_allow_one_retry(
    env: dict[str, Any], db_url: str, tmp_path: Path
) -> None:
    svc, batch, refs = env["svc"], env["batch"], env["refs"]
    rec = await svc.GetReconciliation(pb.GetReconciliationRequest(payment_batch=batch.name), None)
    assert (rec.issued_count, rec.pending_count, rec.ledger_total.fen, rec.balanced) == (2, 2, 1520_00, True)

    f = tmp_path / "回盘.csv"
    write_csv(f, [(refs["b"], "成功", ""), (refs["d"], "失败", "账户已销户")])
    from jsxcore.cli import main

    assert await asyncio.to_thread(main, ["funds", "bank-results", str(f), "--database-url", db_url]) == 0

    got = await svc.GetPaymentBatch(pb.GetPaymentBatchRequest(name=batch.name), None)
    assert (got.state, got.paid_total.fen, got.failed_total.fen) == (pb.PAYMENT_BATCH_STATE_SETTLED, 940_00, 580_00)
    bal = await env["funds"].balance(env["fund"])
    assert (bal.available.fen, bal.expended.fen) == (10_000_00 - 940_00, 940_00)  # 580 back in the fund
    rec = await svc.GetReconciliation(pb.GetReconciliationRequest(payment_batch=batch.name), None)
    assert rec.issued_total.fen == rec.paid_total.fen + rec.failed_total.fen + rec.pending_total.fen == 1520_00
    assert (rec.paid_count, rec.failed_count, rec.pending_count, rec.ledger_total.fen) == (1, 1, 0, 940_00)
    assert rec.balanced and not rec.discrepancies
    assert [(p.name, p.failure_reason, p.state) for p in rec.failed_payments] == [
        (refs["d"], "账户已销户", pb.PAYMENT_STATE_FAILED)
    ]
    assert "已支付 1 笔 940.00 元" in rec.summary and "失败退回 1 笔 580.00 元" in rec.summary
    paid_ev = [fev.PaymentPaid.FromString(p) for p in await outbox(env, "jsx.funds.payment.paid")]
    failed_ev = [fev.PaymentFailed.FromString(p) for p in await outbox(env, "jsx.funds.payment.failed")]
    assert [(e.payment, e.amount.fen, e.paid_date.day) for e in paid_ev] == [(refs["b"], 940_00, 15)]
    assert [(e.payment, e.failure_reason, e.payment_batch) for e in failed_ev] == [
        (refs["d"], "账户已销户", batch.name)
    ]
    apps = {
        a.person: a.state for a in (await svc.ListApplications(pb.ListApplicationsRequest(), who("c", HJ))).applications
    }
    assert apps == {
        f"persons/{HJ}-b-mother": pb.APPLICATION_STATE_PAID,
        f"persons/{HJ}-d-mother": pb.APPLICATION_STATE_PAYMENT_FAILED,
    }

    # The same file again: nothing changes (no journal, no event), the equation still holds.
    journals = await count(env, JournalRow)
    again = await svc.disbursement.import_bank_results(
        int(batch.name.split("/")[1]), [ln.result for ln in read_bank_file(f)], caller=None, idem=None
    )
    assert (again.paid_count, again.failed_count) == (0, 0)
    assert await count(env, JournalRow) == journals and len(await outbox(env, "jsx.funds.payment.failed")) == 1

    # The failed beneficiary/period may be paid again — once; the paid one never.
    pid = env["program"].name.split("/")[1]
    key_b, key_d = (payment_key(int(pid), f"persons/{HJ}-{x}-mother", "2022-08") for x in "bd")
    async with env["sessions"]() as s:
        assert await db.live_payment_keys(s, [key_b, key_d]) == {key_b}
    async with transaction(env["sessions"]) as s:
        _, retry = await env["svc"].disbursement.pay(
            s, env["fund"], Money(580_00), payment_key=key_d, payee=f"persons/{HJ}-d-mother", actor="t"
        )
    assert retry.payment_key == key_d + "#2"
    for key in (key_b, key_d):
        with pytest.raises(AlreadyExists) as e:
            async with transaction(env["sessions"]) as s:
                await env["svc"].disbursement.pay(
                    s, env["fund"], Money(580_00), payment_key=key, payee="persons/x", actor="t"
                )
        assert e.value.reason == "ALREADY_PAID"
    async with env["sessions"]() as s:
        assert await db.live_payment_keys(s, [key_b, key_d]) == {key_b, key_d}
        assert await verify(s) == []
    assert await count(env, PaymentFailureRow) == 1
    # verify catches a failure recorded without its money coming back.
    async with transaction(env["sessions"]) as s:
        s.add(
            PaymentFailureRow(
                payment_id=retry.journal_id,
                return_journal_id=retry.journal_id,
                reason="x",
                actor="t",
                failed_at=datetime.now(UTC),
            )
        )
    async with env["sessions"]() as s:
        problems = [str(p) for p in await verify(s)]
    assert len(problems) == 1 and "银行已退回" in problems[0] and "580.00" in problems[0]


async def test_bad_file_is_refused_whole_with_a_violation_per_line(
    env: dict[str, Any], db_url: str, tmp_path: Path
) -> None:
    svc, batch, refs = env["svc"], env["batch"], env["refs"]
    bid = int(batch.name.split("/")[1])
    lines = [
        pb.BankResult(payment=refs["b"], succeeded=True),
        pb.BankResult(payment=refs["b"], succeeded=True),  # duplicate
        pb.BankResult(payment=f"paymentBatches/{bid + 7}/payments/1", succeeded=True),  # another batch
        pb.BankResult(payment="HJ-0001", succeeded=True),  # not a reference
        pb.BankResult(payment=refs["d"], succeeded=False),  # no reason
    ]
    with pytest.raises(InvalidArgument) as e:
        await svc.ImportBankResults(
            pb.ImportBankResultsRequest(payment_batch=batch.name, results=lines, request_id=rid()), None
        )
    by = {v.field: v.description for v in e.value.violations}
    assert set(by) == {"results[1].payment", "results[2].payment", "results[3].payment", "results[4].failure_reason"}
    assert "与第 1 条重复" in by["results[1].payment"] and "不是本批次" in by["results[2].payment"]
    assert "须填写失败原因" in by["results[4].failure_reason"]
    # Unknown payment (found only against the database) is reported the same way.
    with pytest.raises(InvalidArgument) as e:
        await svc.ImportBankResults(
            pb.ImportBankResultsRequest(
                payment_batch=batch.name,
                request_id=rid(),
                results=[
                    pb.BankResult(payment=refs["b"], succeeded=True),
                    pb.BankResult(payment=f"{batch.name}/payments/999999", succeeded=True),
                ],
            ),
            None,
        )
    assert [v.field for v in e.value.violations] == ["results[1].payment"]
    assert "没有这笔支付" in e.value.violations[0].description
    async with env["sessions"]() as s:
        states = set(
            (
                await s.execute(
                    select(STATE)
                    .select_from(PaymentRow)
                    .outerjoin(BankResultRow, BankResultRow.payment_id == PaymentRow.id)
                )
            ).scalars()
        )
    assert states == {"PENDING"}  # nothing applied, not even the good line

    # Settled as paid; a later file saying it failed is refused, naming the file row.
    await svc.ImportBankResults(
        pb.ImportBankResultsRequest(
            payment_batch=batch.name, request_id=rid(), results=[pb.BankResult(payment=refs["b"], succeeded=True)]
        ),
        None,
    )
    f = tmp_path / "更正.csv"
    write_csv(f, [(refs["d"], "失败", "户名不符"), (refs["b"], "失败", "账户冻结")])
    from jsxcore.cli import main

    assert await asyncio.to_thread(main, ["funds", "bank-results", str(f), "--database-url", db_url]) == 2
    async with env["sessions"]() as s:
        assert dict(
            (
                await s.execute(
                    select(PaymentRow.id, STATE).outerjoin(BankResultRow, BankResultRow.payment_id == PaymentRow.id)
                )
            ).all()
        ) == {int(refs["b"].rsplit("/", 1)[1]): "PAID", int(refs["d"].rsplit("/", 1)[1]): "PENDING"}
    assert await count(env, PaymentFailureRow) == 0


def test_bank_file_xlsx_and_unknown_status(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    assert isinstance(ws, Worksheet)
    ws.append(["业务参考号", "状态", "失败原因", "支付日期"])
    ws.append(["paymentBatches/3/payments/10", "成功", None, datetime(2022, 8, 15)])
    ws.append(["paymentBatches/3/payments/11", "失败", "卡号错误", None])
    ws.append(["合计", None, None, None])
    wb.save(tmp_path / "r.xlsx")
    got = read_bank_file(tmp_path / "r.xlsx")
    assert [
        (
            ln.row,
            ln.result.payment,
            ln.result.succeeded,
            ln.result.failure_reason,
            ln.result.paid_date.day if ln.result.paid_date else 0,
        )
        for ln in got
    ] == [(2, "paymentBatches/3/payments/10", True, "", 15), (3, "paymentBatches/3/payments/11", False, "卡号错误", 0)]
    (tmp_path / "bad.csv").write_text("业务参考号,状态\npaymentBatches/3/payments/10,处理中\n", encoding="gb18030")
    with pytest.raises(InvalidArgument) as e:
        read_bank_file(tmp_path / "bad.csv")
    assert "第 2 行" in e.value.violations[0].description and "处理中" in e.value.violations[0].description


async def test_program_report_and_xlsx(env: dict[str, Any], db_url: str, tmp_path: Path) -> None:
    assert wan_yuan(614_9000_00) == "614.9" and wan_yuan(1_0000_00) == "1" and wan_yuan(12_345_67) == "1.23"
    assert summary(614_9000_00, 1515, 4269) == "资金总额 614.9 万元，惠及计生家庭 1515 户 4269 人"
    svc, batch, refs, program = env["svc"], env["batch"], env["refs"], env["program"]
    req = pb.GetProgramReportRequest(program=program.name, period=c.Period(code="2022"))
    r = await env["reports"].GetProgramReport(req, who("c", HJ))
    assert (r.households_helped, r.people_helped, r.amount_paid.fen) == (0, 0, 0)  # nothing confirmed by the bank yet
    await svc.ImportBankResults(
        pb.ImportBankResultsRequest(
            payment_batch=batch.name,
            request_id=rid(),
            results=[
                pb.BankResult(payment=refs["b"], succeeded=True),
                pb.BankResult(payment=refs["d"], succeeded=False, failure_reason="账户已销户"),
            ],
        ),
        None,
    )
    r = await env["reports"].GetProgramReport(req, who("c", HJ))
    assert (r.households_helped, r.persons_helped, r.people_helped, r.amount_paid.fen) == (1, 1, 1, 940_00)
    assert r.fund_total.fen == 940_00 and r.amount_approved.fen == 940_00 + 580_00  # paid; the 580 came back
    assert r.summary == "资金总额 0.09 万元，惠及计生家庭 1 户 1 人"
    states = {s.state: s.count for s in r.states}
    assert states == {pb.APPLICATION_STATE_PAID: 1, pb.APPLICATION_STATE_PAYMENT_FAILED: 1}
    other = await env["reports"].GetProgramReport(
        pb.GetProgramReportRequest(program=program.name, period=c.Period(code="2021")), who("c", HJ)
    )
    assert other.households_helped == 0 and other.amount_paid.fen == 0

    out = tmp_path / "报表.xlsx"
    from jsxcore.cli import main

    assert (
        await asyncio.to_thread(
            main, ["funds", "report", "--region", HJ, "--year", "2022", "--xlsx", str(out), "--database-url", db_url]
        )
        == 0
    )
    ws = load_workbook(out).active
    assert isinstance(ws, Worksheet)
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][:4] == ("项目", "项目编号", "地区代码", "期间")
    assert rows[1][0] == "2022年洪江市计生特别扶助" and rows[1][6] == 940 and rows[1][7:9] == (1, 1)
    assert rows[1][9] == "资金总额 0.09 万元，惠及计生家庭 1 户 1 人"


async def test_bank_results_reconciliation_and_report_over_grpc(
    env: dict[str, Any], db_url: str, nats_url: str, tmp_path: Path
) -> None:
    """The same flow through the real server: rich errors, permissions, events on a real nats-server."""
    import grpc
    import nats

    from jsx.funds.v1 import funds_pb2_grpc
    from jsx_funds.entrypoints.grpc import build_runtime
    from jsxcore.auth import issue_token
    from jsxcore.config import ServiceConfig
    from jsxcore.pii import generate_key
    from jsxcore.runtime import error_details

    secret = "b" * 40
    config = ServiceConfig.from_env(
        "funds",
        {
            "JSX_FUNDS_DATABASE_URL": db_url,
            "JSX_FUNDS_NATS_URL": nats_url,
            "JSX_FUNDS_GRPC_ADDR": "127.0.0.1:0",
            "JSX_FUNDS_DATA_DIR": str(tmp_path),
            "JSX_PII_KEY": generate_key(),
            "JSX_BLIND_INDEX_KEY": generate_key(),
            "JSX_AUTH_SECRET": secret,
        },
    )
    rt, _, _ = build_runtime(config)
    port = await rt.start()
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        await js.purge_stream("JSX_FUNDS")
    except Exception:
        pass  # created by the relay on first publish
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = funds_pb2_grpc.FundsServiceStub(channel)

    def md(sub: str, roles: list[str], region: str = HJ):
        return (("authorization", f"Bearer {issue_token(secret, sub, roles, region)}"),)

    fin, clerk, other = (
        md("fin-hj", ["finance_officer"]),
        md("clerk-hj", ["county_clerk"]),
        md("fin-yl", ["finance_officer"], "431222"),
    )
    batch, refs = env["batch"], env["refs"]
    try:
        good = pb.ImportBankResultsRequest(
            payment_batch=batch.name,
            request_id=rid(),
            results=[
                pb.BankResult(payment=refs["b"], succeeded=True, bank_reference="HJ001"),
                pb.BankResult(payment=refs["d"], succeeded=False, failure_reason="户名与账号不符"),
            ],
        )
        for who_, code in ((clerk, grpc.StatusCode.PERMISSION_DENIED), (other, grpc.StatusCode.PERMISSION_DENIED)):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.ImportBankResults(good, metadata=who_, timeout=20)
            assert e.value.code() == code
        bad = pb.ImportBankResultsRequest(
            payment_batch=batch.name,
            request_id=rid(),
            results=[good.results[0], good.results[0], pb.BankResult(payment=refs["d"], succeeded=False)],
        )
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.ImportBankResults(bad, metadata=fin, timeout=20)
        _, badreq, _ = error_details(e.value)
        assert badreq is not None
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in badreq.field_violations] == ["results[1].payment", "results[2].failure_reason"]
        res = await stub.ImportBankResults(good, metadata=fin, timeout=20)
        assert (res.paid_count, res.failed_count, res.payment_batch.state) == (1, 1, pb.PAYMENT_BATCH_STATE_SETTLED)
        assert await stub.ImportBankResults(good, metadata=fin, timeout=20) == res  # same request_id: first answer
        rec = await stub.GetReconciliation(
            pb.GetReconciliationRequest(payment_batch=batch.name), metadata=clerk, timeout=20
        )
        assert (
            rec.balanced and rec.issued_total.fen == rec.paid_total.fen + rec.failed_total.fen + rec.pending_total.fen
        )
        assert [p.failure_reason for p in rec.failed_payments] == ["户名与账号不符"]
        rep = await stub.GetProgramReport(
            pb.GetProgramReportRequest(program=env["program"].name), metadata=clerk, timeout=20
        )
        assert rep.summary == "资金总额 0.09 万元，惠及计生家庭 1 户 1 人" and rep.amount_paid.fen == 940_00

        sub = await js.pull_subscribe("jsx.funds.payment.*", durable=None, stream="JSX_FUNDS")
        got: dict[str, bytes] = {}
        wanted = {"jsx.funds.payment.paid", "jsx.funds.payment.failed"}
        deadline = asyncio.get_running_loop().time() + 20
        # (The batch's own issue events are PaymentsIssued pages on jsx.funds.payment_batch.issued.)
        while not wanted <= set(got) and asyncio.get_running_loop().time() < deadline:
            try:
                for m in await sub.fetch(10, timeout=1):
                    got.setdefault(m.subject, m.data)
                    await m.ack()
            except TimeoutError:  # nats-py raises its own subclass, or the bare one near the deadline
                pass
        assert {"jsx.funds.payment.paid", "jsx.funds.payment.failed"} <= set(got)
        failed = fev.PaymentFailed.FromString(got["jsx.funds.payment.failed"])
        assert (failed.payment, failed.amount.fen, failed.failure_reason) == (refs["d"], 580_00, "户名与账号不符")
    finally:
        await channel.close()
        await rt.stop(0)
        await nc.close()


async def test_failed_beneficiary_is_paid_again_in_a_later_batch(env: dict[str, Any]) -> None:
    svc, batch, refs, program = env["svc"], env["batch"], env["refs"], env["program"]
    await svc.ImportBankResults(
        pb.ImportBankResultsRequest(
            payment_batch=batch.name,
            request_id=rid(),
            results=[
                pb.BankResult(payment=refs["b"], succeeded=True),
                pb.BankResult(payment=refs["d"], succeeded=False, failure_reason="账户已销户"),
            ],
        ),
        None,
    )
    again = await svc.CreatePaymentBatch(
        pb.CreatePaymentBatchRequest(
            request_id=rid(), program=program.name, region=c.RegionCode(code=HJ), period=c.Period(code="2022-08")
        ),
        who("fin-hj", HJ),
    )
    listed = await svc.ListPayments(pb.ListPaymentsRequest(payment_batch=again.name), None)
    assert [(p.payee, p.amount.fen) for p in listed.payments] == [(f"persons/{HJ}-d-mother", 580_00)]
    async with env["sessions"]() as s:
        keys = set((await s.execute(select(PaymentRow.payment_key))).scalars())
        assert await verify(s) == []
    assert sum(k.endswith("2022-08#2") for k in keys) == 1
