#!/usr/bin/env python3
"""The bank payment file (一卡通发放文件: payee names and card numbers) of a
特别扶助 month, made against a real members gRPC service, next to the raw
limits measured in the same run.

    python3 dev.py bench bank_file [-n 200000] [--members-db sqlite|pg] [--db ADMIN_URL]

Untimed setup:

* funds: its own PostgreSQL database (``monthly_batch.create_db``), the
  2022 洪江市 特别扶助 program and N enrolled mothers ``persons/m{i}``
  (``monthly_batch.setup_program`` / ``seed``), and one batch of N payments
  for 2022-08 made by ``DisbursementService.create_payment_batch``;
* members: its own database — a SQLite file by default (the embedded
  default, as the funds tests run members), or a second PostgreSQL database
  with ``--members-db pg`` — holding the N mothers and their 户主 (2N
  persons, N households 失独/伤残) imported through the service's roster
  import (``import_roster``: validation, AES-GCM 身份证/phone, blind
  indexes), 100 000 households per import. The person ids the import draws
  (``adapters.db.new_id``) are taken from ``head{i}``, ``m{i}``, ``hh{i}`` so
  they are the ids the funds seed pays. The roster has no card column, so
  each person's 一卡通 number is then encrypted by the service's own
  ``PersonsService.card_cipher`` (AAD bound to the person) and the ciphertexts
  written by primary key. The import's outbox rows are removed (the events
  were for the funds projection, which the funds seed fills directly), so
  the server's relay publishes nothing during the timed part;
* the members server: ``python -m jsx_members`` in its own process (its
  real runtime: JWT auth, permission and region checks, access and audit
  logs, the outbox relay on NATS 127.0.0.1:4222), on a port of its own.

Timed, each in a fresh child process (setup memory does not count; the
child's peak RSS is its VmHWM):

* bank file — ``DisbursementService.stream_payment_file`` (StreamPaymentFile's
  body, CSV) for the batch, as a 财务 officer with their own token, every
  chunk written to a file: pages of 10 000 payments from the funds
  database, their payees from members' BatchGetPayees (1 000 per call, 4 in
  flight), lines rendered, spooled, sent;
* raw lookups — ``MembersClient.batch_get_payees`` for the same N names in
  the same pages of 10 000, one page after the other, nothing else: the
  members lookups without the file;
* raw gRPC — a bare ``grpc.aio`` server returning a real 1 000-payee
  response's bytes to a real 1 000-name request, the same calls in the same
  pattern: what the transport alone costs for those bytes;
* id-only file — ``DisbursementService.write_id_list`` for the same batch
  (payee ids, no names or cards): the team's existing figure.

Then, untimed but measured, where the time goes (in this process, no gRPC):
members' own work per 1 000 names (``PersonsService.batch_get_payees``: SQL,
decrypt, protobuf), the card decrypts alone, the funds page reads alone,
building the file's rows, and the CSV rendering alone.

No goal is set for this file (exit status 0 unless something fails); the
output is checked: N lines, the 合计 line, sampled lines carry the right
name and card number.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import one_row, peak_rss, timed
from monthly_batch import COUNTY, PERIOD, create_db, drop_db, seed, setup_program

#: Households per roster import call (each call one transaction; the import keeps its rows in memory).
IMPORT_HOUSEHOLDS = 100_000
ECHO_METHOD = "/bench.v1.Echo/Echo"


def villages(n: int) -> list[str]:
    """The funds seed's villages (monthly_batch.seed, 100 by default): members persons live there too."""
    return [f"{COUNTY}{100 + t:03d}{200 + v:03d}" for t in range(10) for v in range(max(1, n // 10))][:n]


def card_of(person: str) -> str:
    """A made-up 19-digit 一卡通 number per person id (heads 621700550…, mothers 621700660…)."""
    kind, num = ("55", person[4:]) if person.startswith("head") else ("66", person[1:])
    return f"621700{kind}{int(num):011d}"


# ---------------------------------------------------------------- setup: funds


async def make_batch(url: str, program_id: int) -> tuple[int, int]:
    """One batch of the month through DisbursementService (untimed). Returns (batch id, payments)."""
    from jsx.common.v1 import common_pb2 as c
    from jsx.funds.v1 import funds_pb2 as pb
    from jsx_funds.disbursement.service import SERVICE_NAME
    from jsx_funds.entrypoints.grpc import compose
    from jsxcore.auth import Caller
    from jsxcore.db import create_engine, session_factory
    from jsxcore.plugins import PluginHost
    from jsxcore.usecase import Idem
    from jsxcore.values import Period, RegionCode

    host = PluginHost({"hunan": ["430000"], "hongjiang": [COUNTY]})
    host.discover()
    eng = create_engine(url)
    svc = compose(session_factory(eng), host, clock=lambda: datetime(2022, 8, 5, 2, tzinfo=UTC)).disbursement
    admin = Caller(subject="fin", display_name="fin", roles=("admin",), region=RegionCode.parse(COUNTY))
    req = pb.CreatePaymentBatchRequest(
        request_id=str(uuid.uuid4()),
        program=f"programs/{program_id}",
        region=c.RegionCode(code=COUNTY),
        period=c.Period(code=PERIOD),
    )
    batch = await svc.create_payment_batch(
        program_id,
        RegionCode.parse(COUNTY),
        Period.parse(PERIOD),
        caller=admin,
        idem=Idem.of(SERVICE_NAME, "CreatePaymentBatch", req),
    )
    await eng.dispose()
    return int(batch.name.split("/")[1]), batch.payment_count


# ---------------------------------------------------------------- setup: members


def roster(start: int, stop: int, vill: list[str]) -> list[dict[str, str]]:
    """Households ``start``…``stop - 1``: the 户主 (male) then the mother (配偶), half 失独, half 伤残."""
    from jsx_members.testdata import make_id_number, make_name, make_phone

    rows = []
    for i in range(start, stop):
        # 身份证 sequence numbers hold 500 per birth date and sex: spread births over the days.
        born = date(1948, 1, 1) + timedelta(days=(i // 500) % 9000)
        head_id = make_id_number(COUNTY, born, i % 500)
        mother_id = make_id_number(COUNTY, born + timedelta(days=700), i % 500, female=True)
        village = vill[i % len(vill)]
        disabled = i % 2 == 1
        common = {"所属村": village, "户籍类型": "农村", "户主身份证号": head_id}
        rows.append(
            {
                **common,
                "姓名": make_name(2 * i),
                "身份证号": head_id,
                "联系电话": make_phone(2 * i),
                "与户主关系": "户主",
                "家庭类型": "伤残" if disabled else "失独",
                "家庭类型生效日期": "2020-01-01",
                "伤残等级": str(1 + (i // 2) % 3) if disabled else "",
            }
        )
        rows.append(
            {
                **common,
                "姓名": make_name(2 * i + 1),
                "身份证号": mother_id,
                "联系电话": make_phone(2 * i + 1),
                "与户主关系": "配偶",
            }
        )
    return rows


async def seed_members(murl: str, env: dict[str, str], n: int, vill: list[str]) -> None:
    """2N persons and N households through the roster import, then every person's card (see module doc)."""
    from sqlalchemy import Table, bindparam, delete, func, select, update

    from jsx_members.adapters import db as m
    from jsx_members.households.tables import HouseholdRow
    from jsx_members.persons.tables import PersonRow
    from jsx_members.service import MembersService
    from jsx_members.testdata import clerk
    from jsxcore.config import ServiceConfig
    from jsxcore.db import create_engine, session_factory
    from jsxcore.outbox import OutboxEvent

    conf = ServiceConfig.from_env("members", env)
    eng = create_engine(murl)
    svc = MembersService(session_factory(eng), conf.field_cipher(), conf.blind_index())
    persons = PersonRow.__table__
    assert isinstance(persons, Table)
    set_card = update(persons).where(persons.c.id == bindparam("pid")).values(card_cipher=bindparam("cc"))
    drawn = m.new_id
    try:
        for start in range(0, n, IMPORT_HOUSEHOLDS):
            stop = min(n, start + IMPORT_HOUSEHOLDS)
            # The import draws a person id per new row in row order, then a household id per household.
            ids = itertools.chain(
                (f"{p}{i}" for i in range(start, stop) for p in ("head", "m")), (f"hh{i}" for i in range(start, stop))
            )
            m.new_id = functools.partial(next, ids)
            report = await svc.roster.import_rows(roster(start, stop, vill), caller=clerk(COUNTY, subject="bench-seed"))
            m.new_id = drawn
            if not report.ok:
                first = next(iter(report.errors.items()))
                raise SystemExit(f"members seed refused, row {first[0] + 2}: {first[1]}")
            assert report.persons_created == 2 * (stop - start) and report.households_created == stop - start, report
            rows = []
            for pid in (f"{p}{i}" for i in range(start, stop) for p in ("head", "m")):
                # the service's own check and AES-GCM (AAD persons/{id}/card)
                rows.append({"pid": pid, "cc": svc.persons.card_cipher(pid, card_of(pid))})
            async with svc.sessions() as s, s.begin():
                await s.execute(set_card, rows)
                # The import's events (PersonRegistered, HouseholdRegistered, …) fed the funds projection,
                # which the funds seed filled directly: as if relayed and pruned long ago.
                await s.execute(delete(OutboxEvent))
            print(f"  members: {stop:,} households imported", file=sys.stderr, flush=True)
        async with svc.sessions() as s:
            ok = (
                await s.execute(
                    select(func.count())
                    .select_from(HouseholdRow)
                    .where(
                        HouseholdRow.id.in_(["hh0", f"hh{n - 1}"]),
                        HouseholdRow.head_person_id.in_(["head0", f"head{n - 1}"]),
                    )
                )
            ).scalar_one()
            cards = (
                await s.execute(select(func.count()).select_from(persons).where(persons.c.card_cipher.is_not(None)))
            ).scalar_one()
        assert ok == 2 and cards == 2 * n, (ok, cards)
    finally:
        m.new_id = drawn
        await eng.dispose()
    if murl.startswith("postgresql"):
        import psycopg

        with psycopg.connect(murl, autocommit=True) as c:
            c.execute("VACUUM (ANALYZE)")
            c.execute("CHECKPOINT")
    else:
        import sqlite3

        with sqlite3.connect(murl.removeprefix("sqlite:///")) as c:
            c.execute("ANALYZE")
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listening on {port} after {seconds} s")


# ---------------------------------------------------------------- timed children


def _names(n: int) -> list[str]:
    return [f"persons/m{i}" for i in range(n)]


async def child_bank(url: str, batch_id: int, addr: str, secret: str, out_csv: str) -> dict[str, Any]:
    """StreamPaymentFile's body, CSV, every chunk written to ``out_csv``."""
    import logging

    from sqlalchemy import text

    from jsx_funds.adapters.members import MembersClient
    from jsx_funds.entrypoints.grpc import compose
    from jsxcore.auth import Caller, issue_token
    from jsxcore.db import create_engine, session_factory
    from jsxcore.plugins import PluginHost
    from jsxcore.values import RegionCode

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    logging.getLogger("jsx.funds.payment_file").setLevel(logging.INFO)
    eng = create_engine(url)
    sessions = session_factory(eng)
    members = MembersClient(addr, secret)
    caller = Caller(
        subject="fin-hj", display_name="fin-hj", roles=("finance_officer",), region=RegionCode.parse(COUNTY)
    )
    token = issue_token(secret, "fin-hj", ["finance_officer"], COUNTY)
    # Warm as a running service is: pool connected, channel to members open, modules imported.
    async with eng.connect() as conn:
        await conn.execute(text("SELECT 1"))
    await members.batch_get_payees(["persons/m0"], COUNTY, token=token)
    svc = compose(sessions, PluginHost(), members=members).disbursement
    meta = None
    size = 0
    t0 = time.perf_counter()
    with open(out_csv, "wb") as f:
        async for chunk in svc.stream_payment_file(batch_id, True, caller=caller, token=token):
            if chunk.HasField("metadata"):
                meta = chunk.metadata
            else:
                f.write(chunk.data)
                size += len(chunk.data)
    seconds = time.perf_counter() - t0
    await members.close()
    await eng.dispose()
    assert meta is not None and meta.size_bytes == size
    return {
        "seconds": seconds,
        "lines": meta.payment_count,
        "bytes": size,
        "total_fen": meta.total.fen,
        "maxrss": peak_rss(),
    }


async def child_lookups(n: int, addr: str, secret: str) -> dict[str, Any]:
    """The same names through MembersClient.batch_get_payees, page after page (10 000 each), nothing else."""
    from jsx_funds.adapters.members import MembersClient
    from jsx_funds.disbursement.payment_file import PAGE
    from jsxcore.auth import issue_token

    members = MembersClient(addr, secret)
    token = issue_token(secret, "fin-hj", ["finance_officer"], COUNTY)
    await members.batch_get_payees(["persons/m0"], COUNTY, token=token)
    names = _names(n)
    cards = 0
    t0 = time.perf_counter()
    for k in range(0, n, PAGE):
        got = await members.batch_get_payees(names[k : k + PAGE], COUNTY, token=token)
        cards += sum(1 for p in got.values() if p.card_number)
    seconds = time.perf_counter() - t0
    await members.close()
    assert cards == n, cards
    return {"seconds": seconds, "maxrss": peak_rss()}


async def child_echo(n: int, port: int) -> dict[str, Any]:
    """Raw grpc.aio: a real 1 000-name request out, a real 1 000-payee response's bytes back, in the
    lookups' pattern (pages of 10 000 names, 1 000 per call, 4 in flight)."""
    import grpc

    from jsx.members.v1 import members_pb2
    from jsx_funds.adapters.members import BATCH, IN_FLIGHT
    from jsx_funds.disbursement.payment_file import PAGE

    names = _names(n)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = ch.unary_unary(ECHO_METHOD)
        await call(b"", timeout=10)
        got = 0
        t0 = time.perf_counter()
        for k in range(0, n, PAGE):
            page = names[k : k + PAGE]
            gate = asyncio.Semaphore(IN_FLIGHT)

            async def one(chunk: list[str], gate: asyncio.Semaphore = gate) -> bytes:
                async with gate:
                    return await call(members_pb2.BatchGetPayeesRequest(names=chunk).SerializeToString(), timeout=10)

            for resp in await asyncio.gather(*(one(page[i : i + BATCH]) for i in range(0, len(page), BATCH))):
                got += len(resp)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "bytes": got, "maxrss": peak_rss()}


async def child_idfile(url: str, batch_id: int, out_csv: str) -> dict[str, Any]:
    """DisbursementService.write_id_list: the id-only file of the same batch."""
    from sqlalchemy import text

    from jsx_funds.entrypoints.grpc import compose
    from jsxcore.db import create_engine, session_factory
    from jsxcore.plugins import PluginHost

    eng = create_engine(url)
    svc = compose(session_factory(eng), PluginHost()).disbursement
    async with eng.connect() as conn:
        await conn.execute(text("SELECT 1"))
    t0 = time.perf_counter()
    with open(out_csv, "w", encoding="utf-8", newline="") as f:
        lines = await svc.write_id_list(batch_id, f)
    seconds = time.perf_counter() - t0
    await eng.dispose()
    return {"seconds": seconds, "lines": lines, "maxrss": peak_rss()}


def echo_server(port: int, response_file: str) -> None:
    import grpc

    response = Path(response_file).read_bytes()

    async def serve() -> None:
        async def echo(request: bytes, context: Any) -> bytes:
            return response if request else b""

        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "bench.v1.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
                ),
            )
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


# ---------------------------------------------------------------- where the time goes (untimed)


async def breakdown(url: str, murl: str, env: dict[str, str], batch_id: int, n: int) -> dict[str, float]:
    """The file's parts measured alone, in this process, no gRPC (seconds for all N)."""
    import io

    from sqlalchemy import select

    from jsx.members.v1 import members_pb2
    from jsx_funds.disbursement import payment_file as pf
    from jsx_funds.disbursement.tables import PaymentBatchRow, PaymentRow, in_batch
    from jsx_members.persons.tables import PersonRow
    from jsx_members.service import MembersService
    from jsx_members.testdata import clerk
    from jsxcore.config import ServiceConfig
    from jsxcore.db import create_engine, session_factory

    out: dict[str, float] = {}
    conf = ServiceConfig.from_env("members", env)
    meng = create_engine(murl)
    svc = MembersService(session_factory(meng), conf.field_cipher(), conf.blind_index())
    names = _names(n)
    payees: dict[str, members_pb2.Payee] = {}
    finance = clerk(COUNTY, roles=("finance_officer",), subject="bench")
    t0 = time.perf_counter()
    for k in range(0, n, 1000):
        ids = [x.split("/", 1)[1] for x in names[k : k + 1000]]
        resp = await svc.persons.batch_get_payees(ids, caller=finance)
        payees.update((p.person, p) for p in resp.payees)
    out["members_work"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ciphers: list[Any] = []
    async with svc.sessions() as s:
        for k in range(0, n, 1000):
            ids = [x.split("/", 1)[1] for x in names[k : k + 1000]]
            ciphers += (await s.execute(select(PersonRow.id, PersonRow.card_cipher).where(PersonRow.id.in_(ids)))).all()
    out["members_sql"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    async with svc.sessions() as s:
        for k in range(0, n, 1000):
            ids = [x.split("/", 1)[1] for x in names[k : k + 1000]]
            (await s.execute(select(PersonRow).where(PersonRow.id.in_(set(ids))))).scalars().all()
    out["members_orm"] = time.perf_counter() - t0
    cipher, aad = svc.persons.cipher, svc.persons._aad
    t0 = time.perf_counter()
    for pid, cc in ciphers:
        cipher.decrypt(cc, aad=aad(pid, "card"))
    out["decrypt"] = time.perf_counter() - t0
    await meng.dispose()

    eng = create_engine(url)
    sessions = session_factory(eng)
    async with sessions() as s:
        where = in_batch(await s.get_one(PaymentBatchRow, batch_id))
    pages = []
    after = None
    t0 = time.perf_counter()
    while True:
        cond = where if after is None else (where & (PaymentRow.id > after))
        async with sessions() as s:
            rows = (
                await s.execute(
                    select(PaymentRow.id.label("payment_id"), PaymentRow.payee, PaymentRow.village, PaymentRow.amount)
                    .where(cond)
                    .order_by(PaymentRow.id)
                    .limit(pf.PAGE)
                )
            ).all()
        if not rows:
            break
        pages.append(rows)
        after = rows[-1].payment_id
        if len(rows) < pf.PAGE:
            break
    out["funds_pages"] = time.perf_counter() - t0
    await eng.dispose()
    name = f"paymentBatches/{batch_id}"
    t0 = time.perf_counter()
    program = "2022年洪江市计生特别扶助"
    lines = [
        (
            [
                [
                    payees[p.payee].display_name,
                    payees[p.payee].card_number,
                    pf.amount_text(p.amount),
                    f"{name}/payments/{p.payment_id}",
                    pf.village_label(p.village),
                    program,
                    PERIOD,
                    "按人发放",
                ]
                for p in rows
            ],
            [p.amount for p in rows],
        )
        for rows in pages
    ]
    out["lines"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for rows in pages:
        for p in rows:
            pf.village_label(p.village)
    out["village_labels"] = time.perf_counter() - t0
    with tempfile.TemporaryFile() as f:
        t0 = time.perf_counter()
        w = pf.CsvWriter.to_bytes(f, pf.BANK)
        for cells, amounts in lines:
            w.add(cells, amounts)
        w.finish()
        out["render"] = time.perf_counter() - t0
    buf = io.BytesIO(b"x" * (64 << 20))
    t0 = time.perf_counter()
    pf._size_and_digest(buf)
    out["sha256_per_64MiB"] = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------- main


def run_child(*args: str) -> tuple[dict[str, Any], str]:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, file=sys.stderr)
        raise SystemExit(f"child {args[0]} failed ({proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def check_file(path: str, n: int, expected_total: int, url: str) -> list[str]:
    """N lines, 合计 right, sampled lines (first, middle, last) with their payee's name and card."""
    import csv

    import psycopg

    from jsx_members.testdata import make_name

    problems = []
    samples: dict[int, list[str]] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        r = csv.reader(f)
        header = next(r)
        count = 0
        last = None
        for row in r:
            if row[0] == "合计":
                last = row
                break
            count += 1
            if count in (1, n // 2, n):
                samples[int(row[4].rsplit("/", 1)[1])] = row
    with psycopg.connect(url) as c:
        for pid, row in samples.items():
            (payee,) = one_row(c.execute("SELECT payee FROM payments WHERE id = %s", (pid,)))
            i = int(payee.removeprefix("persons/m"))
            if (row[1], row[2]) != (make_name(2 * i + 1), card_of(f"m{i}")):
                problems.append(f"line {row[0]}: {row[1]!r} {row[2]!r}, expected {payee}'s name and card")
    if header[1:3] != ["收款人姓名", "一卡通卡号/账号"] or count != n or len(samples) != 3:
        problems.append(f"{count} lines (expected {n}), header {header}")
    if last is None or last[1] != f"{n} 笔" or last[3] != f"{expected_total / 100:.2f}":
        problems.append(f"合计 line {last}, expected {n} 笔 {expected_total / 100:.2f}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=200_000, help="payments (beneficiaries), default 200 000")
    ap.add_argument(
        "--db",
        default=os.environ.get("JSX_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="admin URL of the PostgreSQL server; fresh databases are created and dropped",
    )
    ap.add_argument(
        "--members-db",
        choices=("sqlite", "pg"),
        default="sqlite",
        help="members' database: a SQLite file (default) or a second PostgreSQL database",
    )
    ap.add_argument("--rounds", type=int, default=1, help="timed rounds of each measure; the best is kept")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the in-process parts (where the time goes)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--echo-server", nargs=2, metavar=("PORT", "RESPONSE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.echo_server:
        echo_server(int(a.echo_server[0]), a.echo_server[1])
        return 0
    if a.child:
        kind, *rest = a.child
        if kind == "bank":
            job = child_bank(rest[0], int(rest[1]), rest[2], rest[3], rest[4])
        elif kind == "lookups":
            job = child_lookups(int(rest[0]), rest[1], rest[2])
        elif kind == "echo":
            job = child_echo(int(rest[0]), int(rest[1]))
        else:
            job = child_idfile(rest[0], int(rest[1]), rest[2])
        print(json.dumps(asyncio.run(job)))
        return 0

    from jsx.common.v1 import common_pb2
    from jsx.members.v1 import members_pb2
    from jsx_funds.adapters.db import migrate
    from jsx_members.migrations import migrate as members_migrate
    from jsxcore.pii import generate_key

    n = a.n
    tmp = tempfile.TemporaryDirectory(prefix="jsx_bench_bank_")
    secret = secrets.token_urlsafe(32)
    env = {"JSX_PII_KEY": generate_key(), "JSX_BLIND_INDEX_KEY": generate_key(), "JSX_AUTH_SECRET": secret}
    url = create_db(a.db)
    murl = create_db(a.db) if a.members_db == "pg" else f"sqlite:///{tmp.name}/members.db"
    procs: list[subprocess.Popen[bytes]] = []
    out_csv = f"{tmp.name}/bank.csv"
    try:
        with timed() as t_funds:
            migrate(url)
            program_id = asyncio.run(setup_program(url, n))
            seed(url, program_id, n, 100, 20)
            batch_id, paid = asyncio.run(make_batch(url, program_id))
            import psycopg

            with psycopg.connect(url, autocommit=True) as c:
                expected_total = one_row(
                    c.execute("SELECT sum(amount) FROM payments WHERE batch_id = %s", (batch_id,))
                )[0]
                c.execute("VACUUM (ANALYZE) payments")
                c.execute("CHECKPOINT")
        assert paid == n, paid
        print(
            f"setup: funds, {n:,} payments in paymentBatches/{batch_id} in {t_funds.seconds:.1f} s (untimed)",
            flush=True,
        )
        with timed() as t_members:
            members_migrate(murl)
            asyncio.run(seed_members(murl, env, n, villages(100)))
        print(
            f"setup: members ({'PostgreSQL' if a.members_db == 'pg' else 'SQLite'}), {2 * n:,} persons with cards,"
            f" {n:,} households in {t_members.seconds:.1f} s (untimed)",
            flush=True,
        )

        port, echo_port = free_port(), free_port()
        server_env = {
            **os.environ,
            **env,
            "JSX_MEMBERS_DATABASE_URL": murl,
            "JSX_MEMBERS_GRPC_ADDR": f"127.0.0.1:{port}",
            "JSX_MEMBERS_DATA_DIR": tmp.name,
        }
        with open(f"{tmp.name}/members.log", "wb") as log:
            procs.append(
                subprocess.Popen([sys.executable, "-m", "jsx_members"], env=server_env, stdout=log, stderr=log)
            )
        response = members_pb2.BatchGetPayeesResponse(
            payees=[
                members_pb2.Payee(
                    person=f"persons/m{i}",
                    display_name="王秀英",
                    card_number=card_of(f"m{i}"),
                    village=common_pb2.RegionCode(code=villages(100)[i % 100]),
                )
                for i in range(1000)
            ]
        )
        Path(f"{tmp.name}/response.bin").write_bytes(response.SerializeToString())
        procs.append(
            subprocess.Popen([sys.executable, __file__, "--echo-server", str(echo_port), f"{tmp.name}/response.bin"])
        )
        wait_for_port(port, procs[0])
        wait_for_port(echo_port, procs[1])
        addr = f"127.0.0.1:{port}"
        load = os.getloadavg()[0]
        results: dict[str, list[dict[str, Any]]] = {"echo": [], "lookups": [], "idfile": [], "bank": []}
        file_log = ""
        problems: list[str] = []
        for rnd in range(a.rounds):
            results["echo"].append(run_child("echo", str(n), str(echo_port))[0])
            results["lookups"].append(run_child("lookups", str(n), addr, secret)[0])
            results["idfile"].append(run_child("idfile", url, str(batch_id), f"{tmp.name}/ids.csv")[0])
            r, err = run_child("bank", url, str(batch_id), addr, secret, out_csv)
            results["bank"].append(r)
            file_log = "\n".join(ln for ln in err.splitlines() if ln.startswith("payment file "))
            if rnd == 0:
                problems = check_file(out_csv, n, expected_total, url)
            print(
                f"  round {rnd + 1}: " + ", ".join(f"{k} {v[-1]['seconds']:.2f} s" for k, v in results.items()),
                flush=True,
            )
        load_after = os.getloadavg()[0]
        parts = {} if a.no_breakdown else asyncio.run(breakdown(url, murl, env, batch_id, n))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        drop_db(a.db, url)
        if a.members_db == "pg":
            drop_db(a.db, murl)
        tmp.cleanup()

    best = {k: min(v, key=lambda x: x["seconds"]) for k, v in results.items()}
    bank, look, echo, ids = best["bank"], best["lookups"], best["echo"], best["idfile"]
    mdb = "PostgreSQL" if a.members_db == "pg" else "SQLite"
    print(
        f"\nbank payment file (names + 一卡通 cards from members over gRPC), {n:,} payments;"
        f" members on {mdb}, funds on PostgreSQL; best of {a.rounds}"
    )
    print(f"  {'measure':<44} {'seconds':>8} {'lines/s':>10}  bank file is")
    for label, r in (
        ("bank file: stream_payment_file, CSV", bank),
        ("raw lookups: BatchGetPayees, same N names", look),
        ("raw gRPC: same calls and bytes, bare server", echo),
        ("id-only file: write_id_list", ids),
    ):
        ratio = "" if r is bank else f"{bank['seconds'] / r['seconds']:6.1f}× its time"
        print(f"  {label:<44} {r['seconds']:8.2f} {n / r['seconds']:10,.0f}  {ratio}")
    print(
        f"  file: {bank['lines']:,} lines, {bank['bytes'] / 1e6:.0f} MB, {bank['total_fen'] / 100:,.2f} 元;"
        f" checks {problems or 'ok'}"
    )
    print(
        f"  peak RSS: bank-file child {bank['maxrss'] / 2**20:.0f} MiB, lookups child {look['maxrss'] / 2**20:.0f} MiB,"
        f" id-only child {ids['maxrss'] / 2**20:.0f} MiB"
    )
    if file_log:
        print(f"  {file_log}")
    if parts:
        print(f"\n  where the time goes (each part alone, in one process, no gRPC; seconds for {n:,}):")
        rows = [
            (
                "members' own work: PersonsService.batch_get_payees ×1000 (SQL + decrypt + protobuf + audit)",
                parts["members_work"],
            ),
            ("  of which the persons read as ORM entities, as batch_get_payees does", parts["members_orm"]),
            ("  (the same rows, id and card_cipher only, as plain rows)", parts["members_sql"]),
            ("  of which the card decrypts alone (AES-GCM)", parts["decrypt"]),
            ("funds: the payments pages (10 000 a query)", parts["funds_pages"]),
            ("funds: the rows (incl. village labels)", parts["lines"]),
            ("  of which village_label (RegionCode.parse per line)", parts["village_labels"]),
            ("funds: CSV rendering (CsvWriter.add + finish, to a file)", parts["render"]),
            ("funds: sha256 + size of the spool, per 64 MiB", parts["sha256_per_64MiB"]),
        ]
        for label, s in rows:
            print(f"    {label:<88} {s:7.2f}")
        print(
            f"    gRPC + client side of the lookups (raw lookups − members' own work)"
            f"{'':<21} {look['seconds'] - parts['members_work']:7.2f}"
        )
    print(f"  load average (1 min) {load:.2f} before, {load_after:.2f} after, {os.cpu_count()} cores")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
