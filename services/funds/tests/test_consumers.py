"""Consumed events on a real nats-server: visit 慰问金 booked once or rejected
(balance, region, and whether the fund may pay 慰问金 at all under its kind
and its county's rule plugin), and the members household projection (SQLite
and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

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
from jsx_funds.adapters.db import migrate
from jsx_funds.disbursement.tables import PaymentRow
from jsx_funds.entrypoints.grpc import build_runtime
from jsx_funds.ledger import domain as d
from jsx_funds.ledger.service import LedgerService
from jsx_funds.ledger.tables import JournalRow
from jsx_funds.projections.consumers import build_consumers
from jsx_funds.projections.service import household_situations
from jsx_funds.projections.tables import HouseholdProjection, SituationProjection
from jsxcore.config import ServiceConfig
from jsxcore.db import create_engine, session_factory
from jsxcore.hookspecs import FundKind, FundUses, PluginMeta, hookimpl
from jsxcore.outbox import (
    HEADER_EVENT_TYPE,
    HEADER_MSG_ID,
    InboxEvent,
    Relay,
    ensure_stream,
)
from jsxcore.pii import generate_key
from jsxcore.plugins import PluginHost
from jsxcore.testing.helpers import rid
from jsxcore.values import Money, RegionCode


async def publish(js: Any, msg: Message, event_id: str | None = None) -> str:
    """Publish as a producer's relay would: Nats-Msg-Id and Jsx-Event-Type headers."""
    eid = event_id or rid()
    subject = msg.DESCRIPTOR.GetOptions().Extensions[annotations_pb2.event_subject]
    await js.publish(
        subject, msg.SerializeToString(), headers={HEADER_MSG_ID: eid, HEADER_EVENT_TYPE: msg.DESCRIPTOR.full_name}
    )
    return eid


async def fresh_streams(js: Any) -> None:
    for stream in ("JSX_EVENTS", "JSX_MEMBERS", "JSX_FUNDS"):
        try:
            await js.delete_stream(stream)  # fresh streams and durable consumers per test
        except nats.js.errors.NotFoundError:
            pass
    await ensure_stream(js, "events")
    await ensure_stream(js, "members")


