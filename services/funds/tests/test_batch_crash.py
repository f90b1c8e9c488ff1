"""A payment batch process killed mid-batch, then the same request rerun: the
rerun completes and every beneficiary is paid exactly once (SQLite and
PostgreSQL, real processes, real kill).

The batch is one transaction written in chunks; the worker dies after its
first chunk is written (``os._exit`` at the ``batch.after_chunk`` fault point,
or stopped there and ``kill -9``-ed by the test). Nothing of the dead batch may
survive: no payment, journal, batch or PaymentsIssued event, and the ledger
invariants hold; the rerun pays all N, a third request pays nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from jsx.common.v1 import common_pb2 as c
from jsx.funds.v1 import events_pb2 as fev
from jsx.funds.v1 import funds_pb2 as pb
from jsx_funds.disbursement.tables import PaymentBatchRow, PaymentRow
from jsx_funds.entrypoints.grpc import compose
from jsx_funds.ledger import domain as ld
from jsx_funds.ledger.service import LedgerService
from jsx_funds.ledger.tables import JournalRow
from jsx_funds.ledger.verify import verify
from jsx_funds.programs import wire as pw
from jsx_funds.programs.tables import ApplicationRow
from jsx_funds.projections.tables import HouseholdProjection, SituationProjection
from jsxcore.db import session_factory, transaction
from jsxcore.outbox import OutboxEvent
from jsxcore.plugins import PluginHost
from jsxcore.testing.helpers import rid
from jsxcore.values import Money, RegionCode

WORKER = Path(__file__).with_name("batch_crash_worker.py")
N = 2_500
CHUNK = 1_000  # three chunks: the crash leaves one written, uncommitted
ALLOCATED = 10_000_000_00


async def seed(engine: AsyncEngine) -> int:
    """A 洪江 特别扶助 program with N enrolled mothers (half 失独 940 元, half 伤残 580 元); returns its id."""
    sessions = session_factory(engine)
    ctx = compose(sessions, PluginHost())
    funds, svc = ctx.ledger, ctx.programs
    hj = RegionCode.parse("431281")
    fund = await funds.create_fund(
        ld.NewFund(name="特别扶助资金", kind=ld.FundKind.PROGRAM, region=hj), caller=None, idem=None
    )
    fund_id = int(fund.name.split("/")[1])
    src = await funds.create_fund_source(
        ld.NewSource(name="中央和省级特别扶助资金", kind=ld.SourceKind.PROVINCE_FINANCE, region=hj),
        caller=None,
        idem=None,
    )
    await funds.post_allocation(
        ld.Allocation(fund_id=fund_id, source_id=int(src.name.split("/")[1]), amount=Money(ALLOCATED)),
        caller=None,
        idem=None,
    )
    program = await svc.create_program(
        pw.read_new_program(
            pb.Program(
                display_name="2022年洪江市计生特别扶助",
                type=pb.PROGRAM_TYPE_SPECIAL_SUPPORT,
                region=c.RegionCode(code="431281"),
                fund=fund.name,
                year=2022,
            )
        ),
        caller=None,
        idem=None,
    )
    pid = int(program.name.split("/")[1])
    t = datetime(2022, 6, 1, tzinfo=UTC)
    village = "431281101201"
    async with transaction(sessions) as s:
        await s.execute(
            insert(HouseholdProjection),
            [
                {
                    "household_id": f"hh{i}",
                    "village": village,
                    "head_person": f"persons/head{i}",
                    "member_count": 2,
                    "as_of": t,
                    "updated_at": t,
                }
                for i in range(N)
            ],
        )
        await s.execute(
            insert(SituationProjection),
            [
                {
                    "household_id": f"hh{i}",
                    "kind": "SPECIAL_DISABLED" if i % 2 else "SPECIAL_BEREAVED",
                    "effective_from": date(2020, 1, 1),
                    "effective_to": None,
                    "disability_grade": 2 if i % 2 else 0,
                    "as_of": t,
                }
                for i in range(N)
            ],
        )
        await s.execute(
            insert(ApplicationRow),
            [
                {
                    "program_id": pid,
                    "household_id": f"hh{i}",
                    "person": f"persons/m{i}",
                    "beneficiary": f"persons/m{i}",
                    "village": village,
                    "period": "2022-07",
                    "amount_requested": 0,
                    "amount_entitled": 94000,
                    "state": "PAID",
                    "chain": "VILLAGE,TOWNSHIP,COUNTY",
                    "publicity_days": 7,
                    "publicity_working_days": False,
                    "publicity_start": t,
                    "publicity_end": t,
                    "provenance": [],
                    "attributes": {"birth_date": "1965-03-01"},
                    "created_by": "clerk",
                    "created_at": t,
                    "updated_at": t,
                }
                for i in range(N)
            ],
        )
    return pid


def start(db_url: str, pid: int, request_id: str, fault: str | None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "JSX_FAULT"}
    if fault:
        env["JSX_FAULT"] = fault
    return subprocess.Popen(
        [sys.executable, str(WORKER), db_url, str(pid), "2022-08", request_id, str(CHUNK)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_stopped(proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until the worker has stopped itself at the fault point (state T in /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"worker exited {proc.returncode} before stopping: {proc.stderr.read() if proc.stderr else ''}")
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail("worker never reached the batch.after_chunk fault point")


async def counts(engine: AsyncEngine) -> dict[str, int]:
    async with session_factory(engine)() as s:

        async def n(stmt: Any) -> int:
            return int((await s.execute(stmt)).scalar_one())

        return {
            "payments": await n(select(func.count()).select_from(PaymentRow)),
            "keys": await n(select(func.count(func.distinct(PaymentRow.payment_key)))),
            "payment_journals": await n(
                select(func.count()).select_from(JournalRow).where(JournalRow.kind == "PAYMENT")
            ),
            "batches": await n(select(func.count()).select_from(PaymentBatchRow)),
            "batch_payments": await n(
                select(func.count()).select_from(PaymentRow).where(PaymentRow.batch_id.is_not(None))
            ),
            "paid_apps": await n(select(func.count(func.distinct(PaymentRow.application_id)))),
            "events": sum(
                len(fev.PaymentsIssued.FromString(p).payment_names)
                for p in (
                    await s.execute(
                        select(OutboxEvent.payload).where(OutboxEvent.subject == "jsx.funds.payment_batch.issued")
                    )
                ).scalars()
            ),
            "total": await n(select(func.coalesce(func.sum(PaymentRow.amount), 0))),
        }


@pytest.mark.parametrize("how", ["exit", "kill -9"])
async def test_killed_mid_batch_then_rerun_pays_each_once(engine: AsyncEngine, db_url: str, how: str) -> None:
    pid = await seed(engine)
    request_id = rid()
    if how == "exit":
        proc = start(db_url, pid, request_id, "batch.after_chunk")
        await asyncio.to_thread(proc.wait, 180)
        assert proc.returncode == 86, proc.stderr.read() if proc.stderr else ""
    else:
        proc = start(db_url, pid, request_id, "batch.after_chunk:stop")
        await asyncio.to_thread(wait_stopped, proc)
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 30)
        assert proc.returncode == -signal.SIGKILL
    # The dead batch left nothing: its transaction never committed.
    empty = await counts(engine)
    assert empty == dict.fromkeys(empty, 0), empty

    # The clerk retries the same request: it completes and pays everyone once.
    proc = start(db_url, pid, request_id, None)
    out, err = await asyncio.to_thread(proc.communicate, None, 300)
    assert proc.returncode == 0, err
    expected_total = (N // 2) * 580_00 + (N - N // 2) * 940_00
    assert json.loads(out.strip().splitlines()[-1])["payments"] == N
    after = await counts(engine)
    # One PAYMENT journal carries the whole batch.
    assert after == {
        "payments": N,
        "keys": N,
        "payment_journals": 1,
        "batches": 1,
        "batch_payments": N,
        "paid_apps": N,
        "events": N,
        "total": expected_total,
    }, after

    # Another request for the month pays nothing again.
    proc = start(db_url, pid, rid(), None)
    out, err = await asyncio.to_thread(proc.communicate, None, 300)
    assert proc.returncode == 3 and json.loads(out.strip().splitlines()[-1]) == {"reason": "NOTHING_TO_PAY"}, (out, err)
    assert await counts(engine) == after

    async with session_factory(engine)() as s:
        assert await verify(s) == []
    funds = LedgerService(session_factory(engine))
    async with session_factory(engine)() as s:
        fund_id = int((await s.execute(select(PaymentRow.fund_id).limit(1))).scalar_one())
    bal = await funds.balance(fund_id)
    assert (bal.available.fen, bal.expended.fen) == (ALLOCATED - expected_total, expected_total)
