"""The bank payment file of a batch (一卡通发放文件), in a county finance
bureau's layout.

Columns: 序号, 收款人姓名, 一卡通卡号/账号, 金额（元）, 业务参考号, 所属村, 项目,
期间, 备注 — then a 合计 line. Amounts are 元 with 2 decimals from integer
分; 业务参考号 is ``paymentBatches/{b}/payments/{p}``, the key the bank's
回盘 file must quote (see :mod:`jsx_funds.bank`).

The payments come from this service's database (``payments`` of the batch); the
payee (the person for per-person programs, the 户主 for per-household
ones — :mod:`jsx_funds.payees`) gets name and card number from
``MembersService.BatchGetPayees`` at the moment the file is made. Nothing
here logs a name or card number. If any payee has no card number on file, no
file is produced: ``FAILED_PRECONDITION MISSING_CARD_NUMBER`` lists them
(masked names) so the clerk can complete them in members first.

The batch is read a page (:data:`PAGE` payments) at a time by key on
``payments.id`` and its payees looked up per page, the next page loading
while the current one is written, so a province's million-line batch never
sits in memory. ``GetPaymentFile`` returns the file in one message (fine up
to ~25,000 lines); ``StreamPaymentFile`` writes it first into a spool
(memory up to :data:`SPOOL_BYTES`, then an anonymous temporary file, removed
when the call ends) and sends it in :data:`CHUNK_BYTES` pieces only once the
whole batch has been checked — a missing card must be the call's status,
never a half-sent file. The spool (and openpyxl's sheet file for xlsx) hold
names and card numbers for the length of the call, so production points
``TMPDIR`` at memory or an encrypted volume.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import csv
import hashlib
import io
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any, Protocol

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.worksheet import _writer as openpyxl_writer
from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2
from jsx.members.v1 import members_pb2
from jsxcore.auth import Caller
from jsxcore.errors import FailedPrecondition, NotFound
from jsxcore.pii import mask_name
from jsxcore.runtime.server import MAX_MESSAGE_BYTES
from jsxcore.values import Money, RegionCode

from jsx_funds.adapters.db import PaymentBatchRow, PaymentRow, in_batch
from jsx_funds.adapters.members import MembersClient
from jsx_funds.legacy_wire import parse_id
from jsx_funds.payees import household_heads
from jsx_funds.programs.tables import ProgramRow

log = logging.getLogger("jsx.funds.payment_file")

HEADER = ("序号", "收款人姓名", "一卡通卡号/账号", "金额（元）", "业务参考号", "所属村", "项目", "期间", "备注")
#: Payees named in the missing-card message; the rest are counted.
_LIST_IN_MESSAGE = 20

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPE = "text/csv; charset=utf-8"

#: Payments read, and payees looked up at members (BATCH per call), per page: what is held at once.
PAGE = 10_000
#: File bytes per StreamPaymentFile message after the metadata (clients' default limit is 4 MB).
CHUNK_BYTES = 1 << 20
#: A streamed file is spooled in memory up to this size, then in an anonymous temporary file.
SPOOL_BYTES = 8 << 20
#: Payment lines an xlsx sheet holds: Excel's 1,048,576 rows less the header and 合计 rows.
XLSX_MAX_LINES = 1_048_576 - 2
#: Largest file GetPaymentFile sends in its one message: the server's limit less room for the other fields.
UNARY_MAX_BYTES = MAX_MESSAGE_BYTES - 64 * 1024


@dataclass(frozen=True)
class Line:
    """One payment as the bank sees it."""

    payee_name: str
    card_number: str
    amount: int  # 分
    reference: str
    village: str
    note: str


@dataclass(frozen=True)
class PaymentFileData:
    """A batch's file content, held only while it is rendered."""

    batch: str
    program: str
    period: str
    lines: list[Line]

    @property
    def total(self) -> int:
        return sum(x.amount for x in self.lines)

    def rows(self) -> list[list[str | int]]:
        """Header, one row per payment, the 合计 row — what both formats write."""
        return ([list(HEADER)] + [_row(i, x, self.program, self.period) for i, x in enumerate(self.lines, 1)]
                + [_total_row(len(self.lines), self.total)])


