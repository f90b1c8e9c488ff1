"""Payment batches: pay a program's beneficiaries for a period, once each.

Who is paid:

* **Periodic programs** (特别扶助, monthly): every beneficiary enrolled in the
  program in the region — an application approved through 公示 (READY_TO_PAY,
  or already paid in an earlier batch) for a period starting on or before
  this one — whose household still has a situation in force on the period's
  first day (from the members projection). Eligibility and the amount are
  asked of the region's plugins for *this* period, so 2022-08 uses the rule
  in force on 2022-08-01 (洪江 940/580 元, 沅陵 the national 590/460 元).
* **Other programs**: every application for exactly this period whose 公示
  is over, at its entitled amount — and, again, one whose payment the bank
  failed (paid as ``key#2``, ``#3`` …).

Nothing is paid twice: each payment's business key is
``{p}/{b}/{period}`` (program, beneficiary, period) and ``payments.payment_key``
is UNIQUE. The batch runs in one transaction holding the fund's row lock, and
re-reads which keys are paid after taking it, so concurrent or retried batch
requests pay only what is still unpaid (and a request with nothing left
fails with ``NOTHING_TO_PAY``); a crash mid-batch rolls the whole batch back.
The batch posts one PAYMENT journal for its total (Dr EXPENSE, Cr AVAILABLE);
each payment is a ``payments`` row naming that journal (``verify`` proves
they add up). If the fund cannot cover the batch, ``INSUFFICIENT_FUNDS`` and
nothing is posted. Per payment the batch writes one row; the events go out
as ``PaymentsIssued`` pages of 1000 payments. A monthly beneficiary's application is not
rewritten each month (its payments carry the month's state).

The payment file (:meth:`BatchesService.payment_file_csv`) lists payee and
household resource ids, village, amount and the payment reference: the funds
service holds no names or card numbers, so the bank layout's name/card
columns are left for the members service to fill (see README).
"""
from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import logging
import signal
import time
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, NamedTuple, TextIO

import psycopg
from sqlalchemy import (BigInteger, Integer, String, Text, and_, any_, bindparam, case, cast, false, func, insert, literal,
                        or_, select, text, update)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import events_pb2, funds_pb2
from jsxcore import hookspecs as hs
from jsxcore.hookspecs import BirthDateUse, RuleInputs
from jsxcore.auth import Caller
from jsxcore.bulk import fewer_collections
from jsxcore.errors import Aborted, DomainError, FailedPrecondition, InvalidArgument, NotFound
from jsxcore.outbox import OutboxEvent
from jsxcore.values import Money, Period, PeriodKind, RegionCode

from jsx_funds.adapters import bus, db
from jsx_funds.adapters.db import BankResultRow, PaymentBatchRow, PaymentFailureRow, PaymentRow, aware
from jsx_funds.callers import actor_of
from jsx_funds.ledger import domain as d
from jsx_funds.ledger import tables as ledger_tables
from jsx_funds.ledger.service import locked_fund, post
from jsx_funds.ledger.tables import JournalRow
from jsx_funds.legacy_wire import decode_token, encode_token, page_size, parse_id, region_prefix, ts
from jsx_funds.programs.domain import RULE_TYPE
from jsx_funds.programs.domain import SITUATION_ORDER as _SITUATION_ORDER
from jsx_funds.programs.service import ProgramsService
from jsx_funds.programs.tables import ApplicationRow, ProgramRow
from jsx_funds.projections.tables import HouseholdProjection, SituationProjection

log = logging.getLogger("jsx.funds.batches")

#: Programs paid every period to enrolled beneficiaries, and the period kind they are paid by.
PERIODIC = {"SPECIAL_SUPPORT": PeriodKind.MONTH}
#: Application states that mean "enrolled" for a periodic program (公示 over, paid before, …).
_ENROLLED = ("IN_PUBLICITY", "PAYMENT_ISSUED", "PAID", "PAYMENT_FAILED")
#: Application states a one-off program pays from (公示 over, or failed at the bank and paid again).
_PAYABLE = ("IN_PUBLICITY", "PAYMENT_FAILED")
#: Application states a batch moves to PAYMENT_ISSUED (the others already say "being paid").
_TO_ISSUE = ("IN_PUBLICITY", "PAYMENT_FAILED")


def batch_name(batch_id: int) -> str:
    return f"paymentBatches/{batch_id}"


def payment_ref(batch_id: int, payment_id: int) -> str:
    """A batch payment's resource name, also the 业务参考号 on the bank file."""
    return f"{batch_name(batch_id)}/payments/{payment_id}"


#: A batch payment's state: the bank's answer, or PENDING while there is none.
STATE = func.coalesce(BankResultRow.state, "PENDING")


def payment_message(p: PaymentRow, r: BankResultRow | None) -> funds_pb2.Payment:
    """A batch payment as the wire ``Payment`` (with the bank's answer once there is one)."""
    out = funds_pb2.Payment(
        name=payment_ref(p.batch_id or 0, p.id), application=bus.application_name(p.application_id or 0),
        household=f"households/{p.household_id}", payee=p.payee, amount=common_pb2.Money(fen=p.amount),
        state=funds_pb2.PaymentState.Value("PAYMENT_STATE_" + (r.state if r else "PENDING")))
    if r is not None:
        out.bank_reference, out.failure_reason = r.bank_reference, r.failure_reason
        if r.paid_date is not None:
            out.paid_date.CopyFrom(common_pb2.Date(year=r.paid_date.year, month=r.paid_date.month, day=r.paid_date.day))
    return out


