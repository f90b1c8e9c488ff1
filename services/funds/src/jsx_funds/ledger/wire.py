"""Ledger presenters: rows and domain values → jsx.funds.v1 messages."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2

from jsx_funds.adapters import bus
from jsx_funds.ledger import domain as d
from jsx_funds.ledger.tables import DonationRow, FundRow, JournalRow, SourceRow
from jsxcore import wire


# ---------------------------------------------------------------- proto mapping


def _kind_name(enum_type, prefix: str, value: str) -> int:  # type: ignore[no-untyped-def]
    return int(enum_type.Value(prefix + value))


def fund_message(fund: FundRow, balance: d.FundBalance, updated: datetime | None) -> funds_pb2.Fund:
    return funds_pb2.Fund(
        name=bus.fund_name(fund.id),
        display_name=fund.name,
        owner_region=common_pb2.RegionCode(code=fund.region),
        kind=_kind_name(funds_pb2.FundKind, "FUND_KIND_", fund.kind),
        balance=wire.money_to(balance.held.fen),
        available=wire.money_to(balance.available.fen),
        allow_negative=fund.allow_negative,
        create_time=wire.ts_to(fund.created_at),
        update_time=wire.ts_to(updated or fund.created_at),
        owner=fund.owner,
        description=fund.description,
    )


def source_message(src: SourceRow) -> funds_pb2.FundSource:
    return funds_pb2.FundSource(
        name=bus.source_name(src.id),
        display_name=src.name,
        kind=_kind_name(funds_pb2.FundSourceKind, "FUND_SOURCE_KIND_", src.kind),
        region=common_pb2.RegionCode(code=src.region),
        create_time=wire.ts_to(src.created_at),
    )


def line_message(ln: d.Line) -> funds_pb2.LedgerLine:
    a = ln.account
    return funds_pb2.LedgerLine(
        account=_kind_name(funds_pb2.LedgerAccount, "LEDGER_ACCOUNT_", a.kind.value),
        debit=ln.side is d.Side.DEBIT,
        amount=wire.money_to(ln.amount.fen),
        source=bus.source_name(a.source_id) if a.source_id is not None else "",
        commitment=bus.entry_name(a.fund_id, a.commitment_id) if a.commitment_id is not None else "",
        payment=bus.payment_name(a.fund_id, a.payment_id) if a.payment_id is not None else "",
    )


HELD = (d.AccountKind.AVAILABLE, d.AccountKind.COMMITTED)


def entry_message(
    journal: JournalRow, lines: Sequence[d.Line], *, held_after: int, available_after: int
) -> funds_pb2.LedgerEntry:
    held_delta = sum(ln.signed_debit for ln in lines if ln.account.kind in HELD)
    return funds_pb2.LedgerEntry(
        name=bus.entry_name(journal.fund_id, journal.id),
        transaction_id=str(journal.id),
        fund=bus.fund_name(journal.fund_id),
        kind=_kind_name(funds_pb2.EntryKind, "ENTRY_KIND_", journal.kind),
        amount=wire.money_to(held_delta),
        balance_after=wire.money_to(held_after),
        available_after=wire.money_to(available_after),
        counterparty=journal.counterparty,
        reference=journal.reference,
        memo=journal.memo,
        reverses=bus.entry_name(journal.fund_id, journal.reverses_id) if journal.reverses_id else "",
        audit=common_pb2.AuditStamp(actor=journal.actor, time=wire.ts_to(journal.created_at), request_id=journal.request_id),
        lines=[line_message(ln) for ln in lines],
    )


def donation_message(don: DonationRow) -> funds_pb2.Donation:
    rd = don.received_on
    return funds_pb2.Donation(
        name=bus.donation_name(don.fund_id, don.journal_id),
        fund=bus.fund_name(don.fund_id),
        donor_display_name="匿名" if don.anonymous else don.donor_name,
        donor_kind=_kind_name(funds_pb2.DonorKind, "DONOR_KIND_", don.donor_kind),
        amount=wire.money_to(don.amount),
        received_date=common_pb2.Date(year=rd.year, month=rd.month, day=rd.day),
        anonymous=don.anonymous,
        receipt_number=don.receipt_no,
        ledger_entry=bus.entry_name(don.fund_id, don.journal_id),
        create_time=wire.ts_to(don.created_at),
    )
