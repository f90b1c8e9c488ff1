"""The backup-and-restore drill of docs/operations.md, for real (issue 18), on SQLite and on
PostgreSQL: a stack of nats-server + members + funds + events as child processes takes a
small workload over gRPC (special families, a 慰问金 fund and a 特别扶助 fund with
allocations, a program with two applications approved through three levels into a
payment batch and a bank result, a 走访慰问 visit whose 慰问金 crosses NATS both ways);
``jsx backup create`` runs while the services serve and while donations and new persons
keep arriving; the stack is then thrown away and ``jsx restore`` rebuilds it on a fresh
nats-server and fresh, empty databases, and the services start on the restored data.

What must be identical: every fund's balance (GetFundBalance), the applications, payments
and the visit (through RPCs), every table's row count (each restored database against
the manifest, counted from the very snapshot that was copied), every stream's messages
and its consumers' positions, the audit chains when ``jsxcore.audit`` exists; the writes
that raced the backup are either wholly in it or wholly not. Then: after the restored
relays run, each stream holds each event id exactly once — the relays sent exactly the
outbox rows the restored stream lacked and nothing it held; the restored consumers end
with nothing pending and no effect applied twice; ``jsx funds verify`` is clean.

The funds service runs under libfaketime 10 days ahead once the applications are
approved (公示 is over, so the batch can be made), in both stacks, as the board's test
does. Needs ``pg_dump``/``pg_restore`` (apt: postgresql-client) and libfaketime;
``python3 dev.py test`` installs both. Outside CI a missing one skips; in CI it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
from sqlalchemy import create_engine, func, inspect, pool, select, text

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the helper is not on sys.path

from _procs import ServiceProc, clean_env, logs_on_failure

from jsx.common.v1 import common_pb2 as c
from jsx.events.v1 import events_service_pb2 as epb
from jsx.events.v1 import events_service_pb2_grpc as egrpc
from jsx.funds.v1 import funds_pb2 as fpb
from jsx.funds.v1 import funds_pb2_grpc as fgrpc
from jsx.members.v1 import members_pb2 as mpb
from jsx.members.v1 import members_pb2_grpc as mgrpc
from jsxcore import backup
from jsxcore.auth import issue_token
from jsxcore.local import free_port
from jsxcore.migrations import sync_url
from jsxcore.outbox import OutboxEvent, ensure_stream
from jsxcore.pii import generate_key
from jsxcore.runtime import error_details
from jsxcore.testing.fixtures import (
    NatsServer,
    _require_postgres,
    create_postgres_database,
    drop_postgres_database,
)
from jsxcore.testing.helpers import rid
from jsxcore.values import id_check_char

pytestmark = pytest.mark.slow  # two whole stacks per backend

COUNTY, TOWNSHIP, VILLAGE = "431281", "431281103", "431281103205"  # 洪江市, a township, a village
SERVICES = ("members", "funds", "events")
PERIOD = "2022-08"
FAKETIME = next(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"), Path("/usr/lib/faketime/libfaketime.so.1"))
SHIFT = {"LD_PRELOAD": str(FAKETIME), "FAKETIME": "+10d", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
DAY = 86400


def need(ok: bool, what: str) -> None:
    if ok:
        return
    message = f"{what} not installed; apt-get install -y postgresql-client libfaketime (python3 dev.py test does it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def id_number(seq: int, birth: date, *, female: bool) -> str:
    s = (seq * 2 + (0 if female else 1)) % 1000
    body = f"{COUNTY}{birth:%Y%m%d}{s:03d}"
    return body + id_check_char(body)


def cn(n: int) -> str:
    """12 → 一二: a name may hold no digits."""
    return "".join("零一二三四五六七八九"[int(d)] for d in str(n))


def jsx(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The operator's command line, as a child process (what an operator runs)."""
    proc = subprocess.run(
        [sys.executable, "-m", "jsxcore.cli", *args], capture_output=True, text=True, timeout=300, env=clean_env()
    )
    if check:
        assert proc.returncode == 0, f"jsx {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


# --------------------------------------------------------------------- one stack


