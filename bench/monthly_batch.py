#!/usr/bin/env python3
"""A 特别扶助 monthly payment batch over N generated beneficiaries on PostgreSQL,
next to a raw COPY of N rows measured in the same run.

    python3 dev.py bench monthly_batch [-n 1000000] [--db postgresql://postgres@127.0.0.1:5432/postgres]

Creates its own database on the server (dropped afterwards) and, untimed,
migrates it, opens a fund with enough money, creates a 2022 特别扶助 program
in 洪江市 (431281) and COPYs N enrolled beneficiaries straight into the
projection and ``applications`` (paid for 2022-07 already, as in a running
program). Then, timed:

* raw COPY — psycopg ``cursor.copy()`` of N rows as wide as a payment line
  (ids, payee, household, village, amount, reference, time) into a plain
  table in the same database;
* batch — in a child process (so setup memory does not count):
  ``DisbursementService.create_payment_batch`` for 2022-08 end to end
  (projection read, county plugins, payments, one ledger journal,
  PaymentsIssued outbox pages, one commit) plus the payment CSV written by
  ``DisbursementService.write_id_list``; the child's peak RSS is its VmHWM (``_common.peak_rss``).

Goals (issue #4): batch ≤ 5× raw COPY time; peak RSS < 1 GiB. Afterwards
(untimed) it checks every beneficiary is paid exactly once and, with
``--verify``, runs the ledger invariant check. Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _common import one_row, peak_rss, timed

COUNTY = "431281"  # 洪江市: 940/580 元 per month from 2022
PERIOD = "2022-08"
GIB = 1024**3

if TYPE_CHECKING:
    import grpc


def _admin_base(admin: str) -> str:
    return admin.rsplit("/", 1)[0]


def create_db(admin: str) -> str:
    name = "jsx_bench_batch_" + uuid.uuid4().hex[:10]
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{_admin_base(admin)}/{name}"


def drop_db(admin: str, url: str) -> None:
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


async def setup_program(url: str, n: int) -> int:
    """Fund, source, allocation and program through the services (untimed); returns the program id."""
    from jsx.common.v1 import common_pb2 as c
    from jsx.funds.v1 import funds_pb2 as pb
    from jsx_funds.entrypoints.grpc import FundsServicer, compose
    from jsxcore.auth import Caller, reset_caller, set_caller
    from jsxcore.db import create_engine, session_factory
    from jsxcore.plugins import PluginHost
    from jsxcore.values import RegionCode

    eng = create_engine(url)
    api = FundsServicer(compose(session_factory(eng), PluginHost()))
    # the RPCs as a trusted province-wide administrator makes them
    token = set_caller(
        Caller(subject="system", display_name="system", roles=("admin",), region=RegionCode.parse("430000"))
    )
    rid = lambda: str(uuid.uuid4())  # noqa: E731
    # No gRPC context: the servicer called in process, as services/funds/tests/conftest.py's Api calls it.
    in_process = cast("grpc.aio.ServicerContext[Any, Any]", None)
    fund = await api.CreateFund(
        pb.CreateFundRequest(
            request_id=rid(),
            fund=pb.Fund(
                display_name="特别扶助资金", kind=pb.FUND_KIND_PROGRAM, owner_region=c.RegionCode(code=COUNTY)
            ),
        ),
        in_process,
    )
    src = await api.CreateFundSource(
        pb.CreateFundSourceRequest(
            request_id=rid(),
            fund_source=pb.FundSource(
                display_name="中央和省级特别扶助资金",
                kind=pb.FUND_SOURCE_KIND_PROVINCE_FINANCE,
                region=c.RegionCode(code=COUNTY),
            ),
        ),
        in_process,
    )
    await api.PostAllocation(
        pb.PostAllocationRequest(fund=fund.name, source=src.name, amount=c.Money(fen=n * 940_00 * 3), request_id=rid()),
        in_process,
    )
    program = await api.CreateProgram(
        pb.CreateProgramRequest(
            request_id=rid(),
            program=pb.Program(
                display_name="2022年洪江市计生特别扶助",
                type=pb.PROGRAM_TYPE_SPECIAL_SUPPORT,
                region=c.RegionCode(code=COUNTY),
                fund=fund.name,
                year=2022,
            ),
        ),
        in_process,
    )
    reset_caller(token)
    await eng.dispose()
    return int(program.name.split("/")[1])


def seed(url: str, program_id: int, n: int, villages: int, birth_years: int, real_births: bool = False) -> None:
    """N enrolled beneficiaries (one per household) COPYed into the projection and applications.

    Half 失独 (bereaved), half 伤残 (disabled, grade 1–3); mothers born on
    1 March of one of ``birth_years`` years from 1950 — or, with
    ``real_births``, on any day of those years, as real mothers are;
    ``villages`` villages. The distinct rule inputs are villages × 4
    situations × birth_years, or with real births up to villages × 4 ×
    365 × birth_years (≈ N).
    """
    rnd = random.Random(4)
    asof = datetime(2022, 6, 1, tzinfo=UTC)
    pub_end = datetime(2022, 7, 1, tzinfo=UTC)
    vill = [f"{COUNTY}{100 + t:03d}{200 + v:03d}" for t in range(10) for v in range(max(1, villages // 10))][:villages]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY proj_households (household_id, village, head_person, member_count, as_of, updated_at) FROM STDIN"
        ) as cp:
            for i in range(n):
                cp.write_row((f"hh{i}", vill[i % len(vill)], f"persons/head{i}", 2, asof, asof))
        with cur.copy(
            "COPY proj_household_situations (household_id, kind, effective_from, effective_to, disability_grade, as_of)"
            " FROM STDIN"
        ) as cp:
            for i in range(n):
                disabled = i % 2 == 1
                cp.write_row(
                    (
                        f"hh{i}",
                        "SPECIAL_DISABLED" if disabled else "SPECIAL_BEREAVED",
                        "2020-01-01",
                        None,
                        1 + (i // 2) % 3 if disabled else 0,
                        asof,
                    )
                )
        with cur.copy(
            "COPY applications (program_id, household_id, person, beneficiary, village, period, amount_requested,"
            " amount_entitled, state, chain, publicity_days, publicity_working_days, publicity_start, publicity_end,"
            " provenance, attributes, created_by, created_at, updated_at) FROM STDIN"
        ) as cp:
            for i in range(n):
                year = 1950 + rnd.randrange(birth_years)
                born = (
                    (date(year, 1, 1) + timedelta(days=rnd.randrange(365))).isoformat()
                    if real_births
                    else f"{year}-03-01"
                )
                cp.write_row(
                    (
                        program_id,
                        f"hh{i}",
                        f"persons/m{i}",
                        f"persons/m{i}",
                        vill[i % len(vill)],
                        "2022-07",
                        0,
                        94000,
                        "PAID",
                        "VILLAGE,TOWNSHIP,COUNTY",
                        7,
                        False,
                        pub_end - timedelta(days=7),
                        pub_end,
                        "[]",
                        json.dumps({"birth_date": born}),
                        "clerk",
                        asof,
                        asof,
                    )
                )
        conn.commit()
        # As in a running program, whose tables autovacuum has long visited: rows frozen in their pages
        # (hint bits set), statistics current. Freshly COPYed, the batch's first read would set a
        # million hint bits and write every page back (+0.5–0.8 s), which no real month pays.
        conn.autocommit = True
        cur.execute("VACUUM (FREEZE, ANALYZE)")
        cur.execute("CHECKPOINT")


def seed_paid_months(url: str, program_id: int, n: int, months: int) -> None:
    """``months`` earlier months (2022-07 back) already paid to all N, as in a running program: the batch's
    "not paid yet this month" test and its UNIQUE key index then work against that history. Rows only
    (no journals), so ``--verify`` is not offered with it."""
    if not months:
        return
    with psycopg.connect(url) as conn:
        seq = one_row(conn.execute("SELECT pg_get_serial_sequence('journals', 'id')"))[0]
        for m in range(months):
            year, month = divmod(2022 * 12 + 6 - m, 12)
            period = f"{year}-{month + 1:02d}"
            conn.execute(
                "INSERT INTO payments (id, journal_id, fund_id, payment_key, payee, amount, created_at, application_id,"
                " household_id, village)"
                " SELECT nextval(%s::regclass), 0, 1, "
                " %s || '/' || a.beneficiary || '/' || %s, a.person, 94000, now(),"
                " a.id, a.household_id, a.village FROM applications a WHERE a.program_id = %s",
                (seq, program_id, period, program_id),
            )
            conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM (FREEZE, ANALYZE) payments")
        conn.execute("CHECKPOINT")


def raw_copy(url: str, n: int) -> float:
    """Seconds to COPY N payment-line-wide rows into a plain table (and commit)."""
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE raw_copy (id bigint, batch bigint, payee varchar(100), household varchar(64),"
            " village varchar(12), amount bigint, reference varchar(200), created_at timestamptz)"
        )
        conn.commit()
        with timed() as t:
            with cur.copy("COPY raw_copy FROM STDIN") as cp:
                for i in range(n):
                    cp.write_row(
                        (
                            i,
                            1,
                            f"persons/m{i}",
                            f"households/hh{i}",
                            "431281100200",
                            94000,
                            f"1/persons/m{i}/2022-08",
                            now,
                        )
                    )
            conn.commit()
        cur.execute("DROP TABLE raw_copy")
        conn.commit()
    return t.seconds


async def child(url: str, program_id: int, out_csv: str) -> dict[str, object]:
    """The measured part: the batch end to end and its payment file (run in a fresh process)."""
    import logging

    from jsx.common.v1 import common_pb2 as c
    from jsx.funds.v1 import funds_pb2 as pb
    from jsx_funds.disbursement import planner_pg  # noqa: F401  (imported before the clock starts, as in a server)
    from jsx_funds.disbursement.service import SERVICE_NAME
    from jsx_funds.entrypoints.grpc import compose
    from jsxcore.auth import Caller
    from jsxcore.db import create_engine, session_factory
    from jsxcore.plugins import PluginHost
    from jsxcore.usecase import Idem
    from jsxcore.values import Period, RegionCode

    # The batch's own account of where its time went ("payment batch …: … (select, rules, insert, …)").
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    logging.getLogger("jsx.funds.batches").setLevel(logging.INFO)
    host = PluginHost({"hunan": ["430000"], "hongjiang": [COUNTY]})
    host.discover()
    eng = create_engine(url)
    ctx = compose(session_factory(eng), host, clock=lambda: datetime(2022, 8, 5, 2, tzinfo=UTC))
    svc = ctx.disbursement
    admin = Caller(subject="fin", display_name="fin", roles=("admin",), region=RegionCode.parse(COUNTY))
    req = pb.CreatePaymentBatchRequest(
        request_id=str(uuid.uuid4()),
        program=f"programs/{program_id}",
        region=c.RegionCode(code=COUNTY),
        period=c.Period(code=PERIOD),
    )
    # Warm up as a running service would be: driver loaded, pool connected, modules imported, plugins loaded.
    from sqlalchemy import text

    async with eng.connect() as conn:
        await conn.execute(text("SELECT 1"))
    await ctx.programs.get_program(program_id, caller=None)
    t0 = time.perf_counter()
    # (What the servicer does with the request: plain arguments, the request for AIP-155.)
    batch = await svc.create_payment_batch(
        program_id,
        RegionCode.parse(COUNTY),
        Period.parse(PERIOD),
        caller=admin,
        idem=Idem.of(SERVICE_NAME, "CreatePaymentBatch", req),
    )
    t1 = time.perf_counter()
    with open(out_csv, "w", encoding="utf-8", newline="") as f:
        lines = await svc.write_id_list(int(batch.name.split("/")[1]), f)
    t2 = time.perf_counter()
    await eng.dispose()
    return {
        "batch_s": t1 - t0,
        "file_s": t2 - t1,
        "payments": batch.payment_count,
        "total_fen": batch.total.fen,
        "file_lines": lines,
        "maxrss": peak_rss(),
    }


async def check(url: str, n: int, verify_ledger: bool) -> list[str]:
    """Untimed: everyone paid exactly once, balances exact, (optionally) the ledger invariants."""
    problems = []
    with psycopg.connect(url) as conn:
        # (Earlier months seeded by --paid-months have no batch: only this batch's payments count.)
        paid, keys, dup = one_row(
            conn.execute(
                "SELECT count(*), count(DISTINCT payment_key), (SELECT count(*) FROM (SELECT 1 FROM payments"
                " WHERE batch_id IS NOT NULL GROUP BY application_id HAVING count(*) > 1) x) FROM payments"
                " WHERE batch_id IS NOT NULL"
            )
        )
        from jsx.funds.v1 import events_pb2

        events = sum(
            len(events_pb2.PaymentsIssued.FromString(p).payment_names)
            for (p,) in conn.execute("SELECT payload FROM outbox WHERE subject = 'jsx.funds.payment_batch.issued'")
        )
        expected = one_row(
            conn.execute(
                "SELECT sum(CASE WHEN h.kind = 'SPECIAL_BEREAVED' THEN 94000 ELSE 58000 END)"
                " FROM proj_household_situations h"
            )
        )[0]
        total = one_row(conn.execute("SELECT sum(amount) FROM payments WHERE batch_id IS NOT NULL"))[0]
    if not (paid == keys == events == n and dup == 0):
        problems.append(f"payments {paid}, distinct keys {keys}, events {events}, apps paid twice {dup}; expected {n}")
    if total != expected:
        problems.append(f"paid {total} 分, expected {expected} 分 (940/580 元)")
    if verify_ledger:
        from jsx_funds.ledger.verify import verify
        from jsxcore.db import create_engine, session_factory

        eng = create_engine(url)
        async with session_factory(eng)() as s:
            problems += [str(p) for p in await verify(s)]
        await eng.dispose()
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="beneficiaries (default 1 000 000)")
    ap.add_argument(
        "--db",
        default=os.environ.get("JSX_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="admin URL of the PostgreSQL server; a fresh database is created and dropped",
    )
    ap.add_argument("--villages", type=int, default=100)
    ap.add_argument("--birth-years", type=int, default=20)
    ap.add_argument(
        "--real-births",
        action="store_true",
        help="mothers born on any day of the birth years (distinct rule inputs ≈ N), not all on 1 March",
    )
    ap.add_argument(
        "--paid-months",
        type=int,
        default=0,
        help="earlier months already paid to everyone (payments history the batch works against)",
    )
    ap.add_argument("--verify", action="store_true", help="also run the full ledger invariant check (slow at 1M)")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument("--child", nargs=3, metavar=("URL", "PROGRAM", "CSV"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.verify and a.paid_months:
        ap.error("--verify checks the ledger, which --paid-months's history rows are not posted to")
    if a.child:
        print(json.dumps(asyncio.run(child(a.child[0], int(a.child[1]), a.child[2]))))
        return 0

    from jsx_funds.adapters.db import migrate

    url = create_db(a.db)
    try:
        migrate(url)
        with timed() as t_setup:
            program_id = asyncio.run(setup_program(url, a.n))
            seed(url, program_id, a.n, a.villages, a.birth_years, a.real_births)
            seed_paid_months(url, program_id, a.n, a.paid_months)
        print(f"setup: {a.n:,} beneficiaries seeded in {t_setup.seconds:.1f} s (untimed)", flush=True)
        raw = raw_copy(url, a.n)
        print(f"raw COPY of {a.n:,} rows: {raw:.2f} s", flush=True)
        # Each timed part starts from a checkpointed server: the batch should not pay for writing out
        # the raw COPY's million dirty pages in the background.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        csv_path = f"/tmp/jsx_bench_payments_{uuid.uuid4().hex[:8]}.csv"
        proc = subprocess.run(
            [sys.executable, __file__, "--child", url, str(program_id), csv_path], capture_output=True, text=True
        )
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 2
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        phases = [ln for ln in proc.stderr.splitlines() if ln.startswith("payment batch ")]
        csv_mb = os.path.getsize(csv_path) / 1e6
        os.unlink(csv_path)
        problems = asyncio.run(check(url, a.n, a.verify))
    finally:
        if not a.keep:
            drop_db(a.db, url)
    total_s = r["batch_s"] + r["file_s"]
    ratio = total_s / raw
    rss = r["maxrss"]
    ok_time, ok_mem = ratio <= 5, rss < GIB
    births = f"{a.birth_years} birth years, any day" if a.real_births else f"{a.birth_years} birth years"
    print(f"\n特别扶助 monthly batch, {a.n:,} beneficiaries ({a.villages} villages × 4 situations × {births})")
    print(f"  raw COPY {a.n:,} rows          {raw:8.2f} s")
    print(
        f"  batch (one transaction)      {r['batch_s']:8.2f} s   {r['payments']:,} payments, {r['total_fen'] / 100:,.2f} 元"
    )
    print(f"  payment file (streamed)      {r['file_s']:8.2f} s   {r['file_lines']:,} lines, {csv_mb:.0f} MB")
    print(f"  batch + file / raw COPY      {ratio:8.2f} ×   goal ≤ 5×      {'ok' if ok_time else 'ABOVE GOAL'}")
    print(f"  peak RSS (child)             {rss / 2**20:8.0f} MiB goal < 1024 MiB {'ok' if ok_mem else 'ABOVE GOAL'}")
    print(f"  checks                       {'ok' if not problems else problems[:5]}")
    for line in phases:
        print(f"  {line}")
    return 0 if ok_time and ok_mem and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