@pytest.fixture
async def funds(db_url: str, nats_url: str, tmp_path: Path) -> AsyncIterator[dict]:
    """The funds process as ``python -m jsx_funds`` builds it (server, relay, consumers)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await fresh_streams(js)
    env = {
        "JSX_FUNDS_DATABASE_URL": db_url,
        "JSX_FUNDS_NATS_URL": nats_url,
        "JSX_FUNDS_GRPC_ADDR": "127.0.0.1:0",
        "JSX_FUNDS_DATA_DIR": str(tmp_path),
        "JSX_PII_KEY": generate_key(),
        "JSX_BLIND_INDEX_KEY": generate_key(),
        "JSX_AUTH_SECRET": "f" * 40,
    }
    await asyncio.to_thread(migrate, db_url)
    rt, contexts, relay = build_runtime(ServiceConfig.from_env("funds", env))
    service = contexts.ledger
    await rt.start()
    try:
        yield {"js": js, "service": service, "relay": relay}
    finally:
        await rt.stop(0)
        await nc.close()


async def until(check: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def funds_events(js: Any, want: int, timeout: float = 20.0) -> list[tuple[str, bytes]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:  # funds' relay creates JSX_FUNDS with its first answer, which may come after a few naks
        try:
            sub = await js.pull_subscribe("jsx.funds.visit_expense.>", durable=None, stream="JSX_FUNDS")
            break
        except nats.js.errors.NotFoundError:
            assert asyncio.get_running_loop().time() < deadline, "funds never created its stream JSX_FUNDS"
            await asyncio.sleep(0.2)
    got: list[tuple[str, bytes]] = []
    while len(got) < want and asyncio.get_running_loop().time() < deadline:
        try:
            for m in await sub.fetch(10, timeout=1):
                got.append((m.subject, m.data))
                await m.ack()
        except (TimeoutError, nats.errors.TimeoutError):
            pass
    return got


async def make_fund(
    service: Any,
    region: str,
    fen: int,
    kind: pb.FundKind.ValueType = pb.FUND_KIND_CONDOLENCE,
    name: str = "县计生协走访慰问金",
) -> int:
    fund = await service.create_fund(
        d.NewFund(
            name=name,
            kind=d.FundKind(pb.FundKind.Name(kind).removeprefix("FUND_KIND_")),
            region=RegionCode.parse(region),
        ),
        caller=None,
        idem=None,
    )
    fund_id = int(fund.name.split("/")[1])
    if fen:
        src = await service.create_fund_source(
            d.NewSource(name="县财政慰问经费", kind=d.SourceKind.COUNTY_FINANCE, region=RegionCode.parse(region)),
            caller=None,
            idem=None,
        )
        await service.post_allocation(
            d.Allocation(fund_id=fund_id, source_id=int(src.name.split("/")[1]), amount=Money(fen)),
            caller=None,
            idem=None,
        )
    return fund_id


def visit(vid: int, fund: str, fen: int, region: str = "431224102203") -> ev.VisitRecorded:
    return ev.VisitRecorded(
        visit=f"visits/{vid}",
        household="households/hh-1",
        region=c.RegionCode(code=region),
        fund=fund,
        money=c.Money(fen=fen),
        visit_date=c.Date(year=2022, month=9, day=9),
    )


async def count(service: Any, model: Any, *where: Any) -> int:
    async with service.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one())


async def test_visit_expense_booked_once_whatever_is_redelivered(funds: dict[str, Any]) -> None:
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


async def _payment(service: Any) -> PaymentRow:
    async with service.sessions() as s:
        return (await s.execute(select(PaymentRow))).scalar_one()


async def test_visit_expense_rejected_with_reason(funds: dict[str, Any]) -> None:
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


# ---------------------------------------------------------------- may the fund pay 慰问金 at all?

XUPU_VILLAGE = "431224102203"


async def answers(js: Any, want: int) -> dict[str, list[tuple[str, Message]]]:
    """The funds service's answers per visit, in order: ("booked" | "rejected", message)."""
    got: dict[str, list[tuple[str, Message]]] = {}
    for subject, data in await funds_events(js, want):
        kind = subject.rsplit(".", 1)[1]
        m = (fev.VisitExpenseBooked if kind == "booked" else fev.VisitExpenseRejected).FromString(data)
        got.setdefault(m.visit, []).append((kind, m))
    return got


def rejected(answer: tuple[str, Message]) -> fev.VisitExpenseRejected:
    """An answer of :func:`answers` that must be a refusal."""
    kind, m = answer
    assert kind == "rejected" and isinstance(m, fev.VisitExpenseRejected)
    return m


def booked(answer: tuple[str, Message]) -> fev.VisitExpenseBooked:
    """An answer of :func:`answers` that must be a booking."""
    kind, m = answer
    assert kind == "booked" and isinstance(m, fev.VisitExpenseBooked)
    return m


async def caught_up(js: Any, durable: str = "funds-visit-expenses") -> bool:
    """Every message in JSX_EVENTS has been acked (or terminated) by the visit consumer."""
    last = (await js.stream_info("JSX_EVENTS")).state.last_seq
    info = await js.consumer_info("JSX_EVENTS", durable)
    return info.ack_floor.stream_seq >= last and info.num_ack_pending == 0