@dataclass
class Stack:
    name: str
    broker: NatsServer
    dbs: dict[str, str]
    procs: dict[str, ServiceProc]
    tokens: dict[str, str]

    def call(self, service: str, method: str, req: Any, role: str = "admin", timeout: float = 15) -> Any:
        stub = {"members": mgrpc.MembersServiceStub, "funds": fgrpc.FundsServiceStub, "events": egrpc.EventsServiceStub}
        with grpc.insecure_channel(self.procs[service].addr) as ch:
            md = (("authorization", f"Bearer {self.tokens[role]}"),)
            return getattr(stub[service](ch), method)(req, metadata=md, timeout=timeout)

    def start(self, funds_env: dict[str, str] | None = None) -> None:
        for s in SERVICES:
            self.procs[s].start(funds_env if s == "funds" else None)
        with logs_on_failure(list(self.procs.values())):
            for s in SERVICES:
                self.procs[s].wait_serving()

    def stop(self) -> None:
        running = [p for p in self.procs.values() if p.alive()]
        for p in running:
            p.terminate()
        codes = {p.service: p.stop() for p in running}
        assert all(code == 0 for code in codes.values()), codes

    def db_args(self) -> list[str]:
        return [a for s in SERVICES for a in ("--db", f"{s}={self.dbs[s]}")]


def make_stack(name: str, tmp: Path, backend: str, keys: dict[str, str], tokens: dict[str, str]) -> Stack:
    root = tmp / name
    broker = NatsServer(root / "nats")
    dbs = {
        s: create_postgres_database() if backend == "postgresql" else f"sqlite:///{root / (s + '.db')}"
        for s in SERVICES
    }
    addrs = {s: f"127.0.0.1:{free_port()}" for s in SERVICES}
    base = clean_env() | keys | {"JSX_NATS_URL": broker.url, "JSX_DATA_DIR": str(root), "JSX_SHUTDOWN_GRACE_S": "3"}
    base |= {"JSX_MEMBERS_ADDR": addrs["members"], "JSX_FUNDS_ADDR": addrs["funds"]}
    procs = {
        s: ServiceProc(
            s,
            base | {f"JSX_{s.upper()}_DATABASE_URL": dbs[s], f"JSX_{s.upper()}_GRPC_ADDR": addrs[s]},
            addrs[s],
            root / "logs" / f"{s}.log",
        )
        for s in SERVICES
    }
    return Stack(name, broker, dbs, procs, tokens)


# --------------------------------------------------------------------- looking inside (read only)


def db_counts(url: str) -> dict[str, int]:
    eng = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with eng.connect() as conn:
            return {
                t: int(conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one())
                for t in inspect(conn).get_table_names()
            }
    finally:
        eng.dispose()


def outbox_ids(url: str) -> tuple[set[str], int]:
    """(every event id in the outbox, how many rows are not yet published)."""
    eng = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with eng.connect() as conn:
            ids = set(conn.execute(select(OutboxEvent.event_id)).scalars())
            left = conn.execute(select(func.count()).where(OutboxEvent.published_at.is_(None))).scalar_one()
            return ids, int(left)
    finally:
        eng.dispose()


def audit_heads(url: str) -> dict[str, Any] | None:
    """The audit chain as jsxcore.audit verifies it (None: this version has no jsxcore.audit)."""
    eng = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with eng.connect() as conn:
            return backup.audit_check(conn, inspect(conn).get_table_names())
    finally:
        eng.dispose()


def audit_hash_at(url: str, seq: int) -> str | None:
    audit = backup.audit_module()
    assert audit is not None
    eng = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with eng.connect() as conn:
            t = audit.AuditRecord.__table__
            got = conn.execute(select(t.c.hash).where(t.c.seq == seq)).scalar()
            return None if got is None else str(got)
    finally:
        eng.dispose()


