"""Deaths reach funds (issue 13): a ``PersonDied`` published on a real nats-server as the members
service's relay publishes it is consumed into funds' projection (once, however often it is sent), the next
特别扶助 batch does not pay that person for a month after the Hunan rule's stop month (the month of death),
a payment the bank was already sent for such a month is flagged in reconciliation as one to recover, and a
``PersonDeathCorrected`` withdrawing the death lifts the stop — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import nats
import nats.js.errors
import pytest
from google.protobuf.message import Message
from sqlalchemy import func, insert, select

from jsx.common.v1 import annotations_pb2
from jsx.common.v1 import common_pb2 as c
from jsx.funds.v1 import funds_pb2 as pb
from jsx.members.v1 import events_pb2 as mev
from jsx_funds.adapters.db import migrate
from jsx_funds.disbursement import domain as dd
from jsx_funds.disbursement.tables import PaymentBatchRow, PaymentRow
from jsx_funds.entrypoints.grpc import compose
from jsx_funds.programs.tables import ApplicationRow
from jsx_funds.projections.consumers import DEATHS_DURABLE, build_consumers
from jsx_funds.projections.tables import HouseholdProjection, PersonDeathProjection, SituationProjection
from jsxcore.db import create_engine, session_factory, transaction
from jsxcore.outbox import HEADER_EVENT_TYPE, HEADER_MSG_ID, InboxEvent, ensure_stream
from jsxcore.plugins import PluginHost
from jsxcore.testing.helpers import Clock, rid, who
from jsxcore.values import Period, RegionCode

pytestmark = pytest.mark.slow

HJ = "431281"
VILLAGE = "431281101201"
T = datetime(2022, 6, 1, tzinfo=UTC)


async def publish(js: Any, msg: Message, event_id: str | None = None) -> str:
    """As the members service's relay publishes: Nats-Msg-Id (the event id) and Jsx-Event-Type."""
    eid = event_id or rid()
    subject = msg.DESCRIPTOR.GetOptions().Extensions[annotations_pb2.event_subject]
    await js.publish(
        subject, msg.SerializeToString(), headers={HEADER_MSG_ID: eid, HEADER_EVENT_TYPE: msg.DESCRIPTOR.full_name}
    )
    return eid


async def until(check: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def day(d: date) -> c.Date:
    return c.Date(year=d.year, month=d.month, day=d.day)


async def _setup(api: Any, sessions: Any) -> int:
    """A funded 洪江市 特别扶助 program; three 失独 mothers enrolled from 2022-07 (公示 over)."""
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
        pb.PostAllocationRequest(fund=fund.name, source=src.name, amount=c.Money(fen=100_000_00), request_id=rid())
    )
    program = await api.CreateProgram(
        pb.CreateProgramRequest(
            request_id=rid(),
            program=pb.Program(
                display_name="2022年洪江市计生特别扶助",
                type=pb.PROGRAM_TYPE_SPECIAL_SUPPORT,
                region=c.RegionCode(code=HJ),
                fund=fund.name,
                year=2022,
                beneficiary=pb.BENEFICIARY_KIND_PERSON,
            ),
        )
    )
    program_id = int(program.name.split("/")[1])
    async with transaction(sessions) as s:
        for h in ("h1", "h2", "h3"):
            await s.execute(
                insert(HouseholdProjection).values(
                    household_id=h, village=VILLAGE, head_person=f"persons/{h}-head", member_count=2, as_of=T
                )
            )
            await s.execute(
                insert(SituationProjection).values(
                    household_id=h, kind="SPECIAL_BEREAVED", effective_from=date(2020, 1, 1), as_of=T
                )
            )
            await s.execute(
                insert(ApplicationRow).values(
                    program_id=program_id,
                    household_id=h,
                    person=f"persons/{h}-mother",
                    beneficiary=f"persons/{h}-mother",
                    village=VILLAGE,
                    period="2022-07",
                    amount_entitled=0,
                    state="PAID",
                    chain="VILLAGE,TOWNSHIP,COUNTY",
                    publicity_days=7,
                    publicity_start=T,
                    publicity_end=T,
                    provenance=[],
                    attributes={"birth_date": "1966-05-20"},
                    created_by="clerk",
                    created_at=T,
                    updated_at=T,
                )
            )
    return program_id