async def test_visit_expense_only_from_a_fund_that_may_pay_it(funds: dict[str, Any]) -> None:
    js, service = funds["js"], funds["service"]
    await ensure_stream(js, "events", duplicate_window=1.0)  # so the broker lets a true redelivery through below
    relief = await make_fund(service, "431224", 1000_00, pb.FUND_KIND_RELIEF, "县计生协救助资金")
    program = await make_fund(service, "431224", 1000_00, pb.FUND_KIND_PROGRAM, "特别扶助资金")
    operating = await make_fund(service, "431224", 1000_00, pb.FUND_KIND_OPERATING, "县计生协工作经费")
    happy = await make_fund(service, XUPU_VILLAGE, 1000_00, pb.FUND_KIND_HAPPINESS, "某村幸福基金")
    yuanling = await make_fund(service, "431222101201", 1000_00, pb.FUND_KIND_HAPPINESS, "沅陵某村幸福基金")
    changsha = await make_fund(service, "430102001001", 1000_00, pb.FUND_KIND_HAPPINESS, "长沙某社区幸福基金")
    await publish(js, visit(11, f"funds/{relief}", 100_00))
    program_eid = await publish(js, visit(12, f"funds/{program}", 100_00))
    await publish(js, visit(13, f"funds/{operating}", 100_00))
    await publish(js, visit(14, f"funds/{happy}", 200_00))  # 溆浦 village 幸福基金: 村民慰问 is one of its six uses
    await publish(js, visit(15, f"funds/{yuanling}", 100_00, region="431281101201"))  # a 洪江 household
    await publish(js, visit(16, f"funds/{changsha}", 100_00, region="430102001001"))  # no 幸福基金 rule there
    got = await answers(js, 6)
    assert {v: [k for k, _ in a] for v, a in got.items()} == {
        "visits/11": ["booked"],
        "visits/12": ["rejected"],
        "visits/13": ["rejected"],
        "visits/14": ["booked"],
        "visits/15": ["rejected"],
        "visits/16": ["rejected"],
    }
    r12 = rejected(got["visits/12"][0])
    assert r12.reason == "FUND_USE_NOT_ALLOWED"
    assert f"基金 funds/{program}（特别扶助资金）为项目资金，不能列支慰问金" in r12.message
    assert (r12.fund, r12.amount.fen) == (f"funds/{program}", 100_00)
    r13 = rejected(got["visits/13"][0])
    assert r13.reason == "FUND_USE_NOT_ALLOWED" and "为工作经费，不能列支慰问金" in r13.message
    r15 = rejected(got["visits/15"][0])
    assert r15.reason == "REGION_MISMATCH" and f"funds/{yuanling}" in r15.message
    r16 = rejected(got["visits/16"][0])
    assert r16.reason == "NO_RULE" and "没有幸福基金用途规则" in r16.message and "系统管理员" in r16.message

    # Only the relief fund and the 溆浦 幸福基金 paid; the ledger says which rule allowed the latter.
    async with service.sessions() as s:
        pays = {p.payment_key: p for p in (await s.execute(select(PaymentRow))).scalars()}
        assert set(pays) == {"visits/11", "visits/14"}
        memo = (await s.get(JournalRow, pays["visits/14"].journal_id)).memo
    assert "村民慰问" in memo and "xupu" in memo
    assert await count(service, JournalRow, JournalRow.kind == "PAYMENT") == 2
    assert (await service.balance(happy)).available.fen == 800_00
    assert (await service.balance(relief)).available.fen == 900_00
    for fid in (program, operating, yuanling, changsha):
        bal = await service.balance(fid)
        assert (bal.available.fen, bal.expended.fen) == (1000_00, 0)

    # Redelivery: the refused visit's event again under the same id (past the broker's dedupe window,
    # as after a lost ack) is absorbed by the inbox; the visits sent again under new event ids get
    # the same answers as before, and the 幸福基金 visit stays paid once.
    await until(lambda: caught_up(js))
    await asyncio.sleep(1.2)
    await publish(js, visit(12, f"funds/{program}", 100_00), event_id=program_eid)
    await until(lambda: caught_up(js))
    await publish(js, visit(12, f"funds/{program}", 100_00))
    await publish(js, visit(14, f"funds/{happy}", 200_00))
    again = await answers(js, 8)
    assert [k for k, _ in again["visits/12"]] == ["rejected", "rejected"]
    assert rejected(again["visits/12"][1]).message == r12.message
    assert [k for k, _ in again["visits/14"]] == ["booked", "booked"]
    assert booked(again["visits/14"][1]).ledger_entry == booked(again["visits/14"][0]).ledger_entry
    assert sum(len(a) for a in again.values()) == 8  # the same-id redelivery produced no answer
    assert await count(service, InboxEvent, InboxEvent.event_id == program_eid) == 1
    assert await count(service, InboxEvent, InboxEvent.consumer == "funds-visit-expenses") == 8
    assert await count(service, PaymentRow) == 2
    assert (await service.balance(happy)).available.fen == 800_00


