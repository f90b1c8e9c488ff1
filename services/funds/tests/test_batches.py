"""特别扶助 payment batches on SQLite and PostgreSQL: amounts from the county
plugins for the paid month (洪江 940/580 vs 沅陵 national 590/460 for
2022-08), one payment per (program, beneficiary, period) under retries and 20
concurrent requests, ledger entries, the payment file, refusal when the fund
is short."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from jsx.common.v1 import common_pb2 as c
from jsx.funds.v1 import events_pb2 as fev
from jsx.funds.v1 import funds_pb2 as pb
from jsx.members.v1 import events_pb2 as mev
from jsx.members.v1 import members_pb2 as mpb
from jsx_funds.disbursement import domain as dd
from jsx_funds.disbursement.payment_file import csv_field_sql
from jsx_funds.disbursement.service import DisbursementService
from jsx_funds.disbursement.tables import PaymentBatchRow, PaymentRow
from jsx_funds.entrypoints.grpc import compose
from jsx_funds.ledger.verify import verify
from jsx_funds.programs.tables import ApplicationRow
from jsx_funds.projections.consumers import apply_household_event
from jsx_funds.projections.tables import HouseholdProjection, SituationProjection
from jsxcore.db import session_factory, transaction
from jsxcore.errors import FailedPrecondition
from jsxcore.outbox import EventMeta, OutboxEvent
from jsxcore.plugins import PluginHost
from jsxcore.testing.helpers import Clock, rid, who

COUNTIES = {"hj": "431281", "yl": "431222"}


#: The day the programs are set up (公示 starts): 2022-07-04, 10:00 in China.
START = datetime(2022, 7, 4, 2, 0, tzinfo=UTC)


async def enrol(svc: Any, funds: Any, sessions: Any, county: str, fund_fen: int) -> pb.Program:
    """A county's 特别扶助 program with one 失独 and one 伤残 beneficiary enrolled (approved, 公示 started)."""
    village, township = county + "101201", county + "101"
    meta = EventMeta(event_id="e", subject="s", event_type="t", num_delivered=1, stream_seq=1, published_at=None)
    for hid, kind, grade in (
        ("b", mpb.SITUATION_KIND_SPECIAL_BEREAVED, 0),
        ("d", mpb.SITUATION_KIND_SPECIAL_DISABLED, 3),
    ):
        msg = mev.HouseholdSituationChanged(
            household=f"households/{county}-{hid}",
            village=c.RegionCode(code=village),
            kind=kind,
            effective_from=c.Date(year=2020, month=1, day=1),
            disability_grade=grade,
            head_person=f"persons/{county}-{hid}-head",
            member_count=2,
        )
        async with transaction(sessions) as s:
            await apply_household_event(s, msg, meta)
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
                display_name=f"2022年{county}计生特别扶助",
                type=pb.PROGRAM_TYPE_SPECIAL_SUPPORT,
                region=c.RegionCode(code=county),
                fund=fund.name,
                year=2022,
            ),
        ),
        None,
    )
    clerk = who(f"clerk-{county}", county)
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
            clerk,
        )
        for reviewer, region in (("v", village), ("t", township), ("c", county)):
            await svc.DecideApplication(
                pb.DecideApplicationRequest(
                    request_id=rid(), name=app.name, decision=pb.APPROVAL_DECISION_APPROVE, comment="同意"
                ),
                who(f"{reviewer}-{county}", region),
            )
    return program


def batch_req(program: pb.Program, county: str, period: str) -> pb.CreatePaymentBatchRequest:
    return pb.CreatePaymentBatchRequest(
        request_id=rid(), program=program.name, region=c.RegionCode(code=county), period=c.Period(code=period)
    )


