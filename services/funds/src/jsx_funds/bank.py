"""Bank results (银行回盘) and reconciliation (对账) of payment batches.

A county finance bureau returns, per batch, one line per payment: the
reference we sent (``paymentBatches/{b}/payments/{p}``), 成功 or 失败, and the
failure reason. :meth:`BankService.import_bank_results` applies a whole file
in one transaction, or nothing:

* the file is validated first — malformed or unknown reference, a line for
  another batch, the same payment twice, a failure with no reason, or a
  result that contradicts one already recorded — and every problem is
  reported at once (INVALID_ARGUMENT, one violation per line, in Chinese);
* 成功 → a PAID ``bank_results`` row (流水号, date), ``PaymentPaid`` is published;
* 失败 → the payment's money returns to the fund (``service.return_payment``:
  Dr AVAILABLE, Cr EXPENSE), a ``payment_failures`` row marks it failed (which
  frees its business key: a later batch may pay the beneficiary and period
  again, stored as ``key#2``), a FAILED ``bank_results`` row keeps the reason,
  ``PaymentFailed`` is published;
* a line repeating a result already recorded changes nothing, so importing
  the same file twice is harmless.

:meth:`BankService.get_reconciliation` proves, per batch, issued = paid +
failed + pending (counts and amounts) against the ledger: the EXPENSE its
journal(s) debited, less what the return journals of its failed payments
credited back, must equal paid + pending; every failed payment must have its
return journal.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import events_pb2, funds_pb2
from jsxcore.auth import Caller
from jsxcore.errors import ErrorCollector, InvalidArgument
from jsxcore.values import Money

from jsx_funds.adapters import bus
from jsx_funds.adapters.db import BankResultRow, PaymentBatchRow, PaymentFailureRow, PaymentRow, beneficiary_keys, in_batch
from jsx_funds.batches import BatchesService, batch_name, payment_message, payment_ref
from jsx_funds.callers import actor_of
from jsx_funds.ledger import domain as d
from jsx_funds.ledger.service import locked_fund, return_payment
from jsx_funds.ledger.tables import AccountRow, EntryRow
from jsx_funds.legacy_wire import parse_id, to_date
from jsx_funds.programs.tables import ApplicationRow, ProgramRow

_REF = re.compile(r"^paymentBatches/([0-9]+)/payments/([0-9]+)$")
_PAID_WORDS = {"成功", "已支付", "支付成功", "paid", "success", "succeeded", "ok"}
_FAILED_WORDS = {"失败", "支付失败", "退回", "failed", "failure"}


# ---------------------------------------------------------------- the bank's file


@dataclass(frozen=True)
class FileLine:
    """One result line of a bank file; ``row`` is the spreadsheet row number (header = 1)."""

    row: int
    result: funds_pb2.BankResult


_COLUMNS = {
    "payment": ("业务参考号", "参考号", "reference", "payment"),
    "status": ("状态", "支付状态", "处理结果", "结果", "status"),
    "reason": ("失败原因", "原因", "备注", "reason", "failure_reason"),
    "bank_reference": ("银行流水号", "流水号", "bank_reference"),
    "paid_date": ("支付日期", "入账日期", "paid_date"),
}


def _rows(path: Path, data: bytes) -> list[list[str]]:
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            return [["" if v is None else (v.date().isoformat() if isinstance(v, datetime) else str(v)).strip()
                     for v in row] for row in wb.worksheets[0].iter_rows(values_only=True)]
        finally:
            wb.close()
    for enc in ("utf-8-sig", "gb18030"):  # banks' exports are often GBK
        try:
            text = data.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise InvalidArgument.field("file", "无法识别文件编码，请另存为 UTF-8 或 GBK 的 CSV", reason="BAD_ENCODING")
    return [[c.strip() for c in row] for row in csv.reader(io.StringIO(text))]


def read_bank_file(path: str | Path) -> list[FileLine]:
    """Parse a bank result file (CSV UTF-8/GBK, or xlsx) into results, by header names.

    Required columns: 业务参考号, 状态 (成功/失败); optional 失败原因, 银行流水号,
    支付日期 (YYYY-MM-DD). Blank rows and a 合计 row are skipped. Problems
    (missing column, unknown status, bad date) raise INVALID_ARGUMENT naming
    the file row.
    """
    p = Path(path)
    rows = _rows(p, p.read_bytes())
    if not rows:
        raise InvalidArgument.field("file", "文件是空的", reason="EMPTY_FILE")
    header = [h.lower() for h in rows[0]]
    cols: dict[str, int] = {}
    for key, names in _COLUMNS.items():
        for n in names:
            if n.lower() in header:
                cols[key] = header.index(n.lower())
                break
    errs = ErrorCollector()
    for key, label in (("payment", "业务参考号"), ("status", "状态")):
        if key not in cols:
            errs.add("file", f"第 1 行表头缺少“{label}”列")
    errs.raise_if_any()
    out: list[FileLine] = []
    for n, row in enumerate(rows[1:], start=2):
        def cell(key: str) -> str:
            i = cols.get(key)
            return row[i] if i is not None and i < len(row) else ""

        if not any(row) or cell("payment") in ("合计", "总计"):
            continue
        status = cell("status").lower()
        if status not in _PAID_WORDS and status not in _FAILED_WORDS:
            errs.add(f"row[{n}].status", f"第 {n} 行：状态“{cell('status')}”无法识别，应为“成功”或“失败”")
            continue
        res = funds_pb2.BankResult(payment=cell("payment"), succeeded=status in _PAID_WORDS,
                                   failure_reason=cell("reason"), bank_reference=cell("bank_reference"))
        if cell("paid_date"):
            try:
                day = date.fromisoformat(cell("paid_date")[:10])
                res.paid_date.CopyFrom(common_pb2.Date(year=day.year, month=day.month, day=day.day))
            except ValueError:
                errs.add(f"row[{n}].paid_date", f"第 {n} 行：支付日期“{cell('paid_date')}”应写成 2022-08-15")
                continue
        out.append(FileLine(n, res))
    errs.raise_if_any()
    return out


# ---------------------------------------------------------------- use cases


class BankService(BatchesService):
    """ImportBankResults and GetReconciliation on top of the payment batches."""

    async def import_bank_results(self, req: funds_pb2.ImportBankResultsRequest,
                                  caller: Caller | None) -> funds_pb2.ImportBankResultsResponse:
        batch_id = parse_id(req.payment_batch, "paymentBatches", "payment_batch")
        errs = ErrorCollector()
        if not req.results:
            errs.add("results", "没有任何回盘结果")
        wanted: dict[int, tuple[int, funds_pb2.BankResult]] = {}
        for i, r in enumerate(req.results):
            line = f"第 {i + 1} 条（{r.payment or '空'}）"
            m = _REF.match(r.payment.strip())
            if m is None:
                errs.add(f"results[{i}].payment", f"{line}：业务参考号格式不对，应为 paymentBatches/批次号/payments/支付号")
                continue
            b, pid = int(m.group(1)), int(m.group(2))
            if b != batch_id:
                errs.add(f"results[{i}].payment", f"{line}：属于批次 paymentBatches/{b}，不是本批次 {batch_name(batch_id)}")
                continue
            if pid in wanted:
                errs.add(f"results[{i}].payment", f"{line}：与第 {wanted[pid][0] + 1} 条重复")
                continue
            if not r.succeeded and not r.failure_reason.strip():
                errs.add(f"results[{i}].failure_reason", f"{line}：支付失败须填写失败原因")
            try:
                to_date(r.paid_date, f"results[{i}].paid_date")
            except InvalidArgument as e:
                errs.violations.extend(e.violations)
            wanted[pid] = (i, r)
        errs.raise_if_any()
        now = self.clock()
        actor = actor_of(caller)

        async def handler(s: AsyncSession) -> funds_pb2.ImportBankResultsResponse:
            batch = await self._batch(s, req.payment_batch, "payment_batch", caller)
            program = await s.get(ProgramRow, batch.program_id)
            assert program is not None
            # Serialise imports of one batch (and any payment on its fund) before reading states.
            await locked_fund(s, program.fund_id)
            rows = {p.id: (p, r) for p, r in (await s.execute(
                select(PaymentRow, BankResultRow).outerjoin(BankResultRow, BankResultRow.payment_id == PaymentRow.id)
                .where(PaymentRow.id.in_(list(wanted))))).all()}
            bad = ErrorCollector()
            for pid, (i, r) in sorted(wanted.items(), key=lambda kv: kv[1][0]):
                line = f"第 {i + 1} 条（{r.payment}）"
                row, res = rows.get(pid, (None, None))
                if row is None or row.batch_id is None:
                    bad.add(f"results[{i}].payment", f"{line}：本系统没有这笔支付，请核对业务参考号")
                elif row.batch_id != batch.id:
                    bad.add(f"results[{i}].payment", f"{line}：属于批次 {batch_name(row.batch_id)}，不是本批次")
                elif res is not None and (res.state == "PAID") != r.succeeded:
                    was = "已支付成功" if res.state == "PAID" else f"已记为支付失败（{res.failure_reason}）"
                    bad.add(f"results[{i}].payment", f"{line}：该笔此前{was}，与本次“{'成功' if r.succeeded else '失败'}”不符；"
                                                      "如银行更正了结果，请联系县级财务人工处理")
            bad.raise_if_any()
            paid = failed = 0
            for pid, (_, r) in sorted(wanted.items()):
                row, res = rows[pid]
                if res is not None:
                    continue  # the same result again: nothing to do
                ref = payment_ref(batch.id, pid)
                if r.succeeded:
                    day = to_date(r.paid_date, "paid_date")
                    s.add(BankResultRow(payment_id=pid, batch_id=batch.id, state="PAID", bank_reference=r.bank_reference.strip()[:100],
                                        failure_reason="", paid_date=day, settled_at=now, actor=actor))
                    await self._settle_application(s, row, "PAID", now)
                    ev = events_pb2.PaymentPaid(
                        payment=ref, payment_batch=batch_name(batch.id), application=bus.application_name(row.application_id),
                        household=f"households/{row.household_id}", payee=row.payee,
                        village=common_pb2.RegionCode(code=row.village), amount=common_pb2.Money(fen=row.amount))
                    if day is not None:
                        ev.paid_date.CopyFrom(r.paid_date)
                    bus.emit(s, ev)
                    paid += 1
                else:
                    reason = r.failure_reason.strip()[:500]
                    posted, _ = await return_payment(s, pid, Money(row.amount), actor=actor, reason=f"银行退回：{reason}",
                                                     request_id=req.request_id, emit_event=False)
                    s.add(PaymentFailureRow(payment_id=pid, return_journal_id=posted.journal.id, reason=reason,
                                            actor=actor, failed_at=now))
                    s.add(BankResultRow(payment_id=pid, batch_id=batch.id, state="FAILED", bank_reference=r.bank_reference.strip()[:100],
                                        failure_reason=reason, paid_date=None, settled_at=now, actor=actor))
                    await self._settle_application(s, row, "PAYMENT_FAILED", now)
                    bus.emit(s, events_pb2.PaymentFailed(
                        payment=ref, payment_batch=batch_name(batch.id), application=bus.application_name(row.application_id),
                        household=f"households/{row.household_id}", payee=row.payee,
                        village=common_pb2.RegionCode(code=row.village), amount=common_pb2.Money(fen=row.amount),
                        failure_reason=reason))
                    failed += 1
            await s.flush()
            return funds_pb2.ImportBankResultsResponse(payment_batch=await self._batch_message(s, batch),
                                                       paid_count=paid, failed_count=failed)

        return await self._mutate("ImportBankResults", req, funds_pb2.ImportBankResultsResponse, handler, caller)

    @staticmethod
    async def _settle_application(s: AsyncSession, row: PaymentRow, state: str, now: datetime) -> None:
        """The application shows its newest payment's outcome (a periodic program pays it every month)."""
        app = await s.get(ApplicationRow, row.application_id)
        if app is None:
            return
        newest = (await s.execute(select(func.max(PaymentRow.id)).where(
            beneficiary_keys(app.program_id, app.beneficiary),
            PaymentRow.application_id == app.id))).scalar_one()
        if newest == row.id:
            app.state, app.updated_at = state, now

    async def get_reconciliation(self, req: funds_pb2.GetReconciliationRequest,
                                 caller: Caller | None) -> funds_pb2.Reconciliation:
        async with self.sessions() as s:
            batch = await self._batch(s, req.payment_batch, "payment_batch", caller)
            return await reconcile(s, batch)