def _row(i: int, x: Line, program: str, period: str) -> list[str | int]:
    return [i, x.payee_name, x.card_number, Money(x.amount).format_yuan(), x.reference, x.village, program, period, x.note]


def _total_row(count: int, total: int) -> list[str | int]:
    return ["合计", f"{count} 笔", "", Money(total).format_yuan(), "", "", "", "", ""]


@functools.lru_cache(maxsize=8192)
def _village_label(code: str) -> str:
    # (Cached: a batch names a few hundred villages a million times; parsing each cost ~1 s a million.)
    r = RegionCode.parse(code)
    return f"{r.name}（{code}）" if r.name else code


# ---------------------------------------------------------------- reading the batch


@dataclass(frozen=True)
class _Batch:
    name: str  # paymentBatches/{id}
    region: str
    program: str
    period: str
    note: str
    where: ColumnElement[bool]  # its payments (see in_batch)
    span: int | None  # size of its payment-id range, None while it is being written


async def _open(sessions: async_sessionmaker[AsyncSession], batch: str, caller: Caller | None) -> _Batch:
    bid = parse_id(batch, "paymentBatches", "payment_batch")
    async with sessions() as s:
        row = await s.get(PaymentBatchRow, bid)
        if row is None:
            raise NotFound(f"支付批次 paymentBatches/{bid} 不存在", reason="PAYMENT_BATCH_NOT_FOUND")
        if caller is not None:
            caller.require_region(row.region)
        program = await s.get(ProgramRow, row.program_id)
    per_household = program is not None and program.beneficiary == "HOUSEHOLD"
    span = (row.last_payment_id - row.first_payment_id + 1
            if row.first_payment_id is not None and row.last_payment_id is not None else None)
    return _Batch(name=f"paymentBatches/{bid}", region=row.region, program=program.name if program else "",
                  period=row.period, note="按户发放（户主收款）" if per_household else "按人发放",
                  where=in_batch(row), span=span)


class _Problems:
    """Payees the bank cannot be given, gathered over every page. Only resource names are kept
    (and the first few masked names for the message), never a full name or card."""

    def __init__(self) -> None:
        self.no_head: set[str] = set()  # households/… without a known 户主
        self.lacking: set[str] = set()  # persons/… without a card number
        self.lacking_shown: list[str] = []  # 刘*芳（persons/…）, in payment order

    def __bool__(self) -> bool:
        return bool(self.no_head or self.lacking)

    def add_lacking(self, person: str, payee: members_pb2.Payee) -> None:
        if person not in self.lacking:
            self.lacking.add(person)
            if len(self.lacking_shown) < _LIST_IN_MESSAGE:
                self.lacking_shown.append(f"{mask_name(payee.display_name)}（{person}）")

    def raise_any(self) -> None:
        if self.no_head:
            raise FailedPrecondition(
                f"以下家庭尚无户主信息，支付文件未生成，请先在成员管理中登记户主：{_listing(sorted(self.no_head))}",
                reason="PAYEE_UNKNOWN", metadata={"count": str(len(self.no_head))})
        if self.lacking:
            n = len(self.lacking)
            raise FailedPrecondition(
                f"以下 {n} 名收款人没有登记一卡通账号，支付文件未生成，请先在成员管理中补录后再导出："
                f"{_listing(self.lacking_shown, n)}",
                reason="MISSING_CARD_NUMBER", metadata={"count": str(n)})


def _listing(items: list[str], count: int | None = None) -> str:
    count = len(items) if count is None else count
    shown = "、".join(items[:_LIST_IN_MESSAGE])
    return shown + (f" 等 {count} 项" if count > _LIST_IN_MESSAGE else "")


@dataclass
class _Page:
    pays: Sequence[Any]  # (payment_id, payee, village, amount) in id order
    payee_of: dict[int, str]  # payment id → persons/… ('' when the household's 户主 is unknown)
    details: dict[str, members_pb2.Payee]