@pytest.fixture
async def env(engine: AsyncEngine, make_api: Any) -> dict[str, Any]:
    sessions = session_factory(engine)
    host = PluginHost({"hunan": ["430000"], "hongjiang": ["431281"], "yuanling": ["431222"]})
    host.discover()
    clock = Clock(START)
    svc = funds = make_api(compose(sessions, host, clock=clock))
    hj = await enrol(svc, funds, sessions, "431281", 10_000_00)
    yl = await enrol(svc, funds, sessions, "431222", 1_050_00)  # exactly one month of 590 + 460
    return {"svc": svc, "funds": funds, "sessions": sessions, "clock": clock, "hj": hj, "yl": yl}


async def id_list(svc: DisbursementService, batch_id: int) -> str:
    """The batch's internal id list (``jsx funds payment-file --out``) as one string."""
    out = io.StringIO()
    await svc.write_id_list(batch_id, out)
    return out.getvalue()


async def payments(env: dict[str, Any], like: str = "") -> dict[str, int]:
    async with env["sessions"]() as s:
        rows = (
            await s.execute(
                select(PaymentRow.payment_key, PaymentRow.amount).where(PaymentRow.payment_key.like(f"%{like}%"))
            )
        ).all()
    return dict(rows)


async def test_monthly_batch_county_amounts_once_each(env: dict[str, Any], db_url: str, tmp_path: Path) -> None:
    svc, hj, yl = env["svc"], env["hj"], env["yl"]
    admin = who("fin-hj", "431281")
    # 公示 still running: nobody is payable yet.
    with pytest.raises(FailedPrecondition) as e:
        await svc.CreatePaymentBatch(batch_req(hj, "431281", "2022-08"), admin)
    assert e.value.reason == "NOTHING_TO_PAY"
    env["clock"].now += timedelta(days=30)

    req = batch_req(hj, "431281", "2022-08")
    b = await svc.CreatePaymentBatch(req, admin)
    assert (b.payment_count, b.total.fen, b.state) == (2, 940_00 + 580_00, pb.PAYMENT_BATCH_STATE_ISSUED)
    assert await svc.CreatePaymentBatch(req, admin) == b  # an idempotent retry: the first answer, nothing paid
    y = await svc.CreatePaymentBatch(batch_req(yl, "431222", "2022-08"), who("fin-yl", "431222"))
    assert y.total.fen == 590_00 + 460_00
    paid = await payments(env, "2022-08")
    pid_hj, pid_yl = hj.name.split("/")[1], yl.name.split("/")[1]
    assert paid == {
        f"{pid_hj}/persons/431281-b-mother/2022-08": 940_00,
        f"{pid_hj}/persons/431281-d-mother/2022-08": 580_00,
        f"{pid_yl}/persons/431222-b-mother/2022-08": 590_00,
        f"{pid_yl}/persons/431222-d-mother/2022-08": 460_00,
    }
    # A new request for the same month pays nothing again.
    with pytest.raises(FailedPrecondition) as e:
        await svc.CreatePaymentBatch(batch_req(hj, "431281", "2022-08"), admin)
    assert e.value.reason == "NOTHING_TO_PAY"

    listed = await svc.ListPayments(pb.ListPaymentsRequest(payment_batch=b.name), admin)
    assert sorted(p.amount.fen for p in listed.payments) == [580_00, 940_00]
    assert {p.payee for p in listed.payments} == {"persons/431281-b-mother", "persons/431281-d-mother"}
    csv_text = await id_list(svc.disbursement, int(b.name.split("/")[1]))
    lines = csv_text.lstrip("\ufeff").strip().splitlines()
    assert lines[0].startswith("序号,收款人编号") and lines[-1].startswith("合计,2,,,1520.00")
    assert any("persons/431281-b-mother" in ln and "940.00" in ln for ln in lines)
    # Byte for byte the layout on both databases (PostgreSQL renders it with COPY … TO STDOUT, SQLite in Python).
    program_name = (await svc.GetProgram(pb.GetProgramRequest(name=hj.name), None)).display_name
    want = ["\ufeff序号,收款人编号,户编号,村（社区）代码,金额（元）,发放期间,项目,业务参考号"]
    for i, p in enumerate(sorted(listed.payments, key=lambda p: int(p.name.rsplit("/", 1)[1])), start=1):
        want.append(
            f"{i},{p.payee},{p.household},431281101201,{p.amount.fen // 100}.{p.amount.fen % 100:02d},"
            f"2022-08,{program_name},{p.name}"
        )
    want.append("合计,2,,,1520.00,,,")
    assert csv_text == "\r\n".join(want) + "\r\n"
    out = tmp_path / "pay.csv"
    from jsxcore.cli import main

    assert (
        await asyncio.to_thread(main, ["funds", "payment-file", b.name, "--out", str(out), "--database-url", db_url])
        == 0
    )
    assert out.read_bytes().decode("utf-8") == csv_text

    bal = await env["funds"].balance(
        int((await svc.GetProgram(pb.GetProgramRequest(name=hj.name), None)).fund.split("/")[1])
    )
    assert bal.available.fen == 10_000_00 - 1520_00 and bal.expended.fen == 1520_00
    # 沅陵's fund is now empty: September is refused whole, nothing posted.
    with pytest.raises(FailedPrecondition) as e:
        await svc.CreatePaymentBatch(batch_req(yl, "431222", "2022-09"), who("fin-yl", "431222"))
    assert e.value.reason == "INSUFFICIENT_FUNDS"
    assert await payments(env, f"{pid_yl}/persons/431222-b-mother/2022-09") == {}
    async with env["sessions"]() as s:
        assert await verify(s) == []
        issued = (
            (
                await s.execute(
                    select(OutboxEvent.payload).where(OutboxEvent.subject == "jsx.funds.payment_batch.issued")
                )
            )
            .scalars()
            .all()
        )
    pages = [fev.PaymentsIssued.FromString(p) for p in issued]
    # One page per batch (2 payments each), every payment listed once with its amount; no PII.
    assert len(pages) == 2 and {e.period.code for e in pages} == {"2022-08"} and {e.page for e in pages} == {1}
    assert all(e.payment_batch and e.program and e.fund and e.event_id for e in pages)
    assert all(e.total.fen == sum(e.amounts_fen) for e in pages)
    # Column by column: every list has one entry per payment.
    assert all(
        len(
            {
                len(e.payment_names),
                len(e.applications),
                len(e.households),
                len(e.payees),
                len(e.village_codes),
                len(e.amounts_fen),
            }
        )
        == 1
        for e in pages
    )
    listed_hj = {p.name: p.amount.fen for p in listed.payments}
    page_hj = next(e for e in pages if e.payment_batch == b.name)
    assert dict(zip(page_hj.payment_names, page_hj.amounts_fen, strict=False)) == listed_hj
    by_name = {p.name: p for p in listed.payments}
    for name, app, hh, payee, village in zip(
        page_hj.payment_names,
        page_hj.applications,
        page_hj.households,
        page_hj.payees,
        page_hj.village_codes,
        strict=False,
    ):
        assert (app, hh, payee) == (by_name[name].application, by_name[name].household, by_name[name].payee)
        assert payee.startswith("persons/") and len(village) == 12


