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
from datetime import datetime

from google.protobuf.message import Message
from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.funds.v1 import funds_pb2
from jsxcore.auth import Caller
from jsxcore.db import transaction
from jsxcore.errors import AlreadyExists, ErrorCollector, FailedPrecondition, InvalidArgument, NotFound
from jsxcore.idempotency import run_idempotent
from jsxcore.values import Money, RegionCode

from jsx_funds.adapters import bus, db
from jsx_funds.disbursement import tables as payments
from jsx_funds.callers import actor_of, list_scope
from jsx_funds.ledger import domain as d
from jsx_funds.ledger import tables as t
from jsx_funds.ledger.tables import AccountRow, DonationRow, EntryRow, FundRow, JournalRow, SourceRow
from jsx_funds.ledger.wire import HELD, donation_message, entry_message, fund_message, source_message
from jsx_funds.legacy_wire import (
    SERVICE,
    decode_token,
    encode_token,
    page_size,
    parse_entry_name,
    parse_enum,
    parse_id,
    to_date,
)
from jsx_funds.legacy_wire import money
from jsx_funds.ledger.domain import CST, day_end_utc, day_start_utc


# ---------------------------------------------------------------- ledger operations


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
        raise NotFound(f"基金 funds/{fund_id} 不存在，请核对基金编号", reason="FUND_NOT_FOUND",
                       metadata={"fund": f"funds/{fund_id}"})
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
        id=journal_id, fund_id=fund.id, kind=kind.value, amount=amount.fen, reverses_id=reverses_id, request_id=request_id,
        memo=memo[:500], reference=reference[:200], counterparty=counterparty, actor=actor,
        created_at=db.utcnow(),
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
    session: AsyncSession, fund_id: int, amount: Money, *, actor: str, memo: str = "", request_id: str = "",
    caller: Caller | None = None,
) -> Posted:
    """Earmark ``amount`` of the fund's available money; the journal id is the commitment id."""
    d.require_positive(amount)
    fund = await locked_fund(session, fund_id, caller)
    return await post(session, fund, d.JournalKind.COMMITMENT, amount,
                      lambda jid: d.commitment(fund.id, jid, amount),
                      actor=actor, memo=memo, request_id=request_id)


async def commitment_fund(session: AsyncSession, commitment_id: int) -> int:
    row = await session.get(JournalRow, commitment_id)
    if row is None or row.kind != d.JournalKind.COMMITMENT.value:
        raise NotFound(f"预留 {commitment_id} 不存在", reason="COMMITMENT_NOT_FOUND")
    return row.fund_id


async def release(
    session: AsyncSession, commitment_id: int, amount: Money, *, actor: str, memo: str = "", request_id: str = "",
) -> Posted:
    """Give back (part of) an earmark to the fund's available money."""
    d.require_positive(amount)
    fund = await locked_fund(session, await commitment_fund(session, commitment_id))
    return await post(session, fund, d.JournalKind.RELEASE, amount,
                      lambda jid: d.release(fund.id, commitment_id, amount),
                      actor=actor, memo=memo, request_id=request_id,
                      counterparty=bus.entry_name(fund.id, commitment_id))


