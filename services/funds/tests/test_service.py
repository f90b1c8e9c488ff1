"""Funds use cases against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import events_pb2, funds_pb2
from jsx_funds.disbursement.service import DisbursementService
from jsx_funds.ledger import service as S
from jsx_funds.ledger.service import LedgerService
from jsx_funds.ledger.tables import EntryRow, JournalRow
from jsxcore.db import transaction
from jsxcore.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from jsxcore.outbox import OutboxEvent
from jsxcore.values import Money

if TYPE_CHECKING:  # the fixtures' types (this directory's conftest, which pytest imports itself)
    from conftest import Api, Kit


async def count(svc: LedgerService, model: Any) -> int:
    async with svc.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


async def test_allocation_donation_and_balances(svc: LedgerService, kit: Kit, api: Api) -> None:
    fund = await kit.make_fund()
    src = await kit.make_source()
    entry = await kit.allocate(fund, src, 100_000_00)
    assert entry.kind == funds_pb2.ENTRY_KIND_ALLOCATION
    assert entry.amount.fen == 100_000_00 and entry.balance_after.fen == 100_000_00
    assert sorted((ln.account, ln.debit, ln.amount.fen) for ln in entry.lines) == [
        (funds_pb2.LEDGER_ACCOUNT_INCOME, False, 100_000_00),
        (funds_pb2.LEDGER_ACCOUNT_AVAILABLE, True, 100_000_00),
    ]
    d1 = await api.RecordDonation(kit.donation_request(fund, 5000_00), None)
    d2 = await api.RecordDonation(kit.donation_request(fund, 12_34, donor="李四"), None)
    assert d1.receipt_number == "431224-2022-000001"
    assert d2.receipt_number == "431224-2022-000002"
    d3 = await api.RecordDonation(kit.donation_request(fund, 1_00, year=2023), None)
    assert d3.receipt_number == "431224-2023-000001"
    bal = await api.GetFundBalance(funds_pb2.GetFundBalanceRequest(fund=f"funds/{fund}"))
    assert bal.balance.fen == bal.available.fen == 100_000_00 + 5000_00 + 12_34 + 1_00
    assert bal.committed.fen == 0 and bal.total_in.fen == bal.balance.fen
    assert len(bal.by_source) == 2
    got = await api.GetFund(funds_pb2.GetFundRequest(name=f"funds/{fund}"))
    assert got.balance.fen == bal.balance.fen and got.kind == funds_pb2.FUND_KIND_HAPPINESS
    # the donation event carries ids and amounts, never the donor's name
    async with svc.sessions() as s:
        rows = (
            (await s.execute(select(OutboxEvent).where(OutboxEvent.subject == "jsx.funds.donation.received")))
            .scalars()
            .all()
        )
    assert len(rows) == 3
    ev = events_pb2.DonationReceived.FromString(rows[0].payload)
    assert ev.amount.fen == 5000_00 and ev.receipt_number == "431224-2022-000001" and ev.event_id == rows[0].event_id
    assert "张三".encode() not in rows[0].payload


async def test_overdraft_is_refused_and_nothing_posted(
    svc: LedgerService, kit: Kit, disbursement: DisbursementService
) -> None:
    fund, src = await kit.make_fund(), await kit.make_source()
    await kit.allocate(fund, src, 1000_00)
    journals = await count(svc, JournalRow)
    with pytest.raises(FailedPrecondition) as e:
        async with transaction(svc.sessions) as s:
            await disbursement.pay(
                s, fund, Money(1000_01), payment_key="applications/1", payee="households/1", actor="t"
            )
    assert e.value.reason == "INSUFFICIENT_FUNDS"
    assert e.value.message == "基金余额不足：可用 1000.00 元，本次需要 1000.01 元"
    with pytest.raises(FailedPrecondition, match="基金余额不足"):
        async with transaction(svc.sessions) as s:
            await S.commit(s, fund, Money(2000_00), actor="t")
    assert await count(svc, JournalRow) == journals
    assert (await svc.balance(fund)).available == Money(1000_00)


async def test_allow_negative_fund_may_overdraw(
    svc: LedgerService, kit: Kit, disbursement: DisbursementService
) -> None:
    fund = await kit.make_fund(allow_negative=True)
    async with transaction(svc.sessions) as s:
        await disbursement.pay(s, fund, Money(50_00), payment_key="k1", payee="households/1", actor="t")
    assert (await svc.balance(fund)).available == Money(-50_00)


@pytest.mark.slow
async def test_commit_pay_return_and_reversal_rules(
    svc: LedgerService, kit: Kit, api: Api, disbursement: DisbursementService
) -> None:
    fund, src = await kit.make_fund(), await kit.make_source()
    alloc = await kit.allocate(fund, src, 1000_00)
    async with transaction(svc.sessions) as s:
        c = await S.commit(s, fund, Money(600_00), actor="t")
    cid = c.journal.id
    b = await svc.balance(fund)
    assert (b.available, b.committed, b.held) == (Money(400_00), Money(600_00), Money(1000_00))
    with pytest.raises(FailedPrecondition) as e:
        async with transaction(svc.sessions) as s:
            await disbursement.pay(
                s, fund, Money(600_01), payment_key="a/1", payee="households/1", actor="t", commitment_id=cid
            )
    assert e.value.reason == "COMMITMENT_EXCEEDED"
    async with transaction(svc.sessions) as s:
        _, p = await disbursement.pay(
            s, fund, Money(500_00), payment_key="a/1", payee="households/1", actor="t", commitment_id=cid
        )
    with pytest.raises(AlreadyExists) as e2:
        async with transaction(svc.sessions) as s:
            await disbursement.pay(
                s, fund, Money(1_00), payment_key="a/1", payee="households/1", actor="t", commitment_id=cid
            )
    assert e2.value.reason == "ALREADY_PAID"
    # a commitment with a payment drawn on it cannot be reversed (its earmark would go negative)
    with pytest.raises(FailedPrecondition) as e3:
        async with transaction(svc.sessions) as s:
            await S.reverse(s, fund, cid, actor="t", reason="录错")
    assert e3.value.reason == "COMMITMENT_EXCEEDED"
    async with transaction(svc.sessions) as s:
        await disbursement.return_payment(s, p.journal_id, Money(200_00), actor="bank", reason="账户已销户")
    with pytest.raises(FailedPrecondition) as e4:
        async with transaction(svc.sessions) as s:
            await disbursement.return_payment(s, p.journal_id, Money(300_01), actor="bank", reason="x")
    assert e4.value.reason == "PAYMENT_RETURN_EXCEEDED"
    b = await svc.balance(fund)
    assert (b.available, b.committed, b.expended) == (Money(600_00), Money(100_00), Money(300_00))
    # the allocation cannot be reversed: 300 of it has been spent
    with pytest.raises(FailedPrecondition) as e5:
        await api.ReverseLedgerEntry(
            funds_pb2.ReverseLedgerEntryRequest(name=alloc.name, reason="重复入账", request_id=kit.rid()), None
        )
    assert e5.value.reason == "INSUFFICIENT_FUNDS"
    async with transaction(svc.sessions) as s:
        await S.release(s, cid, Money(100_00), actor="t")
        ret2 = await disbursement.return_payment(s, p.journal_id, Money(100_00), actor="bank", reason="户名不符")
    # a partly returned payment cannot be reversed whole …
    pay_name = f"funds/{fund}/ledgerEntries/{p.journal_id}"
    with pytest.raises(FailedPrecondition) as e6:
        await api.ReverseLedgerEntry(
            funds_pb2.ReverseLedgerEntryRequest(name=pay_name, reason="支付录错", request_id=kit.rid()), None
        )
    assert e6.value.reason == "PAYMENT_RETURN_EXCEEDED"
    # … until its return is reversed; a reversal itself cannot be reversed
    rr = await api.ReverseLedgerEntry(
        funds_pb2.ReverseLedgerEntryRequest(
            name=f"funds/{fund}/ledgerEntries/{ret2[0].journal.id}", reason="退回录错", request_id=kit.rid()
        ),
        None,
    )
    with pytest.raises(FailedPrecondition) as e7:
        await api.ReverseLedgerEntry(
            funds_pb2.ReverseLedgerEntryRequest(name=rr.name, reason="x", request_id=kit.rid()), None
        )
    assert e7.value.reason == "CANNOT_REVERSE_REVERSAL"
    # the first return (200) is still posted, so reversing the payment still needs 500 from a net of 300
    async with svc.sessions() as s:
        first_return = (
            (await s.execute(select(JournalRow.id).where(JournalRow.kind == "PAYMENT_RETURN").order_by(JournalRow.id)))
            .scalars()
            .first()
        )
    await api.ReverseLedgerEntry(
        funds_pb2.ReverseLedgerEntryRequest(
            name=f"funds/{fund}/ledgerEntries/{first_return}", reason="退回录错", request_id=kit.rid()
        ),
        None,
    )
    rev = await api.ReverseLedgerEntry(
        funds_pb2.ReverseLedgerEntryRequest(name=pay_name, reason="支付录错", request_id=kit.rid()), None
    )
    assert rev.kind == funds_pb2.ENTRY_KIND_REVERSAL and rev.reverses == pay_name
    with pytest.raises(FailedPrecondition) as e8:
        await api.ReverseLedgerEntry(
            funds_pb2.ReverseLedgerEntryRequest(name=pay_name, reason="再冲一次", request_id=kit.rid()), None
        )
    assert e8.value.reason == "ALREADY_REVERSED"
    b = await svc.balance(fund)
    assert b.expended == Money(0) and b.held == Money(1000_00)
    assert b.committed == Money(500_00) and b.available == Money(500_00)


async def test_idempotent_retry_and_reuse(svc: LedgerService, kit: Kit) -> None:
    fund, src = await kit.make_fund(), await kit.make_source()
    req_id = kit.rid()
    first = await kit.allocate(fund, src, 300_00, request_id=req_id)
    again = await kit.allocate(fund, src, 300_00, request_id=req_id)
    assert again == first
    assert (await svc.balance(fund)).available == Money(300_00)
    with pytest.raises(InvalidArgument) as e:
        await kit.allocate(fund, src, 301_00, request_id=req_id)
    assert e.value.reason == "REQUEST_ID_REUSED"


async def test_bad_input_is_reported_per_field(svc: LedgerService, kit: Kit, api: Api) -> None:
    with pytest.raises(InvalidArgument) as e:
        await api.CreateFund(
            funds_pb2.CreateFundRequest(
                request_id=kit.rid(), fund=funds_pb2.Fund(owner_region=common_pb2.RegionCode(code="12"))
            ),
            None,
        )
    assert {v.field for v in e.value.violations} == {"fund.display_name", "fund.kind", "fund.owner_region.code"}
    fund = await kit.make_fund()
    with pytest.raises(InvalidArgument) as e2:
        await api.PostAllocation(
            funds_pb2.PostAllocationRequest(
                fund=f"funds/{fund}", source="nope", amount=common_pb2.Money(fen=-1), request_id=kit.rid()
            ),
            None,
        )
    assert {v.field for v in e2.value.violations} == {"source", "amount"}
    with pytest.raises(NotFound):
        await api.GetFund(funds_pb2.GetFundRequest(name="funds/999"))
    assert await count(svc, JournalRow) == 0


async def test_ledger_listing_pages_with_running_balance(svc: LedgerService, kit: Kit, api: Api) -> None:
    fund, src = await kit.make_fund(), await kit.make_source()
    for i in range(1, 6):
        await kit.allocate(fund, src, i * 100)
    seen, token = [], ""
    while True:
        page = await api.ListLedgerEntries(
            funds_pb2.ListLedgerEntriesRequest(fund=f"funds/{fund}", page_size=2, page_token=token), None
        )
        seen.extend(page.ledger_entries)
        token = page.next_page_token
        if not token:
            break
    assert [e.balance_after.fen for e in seen] == [100, 300, 600, 1000, 1500]
    with pytest.raises(InvalidArgument):
        await api.ListLedgerEntries(funds_pb2.ListLedgerEntriesRequest(fund="funds/999", page_token="garbage"), None)


async def test_concurrent_payments_never_overdraw(
    svc: LedgerService, kit: Kit, db_url: str, disbursement: DisbursementService
) -> None:
    fund, src = await kit.make_fund(), await kit.make_source()
    await kit.allocate(fund, src, 1000_00)

    async def one(i: int) -> bool:
        try:
            async with transaction(svc.sessions) as s:
                await disbursement.pay(s, fund, Money(300_00), payment_key=f"k/{i}", payee=f"households/{i}", actor="t")
            return True
        except FailedPrecondition:
            return False

    results = await asyncio.gather(*(one(i) for i in range(10)))
    assert sum(results) == 3
    b = await svc.balance(fund)
    assert b.available == Money(100_00) and b.expended == Money(900_00)
    async with svc.sessions() as s:
        entries = (await s.execute(select(func.count()).select_from(EntryRow))).scalar_one()
    assert entries == 2 + 3 * 2