async def broker_state(url: str) -> dict[str, Any]:
    """Per stream: its messages' ids in order, and each durable's position."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        out: dict[str, Any] = {}
        for si in await js.streams_info():
            name = str(si.config.name)
            ids: list[str] = []
            for seq in range(si.state.first_seq, si.state.last_seq + 1) if si.state.messages else ():
                m = await js.get_msg(name, seq)
                ids.append((m.headers or {}).get("Nats-Msg-Id", ""))
            consumers = {}
            for ci in await js.consumers_info(name):
                consumers[ci.name] = {
                    "ack_floor": ci.ack_floor.stream_seq if ci.ack_floor else 0,
                    "pending": ci.num_pending,
                    "ack_pending": ci.num_ack_pending,
                }
            out[name] = {"ids": ids, "consumers": consumers}
        return out
    finally:
        await nc.close()


def settled(st: Stack, timeout: float = 60) -> dict[str, Any]:
    """Wait until every outbox is published and every durable consumer has acked all it
    filters; return the broker's state then."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        left = {s: outbox_ids(st.dbs[s])[1] for s in SERVICES}
        state = asyncio.run(broker_state(st.broker.url))
        busy = {
            f"{stream}/{name}": pos
            for stream, v in state.items()
            for name, pos in v["consumers"].items()
            if pos["pending"] or pos["ack_pending"]
        }
        if not any(left.values()) and not busy:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"{st.name} not settled within {timeout:.0f} s: outbox {left}, consumers {busy}")
        time.sleep(0.3)


# --------------------------------------------------------------------- the workload


@dataclass
class Workload:
    persons: dict[str, mpb.Person] = field(default_factory=dict)
    households: dict[str, mpb.Household] = field(default_factory=dict)
    funds: dict[str, str] = field(default_factory=dict)
    program: str = ""
    apps: dict[str, str] = field(default_factory=dict)
    batch: str = ""
    visit: str = ""


