"""Ledger use cases (sources, funds, allocations, donations, reversals, balances,
entries) and the in-transaction ledger operations other contexts call.

* :class:`LedgerService` — the use cases behind the ledger's RPCs. Region
  scope is checked here, on the loaded resource; permissions are checked by
  the runtime before we are called.
* Ledger operations (:func:`locked_fund`, :func:`post`, :func:`commit`,
  :func:`release`, :func:`reverse`; payments are the disbursement context's:
  ``DisbursementService.pay`` / ``return_payment``) run inside a caller's transaction, for use
  cases that move money as part of something larger (an approved
  application, a payment batch, a visit's 慰问金). They lock the fund row
  first, so concurrent postings on one fund serialise and no check-then-write
  race can overdraw it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.funds.v1 import funds_pb2
from jsx_funds import SERVICE_NAME
from jsx_funds.adapters import bus
from jsx_funds.adapters.db import utcnow
from jsx_funds.callers import actor_of, list_scope, request_id_of
from jsx_funds.disbursement import tables as payments
from jsx_funds.ledger import domain as d
from jsx_funds.ledger import tables as t
from jsx_funds.ledger.tables import DonationRow, FundRow, JournalRow, SourceRow
from jsx_funds.ledger.wire import balance_message, donation_message, entry_message, fund_message, source_message
from jsxcore import paging
from jsxcore.auth import Caller
from jsxcore.errors import FailedPrecondition, InvalidArgument, NotFound
from jsxcore.usecase import Idem, mutate
from jsxcore.values import Money, RegionCode


@dataclass(frozen=True)
class Posted:
    """A journal just written, with the fund it belongs to."""

    fund: FundRow
    journal: JournalRow
    posting: d.Posting


async def locked_fund(session: AsyncSession, fund_id: int, caller: Caller | None = None) -> FundRow:
    """Lock the fund for this transaction (see :func:`t.lock_fund`); NotFound / region checks."""
    fund = await t.lock_fund(session, fund_id)
    if fund is None:
        raise NotFound(
            f"基金 funds/{fund_id} 不存在，请核对基金编号",
            reason="FUND_NOT_FOUND",
            metadata={"fund": f"funds/{fund_id}"},
        )
    if caller is not None:
        caller.require_region(fund.region)
    return fund


async def post(
    session: AsyncSession,
    fund: FundRow,
    kind: d.JournalKind,
    amount: Money,
    build: Callable[[int], d.Posting],
    *,
    actor: str,
    request_id: str = "",
    memo: str = "",
    reference: str = "",
    counterparty: str = "",
    reverses_id: int | None = None,
    attach: Callable[[JournalRow], Awaitable[None]] | None = None,
    journal_id: int | None = None,
) -> Posted:
    """Write one balanced journal on a fund the caller has locked.

    ``build`` gets the new journal's id (commitments and payments are keyed by
    it) and returns the posting; ``attach`` runs before the entries are written
    (a payment row the entries point at). If the posting would leave any
    account on the wrong side of zero, FailedPrecondition is raised and the
    caller's transaction rolls back: nothing is posted. ``journal_id`` is
    for a payment batch, whose payments name their journal before it is written.
    """
    journal = JournalRow(
        id=journal_id,
        fund_id=fund.id,
        kind=kind.value,
        amount=amount.fen,
        reverses_id=reverses_id,
        request_id=request_id,
        memo=memo[:500],
        reference=reference[:200],
        counterparty=counterparty,
        actor=actor,
        created_at=utcnow(),
    )
    session.add(journal)
    await session.flush()
    posting = build(journal.id)
    if posting.amount != amount:
        raise ValueError("journal header amount differs from its entries")
    before = await t.balances_for(session, d.touched_keys(posting))
    d.check_balances(posting, before, allow_negative=fund.allow_negative)
    if attach is not None:
        await attach(journal)
    await t.write_posting(session, journal, posting)
    return Posted(fund, journal, posting)


async def commit(
    session: AsyncSession,
    fund_id: int,
    amount: Money,
    *,
    actor: str,
    memo: str = "",
    request_id: str = "",
    caller: Caller | None = None,
) -> Posted:
    """Earmark ``amount`` of the fund's available money; the journal id is the commitment id."""
    d.require_positive(amount)
    fund = await locked_fund(session, fund_id, caller)
    return await post(
        session,
        fund,
        d.JournalKind.COMMITMENT,
        amount,
        lambda jid: d.commitment(fund.id, jid, amount),
        actor=actor,
        memo=memo,
        request_id=request_id,
    )