async def reverse(
    session: AsyncSession, fund_id: int, journal_id: int, *, actor: str, reason: str, request_id: str = "",
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
            reason="ALREADY_REVERSED", metadata={"reversal": bus.entry_name(fund_id, already)},
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
    posted = await post(session, fund, d.JournalKind.REVERSAL, Money(original.amount),
                        lambda _jid: d.reversal(journal_id, kind, fund_id, lines),
                        actor=actor, memo=reason, request_id=request_id, reverses_id=journal_id,
                        counterparty=bus.entry_name(fund_id, journal_id))
    bus.emit(session, bus.entry_reversed(fund, posted.journal, original))
    return posted



async def _held_available_before(session: AsyncSession, fund_id: int, journal_id: int) -> tuple[int, int]:
    """Σ(held), Σ(available) over the fund's journals with id < ``journal_id``."""
    net = func.coalesce(func.sum(case((EntryRow.side == "D", EntryRow.amount), else_=-EntryRow.amount)), 0)
    rows = (await session.execute(
        select(AccountRow.kind, net)
        .select_from(EntryRow).join(AccountRow, AccountRow.id == EntryRow.account_id)
        .where(AccountRow.fund_id == fund_id, EntryRow.journal_id < journal_id,
               AccountRow.kind.in_([k.value for k in HELD]))
        .group_by(AccountRow.kind)
    )).all()
    by = {k: int(v) for k, v in rows}
    return sum(by.values()), by.get(d.AccountKind.AVAILABLE.value, 0)


async def entry_messages(session: AsyncSession, fund_id: int, journals: Sequence[JournalRow]) -> list[funds_pb2.LedgerEntry]:
    """Ledger entries with running balances, for journals in id order."""
    if not journals:
        return []
    held, avail = await _held_available_before(session, fund_id, journals[0].id)
    out = []
    prev_id = journals[0].id
    for j in journals:
        if j.id != prev_id:
            # A date filter may skip journals in between; account for them.
            h, a = await _held_available_before(session, fund_id, j.id)
            held, avail = h, a
        lines = await t.journal_lines(session, j.id)
        held += sum(ln.signed_debit for ln in lines if ln.account.kind in HELD)
        avail += sum(ln.signed_debit for ln in lines if ln.account.kind is d.AccountKind.AVAILABLE)
        out.append(entry_message(j, lines, held_after=held, available_after=avail))
        prev_id = j.id + 1
    return out



# ---------------------------------------------------------------- use cases


class LedgerService:
    """The ledger use cases behind the FundsService RPCs on sources, funds and the ledger."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, on_commit: Callable[[], None] | None = None):
        self.sessions = sessions
        self._on_commit = on_commit or (lambda: None)

    async def _mutate(
        self, method: str, request: Message, response_type: type, handler: Callable[[AsyncSession], Awaitable[Message]],
        caller: Caller | None,
    ):  # type: ignore[no-untyped-def]
        async with transaction(self.sessions) as s:
            result = await run_idempotent(
                s, method=SERVICE + method, request=request, response_type=response_type,
                handler=lambda: handler(s), caller=None if caller is None else caller.subject,
            )
        self._on_commit()  # wake the outbox relay
        return result

    # -- sources

    async def create_fund_source(self, req: funds_pb2.CreateFundSourceRequest, caller: Caller | None) -> funds_pb2.FundSource:
        src = req.fund_source
        errs = ErrorCollector()
        name = src.display_name.strip()
        if not name:
            errs.add("fund_source.display_name", "请填写资金来源名称，例如“2022年省级计生特殊家庭扶助资金”")
        try:
            kind = parse_enum(funds_pb2.FundSourceKind, src.kind, "FUND_SOURCE_KIND_", d.SourceKind,
                              "fund_source.kind", "资金来源类别")
        except InvalidArgument as e:
            errs.violations.extend(e.violations)
        region = _region_or_collect(src.region.code, "fund_source.region.code", errs)
        errs.raise_if_any()
        if caller is not None and region is not None:
            caller.require_region(region)

        async def handler(s: AsyncSession) -> funds_pb2.FundSource:
            row = SourceRow(name=name[:200], kind=kind.value, region=region.code, reference="", created_at=db.utcnow())
            s.add(row)
            await s.flush()
            return source_message(row)

        return await self._mutate("CreateFundSource", req, funds_pb2.FundSource, handler, caller)

    async def list_fund_sources(self, req: funds_pb2.ListFundSourcesRequest, caller: Caller | None) -> funds_pb2.ListFundSourcesResponse:
        limit = page_size(req.page_size)
        region = _scope(req.region.code, caller, "region.code")
        after = decode_token(req.page_token, f"sources:{region}")
        async with self.sessions() as s:
            stmt = select(SourceRow).where(SourceRow.id > after).order_by(SourceRow.id).limit(limit + 1)
            if region is not None:
                stmt = stmt.where(SourceRow.region.startswith(region.prefix))
            rows = (await s.execute(stmt)).scalars().all()
        more = len(rows) > limit
        rows = rows[:limit]
        return funds_pb2.ListFundSourcesResponse(
            fund_sources=[source_message(r) for r in rows],
            next_page_token=encode_token(rows[-1].id, f"sources:{region}") if more else "",
        )

    # -- funds

    async def create_fund(self, req: funds_pb2.CreateFundRequest, caller: Caller | None) -> funds_pb2.Fund:
        f = req.fund
        errs = ErrorCollector()
        name = f.display_name.strip()
        if not name:
            errs.add("fund.display_name", "请填写基金名称，例如“洪江市特别扶助资金”")
        try:
            kind = parse_enum(funds_pb2.FundKind, f.kind, "FUND_KIND_", d.FundKind, "fund.kind", "基金类别")
        except InvalidArgument as e:
            errs.violations.extend(e.violations)
        region = _region_or_collect(f.owner_region.code, "fund.owner_region.code", errs)
        errs.raise_if_any()
        if caller is not None and region is not None:
            caller.require_region(region)

        async def handler(s: AsyncSession) -> funds_pb2.Fund:
            row = FundRow(name=name[:200], kind=kind.value, region=region.code, owner=f.owner.strip()[:200],
                          allow_negative=f.allow_negative, description=f.description.strip()[:2000], version=0,
                          created_at=db.utcnow(), created_by=actor_of(caller))
            s.add(row)
            await s.flush()
            bus.emit(s, bus.fund_opened(row))
            return fund_message(row, d.balance_from_rows(row.id, []), None)

        return await self._mutate("CreateFund", req, funds_pb2.Fund, handler, caller)

    async def _fund_for_read(self, s: AsyncSession, name: str, field: str, caller: Caller | None) -> FundRow:
        fund_id = parse_id(name, "funds", field)
        fund = await s.get(FundRow, fund_id)
        if fund is None:
            raise NotFound(f"基金 {name} 不存在，请核对基金编号", reason="FUND_NOT_FOUND", metadata={"fund": name})
        if caller is not None:
            caller.require_region(fund.region)
        return fund

    async def get_fund(self, req: funds_pb2.GetFundRequest, caller: Caller | None) -> funds_pb2.Fund:
        async with self.sessions() as s:
            fund = await self._fund_for_read(s, req.name, "name", caller)
            return fund_message(fund, await t.fund_balance(s, fund.id), await _last_posting(s, fund.id))

    async def list_funds(self, req: funds_pb2.ListFundsRequest, caller: Caller | None) -> funds_pb2.ListFundsResponse:
        limit = page_size(req.page_size)
        region = _scope(req.region.code, caller, "region.code")
        kind = None
        if req.kind:
            kind = parse_enum(funds_pb2.FundKind, req.kind, "FUND_KIND_", d.FundKind, "kind", "基金类别")
        key = f"funds:{region}:{kind}"
        after = decode_token(req.page_token, key)
        async with self.sessions() as s:
            stmt = select(FundRow).where(FundRow.id > after).order_by(FundRow.id).limit(limit + 1)
            if region is not None:
                stmt = stmt.where(FundRow.region.startswith(region.prefix))
            if kind is not None:
                stmt = stmt.where(FundRow.kind == kind.value)
            rows = (await s.execute(stmt)).scalars().all()
            more = len(rows) > limit
            rows = rows[:limit]
            funds = [fund_message(r, await t.fund_balance(s, r.id), await _last_posting(s, r.id)) for r in rows]
        return funds_pb2.ListFundsResponse(funds=funds, next_page_token=encode_token(rows[-1].id, key) if more else "")

    # -- money in

    async def post_allocation(self, req: funds_pb2.PostAllocationRequest, caller: Caller | None) -> funds_pb2.LedgerEntry:
        errs = ErrorCollector()
        fund_id = _id_or_collect(req.fund, "funds", "fund", errs)
        source_id = _id_or_collect(req.source, "fundSources", "source", errs)
        if req.amount.fen <= 0:
            errs.add("amount", "拨款金额必须大于 0 元")
        errs.raise_if_any()
        amount = Money(req.amount.fen)

        async def handler(s: AsyncSession) -> funds_pb2.LedgerEntry:
            fund = await locked_fund(s, fund_id, caller)
            src = await s.get(SourceRow, source_id)
            if src is None:
                raise NotFound(f"资金来源 {req.source} 不存在", reason="SOURCE_NOT_FOUND")
            if src.kind == d.SourceKind.DONATION.value:
                raise FailedPrecondition("捐赠款请用“登记捐赠”录入，以便出具收据", reason="USE_RECORD_DONATION")
            posted = await post(s, fund, d.JournalKind.ALLOCATION, amount,
                                lambda _jid: d.inflow(d.JournalKind.ALLOCATION, fund.id, src.id, amount),
                                actor=actor_of(caller), request_id=req.request_id, memo=req.memo.strip(),
                                reference=req.reference.strip(), counterparty=bus.source_name(src.id))
            bus.emit(s, bus.allocation_posted(fund, posted.journal, src.id))
            return (await entry_messages(s, fund.id, [posted.journal]))[0]

        return await self._mutate("PostAllocation", req, funds_pb2.LedgerEntry, handler, caller)

    async def record_donation(self, req: funds_pb2.RecordDonationRequest, caller: Caller | None) -> funds_pb2.Donation:
        don = req.donation
        errs = ErrorCollector()
        fund_id = _id_or_collect(don.fund, "funds", "donation.fund", errs)
        donor = don.donor_display_name.strip()
        if not donor and not don.anonymous:
            errs.add("donation.donor_display_name", "请填写捐赠人姓名或单位名称（不公开姓名的请勾选“匿名”）")
        try:
            donor_kind = parse_enum(funds_pb2.DonorKind, don.donor_kind, "DONOR_KIND_", d.DonorKind,
                                    "donation.donor_kind", "捐赠人类别")
        except InvalidArgument as e:
            errs.violations.extend(e.violations)
        if don.amount.fen <= 0:
            errs.add("donation.amount", "捐赠金额必须大于 0 元")
        received = None
        try:
            received = to_date(don.received_date, "donation.received_date")
        except InvalidArgument as e:
            errs.violations.extend(e.violations)
        if received is None and not errs:
            errs.add("donation.received_date", "请填写收款日期")
        if received is not None and received > datetime.now(CST).date():
            errs.add("donation.received_date", "收款日期不能晚于今天")
        errs.raise_if_any()
        amount = Money(don.amount.fen)

        async def handler(s: AsyncSession) -> funds_pb2.Donation:
            fund = await locked_fund(s, fund_id, caller)
            source = await _donation_source(s, fund)
            posted = await post(s, fund, d.JournalKind.DONATION, amount,
                                lambda _jid: d.inflow(d.JournalKind.DONATION, fund.id, source.id, amount),
                                actor=actor_of(caller), request_id=req.request_id,
                                memo=f"{donor_kind.value} 捐赠", counterparty="")
            seq = await t.next_receipt_seq(s, fund.region, received.year)
            row = DonationRow(
                journal_id=posted.journal.id, fund_id=fund.id, source_id=source.id,
                receipt_no=d.receipt_number(RegionCode(fund.region), received.year, seq),
                donor_kind=donor_kind.value, donor_name=donor[:200], anonymous=don.anonymous,
                amount=amount.fen, received_on=received, created_at=db.utcnow(),
            )
            s.add(row)
            await s.flush()
            bus.emit(s, bus.donation_received(fund, row))
            return donation_message(row)

        return await self._mutate("RecordDonation", req, funds_pb2.Donation, handler, caller)

    # -- corrections

    async def reverse_ledger_entry(self, req: funds_pb2.ReverseLedgerEntryRequest, caller: Caller | None) -> funds_pb2.LedgerEntry:
        fund_id, journal_id = parse_entry_name(req.name)
        if not req.reason.strip():
            raise InvalidArgument.field("reason", "请填写冲正原因", reason="MISSING_REASON")

        async def handler(s: AsyncSession) -> funds_pb2.LedgerEntry:
            posted = await reverse(s, fund_id, journal_id, actor=actor_of(caller), reason=req.reason.strip(),
                                   request_id=req.request_id, caller=caller)
            return (await entry_messages(s, fund_id, [posted.journal]))[0]

        return await self._mutate("ReverseLedgerEntry", req, funds_pb2.LedgerEntry, handler, caller)

    # -- reads

    async def get_fund_balance(self, req: funds_pb2.GetFundBalanceRequest, caller: Caller | None) -> funds_pb2.FundBalance:
        as_of = to_date(req.as_of, "as_of")
        async with self.sessions() as s:
            fund = await self._fund_for_read(s, req.fund, "fund", caller)
            net = func.coalesce(func.sum(case((EntryRow.side == "D", EntryRow.amount), else_=-EntryRow.amount)), 0)
            stmt = (
                select(AccountRow.kind, AccountRow.source_id, net)
                .select_from(EntryRow)
                .join(AccountRow, AccountRow.id == EntryRow.account_id)
                .join(JournalRow, JournalRow.id == EntryRow.journal_id)
                .where(AccountRow.fund_id == fund.id)
                .group_by(AccountRow.kind, AccountRow.source_id)
            )
            if as_of is not None:
                stmt = stmt.where(JournalRow.created_at < day_end_utc(as_of))
            bal = d.balance_from_rows(fund.id, [(d.AccountKind(k), sid, int(n)) for k, sid, n in (await s.execute(stmt)).all()])
            names = {}
            if bal.income_by_source:
                names = dict((await s.execute(
                    select(SourceRow.id, SourceRow.name).where(SourceRow.id.in_(bal.income_by_source))
                )).all())
        out = funds_pb2.FundBalance(
            fund=bus.fund_name(fund.id),
            balance=money(bal.held.fen),
            total_in=money(bal.income.fen),
            total_out=money(bal.expended.fen),
            available=money(bal.available.fen),
            committed=money(bal.committed.fen),
            by_source=[
                funds_pb2.SourceTotal(source=bus.source_name(sid), amount=money(m.fen))
                for sid, m in sorted(bal.income_by_source.items(), key=lambda kv: (names.get(kv[0], ""), kv[0]))
            ],
        )
        if as_of is not None:
            out.as_of.CopyFrom(req.as_of)
        return out

    async def list_ledger_entries(self, req: funds_pb2.ListLedgerEntriesRequest, caller: Caller | None) -> funds_pb2.ListLedgerEntriesResponse:
        limit = page_size(req.page_size)
        start, end = to_date(req.from_date, "from_date"), to_date(req.to_date, "to_date")
        if start and end and start > end:
            raise InvalidArgument.field("to_date", "结束日期不能早于开始日期", reason="INVALID_DATE_RANGE")
        key = f"entries:{req.fund}:{start}:{end}"
        after = decode_token(req.page_token, key)
        async with self.sessions() as s:
            fund = await self._fund_for_read(s, req.fund, "fund", caller)
            stmt = (select(JournalRow).where(JournalRow.fund_id == fund.id, JournalRow.id > after)
                    .order_by(JournalRow.id).limit(limit + 1))
            if start is not None:
                stmt = stmt.where(JournalRow.created_at >= day_start_utc(start))
            if end is not None:
                stmt = stmt.where(JournalRow.created_at < day_end_utc(end))
            rows = (await s.execute(stmt)).scalars().all()
            more = len(rows) > limit
            rows = rows[:limit]
            entries = await entry_messages(s, fund.id, rows)
        return funds_pb2.ListLedgerEntriesResponse(
            ledger_entries=entries, next_page_token=encode_token(rows[-1].id, key) if more else ""
        )

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


# ---------------------------------------------------------------- private helpers


def _region_or_collect(code: str, field: str, errs: ErrorCollector) -> RegionCode | None:
    if not code:
        errs.add(field, "请填写行政区划代码，例如 431281")
        return None
    try:
        return RegionCode.parse(code, field=field)
    except InvalidArgument as e:
        errs.violations.extend(e.violations)
        return None


def _id_or_collect(name: str, collection: str, field: str, errs: ErrorCollector) -> int:
    try:
        return parse_id(name, collection, field)
    except InvalidArgument as e:
        errs.violations.extend(e.violations)
        return 0


def _scope(code: str, caller: Caller | None, field: str) -> RegionCode | None:
    return list_scope(RegionCode.parse(code, field=field) if code else None, caller)


async def _last_posting(s: AsyncSession, fund_id: int) -> datetime | None:
    return (await s.execute(select(func.max(JournalRow.created_at)).where(JournalRow.fund_id == fund_id))).scalar()


async def _donation_source(s: AsyncSession, fund: FundRow) -> SourceRow:
    """The fund region's donation source (社会捐赠), registered on first use."""
    name = "社会捐赠"
    row = (await s.execute(
        select(SourceRow).where(SourceRow.kind == d.SourceKind.DONATION.value, SourceRow.region == fund.region)
        .order_by(SourceRow.id).limit(1)
    )).scalar()
    if row is None:
        row = SourceRow(name=name, kind=d.SourceKind.DONATION.value, region=fund.region, reference="",
                        created_at=db.utcnow())
        s.add(row)
        await s.flush()
    return row