def drive(st: Stack) -> Workload:
    w = Workload()
    for i, (key, name, head) in enumerate(
        [("A-head", "王大明", True), ("A", "李秀英", False), ("B-head", "张建国", True), ("B", "刘桂英", False)],
        start=1,
    ):
        birth = date(1960 + i % 3, 1 + i, 10 + i)
        w.persons[key] = st.call(
            "members",
            "CreatePerson",
            mpb.CreatePersonRequest(
                request_id=rid(),
                person=mpb.Person(
                    display_name=name,
                    id_number=id_number(60 + i, birth, female=not head),
                    phone=f"1390731{i:04d}",
                    card_number=f"62170731000000{i:04d}",
                    village=c.RegionCode(code=VILLAGE),
                    birth_date=c.Date(year=birth.year, month=birth.month, day=birth.day),
                    hukou_type=mpb.HUKOU_TYPE_RURAL,
                ),
            ),
        )
    for fam in "AB":
        w.households[fam] = st.call(
            "members",
            "CreateHousehold",
            mpb.CreateHouseholdRequest(
                request_id=rid(),
                household=mpb.Household(
                    head=w.persons[f"{fam}-head"].name,
                    village=c.RegionCode(code=VILLAGE),
                    members=[
                        mpb.HouseholdMember(person=w.persons[f"{fam}-head"].name, relation=mpb.RELATION_HEAD),
                        mpb.HouseholdMember(person=w.persons[fam].name, relation=mpb.RELATION_SPOUSE),
                    ],
                ),
                situations=[
                    mpb.FamilySituation(
                        kind=mpb.SITUATION_KIND_SPECIAL_BEREAVED, effective_from=c.Date(year=2021, month=3, day=1)
                    )
                ],
            ),
        )
    for key, kind, fen in (
        ("condolence", fpb.FUND_KIND_CONDOLENCE, 10_000_00),
        ("support", fpb.FUND_KIND_PROGRAM, 100_000_00),
        ("donations", fpb.FUND_KIND_HAPPINESS, 0),
    ):
        fund = st.call(
            "funds",
            "CreateFund",
            fpb.CreateFundRequest(
                request_id=rid(),
                fund=fpb.Fund(display_name=f"洪江市 {key}", kind=kind, owner_region=c.RegionCode(code=COUNTY)),
            ),
        )
        w.funds[key] = fund.name
        if fen:
            src = st.call(
                "funds",
                "CreateFundSource",
                fpb.CreateFundSourceRequest(
                    request_id=rid(),
                    fund_source=fpb.FundSource(
                        display_name=f"洪江市财政 {key}",
                        kind=fpb.FUND_SOURCE_KIND_COUNTY_FINANCE,
                        region=c.RegionCode(code=COUNTY),
                    ),
                ),
            )
            st.call(
                "funds",
                "PostAllocation",
                fpb.PostAllocationRequest(request_id=rid(), fund=fund.name, source=src.name, amount=c.Money(fen=fen)),
            )
    w.program = st.call(
        "funds",
        "CreateProgram",
        fpb.CreateProgramRequest(
            request_id=rid(),
            program=fpb.Program(
                display_name="2022年洪江市计生特殊家庭特别扶助",
                type=fpb.PROGRAM_TYPE_SPECIAL_SUPPORT,
                region=c.RegionCode(code=COUNTY),
                fund=w.funds["support"],
                year=2022,
                publicity_days=3,
                approval_levels=[fpb.APPROVAL_LEVEL_VILLAGE, fpb.APPROVAL_LEVEL_TOWNSHIP, fpb.APPROVAL_LEVEL_COUNTY],
            ),
        ),
    ).name
    for fam in "AB":
        person = w.persons[fam]
        b = person.birth_date
        req = fpb.SubmitApplicationRequest(
            request_id=rid(),
            application=fpb.Application(
                program=w.program,
                household=w.households[fam].name,
                person=person.name,
                period=c.Period(code=PERIOD),
                attributes={"birth_date": f"{b.year:04d}-{b.month:02d}-{b.day:02d}"},
            ),
        )
        deadline = time.monotonic() + 30
        while True:  # the household reaches funds' projection over NATS
            try:
                app = st.call("funds", "SubmitApplication", req)
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise AssertionError(f"SubmitApplication {fam}: {e.code()} {error_details(e)[0]}") from None
                time.sleep(0.2)
        for role in ("village", "township", "county"):
            app = st.call(
                "funds",
                "DecideApplication",
                fpb.DecideApplicationRequest(
                    request_id=rid(), name=app.name, decision=fpb.APPROVAL_DECISION_APPROVE, comment="同意"
                ),
                role=role,
            )
        assert app.state == fpb.APPLICATION_STATE_IN_PUBLICITY, app
        w.apps[fam] = app.name

    visit = st.call(
        "events",
        "RecordVisit",
        epb.RecordVisitRequest(
            request_id=rid(),
            visit=epb.Visit(
                household=w.households["A"].name,
                region=c.RegionCode(code=VILLAGE),
                visitor="persons/drill-clerk",  # a staff visitor: events checks volunteers against its pairings
                visit_date=c.Date(year=2022, month=9, day=10),
                occasion="中秋走访",
                money=c.Money(fen=500_00),
                fund=w.funds["condolence"],
            ),
        ),
    )
    w.visit = visit.name
    deadline = time.monotonic() + 30
    while st.call("events", "GetVisit", epb.GetVisitRequest(name=w.visit)).state != epb.VISIT_STATE_BOOKED:
        assert time.monotonic() < deadline, "the visit's 慰问金 was not booked over NATS"
        time.sleep(0.2)

    # 公示 over: funds 10 days on; the batch, and the bank's answer for A
    funds = st.procs["funds"]
    assert funds.stop() == 0
    funds.start(SHIFT)
    funds.wait_serving()
    batch = st.call(
        "funds",
        "CreatePaymentBatch",
        fpb.CreatePaymentBatchRequest(
            request_id=rid(), program=w.program, region=c.RegionCode(code=COUNTY), period=c.Period(code=PERIOD)
        ),
    )
    assert batch.payment_count == 2, batch
    w.batch = batch.name
    payments = st.call("funds", "ListPayments", fpb.ListPaymentsRequest(payment_batch=batch.name)).payments
    first = next(p for p in payments if p.application == w.apps["A"])
    st.call(
        "funds",
        "ImportBankResults",
        fpb.ImportBankResultsRequest(
            request_id=rid(),
            payment_batch=batch.name,
            results=[
                fpb.BankResult(
                    payment=first.name,
                    succeeded=True,
                    bank_reference="HJ20220915-0001",
                    paid_date=c.Date(year=2022, month=9, day=15),
                )
            ],
        ),
    )
    return w