class BatchesService(ProgramsService):
    """CreatePaymentBatch, GetPaymentBatch, ListPayments and the payment file."""

    async def create_payment_batch(self, req: funds_pb2.CreatePaymentBatchRequest, caller: Caller | None) -> funds_pb2.PaymentBatch:
        period = Period.parse(req.period.code, field="period.code")
        if not req.region.code:
            raise InvalidArgument.field("region.code", "请填写发放地区的行政区划代码，例如 431281", reason="MISSING_REGION")
        region = RegionCode.parse(req.region.code, field="region.code")
        if caller is not None:
            caller.require_region(region)
        now = self.clock()
        async with self.sessions() as s:
            program = await self._program(s, req.program, "program", caller)
        if not RegionCode(program.region).contains(region):
            raise InvalidArgument.field("region.code", f"地区 {region.short} 不在项目主办地区 "
                                        f"{RegionCode(program.region).short} 内", reason="OUT_OF_PROGRAM_REGION")
        kind = PERIODIC.get(program.type)
        if kind is not None and period.kind is not kind:
            raise InvalidArgument.field("period.code", f"该项目按月发放，请填写月份，例如 {period.start.year}-08",
                                        reason="PERIOD_KIND")

        async def handler(s: AsyncSession) -> funds_pb2.PaymentBatch:
            with fewer_collections():
                return await _BatchWriter(self, s, program, region, period, kind is not None, now, caller, req.request_id).run()

        return await self._mutate("CreatePaymentBatch", req, funds_pb2.PaymentBatch, handler, caller)

    @staticmethod
    def _nothing_message(program: ProgramRow, region: RegionCode, period: Period, skipped: list[Any]) -> str:
        why = f"；另有 {len(skipped)} 人经规则核定本期不予发放" if skipped else ""
        return f"{program.name} 在 {region.short} 的 {period} 没有待支付的对象（已全部支付或尚无公示期满的申请）{why}"

    async def _batch_message(self, s: AsyncSession, batch: PaymentBatchRow) -> funds_pb2.PaymentBatch:
        amount = func.coalesce(func.sum(PaymentRow.amount), 0)
        recorded = batch.payment_count is not None and batch.payment_total is not None
        if recorded:
            # Only what the bank has answered is counted (O(answers)): a new batch's reply costs nothing per payment.
            q = (select(BankResultRow.state, func.count(), amount).join(PaymentRow, PaymentRow.id == BankResultRow.payment_id)
                 .where(BankResultRow.batch_id == batch.id).group_by(BankResultRow.state))
        else:
            # Written before migration 0013 recorded them: count the payments (O(batch)).
            q = (select(STATE, func.count(), amount).select_from(PaymentRow)
                 .outerjoin(BankResultRow, BankResultRow.payment_id == PaymentRow.id).where(db.in_batch(batch)).group_by(STATE))
        by = {st: (int(k), int(v)) for st, k, v in (await s.execute(q)).all()}
        n, total = ((batch.payment_count, batch.payment_total) if recorded
                    else (sum(v[0] for v in by.values()), sum(v[1] for v in by.values())))
        paid, failed = by.get("PAID", (0, 0)), by.get("FAILED", (0, 0))
        state = "ISSUED" if paid[0] + failed[0] == 0 else "SETTLED" if paid[0] + failed[0] == n else "PARTIALLY_SETTLED"
        return funds_pb2.PaymentBatch(
            name=batch_name(batch.id), program=bus.program_name(batch.program_id),
            region=common_pb2.RegionCode(code=batch.region), period=common_pb2.Period(code=batch.period),
            state=funds_pb2.PaymentBatchState.Value("PAYMENT_BATCH_STATE_" + state), payment_count=n,
            total=common_pb2.Money(fen=total),
            paid_count=paid[0], paid_total=common_pb2.Money(fen=paid[1]),
            failed_count=failed[0], failed_total=common_pb2.Money(fen=failed[1]),
            audit=common_pb2.AuditStamp(actor=batch.actor, time=ts(batch.created_at), request_id=batch.request_id))

    async def _batch(self, s: AsyncSession, name: str, field: str, caller: Caller | None) -> PaymentBatchRow:
        bid = parse_id(name, "paymentBatches", field)
        row = await s.get(PaymentBatchRow, bid)
        if row is None:
            raise NotFound(f"支付批次 paymentBatches/{bid} 不存在", reason="PAYMENT_BATCH_NOT_FOUND")
        if caller is not None:
            caller.require_region(row.region)
        return row

    async def get_payment_batch(self, req: funds_pb2.GetPaymentBatchRequest, caller: Caller | None) -> funds_pb2.PaymentBatch:
        async with self.sessions() as s:
            return await self._batch_message(s, await self._batch(s, req.name, "name", caller))

    async def list_payments(self, req: funds_pb2.ListPaymentsRequest, caller: Caller | None) -> funds_pb2.ListPaymentsResponse:
        limit = page_size(req.page_size)
        state = funds_pb2.PaymentState.Name(req.state)[len("PAYMENT_STATE_"):] if req.state else ""
        key = f"payments:{req.payment_batch}:{state}"
        after = decode_token(req.page_token, key)
        async with self.sessions() as s:
            batch = await self._batch(s, req.payment_batch, "payment_batch", caller)
            stmt = (select(PaymentRow, BankResultRow).outerjoin(BankResultRow, BankResultRow.payment_id == PaymentRow.id)
                    .where(db.in_batch(batch), PaymentRow.id > after).order_by(PaymentRow.id).limit(limit + 1))
            if state:
                stmt = stmt.where(STATE == state)
            rows = (await s.execute(stmt)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return funds_pb2.ListPaymentsResponse(
            payments=[payment_message(p, r) for p, r in rows],
            next_page_token=encode_token(rows[-1][0].id, key) if more else "")

    async def payment_file_csv(self, batch_id: int) -> str:
        """The batch's payment file as one string (see :meth:`write_payment_file`)."""
        out = io.StringIO()
        await self.write_payment_file(batch_id, out)
        return out.getvalue()

    async def write_payment_file(self, batch_id: int, out: TextIO, *, page: int = 20_000) -> int:
        """Stream the batch's payment file to ``out``; returns the number of payments.

        UTF-8 with BOM so Excel opens it; amounts in 元 with 2 decimals; CRLF
        lines. Streamed, so a million-line file never sits in memory: on
        PostgreSQL the server makes each line — in blocks on two connections
        at once when the batch's ids are unbroken (:meth:`_block_payment_file`),
        else through one cursor (:meth:`_copy_payment_file`) — elsewhere one
        streamed query through Python's csv writer; the same bytes every way
        (tests).
        """
        async with self.sessions() as s:
            batch = await self._batch(s, batch_name(batch_id), "payment_batch", None)
            program = await s.get(ProgramRow, batch.program_id)
            pname, bname = (program.name if program else ""), batch_name(batch.id)
            out.write("\ufeff")
            w = csv.writer(out, lineterminator="\r\n")
            w.writerow(["序号", "收款人编号", "户编号", "村（社区）代码", "金额（元）", "发放期间", "项目", "业务参考号"])
            conn = await s.connection()
            if conn.dialect.name == "postgresql" and _unbroken(batch):
                async with conn.engine.connect() as extra:
                    n, total = await self._block_payment_file((s.execute, extra.execute), batch, pname, out)
            elif conn.dialect.name == "postgresql":
                n, total = await self._copy_payment_file(conn, batch, pname, out)
            else:
                n, total = 0, 0
                result = await s.stream(
                    select(PaymentRow.id, PaymentRow.payee, PaymentRow.household_id, PaymentRow.village, PaymentRow.amount)
                    .where(db.in_batch(batch)).order_by(PaymentRow.id)
                    .execution_options(yield_per=page))
                async for rows in result.partitions(page):
                    for pid, payee, hid, village, amount in rows:
                        n += 1
                        total += amount
                        w.writerow([n, payee, f"households/{hid}", village, f"{amount // 100}.{amount % 100:02d}",
                                    batch.period, pname, f"{bname}/payments/{pid}"])
        w.writerow(["合计", n, "", "", Money(total).format_yuan(), "", "", ""])
        return n

    @staticmethod
    async def _block_payment_file(executes: Sequence[Any], batch: PaymentBatchRow, program_name: str,
                                  out: TextIO) -> tuple[int, int]:
        """The payment lines of a batch whose ids are one unbroken range (:func:`_unbroken`), made on the server
        a block of ``_FILE_BLOCK`` ids at a time by each of ``executes`` (one per connection) at once; returns
        (count, total 分).

        A line's 序号 is then its id's place in the range, so a block needs
        nothing from the blocks before it: the server makes its lines
        (quoted as the csv writer would, :func:`csv_field_sql`) joined into
        one text, the client only writes the blocks out in order. Two
        backends share the line making — a million lines in ~0.9 s where one
        connection's cursor took ~1.5 s (bench/monthly_batch). A batch's
        payments never change once written, so the two connections' snapshots
        read the same rows. At most two blocks per connection wait in memory.
        """
        constants = io.StringIO()
        csv.writer(constants, lineterminator="\r\n").writerow([batch.period, program_name, batch_name(batch.id)])
        first, last = batch.first_payment_id, batch.last_payment_id
        assert first is not None and last is not None
        line = (f"(id - {int(first) - 1})::text || ',' || " + csv_field_sql("payee") + " || ',' || "
                + csv_field_sql("'households/' || household_id") + " || ',' || village || ','"
                " || (amount / 100)::text || '.' || lpad((amount % 100)::text, 2, '0') || :constants || '/payments/' || id")
        block = text(f"SELECT string_agg({line}, E'\\r\\n' ORDER BY id), count(*), sum(amount) FROM payments"
                     " WHERE id >= :lo AND id < :hi AND batch_id = :bid")
        params = {"constants": "," + constants.getvalue()[:-2], "bid": batch.id}
        blocks = range(first, last + 1, _FILE_BLOCK)
        starts = iter(enumerate(blocks))
        loop = asyncio.get_running_loop()
        done: dict[int, asyncio.Future[Any]] = {}
        room = asyncio.Semaphore(2 * len(executes))

        def slot(i: int) -> asyncio.Future[Any]:
            return done.setdefault(i, loop.create_future())

        async def work(execute: Any) -> None:
            for i, lo in starts:  # shared: each block is taken by whichever connection is free
                await room.acquire()
                try:
                    row = (await execute(block, {**params, "lo": lo, "hi": min(lo + _FILE_BLOCK, last + 1)})).one()
                except BaseException as e:
                    slot(i).set_exception(e)
                    raise
                slot(i).set_result(row)

        workers = [asyncio.ensure_future(work(execute)) for execute in executes]
        n = total = 0
        try:
            for i in range(len(blocks)):
                lines, count, amount = await slot(i)
                del done[i]
                room.release()
                if count:
                    out.write(lines)
                    out.write("\r\n")
                    n += count
                    total += amount
        finally:
            for w in workers:
                w.cancel()
            for w in workers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await w
        if n != batch.payment_count:
            # The recorded count said every id of the range is this batch's; the lines' numbers relied on it.
            raise RuntimeError(f"{batch_name(batch.id)}: {n} payments read, {batch.payment_count} recorded")
        return n, total

    @staticmethod
    async def _copy_payment_file(conn: Any, batch: PaymentBatchRow, program_name: str, out: TextIO) -> tuple[int, int]:
        """The payment lines, each made on the server as the csv writer would; returns (count, total 分).

        Python numbers, joins and writes them: a row per COPY message, or
        per-value work in Python, cost 4–8 µs a line. The server quotes the
        ids as the csv writer does (:func:`csv_field_sql`; village codes are
        12 digits); the values every line shares are quoted here.
        """
        constants = io.StringIO()
        csv.writer(constants, lineterminator="\r\n").writerow([batch.period, program_name, batch_name(batch.id)])
        raw = (await conn.get_raw_connection()).driver_connection
        n = total = 0
        # Read in id order off the primary key: right after a batch its statistics still say the
        # range is nearly empty, and the planner would sort a million rows from a bitmap scan.
        await raw.execute("SET LOCAL enable_bitmapscan = off")
        async with raw.cursor(name=f"jsx_payment_file_{batch.id}") as cur:
            await cur.execute(
                "SELECT " + csv_field_sql("payee") + " || ',' || " + csv_field_sql("'households/' || household_id")
                + " || ',' || village || ',' || (amount / 100)::text || '.' || lpad((amount %% 100)::text, 2, '0')"
                " || %(constants)s || '/payments/' || id, amount FROM payments"
                " WHERE id BETWEEN %(first)s AND %(last)s AND batch_id = %(bid)s ORDER BY id",
                {"constants": "," + constants.getvalue()[:-2], "bid": batch.id,
                 "first": batch.first_payment_id, "last": batch.last_payment_id})
            # The next rows are asked for before these are written, so the server makes them meanwhile.
            fetch = asyncio.ensure_future(cur.fetchmany(20_000))
            try:
                while rows := await fetch:
                    fetch = asyncio.ensure_future(cur.fetchmany(20_000))
                    await asyncio.sleep(0)  # let it send the FETCH
                    out.write("".join([f"{i},{line}\r\n" for i, (line, _) in enumerate(rows, n + 1)]))
                    n += len(rows)
                    total += sum([amount for _, amount in rows])
            finally:
                if not fetch.done():
                    fetch.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await fetch
        return n, total


# ---------------------------------------------------------------- the batch writer

#: Applications read, ruled on and written per round trip (SQLite caps bound parameters at 32 766).
#: On PostgreSQL smaller is faster too: the writer's COPY only moves while the event loop runs,
#: and a chunk's rules and rendering hold the loop (1M: 22 s at 20 000, 19 s at 5 000).
CHUNK = 5_000


def _fault(point: str) -> None:
    """Die here if ``JSX_FAULT`` names this point (crash tests only; the outbox's convention);
    ``<point>:stop`` stops the process instead, for a test to ``kill -9`` it there."""
    fault = os.environ.get("JSX_FAULT")
    if fault == point:
        os._exit(86)
    if fault == point + ":stop":
        os.kill(os.getpid(), signal.SIGSTOP)


class _Rule:
    """The rules' answer for one distinct set of hook inputs: an amount with its basis, or why not."""

    __slots__ = ("amount", "basis", "reasons", "no")

    def __init__(self, amount: int, basis: list[str], reasons: list[str]) -> None:
        self.amount, self.basis, self.reasons = amount, basis, reasons
        #: Position of the basis in the batch's ``bases`` once a payment uses it.
        self.no: int | None = None


class _BatchWriter:
    """One CreatePaymentBatch inside the caller's single transaction.

    Why one transaction for a million payments: the fund lock, the UNIQUE
    payment keys and the balance check then cover the whole batch, and a
    process killed mid-batch leaves nothing behind (PostgreSQL aborts the
    dead connection's transaction, SQLite rolls its journal back on the next
    open), so the rerun simply pays everyone. PostgreSQL does it set-based
    (:meth:`_set_based`). SQLite reads keyset pages of ``CHUNK`` and writes
    each (executemany) before reading the next, so memory stays flat; each
    page's query anti-joins ``payments`` on the payment key, which also drops
    a beneficiary enrolled twice once the first is written.

    The rules are asked once per distinct input: the eligibility and amount
    hooks take plain data and are pure by contract (DESIGN.md §4), so two
    beneficiaries whose hook arguments are equal — village, situation, unit,
    birth date, attributes, program type, period, context; the opaque
    person/household ids aside, which a rule has no way to resolve — get the
    same answer. The ledger gets one PAYMENT journal for the batch, written
    last (its total is known then) under an id drawn first, which every
    payment row names.
    """

    def __init__(self, svc: BatchesService, s: AsyncSession, program: ProgramRow, region: RegionCode, period: Period,
                 periodic: bool, now: datetime, caller: Caller | None, request_id: str) -> None:
        self.svc, self.s, self.program, self.region, self.period = svc, s, program, region, period
        self.periodic, self.now, self.actor, self.request_id = periodic, now, actor_of(caller), request_id
        self.rules: dict[tuple[Any, ...], _Rule] = {}
        self.skipped: list[dict[str, Any]] = []
        self.starts: dict[str, date] = {}
        self.recent: set[str] = set()
        #: Application id → attempt number, for keys whose first payment failed at the bank (rare).
        self.attempts: dict[int, int] = {}
        self.count = 0
        self.total = 0
        #: The distinct bases of this batch's amounts (``payments.basis_no`` indexes it), and its id range.
        self.bases: list[list[str]] = []
        self.basis_nos: dict[tuple[str, ...], int] = {}
        #: What the region's rules declare they read (None: not declared, every attribute is an input).
        self.reads: RuleInputs | None = (
            svc.plugins.rule_inputs(RULE_TYPE.get(program.type, program.custom_type), region, within=True)
            if periodic else None)
        #: Attributes text → its declared part (:meth:`_declared`).
        self.declared: dict[str, str] = {}
        #: PostgreSQL: this program's other batches for this period, (id, first payment id, last payment id).
        self.period_batches: Sequence[Any] = []
        #: PostgreSQL: the candidates were rebuilt keyed by the declared inputs (:meth:`_declare_candidates`).
        self.declared_sql = False
        #: PostgreSQL: how many candidate rows were numbered (``n`` runs from 1 to this, with gaps where rows left).
        self.numbered = 0
        self.first_id: int | None = None
        self.last_id: int | None = None
        #: PaymentsIssued pages written so far.
        self.pages = 0
        #: PostgreSQL: the amount for each paid input hash (``jsx_batch_rules`` as the client knows it), and
        #: whether any candidate is not paid (refused by the rules, or enrolled from a later period): then the
        #: candidates read back include rows without a payment.
        self.amount_of: dict[int, int] = {}
        self.some_unpaid = False
        #: Seconds per phase (PostgreSQL), logged when the batch is written.
        self.spent: dict[str, float] = dict.fromkeys(
            ("select", "retries", "rules", "insert", "outbox", "issue", "journal"), 0.0)
        self.started = time.perf_counter()

    async def run(self) -> funds_pb2.PaymentBatch:
        s, program, period = self.s, self.program, self.period
        fund = await locked_fund(s, program.fund_id)
        self.fund = fund
        self.pg = (await s.connection()).dialect.name == "postgresql"
        have = sum((await ledger_tables.balances_for(s, [d.AccountKey(fund.id, d.AccountKind.AVAILABLE)])).values())
        batch = PaymentBatchRow(program_id=program.id, region=self.region.code, period=str(period), skipped=[],
                                actor=self.actor, request_id=self.request_id, created_at=self.now)
        s.add(batch)
        await s.flush()
        self.batch = batch
        if self.pg:
            # The batch journal's id is drawn first; payments draw theirs from the same sequence.
            self.id_sequence = str((await s.execute(text("SELECT pg_get_serial_sequence('journals', 'id')"))).scalar_one())
            self.journal_id = int((await s.execute(text("SELECT nextval(CAST(:seq AS regclass))"), {"seq": self.id_sequence})).scalar_one())
            await self._set_based()
        else:
            # SQLite: keyset pages; each page's anti-join sees the payments written before it. We hold the
            # single writer lock (lock_fund wrote first), so ids past the current max are ours. Payment ids
            # share the journals' id space, and SQLite gives a new journal max(id) + 1: the batch journal
            # takes the id after every id a payment of this batch could take, so later journals (and the
            # single payments named after them) never meet a batch payment's id.
            top = max(int((await s.execute(select(func.coalesce(func.max(JournalRow.id), 0)))).scalar_one()),
                      int((await s.execute(select(func.coalesce(func.max(PaymentRow.id), 0)))).scalar_one()))
            upper = int((await s.execute(select(func.count()).select_from(self._select().subquery()))).scalar_one())
            self.next_id, self.journal_id = top + 1, top + 1 + upper
            after = 0
            while rows := (await s.execute(self._select().where(ApplicationRow.id > after)
                                           .order_by(ApplicationRow.id).limit(CHUNK))).all():
                after = rows[-1].id
                page = await self._rule_page(rows)
                if page:
                    payments, outbox, issue = self._rows(page, self._ids(len(page)))
                    await self._insert(payments, outbox)
                    await self._issue(issue)
                _fault("batch.after_chunk")
        if self.count == 0:
            raise FailedPrecondition(self.svc._nothing_message(program, self.region, period, self.skipped),
                                     reason="NOTHING_TO_PAY")
        if self.total > have and not fund.allow_negative:
            raise FailedPrecondition(
                f"基金 funds/{fund.id}（{fund.name}）余额不足：可用 {d.yuan(max(have, 0))} 元，"
                f"本批 {self.count} 笔共需 {d.yuan(self.total)} 元，请先拨入资金", reason="INSUFFICIENT_FUNDS")
        total = Money(self.total)
        t = time.perf_counter()
        await post(s, fund, d.JournalKind.PAYMENT, total, lambda _jid: d.batch_payment(fund.id, total),
                   actor=self.actor, memo=f"{program.name} {period} 一卡通发放 {self.count} 笔",
                   request_id=self.request_id, counterparty=batch_name(batch.id), journal_id=self.journal_id)
        batch.journal_id = self.journal_id
        batch.first_payment_id, batch.last_payment_id, batch.bases = self.first_id, self.last_id, self.bases
        batch.payment_count, batch.payment_total = self.count, self.total
        batch.skipped = self.skipped
        await s.flush()
        self.spent["journal"] = time.perf_counter() - t
        # Where a batch's time went, for the operator sizing a province's month (commit not included).
        log.info("payment batch %s: %d payments, %d skipped, %d rule inputs%s in %.1f s (%s)", batch_name(batch.id),
                 self.count, len(self.skipped), len(self.rules), " (keyed as the rules declare)" if self.declared_sql else "",
                 time.perf_counter() - self.started,
                 ", ".join(f"{k} {v:.1f} s" for k, v in self.spent.items() if v))
        return await self.svc._batch_message(s, batch)

    async def _set_based(self) -> None:
        """PostgreSQL: the batch as a handful of set-based statements in this transaction.

        Python touching each of a million rows (read, rule lookup, render,
        write) was the batch's cost, so the server does the per-row work and
        Python only what is not per row, plus the event pages:

        1. ``jsx_batch_cand``: every candidate (:meth:`_candidates`) with its
           situation on the period's first day, its payee, a number ``n``
           and a hash of its hook inputs — of the declared ones when most
           applications have inputs of their own (:meth:`_many_inputs`) — in
           one statement, run by the server's parallel workers. The payment
           ids are drawn for the numbers on a second connection meanwhile
           (:meth:`_draw_ids`).
        2. A bank-failed key's retry number (rare rows, :meth:`_attempt`); a
           beneficiary enrolled twice keeps its first application, and a
           household with several situations in force is selected again,
           aggregated (both found on a second connection while step 1 runs).
        3. The rules, once per distinct input (``GROUP BY`` the hook inputs),
           their answers in ``jsx_batch_rules`` (:meth:`_set_rules`).
        4. The payments a block range at a time, their PaymentsIssued pages
           made meanwhile; the pages into the outbox, and first-time
           applications marked PAYMENT_ISSUED (:meth:`_set_write`).
        """
        conn = await self.s.connection()
        raw = (await conn.get_raw_connection()).driver_connection
        clock, spent = time.perf_counter, self.spent
        t = clock()
        twice = asyncio.ensure_future(self._exceptions(conn.engine))
        drawing: asyncio.Future[tuple[int, int]] | None = None
        try:
            async with raw.cursor() as cur:
                # Room for the hash joins of a million candidates in memory (the default is 4 MB);
                # and no JIT, which spends ~0.6 s compiling a plan this size and runs it no faster.
                await cur.execute("SET LOCAL work_mem = '256MB'")
                await cur.execute("SET LOCAL jit = off")
                self.declared_sql = self.reads is not None and await self._many_inputs(cur)
                self.period_batches = (await self.s.execute(
                    select(PaymentBatchRow.id, PaymentBatchRow.first_payment_id, PaymentBatchRow.last_payment_id).where(
                        PaymentBatchRow.program_id == self.program.id, PaymentBatchRow.period == str(self.period),
                        PaymentBatchRow.id != self.batch.id))).all()
                sql, params = self._cand_sql(self._candidates(), conn)
                # The statement reads a program's whole enrolment: let the server's parallel workers scan and
                # join it (the planner's default costs keep a million rows in one process; 2.0 → 1.1 s with
                # one worker). max_parallel_workers_per_gather stays the operator's (docs/operations.md).
                await cur.execute("SET LOCAL parallel_setup_cost = 0")
                await cur.execute("SET LOCAL parallel_tuple_cost = 0")
                await cur.execute(f"CREATE TEMP TABLE {_CAND} ON COMMIT DROP AS {sql}", params)
                self.numbered = cur.rowcount
                await cur.execute("SET LOCAL parallel_setup_cost TO DEFAULT")
                await cur.execute("SET LOCAL parallel_tuple_cost TO DEFAULT")
                t, spent["select"] = clock(), clock() - t
                dups, several = await twice
                if several:
                    # Households with more than one situation in force came once per situation: again, aggregated.
                    await cur.execute(f"DELETE FROM {_CAND} WHERE household_id = ANY(%s)", (several,))
                    sql, params = self._cand_sql(self._candidates(several), conn)
                    await cur.execute(f"INSERT INTO {_CAND} {sql}", params)
                    self.numbered += cur.rowcount
                # Every candidate is numbered now: their payment ids are drawn on a second connection
                # while this one goes on (a sequence is not transactional).
                drawing = asyncio.ensure_future(self._draw_ids(conn.engine))
                if dups:
                    await cur.execute(
                        f"DELETE FROM {_CAND} c USING (SELECT beneficiary, min(app) AS keep FROM {_CAND}"
                        " WHERE beneficiary = ANY(%s) GROUP BY beneficiary) d"
                        " WHERE c.beneficiary = d.beneficiary AND c.app <> d.keep", (dups,))
                # Last: the rows re-selected above come with attempt 1 like the others.
                await self._set_retries(cur)
                t, spent["retries"] = clock(), clock() - t
                issue = await self._set_rules(cur)
                t, spent["rules"] = clock(), clock() - t
                await self._set_write(cur, issue, await drawing)
        finally:
            for task in (twice, drawing):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _exceptions(self, engine: Any) -> tuple[list[str], list[str]]:
        """The rare rows the candidates statement leaves to fix: beneficiaries with more than one
        application in the program, and households with more than one situation in force on the
        period's first day (supersets of both).

        Read on a second connection while the first builds the candidates. A
        change committed in between (a second application approved, a second
        situation recorded) still pays nobody twice: both rows carry the same
        payment key, and the batch is refused whole (``CONCURRENT_CHANGE``).
        """
        async with engine.connect() as rc:
            twice = (await rc.execute(select(ApplicationRow.beneficiary).where(ApplicationRow.program_id == self.program.id)
                                      .group_by(ApplicationRow.beneficiary).having(func.count() > 1))).scalars().all()
            several: Sequence[str] = []
            if self.periodic:
                several = (await rc.execute(select(SituationProjection.household_id).where(self._in_force())
                                            .group_by(SituationProjection.household_id).having(func.count() > 1))
                           ).scalars().all()
        return list(twice), list(several)

    def _in_force(self) -> Any:
        """A situation in force on the period's first day."""
        start = self.period.start
        return (SituationProjection.effective_from <= start) & (
            SituationProjection.effective_to.is_(None) | (SituationProjection.effective_to >= start))

    def _inputs(self) -> tuple[str, ...]:
        """The candidate columns the rules' answer depends on (``GROUP BY`` these asks once per distinct input)."""
        return _RULE_INPUTS if self.periodic else ("amount_entitled",)

    def _candidates(self, several: list[str] | None = None):  # type: ignore[no-untyped-def]
        """The set-based selection: :meth:`_select`'s rows with what the rules and the payment need, per row.

        ``sit`` is the position in ``_SITUATION_ORDER`` of the household's
        first situation in force on the period's first day (0: none, OTHER)
        and ``grade`` the disability grade of its latest SPECIAL_DISABLED
        situation when that is the one. Nearly every household has one
        situation in force, so the statement joins them as they are (a row
        per situation; aggregating a million households cost ~1 s more);
        ``several`` lists the households with more, for which it aggregates
        instead (and selects only those). ``h`` hashes the hook inputs, so the
        rules' answers join on one column (on six, the planner sorted a
        million rows for a merge join, or hashed them the wrong way round).
        """
        key = self._key_of(ApplicationRow.beneficiary)
        head = (select(HouseholdProjection.head_person).where(HouseholdProjection.household_id == ApplicationRow.household_id)
                .scalar_subquery())
        # The 户主's card for per-household help; looked up only for rows without a person.
        payee = case((ApplicationRow.person != "", ApplicationRow.person),
                     else_=func.coalesce(func.nullif(head, ""), literal("households/") + ApplicationRow.household_id))
        # Paid already: only this program's batches for this period can hold this period's keys (service.pay
        # takes applications/… and visits/… keys), so the anti-join reads their id ranges, not every month ever
        # paid (a running program's history: +0.9 s a month of a million, growing). A key paid any other way
        # still stops the INSERT at the UNIQUE index, and the batch is refused whole (CONCURRENT_CHANGE).
        table = PaymentRow.__table__
        paid = (select(table.c.id, table.c.payment_key)
                .where(or_(false(), *(table.c.batch_id == b if first is None or last is None
                                      else and_(table.c.id.between(first, last), table.c.batch_id == b)
                                      for b, first, last in self.period_batches)))
                .subquery("paid"))
        columns = dict(
            app=ApplicationRow.id, household_id=ApplicationRow.household_id,
            beneficiary=ApplicationRow.beneficiary, village=ApplicationRow.village, period=ApplicationRow.period,
            state=ApplicationRow.state, per_person=ApplicationRow.person != "", attributes=ApplicationRow.attributes,
            payee=payee, failed=PaymentFailureRow.payment_id, attempt=literal(1, Integer))
        if not self.periodic:
            # (Every candidate row is written to the temporary table: only what a later step reads.)
            columns["amount_entitled"] = ApplicationRow.amount_entitled
        stmt = (select(ApplicationRow)
                .where(ApplicationRow.program_id == self.program.id,
                       ApplicationRow.village.startswith(region_prefix(self.region)),
                       # 公示 over: a row still in 公示 waits for a later batch.
                       ~((ApplicationRow.state == "IN_PUBLICITY")
                         & (ApplicationRow.publicity_end.is_(None) | (ApplicationRow.publicity_end > self.now)))))
        if self.period_batches:
            stmt = (stmt.outerjoin(paid, paid.c.payment_key == key)
                    .outerjoin(PaymentFailureRow, PaymentFailureRow.payment_id == paid.c.id)
                    # Unpaid, or the first attempt failed at the bank (its retries: _set_retries).
                    .where(paid.c.id.is_(None) | PaymentFailureRow.payment_id.is_not(None)))
        else:
            # The period's first batch: nothing of it is paid yet. Joining an empty set still cost ~0.25 s a million.
            columns["failed"] = literal(None, BigInteger)
        if self.periodic:
            disabled = _SITUATION_ORDER.index("SPECIAL_DISABLED") + 1
            position = case({k: i for i, k in enumerate(_SITUATION_ORDER, 1)}, value=SituationProjection.kind)
            if several is None:
                sits = (select(SituationProjection.household_id, position.label("sit"),
                               SituationProjection.disability_grade.label("grade"))
                        .where(self._in_force()).subquery())
            else:
                # Plain aggregates (an ordered string_agg per household cost twice as much): the first
                # situation in _SITUATION_ORDER, and the latest SPECIAL_DISABLED row's grade packed
                # behind its start date so that max() picks it.
                latest = (SituationProjection.effective_from - literal(date(1900, 1, 1))) * 1000 + SituationProjection.disability_grade
                sits = (select(SituationProjection.household_id, func.min(position).label("sit"),
                               (func.max(latest).filter(SituationProjection.kind == "SPECIAL_DISABLED") % 1000).label("grade"))
                        .where(self._in_force(), self._in(SituationProjection.household_id, several, String))
                        .group_by(SituationProjection.household_id).subquery())
                stmt = stmt.where(self._in(ApplicationRow.household_id, several, String))
            sit = func.coalesce(sits.c.sit, 0)
            columns.update(sit=sit, grade=case((sit == disabled, func.coalesce(sits.c.grade, 0)), else_=0))
            stmt = stmt.outerjoin(sits, sits.c.household_id == ApplicationRow.household_id).where(
                ApplicationRow.state.in_(_ENROLLED))
        else:
            stmt = stmt.where(ApplicationRow.state.in_(_PAYABLE), ApplicationRow.period == str(self.period))
        h = func.hashtextextended(func.concat_ws(literal("\x1f"), *(cast(columns[c], Text) for c in self._inputs())), 0)
        return stmt.with_only_columns(*(v.label(k) for k, v in columns.items()), h.label("h"))

    async def _set_retries(self, cur: Any) -> None:
        """Retry numbers for rows whose first payment failed at the bank; rows whose retry stands are dropped."""
        await cur.execute(f"SELECT app, beneficiary FROM {_CAND} WHERE failed IS NOT NULL")
        drop, again = [], []
        for app, beneficiary in await cur.fetchall():
            attempt = await self._attempt(beneficiary)
            if attempt:
                again.append((attempt, app))
            else:
                drop.append(app)
        if drop:
            await cur.execute(f"DELETE FROM {_CAND} WHERE app = ANY(%s)", (drop,))
        if again:
            await cur.executemany(f"UPDATE {_CAND} SET attempt = %s WHERE app = %s", again)

    async def _set_rules(self, cur: Any) -> bool:
        """The rules' answers per distinct input into ``jsx_batch_rules`` (``h`` → amount, basis).

        Skipped applications (a rule's 0) are recorded with the rule's
        reasons; rows enrolled from a later period are left out silently, as
        the row-by-row path does. Returns whether any paid row's application
        is still to be marked PAYMENT_ISSUED.
        """
        cols = self._inputs()
        groups = await self._groups(cur, cols)
        if self.reads is not None and not self.declared_sql and len(groups) > _RAW_GROUPS:
            # Nearly every mother has inputs of her own (her birth date): ask the rules once per input
            # as their plugins declare they read it (e.g. the age on the period's first day) instead.
            await self._declare_candidates(cur)
            groups = await self._groups(cur, cols)
        if len({g[0] for g in groups}) != len(groups):
            # Two distinct inputs with one 64-bit hash (odds ~1e-12 a batch): never pay by the wrong rule.
            raise RuntimeError("payment batch: hook inputs hash to the same value; rerun the batch")
        start, n = self.period.start, len(cols)
        answers: list[tuple[Any, Any, int]] = []
        ask: dict[tuple[Any, ...], tuple[_Input, str, int]] = {}
        ask_apps: dict[tuple[Any, ...], tuple[int, str, int]] = {}
        for row in groups:
            h, values, (member, to_issue) = row[0], row[1:1 + n], row[1 + n:]
            if not self.periodic:
                answers.append((h, self._entitled(values[0]), to_issue))
                continue
            village, sit, grade, per_person, attributes, period = values
            if self._starts(period) > start:
                continue  # enrolled from a later month
            situation = _SITUATION_ORDER[sit - 1] if sit else _OTHER
            # Keyed candidates already hold the declared part of the attributes (:meth:`_declare_candidates`).
            key = (village, situation, grade, per_person, attributes if self.declared_sql else self._declared(attributes))
            if key not in self.rules and key not in ask_apps:
                ask_apps[key] = (member, situation, grade)
            answers.append((h, key, to_issue))
        if ask_apps:
            # One member's own application stands for each group, read whole: the hooks see its opaque
            # ids (a rule cannot resolve them) and its attributes.
            await cur.execute("SELECT id, person, beneficiary, household_id, village, CAST(attributes AS text)"
                              " FROM applications WHERE id = ANY(%s)", ([m for m, _, _ in ask_apps.values()],))
            whole = {r[0]: _Input(*r[1:]) for r in await cur.fetchall()}
            ask = {k: (whole[m], situation, grade) for k, (m, situation, grade) in ask_apps.items()}
        if ask:
            self.rules.update(zip(ask, await self._ask_many(list(ask.values()))))
        rows, refused, issue = [], {}, False
        for h, rule, to_issue in answers:
            if not isinstance(rule, _Rule):
                rule = self.rules[rule]
            if rule.amount <= 0:
                refused[h] = rule.reasons
                continue
            if rule.no is None:
                rule.no = self._basis_no(rule.basis)
            rows.append((h, rule.amount, rule.no))
            self.amount_of[h] = rule.amount
            issue = issue or to_issue > 0
        self.some_unpaid = len(rows) < len(groups)
        await cur.execute(f"CREATE TEMP TABLE {_RULES} (h bigint PRIMARY KEY, amount bigint NOT NULL,"
                          " basis_no smallint NOT NULL) ON COMMIT DROP")
        async with cur.copy(f"COPY {_RULES} FROM STDIN") as cp:
            for row in rows:
                await cp.write_row(row)
        await cur.execute(f"ANALYZE {_RULES}")
        if refused:
            await cur.execute(f"SELECT app, h FROM {_CAND} WHERE h = ANY(%s) ORDER BY app", (list(refused),))
            self.skipped.extend({"application": bus.application_name(app), "reasons": refused[h]}
                                for app, h in await cur.fetchall())
        return issue

    async def _groups(self, cur: Any, cols: tuple[str, ...]) -> list[Any]:
        """The candidates' distinct rule inputs: (h, *inputs, one member's application id, how many still to be
        marked PAYMENT_ISSUED). Where the rules declare what they read,
        no more than ``_RAW_GROUPS`` + 1 of them are fetched: past that the batch groups by the declaration."""
        # (attributes is json, which has no equality: grouped as its text.)
        listed = ", ".join("CAST(attributes AS text)" if c == "attributes" else c for c in cols)
        groups: list[Any] = []
        async with cur.connection.cursor(name="jsx_batch_groups") as gcur:
            await gcur.execute(f"SELECT h, {listed}, min(app),"
                               f" count(*) FILTER (WHERE state = ANY(%s)) FROM {_CAND} GROUP BY h, {listed}",
                               (list(_TO_ISSUE),))
            while rows := await gcur.fetchmany(5000):
                groups.extend(rows)
                if self.reads is not None and not self.declared_sql and len(groups) > _RAW_GROUPS:
                    break
        return groups

    async def _many_inputs(self, cur: Any) -> bool:
        """Whether most of the program's applications have rule inputs of their own (real birth dates),
        judged on up to ``_SAMPLE`` of them: then the candidates are keyed by the declared inputs at once."""
        await cur.execute("SELECT count(*), count(DISTINCT (village, CAST(attributes AS text))) FROM (SELECT village,"
                          " attributes FROM applications WHERE program_id = %s LIMIT %s) AS s", (self.program.id, _SAMPLE))
        n, distinct = await cur.fetchone()
        return bool(n) and distinct > n // 2

    def _cand_sql(self, candidates: Any, conn: Any) -> tuple[str, dict[str, Any]]:
        """The candidates' SQL, keyed by the declared rule inputs when :attr:`declared_sql` (see :meth:`_declared_select`),
        each row numbered ``n`` after the rows already numbered (its payment id will be ``n`` + the batch's base,
        :meth:`_draw_ids`). Numbered on top, so that everything below can run in parallel workers."""
        sql, params = _compiled(candidates, conn)
        if self.declared_sql:
            keep = [k for k in candidates.selected_columns.keys() if k not in ("h", "attributes")]
            sql = self._declared_select(keep, f"({sql})")
        return f"SELECT c.*, row_number() OVER () + {int(self.numbered)} AS n FROM ({sql}) AS c", params

    def _declared_select(self, keep: list[str], source: str) -> str:
        """``source``'s candidates with ``h`` hashing the declared rule inputs and ``attributes`` holding their
        text (:func:`declared_sql`) — computed once per candidate, so the rules' answers join on ``h`` as ever."""
        assert self.reads is not None
        text_, columns = declared_sql(self.reads, self.period.start)
        h = ("hashtextextended(concat_ws(E'\\x1f', c.village, c.sit::text, c.grade::text, c.per_person::text, c.t,"
             " c.period), 0)")
        listed = ", ".join(f"c.{_ident(k)}" for k in keep)
        # OFFSET 0 keeps the inner query whole: flattened, the text would be computed twice (for h and for itself).
        return (f"SELECT {listed}, c.t AS attributes, {h} AS h FROM (SELECT {listed}, {text_} AS t FROM {source} AS c"
                f" CROSS JOIN LATERAL json_to_record(c.attributes) AS ra({columns}) OFFSET 0) AS c")

    async def _declare_candidates(self, cur: Any) -> None:
        """Rebuild ``jsx_batch_cand`` keyed by the declared rule inputs (when the sample did not foresee it)."""
        await cur.execute(f"SELECT attname FROM pg_attribute WHERE attrelid = '{_CAND}'::regclass AND attnum > 0"
                          " AND NOT attisdropped ORDER BY attnum")
        keep = [c for (c,) in await cur.fetchall() if c not in ("h", "attributes")]
        self.declared_sql = True
        await cur.execute(f"CREATE TEMP TABLE {_CAND}_declared ON COMMIT DROP AS {self._declared_select(keep, _CAND)}")
        await cur.execute(f"DROP TABLE {_CAND}")
        await cur.execute(f"ALTER TABLE {_CAND}_declared RENAME TO {_CAND}")

    def _declared(self, attributes: str) -> str:
        """The part of an application's attributes text its rules read, as the region's plugins declare
        (``RuleInputs``); the whole text when a plugin did not declare. Equal parts, equal answers."""
        reads = self.reads
        if reads is None:
            return attributes
        out = self.declared.get(attributes)
        if out is None:
            a = json.loads(attributes) if attributes else {}
            parts: list[Any] = [a.get(k) for k in sorted(reads.attributes)]
            birth = a.get("birth_date")
            if reads.birth_date is BirthDateUse.DATE:
                parts.append(birth)
            elif reads.birth_date is BirthDateUse.AGE_ON_PERIOD_START:
                parts.append(_age_on(birth, self.period.start))
            out = self.declared[attributes] = json.dumps(parts, ensure_ascii=False)
        return out

    async def _set_write(self, cur: Any, issue: bool, drawn: tuple[int, int]) -> None:
        """The payments, their PaymentsIssued pages, and the applications.

        A block range of the candidates at a time (``ctid``, a TID range
        scan): its rows are read into the client, then its INSERT is sent,
        and Python makes their pages from the rows already here while the
        server inserts — the two cores work at once, and nothing is sent
        back per inserted row (``RETURNING`` cost ~1 s a million). A
        candidate's payment id is ``base + n`` (:meth:`_base`). The rows read come
        without their amounts: the client knows each input hash's amount
        (:attr:`amount_of`), and joining the rules a second time per range
        cost the server ~0.3 s a million.
        """
        clock, spent = time.perf_counter, self.spent
        t = clock()
        base = await self._base(cur, *drawn)
        paying = f"FROM {_CAND} c JOIN {_RULES} r ON r.h = c.h"
        key = "%(prefix)s || c.beneficiary || %(suffix)s || CASE WHEN c.attempt > 1 THEN '#' || c.attempt::text ELSE '' END"
        prefix, suffix = db.periodic_key_affixes(self.program.id, self.period)
        params = {"prefix": prefix, "suffix": suffix, "base": base,
                  "journal": self.journal_id, "fund": self.fund.id, "now": self.now, "batch": self.batch.id}
        await cur.execute(f"SELECT pg_relation_size('{_CAND}') / current_setting('block_size')::int + 1")
        blocks = (await cur.fetchone())[0]
        events: list[tuple[str, bytes]] = []
        lines: list[tuple[Any, ...]] = []
        amount_of, some_unpaid = self.amount_of, self.some_unpaid
        conn = cur.connection
        # Binary rows: the integers arrive without text parsing.
        async with conn.cursor(binary=True) as rows_cur:
            for first in range(0, blocks, _CHUNK_BLOCKS):
                where = f" WHERE c.ctid >= '({first},0)'::tid AND c.ctid < '({first + _CHUNK_BLOCKS},0)'::tid"
                await rows_cur.execute(f"SELECT c.n + %(base)s, c.app, c.household_id, c.payee, c.village, c.h FROM {_CAND} c{where}",
                                       {"base": base})
                inserting = asyncio.ensure_future(cur.execute(
                    "INSERT INTO payments (id, journal_id, fund_id, payment_key, payee, amount, created_at, batch_id,"
                    " application_id, household_id, village, basis_no)"
                    f" SELECT c.n + %(base)s, %(journal)s, %(fund)s, {key}, c.payee, r.amount, %(now)s, %(batch)s, c.app,"
                    f" c.household_id, c.village, r.basis_no {paying}{where}", params))
                try:
                    await asyncio.sleep(0)  # let it send the INSERT
                    lines.extend(await rows_cur.fetchall())  # already here: no round trip
                    if some_unpaid:
                        lines = [line for line in lines if line[5] in amount_of]
                    full = len(lines) - len(lines) % EVENT_PAGE
                    events.extend(self._page_event(lines[i:i + EVENT_PAGE], amount_of) for i in range(0, full, EVENT_PAGE))
                    lines = lines[full:]
                finally:
                    try:
                        await inserting
                    except psycopg.errors.UniqueViolation:
                        # Two candidate rows with one payment key: a second application or situation committed
                        # while the candidates were read (see _exceptions). Nothing is written; a rerun sees it.
                        raise Aborted("发放批次执行期间有申请或家庭情况发生变更，本批次未支付任何款项，请重新发起本批次",
                                      reason="CONCURRENT_CHANGE") from None
                _fault("batch.after_chunk")
        if lines:
            events.append(self._page_event(lines, amount_of))
        t, spent["insert"] = clock(), clock() - t
        if events:
            # Payloads as binary parameters: COPY's text form doubles each ~100 kB page into hex.
            await cur.executemany(
                "INSERT INTO outbox (event_id, subject, event_type, payload, headers, created_at, attempts)"
                " VALUES (%s, %s, %s, %b, '{}', %s, 0)",
                [(eid, _SUBJECT, _EVENT_TYPE, payload, self.now) for eid, payload in events])
        t2 = clock()
        if issue:
            await cur.execute(
                f"UPDATE applications a SET state = 'PAYMENT_ISSUED', updated_at = %s {paying}"
                " WHERE a.id = c.app AND c.state = ANY(%s)", (self.now, list(_TO_ISSUE)))
        spent["outbox"] = t2 - t
        spent["issue"] = clock() - t2

    async def _draw_ids(self, engine: Any) -> tuple[int, int]:
        """Draw as many ids as candidates were numbered from the journals' sequence (payments share its id
        space), in one statement on a connection of its own; returns the lowest and highest drawn."""
        async with engine.connect() as c:
            lo, hi = (await c.execute(text(f"SELECT min(v), max(v) FROM (SELECT nextval({self._seq()}) AS v"
                                           " FROM generate_series(1, :n)) AS s"), {"n": self.numbered})).one()
        return lo, hi

    async def _base(self, cur: Any, lo: int | None, hi: int | None) -> int:
        """The base that makes candidate ``n``'s payment id ``base + n``.

        Nearly always nobody else drew journal ids while :meth:`_draw_ids`
        did, and the drawn ids are one unbroken range: the base is its start
        (the payment file then numbers lines by id, see ``_unbroken``). If
        another transaction drew meanwhile, ours are scattered: each
        candidate then draws its own instead (a rewrite of the table; the
        first draw's ids are left unused, as a rolled-back batch leaves its
        ids).
        """
        if lo is not None and hi is not None and self._contiguous(lo, hi, self.numbered):
            return int(lo) - 1
        await cur.execute(f"UPDATE {_CAND} SET n = nextval({self._seq()})")
        return 0

    def _seq(self) -> str:
        """The journals' id sequence as an SQL constant (``pg_get_serial_sequence`` per row cost 6 s a million)."""
        return "'" + self.id_sequence.replace("'", "''") + "'::regclass"

    @staticmethod
    def _contiguous(lo: int, hi: int, n: int) -> bool:
        return hi - lo + 1 == n

    def _select(self):  # type: ignore[no-untyped-def]
        """SQLite: enrolled (or, for one-off programs, this period's) applications in the region not yet paid this period."""
        key = self._key_of(ApplicationRow.beneficiary)
        stmt = (select(ApplicationRow.id, ApplicationRow.household_id, ApplicationRow.person, ApplicationRow.beneficiary,
                       ApplicationRow.village, ApplicationRow.period, ApplicationRow.state, ApplicationRow.publicity_end,
                       ApplicationRow.amount_entitled, cast(ApplicationRow.attributes, Text).label("attributes"),
                       HouseholdProjection.head_person, PaymentFailureRow.payment_id.label("failed"))
                .outerjoin(HouseholdProjection, HouseholdProjection.household_id == ApplicationRow.household_id)
                .outerjoin(PaymentRow, PaymentRow.payment_key == key)
                .outerjoin(PaymentFailureRow, PaymentFailureRow.payment_id == PaymentRow.id)
                # Unpaid, or the first attempt failed at the bank (its retries are looked at in _attempt).
                .where(ApplicationRow.program_id == self.program.id,
                       ApplicationRow.village.startswith(region_prefix(self.region)),
                       PaymentRow.id.is_(None) | PaymentFailureRow.payment_id.is_not(None)))
        if self.periodic:
            return stmt.where(ApplicationRow.state.in_(_ENROLLED))
        # One-off help: approved through 公示, or paid once and failed at the bank (paid again here).
        return stmt.where(ApplicationRow.state.in_(_PAYABLE), ApplicationRow.period == str(self.period))

    def _key_of(self, beneficiary: Any) -> Any:
        """SQL for the payment key (:func:`db.payment_key`) of ``beneficiary`` in this batch's program and period."""
        prefix, suffix = db.periodic_key_affixes(self.program.id, self.period)
        return literal(prefix) + beneficiary + literal(suffix)

    def _in(self, column: Any, values: list[Any], type_: Any) -> Any:
        """``column IN values``: one array parameter on PostgreSQL (a chunk of bound values costs more to send)."""
        return column == any_(bindparam(None, values, type_=ARRAY(type_))) if self.pg else column.in_(values)

    def _starts(self, code: str) -> date:
        start = self.starts.get(code)
        if start is None:
            start = self.starts[code] = Period.parse(code).start
        return start

    async def _attempt(self, beneficiary: str) -> int:
        """Which attempt at paying a beneficiary whose first payment failed at the bank this is
        (2, 3, …); 0 when a retry of it is still live.

        A key whose payments all failed at the bank may be paid again, stored
        as ``key#n`` (``db.attempt_key``, still UNIQUE, so racing retries pay once).
        """
        attempts = await db.payment_attempts(self.s, db.payment_key(self.program.id, beneficiary, self.period))
        return 0 if any(not failed for _, failed in attempts) else len(attempts) + 1

    async def _rule_page(self, rows: Sequence[Any]) -> list[tuple[Any, _Rule]]:
        """SQLite: the page's payable applications with their rule answers (skips recorded)."""
        start = self.period.start
        unique = []
        for r in rows:
            if r.state == "IN_PUBLICITY" and (r.publicity_end is None or aware(r.publicity_end) > self.now):
                continue  # 公示 not over yet
            if self.periodic and self._starts(r.period) > start:
                continue  # enrolled from a later month
            if r.beneficiary in self.recent:
                continue  # enrolled twice: the first application pays
            self.recent.add(r.beneficiary)
            if r.failed is not None:
                attempt = await self._attempt(r.beneficiary)
                if not attempt:
                    continue  # paid again after a bank failure, and that retry stands
                self.attempts[r.id] = attempt
            unique.append(r)
        # A duplicate in a later page is excluded by that page's anti-join: keep one page.
        self.recent = {r.beneficiary for r in unique[-1:]}
        if not self.periodic:
            return [(r, self._entitled(r.amount_entitled)) for r in unique]
        sits: dict[str, dict[str, int]] = {}
        if unique:  # one query for the page's households
            for hid, kind_, grade in (await self.s.execute(
                    select(SituationProjection.household_id, SituationProjection.kind, SituationProjection.disability_grade)
                    .where(self._in(SituationProjection.household_id, list({r.household_id for r in unique}), String),
                           self._in_force())
                    .order_by(SituationProjection.effective_from))).all():
                sits.setdefault(hid, {})[kind_] = grade
        keyed, ask = [], {}
        for r in unique:
            kinds = sits.get(r.household_id, {})
            for situation in _SITUATION_ORDER:
                if situation in kinds:
                    break
            else:
                situation = _OTHER
            grade = kinds["SPECIAL_DISABLED"] if situation == "SPECIAL_DISABLED" else 0
            # What the rules read of the attributes (all of the text unless declared): equal parts, equal answers.
            key = (r.village, situation, grade, bool(r.person), self._declared(r.attributes))
            if key not in self.rules and key not in ask:
                ask[key] = (r, situation, grade)
            keyed.append((r, key))
        if ask:
            self.rules.update(zip(ask, await self._ask_many(list(ask.values()))))
        out = []
        for r, key in keyed:
            rule = self.rules[key]
            if rule.amount <= 0:
                self.skipped.append({"application": bus.application_name(r.id), "reasons": rule.reasons})
                continue
            out.append((r, rule))
        return out

    def _basis_no(self, basis: list[str]) -> int:
        """The position of ``basis`` in the batch's ``bases``: rules with the same basis share one
        (``payments.basis_no`` is a smallint; a month with a distinct input per mother has a few bases, not N)."""
        key = tuple(basis)
        no = self.basis_nos.get(key)
        if no is None:
            no = self.basis_nos[key] = len(self.bases)
            self.bases.append(basis)
        return no

    def _entitled(self, amount: int) -> _Rule:
        """A one-off program's rule: the amount approved on the application."""
        rule = self.rules.get(("entitled", amount))
        if rule is None:
            rule = self.rules["entitled", amount] = _Rule(amount, [f"按审批核定金额 {d.yuan(amount)} 元"], [])
        return rule

    async def _ask_many(self, inputs: list[tuple[Any, str, int]]) -> list[_Rule]:
        """The rules' answers for distinct inputs: eligibility for all, then the amount for the eligible.

        One ``acall_many`` per hook resolves every input in a single worker
        thread (a thread per call cost more than the rule itself).
        """
        rule_type = RULE_TYPE.get(self.program.type, self.program.custom_type)
        ctx = {"program_year": self.program.year}
        calls = []
        for r, situation, grade in inputs:
            attributes = dict(json.loads(r.attributes) if r.attributes else {})
            if grade:
                attributes.setdefault("child_disability_grade", str(grade))
            birth = attributes.get("birth_date")
            village = RegionCode(r.village)
            who = hs.Beneficiary(
                person_id=r.person or r.beneficiary, household_id=f"households/{r.household_id}", region=village,
                situation=situation, unit="PERSON" if r.person else "HOUSEHOLD",
                birth_date=date.fromisoformat(birth) if birth else None, attributes=attributes)
            calls.append((village, {"program_type": rule_type, "beneficiary": who, "period": self.period, "context": ctx}))
        out: list[_Rule | None] = [None] * len(calls)
        eligible = []
        for i, elig in enumerate(await self.svc.plugins.acall_many("jsx_program_eligibility", calls)):
            _raise_programming_error(elig)
            if isinstance(elig, DomainError):
                # One beneficiary's rule refusing (e.g. no situation any more) must not stop the others.
                out[i] = _Rule(0, [], [elig.message])
            elif not elig.value.eligible:
                out[i] = _Rule(0, [], list(elig.value.reasons))
            else:
                eligible.append(i)
        amounts = await self.svc.plugins.acall_many("jsx_entitlement_amount", [calls[i] for i in eligible])
        for i, amt in zip(eligible, amounts):
            _raise_programming_error(amt)
            if isinstance(amt, DomainError):
                out[i] = _Rule(0, [], [amt.message])
            elif amt.value.amount.fen <= 0:
                out[i] = _Rule(0, [], ["按规则核定金额为 0 元"])
            else:
                out[i] = _Rule(amt.value.amount.fen, [*amt.value.basis, f"规则插件 {amt.plugin} {amt.plugin_version}"], [])
        return [rule for rule in out if rule is not None]

    def _ids(self, n: int) -> list[int]:
        """SQLite: the next ``n`` payment ids (see run; PostgreSQL rows bring theirs)."""
        first, self.next_id = self.next_id, self.next_id + n
        return list(range(first, first + n))

    def _rows(self, page: list[tuple[Any, _Rule]], ids: list[int]) -> tuple[list[Any], ...]:
        """SQLite: a chunk's payments and their PaymentsIssued pages, and the applications to mark issued."""
        key_prefix, key_suffix = db.periodic_key_affixes(self.program.id, self.period)
        attempts = self.attempts
        payments, issue, lines = [], [], []
        for pid, (r, rule) in zip(ids, page):
            if rule.no is None:
                rule.no = self._basis_no(rule.basis)
            payee = r.person or r.head_person or f"households/{r.household_id}"
            key = f"{key_prefix}{r.beneficiary}{key_suffix}"
            payments.append((pid, key if r.failed is None else db.attempt_key(key, attempts[r.id]), payee, rule.amount,
                             r.id, r.household_id, r.village, rule))
            lines.append((pid, r.id, r.household_id, payee, r.village, rule.amount))
            # A monthly beneficiary already being paid keeps its state: rewriting a million
            # application rows every month would cost more than the payments themselves.
            if r.state in _TO_ISSUE:
                issue.append(r.id)
        events = [self._page_event(lines[i:i + EVENT_PAGE]) for i in range(0, len(lines), EVENT_PAGE)]
        return payments, events, issue

    def _page_event(self, lines: Sequence[tuple[int, int, str, str, str, int]],
                    amount_of: dict[int, int] | None = None) -> tuple[str, bytes]:
        """One PaymentsIssued page of ``lines`` (payment id, application id, household id, payee, village, 分 —
        or, with ``amount_of``, the input hash whose amount it gives).

        Column by column: each list is extended in one call, where a nested
        message per payment cost ~6 µs (see events.proto).
        """
        ids, applications, households, payees, villages, amounts = zip(*lines)
        if amount_of is not None:
            amounts = tuple([amount_of[h] for h in amounts])
        bname = batch_name(self.batch.id)
        total, lo, hi = sum(amounts), min(ids), max(ids)
        # The batch's id range (payments are read by it; see PaymentBatchRow.first_payment_id).
        self.first_id = lo if self.first_id is None else min(self.first_id, lo)
        self.last_id = hi if self.last_id is None else max(self.last_id, hi)
        self.pages += 1
        self.count += len(lines)
        self.total += total
        ev = events_pb2.PaymentsIssued(
            event_id=str(uuid.uuid4()), occurred_at=ts(self.now), payment_batch=batch_name(self.batch.id),
            program=bus.program_name(self.program.id), fund=bus.fund_name(self.fund.id),
            period=common_pb2.Period(code=str(self.period)), page=self.pages, total=common_pb2.Money(fen=total))
        ev.payment_names.extend([f"{bname}/payments/{i}" for i in ids])
        ev.applications.extend([f"applications/{i}" for i in applications])
        ev.households.extend([f"households/{i}" for i in households])
        ev.payees.extend(payees)
        ev.village_codes.extend(villages)
        ev.amounts_fen.extend(amounts)
        return ev.event_id, ev.SerializeToString(deterministic=True)

    async def _issue(self, issue: list[int]) -> None:
        if issue:
            await self.s.execute(update(ApplicationRow).where(self._in(ApplicationRow.id, issue, BigInteger))
                            .values(state="PAYMENT_ISSUED", updated_at=self.now).execution_options(synchronize_session=False))

    async def _insert(self, payments: list[Any], outbox: list[Any]) -> None:
        """SQLite: Core executemany through the tables' types (its DateTime and JSON storage forms)."""
        now, fid, jid, bid = self.now, self.fund.id, self.journal_id, self.batch.id
        conn = await self.s.connection()
        await conn.execute(insert(PaymentRow.__table__), [
            dict(id=p, journal_id=jid, fund_id=fid, payment_key=k, payee=who, amount=a, created_at=now, batch_id=bid,
                 application_id=app, household_id=h, village=v, basis_no=rule.no)
            for p, k, who, a, app, h, v, rule in payments])
        await conn.execute(insert(OutboxEvent.__table__), [
            dict(event_id=eid, subject=_SUBJECT, event_type=_EVENT_TYPE, payload=payload, headers={}, created_at=now,
                 attempts=0) for eid, payload in outbox])


_OTHER = hs.Situation.OTHER.value
#: Payments per PaymentsIssued event (~130 bytes each: a page stays far below NATS's 1 MB message limit).
EVENT_PAGE = 1000
_SUBJECT = bus.subject_of(events_pb2.PaymentsIssued())
_EVENT_TYPE = events_pb2.PaymentsIssued.DESCRIPTOR.full_name
#: The candidates and the rules' answers of a PostgreSQL batch (temporary tables, dropped at commit).
_CAND, _RULES = "jsx_batch_cand", "jsx_batch_rules"
#: Candidate table blocks per INSERT (~90 000 rows in 8 kB blocks; their pages are made while they are inserted).
_CHUNK_BLOCKS = 2000
#: Payment ids per block of the payment file (:meth:`BatchesService._block_payment_file`): ~1.4 MB of lines.
_FILE_BLOCK = 10_000
#: Applications sampled to tell whether most have rule inputs of their own (0: never judge so up front).
_SAMPLE = 50_000
#: Distinct raw rule inputs above which a batch groups by what the rules declare they read instead.
_RAW_GROUPS = 20_000
#: The hook inputs of a periodic program's candidate (``GROUP BY`` these asks the rules once per distinct input).
_RULE_INPUTS = ("village", "sit", "grade", "per_person", "attributes", "period")
class _Input(NamedTuple):
    """One distinct set of hook inputs (a representative of its group), as :meth:`_BatchWriter._ask_many` reads it."""

    person: str
    beneficiary: str
    household_id: str
    village: str
    attributes: str


def _ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (attribute keys are plugin-declared text)."""
    return '"' + name.replace('"', '""') + '"'


def _age_on(birth: str | None, day: date) -> Any:
    """Whole years (周岁) from a ``YYYY-MM-DD`` birth date to ``day``; any other text stands for itself."""
    try:
        born = date.fromisoformat(birth) if birth and len(birth) == 10 and birth[4] == "-" else None
    except ValueError:
        born = None
    if born is None:
        return None if birth is None else "raw:" + birth
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def declared_sql(reads: RuleInputs, start: date) -> tuple[str, str]:
    """SQL text of a candidate's declared rule input, over ``ra`` (its attributes parsed by
    ``json_to_record``), and the record columns ``ra`` needs.

    Each declared attribute is quoted (``quote_nullable``), so values
    cannot run into each other and a missing key differs from an empty
    one. The age is 周岁 on ``start`` computed as :func:`_age_on` does it
    (the year difference, less one while the birthday is still ahead; the
    ``MM-DD`` of a ``YYYY-MM-DD`` text compares as the date would — test);
    any other birth-date text stands for itself.
    """
    keys = sorted(set(reads.attributes) | {"birth_date"})
    parts = [f"quote_nullable(ra.{_ident(k)})" for k in sorted(reads.attributes)]
    if reads.birth_date is BirthDateUse.DATE:
        parts.append("quote_nullable(ra.birth_date)")
    elif reads.birth_date is BirthDateUse.AGE_ON_PERIOD_START:
        parts.append(_age_sql("ra.birth_date", start))
    return f"concat_ws(',', {', '.join(parts) or quote_literal_sql('')})", ", ".join(f"{_ident(k)} text" for k in keys)


def _age_sql(birth: str, start: date) -> str:
    """SQL for :func:`_age_on` of the text ``birth`` on ``start``."""
    return (f"CASE WHEN {birth} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}$' THEN"
            f" ({start.year} - left({birth}, 4)::int - (substr({birth}, 6) > '{start:%m-%d}' COLLATE \"C\")::int)::text"
            f" ELSE quote_nullable({birth}) END")


def quote_literal_sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _compiled(stmt: Any, conn: Any) -> tuple[str, dict[str, Any]]:
    """``stmt`` as SQL text and parameters for the driver's own cursor."""
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    return str(compiled), compiled.params


def _unbroken(batch: PaymentBatchRow) -> bool:
    """Whether every id from the batch's first payment to its last is one of its payments (nearly always:
    the batch draws them in one statement; another transaction drawing journal ids meanwhile breaks it)."""
    first, last, n = batch.first_payment_id, batch.last_payment_id, batch.payment_count
    return first is not None and last is not None and n is not None and n == last - first + 1


def csv_field_sql(value: str) -> str:
    """SQL for the text ``value`` as Python's csv writer writes a field (QUOTE_MINIMAL): quoted, with
    quotes doubled, when it holds a comma, a quote or a line break; as it is otherwise."""
    return f"CASE WHEN {value} ~ '[\",\r\n]' THEN '\"' || replace({value}, '\"', '\"\"') || '\"' ELSE {value} END"


def _raise_programming_error(result: object) -> None:
    """A slot of ``acall_many`` holding a TypeError is our call's mistake, not a rule's answer."""
    if isinstance(result, BaseException) and not isinstance(result, DomainError):
        raise result