async def _load(sessions: async_sessionmaker[AsyncSession], members: MembersClient, b: _Batch, after: int | None,
                problems: _Problems, token: str | None) -> _Page:
    """The page of payments after id ``after``, with the payees' details from members (skipped once
    a household without 户主 was seen: that already stops the file, as it did before any lookup)."""
    cond = b.where if after is None else and_(b.where, PaymentRow.id > after)
    async with sessions() as s:  # a session per page: no transaction stays open across members calls
        pays = (await s.execute(select(PaymentRow.id.label("payment_id"), PaymentRow.payee, PaymentRow.village,
                                       PaymentRow.amount)
                                .where(cond).order_by(PaymentRow.id).limit(PAGE))).all()
        # A per-household payment written before the projection knew the 户主 names the household.
        heads = await household_heads(s, [p.payee for p in pays if p.payee.startswith("households/")])
    payee_of = {p.payment_id: heads.get(p.payee, "") if p.payee.startswith("households/") else p.payee for p in pays}
    known = [x for x in payee_of.values() if x]
    details: dict[str, members_pb2.Payee] = {}
    if known and not problems.no_head and len(known) == len(payee_of):
        details = await members.batch_get_payees(known, b.region, token=token)
    return _Page(pays=pays, payee_of=payee_of, details=details)


async def _pages(sessions: async_sessionmaker[AsyncSession], members: MembersClient, b: _Batch,
                 token: str | None) -> AsyncIterator[list[Line]]:
    """The batch's lines a page at a time, in payment order, the next page loading while the caller
    writes this one. Once a payee is found unusable no more lines come, but every page is still read
    so the error lists them all; it is raised after the last page, so a caller that sends nothing
    before the iteration ends sends nothing at all for a refused file."""
    problems = _Problems()
    pending: asyncio.Task[_Page] | None = asyncio.ensure_future(_load(sessions, members, b, None, problems, token))
    first = True
    try:
        while pending is not None:
            page = await pending
            pending = None
            if first and not page.pays:
                raise FailedPrecondition(f"支付批次 {b.name} 没有支付明细，无需生成支付文件", reason="EMPTY_BATCH")
            first = False
            if len(page.pays) == PAGE:
                pending = asyncio.ensure_future(
                    _load(sessions, members, b, page.pays[-1].payment_id, problems, token))
            problems.no_head.update(p.payee for p in page.pays if not page.payee_of[p.payment_id])
            if not problems.no_head:  # else members was not asked: that refusal comes first, as before paging
                for person in dict.fromkeys(page.payee_of.values()):
                    if not page.details[person].card_number:
                        problems.add_lacking(person, page.details[person])
            if problems:
                continue
            # Made in a worker thread (~50 ms a page), so that the next page's read and members lookups,
            # just scheduled, go out meanwhile instead of after it.
            yield await asyncio.to_thread(_lines, page, b)
        problems.raise_any()
    finally:
        if pending is not None:  # the caller stopped early (cancelled, or a page failed to render)
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)


def _lines(page: _Page, b: _Batch) -> list[Line]:
    return [Line(payee_name=page.details[page.payee_of[p.payment_id]].display_name,
                 card_number=page.details[page.payee_of[p.payment_id]].card_number, amount=p.amount,
                 reference=f"{b.name}/payments/{p.payment_id}", village=_village_label(p.village), note=b.note)
            for p in page.pays]


async def build(sessions: async_sessionmaker[AsyncSession], members: MembersClient, batch: str, *,
                caller: Caller | None = None, token: str | None = None) -> PaymentFileData:
    """Join the batch's payments with their payees' details from members, all lines in memory
    (the CLI and small batches; :func:`stream_payment_file` for any size).

    ``caller`` (None for the CLI's direct database access) must cover the
    batch's region; ``token``, when given, is forwarded to members so it
    checks *that* caller's ``members.payees.read`` and audits them, else
    members sees a ``system`` token over the batch's region.
    """
    b = await _open(sessions, batch, caller)
    lines: list[Line] = []
    async for page in _pages(sessions, members, b, token):
        lines.extend(page)
    return PaymentFileData(batch=b.name, program=b.program, period=b.period, lines=lines)


# ---------------------------------------------------------------- writing the file


class _Writer(Protocol):
    count: int
    total: int

    def add(self, lines: list[Line]) -> None: ...

    def finish(self) -> None: ...

    def discard(self) -> None: ...