def facts(st: Stack, w: Workload) -> dict[str, Any]:
    """What the integrating systems see: balances, applications, payments, the visit, the persons."""
    out: dict[str, Any] = {}
    for key, fund in w.funds.items():
        b = st.call("funds", "GetFundBalance", fpb.GetFundBalanceRequest(fund=fund))
        out[f"balance/{key}"] = (b.balance.fen, b.total_in.fen, b.total_out.fen, b.available.fen, b.committed.fen)
    apps = st.call("funds", "ListApplications", fpb.ListApplicationsRequest(program=w.program, page_size=100))
    out["applications"] = sorted((a.name, a.state, a.amount_entitled.fen, a.payment) for a in apps.applications)
    pays = st.call("funds", "ListPayments", fpb.ListPaymentsRequest(payment_batch=w.batch)).payments
    out["payments"] = sorted((p.name, p.application, p.state, p.amount.fen) for p in pays)
    v = st.call("events", "GetVisit", epb.GetVisitRequest(name=w.visit))
    out["visit"] = (v.state, v.ledger_entry)
    entries = st.call(
        "funds", "ListLedgerEntries", fpb.ListLedgerEntriesRequest(fund=w.funds["condolence"], page_size=100)
    ).ledger_entries
    out["visit journals"] = [e.name for e in entries if w.visit in e.memo or w.visit in e.reference]
    for key, p in w.persons.items():  # decrypted and masked again: the restored stack holds the same keys
        got = st.call("members", "GetPerson", mpb.GetPersonRequest(name=p.name))
        out[f"person/{key}"] = (got.display_name, got.id_number_masked, got.phone_masked)
    return out


class Load(threading.Thread):
    """Donations (1.00 元 each) and new persons arriving while the backup runs."""

    def __init__(self, st: Stack, w: Workload) -> None:
        super().__init__(daemon=True)
        self.st, self.w = st, w
        self.stop = threading.Event()
        self.donations = 0
        self.persons = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            i = 0
            while not self.stop.is_set():
                i += 1
                self.st.call(
                    "funds",
                    "RecordDonation",
                    fpb.RecordDonationRequest(
                        request_id=rid(),
                        donation=fpb.Donation(
                            fund=self.w.funds["donations"],
                            donor_display_name="爱心会员" + cn(i),
                            donor_kind=fpb.DONOR_KIND_MEMBER,
                            amount=c.Money(fen=100),
                            received_date=c.Date(year=2022, month=9, day=1),
                        ),
                    ),
                )
                self.donations += 1
                birth = date(1980, 1 + i % 12, 1 + i % 28)
                self.st.call(
                    "members",
                    "CreatePerson",
                    mpb.CreatePersonRequest(
                        request_id=rid(),
                        person=mpb.Person(
                            display_name="新登记" + cn(i),
                            id_number=id_number(200 + i, birth, female=i % 2 == 0),
                            village=c.RegionCode(code=VILLAGE),
                            hukou_type=mpb.HUKOU_TYPE_RURAL,
                        ),
                    ),
                )
                self.persons += 1
        except BaseException as e:
            self.error = e


# --------------------------------------------------------------------- the drill


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        _require_postgres()
    return str(request.param)