async def test_twenty_concurrent_batches_pay_once(env: dict[str, Any]) -> None:
    svc, hj = env["svc"], env["hj"]
    env["clock"].now += timedelta(days=30)
    admin = who("fin-hj", "431281")
    results = await asyncio.gather(
        *(svc.CreatePaymentBatch(batch_req(hj, "431281", "2022-09"), admin) for _ in range(20)), return_exceptions=True
    )
    ok = [r for r in results if isinstance(r, pb.PaymentBatch)]
    refused = [r for r in results if isinstance(r, FailedPrecondition) and r.reason == "NOTHING_TO_PAY"]
    assert len(ok) == 1 and len(refused) == 19, [r for r in results if not isinstance(r, pb.PaymentBatch)][:3]
    assert ok[0].payment_count == 2
    assert len(await payments(env, "2022-09")) == 2
    async with env["sessions"]() as s:
        assert int((await s.execute(select(func.count()).select_from(PaymentRow))).scalar_one()) == 2
        assert await verify(s) == []


async def test_payment_file_fields_quoted_as_the_csv_writer_does(engine: AsyncEngine) -> None:
    """PostgreSQL makes the payment file's lines itself; each field must come out as Python's csv writer writes it."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the server-side lines are PostgreSQL's")
    values = ["persons/p1", "a,b", 'say "hi"', "two\nlines", "cr\rhere", "", '"', "households/hh,1"]
    async with engine.connect() as conn:
        got = [
            (await conn.execute(text(f"SELECT {csv_field_sql('CAST(:v AS text)')}"), {"v": v})).scalar_one()
            for v in values
        ]
    for v, line in zip(values, got, strict=False):
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerow(["x", v])  # the file's writer: CRLF is what it quotes for
        assert "x," + line + "\r\n" == out.getvalue(), v


async def test_payment_file_blocks_are_the_cursors_bytes(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL makes the file of a batch with unbroken ids in blocks on two connections at once (序号 from the
    id); any block size gives the bytes of the one-cursor path, which a batch with gaps in its ids takes."""
    from jsx_funds.disbursement import payment_file

    svc, hj = env["svc"], env["hj"]
    env["clock"].now += timedelta(days=30)
    b = await svc.CreatePaymentBatch(batch_req(hj, "431281", "2022-08"), who("fin-hj", "431281"))
    bid = int(b.name.split("/")[1])
    async with env["sessions"]() as s:
        row = await s.get(PaymentBatchRow, bid)
        assert (row.payment_count, row.payment_total) == (2, 940_00 + 580_00)
        assert dd.unbroken(row.first_payment_id, row.last_payment_id, row.payment_count)
        pg = (await s.connection()).dialect.name == "postgresql"
    if not pg:
        pytest.skip("the block path is PostgreSQL's")
    blocks = []
    for size in (1, 2, 10_000):
        monkeypatch.setattr(payment_file, "FILE_BLOCK", size)
        blocks.append(await id_list(svc.disbursement, bid))
    monkeypatch.setattr(dd, "unbroken", lambda first, last, count: False)
    cursor = await id_list(svc.disbursement, bid)
    assert blocks == [cursor] * 3
    assert cursor.count("\r\n") == 4 and "\r\n1,persons/431281-" in cursor and "\r\n合计,2,,,1520.00,,,\r\n" in cursor


