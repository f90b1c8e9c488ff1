"""The ledger's proto boundary: requests → the use cases' plain arguments (with
jsxcore.wire; a bad request reports every field at once, as before), and rows
and domain values → jsx.funds.v1 messages (presenters)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2
from jsx_funds.adapters import bus
from jsx_funds.ledger import domain as d
from jsx_funds.ledger.tables import DonationRow, FundRow, JournalRow, SourceRow
from jsxcore import wire
from jsxcore.errors import ErrorCollector, InvalidArgument
from jsxcore.values import Money, RegionCode

# ---------------------------------------------------------------- requests


def _collect(errs: ErrorCollector, err: InvalidArgument) -> None:
    errs.violations.extend(err.violations)


def _region(code: str, field: str, errs: ErrorCollector) -> RegionCode | None:
    if not code:
        errs.add(field, "请填写行政区划代码，例如 431281")
        return None
    try:
        return wire.region_from(code, field)
    except InvalidArgument as e:
        _collect(errs, e)
        return None


def _id(name: str, collection: str, field: str, errs: ErrorCollector) -> int:
    try:
        return wire.int_id_from(name, collection, field)
    except InvalidArgument as e:
        _collect(errs, e)
        return 0


def region_filter(msg: common_pb2.RegionCode) -> RegionCode | None:
    """A list's region filter (None: not given, the caller's region applies)."""
    return wire.region_from(msg, "region.code", required=False)


def read_new_source(src: funds_pb2.FundSource) -> d.NewSource:
    errs = ErrorCollector()
    name = src.display_name.strip()
    if not name:
        errs.add("fund_source.display_name", "请填写资金来源名称，例如“2022年省级计生特殊家庭扶助资金”")
    kind = None
    try:
        kind = wire.enum_from(
            funds_pb2.FundSourceKind, src.kind, "FUND_SOURCE_KIND_", d.SourceKind, "fund_source.kind", "资金来源类别"
        )
    except InvalidArgument as e:
        _collect(errs, e)
    region = _region(src.region.code, "fund_source.region.code", errs)
    errs.raise_if_any()
    assert kind is not None and region is not None
    return d.NewSource(name=name[:200], kind=kind, region=region)


def read_new_fund(f: funds_pb2.Fund) -> d.NewFund:
    errs = ErrorCollector()
    name = f.display_name.strip()
    if not name:
        errs.add("fund.display_name", "请填写基金名称，例如“洪江市特别扶助资金”")
    kind = None
    try:
        kind = wire.enum_from(funds_pb2.FundKind, f.kind, "FUND_KIND_", d.FundKind, "fund.kind", "基金类别")
    except InvalidArgument as e:
        _collect(errs, e)
    region = _region(f.owner_region.code, "fund.owner_region.code", errs)
    errs.raise_if_any()
    assert kind is not None and region is not None
    return d.NewFund(
        name=name[:200],
        kind=kind,
        region=region,
        owner=f.owner.strip()[:200],
        allow_negative=f.allow_negative,
        description=f.description.strip()[:2000],
    )


def read_fund_kind_filter(value: int) -> d.FundKind | None:
    if not value:
        return None
    return wire.enum_from(funds_pb2.FundKind, value, "FUND_KIND_", d.FundKind, "kind", "基金类别")


def read_allocation(req: funds_pb2.PostAllocationRequest) -> d.Allocation:
    errs = ErrorCollector()
    fund_id = _id(req.fund, "funds", "fund", errs)
    source_id = _id(req.source, "fundSources", "source", errs)
    if req.amount.fen <= 0:
        errs.add("amount", "拨款金额必须大于 0 元")
    errs.raise_if_any()
    return d.Allocation(
        fund_id=fund_id,
        source_id=source_id,
        amount=Money(req.amount.fen),
        reference=req.reference.strip(),
        memo=req.memo.strip(),
    )


def read_new_donation(don: funds_pb2.Donation, today: date | None = None) -> d.NewDonation:
    """A donation cannot be received after ``today`` (default: the day in China now)."""
    today = today or datetime.now(d.CST).date()
    errs = ErrorCollector()
    fund_id = _id(don.fund, "funds", "donation.fund", errs)
    donor = don.donor_display_name.strip()
    if not donor and not don.anonymous:
        errs.add("donation.donor_display_name", "请填写捐赠人姓名或单位名称（不公开姓名的请勾选“匿名”）")
    donor_kind = None
    try:
        donor_kind = wire.enum_from(
            funds_pb2.DonorKind, don.donor_kind, "DONOR_KIND_", d.DonorKind, "donation.donor_kind", "捐赠人类别"
        )
    except InvalidArgument as e:
        _collect(errs, e)
    if don.amount.fen <= 0:
        errs.add("donation.amount", "捐赠金额必须大于 0 元")
    received = None
    try:
        received = wire.date_from(don.received_date, "donation.received_date")
    except InvalidArgument as e:
        _collect(errs, e)
    if received is None and not errs:
        errs.add("donation.received_date", "请填写收款日期")
    if received is not None and received > today:
        errs.add("donation.received_date", "收款日期不能晚于今天")
    errs.raise_if_any()
    assert donor_kind is not None and received is not None
    return d.NewDonation(
        fund_id=fund_id,
        donor_name=donor[:200],
        donor_kind=donor_kind,
        amount=Money(don.amount.fen),
        received_on=received,
        anonymous=don.anonymous,
    )


def read_entry_name(name: str, field: str = "name") -> tuple[int, int]:
    """``"funds/3/ledgerEntries/17"`` → (3, 17)."""
    parts = name.strip().split("/")
    if (
        len(parts) != 4
        or parts[0] != "funds"
        or parts[2] != "ledgerEntries"
        or not parts[1].isdigit()
        or not parts[3].isdigit()
    ):
        raise InvalidArgument.field(
            field,
            f"账目资源名“{name}”格式不对，应写成 funds/基金编号/ledgerEntries/账目编号",
            reason="INVALID_RESOURCE_NAME",
        )
    return int(parts[1]), int(parts[3])


def read_reason(reason: str) -> str:
    if not reason.strip():
        raise InvalidArgument.field("reason", "请填写冲正原因", reason="MISSING_REASON")
    return reason.strip()


def read_date_range(start_msg: common_pb2.Date, end_msg: common_pb2.Date) -> tuple[date | None, date | None]:
    start, end = wire.date_from(start_msg, "from_date"), wire.date_from(end_msg, "to_date")
    if start and end and start > end:
        raise InvalidArgument.field("to_date", "结束日期不能早于开始日期", reason="INVALID_DATE_RANGE")
    return start, end


# ---------------------------------------------------------------- presenters


def fund_message(fund: FundRow, balance: d.FundBalance, updated: datetime | None) -> funds_pb2.Fund:
    return funds_pb2.Fund(
        name=bus.fund_name(fund.id),
        display_name=fund.name,
        owner_region=common_pb2.RegionCode(code=fund.region),
        kind=funds_pb2.FundKind.Value("FUND_KIND_" + fund.kind),
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
        kind=funds_pb2.FundSourceKind.Value("FUND_SOURCE_KIND_" + src.kind),
        region=common_pb2.RegionCode(code=src.region),
        create_time=wire.ts_to(src.created_at),
    )


def line_message(ln: d.Line) -> funds_pb2.LedgerLine:
    a = ln.account
    return funds_pb2.LedgerLine(
        account=funds_pb2.LedgerAccount.Value("LEDGER_ACCOUNT_" + a.kind.value),
        debit=ln.side is d.Side.DEBIT,
        amount=wire.money_to(ln.amount.fen),
        source=bus.source_name(a.source_id) if a.source_id is not None else "",
        commitment=bus.entry_name(a.fund_id, a.commitment_id) if a.commitment_id is not None else "",
        payment=bus.payment_name(a.fund_id, a.payment_id) if a.payment_id is not None else "",
    )


def entry_message(
    journal: JournalRow, lines: Sequence[d.Line], *, held_after: int, available_after: int
) -> funds_pb2.LedgerEntry:
    held_delta = sum(ln.signed_debit for ln in lines if ln.account.kind in d.HELD)
    return funds_pb2.LedgerEntry(
        name=bus.entry_name(journal.fund_id, journal.id),
        transaction_id=str(journal.id),
        fund=bus.fund_name(journal.fund_id),
        kind=funds_pb2.EntryKind.Value("ENTRY_KIND_" + journal.kind),
        amount=wire.money_to(held_delta),
        balance_after=wire.money_to(held_after),
        available_after=wire.money_to(available_after),
        counterparty=journal.counterparty,
        reference=journal.reference,
        memo=journal.memo,
        reverses=bus.entry_name(journal.fund_id, journal.reverses_id) if journal.reverses_id else "",
        audit=common_pb2.AuditStamp(
            actor=journal.actor, time=wire.ts_to(journal.created_at), request_id=journal.request_id
        ),
        lines=[line_message(ln) for ln in lines],
    )


def donation_message(don: DonationRow) -> funds_pb2.Donation:
    rd = don.received_on
    return funds_pb2.Donation(
        name=bus.donation_name(don.fund_id, don.journal_id),
        fund=bus.fund_name(don.fund_id),
        donor_display_name="匿名" if don.anonymous else don.donor_name,
        donor_kind=funds_pb2.DonorKind.Value("DONOR_KIND_" + don.donor_kind),
        amount=wire.money_to(don.amount),
        received_date=wire.date_to(rd),
        anonymous=don.anonymous,
        receipt_number=don.receipt_no,
        ledger_entry=bus.entry_name(don.fund_id, don.journal_id),
        create_time=wire.ts_to(don.created_at),
    )


def balance_message(
    fund_id: int, bal: d.FundBalance, source_names: dict[int, str], as_of: date | None
) -> funds_pb2.FundBalance:
    """A fund's position; sources ordered by name (then id)."""
    out = funds_pb2.FundBalance(
        fund=bus.fund_name(fund_id),
        balance=wire.money_to(bal.held),
        total_in=wire.money_to(bal.income),
        total_out=wire.money_to(bal.expended),
        available=wire.money_to(bal.available),
        committed=wire.money_to(bal.committed),
        by_source=[
            funds_pb2.SourceTotal(source=bus.source_name(sid), amount=wire.money_to(m))
            for sid, m in sorted(bal.income_by_source.items(), key=lambda kv: (source_names.get(kv[0], ""), kv[0]))
        ],
    )
    if as_of is not None:
        out.as_of.CopyFrom(wire.date_to(as_of))
    return out