def test_backup_while_running_then_restore_into_a_fresh_stack(backend: str, tmp_path: Path) -> None:
    import asyncio

    need(FAKETIME.exists(), "libfaketime")
    if backend == "postgresql":
        need(shutil.which("pg_dump") is not None and shutil.which("pg_restore") is not None, "pg_dump/pg_restore")
    secret = generate_key()
    keys = {"JSX_PII_KEY": generate_key(), "JSX_BLIND_INDEX_KEY": generate_key(), "JSX_AUTH_SECRET": secret}
    tokens = {
        "admin": issue_token(secret, "drill-admin", ["admin"], COUNTY, ttl=30 * DAY, name="演练管理员"),
        "village": issue_token(secret, "drill-village", ["village_reviewer"], VILLAGE, ttl=30 * DAY),
        "township": issue_token(secret, "drill-township", ["township_reviewer"], TOWNSHIP, ttl=30 * DAY),
        "county": issue_token(secret, "drill-county", ["county_approver"], COUNTY, ttl=30 * DAY),
    }
    old = make_stack("old", tmp_path, backend, keys, tokens)
    new = make_stack("new", tmp_path, backend, keys, tokens)
    out = tmp_path / "backup-2022-09-16"
    try:
        # ---- the running stack and its workload
        old.broker.start()

        async def streams() -> None:
            nc = await nats.connect(old.broker.url)
            for s in SERVICES:  # up front, so no consumer starts in its not-found backoff
                await ensure_stream(nc.jetstream(), s)
            await nc.close()

        asyncio.run(streams())
        old.start()
        with logs_on_failure(list(old.procs.values())):
            w = drive(old)
            settled(old)
            before = facts(old, w)
            counts_before = {s: db_counts(old.dbs[s]) for s in SERVICES}
            assert before["visit"][0] == epb.VISIT_STATE_BOOKED and len(before["visit journals"]) == 1
            assert [p[2] for p in before["payments"]].count(fpb.PAYMENT_STATE_PAID) == 1, before["payments"]

            # ---- jsx backup create, while donations and new persons keep arriving
            load = Load(old, w)
            load.start()
            time.sleep(0.5)
            made = jsx("backup", "create", str(out), "--nats-url", old.broker.url, *old.db_args())
            time.sleep(0.3)
            load.stop.set()
            load.join(30)
            assert load.error is None, load.error
            assert load.donations > 0 and load.persons > 0
            print(made.stdout)
            manifest = json.loads((out / "manifest.json").read_text())
            dbs = {i["service"]: i for i in manifest["databases"]["items"]}
            for s in SERVICES:
                assert dbs[s]["engine"] == backend and dbs[s]["schema_heads"] == dbs[s]["code_heads"], dbs[s]
            # the racing writes: each database copy holds a consistent prefix of them
            raced_donations = dbs["funds"]["tables"]["donations"] - counts_before["funds"]["donations"]
            raced_persons = dbs["members"]["tables"]["persons"] - counts_before["members"]["persons"]
            assert 0 <= raced_donations <= load.donations and 0 <= raced_persons <= load.persons
            final_old = settled(old)
            after = facts(old, w)
            audit_old = {s: audit_heads(old.dbs[s]) for s in SERVICES}
        old.stop()
        old.broker.stop()  # the old stack is gone; only the backup directory is left

        # ---- the backup checks out; a damaged copy would not
        checked = jsx("backup", "verify", str(out))
        assert "备份校验通过" in checked.stdout, checked.stdout

        # ---- restore into a fresh nats-server and fresh, empty databases
        new.broker.start()
        restored = jsx("restore", str(out), "--nats-url", new.broker.url, *new.db_args())
        print(restored.stdout)
        for s in SERVICES:
            assert f"数据库 {s} 已恢复并核对" in restored.stdout
            # counted again here, independently: every table as the backup counted it
            assert db_counts(new.dbs[s]) == dbs[s]["tables"], s
        if backup.audit_module() is None:
            assert "本版本没有 jsxcore.audit，未核验审计链" in restored.stdout
        at_restore = asyncio.run(broker_state(new.broker.url))
        in_copy = {s: outbox_ids(new.dbs[s])[0] for s in SERVICES}  # the outbox rows the backup holds
        for item in manifest["streams"]["items"]:
            got = at_restore[item["name"]]
            assert len(got["ids"]) == item["messages"] and set(got["consumers"]) == set(item["consumers"])
            # restored positions are the snapshot's, never ahead of the restored inboxes
            assert all(got["consumers"][n]["ack_floor"] <= item["last_seq"] for n in item["consumers"])
        # restoring again over what is now there is refused, and changes nothing
        again = jsx("restore", str(out), "--nats-url", new.broker.url, *new.db_args(), check=False)
        assert again.returncode == 1 and ("STREAM_EXISTS" in again.stderr or "DATABASE_NOT_EMPTY" in again.stderr)
        assert db_counts(new.dbs["funds"]) == dbs["funds"]["tables"]

        # ---- the services start on the restored data (funds with its clock, as before)
        new.start(SHIFT)
        with logs_on_failure(list(new.procs.values())):
            final_new = settled(new)
            now = facts(new, w)

            # identical: every fund's balance (the donation fund: just the donations the copy holds)
            for key in ("condolence", "support"):
                assert now[f"balance/{key}"] == before[f"balance/{key}"] == after[f"balance/{key}"], key
            assert now["balance/donations"][0] == before["balance/donations"][0] + 100 * raced_donations
            for key in ("applications", "payments", "visit", "visit journals"):
                assert now[key] == before[key], key
            assert {k: v for k, v in now.items() if k.startswith("person/")} == {
                k: v for k, v in before.items() if k.startswith("person/")
            }
            # identical counts, table by table, but for what the running services append by
            # themselves once started: inbox rows for redelivered events and, with jsxcore.audit,
            # audit records of the reads above and the events announcing chain heads
            appended = {"inbox", "outbox", "audit_log"}
            for s in SERVICES:
                counts = db_counts(new.dbs[s])
                assert all(counts[t] >= n for t, n in dbs[s]["tables"].items()), s
                grown = {t for t in counts if counts[t] != dbs[s]["tables"][t]}
                assert grown <= appended, (s, {t: (dbs[s]["tables"][t], counts[t]) for t in grown})

            # nothing republished twice: each stream holds each event id once; the relays sent
            # exactly the outbox rows the restored stream lacked
            for stream, got in final_new.items():
                assert len(got["ids"]) == len(set(got["ids"])), f"{stream} holds an event twice"
                service = stream.removeprefix("JSX_").lower()
                ids, left = outbox_ids(new.dbs[service])
                assert left == 0
                sent = set(got["ids"]) - set(at_restore[stream]["ids"])
                assert sent == ids - set(at_restore[stream]["ids"]), stream
                # what was re-sent of the copy's rows is what the old stack's stream held
                # beyond its snapshot (rows a restored service writes after its start aside)
                assert sent & in_copy[service] <= set(final_old[stream]["ids"]), stream
            # the consumers caught up, with nothing applied twice (one journal for the visit,
            # the projections as members has them)
            funds_counts = db_counts(new.dbs["funds"])
            assert funds_counts["proj_households"] == db_counts(new.dbs["members"])["households"]

            # audit chains: whole and, up to the backup's head, the old stack's own records
            for s in SERVICES:
                head = dbs[s].get("audit")
                chain = audit_heads(new.dbs[s])
                if head is None:
                    assert chain is None and audit_old[s] is None  # no jsxcore.audit in this version
                    continue
                assert chain is not None and chain.get("present") == head.get("present")
                if head.get("present"):
                    assert chain["ok"], chain["problems"]
                    assert audit_hash_at(new.dbs[s], head["head_seq"]) == head["head_hash"]

        # ---- the ledger's invariants on the restored funds database
        ok = jsx("funds", "verify", "--database-url", new.dbs["funds"])
        assert "账目核验通过" in ok.stdout
        new.stop()
    finally:
        for st in (old, new):
            for p in st.procs.values():
                if p.alive():
                    p.stop()
            st.broker.stop()
            if backend == "postgresql":
                for url in st.dbs.values():
                    drop_postgres_database(url)