async def test_a_death_stops_special_support_and_a_correction_lifts_it(
    db_url: str, nats_url: str, make_api: Any
) -> None:
    await asyncio.to_thread(migrate, db_url)
    engine = create_engine(db_url)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for stream in ("JSX_MEMBERS", "JSX_FUNDS"):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)
    await ensure_stream(js, "members")
    sessions = session_factory(engine)
    host = PluginHost({"hunan": ["430000"], "hongjiang": [HJ]})
    host.discover()
    clock = Clock(datetime(2022, 8, 5, 2, 0, tzinfo=UTC))
    ctx = compose(sessions, host, clock=clock)
    (deaths,) = [
        x
        for x in build_consumers(nats_url, sessions, plugins=host, disbursement=ctx.disbursement)
        if x.durable == DEATHS_DURABLE
    ]
    task = asyncio.create_task(deaths.run())
    fin = who("fin-hj", HJ, "finance_officer")

    async def batch(period: str) -> tuple[int, dict[str, int], list[dict[str, Any]]]:
        b = await ctx.disbursement.create_payment_batch(
            program_id, RegionCode.parse(HJ), Period.parse(period), caller=fin, idem=None
        )
        bid = int(b.name.split("/")[1])
        async with sessions() as s:
            paid = {
                p.payee: p.id for p in (await s.execute(select(PaymentRow).where(PaymentRow.batch_id == bid))).scalars()
            }
            skipped = (await s.get_one(PaymentBatchRow, bid)).skipped
        return bid, paid, skipped

    async def inbox() -> int:
        async with sessions() as s:
            return int((await s.execute(select(func.count()).select_from(InboxEvent))).scalar_one())

    try:
        program_id = await _setup(make_api(ctx), sessions)
        aug, paid_aug, _ = await batch("2022-08")
        assert set(paid_aug) == {"persons/h1-mother", "persons/h2-mother", "persons/h3-mother"}

        # h2's mother died on 2022-07-20; members records it after August's batch went to the bank.
        died = mev.PersonDied(
            person="persons/h2-mother",
            village=c.RegionCode(code=VILLAGE),
            death_date=day(date(2022, 7, 20)),
            household="households/h2",
        )
        died.occurred_at.FromDatetime(datetime(2022, 8, 20, tzinfo=UTC))
        eid = await publish(js, died)
        await publish(js, died, event_id=eid)  # the relay retried: one event
        await until(lambda: inbox())
        await asyncio.sleep(0.5)
        assert await inbox() == 1
        async with sessions() as s:
            row = await s.get_one(PersonDeathProjection, "persons/h2-mother")
            assert (row.death_date, row.village, row.household) == (date(2022, 7, 20), VILLAGE, "households/h2")

        # The enrolment records that it ended, until when, and by which rule.
        async with sessions() as s:
            app = (
                await s.execute(select(ApplicationRow).where(ApplicationRow.person == "persons/h2-mother"))
            ).scalar_one()
            note = app.provenance[-1]
            assert note["hook"] == "jsx_support_end" and note["plugin"] == "hunan"
            assert "享受资格终止" in note["reasons"][0] and "发放至 2022-07" in note["reasons"][0]

        # Reconciliation of August: h2's payment is one to recover, with why.
        rec = await ctx.disbursement.get_reconciliation(aug, caller=fin)
        assert [x.payment.name for x in rec.payments_to_recover] == [dd.payment_ref(aug, paid_aug["persons/h2-mother"])]
        reason = rec.payments_to_recover[0].reason
        assert "已于 2022-07-20 死亡" in reason and "2022-08 起停发" in reason and "应追回" in reason

        # September: h2's mother is not paid, and the batch says why.
        clock.now += timedelta(days=31)
        _, paid_sep, skipped = await batch("2022-09")
        assert set(paid_sep) == {"persons/h1-mother", "persons/h3-mother"}
        assert len(skipped) == 1 and "已于 2022-07-20 死亡" in skipped[0]["reasons"][0]

        # The death was recorded in error: the correction lifts the stop.
        corrected = mev.PersonDeathCorrected(
            person="persons/h2-mother", village=c.RegionCode(code=VILLAGE), previous_death_date=day(date(2022, 7, 20))
        )
        corrected.occurred_at.FromDatetime(datetime(2022, 9, 20, tzinfo=UTC))
        await publish(js, corrected)
        await until(lambda: _inbox_at_least(sessions, 2))
        async with sessions() as s:
            assert (await s.get_one(PersonDeathProjection, "persons/h2-mother")).death_date is None
            app = (
                await s.execute(select(ApplicationRow).where(ApplicationRow.person == "persons/h2-mother"))
            ).scalar_one()
            assert "已撤销，恢复发放" in app.provenance[-1]["reasons"][0]
        clock.now += timedelta(days=31)
        _, paid_oct, skipped = await batch("2022-10")
        assert set(paid_oct) == set(paid_aug) and skipped == []
        assert (await ctx.disbursement.get_reconciliation(aug, caller=fin)).payments_to_recover == []
    finally:
        await deaths.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await nc.close()
        await engine.dispose()


async def _inbox_at_least(sessions: Any, n: int) -> bool:
    async with sessions() as s:
        return int((await s.execute(select(func.count()).select_from(InboxEvent))).scalar_one()) >= n
