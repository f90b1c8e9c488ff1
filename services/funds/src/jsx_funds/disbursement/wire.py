"""Disbursement's presenters (rows and domain values → jsx.funds.v1 messages) and the one mapping of
the wire's bank results into the domain's :class:`~jsx_funds.disbursement.domain.BankLine`.

Ids, regions and amounts only in events — never a payee's name or card.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import events_pb2, funds_pb2
from jsx_funds.disbursement import domain as dd
from jsx_funds.disbursement.payment_file import BankFile
from jsx_funds.disbursement.tables import BankResultRow, PaymentBatchRow, PaymentRow
from jsxcore import wire
from jsxcore.values import Period


def single_payment_name(fund_id: int, payment_id: int) -> str:
    """A payment made on its own (``DisbursementService.pay``): ``funds/{f}/payments/{p}``."""
    return f"funds/{fund_id}/payments/{payment_id}"


def payment_message(p: PaymentRow, r: BankResultRow | None) -> funds_pb2.Payment:
    """A batch payment as the wire ``Payment`` (with the bank's answer once there is one)."""
    out = funds_pb2.Payment(
        name=dd.payment_ref(p.batch_id or 0, p.id),
        application=wire.name_to("applications", p.application_id or 0),
        household=f"households/{p.household_id}",
        payee=p.payee,
        amount=wire.money_to(p.amount),
        state=funds_pb2.PaymentState.Value("PAYMENT_STATE_" + (r.state if r else "PENDING")),
    )
    if r is not None:
        out.bank_reference, out.failure_reason = r.bank_reference, r.failure_reason
        if r.paid_date is not None:
            out.paid_date.CopyFrom(wire.date_to(r.paid_date))
    return out


def batch_message(
    batch: PaymentBatchRow, count: int, total: int, paid: tuple[int, int], failed: tuple[int, int]
) -> funds_pb2.PaymentBatch:
    """A batch with its counts and totals (all, paid, failed: (count, 分))."""
    return funds_pb2.PaymentBatch(
        name=dd.batch_name(batch.id),
        program=wire.name_to("programs", batch.program_id),
        region=wire.region_to(batch.region),
        period=wire.period_to(batch.period),
        state=funds_pb2.PaymentBatchState.Value("PAYMENT_BATCH_STATE_" + dd.batch_state(count, paid[0], failed[0])),
        payment_count=count,
        total=wire.money_to(total),
        paid_count=paid[0],
        paid_total=wire.money_to(paid[1]),
        failed_count=failed[0],
        failed_total=wire.money_to(failed[1]),
        audit=common_pb2.AuditStamp(actor=batch.actor, time=wire.ts_to(batch.created_at), request_id=batch.request_id),
    )


def payments_issued(
    event_id: str,
    now: datetime,
    batch_id: int,
    program_id: int,
    fund_id: int,
    period: Period,
    page: int,
    ids: Sequence[int],
    applications: Sequence[int],
    households: Sequence[str],
    payees: Sequence[str],
    villages: Sequence[str],
    amounts: Sequence[int],
) -> events_pb2.PaymentsIssued:
    """One PaymentsIssued page, column by column: each list is extended in one call, where a nested message
    per payment cost ~6 µs (see events.proto)."""
    bname = dd.batch_name(batch_id)
    ev = events_pb2.PaymentsIssued(
        event_id=event_id,
        occurred_at=wire.ts_to(now),
        payment_batch=bname,
        program=wire.name_to("programs", program_id),
        fund=wire.name_to("funds", fund_id),
        period=wire.period_to(period),
        page=page,
        total=wire.money_to(sum(amounts)),
    )
    ev.payment_names.extend([f"{bname}/payments/{i}" for i in ids])
    ev.applications.extend([f"applications/{i}" for i in applications])
    ev.households.extend([f"households/{i}" for i in households])
    ev.payees.extend(payees)
    ev.village_codes.extend(villages)
    ev.amounts_fen.extend(amounts)
    return ev


def payment_issued(fund_id: int, payment: PaymentRow) -> events_pb2.PaymentIssued:
    """A payment made on its own left the fund."""
    return events_pb2.PaymentIssued(
        payment=single_payment_name(fund_id, payment.id),
        fund=wire.name_to("funds", fund_id),
        payee=payment.payee,
        amount=wire.money_to(payment.amount),
    )


def payment_returned(fund_id: int, payment: PaymentRow, amount: int, reason: str) -> events_pb2.PaymentFailed:
    """A payment made on its own came back (``DisbursementService.return_payment``)."""
    return events_pb2.PaymentFailed(
        payment=single_payment_name(fund_id, payment.id),
        payee=payment.payee,
        amount=wire.money_to(amount),
        failure_reason=reason,
    )


def bank_paid(batch_id: int, row: PaymentRow, paid_date: date | None) -> events_pb2.PaymentPaid:
    ev = events_pb2.PaymentPaid(
        payment=dd.payment_ref(batch_id, row.id),
        payment_batch=dd.batch_name(batch_id),
        application=wire.name_to("applications", row.application_id),
        household=f"households/{row.household_id}",
        payee=row.payee,
        village=wire.region_to(row.village),
        amount=wire.money_to(row.amount),
    )
    if paid_date is not None:
        ev.paid_date.CopyFrom(wire.date_to(paid_date))
    return ev


def bank_failed(batch_id: int, row: PaymentRow, reason: str) -> events_pb2.PaymentFailed:
    return events_pb2.PaymentFailed(
        payment=dd.payment_ref(batch_id, row.id),
        payment_batch=dd.batch_name(batch_id),
        application=wire.name_to("applications", row.application_id),
        household=f"households/{row.household_id}",
        payee=row.payee,
        village=wire.region_to(row.village),
        amount=wire.money_to(row.amount),
        failure_reason=reason,
    )


def bank_lines_from(results: Sequence[funds_pb2.BankResult]) -> list[dd.BankLine]:
    """The wire's bank results as domain lines; an impossible date is kept as its text for the use case to
    report in its place among the other problems (``results[i].paid_date``)."""
    out = []
    for r in results:
        day: date | None = None
        bad = ""
        d = r.paid_date
        if d.year or d.month or d.day:
            try:
                day = date(d.year, d.month, d.day)
            except ValueError:
                bad = f"{d.year}-{d.month}-{d.day}"
        out.append(
            dd.BankLine(
                payment=r.payment,
                succeeded=r.succeeded,
                failure_reason=r.failure_reason,
                bank_reference=r.bank_reference,
                paid_date=day,
                bad_date=bad,
            )
        )
    return out


def reconciliation_message(
    batch_id: int,
    rec: dd.Reconciled,
    failed: Sequence[tuple[PaymentRow, BankResultRow | None]],
    recover: Sequence[tuple[PaymentRow, BankResultRow | None, str]] = (),
) -> funds_pb2.Reconciliation:
    t, c = rec.total, rec.count
    return funds_pb2.Reconciliation(
        payment_batch=dd.batch_name(batch_id),
        issued_total=wire.money_to(rec.issued_total),
        paid_total=wire.money_to(t["PAID"]),
        failed_total=wire.money_to(t["FAILED"]),
        pending_total=wire.money_to(t["PENDING"]),
        ledger_total=wire.money_to(rec.ledger_total),
        balanced=rec.balanced,
        discrepancies=list(rec.problems),
        issued_count=rec.issued_count,
        paid_count=c["PAID"],
        failed_count=c["FAILED"],
        pending_count=c["PENDING"],
        failed_payments=[payment_message(p, r) for p, r in failed],
        summary=rec.summary,
        payments_to_recover=[
            funds_pb2.PaymentToRecover(payment=payment_message(p, r), reason=why) for p, r, why in recover
        ],
    )


def payment_file_message(f: BankFile, content: bytes = b"") -> funds_pb2.PaymentFile:
    return funds_pb2.PaymentFile(
        filename=f.filename,
        content_type=f.content_type,
        payment_count=f.payment_count,
        total=wire.money_to(f.total),
        size_bytes=f.size_bytes,
        sha256=f.sha256,
        content=content,
    )