async def test_scattered_payment_ids_are_drawn_again_one_by_one(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL draws a batch's payment ids in one statement; when another transaction drew journal ids meanwhile
    (simulated), every candidate draws its own: each payment still has a unique id, its page and its file line."""
    from jsx_funds.disbursement import planner_pg

    svc, hj = env["svc"], env["hj"]
    env["clock"].now += timedelta(days=30)
    drawn: list[tuple[int, int, int]] = []

    def never_contiguous(lo: int, hi: int, n: int) -> bool:
        drawn.append((lo, hi, n))
        return False

    monkeypatch.setattr(planner_pg, "contiguous", never_contiguous)
    b = await svc.CreatePaymentBatch(batch_req(hj, "431281", "2022-08"), who("fin-hj", "431281"))
    assert (b.payment_count, b.total.fen) == (2, 940_00 + 580_00)
    listed = await svc.ListPayments(pb.ListPaymentsRequest(payment_batch=b.name), who("fin-hj", "431281"))
    async with env["sessions"]() as s:
        assert await verify(s) == []
        pages = [
            fev.PaymentsIssued.FromString(p)
            for p in (
                await s.execute(
                    select(OutboxEvent.payload).where(OutboxEvent.subject == "jsx.funds.payment_batch.issued")
                )
            )
            .scalars()
            .all()
        ]
        ids = (
            (await s.execute(select(PaymentRow.id).where(PaymentRow.batch_id == int(b.name.split("/")[1]))))
            .scalars()
            .all()
        )
        pg = (await s.connection()).dialect.name == "postgresql"
    assert len(set(ids)) == 2 and bool(drawn) == pg
    if drawn:  # PostgreSQL: the first draw's ids were left unused, each payment drew its own after them
        ((_lo, hi, n),) = drawn
        assert n == 2 and min(ids) > hi
    assert sorted(n for e in pages for n in e.payment_names) == sorted(p.name for p in listed.payments)
    lines = (await id_list(svc.disbursement, int(b.name.split("/")[1]))).splitlines()
    assert len(lines) == 4 and all(p.name in "\n".join(lines) for p in listed.payments)


async def test_a_beneficiary_enrolled_from_a_later_month_waits_silently(env: dict[str, Any]) -> None:
    """An application enrolled from 2022-09 is left out of 2022-08 (no payment, no skip reason), beside two paid;
    PostgreSQL reads such candidates back too, and their pages must skip them."""
    svc, sessions, hj = env["svc"], env["sessions"], env["hj"]
    county, village = "431281", "431281101201"
    meta = EventMeta(event_id="e2", subject="s", event_type="t", num_delivered=1, stream_seq=1, published_at=None)
    async with transaction(sessions) as s:
        await apply_household_event(
            s,
            mev.HouseholdSituationChanged(
                household=f"households/{county}-late",
                village=c.RegionCode(code=village),
                kind=mpb.SITUATION_KIND_SPECIAL_BEREAVED,
                effective_from=c.Date(year=2020, month=1, day=1),
                head_person=f"persons/{county}-late-head",
                member_count=2,
            ),
            meta,
        )
    app = await svc.SubmitApplication(
        pb.SubmitApplicationRequest(
            request_id=rid(),
            application=pb.Application(
                program=hj.name,
                household=f"households/{county}-late",
                person=f"persons/{county}-late-mother",
                period=c.Period(code="2022-09"),
                attributes={"birth_date": "1966-03-01"},
            ),
        ),
        who("clerk-hj", county),
    )
    for reviewer, region in (("v", village), ("t", "431281101"), ("c", county)):
        await svc.DecideApplication(
            pb.DecideApplicationRequest(
                request_id=rid(), name=app.name, decision=pb.APPROVAL_DECISION_APPROVE, comment="同意"
            ),
            who(f"{reviewer}-hj", region),
        )
    env["clock"].now += timedelta(days=30)
    b = await svc.CreatePaymentBatch(batch_req(hj, county, "2022-08"), who("fin-hj", county))
    assert (b.payment_count, b.total.fen) == (2, 940_00 + 580_00)
    assert f"/persons/{county}-late-mother/" not in "".join(await payments(env, "2022-08"))
    sept = await svc.CreatePaymentBatch(batch_req(hj, county, "2022-09"), who("fin-hj", county))
    assert sept.payment_count == 3
    async with sessions() as s:
        assert await verify(s) == []
        pages = [
            fev.PaymentsIssued.FromString(p)
            for p in (
                await s.execute(
                    select(OutboxEvent.payload).where(OutboxEvent.subject == "jsx.funds.payment_batch.issued")
                )
            )
            .scalars()
            .all()
        ]
    assert sorted(len(e.payment_names) for e in pages) == [2, 3]


async def test_two_situations_and_a_beneficiary_enrolled_twice_are_paid_once(env: dict[str, Any]) -> None:
    """The rare rows the PostgreSQL statement leaves to fix up: a household with two situations in force
    (paid once, by the first in _SITUATION_ORDER) and a mother enrolled twice (her first application pays)."""
    svc, hj, sessions = env["svc"], env["hj"], env["sessions"]
    pid = int(hj.name.split("/")[1])
    async with transaction(sessions) as s:
        apps = {
            a.beneficiary: a
            for a in (await s.execute(select(ApplicationRow).where(ApplicationRow.program_id == pid))).scalars()
        }
        bereaved, disabled = apps["persons/431281-b-mother"], apps["persons/431281-d-mother"]
        # The disabled child's household is also recorded bereaved: 失独 comes first, 940 元 (not 580 as well).
        s.add(
            SituationProjection(
                household_id=disabled.household_id,
                kind="SPECIAL_BEREAVED",
                effective_from=date(2021, 1, 1),
                effective_to=None,
                disability_grade=0,
                as_of=datetime(2022, 6, 1, tzinfo=UTC),
            )
        )
        again = ApplicationRow(
            **{c.key: getattr(bereaved, c.key) for c in ApplicationRow.__table__.columns if c.key != "id"}
        )
        again.period = "2022-08"
        s.add(again)
    env["clock"].now += timedelta(days=30)  # 公示 over
    b = await svc.CreatePaymentBatch(batch_req(hj, "431281", "2022-08"), who("fin-hj", "431281"))
    assert (b.payment_count, b.total.fen) == (2, 940_00 + 940_00)
    async with sessions() as s:
        paid = dict(
            (
                await s.execute(
                    select(PaymentRow.application_id, PaymentRow.amount).where(
                        PaymentRow.batch_id == int(b.name.split("/")[1])
                    )
                )
            ).all()
        )
        batch = await s.get(PaymentBatchRow, int(b.name.split("/")[1]))
    assert paid == {bereaved.id: 940_00, disabled.id: 940_00} and batch.skipped == []


MOTHERS = [  # (birth date, situation, grade): ages on 2022-08-01 (the batch's month)
    ("1966-05-20", "SPECIAL_BEREAVED", 0),  # 56
    ("1965-08-02", "SPECIAL_BEREAVED", 0),  # 56: her birthday is the day after
    ("1960-01-01", "SPECIAL_BEREAVED", 0),  # 62
    ("1973-08-01", "SPECIAL_BEREAVED", 0),  # 49 that very day: eligible
    ("1973-08-02", "SPECIAL_BEREAVED", 0),  # 48: one day short of 49, not eligible
    ("1964-12-31", "SPECIAL_DISABLED", 2),  # 57
    ("1964-11-30", "SPECIAL_DISABLED", 2),  # 57
]


@pytest.mark.parametrize("path", ["sampled", "raw", "rebuilt"])
async def test_rules_asked_once_per_declared_input(
    env: dict[str, Any],
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    """Real mothers each have their own birth date, but the province's 特别扶助 rule reads it only as the age on
    the month's first day (its plugin declares so): the batch asks once per age, not once per mother, and
    still pays each by her own age — the 48-year-old born a day too late is refused, the 49-year-old paid.
    PostgreSQL's three ways (SQLite has one): ``sampled`` — most applications have inputs of their own, so the
    candidates are keyed by the declared inputs at once; ``raw`` — grouped as stored, then by the declaration in
    Python; ``rebuilt`` — too many raw inputs after all, the candidates are rebuilt keyed by the declaration."""
    import logging

    from jsx_funds.disbursement import planner_pg

    if path != "sampled":
        monkeypatch.setattr(planner_pg, "SAMPLE", 0)
    if path == "rebuilt":
        monkeypatch.setattr(planner_pg, "RAW_GROUPS", 0)
    svc, hj, sessions = env["svc"], env["hj"], env["sessions"]
    pid, village, t = int(hj.name.split("/")[1]), "431281101201", datetime(2022, 6, 1, tzinfo=UTC)
    async with transaction(sessions) as s:
        template = (
            await s.execute(select(ApplicationRow).where(ApplicationRow.program_id == pid).limit(1))
        ).scalar_one()
        for i, (born, kind, grade) in enumerate(MOTHERS):
            s.add(
                HouseholdProjection(
                    household_id=f"m{i}",
                    village=village,
                    head_person=f"persons/m{i}-head",
                    member_count=2,
                    as_of=t,
                    updated_at=t,
                )
            )
            s.add(
                SituationProjection(
                    household_id=f"m{i}",
                    kind=kind,
                    effective_from=date(2020, 1, 1),
                    effective_to=None,
                    disability_grade=grade,
                    as_of=t,
                )
            )
            row = ApplicationRow(
                **{c.key: getattr(template, c.key) for c in ApplicationRow.__table__.columns if c.key != "id"}
            )
            row.household_id, row.person, row.beneficiary = f"m{i}", f"persons/m{i}", f"persons/m{i}"
            row.attributes = {"birth_date": born, "hukou_type": "RURAL"}
            s.add(row)
    env["clock"].now += timedelta(days=30)
    with caplog.at_level(logging.INFO, logger="jsx.funds.batches"):
        b = await svc.CreatePaymentBatch(batch_req(hj, "431281", "2022-08"), who("fin-hj", "431281"))
    # The two enrolled by enrol() (1966-03-01: 56) and six of the seven above are paid; 940 元 失独, 580 元 伤残.
    assert (b.payment_count, b.total.fen) == (8, 5 * 940_00 + 3 * 580_00)
    async with sessions() as s:
        batch = await s.get(PaymentBatchRow, int(b.name.split("/")[1]))
        refused = (
            await s.execute(
                select(ApplicationRow.person).where(
                    ApplicationRow.id == int(batch.skipped[0]["application"].split("/")[1])
                )
            )
        ).scalar_one()
        paid = set((await s.execute(select(PaymentRow.payee).where(PaymentRow.batch_id == batch.id))).scalars())
    assert len(batch.skipped) == 1 and refused == "persons/m4" and "persons/m3" in paid and "persons/m4" not in paid
    assert any("未满 49 周岁" in r for r in batch.skipped[0]["reasons"])
    # Asked once per (situation, grade, age, declared attributes): 失独 56 ×2 (the enrolled mother has no
    # 户籍 type, the others RURAL), 62, 49, 48; 伤残 grade 3 at 56, grade 2 at 57 — not once per mother.
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("payment batch "))
    assert " 7 rule inputs" in line, line
    assert ("keyed as the rules declare" in line) == (engine.dialect.name == "postgresql" and path != "raw"), line
    # Each basis is listed once however many inputs share it.
    assert len(batch.bases) == len({tuple(x) for x in batch.bases})


async def test_age_in_sql_is_the_rules_age(engine: AsyncEngine) -> None:
    """Past 20 000 distinct inputs PostgreSQL groups mothers by the 周岁 it computes from the birth-date text; the
    rule computes it in Python. They must agree on every date, leap days included, or a group could mix a 48- and a
    49-year-old; a text that is no YYYY-MM-DD date, or none, stands for itself."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the SQL age is PostgreSQL's")
    from jsx_funds.disbursement.domain import age_text as _age_on
    from jsx_funds.disbursement.planner_pg import age_sql as _age_sql

    starts = [
        date(2022, 8, 1),
        date(2024, 2, 1),
        date(2024, 3, 1),
        date(2023, 3, 1),
        date(2023, 2, 28),
        date(2025, 1, 1),
    ]
    async with engine.connect() as conn:
        for start in starts:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT b, {_age_sql('b', start)} FROM (SELECT to_char(d, 'YYYY-MM-DD') AS b"
                        " FROM generate_series(DATE '1959-12-25', DATE '1976-03-05', interval '1 day') AS d) AS x"
                    )
                )
            ).all()
            wrong = [(b, sql) for b, sql in rows if sql != str(_age_on(b, start))]
            assert not wrong, (start, wrong[:5])
        odd = (
            (
                await conn.execute(
                    text(
                        f"SELECT {_age_sql('b', date(2022, 8, 1))} FROM (VALUES ('19680501'), (NULL), ('NULL')) AS v(b)"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert odd == ["'19680501'", "NULL", "'NULL'"]  # each apart from every age and from each other