class VillageRules:
    """A village rule plugin as a county developer would write one: 431281101201's
    幸福基金 does not list 村民慰问; for 431281101202 the plugin fails its first two calls."""

    JSX_PLUGIN = PluginMeta(
        name="test_village_rules",
        version="0.1.0",
        regions=("431281101201", "431281101202"),
        description="测试用村级幸福基金用途规则",
    )

    def __init__(self) -> None:
        self.failures_left = 2
        self.flaky_calls = 0

    @hookimpl
    def jsx_fund_allowed_uses(self, fund_kind: str, region: RegionCode) -> FundUses | None:
        if fund_kind != FundKind.HAPPINESS_FUND:
            return None
        if region.code == "431281101202":
            self.flaky_calls += 1
            if self.failures_left:
                self.failures_left -= 1
                raise RuntimeError("规则表暂时读不到")
            return FundUses(("尊老爱幼", "村民慰问"), ("本村幸福基金用于尊老爱幼、村民慰问",))
        return FundUses(("尊老爱幼", "奖学助学"), ("本村幸福基金只用于尊老爱幼、奖学助学",))


@asynccontextmanager
async def visit_booker(
    db_url: str,
    nats_url: str,
    plugins: PluginHost,
    max_deliver: int = 20,
) -> AsyncIterator[dict]:
    """The funds relay and visit consumer wired as the runtime should wire them: with its plugin host."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await fresh_streams(js)
    await asyncio.to_thread(migrate, db_url)
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    relay = Relay(sessions, nats_url, service="funds")
    consumer = build_consumers(
        nats_url, sessions, on_commit=relay.notify, plugins=plugins, visit_max_deliver=max_deliver
    )[0]
    tasks = [asyncio.create_task(relay.run()), asyncio.create_task(consumer.run())]
    try:
        yield {"js": js, "service": LedgerService(sessions, notify=relay.notify), "consumer": consumer}
    finally:
        await consumer.stop()
        await relay.stop()
        await asyncio.gather(*tasks)
        await engine.dispose()
        await nc.close()


@pytest.mark.slow
async def test_visit_expense_follows_the_village_rule_and_retries_a_failing_plugin(db_url: str, nats_url: str) -> None:
    rules = VillageRules()
    host = PluginHost()
    host.discover()
    host.register(rules)
    async with visit_booker(db_url, nats_url, host) as b:
        js, service = b["js"], b["service"]
        strict = await make_fund(service, "431281101201", 1000_00, pb.FUND_KIND_HAPPINESS, "洪江某村幸福基金")
        flaky = await make_fund(service, "431281101202", 1000_00, pb.FUND_KIND_HAPPINESS, "洪江另一村幸福基金")
        await publish(js, visit(21, f"funds/{strict}", 100_00, region="431281101201"))
        await publish(js, visit(22, f"funds/{flaky}", 100_00, region="431281101202"))
        got = await answers(js, 2)
        assert [k for k, _ in got["visits/21"]] == ["rejected"]
        r21 = rejected(got["visits/21"][0])
        assert r21.reason == "FUND_USE_NOT_ALLOWED"
        assert (
            f"幸福基金 funds/{strict}（洪江某村幸福基金）只能用于：尊老爱幼、奖学助学；慰问金属于「村民慰问」"
            in r21.message
        )
        assert "test_village_rules 0.1.0" in r21.message
        # The plugin's faults were retried (nak), not answered: the one answer is the booking.
        assert [k for k, _ in got["visits/22"]] == ["booked"]
        assert rules.flaky_calls >= 3 and rules.failures_left == 0
        assert b["consumer"].terminated == 0
        assert await count(service, PaymentRow) == 1
        assert (await service.balance(flaky)).expended.fen == 100_00
        assert (await service.balance(strict)).expended.fen == 0
        assert len(await funds_events(js, 3, timeout=3)) == 2  # nothing more came


class BrokenRules:
    """A village rule plugin that fails every call."""

    JSX_PLUGIN = PluginMeta(
        name="test_broken_rules",
        version="0.1.0",
        regions=("431281101203",),
        description="测试用：每次都出错的幸福基金用途规则",
    )

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def jsx_fund_allowed_uses(self, fund_kind: str, region: RegionCode) -> FundUses | None:
        self.calls += 1
        raise RuntimeError("规则表损坏")


@pytest.mark.slow
async def test_a_visit_whose_rule_plugin_keeps_failing_is_answered_on_its_last_delivery(
    db_url: str, nats_url: str
) -> None:
    """Retried while JetStream will deliver it again; on the last delivery answered PLUGIN_UNAVAILABLE (nothing paid),
    so the events service shows why instead of waiting for an answer that would never come."""
    rules = BrokenRules()
    host = PluginHost()
    host.discover()
    host.register(rules)
    async with visit_booker(db_url, nats_url, host, max_deliver=3) as b:
        js, service = b["js"], b["service"]
        broken = await make_fund(service, "431281101203", 1000_00, pb.FUND_KIND_HAPPINESS, "洪江某村幸福基金")
        await publish(js, visit(31, f"funds/{broken}", 100_00, region="431281101203"))
        got = await answers(js, 1)  # 1 s + 2 s of nak delays
        assert [k for k, _ in got["visits/31"]] == ["rejected"]
        r = rejected(got["visits/31"][0])
        assert r.reason == "PLUGIN_UNAVAILABLE" and "连续 3 次出错" in r.message and f"funds/{broken}" in r.message
        assert rules.calls >= 3 and b["consumer"].terminated == 0  # (a failed batch is retried message by message)
        assert await count(service, PaymentRow) == 0
        assert (await service.balance(broken)).available.fen == 1000_00
        await until(lambda: caught_up(js))


def situation(
    hid: str,
    kind: mpb.SituationKind.ValueType,
    start: date,
    end: date | None = None,
    *,
    at: int,
    grade: int = 0,
    count: int = 3,
) -> mev.HouseholdSituationChanged:
    msg = mev.HouseholdSituationChanged(
        household=f"households/{hid}",
        village=c.RegionCode(code="431281101201"),
        kind=kind,
        effective_from=c.Date(year=start.year, month=start.month, day=start.day),
        disability_grade=grade,
        head_person="persons/p-head",
        member_count=count,
    )
    if end:
        msg.effective_to.CopyFrom(c.Date(year=end.year, month=end.month, day=end.day))
    msg.occurred_at.FromSeconds(1_660_000_000 + at)
    return msg


async def test_members_projection(funds: dict[str, Any]) -> None:
    js, service = funds["js"], funds["service"]
    reg = mev.HouseholdRegistered(
        household="households/h1",
        village=c.RegionCode(code="431281101201"),
        head_person="persons/p-head",
        member_count=2,
    )
    reg.occurred_at.FromSeconds(1_660_000_000)
    eid = await publish(js, reg)
    await publish(js, reg, event_id=eid)
    await publish(js, situation("h1", mpb.SITUATION_KIND_ONLY_CHILD, date(2001, 3, 1), at=1, count=2))
    # The only child died: 独生子女户 ends, 失独 starts (the later facts).
    await publish(
        js, situation("h1", mpb.SITUATION_KIND_ONLY_CHILD, date(2001, 3, 1), date(2021, 5, 31), at=5, count=2)
    )
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


async def _n_sits(service: Any, n: int) -> bool:
    if await count(service, SituationProjection) != n:
        return False
    # wait until the last event (the stale copy and h2) were applied too
    async with service.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(InboxEvent))).scalar_one()) >= 6


async def test_members_change_moves_the_head_in_the_projection(funds: dict[str, Any]) -> None:
    js, service = funds["js"], funds["service"]
    reg = mev.HouseholdRegistered(
        household="households/h9",
        village=c.RegionCode(code="431281101201"),
        head_person="persons/old-head",
        member_count=2,
    )
    reg.occurred_at.FromSeconds(1_660_000_000)
    await publish(js, reg)
    moved = mev.HouseholdMembersChanged(
        household="households/h9",
        village=c.RegionCode(code="431281101201"),
        head_person="persons/new-head",
        member_count=1,
        removed_persons=["persons/old-head"],
        previous_head_person="persons/old-head",
    )
    moved.occurred_at.FromSeconds(1_660_000_100)
    await publish(js, moved)

    async def moved_in() -> bool:
        async with service.sessions() as s:
            row = await s.get(HouseholdProjection, "h9")
            return row is not None and row.head_person == "persons/new-head"

    await until(moved_in)
    async with service.sessions() as s:
        assert (await s.get(HouseholdProjection, "h9")).member_count == 1