async def reconcile(s: AsyncSession, batch: PaymentBatchRow) -> funds_pb2.Reconciliation:
    """The batch's 对账: counts and amounts by state against its ledger entries."""
    rows = [(p, r.state if r else "PENDING", r) for p, r in (await s.execute(
        select(PaymentRow, BankResultRow).outerjoin(BankResultRow, BankResultRow.payment_id == PaymentRow.id)
        .where(in_batch(batch)).order_by(PaymentRow.id))).all()]
    failures = {f.payment_id: f for f in (await s.execute(
        select(PaymentFailureRow).join(PaymentRow, PaymentRow.id == PaymentFailureRow.payment_id)
        .where(in_batch(batch)))).scalars()}

    async def expense(journals: set[int], side: str) -> int:
        total = 0
        ids = sorted(journals)
        for i in range(0, len(ids), 1000):
            total += int((await s.execute(
                select(func.coalesce(func.sum(EntryRow.amount), 0)).join(AccountRow, AccountRow.id == EntryRow.account_id)
                .where(AccountRow.kind == d.AccountKind.EXPENSE.value, EntryRow.side == side,
                       EntryRow.journal_id.in_(ids[i:i + 1000])))).scalar_one())
        return total

    # What the batch's journal(s) put into EXPENSE, less what its failures' return journals took back.
    ledger = (await expense({p.journal_id for p, _, _ in rows}, "D")
              - await expense({f.return_journal_id for f in failures.values()}, "C"))
    count = {"PENDING": 0, "PAID": 0, "FAILED": 0}
    total = {"PENDING": 0, "PAID": 0, "FAILED": 0}
    problems: list[str] = []
    for p, state, _ in rows:
        count[state] += 1
        total[state] += p.amount
        if state == "FAILED" and p.id not in failures:
            problems.append(f"{payment_ref(batch.id, p.id)} 记为失败，但没有退回记录")
    issued_n, issued = len(rows), sum(p.amount for p, _, _ in rows)
    if issued != total["PAID"] + total["FAILED"] + total["PENDING"]:  # a state outside the three
        problems.append("批次总额 ≠ 已支付 + 失败 + 待回盘")
    if ledger != total["PAID"] + total["PENDING"]:
        problems.append(f"账上净支出 {d.yuan(ledger)} 元 ≠ 已支付 + 待回盘 {d.yuan(total['PAID'] + total['PENDING'])} 元")
    failed_rows = [(p, r) for p, state, r in rows if state == "FAILED"]
    return funds_pb2.Reconciliation(
        payment_batch=batch_name(batch.id), issued_total=common_pb2.Money(fen=issued),
        paid_total=common_pb2.Money(fen=total["PAID"]), failed_total=common_pb2.Money(fen=total["FAILED"]),
        pending_total=common_pb2.Money(fen=total["PENDING"]), ledger_total=common_pb2.Money(fen=ledger),
        balanced=not problems, discrepancies=problems, issued_count=issued_n, paid_count=count["PAID"],
        failed_count=count["FAILED"], pending_count=count["PENDING"],
        failed_payments=[payment_message(p, r) for p, r in failed_rows],
        summary=(f"共 {issued_n} 笔 {d.yuan(issued)} 元 = 已支付 {count['PAID']} 笔 {d.yuan(total['PAID'])} 元"
                 f" + 失败退回 {count['FAILED']} 笔 {d.yuan(total['FAILED'])} 元"
                 f" + 待回盘 {count['PENDING']} 笔 {d.yuan(total['PENDING'])} 元"))