async def commitment_fund(session: AsyncSession, commitment_id: int) -> int:
    row = await session.get(JournalRow, commitment_id)
    if row is None or row.kind != d.JournalKind.COMMITMENT.value:
        raise NotFound(f"预留 {commitment_id} 不存在", reason="COMMITMENT_NOT_FOUND")
    return row.fund_id


async def release(
    session: AsyncSession,
    commitment_id: int,
    amount: Money,
    *,
    actor: str,
    memo: str = "",
    request_id: str = "",
) -> Posted:
    """Give back (part of) an earmark to the fund's available money."""
    d.require_positive(amount)
    fund = await locked_fund(session, await commitment_fund(session, commitment_id))
    return await post(
        session,
        fund,
        d.JournalKind.RELEASE,
        amount,
        lambda jid: d.release(fund.id, commitment_id, amount),
        actor=actor,
        memo=memo,
        request_id=request_id,
        counterparty=bus.entry_name(fund.id, commitment_id),
    )


async def reverse(
    session: AsyncSession,
    fund_id: int,
    journal_id: int,
    *,
    actor: str,
    reason: str,
    request_id: str = "",
    caller: Caller | None = None,
) -> Posted:
    """Post the mirror image of a journal; a journal is reversed at most once."""
    if not reason.strip():
        raise InvalidArgument.field("reason", "请填写冲正原因", reason="MISSING_REASON")
    fund = await locked_fund(session, fund_id, caller)
    original = await session.get(JournalRow, journal_id)
    if original is None or original.fund_id != fund_id:
        raise NotFound(f"账目 funds/{fund_id}/ledgerEntries/{journal_id} 不存在", reason="LEDGER_ENTRY_NOT_FOUND")
    already = (await session.execute(select(JournalRow.id).where(JournalRow.reverses_id == journal_id))).scalar()
    if already is not None:
        raise FailedPrecondition(
            f"该笔账目已于账目 {bus.entry_name(fund_id, already)} 冲正，不能重复冲正",
            reason="ALREADY_REVERSED",
            metadata={"reversal": bus.entry_name(fund_id, already)},
        )
    # An earmark already drawn on, or a payment partly returned, cannot be
    # reversed: the per-commitment / per-payment balance check in post() refuses it.
    lines = await t.journal_lines(session, journal_id)
    kind = d.JournalKind(original.kind)
    # Money that went out through a payment batch is settled by the bank's
    # result (paid, or failed → returned), never by hand: reversing either
    # side would leave the bank's record and the ledger disagreeing.
    if kind is d.JournalKind.PAYMENT_RETURN and await payments.is_return_journal(session, journal_id):
        raise FailedPrecondition(
            "这笔退款是银行发放失败的退回，已按银行结果入账，不能冲正；如需重新发放，请在下一批次中支付",
            reason="BANK_RETURN_NOT_REVERSIBLE",
        )
    # A batch's journal (or, before migration 0007, a batch payment's own journal).
    if kind is d.JournalKind.PAYMENT and await payments.is_payment_journal_of_a_batch(session, journal_id):
        raise FailedPrecondition(
            "这笔支付属于一卡通发放批次，须以银行结果（成功或失败）结清，不能直接冲正；失败的请导入银行结果",
            reason="BATCH_PAYMENT_NOT_REVERSIBLE",
        )
    posted = await post(
        session,
        fund,
        d.JournalKind.REVERSAL,
        Money(original.amount),
        lambda _jid: d.reversal(journal_id, kind, fund_id, lines),
        actor=actor,
        memo=reason,
        request_id=request_id,
        reverses_id=journal_id,
        counterparty=bus.entry_name(fund_id, journal_id),
    )
    bus.emit(session, bus.entry_reversed(fund, posted.journal, original))
    return posted