def test_verify_names_a_damaged_file_and_restore_refuses_it(tmp_path: Path) -> None:
    """A backup whose file was changed after the manifest was written is refused whole."""
    db = tmp_path / "funds.db"
    conn = __import__("sqlite3").connect(db)
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    conn.execute("INSERT INTO alembic_version VALUES ('x1')")
    conn.execute("CREATE TABLE ledger_entries (id INTEGER PRIMARY KEY, amount INTEGER)")
    conn.executemany("INSERT INTO ledger_entries (amount) VALUES (?)", [(i,) for i in range(1000)])
    conn.commit()
    conn.close()
    out = tmp_path / "b"
    jsx("backup", "create", str(out), "--no-streams", "--service", "funds", "--db", f"funds=sqlite:///{db}")
    assert "备份校验通过" in jsx("backup", "verify", str(out)).stdout
    f = out / "databases" / "funds.sqlite"
    data = bytearray(f.read_bytes())
    data[-100] ^= 0x01
    f.write_bytes(bytes(data))
    bad = jsx("backup", "verify", str(out), check=False)
    assert bad.returncode == 1 and "databases/funds.sqlite：SHA-256 与清单不符" in bad.stdout, bad.stdout
    target = tmp_path / "restored.db"
    refused = jsx("restore", str(out), "--no-streams", "--db", f"funds=sqlite:///{target}", check=False)
    assert refused.returncode == 1 and "BACKUP_INVALID" in refused.stderr and not target.exists()
    assert re.search(r"未做任何恢复", refused.stderr)
