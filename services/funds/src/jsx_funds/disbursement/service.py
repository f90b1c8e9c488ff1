"""Disbursement use cases: payment batches, payments, bank results, reconciliation, payment files —
and the payments made on their own (``pay``, ``return_payment``) that other use cases run in their
transaction.

Composed, not inherited: a :class:`DisbursementService` is given the ledger
(fund locks, postings, balances) and the programs context (programs, the
applications in force, their states) and uses only their public APIs. Use
cases take plain arguments plus ``caller=`` (region scope; ``None`` for a
trusted in-process caller: the CLI, a consumer) and, when they change
something, ``idem=`` (AIP-155: the same request id replays the first answer);
they return the RPC's response message (:mod:`jsx_funds.disbursement.wire`).

**A batch** pays a program's beneficiaries for a period, once each (who,
which rule input, how much: :mod:`jsx_funds.disbursement.domain`). It runs in
one transaction holding the fund's row lock and re-reads which keys are paid
after taking it, so concurrent or retried batch requests pay only what is
still unpaid (a request with nothing left fails with ``NOTHING_TO_PAY``); a
crash mid-batch rolls the whole batch back. The batch posts one PAYMENT
journal for its total (Dr EXPENSE, Cr AVAILABLE); each payment is a
``payments`` row naming that journal (``verify`` proves they add up). If the
fund cannot cover the batch, ``INSUFFICIENT_FUNDS`` and nothing is posted.
The events go out as ``PaymentsIssued`` pages of 1000 payments. A monthly
beneficiary's application is not rewritten each month. The planner that
writes it is the database's (:func:`~jsx_funds.disbursement.planner.planner_for`).

**Bank results** (银行回盘): a whole file in one transaction, or nothing —
validated first (malformed or unknown reference, a line for another batch,
the same payment twice, a failure with no reason, a result contradicting one
already recorded: every problem reported at once); 成功 → a PAID
``bank_results`` row and ``PaymentPaid``; 失败 → the money back to the fund
(:meth:`DisbursementService.return_payment`), a ``payment_failures`` row (which
frees the key: a later batch pays the beneficiary and period again as
``key#2``), a FAILED ``bank_results`` row, ``PaymentFailed``. A line repeating
a recorded result changes nothing.

**Reconciliation** (对账) proves issued = paid + failed + pending against the
ledger: the EXPENSE the batch's journal debited, less what its failed
payments' return journals credited back, must equal paid + pending.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import IO, Any, TextIO

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.funds.v1 import funds_pb2
from jsx_funds import SERVICE_NAME
from jsx_funds.adapters.db import utcnow
from jsx_funds.adapters.members import MembersClient
from jsx_funds.callers import actor_of, request_id_of
from jsx_funds.disbursement import domain as dd
from jsx_funds.disbursement import payment_file as pf
from jsx_funds.disbursement import wire
from jsx_funds.disbursement.planner import BatchProgram, BatchRun, RuleBook, planner_for
from jsx_funds.disbursement.tables import (
    BankResultRow,
    PaymentBatchRow,
    PaymentFailureRow,
    PaymentRow,
    beneficiary_keys,
    in_batch,
    payment_attempts,
)
from jsx_funds.ledger import domain as ld
from jsx_funds.ledger.service import LedgerService, Posted
from jsx_funds.programs import domain as pd
from jsx_funds.programs.service import ProgramsService, enrolments_of, note_on_application, set_application_state
from jsx_funds.programs.tables import ApplicationRow
from jsx_funds.projections.service import deaths_in
from jsxcore import paging
from jsxcore.auth import Caller
from jsxcore.bulk import fewer_collections
from jsxcore.errors import (
    AlreadyExists,
    DomainError,
    ErrorCollector,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from jsxcore.outbox import add_event, subject_of
from jsxcore.plugins import PluginHost
from jsxcore.usecase import Idem, mutate
from jsxcore.values import Money, Period, RegionCode

#: The batch's account of where its time went is logged here (bench/monthly_batch reads it).
log = logging.getLogger("jsx.funds.batches")

#: A batch payment's state: the bank's answer, or PENDING while there is none.
STATE = func.coalesce(BankResultRow.state, "PENDING")


class DisbursementService:
    """CreatePaymentBatch, GetPaymentBatch, ListPayments, ImportBankResults, GetReconciliation, the payment
    files; and :meth:`pay` / :meth:`return_payment` for the use cases that pay inside their own transaction."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        plugins: PluginHost,
        *,
        ledger: LedgerService,
        programs: ProgramsService,
        members: MembersClient | None = None,
        clock: Callable[[], datetime] | None = None,
        notify: Callable[[], None] | None = None,
    ) -> None:
        self.sessions, self.plugins, self.ledger, self.programs, self.members = (
            sessions,
            plugins,
            ledger,
            programs,
            members,
        )
        self.clock = clock or (lambda: datetime.now(UTC))
        #: wakes the outbox relay after a commit
        self.notify = notify or (lambda: None)

    # ------------------------------------------------------------ payments made on their own

    async def pay(
        self,
        s: AsyncSession,
        fund_id: int,
        amount: Money,
        *,
        payment_key: str,
        payee: str,
        actor: str,
        commitment_id: int | None = None,
        memo: str = "",
        request_id: str = "",
        emit_event: bool = True,
    ) -> tuple[Posted, PaymentRow]:
        """Pay ``amount`` out of the fund (from an earmark when ``commitment_id`` is given), in ``s``'s transaction.

        ``payment_key`` is the business key that may be paid once (``applications/42``, ``visits/…``,
        ``7/persons/9/2022-08``): a second payment with the same key fails with ALREADY_EXISTS on the
        database's unique constraint, however the requests race — unless every earlier payment of the key
        failed at the bank (a ``payment_failures`` row), in which case this is the next attempt, stored
        under ``key#2``, ``key#3``, … (:func:`~jsx_funds.disbursement.domain.next_attempt`).
        """
        ld.require_positive(amount)
        if not payment_key:
            raise InvalidArgument.field("payment_key", "缺少支付业务编号", reason="MISSING_PAYMENT_KEY")
        if commitment_id is not None and await self.ledger.commitment_fund(s, commitment_id) != fund_id:
            raise InvalidArgument.field("commitment", "该预留不属于本基金", reason="COMMITMENT_OTHER_FUND")
        fund = await self.ledger.locked_fund(s, fund_id)
        attempts = await payment_attempts(s, payment_key)
        attempt = dd.next_attempt([failed for _, failed in attempts])
        if attempt is None:
            raise _already_paid(payment_key, next(p for p, failed in attempts if not failed))
        # Every earlier attempt failed at the bank: two racing retries compute the same n, and the UNIQUE
        # constraint lets only one in.
        stored_key = dd.attempt_key(payment_key, attempt)
        holder: list[PaymentRow] = []

        async def attach(journal: Any) -> None:
            row = PaymentRow(
                id=journal.id,
                journal_id=journal.id,
                fund_id=fund.id,
                payment_key=stored_key,
                payee=payee,
                amount=amount.fen,
                created_at=utcnow(),
            )
            s.add(row)
            try:
                await s.flush()
            except IntegrityError:
                # The same key paid from another fund committed first; the transaction rolls back.
                raise _already_paid(payment_key, None) from None
            holder.append(row)

        posted = await self.ledger.post(
            s,
            fund,
            ld.JournalKind.PAYMENT,
            amount,
            lambda jid: ld.payment(fund.id, jid, amount, commitment_id),
            actor=actor,
            memo=memo,
            request_id=request_id,
            attach=attach,
            counterparty=payee,
        )
        if emit_event:
            _emit(s, wire.payment_issued(fund.id, holder[0]))
        return posted, holder[0]

    async def return_payment(
        self,
        s: AsyncSession,
        payment_id: int,
        amount: Money,
        *,
        actor: str,
        reason: str = "",
        request_id: str = "",
        emit_event: bool = True,
    ) -> tuple[Posted, PaymentRow]:
        """The bank could not pay (part of) a payment: the money goes back to the fund's available balance."""
        ld.require_positive(amount)
        row = await s.get(PaymentRow, payment_id)
        if row is None:
            raise NotFound(f"支付记录 {payment_id} 不存在", reason="PAYMENT_NOT_FOUND")
        fund = await self.ledger.locked_fund(s, row.fund_id)
        # A payment with its own journal has its own EXPENSE line to credit; one of a
        # batch shares the batch journal's EXPENSE line, so the return credits that.
        own = row.journal_id == row.id
        posted = await self.ledger.post(
            s,
            fund,
            ld.JournalKind.PAYMENT_RETURN,
            amount,
            lambda jid: ld.payment_returned(fund.id, payment_id if own else None, amount),
            actor=actor,
            memo=reason,
            request_id=request_id,
            counterparty=wire.single_payment_name(fund.id, payment_id),
        )
        if emit_event:
            _emit(s, wire.payment_returned(fund.id, row, amount.fen, reason))
        return posted, row

    # ------------------------------------------------------------ batches

    async def create_payment_batch(
        self, program_id: int, region: RegionCode | None, period: Period, *, caller: Caller | None, idem: Idem | None
    ) -> funds_pb2.PaymentBatch:
        """Pay the program's beneficiaries in ``region`` for ``period`` (see the module docstring)."""
        if region is None:
            raise InvalidArgument.field(
                "region.code", "请填写发放地区的行政区划代码，例如 431281", reason="MISSING_REGION"
            )
        if caller is not None:
            caller.require_region(region)
        now = self.clock()
        async with self.sessions() as s:
            program = await self.programs.program_for(s, program_id, caller)
        if not RegionCode(program.region).contains(region):
            raise InvalidArgument.field(
                "region.code",
                f"地区 {region.short} 不在项目主办地区 {RegionCode(program.region).short} 内",
                reason="OUT_OF_PROGRAM_REGION",
            )
        kind = dd.period_kind(program.type)
        if kind is not None and period.kind is not kind:
            raise InvalidArgument.field(
                "period.code", f"该项目按月发放，请填写月份，例如 {period.start.year}-08", reason="PERIOD_KIND"
            )
        what = BatchProgram(
            id=program.id,
            name=program.name,
            rule_type=pd.rule_type(program.type, program.custom_type),
            year=program.year,
            fund_id=program.fund_id,
        )
        actor, request_id = actor_of(caller), request_id_of(idem)

        async def work(s: AsyncSession) -> funds_pb2.PaymentBatch:
            with fewer_collections():
                return await self._write_batch(s, what, region, period, kind is not None, now, actor, request_id)

        return await mutate(self.sessions, idem, funds_pb2.PaymentBatch, work, caller=caller, notify=self.notify)

    async def support_ends(
        self, program_type: str, deaths: dict[str, tuple[str, Any]]
    ) -> dict[str, tuple[Any, tuple[str, ...]] | None]:
        """``persons/…`` → (last month paid, basis) by the person's village's ``jsx_support_end`` rule for
        their death; None where no plugin has a rule. A failing plugin fails the call (its clear error)."""
        people = list(deaths)
        calls = [
            (RegionCode(deaths[p][0]), {"program_type": program_type, "event": "DEATH", "on": deaths[p][1]})
            for p in people
        ]
        out: dict[str, tuple[Any, tuple[str, ...]] | None] = {}
        for person, answer in zip(people, await self.plugins.acall_many("jsx_support_end", calls), strict=True):
            if isinstance(answer, DomainError):
                if getattr(answer, "reason", "") == "NO_RULE":
                    out[person] = None
                    continue
                raise answer
            if isinstance(answer, BaseException):
                raise answer
            out[person] = (answer.value.last_period_month, tuple(answer.value.basis))
        return out

    async def end_enrolments(self, s: AsyncSession, person: str, village: str, died: Any, previous: Any) -> None:
        """A death recorded (``died`` a date) or withdrawn (``died`` None, ``previous`` the date it had): each of
        the person's periodic enrolments records, in its provenance, until which month it is paid and by which
        rule — or that it goes on. Payment batches apply the stop themselves (:meth:`_stop_the_dead`)."""
        for app, rule_type in await enrolments_of(s, person):
            if rule_type not in dd.PERIODIC:
                continue
            if died is None:
                note_on_application(
                    app, None, "jsx_support_end", [f"受益人 {person} 的死亡记录（{previous}）已撤销，恢复发放"]
                )
                continue
            try:
                decision = await self.plugins.acall(
                    "jsx_support_end", RegionCode(village), program_type=rule_type, event="DEATH", on=died
                )
            except FailedPrecondition as exc:
                if exc.reason != "NO_RULE":
                    raise
                note_on_application(
                    app,
                    None,
                    "jsx_support_end",
                    list(dd.death_stop(person, died, Period.month(died.year, died.month), None, ()) or ()),
                )
                continue
            end = decision.value
            note_on_application(
                app,
                decision,
                "jsx_support_end",
                [
                    f"享受资格终止：受益人 {person} 已于 {died.isoformat()} 死亡，发放至 {end.last_period_month:%Y-%m}",
                    *end.basis,
                ],
            )

    async def _stop_the_dead(self, run: BatchRun) -> None:
        """Leave out of the batch everyone recorded dead whose support ended before this period
        (:func:`~jsx_funds.disbursement.domain.death_stop`), listing their applications as skipped."""
        deaths = await deaths_in(run.s, run.region.prefix)
        if not deaths:
            return
        ends = await self.support_ends(run.program.rule_type, deaths)
        stopped: dict[str, tuple[str, ...]] = {}
        for person, (_village, died) in deaths.items():
            end = ends[person]
            reasons = dd.death_stop(person, died, run.period, end[0] if end else None, end[1] if end else ())
            if reasons is not None:
                stopped[person] = reasons
        if not stopped:
            return
        rows = await run.s.execute(
            run.candidates()  # (before run.stopped is set: the stopped persons' own applications)
            .with_only_columns(ApplicationRow.id, ApplicationRow.person)
            .where(ApplicationRow.person.in_(list(stopped)))
            .order_by(ApplicationRow.id)
        )
        for app_id, person in rows:
            run.tally.skip(f"applications/{app_id}", stopped[person])
        run.stopped = stopped

    async def _write_batch(
        self,
        s: AsyncSession,
        program: BatchProgram,
        region: RegionCode,
        period: Period,
        periodic: bool,
        now: datetime,
        actor: str,
        request_id: str,
    ) -> funds_pb2.PaymentBatch:
        fund = await self.ledger.locked_fund(s, program.fund_id)
        have = await self.ledger.available(s, fund.id)
        batch = PaymentBatchRow(
            program_id=program.id,
            region=region.code,
            period=str(period),
            skipped=[],
            actor=actor,
            request_id=request_id,
            created_at=now,
        )
        s.add(batch)
        await s.flush()
        run = BatchRun(
            s=s,
            program=program,
            region=region,
            period=period,
            periodic=periodic,
            now=now,
            batch_id=batch.id,
            rules=RuleBook(self.plugins, program, period),
            reads=self.plugins.rule_inputs(program.rule_type, region, within=True) if periodic else None,
            issue=lambda s_, ids: self.programs.mark_payment_issued(s_, ids, now),
        )
        if periodic:
            await self._stop_the_dead(run)
        await planner_for((await s.connection()).dialect.name).write(run)
        tally = run.tally
        if tally.count == 0:
            raise dd.nothing_to_pay(program.name, region, period, len(tally.skipped))
        dd.check_covered(fund.id, fund.name, have, tally.count, tally.total, fund.allow_negative)
        total = Money(tally.total)
        t = time.perf_counter()
        await self.ledger.post(
            s,
            fund,
            ld.JournalKind.PAYMENT,
            total,
            lambda _jid: ld.batch_payment(fund.id, total),
            actor=actor,
            memo=f"{program.name} {period} 一卡通发放 {tally.count} 笔",
            request_id=request_id,
            counterparty=dd.batch_name(batch.id),
            journal_id=run.journal_id,
        )
        batch.journal_id = run.journal_id
        batch.first_payment_id, batch.last_payment_id, batch.bases = tally.first_id, tally.last_id, run.bases.listed
        batch.payment_count, batch.payment_total = tally.count, tally.total
        batch.skipped = tally.skipped
        await s.flush()
        run.spent["journal"] = time.perf_counter() - t
        # Where a batch's time went, for the operator sizing a province's month (commit not included).
        log.info(
            "payment batch %s: %d payments, %d skipped, %d rule inputs%s in %.1f s (%s)",
            dd.batch_name(batch.id),
            tally.count,
            len(tally.skipped),
            len(run.rules),
            run.note,
            time.perf_counter() - run.started,
            ", ".join(f"{k} {v:.1f} s" for k, v in run.spent.items() if v),
        )
        return await self._batch_reply(s, batch)

    async def _batch_reply(self, s: AsyncSession, batch: PaymentBatchRow) -> funds_pb2.PaymentBatch:
        amount = func.coalesce(func.sum(PaymentRow.amount), 0)
        recorded = batch.payment_count is not None and batch.payment_total is not None
        q: Any
        if recorded:
            # Only what the bank has answered is counted (O(answers)): a new batch's reply costs nothing per payment.
            q = (
                select(BankResultRow.state, func.count(), amount)
                .join(PaymentRow, PaymentRow.id == BankResultRow.payment_id)
                .where(BankResultRow.batch_id == batch.id)
                .group_by(BankResultRow.state)
            )
        else:
            # Written before migration 0013 recorded them: count the payments (O(batch)).
            q = (
                select(STATE, func.count(), amount)
                .select_from(PaymentRow)
                .outerjoin(BankResultRow, BankResultRow.payment_id == PaymentRow.id)
                .where(in_batch(batch))
                .group_by(STATE)
            )
        by = {st: (int(k), int(v)) for st, k, v in (await s.execute(q)).all()}
        if recorded:
            assert batch.payment_count is not None and batch.payment_total is not None
            n, total = batch.payment_count, batch.payment_total
        else:
            n, total = sum(v[0] for v in by.values()), sum(v[1] for v in by.values())
        return wire.batch_message(batch, n, total, by.get("PAID", (0, 0)), by.get("FAILED", (0, 0)))

    async def _batch(self, s: AsyncSession, batch_id: int, caller: Caller | None) -> PaymentBatchRow:
        row = await s.get(PaymentBatchRow, batch_id)
        if row is None:
            raise NotFound(f"支付批次 paymentBatches/{batch_id} 不存在", reason="PAYMENT_BATCH_NOT_FOUND")
        if caller is not None:
            caller.require_region(row.region)
        return row

    async def get_payment_batch(self, batch_id: int, *, caller: Caller | None) -> funds_pb2.PaymentBatch:
        async with self.sessions() as s:
            return await self._batch_reply(s, await self._batch(s, batch_id, caller))

    async def list_payments(
        self, batch_id: int, state: str = "", page_size: int = 0, page_token: str = "", *, caller: Caller | None
    ) -> funds_pb2.ListPaymentsResponse:
        """A batch's payments in id order, optionally only those in ``state`` (PENDING, PAID, FAILED)."""
        p = paging.page(page_size, page_token, query=f"{SERVICE_NAME}/ListPayments", filters=(batch_id, state))
        async with self.sessions() as s:
            batch = await self._batch(s, batch_id, caller)
            stmt: Any = (
                select(PaymentRow, BankResultRow)
                .outerjoin(BankResultRow, BankResultRow.payment_id == PaymentRow.id)
                .where(in_batch(batch))
            )
            if state:
                stmt = stmt.where(STATE == state)  # noqa: SIM300 (a column expression, not a constant)
            rows = (await s.execute(p.apply(stmt, PaymentRow.id))).all()
        page, token = p.cut(rows, key=lambda r: r[0].id)
        return funds_pb2.ListPaymentsResponse(
            payments=[wire.payment_message(pay, r) for pay, r in page], next_page_token=token
        )

    # ------------------------------------------------------------ the internal id list

    async def write_id_list(self, batch_id: int, out: TextIO) -> int:
        """Stream the batch's internal id list (no personal data) to ``out``; returns the number of payments
        (:func:`~jsx_funds.disbursement.payment_file.write_id_list`)."""
        async with self.sessions() as s:
            batch = await self._batch(s, batch_id, None)
            program = await self.programs.program_for(s, batch.program_id, None)
            return await pf.write_id_list(s, batch, program.name, out)

    # ------------------------------------------------------------ the bank file

    async def _file_batch(self, batch_id: int, caller: Caller | None) -> pf.FileBatch:
        async with self.sessions() as s:
            row = await self._batch(s, batch_id, caller)
            program = await self.programs.program_for(s, row.program_id, None)
        return pf.file_batch(row, program.name, program.beneficiary == "HOUSEHOLD")

    def _members(self) -> MembersClient:
        if self.members is None:
            raise FailedPrecondition(
                "资金服务未配置成员服务地址（JSX_MEMBERS_ADDR），无法取得收款人姓名和一卡通账号",
                reason="MEMBERS_NOT_CONFIGURED",
            )
        return self.members

    async def get_payment_file(
        self, batch_id: int, csv_format: bool, *, caller: Caller | None, token: str | None
    ) -> funds_pb2.PaymentFile:
        """GetPaymentFile: the bank file in the response (not stored), payees read from members under ``token``
        (the caller's own: members checks *their* ``members.payees.read`` and audits them)."""
        members = self._members()
        b = await self._file_batch(batch_id, caller)
        meta, content = await pf.bank_file_bytes(self.sessions, members, b, csv_format=csv_format, token=token)
        if meta.size_bytes > pf.UNARY_MAX_BYTES:
            raise pf.file_too_large(meta)
        return wire.payment_file_message(meta, content)

    async def stream_payment_file(
        self, batch_id: int, csv_format: bool, *, caller: Caller | None, token: str | None
    ) -> AsyncIterator[funds_pb2.PaymentFileChunk]:
        """StreamPaymentFile: the metadata, then the file in chunks — all of it written and checked before the
        first message, so a refusal is the call's status with nothing sent."""
        members = self._members()
        b = await self._file_batch(batch_id, caller)
        async for item in pf.spooled_bank_file(self.sessions, members, b, csv_format=csv_format, token=token):
            if isinstance(item, bytes):
                yield funds_pb2.PaymentFileChunk(data=item)
            else:
                yield funds_pb2.PaymentFileChunk(metadata=wire.payment_file_message(item))

    async def write_bank_files(
        self, batch_id: int, targets: Sequence[tuple[bool, IO[bytes]]], *, token: str | None
    ) -> list[pf.BankFile]:
        """The bank file written into each of ``targets`` (csv_format, out) from one read of the payees (the
        CLI: ``--csv`` and ``--xlsx`` together); a trusted caller (no region scope), members checks ``token``."""
        members = self._members()
        b = await self._file_batch(batch_id, None)
        return await pf.write_bank_files(self.sessions, members, b, targets, token=token)

    # ------------------------------------------------------------ bank results

    async def import_bank_results(
        self, batch_id: int, lines: Sequence[dd.BankLine], *, caller: Caller | None, idem: Idem | None
    ) -> funds_pb2.ImportBankResultsResponse:
        """Apply the bank's answers for a batch: all of them, or (any problem) none."""
        errs = ErrorCollector()
        wanted = dd.check_bank_lines(batch_id, lines, errs)
        errs.raise_if_any()
        now, actor, request_id = self.clock(), actor_of(caller), request_id_of(idem)

        async def work(s: AsyncSession) -> funds_pb2.ImportBankResultsResponse:
            batch = await self._batch(s, batch_id, caller)
            program = await self.programs.program_for(s, batch.program_id, None)
            # Serialise imports of one batch (and any payment on its fund) before reading states.
            await self.ledger.locked_fund(s, program.fund_id)
            rows = {
                p.id: (p, r)
                for p, r in (
                    await s.execute(
                        select(PaymentRow, BankResultRow)
                        .outerjoin(BankResultRow, BankResultRow.payment_id == PaymentRow.id)
                        .where(PaymentRow.id.in_(list(wanted)))
                    )
                ).all()
            }
            bad = ErrorCollector()
            for pid, (i, line) in sorted(wanted.items(), key=lambda kv: kv[1][0]):
                row, res = rows.get(pid, (None, None))
                dd.check_against_recorded(
                    i,
                    line,
                    batch.id,
                    row.batch_id if row is not None else None,
                    res.state if res is not None else None,
                    res.failure_reason if res is not None else "",
                    bad,
                )
            bad.raise_if_any()
            paid = failed = 0
            for pid, (_, line) in sorted(wanted.items()):
                row, res = rows[pid]
                if res is not None:
                    continue  # the same result again: nothing to do
                if line.succeeded:
                    s.add(
                        BankResultRow(
                            payment_id=pid,
                            batch_id=batch.id,
                            state="PAID",
                            bank_reference=line.bank_reference.strip()[:100],
                            failure_reason="",
                            paid_date=line.paid_date,
                            settled_at=now,
                            actor=actor,
                        )
                    )
                    await self._settle(s, batch, row, "PAID", now)
                    _emit(s, wire.bank_paid(batch.id, row, line.paid_date))
                    paid += 1
                else:
                    reason = line.failure_reason.strip()[:500]
                    posted, _ = await self.return_payment(
                        s,
                        pid,
                        Money(row.amount),
                        actor=actor,
                        reason=f"银行退回：{reason}",
                        request_id=request_id,
                        emit_event=False,
                    )
                    s.add(
                        PaymentFailureRow(
                            payment_id=pid,
                            return_journal_id=posted.journal.id,
                            reason=reason,
                            actor=actor,
                            failed_at=now,
                        )
                    )
                    s.add(
                        BankResultRow(
                            payment_id=pid,
                            batch_id=batch.id,
                            state="FAILED",
                            bank_reference=line.bank_reference.strip()[:100],
                            failure_reason=reason,
                            paid_date=None,
                            settled_at=now,
                            actor=actor,
                        )
                    )
                    await self._settle(s, batch, row, "PAYMENT_FAILED", now)
                    _emit(s, wire.bank_failed(batch.id, row, reason))
                    failed += 1
            await s.flush()
            return funds_pb2.ImportBankResultsResponse(
                payment_batch=await self._batch_reply(s, batch), paid_count=paid, failed_count=failed
            )

        return await mutate(
            self.sessions, idem, funds_pb2.ImportBankResultsResponse, work, caller=caller, notify=self.notify
        )

    async def _settle(
        self, s: AsyncSession, batch: PaymentBatchRow, row: PaymentRow, state: str, now: datetime
    ) -> None:
        """The application shows its newest payment's outcome (a periodic program pays it every month)."""
        if row.application_id is None:
            return
        prefix, suffix = dd.periodic_key_affixes(batch.program_id, batch.period)
        key = dd.business_key(row.payment_key)
        mine = PaymentRow.application_id == row.application_id
        if key.startswith(prefix) and key.endswith(suffix):  # through the beneficiary's range of the key index
            mine = beneficiary_keys(batch.program_id, key[len(prefix) : -len(suffix)]) & mine
        newest = (await s.execute(select(func.max(PaymentRow.id)).where(mine))).scalar_one()
        if newest == row.id:
            await set_application_state(s, row.application_id, state, now)

    async def get_reconciliation(self, batch_id: int, *, caller: Caller | None) -> funds_pb2.Reconciliation:
        """The batch's 对账: counts and amounts by state against its ledger entries."""
        async with self.sessions() as s:
            batch = await self._batch(s, batch_id, caller)
            rows = [
                (p, r)
                for p, r in (
                    await s.execute(
                        select(PaymentRow, BankResultRow)
                        .outerjoin(BankResultRow, BankResultRow.payment_id == PaymentRow.id)
                        .where(in_batch(batch))
                        .order_by(PaymentRow.id)
                    )
                ).all()
            ]
            failures = {
                f.payment_id: f
                for f in (
                    await s.execute(
                        select(PaymentFailureRow)
                        .join(PaymentRow, PaymentRow.id == PaymentFailureRow.payment_id)
                        .where(in_batch(batch))
                    )
                ).scalars()
            }
            recover = await self._paid_after_death(s, batch, rows)
            # What the batch's journal(s) put into EXPENSE, less what its failures' return journals took back.
            ledger = await self.ledger.expense(
                s, {p.journal_id for p, _ in rows}, ld.Side.DEBIT
            ) - await self.ledger.expense(s, {f.return_journal_id for f in failures.values()}, ld.Side.CREDIT)
        rec = dd.reconcile(
            (
                (dd.payment_ref(batch.id, p.id), p.amount, r.state if r else "PENDING", p.id in failures)
                for p, r in rows
            ),
            ledger,
        )
        return wire.reconciliation_message(
            batch.id, rec, [(p, r) for p, r in rows if r is not None and r.state == "FAILED"], recover
        )

    async def _paid_after_death(
        self, s: AsyncSession, batch: PaymentBatchRow, rows: Sequence[tuple[PaymentRow, BankResultRow | None]]
    ) -> list[tuple[PaymentRow, BankResultRow | None, str]]:
        """The batch's payments (not failed) to persons recorded dead whose support ended before its period."""
        deaths = await deaths_in(s, RegionCode.parse(batch.region).prefix)
        if not deaths:
            return []
        persons = dict(
            (
                await s.execute(
                    select(ApplicationRow.id, ApplicationRow.person).where(
                        ApplicationRow.id.in_({p.application_id for p, _ in rows if p.application_id is not None}),
                        ApplicationRow.person.in_(list(deaths)),
                    )
                )
            ).all()
        )
        if not persons:
            return []
        program = await self.programs.program_for(s, batch.program_id, None)
        dead = {p: deaths[p] for p in set(persons.values())}
        ends = await self.support_ends(pd.rule_type(program.type, program.custom_type), dead)
        period = Period.parse(batch.period)
        out = []
        for p, r in rows:
            person = persons.get(p.application_id) if p.application_id is not None else None
            if person is None or (r is not None and r.state == "FAILED"):
                continue
            end = ends[person]
            reasons = dd.death_stop(person, dead[person][1], period, end[0] if end else None, end[1] if end else ())
            why = dd.to_recover(dd.payment_ref(batch.id, p.id), reasons)
            if why is not None:
                out.append((p, r, why))
        return out


def _emit(s: AsyncSession, message: Any) -> None:
    add_event(s, subject_of(message), message)


def _already_paid(key: str, existing: PaymentRow | None) -> AlreadyExists:
    where = f"（支付记录 funds/{existing.fund_id}/payments/{existing.id}）" if existing else ""
    return AlreadyExists(
        f"该笔款项已支付过{where}，同一业务不能重复支付", reason="ALREADY_PAID", metadata={"payment_key": key}
    )