async def entry_messages(
    session: AsyncSession, fund_id: int, journals: Sequence[JournalRow]
) -> list[funds_pb2.LedgerEntry]:
    """Ledger entries with running balances, for journals in id order."""
    if not journals:
        return []
    held, avail = await t.held_available_before(session, fund_id, journals[0].id)
    out = []
    prev_id = journals[0].id
    for j in journals:
        if j.id != prev_id:
            # A date filter may skip journals in between; account for them.
            h, a = await t.held_available_before(session, fund_id, j.id)
            held, avail = h, a
        lines = await t.journal_lines(session, j.id)
        held += sum(ln.signed_debit for ln in lines if ln.account.kind in d.HELD)
        avail += sum(ln.signed_debit for ln in lines if ln.account.kind is d.AccountKind.AVAILABLE)
        out.append(entry_message(j, lines, held_after=held, available_after=avail))
        prev_id = j.id + 1
    return out


# ---------------------------------------------------------------- use cases


class LedgerService:
    """The ledger's use cases: sources, funds, allocations, donations, reversals, balances, entries.

    Mutating ones take ``idem`` (the AIP-155 identity of the RPC, or None for a
    call without a request id) and run in one transaction through
    :func:`jsxcore.usecase.mutate`; every one takes the ``caller`` (None: a
    trusted in-process caller, no region scope).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, notify: Callable[[], None] | None = None) -> None:
        self.sessions = sessions
        #: called after every commit (wakes the outbox relay)
        self.notify = notify

    # -- sources

    async def create_fund_source(
        self, new: d.NewSource, *, caller: Caller | None, idem: Idem | None
    ) -> funds_pb2.FundSource:
        if caller is not None:
            caller.require_region(new.region)

        async def work(s: AsyncSession) -> funds_pb2.FundSource:
            row = SourceRow(
                name=new.name, kind=new.kind.value, region=new.region.code, reference="", created_at=utcnow()
            )
            s.add(row)
            await s.flush()
            return source_message(row)

        return await mutate(self.sessions, idem, funds_pb2.FundSource, work, caller=caller, notify=self.notify)

    async def list_fund_sources(
        self, *, region: RegionCode | None, page_size: int, page_token: str, caller: Caller | None
    ) -> funds_pb2.ListFundSourcesResponse:
        scope = list_scope(region, caller)
        page = paging.page(
            page_size, page_token, query=f"{SERVICE_NAME}/ListFundSources", filters=(scope.code if scope else "",)
        )
        stmt = select(SourceRow)
        if scope is not None:
            stmt = stmt.where(SourceRow.region.startswith(scope.prefix))
        async with self.sessions() as s:
            rows, token = page.cut(
                (await s.execute(page.apply(stmt, SourceRow.id))).scalars().all(), key=lambda r: r.id
            )
        return funds_pb2.ListFundSourcesResponse(fund_sources=[source_message(r) for r in rows], next_page_token=token)

    # -- funds

    async def create_fund(self, new: d.NewFund, *, caller: Caller | None, idem: Idem | None) -> funds_pb2.Fund:
        if caller is not None:
            caller.require_region(new.region)

        async def work(s: AsyncSession) -> funds_pb2.Fund:
            row = FundRow(
                name=new.name,
                kind=new.kind.value,
                region=new.region.code,
                owner=new.owner,
                allow_negative=new.allow_negative,
                description=new.description,
                version=0,
                created_at=utcnow(),
                created_by=actor_of(caller),
            )
            s.add(row)
            await s.flush()
            bus.emit(s, bus.fund_opened(row))
            return fund_message(row, d.balance_from_rows(row.id, []), None)

        return await mutate(self.sessions, idem, funds_pb2.Fund, work, caller=caller, notify=self.notify)

    async def fund_for_read(self, s: AsyncSession, fund_id: int, caller: Caller | None) -> FundRow:
        """The fund (in the caller's session), NotFound or out of the caller's region otherwise."""
        fund = await s.get(FundRow, fund_id)
        if fund is None:
            name = bus.fund_name(fund_id)
            raise NotFound(f"基金 {name} 不存在，请核对基金编号", reason="FUND_NOT_FOUND", metadata={"fund": name})
        if caller is not None:
            caller.require_region(fund.region)
        return fund

    async def get_fund(self, fund_id: int, *, caller: Caller | None) -> funds_pb2.Fund:
        async with self.sessions() as s:
            fund = await self.fund_for_read(s, fund_id, caller)
            return fund_message(fund, await t.fund_balance(s, fund.id), await t.last_posting(s, fund.id))

    async def list_funds(
        self,
        *,
        region: RegionCode | None,
        kind: d.FundKind | None,
        page_size: int,
        page_token: str,
        caller: Caller | None,
    ) -> funds_pb2.ListFundsResponse:
        scope = list_scope(region, caller)
        page = paging.page(
            page_size,
            page_token,
            query=f"{SERVICE_NAME}/ListFunds",
            filters=(scope.code if scope else "", kind.value if kind else ""),
        )
        stmt = select(FundRow)
        if scope is not None:
            stmt = stmt.where(FundRow.region.startswith(scope.prefix))
        if kind is not None:
            stmt = stmt.where(FundRow.kind == kind.value)
        async with self.sessions() as s:
            rows, token = page.cut((await s.execute(page.apply(stmt, FundRow.id))).scalars().all(), key=lambda r: r.id)
            funds = [fund_message(r, await t.fund_balance(s, r.id), await t.last_posting(s, r.id)) for r in rows]
        return funds_pb2.ListFundsResponse(funds=funds, next_page_token=token)

    # -- money in

    async def post_allocation(
        self, allocation: d.Allocation, *, caller: Caller | None, idem: Idem | None
    ) -> funds_pb2.LedgerEntry:
        a = allocation

        async def work(s: AsyncSession) -> funds_pb2.LedgerEntry:
            fund = await locked_fund(s, a.fund_id, caller)
            src = await s.get(SourceRow, a.source_id)
            if src is None:
                raise NotFound(f"资金来源 {bus.source_name(a.source_id)} 不存在", reason="SOURCE_NOT_FOUND")
            if src.kind == d.SourceKind.DONATION.value:
                raise FailedPrecondition("捐赠款请用“登记捐赠”录入，以便出具收据", reason="USE_RECORD_DONATION")
            posted = await post(
                s,
                fund,
                d.JournalKind.ALLOCATION,
                a.amount,
                lambda _jid: d.inflow(d.JournalKind.ALLOCATION, fund.id, src.id, a.amount),
                actor=actor_of(caller),
                request_id=request_id_of(idem),
                memo=a.memo,
                reference=a.reference,
                counterparty=bus.source_name(src.id),
            )
            bus.emit(s, bus.allocation_posted(fund, posted.journal, src.id))
            return (await entry_messages(s, fund.id, [posted.journal]))[0]

        return await mutate(self.sessions, idem, funds_pb2.LedgerEntry, work, caller=caller, notify=self.notify)

    async def record_donation(
        self, donation: d.NewDonation, *, caller: Caller | None, idem: Idem | None
    ) -> funds_pb2.Donation:
        n = donation

        async def work(s: AsyncSession) -> funds_pb2.Donation:
            fund = await locked_fund(s, n.fund_id, caller)
            source = await donation_source(s, fund)
            posted = await post(
                s,
                fund,
                d.JournalKind.DONATION,
                n.amount,
                lambda _jid: d.inflow(d.JournalKind.DONATION, fund.id, source.id, n.amount),
                actor=actor_of(caller),
                request_id=request_id_of(idem),
                memo=f"{n.donor_kind.value} 捐赠",
                counterparty="",
            )
            seq = await t.next_receipt_seq(s, fund.region, n.received_on.year)
            row = DonationRow(
                journal_id=posted.journal.id,
                fund_id=fund.id,
                source_id=source.id,
                receipt_no=d.receipt_number(RegionCode(fund.region), n.received_on.year, seq),
                donor_kind=n.donor_kind.value,
                donor_name=n.donor_name,
                anonymous=n.anonymous,
                amount=n.amount.fen,
                received_on=n.received_on,
                created_at=utcnow(),
            )
            s.add(row)
            await s.flush()
            bus.emit(s, bus.donation_received(fund, row))
            return donation_message(row)

        return await mutate(self.sessions, idem, funds_pb2.Donation, work, caller=caller, notify=self.notify)

    # -- corrections

    async def reverse_ledger_entry(
        self, fund_id: int, journal_id: int, reason: str, *, caller: Caller | None, idem: Idem | None
    ) -> funds_pb2.LedgerEntry:
        async def work(s: AsyncSession) -> funds_pb2.LedgerEntry:
            posted = await reverse(
                s,
                fund_id,
                journal_id,
                actor=actor_of(caller),
                reason=reason,
                request_id=request_id_of(idem),
                caller=caller,
            )
            return (await entry_messages(s, fund_id, [posted.journal]))[0]

        return await mutate(self.sessions, idem, funds_pb2.LedgerEntry, work, caller=caller, notify=self.notify)

    # -- reads

    async def get_fund_balance(
        self, fund_id: int, as_of: date | None, *, caller: Caller | None
    ) -> funds_pb2.FundBalance:
        """The fund's position now, or at the end of ``as_of`` (a day in China)."""
        async with self.sessions() as s:
            fund = await self.fund_for_read(s, fund_id, caller)
            bal = await t.fund_balance(s, fund.id, before=d.day_end_utc(as_of) if as_of is not None else None)
            names = await t.source_names(s, bal.income_by_source)
        return balance_message(fund.id, bal, names, as_of)

    async def list_ledger_entries(
        self,
        fund_id: int,
        *,
        start: date | None,
        end: date | None,
        page_size: int,
        page_token: str,
        caller: Caller | None,
    ) -> funds_pb2.ListLedgerEntriesResponse:
        """The fund's journals, oldest first, with running balances; ``start``/``end`` are days in China."""
        page = paging.page(
            page_size,
            page_token,
            query=f"{SERVICE_NAME}/ListLedgerEntries",
            filters=(fund_id, str(start or ""), str(end or "")),
        )
        stmt = select(JournalRow).where(JournalRow.fund_id == fund_id)
        if start is not None:
            stmt = stmt.where(JournalRow.created_at >= d.day_start_utc(start))
        if end is not None:
            stmt = stmt.where(JournalRow.created_at < d.day_end_utc(end))
        async with self.sessions() as s:
            fund = await self.fund_for_read(s, fund_id, caller)
            rows, token = page.cut(
                (await s.execute(page.apply(stmt, JournalRow.id))).scalars().all(), key=lambda r: r.id
            )
            entries = await entry_messages(s, fund.id, rows)
        return funds_pb2.ListLedgerEntriesResponse(ledger_entries=entries, next_page_token=token)

    async def balance(self, fund_id: int) -> d.FundBalance:
        """The fund's balance derived from its entries (for tests, CLI and other use cases)."""
        async with self.sessions() as s:
            return await t.fund_balance(s, fund_id)

    # -- the in-transaction operations other contexts are given (disbursement: a batch, a payment)

    locked_fund = staticmethod(locked_fund)
    post = staticmethod(post)
    commitment_fund = staticmethod(commitment_fund)

    @staticmethod
    async def available(session: AsyncSession, fund_id: int) -> int:
        """The fund's available money (分), read in the caller's transaction (after :func:`locked_fund`)."""
        return sum((await t.balances_for(session, [d.AccountKey(fund_id, d.AccountKind.AVAILABLE)])).values())

    @staticmethod
    async def expense(session: AsyncSession, journal_ids: set[int], side: d.Side) -> int:
        """What ``journal_ids`` booked on EXPENSE accounts on ``side`` (分): a batch's reconciliation."""
        return await t.expense_total(session, journal_ids, side)


async def donation_source(s: AsyncSession, fund: FundRow) -> SourceRow:
    """The fund region's donation source (社会捐赠), registered on first use (in the caller's transaction)."""
    name = "社会捐赠"
    row = (
        await s.execute(
            select(SourceRow)
            .where(SourceRow.kind == d.SourceKind.DONATION.value, SourceRow.region == fund.region)
            .order_by(SourceRow.id)
            .limit(1)
        )
    ).scalar()
    if row is None:
        row = SourceRow(
            name=name, kind=d.SourceKind.DONATION.value, region=fund.region, reference="", created_at=utcnow()
        )
        s.add(row)
        await s.flush()
    return row
