"""A 走访慰问 visit's 慰问金 end to end across processes (issues #2 and #5):
``python -m jsx_events`` and ``python -m jsx_funds`` as real child processes,
each with its own fresh database (SQLite, then PostgreSQL), talking only over
a real nats-server; the test is an integrating system calling gRPC with a
token.

Flow: RecordVisit (events outbox) → ``jsx.events.visit.recorded`` → funds
consumer ``funds-visit-expenses`` books a PAYMENT journal keyed by the visit
→ ``jsx.funds.visit_expense.booked|rejected`` → events consumer
``events-funds-results`` → visit BOOKED / REJECTED.

Faults: the same visit delivered again (under a new event id, and again by a
consumer crash between commit and ack followed by a full replay of the
stream), the funds service down for a while, the broker restarted while a
visit is recorded. Every case must book the money exactly once.

One stack per database (module scope) keeps the run short; every test opens
its own fund so balances never mix, and first makes sure every process runs.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import nats
import nats.js.errors
import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the helper is not on sys.path

from _procs import ServiceProc, clean_env, logs_on_failure, until

from jsx.common.v1 import common_pb2 as c
from jsx.events.v1 import events_pb2 as ev
from jsx.events.v1 import events_service_pb2 as epb
from jsx.events.v1 import events_service_pb2_grpc as egrpc
from jsx.funds.v1 import events_pb2 as fev
from jsx.funds.v1 import funds_pb2 as fpb
from jsx.funds.v1 import funds_pb2_grpc as fgrpc
from jsx.members.v1 import events_pb2 as mev
from jsxcore.auth import issue_token
from jsxcore.local import free_port
from jsxcore.outbox import HEADER_EVENT_TYPE, HEADER_MSG_ID, ensure_stream, subject_of
from jsxcore.pii import generate_key
from jsxcore.testing.fixtures import (
    NatsServer,
    _require_postgres,
    create_postgres_database,
    drop_postgres_database,
)
from jsxcore.testing.helpers import rid

# service processes, a broker restart, crashes: each test takes seconds
pytestmark = pytest.mark.slow

COUNTY = "431281"  # 洪江市
VILLAGE = "431281103205"  # a village in it
FAULT_EXIT = 86  # jsxcore.outbox._fault
VISIT_SUBJECT = "jsx.events.visit.recorded"
BOOKED_SUBJECT = "jsx.funds.visit_expense.booked"
REJECTED_SUBJECT = "jsx.funds.visit_expense.rejected"
FUNDS_DURABLE = "funds-visit-expenses"
EVENTS_DURABLE = "events-funds-results"


@dataclass
class Stack:
    funds: ServiceProc
    events: ServiceProc
    broker: NatsServer
    md: Any
    js: Any = None  # the test's own JetStream context (set per test)
    #: households events knows (from members' facts published at start), one per visit
    households: list[str] = field(default_factory=list)

    @property
    def procs(self) -> list[ServiceProc]:
        return [self.funds, self.events]

    def ensure_up(self) -> None:
        """A previous test may have failed with a process or the broker down."""
        self.broker.start()
        for p in self.procs:
            if p.alive() and p.extra_env:
                p.stop()  # still armed with a fault a failed test never triggered
            if not p.alive():
                p.start()
        for p in self.procs:
            p.wait_serving()

    # -- gRPC, a fresh channel per call: a restarted process gets a fresh
    #    connection instead of one waiting out gRPC's reconnect backoff
    async def call_funds(self, method: str, req: Any) -> Any:
        async with grpc.aio.insecure_channel(self.funds.addr) as ch:
            return await getattr(fgrpc.FundsServiceStub(ch), method)(req, metadata=self.md, timeout=10)

    async def call_events(self, method: str, req: Any) -> Any:
        async with grpc.aio.insecure_channel(self.events.addr) as ch:
            return await getattr(egrpc.EventsServiceStub(ch), method)(req, metadata=self.md, timeout=10)

    async def new_fund(self, fen: int) -> str:
        src = await self.call_funds(
            "CreateFundSource",
            fpb.CreateFundSourceRequest(
                request_id=rid(),
                fund_source=fpb.FundSource(
                    display_name="洪江市财政 慰问专项",
                    kind=fpb.FUND_SOURCE_KIND_COUNTY_FINANCE,
                    region=c.RegionCode(code=COUNTY),
                ),
            ),
        )
        fund = await self.call_funds(
            "CreateFund",
            fpb.CreateFundRequest(
                request_id=rid(),
                fund=fpb.Fund(
                    display_name="洪江市计生协 走访慰问金",
                    kind=fpb.FUND_KIND_CONDOLENCE,
                    owner_region=c.RegionCode(code=COUNTY),
                ),
            ),
        )
        await self.call_funds(
            "PostAllocation",
            fpb.PostAllocationRequest(request_id=rid(), fund=fund.name, source=src.name, amount=c.Money(fen=fen)),
        )
        assert await self.available(fund.name) == fen
        return str(fund.name)

    async def available(self, fund: str) -> int:
        return int((await self.call_funds("GetFund", fpb.GetFundRequest(name=fund))).available.fen)

    async def introduce_members(self, count: int = 40) -> None:
        """Publish what the members service would have (households in VILLAGE, the visiting
        volunteer's pairing) and wait until events has them: a visit must name a household and a
        volunteer events knows. Published up front, so visits can be recorded while the broker is down."""
        nc = await nats.connect(self.broker.url)
        try:
            js = nc.jetstream()
            village = c.RegionCode(code=VILLAGE)
            for n in range(count):
                hh = f"households/e2e-{uuid.uuid4().hex[:8]}"
                facts: list[Any] = [mev.HouseholdRegistered(event_id=rid(), household=hh, village=village)]
                if n == 0:
                    facts.append(
                        mev.VolunteerPaired(
                            event_id=rid(),
                            pairing="pairings/e2e",
                            volunteer="volunteers/e2e",
                            household=hh,
                            village=village,
                        )
                    )
                for m in facts:
                    await js.publish(
                        subject_of(m),
                        m.SerializeToString(),
                        headers={HEADER_MSG_ID: m.event_id, HEADER_EVENT_TYPE: m.DESCRIPTOR.full_name},
                    )
                self.households.append(hh)
        finally:
            await nc.close()

        async def known() -> epb.Visit | None:  # the last one applied: the consumer applies in order
            try:
                return await self.call_events(
                    "RecordVisit",
                    epb.RecordVisitRequest(
                        request_id=rid(),
                        visit=epb.Visit(
                            household=self.households[-1],
                            region=c.RegionCode(code=VILLAGE),
                            visitor="volunteers/e2e",
                            visit_date=c.Date(year=2022, month=9, day=1),
                        ),
                    ),
                )
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                return None

        await until("events knows the households members published", known, 30)
        self.households.pop()

    async def record_visit(self, fund: str, fen: int) -> epb.Visit:
        v = await self.call_events(
            "RecordVisit",
            epb.RecordVisitRequest(
                request_id=rid(),
                visit=epb.Visit(
                    household=self.households.pop(0),
                    region=c.RegionCode(code=VILLAGE),
                    visitor="volunteers/e2e",
                    visit_date=c.Date(year=2022, month=9, day=10),
                    occasion="中秋走访",
                    money=c.Money(fen=fen),
                    fund=fund,
                ),
            ),
        )
        assert v.state == epb.VISIT_STATE_PENDING, v
        return v

    async def visit(self, name: str) -> epb.Visit:
        return await self.call_events("GetVisit", epb.GetVisitRequest(name=name))

    async def settled(self, name: str, timeout: float = 30.0) -> epb.Visit:
        async def probe() -> epb.Visit | None:
            v = await self.visit(name)
            return v if v.state in (epb.VISIT_STATE_BOOKED, epb.VISIT_STATE_REJECTED) else None

        return await until(f"{name} BOOKED or REJECTED", probe, timeout)

    async def stays_pending(self, name: str, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            v = await self.visit(name)
            assert v.state == epb.VISIT_STATE_PENDING, f"{name} left PENDING while it could not be booked: {v}"
            await asyncio.sleep(0.3)

    async def journals_for(self, fund: str, visit: str) -> list[fpb.LedgerEntry]:
        entries: list[fpb.LedgerEntry] = []
        token = ""
        while True:
            r = await self.call_funds(
                "ListLedgerEntries", fpb.ListLedgerEntriesRequest(fund=fund, page_size=100, page_token=token)
            )
            entries += [e for e in r.ledger_entries if visit in e.memo or visit in e.reference]
            token = r.next_page_token
            if not token:
                return entries

    async def assert_booked_once(self, fund: str, visit: epb.Visit, funded: int) -> epb.Visit:
        v = await self.settled(visit.name)
        assert v.state == epb.VISIT_STATE_BOOKED, f"expected BOOKED: {v}"
        journals = await self.journals_for(fund, visit.name)
        assert len(journals) == 1, f"{visit.name} must have exactly one journal: {journals}"
        assert journals[0].name == v.ledger_entry
        assert journals[0].amount.fen == -visit.money.fen  # money out of the fund
        assert journals[0].counterparty == visit.household
        assert await self.available(fund) == funded - visit.money.fen
        return v


# --------------------------------------------------------------------- broker helpers


async def stream_messages(js: Any, stream: str, subject: str) -> list[Any]:
    """Every message of ``subject`` the stream holds (streams here are small)."""
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            m = await js.get_msg(stream, seq)
        except nats.js.errors.NotFoundError:
            continue
        if m.subject == subject:
            out.append(m)
    return out


async def booked_results(js: Any, visit: str) -> list[fev.VisitExpenseBooked]:
    res = []
    for m in await stream_messages(js, "JSX_FUNDS", BOOKED_SUBJECT):
        b = fev.VisitExpenseBooked.FromString(m.data)
        if b.visit == visit:
            res.append(b)
    return res


async def visit_recorded(js: Any, visit: str) -> list[Any]:
    return [
        m
        for m in await stream_messages(js, "JSX_EVENTS", VISIT_SUBJECT)
        if ev.VisitRecorded.FromString(m.data).visit == visit
    ]


async def drained(js: Any, stream: str, durable: str) -> None:
    """Wait until the durable consumer has acked every message it filters that
    the stream holds now (call it after the message in question is stored)."""

    async def probe() -> bool | None:
        try:
            ci = await js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            return None
        return True if ci.num_pending == 0 and ci.num_ack_pending == 0 else None

    await until(f"{durable} acked everything in {stream}", probe, 30)


async def results_per_visit(js: Any) -> Counter[str]:
    """How many booked/rejected answers funds has published for each visit."""
    n: Counter[str] = Counter()
    for m in await stream_messages(js, "JSX_FUNDS", BOOKED_SUBJECT):
        n[fev.VisitExpenseBooked.FromString(m.data).visit] += 1
    for m in await stream_messages(js, "JSX_FUNDS", REJECTED_SUBJECT):
        n[fev.VisitExpenseRejected.FromString(m.data).visit] += 1
    return n


# --------------------------------------------------------------------- fixtures


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgresql"])
async def stack(
    request: pytest.FixtureRequest, nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """Funds and events as child processes on fresh databases and one broker."""
    backend = request.param
    if backend == "postgresql":
        _require_postgres()  # skips outside CI when unreachable, fails in CI
    tmp = tmp_path_factory.mktemp(f"e2e-{backend}")
    nats_server.start()
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    # Fresh streams and durables: a previous module's messages name visits and
    # funds these databases never saw.
    for svc in ("events", "funds", "members"):
        try:
            await js.delete_stream(f"JSX_{svc.upper()}")
        except nats.js.errors.NotFoundError:
            pass
        # created up front so no consumer starts in its not-found backoff
        await ensure_stream(js, svc)
    await nc.close()

    dbs: dict[str, str] = {}
    for svc in ("funds", "events"):
        dbs[svc] = create_postgres_database() if backend == "postgresql" else f"sqlite:///{tmp / (svc + '.db')}"
    secret = generate_key()
    base = clean_env() | {
        "JSX_NATS_URL": nats_server.url,
        "JSX_DATA_DIR": str(tmp),
        "JSX_LOG_LEVEL": "INFO",
        "JSX_PII_KEY": generate_key(),
        "JSX_BLIND_INDEX_KEY": generate_key(),
        "JSX_AUTH_SECRET": secret,
        "JSX_SHUTDOWN_GRACE_S": "5",
    }
    procs = {}
    for svc in ("funds", "events"):
        addr = f"127.0.0.1:{free_port()}"
        env = base | {f"JSX_{svc.upper()}_DATABASE_URL": dbs[svc], f"JSX_{svc.upper()}_GRPC_ADDR": addr}
        procs[svc] = ServiceProc(svc, env, addr, tmp / "logs" / f"{svc}.log")
    token = issue_token(secret, "e2e-admin", ["admin"], COUNTY, name="端到端测试")
    st = Stack(procs["funds"], procs["events"], nats_server, (("authorization", f"Bearer {token}"),))
    try:
        for p in st.procs:
            p.start()
        with logs_on_failure(st.procs):
            for p in st.procs:
                p.wait_serving()
            await st.introduce_members()
        yield st
    finally:
        running = [p for p in st.procs if p.alive()]
        for p in running:
            p.terminate()  # both drain at once
        codes = {p.service: p.stop() for p in running}
        if backend == "postgresql":
            for url in dbs.values():
                drop_postgres_database(url)
    # every process still running stops by itself on SIGTERM (not killed)
    bad = {s: code for s, code in codes.items() if code != 0}
    assert not bad, f"unclean exit {bad}\n" + "\n".join(p.explain() for p in st.procs if p.service in bad)


@pytest_asyncio.fixture
async def up(stack: Stack) -> AsyncIterator[Stack]:
    stack.ensure_up()
    nc = await nats.connect(stack.broker.url)
    stack.js = nc.jetstream()
    try:
        yield stack
    finally:
        await nc.close()


# --------------------------------------------------------------------- scenarios


async def test_visit_money_booked_once_and_shown_on_visit(up: Stack) -> None:
    with logs_on_failure(up.procs):
        fund = await up.new_fund(10_000_00)
        visit = await up.record_visit(fund, 500_00)
        v = await up.assert_booked_once(fund, visit, 10_000_00)
        assert v.ledger_entry.startswith(f"{fund}/ledgerEntries/"), v.ledger_entry
        assert not v.rejection_reason and not v.rejection_message
        # one fact each way on the wire
        assert len(await visit_recorded(up.js, visit.name)) == 1
        results = await booked_results(up.js, visit.name)
        assert [r.ledger_entry for r in results] == [v.ledger_entry]
        assert results[0].amount.fen == 500_00 and results[0].fund == fund


async def test_rejections_shown_on_visit_and_nothing_posted(up: Stack) -> None:
    with logs_on_failure(up.procs):
        fund = await up.new_fund(100_00)
        big = await up.record_visit(fund, 500_00)
        nowhere = await up.record_visit("funds/987654", 200_00)

        v = await up.settled(big.name)
        assert v.state == epb.VISIT_STATE_REJECTED, v
        assert v.rejection_reason == "INSUFFICIENT_FUNDS"
        # the funds service's own Chinese message, figures included, reaches the clerk
        assert (
            "余额不足" in v.rejection_message and "100.00" in v.rejection_message and "500.00" in v.rejection_message
        ), v.rejection_message
        assert not v.ledger_entry
        assert await up.available(fund) == 100_00
        assert await up.journals_for(fund, big.name) == []

        w = await up.settled(nowhere.name)
        assert w.state == epb.VISIT_STATE_REJECTED, w
        assert w.rejection_reason == "FUND_NOT_FOUND"
        assert "funds/987654" in w.rejection_message and "不存在" in w.rejection_message

        # the money can still be spent once it is there: the fund was left untouched
        ok = await up.record_visit(fund, 100_00)
        await up.assert_booked_once(fund, ok, 100_00)


async def test_visit_delivered_again_is_booked_once(up: Stack) -> None:
    js = up.js
    with logs_on_failure(up.procs):
        fund = await up.new_fund(2_000_00)

        # 1. the events service sends the same visit again under a new event id
        #    (JetStream's dedupe window cannot drop it): funds' payment key
        #    visits/{id} holds, and the repeated answer leaves the visit BOOKED
        first = await up.record_visit(fund, 300_00)
        v1 = await up.assert_booked_once(fund, first, 2_000_00)
        [orig] = await visit_recorded(js, first.name)
        assert orig.headers[HEADER_MSG_ID] == ev.VisitRecorded.FromString(orig.data).event_id
        ack = await js.publish(
            VISIT_SUBJECT, orig.data, headers={HEADER_MSG_ID: rid(), HEADER_EVENT_TYPE: orig.headers[HEADER_EVENT_TYPE]}
        )
        assert not ack.duplicate
        await until(
            "funds answers the copy again with the same ledger entry",
            lambda: _at_least(booked_results(js, first.name), 2),
        )
        results = await booked_results(js, first.name)
        assert {r.ledger_entry for r in results} == {v1.ledger_entry}, results
        await drained(js, "JSX_FUNDS", EVENTS_DURABLE)
        again = await up.visit(first.name)
        assert again.state == epb.VISIT_STATE_BOOKED and again.ledger_entry == v1.ledger_entry
        assert len(await up.journals_for(fund, first.name)) == 1
        assert await up.available(fund) == 2_000_00 - 300_00

        # 2. funds dies after committing the booking but before acking the
        #    message (JSX_FAULT=consumer.before_ack): the broker still holds it
        await drained(js, "JSX_EVENTS", FUNDS_DURABLE)  # the copy is acked: nothing left to crash on
        assert up.funds.stop() == 0
        up.funds.start({"JSX_FAULT": "consumer.before_ack"})
        up.funds.wait_serving()
        second = await up.record_visit(fund, 400_00)
        assert up.funds.wait_exit(30) == FAULT_EXIT
        ci = await js.consumer_info("JSX_EVENTS", FUNDS_DURABLE)
        assert ci.num_ack_pending == 1, ci  # delivered, effect committed, never acked
        # Replay: rather than waiting out ack_wait (30 s), reset the durable so
        # the restarted funds receives the whole stream again — both visits'
        # original events and the copy, all already applied.
        await js.delete_consumer("JSX_EVENTS", FUNDS_DURABLE)
        up.funds.start()
        up.funds.wait_serving()
        await drained(js, "JSX_EVENTS", FUNDS_DURABLE)
        v2 = await up.settled(second.name)
        assert v2.state == epb.VISIT_STATE_BOOKED, v2
        # The replay re-applied nothing: every visit this module recorded has
        # exactly one answer from funds, except the re-sent one (two, same entry).
        recorded = {
            ev.VisitRecorded.FromString(m.data).visit for m in await stream_messages(js, "JSX_EVENTS", VISIT_SUBJECT)
        }
        await until(
            f"funds publishes the answer for {second.name} after the crash",
            lambda: _at_least(booked_results(js, second.name), 1),
        )
        answers = await results_per_visit(js)
        assert {v: answers[v] for v in recorded} == {v: 2 if v == first.name else 1 for v in recorded}, answers
        for visit in (first, second):
            assert len(await up.journals_for(fund, visit.name)) == 1, visit.name
        assert await up.available(fund) == 2_000_00 - 300_00 - 400_00
        assert (await up.visit(first.name)).ledger_entry == v1.ledger_entry


async def _at_least(coro: Any, n: int) -> bool | None:
    return True if len(await coro) >= n else None


async def test_funds_down_for_a_while_then_back(up: Stack) -> None:
    with logs_on_failure(up.procs):
        fund = await up.new_fund(1_000_00)
        # a graceful stop (SIGTERM: NOT_SERVING, drain) exits 0 by itself
        assert up.funds.stop() == 0
        visit = await up.record_visit(fund, 250_00)
        await up.stays_pending(visit.name, 3.0)
        up.funds.start()
        up.funds.wait_serving()
        await up.assert_booked_once(fund, visit, 1_000_00)
        assert len(await booked_results(up.js, visit.name)) == 1


async def test_broker_restart_while_visits_are_recorded(up: Stack) -> None:
    js_url = up.broker.url
    with logs_on_failure(up.procs):
        fund = await up.new_fund(1_000_00)
        before = await up.record_visit(fund, 100_00)
        await up.assert_booked_once(fund, before, 1_000_00)

        up.broker.stop()
        try:
            # events keeps answering: the visit and its event are committed
            # together in its database, the relay waits for the broker
            during = [await up.record_visit(fund, 150_00), await up.record_visit(fund, 200_00)]
            await up.stays_pending(during[0].name, 2.0)
        finally:
            up.broker.start()
        for v in during:
            got = await up.settled(v.name, 45)
            assert got.state == epb.VISIT_STATE_BOOKED, got
            assert len(await up.journals_for(fund, v.name)) == 1
        assert await up.available(fund) == 1_000_00 - 100_00 - 150_00 - 200_00
        # the processes reconnected by themselves; each fact crossed once
        assert up.funds.alive() and up.events.alive()
        nc = await nats.connect(js_url)
        try:
            js = nc.jetstream()
            for v in during:
                assert len(await visit_recorded(js, v.name)) == 1
                assert len(await booked_results(js, v.name)) == 1
        finally:
            await nc.close()


async def test_events_crash_after_publish_before_marking(up: Stack) -> None:
    """The relay's crash window (issue #2): the broker has the VisitRecorded,
    the outbox row is not marked. After restart the relay sends it again under
    the same Nats-Msg-Id; JetStream keeps one copy and the money moves once."""
    js = up.js
    with logs_on_failure(up.procs):
        fund = await up.new_fund(1_000_00)
        assert up.events.stop() == 0
        up.events.start({"JSX_FAULT": "relay.after_publish"})
        up.events.wait_serving()
        visit = await up.record_visit(fund, 120_00)
        assert up.events.wait_exit(30) == FAULT_EXIT
        # published before the crash: funds may book it while events is down
        assert len(await visit_recorded(js, visit.name)) == 1
        up.events.start()
        up.events.wait_serving()
        await up.assert_booked_once(fund, visit, 1_000_00)
        await drained(js, "JSX_EVENTS", FUNDS_DURABLE)
        assert len(await visit_recorded(js, visit.name)) == 1  # the re-send was deduplicated
        assert len(await booked_results(js, visit.name)) == 1