class _CsvWriter:
    """UTF-8 with BOM (Excel opens it), CRLF; card numbers as plain digits. Written row by row,
    byte for byte what one csv.writer over all rows makes."""

    def __init__(self, out: IO[bytes], program: str, period: str) -> None:
        self.out, self.program, self.period = out, program, period
        self.count = self.total = 0
        self.out.write(("\ufeff" + self._text([list(HEADER)])).encode("utf-8"))

    @staticmethod
    def _text(rows: list[list[str | int]]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\r\n").writerows(rows)
        return buf.getvalue()

    def add(self, lines: list[Line]) -> None:
        rows = [_row(self.count + i, x, self.program, self.period) for i, x in enumerate(lines, 1)]
        self.count += len(lines)
        self.total += sum(x.amount for x in lines)
        self.out.write(self._text(rows).encode("utf-8"))

    def finish(self) -> None:
        self.out.write(self._text([_total_row(self.count, self.total)]).encode("utf-8"))

    def discard(self) -> None:
        """Nothing of its own to remove: the caller's ``out`` goes with the call."""


class _XlsxWriter:
    """One sheet 支付明细; card numbers as text so long ones keep every digit, amounts as numbers
    (0.00) the bank can sum. openpyxl's write-only workbook: rows go to its sheet file as they come."""

    WIDTHS = (6, 12, 24, 12, 34, 26, 28, 10, 20)

    def __init__(self, out: IO[bytes], program: str, period: str) -> None:
        self.out, self.program, self.period = out, program, period
        self.count = self.total = 0
        self.wb = Workbook(write_only=True)
        self.ws = self.wb.create_sheet("支付明细")
        for col, width in zip("ABCDEFGHI", self.WIDTHS):
            self.ws.column_dimensions[col].width = width
        self.ws.freeze_panes = "A2"
        self.bold = Font(bold=True)
        self.ws.append([self._cell(v, bold=True) for v in HEADER])

    def _cell(self, value: Any, *, bold: bool = False) -> WriteOnlyCell:
        cell = WriteOnlyCell(self.ws, value=value)
        if bold:
            cell.font = self.bold
        return cell

    def _amount(self, fen: int, *, bold: bool = False) -> WriteOnlyCell:
        cell = self._cell(Decimal(Money(fen).format_yuan()), bold=bold)
        cell.number_format = "0.00"
        return cell

    def add(self, lines: list[Line]) -> None:
        if self.count + len(lines) > XLSX_MAX_LINES:
            raise _too_many_rows(self.count + len(lines))
        for i, x in enumerate(lines, self.count + 1):
            self.ws.append([i, x.payee_name, x.card_number, self._amount(x.amount), x.reference, x.village,
                            self.program, self.period, x.note])
        self.count += len(lines)
        self.total += sum(x.amount for x in lines)

    def finish(self) -> None:
        row = _total_row(self.count, self.total)
        self.ws.append([self._cell(v, bold=True) for v in row[:3]] + [self._amount(self.total, bold=True)]
                       + [self._cell(v, bold=True) for v in row[4:]])
        self.wb.save(self.out)

    def discard(self) -> None:
        """A refused or abandoned file: openpyxl's sheet file (names and card numbers) is removed
        now — openpyxl itself removes it only when the workbook is saved, or at process exit."""
        writer = self.ws._writer
        if writer is None:
            return
        with contextlib.suppress(Exception):  # a page still being added in its thread (cancelled call)
            if not self.ws.closed:
                if self.ws._rows is not None:
                    self.ws._rows.close()
                writer.close()
        if isinstance(writer.out, str) and os.path.exists(writer.out):
            os.remove(writer.out)
        with contextlib.suppress(ValueError):
            openpyxl_writer.ALL_TEMP_FILES.remove(writer.out)


def _too_many_rows(count: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"该批次有 {count} 笔支付，超过 Excel 单个工作表 {XLSX_MAX_LINES} 笔的上限，请改用 CSV 格式导出",
        reason="TOO_MANY_ROWS_FOR_XLSX", metadata={"count": str(count), "limit": str(XLSX_MAX_LINES)})


def render_csv(data: PaymentFileData) -> bytes:
    """UTF-8 with BOM (Excel opens it), CRLF; card numbers as plain digits."""
    return _render(data, _CsvWriter)


def render_xlsx(data: PaymentFileData) -> bytes:
    """One sheet 支付明细; card numbers as text, amounts as numbers (0.00)."""
    return _render(data, _XlsxWriter)


def _render(data: PaymentFileData, kind: type[_CsvWriter] | type[_XlsxWriter]) -> bytes:
    buf = io.BytesIO()
    w = kind(buf, data.program, data.period)
    w.add(data.lines)
    w.finish()
    return buf.getvalue()


async def _write(sessions: async_sessionmaker[AsyncSession], members: MembersClient,
                 req: funds_pb2.GetPaymentFileRequest | funds_pb2.StreamPaymentFileRequest, caller: Caller | None,
                 token: str | None, out: IO[bytes]) -> funds_pb2.PaymentFile:
    """Write the whole file into ``out`` (every payee checked on the way); its metadata, ``content`` empty.
    The writing runs in a worker thread, a page at a time: an xlsx of a million lines is a minute of
    openpyxl, which must not stall the server's other calls."""
    started = time.perf_counter()
    b = await _open(sessions, req.payment_batch, caller)
    is_csv = req.format == funds_pb2.PAYMENT_FILE_FORMAT_CSV
    if not is_csv and (b.span is None or b.span > XLSX_MAX_LINES):  # the id range bounds the count; count when it may be over
        async with sessions() as s:
            n = (await s.execute(select(func.count()).select_from(PaymentRow).where(b.where))).scalar_one()
        if n > XLSX_MAX_LINES:
            raise _too_many_rows(n)
    w: _Writer = await asyncio.to_thread(_CsvWriter if is_csv else _XlsxWriter, out, b.program, b.period)
    try:
        async for page in _pages(sessions, members, b, token):
            await asyncio.to_thread(w.add, page)
        await asyncio.to_thread(w.finish)
    except BaseException:
        w.discard()
        raise
    size, digest = await asyncio.to_thread(_size_and_digest, out)
    log.info("payment file %s written: %d lines, %d bytes in %.2f s", b.name, w.count, size,
             time.perf_counter() - started, extra={"lines": w.count, "bytes": size})
    return funds_pb2.PaymentFile(
        filename=f"支付文件_{b.name.replace('/', '-')}_{b.period}.{'csv' if is_csv else 'xlsx'}",
        content_type=CSV_TYPE if is_csv else XLSX_TYPE, payment_count=w.count,
        total=common_pb2.Money(fen=w.total), size_bytes=size, sha256=digest)


def _size_and_digest(f: IO[bytes]) -> tuple[int, str]:
    f.seek(0)
    h, size = hashlib.sha256(), 0
    while block := f.read(CHUNK_BYTES):
        h.update(block)
        size += len(block)
    f.seek(0)
    return size, h.hexdigest()


async def payment_file(sessions: async_sessionmaker[AsyncSession], members: MembersClient,
                       req: funds_pb2.GetPaymentFileRequest, caller: Caller | None, token: str | None) -> funds_pb2.PaymentFile:
    """``GetPaymentFile``: the rendered file in the response, not stored."""
    buf = io.BytesIO()
    meta = await _write(sessions, members, req, caller, token, buf)
    if meta.size_bytes > UNARY_MAX_BYTES:
        raise FailedPrecondition(
            f"支付文件有 {meta.size_bytes} 字节（{meta.payment_count} 笔），超过单次应答 {UNARY_MAX_BYTES} 字节的上限，"
            "请改用 StreamPaymentFile 分段下载", reason="FILE_TOO_LARGE",
            metadata={"size_bytes": str(meta.size_bytes), "limit": str(UNARY_MAX_BYTES)})
    meta.content = buf.getvalue()
    return meta


async def stream_payment_file(sessions: async_sessionmaker[AsyncSession], members: MembersClient,
                              req: funds_pb2.StreamPaymentFileRequest, caller: Caller | None,
                              token: str | None) -> AsyncIterator[funds_pb2.PaymentFileChunk]:
    """``StreamPaymentFile``: the metadata, then the file in :data:`CHUNK_BYTES` pieces — all of it
    written and checked before the first message, so a refusal is the status with nothing sent."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        meta = await _write(sessions, members, req, caller, token, spool)
        yield funds_pb2.PaymentFileChunk(metadata=meta)
        while data := await asyncio.to_thread(spool.read, CHUNK_BYTES):
            yield funds_pb2.PaymentFileChunk(data=data)
