"""Consumed events on a real nats-server: visit 慰问金 booked once or rejected,
and the members household projection (SQLite and PostgreSQL)."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import nats
import nats.js.errors
import pytest
from google.protobuf.message import Message
from sqlalchemy import func, select

from jsx.common.v1 import annotations_pb2
from jsx.common.v1 import common_pb2 as c
from jsx.events.v1 import events_pb2 as ev
from jsx.funds.v1 import events_pb2 as fev
from jsx.funds.v1 import funds_pb2 as pb
from jsx.members.v1 import events_pb2 as mev
from jsx.members.v1 import members_pb2 as mpb
from jsxcore.config import ServiceConfig
from jsxcore.outbox import HEADER_EVENT_TYPE, HEADER_MSG_ID, InboxEvent, ensure_stream
from jsxcore.pii import generate_key

from jsx_funds.adapters.db import HouseholdProjection, JournalRow, PaymentRow, SituationProjection, migrate
from jsx_funds.consumers import household_situations
from jsx_funds.entrypoints.grpc import build_runtime


def rid() -> str:
    return str(uuid.uuid4())


async def publish(js, msg: Message, event_id: str | None = None) -> str:  # type: ignore[no-untyped-def]
    """Publish as a producer's relay would: Nats-Msg-Id and Jsx-Event-Type headers."""
    eid = event_id or rid()
    subject = msg.DESCRIPTOR.GetOptions().Extensions[annotations_pb2.event_subject]
    await js.publish(subject, msg.SerializeToString(), headers={
        HEADER_MSG_ID: eid, HEADER_EVENT_TYPE: msg.DESCRIPTOR.full_name})
    return eid


@pytest.fixture
async def funds(db_url: str, nats_url: str, tmp_path: Path) -> AsyncIterator[dict]:  # type: ignore[type-arg]
    """The funds process as ``python -m jsx_funds`` builds it (server, relay, consumers)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for stream in ("JSX_EVENTS", "JSX_MEMBERS", "JSX_FUNDS"):
        try:
            await js.delete_stream(stream)  # fresh streams and durable consumers per test
        except nats.js.errors.NotFoundError:
            pass
    await ensure_stream(js, "events")
    await ensure_stream(js, "members")
    env = {
        "JSX_FUNDS_DATABASE_URL": db_url, "JSX_FUNDS_NATS_URL": nats_url, "JSX_FUNDS_GRPC_ADDR": "127.0.0.1:0",
        "JSX_FUNDS_DATA_DIR": str(tmp_path), "JSX_PII_KEY": generate_key(), "JSX_BLIND_INDEX_KEY": generate_key(),
        "JSX_AUTH_SECRET": "f" * 40,
    }
    await asyncio.to_thread(migrate, db_url)
    rt, service, relay = build_runtime(ServiceConfig.from_env("funds", env))
    await rt.start()
    try:
        yield {"js": js, "service": service, "relay": relay}
    finally:
        await rt.stop(0)
        await nc.close()


async def until(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def funds_events(js, want: int, timeout: float = 20.0) -> list[tuple[str, bytes]]:  # type: ignore[no-untyped-def]
    sub = await js.pull_subscribe("jsx.funds.visit_expense.>", durable=None, stream="JSX_FUNDS")
    got: list[tuple[str, bytes]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < want and asyncio.get_running_loop().time() < deadline:
        try:
            for m in await sub.fetch(10, timeout=1):
                got.append((m.subject, m.data))
                await m.ack()
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            pass
    return got


async def make_fund(service, region: str, fen: int) -> int:  # type: ignore[no-untyped-def]
    fund = await service.create_fund(pb.CreateFundRequest(request_id=rid(), fund=pb.Fund(
        display_name="县计生协走访慰问金", kind=pb.FUND_KIND_CONDOLENCE, owner_region=c.RegionCode(code=region))), None)
    if fen:
        src = await service.create_fund_source(pb.CreateFundSourceRequest(request_id=rid(), fund_source=pb.FundSource(
            display_name="县财政慰问经费", kind=pb.FUND_SOURCE_KIND_COUNTY_FINANCE, region=c.RegionCode(code=region))), None)
        await service.post_allocation(pb.PostAllocationRequest(
            fund=fund.name, source=src.name, amount=c.Money(fen=fen), request_id=rid()), None)
    return int(fund.name.split("/")[1])


def visit(vid: int, fund: str, fen: int, region: str = "431224102203") -> ev.VisitRecorded:
    return ev.VisitRecorded(visit=f"visits/{vid}", household="households/hh-1", region=c.RegionCode(code=region),
                            fund=fund, money=c.Money(fen=fen), visit_date=c.Date(year=2022, month=9, day=9))


async def count(service, model, *where) -> int:  # type: ignore[no-untyped-def]
    async with service.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one())


async def test_visit_expense_booked_once_whatever_is_redelivered(funds) -> None:  # type: ignore[no-untyped-def]
    js, service = funds["js"], funds["service"]
    fid = await make_fund(service, "431224", 1000_00)
    msg = visit(7, f"funds/{fid}", 300_00)
    eid = await publish(js, msg)
    await publish(js, msg, event_id=eid)  # the producer's relay retried: JetStream drops the copy
    await publish(js, msg)  # the visit sent again under a new event id: the payment key absorbs it
    await until(lambda: count(service, PaymentRow))
    events = await funds_events(js, 2)
    assert [s for s, _ in events] == ["jsx.funds.visit_expense.booked"] * 2
    booked = [fev.VisitExpenseBooked.FromString(data) for _, data in events]
    assert {b.ledger_entry for b in booked} == {booked[0].ledger_entry}
    b = booked[0]
    assert (b.visit, b.fund, b.household, b.amount.fen) == ("visits/7", f"funds/{fid}", "households/hh-1", 300_00)

    assert await count(service, PaymentRow, PaymentRow.payment_key == "visits/7") == 1
    assert await count(service, JournalRow, JournalRow.kind == "PAYMENT") == 1
    bal = await service.balance(fid)
    assert bal.available.fen == 700_00 and bal.expended.fen == 300_00
    # The payment's ledger entry is the one the event names.
    assert b.ledger_entry.endswith(f"/ledgerEntries/{(await _payment(service)).journal_id}")


async def _payment(service) -> PaymentRow:  # type: ignore[no-untyped-def]
    async with service.sessions() as s:
        return (await s.execute(select(PaymentRow))).scalar_one()


async def test_visit_expense_rejected_with_reason(funds) -> None:  # type: ignore[no-untyped-def]
    js, service = funds["js"], funds["service"]
    fid = await make_fund(service, "431224", 100_00)
    await publish(js, visit(1, f"funds/{fid}", 500_00))  # more than the fund holds
    await publish(js, visit(2, "funds/99999", 100_00))  # no such fund
    await publish(js, visit(3, f"funds/{fid}", 50_00, region="431222001001"))  # 沅陵 household, 溆浦 fund
    events = await funds_events(js, 3)
    got = {}
    for subject, data in events:
        assert subject == "jsx.funds.visit_expense.rejected"
        r = fev.VisitExpenseRejected.FromString(data)
        got[r.visit] = r
    assert got["visits/1"].reason == "INSUFFICIENT_FUNDS"
    assert "余额不足" in got["visits/1"].message and "100.00" in got["visits/1"].message
    assert got["visits/1"].amount.fen == 500_00 and got["visits/1"].fund == f"funds/{fid}"
    assert got["visits/2"].reason == "FUND_NOT_FOUND" and "不存在" in got["visits/2"].message
    assert got["visits/3"].reason == "REGION_MISMATCH"
    # Nothing was posted for any of them.
    assert await count(service, PaymentRow) == 0
    assert await count(service, JournalRow, JournalRow.kind != "ALLOCATION") == 0
    assert (await service.balance(fid)).available.fen == 100_00


def situation(hid: str, kind: int, start: date, end: date | None = None, *, at: int, grade: int = 0,
              count: int = 3) -> mev.HouseholdSituationChanged:
    msg = mev.HouseholdSituationChanged(
        household=f"households/{hid}", village=c.RegionCode(code="431281101201"), kind=kind,
        effective_from=c.Date(year=start.year, month=start.month, day=start.day), disability_grade=grade,
        head_person="persons/p-head", member_count=count)
    if end:
        msg.effective_to.CopyFrom(c.Date(year=end.year, month=end.month, day=end.day))
    msg.occurred_at.FromSeconds(1_660_000_000 + at)
    return msg


async def test_members_projection(funds) -> None:  # type: ignore[no-untyped-def]
    js, service = funds["js"], funds["service"]
    reg = mev.HouseholdRegistered(household="households/h1", village=c.RegionCode(code="431281101201"),
                                  head_person="persons/p-head", member_count=2)
    reg.occurred_at.FromSeconds(1_660_000_000)
    eid = await publish(js, reg)
    await publish(js, reg, event_id=eid)
    await publish(js, situation("h1", mpb.SITUATION_KIND_ONLY_CHILD, date(2001, 3, 1), at=1, count=2))
    # The only child died: 独生子女户 ends, 失独 starts (the later facts).
    await publish(js, situation("h1", mpb.SITUATION_KIND_ONLY_CHILD, date(2001, 3, 1), date(2021, 5, 31), at=5, count=2))
    await publish(js, situation("h1", mpb.SITUATION_KIND_SPECIAL_BEREAVED, date(2021, 6, 1), at=5, count=2))
    # A stale copy of the first fact arrives late: it must not reopen the ended situation.
    await publish(js, situation("h1", mpb.SITUATION_KIND_ONLY_CHILD, date(2001, 3, 1), at=1, count=3))
    await publish(js, situation("h2", mpb.SITUATION_KIND_SPECIAL_DISABLED, date(2020, 1, 1), at=2, grade=3))

    await until(lambda: _n_sits(service, 3))
    async with service.sessions() as s:
        h1 = await s.get(HouseholdProjection, "h1")
        assert (h1.village, h1.head_person, h1.member_count) == ("431281101201", "persons/p-head", 2)
        assert [x.kind for x in await household_situations(s, "h1", date(2022, 8, 1))] == ["SPECIAL_BEREAVED"]
        assert [x.kind for x in await household_situations(s, "h1", date(2010, 1, 1))] == ["ONLY_CHILD"]
        h2 = await household_situations(s, "h2", date(2022, 8, 1))
        assert [(x.kind, x.disability_grade) for x in h2] == [("SPECIAL_DISABLED", 3)]
        assert (await s.get(HouseholdProjection, "h2")).member_count == 3
    assert await count(service, HouseholdProjection) == 2


async def _n_sits(service, n: int) -> bool:  # type: ignore[no-untyped-def]
    if await count(service, SituationProjection) != n:
        return False
    # wait until the last event (the stale copy and h2) were applied too
    async with service.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(InboxEvent))).scalar_one()) >= 6


async def test_members_change_moves_the_head_in_the_projection(funds) -> None:  # type: ignore[no-untyped-def]
    js, service = funds["js"], funds["service"]
    reg = mev.HouseholdRegistered(household="households/h9", village=c.RegionCode(code="431281101201"),
                                  head_person="persons/old-head", member_count=2)
    reg.occurred_at.FromSeconds(1_660_000_000)
    await publish(js, reg)
    moved = mev.HouseholdMembersChanged(household="households/h9", village=c.RegionCode(code="431281101201"),
                                        head_person="persons/new-head", member_count=1,
                                        removed_persons=["persons/old-head"], previous_head_person="persons/old-head")
    moved.occurred_at.FromSeconds(1_660_000_100)
    await publish(js, moved)

    async def moved_in() -> bool:
        async with service.sessions() as s:
            row = await s.get(HouseholdProjection, "h9")
            return row is not None and row.head_person == "persons/new-head"

    await until(moved_in)
    async with service.sessions() as s:
        assert (await s.get(HouseholdProjection, "h9")).member_count == 1
