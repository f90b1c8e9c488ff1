"""A batch's payment files — the one module that writes them, for every caller.

Two layouts (:data:`ID_LIST`, :data:`BANK`), one set of rules for their
fields (amounts from integer 分 as 元 with 2 decimals, :func:`amount_text`;
CSV as Python's csv writer quotes it; UTF-8 with BOM so Excel opens it, CRLF
lines; a 合计 row), one CSV writer and one xlsx writer (:class:`CsvWriter`,
:class:`XlsxWriter`):

* **The internal id list** (:func:`write_id_list`; ``jsx funds payment-file
  BATCH --out FILE``): 收款人编号 (``persons/…``), 户编号, village, amount,
  period, program, reference — no personal data, for reconciliation. On
  PostgreSQL the server makes each line (the SQL of :func:`csv_field_sql` and
  :func:`amount_sql`, tested equal to the Python rules) — in blocks of
  :data:`FILE_BLOCK` ids on two connections at once when the batch's ids are
  unbroken (序号 from the id), else through one cursor — and the writer only
  numbers and writes them: byte for byte the file SQLite's rows give.
* **The bank file** (一卡通发放文件, a county finance bureau's layout;
  GetPaymentFile, StreamPaymentFile, ``jsx funds payment-file --csv/--xlsx``):
  序号, 收款人姓名, 一卡通卡号/账号, 金额（元）, 业务参考号, 所属村, 项目, 期间, 备注.
  The payee (the person for per-person programs, the 户主 for per-household
  ones) gets name and card number from ``MembersService.BatchGetPayees`` at
  the moment the file is made, with the caller's own token. Nothing here logs
  a name or card number. If any payee has no card number on file, no file is
  produced: ``FAILED_PRECONDITION MISSING_CARD_NUMBER`` lists them (masked
  names) so the clerk can complete them in members first.

The bank file's batch is read a page (:data:`PAGE` payments) at a time by key
on ``payments.id`` and its payees looked up per page, the next page loading
while the current one is written, so a province's million-line batch never
sits in memory. ``GetPaymentFile`` returns the file in one message (fine up
to ~25,000 lines); ``StreamPaymentFile`` writes it first into a spool (memory
up to :data:`SPOOL_BYTES`, then an anonymous temporary file, removed when the
call ends) and sends it in :data:`CHUNK_BYTES` pieces only once the whole
batch has been checked — a missing card must be the call's status, never a
half-sent file. The spool (and openpyxl's sheet file for xlsx) hold names and
card numbers for the length of the call, so production points ``TMPDIR`` at
memory or an encrypted volume.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import hashlib
import io
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any, Protocol, TextIO

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell
from openpyxl.styles import Font
from openpyxl.worksheet import _writer as openpyxl_writer
from sqlalchemy import ColumnElement, and_, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.members.v1 import members_pb2
from jsx_funds.adapters.members import MembersClient
from jsx_funds.disbursement import domain as dd
from jsx_funds.disbursement.tables import PaymentBatchRow, PaymentRow, in_batch
from jsx_funds.projections.service import household_heads
from jsxcore.errors import FailedPrecondition
from jsxcore.pii import mask_name
from jsxcore.runtime.server import MAX_MESSAGE_BYTES
from jsxcore.values import RegionCode

log = logging.getLogger("jsx.funds.payment_file")

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPE = "text/csv; charset=utf-8"

#: Payments read, and payees looked up at members (BATCH per call), per page of the bank file: what is held at once.
PAGE = 10_000
#: File bytes per StreamPaymentFile message after the metadata (clients' default limit is 4 MB).
CHUNK_BYTES = 1 << 20
#: A streamed file is spooled in memory up to this size, then in an anonymous temporary file.
SPOOL_BYTES = 8 << 20
#: Payment lines an xlsx sheet holds: Excel's 1,048,576 rows less the header and 合计 rows.
XLSX_MAX_LINES = 1_048_576 - 2
#: Largest file GetPaymentFile sends in its one message: the server's limit less room for the other fields.
UNARY_MAX_BYTES = MAX_MESSAGE_BYTES - 64 * 1024
#: Payment ids per server-made block of the id list (:func:`_id_list_blocks`): ~1.4 MB of lines.
FILE_BLOCK = 10_000
#: Rows per read of the id list where Python renders it (SQLite).
_ID_PAGE = 20_000
#: Payees named in the missing-card message; the rest are counted.
_LIST_IN_MESSAGE = 20


# ---------------------------------------------------------------- the rules of a file's fields


def amount_text(fen: int) -> str:
    """分 as 元 with two decimals (``94000`` → ``"940.00"``), as :meth:`Money.format_yuan` writes it."""
    return f"{fen // 100}.{fen % 100:02d}" if fen >= 0 else "-" + amount_text(-fen)


def amount_sql(column: str) -> str:
    """SQL for :func:`amount_text` of a non-negative integer column (payments' amounts are > 0, a CHECK)."""
    return f"({column} / 100)::text || '.' || lpad(mod({column}, 100)::text, 2, '0')"


def csv_text(rows: Sequence[Sequence[object]]) -> str:
    """``rows`` as Python's csv writer writes them (QUOTE_MINIMAL, CRLF): the one definition of a CSV line."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue()


def csv_field_sql(value: str) -> str:
    """SQL for the text ``value`` as :func:`csv_text` writes a field: quoted, with quotes doubled, when it
    holds a comma, a quote or a line break; as it is otherwise (tested against the writer)."""
    return f"CASE WHEN {value} ~ '[\",\r\n]' THEN '\"' || replace({value}, '\"', '\"\"') || '\"' ELSE {value} END"


@dataclass(frozen=True)
class Layout:
    """A file's columns: the header (序号 first), where the amount is, and its 合计 row."""

    header: tuple[str, ...]
    amount_col: int  # index in a full row (序号 is column 0)
    total_row: Callable[[int, int], list[str | int]]


#: The internal id list: resource ids only, for reconciliation.
ID_LIST = Layout(
    ("序号", "收款人编号", "户编号", "村（社区）代码", "金额（元）", "发放期间", "项目", "业务参考号"),
    4,
    lambda n, total: ["合计", n, "", "", amount_text(total), "", "", ""],
)
#: The bank's file (一卡通发放): names and card numbers from members.
BANK = Layout(
    ("序号", "收款人姓名", "一卡通卡号/账号", "金额（元）", "业务参考号", "所属村", "项目", "期间", "备注"),
    3,
    lambda n, total: ["合计", f"{n} 笔", "", amount_text(total), "", "", "", "", ""],
)


# ---------------------------------------------------------------- the writers


class FileWriter(Protocol):
    """Writes one file of a layout: rows (without their 序号, amounts already as text) as they come, then 合计."""

    count: int
    total: int

    def add(self, rows: Sequence[Sequence[str]], amounts: Sequence[int]) -> None: ...

    def finish(self) -> None: ...

    def discard(self) -> None: ...


class CsvWriter:
    """UTF-8 with BOM (Excel opens it), CRLF, fields as :func:`csv_text` writes them; numbered from 1 as the rows
    come. ``write`` takes text (a text file's ``write``, or one encoding for a binary file, :meth:`to_bytes`).
    Lines the server made (:meth:`add_lines`, :meth:`add_block`) are the same bytes (tested)."""

    def __init__(self, write: Callable[[str], object], layout: Layout) -> None:
        self.write, self.layout = write, layout
        self.count = self.total = 0
        self.write("\ufeff" + csv_text([layout.header]))

    @classmethod
    def to_bytes(cls, out: IO[bytes], layout: Layout) -> CsvWriter:
        return cls(lambda t: out.write(t.encode("utf-8")), layout)

    def add(self, rows: Sequence[Sequence[str]], amounts: Sequence[int]) -> None:
        n = self.count
        self.write(csv_text([[i, *row] for i, row in enumerate(rows, n + 1)]))
        self.count += len(rows)
        self.total += sum(amounts)

    def add_lines(self, lines: Sequence[str], amounts: Sequence[int]) -> None:
        """Lines already rendered but for their 序号 (the server made them, :func:`csv_field_sql`)."""
        self.write("".join([f"{i},{line}\r\n" for i, line in enumerate(lines, self.count + 1)]))
        self.count += len(lines)
        self.total += sum(amounts)

    def add_block(self, block: str, count: int, total: int) -> None:
        """``count`` whole lines, numbered already (without the last CRLF), made by the server."""
        self.write(block)
        self.write("\r\n")
        self.count += int(count)
        self.total += int(total)  # (PostgreSQL's sum of bigints is numeric)

    def finish(self) -> None:
        self.write(csv_text([self.layout.total_row(self.count, self.total)]))

    def discard(self) -> None:
        """Nothing of its own to remove: the caller's ``out`` goes with the call."""


class XlsxWriter:
    """One sheet 支付明细; every field as text (so long card numbers keep every digit) but the amounts, numbers
    (0.00) the bank can sum. openpyxl's write-only workbook: rows go to its sheet file as they come."""

    WIDTHS = (6, 12, 24, 12, 34, 26, 28, 10, 20)

    def __init__(self, out: IO[bytes], layout: Layout) -> None:
        self.out, self.layout = out, layout
        self.count = self.total = 0
        self.wb = Workbook(write_only=True)
        self.ws = self.wb.create_sheet("支付明细")
        for col, width in zip("ABCDEFGHI", self.WIDTHS, strict=False):
            self.ws.column_dimensions[col].width = width
        self.ws.freeze_panes = "A2"
        self.bold = Font(bold=True)
        self.ws.append([self._cell(v, bold=True) for v in layout.header])

    def _cell(self, value: Any, *, bold: bool = False) -> Cell:
        cell = WriteOnlyCell(self.ws, value=value)
        if bold:
            cell.font = self.bold
        return cell

    def _amount(self, yuan: str, *, bold: bool = False) -> Cell:
        cell = self._cell(Decimal(yuan), bold=bold)
        cell.number_format = "0.00"
        return cell

    def add(self, rows: Sequence[Sequence[str]], amounts: Sequence[int]) -> None:
        if self.count + len(rows) > XLSX_MAX_LINES:
            raise too_many_rows(self.count + len(rows))
        k = self.layout.amount_col - 1
        for i, row in enumerate(rows, self.count + 1):
            self.ws.append([i, *row[:k], self._amount(row[k]), *row[k + 1 :]])
        self.count += len(rows)
        self.total += sum(amounts)

    def finish(self) -> None:
        row, k = self.layout.total_row(self.count, self.total), self.layout.amount_col
        self.ws.append(
            [self._cell(v, bold=True) for v in row[:k]]
            + [self._amount(str(row[k]), bold=True)]
            + [self._cell(v, bold=True) for v in row[k + 1 :]]
        )
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


def too_many_rows(count: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"该批次有 {count} 笔支付，超过 Excel 单个工作表 {XLSX_MAX_LINES} 笔的上限，请改用 CSV 格式导出",
        reason="TOO_MANY_ROWS_FOR_XLSX",
        metadata={"count": str(count), "limit": str(XLSX_MAX_LINES)},
    )


# ---------------------------------------------------------------- the internal id list


async def write_id_list(s: AsyncSession, batch: PaymentBatchRow, program_name: str, out: TextIO) -> int:
    """Stream the batch's id list into ``out``; returns the number of payments. Streamed, so a million-line
    file never sits in memory; the same bytes on every database (tests)."""
    w = CsvWriter(out.write, ID_LIST)
    constants = [batch.period, program_name, dd.batch_name(batch.id)]
    conn = await s.connection()
    if conn.dialect.name == "postgresql" and dd.unbroken(
        batch.first_payment_id, batch.last_payment_id, batch.payment_count
    ):
        async with conn.engine.connect() as extra:
            await _id_list_blocks((s.execute, extra.execute), batch, constants, w)
    elif conn.dialect.name == "postgresql":
        await _id_list_cursor(conn, batch, constants, w)
    else:
        result = await s.stream(
            select(PaymentRow.id, PaymentRow.payee, PaymentRow.household_id, PaymentRow.village, PaymentRow.amount)
            .where(in_batch(batch))
            .order_by(PaymentRow.id)
            .execution_options(yield_per=_ID_PAGE)
        )
        period, pname, bname = constants
        async for rows in result.partitions(_ID_PAGE):
            w.add(
                [
                    [payee, f"households/{hid}", village, amount_text(amount), period, pname, f"{bname}/payments/{pid}"]
                    for pid, payee, hid, village, amount in rows
                ],
                [r[4] for r in rows],
            )
    w.finish()
    return w.count


def _id_line_sql(constants_param: str) -> str:
    """SQL making an id-list line but for its 序号 (ids quoted as the writer would; village codes are 12
    digits; the values every line shares come quoted as one parameter)."""
    return (
        csv_field_sql("payee")
        + " || ',' || "
        + csv_field_sql("'households/' || household_id")
        + " || ',' || village || ',' || "
        + amount_sql("amount")
        + f" || {constants_param} || '/payments/' || id"
    )


def _constants(values: list[str]) -> str:
    """The fields every line shares (period, program, batch), written by the writer, after a comma."""
    return "," + csv_text([values])[:-2]


async def _id_list_blocks(executes: Sequence[Any], batch: PaymentBatchRow, constants: list[str], w: CsvWriter) -> None:
    """The lines of a batch whose ids are one unbroken range, made on the server a block of ``FILE_BLOCK`` ids
    at a time by each of ``executes`` (one per connection) at once.

    A line's 序号 is then its id's place in the range, so a block needs
    nothing from the blocks before it: the server makes its lines joined into
    one text, the writer only writes the blocks out in order. Two backends
    share the line making — a million lines in ~0.9 s where one connection's
    cursor took ~1.5 s (bench/monthly_batch). A batch's payments never change
    once written, so the two connections' snapshots read the same rows. At
    most two blocks per connection wait in memory.
    """
    first, last = batch.first_payment_id, batch.last_payment_id
    assert first is not None and last is not None
    line = f"(id - {int(first) - 1})::text || ',' || " + _id_line_sql(":constants")
    block = text(
        f"SELECT string_agg({line}, E'\\r\\n' ORDER BY id), count(*), sum(amount) FROM payments"
        " WHERE id >= :lo AND id < :hi AND batch_id = :bid"
    )
    params = {"constants": _constants(constants), "bid": batch.id}
    blocks = range(first, last + 1, FILE_BLOCK)
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
                row = (await execute(block, {**params, "lo": lo, "hi": min(lo + FILE_BLOCK, last + 1)})).one()
            except BaseException as e:
                slot(i).set_exception(e)
                raise
            slot(i).set_result(row)

    workers = [asyncio.ensure_future(work(execute)) for execute in executes]
    try:
        for i in range(len(blocks)):
            lines, count, amount = await slot(i)
            del done[i]
            room.release()
            if count:
                w.add_block(lines, count, amount)
    finally:
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
    if w.count != batch.payment_count:
        # The recorded count said every id of the range is this batch's; the lines' numbers relied on it.
        raise RuntimeError(f"{dd.batch_name(batch.id)}: {w.count} payments read, {batch.payment_count} recorded")


async def _id_list_cursor(conn: Any, batch: PaymentBatchRow, constants: list[str], w: CsvWriter) -> None:
    """The lines of any batch through one server cursor; the writer numbers them. A row per COPY message, or
    per-value work in Python, cost 4–8 µs a line; the next rows are asked for before these are written."""
    raw = (await conn.get_raw_connection()).driver_connection
    # Read in id order off the primary key: right after a batch its statistics still say the
    # range is nearly empty, and the planner would sort a million rows from a bitmap scan.
    await raw.execute("SET LOCAL enable_bitmapscan = off")
    async with raw.cursor(name=f"jsx_payment_file_{batch.id}") as cur:
        await cur.execute(
            "SELECT "
            + _id_line_sql("%(constants)s")
            + ", amount FROM payments WHERE id BETWEEN %(first)s AND %(last)s AND batch_id = %(bid)s ORDER BY id",
            {
                "constants": _constants(constants),
                "bid": batch.id,
                "first": batch.first_payment_id,
                "last": batch.last_payment_id,
            },
        )
        fetch = asyncio.ensure_future(cur.fetchmany(20_000))
        try:
            while rows := await fetch:
                fetch = asyncio.ensure_future(cur.fetchmany(20_000))
                await asyncio.sleep(0)  # let it send the FETCH
                w.add_lines([line for line, _ in rows], [amount for _, amount in rows])
        finally:
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fetch


# ---------------------------------------------------------------- the bank file: reading the batch


@functools.lru_cache(maxsize=8192)
def village_label(code: str) -> str:
    # (Cached: a batch names a few hundred villages a million times; parsing each cost ~1 s a million.)
    r = RegionCode.parse(code)
    return f"{r.name}（{code}）" if r.name else code


@dataclass(frozen=True)
class FileBatch:
    """What the bank file needs of a batch (the service opens it, checking the caller's region)."""

    name: str  # paymentBatches/{id}
    region: str
    program: str
    period: str
    note: str  # 按人发放, or 按户发放（户主收款）
    where: ColumnElement[bool]  # its payments (see in_batch)
    span: int | None  # size of its payment-id range, None while it is being written


def file_batch(row: PaymentBatchRow, program_name: str, per_household: bool) -> FileBatch:
    span = (
        row.last_payment_id - row.first_payment_id + 1
        if row.first_payment_id is not None and row.last_payment_id is not None
        else None
    )
    return FileBatch(
        name=dd.batch_name(row.id),
        region=row.region,
        program=program_name,
        period=row.period,
        note="按户发放（户主收款）" if per_household else "按人发放",
        where=in_batch(row),
        span=span,
    )


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
                reason="PAYEE_UNKNOWN",
                metadata={"count": str(len(self.no_head))},
            )
        if self.lacking:
            n = len(self.lacking)
            raise FailedPrecondition(
                f"以下 {n} 名收款人没有登记一卡通账号，支付文件未生成，请先在成员管理中补录后再导出："
                f"{_listing(self.lacking_shown, n)}",
                reason="MISSING_CARD_NUMBER",
                metadata={"count": str(n)},
            )


def _listing(items: list[str], count: int | None = None) -> str:
    count = len(items) if count is None else count
    shown = "、".join(items[:_LIST_IN_MESSAGE])
    return shown + (f" 等 {count} 项" if count > _LIST_IN_MESSAGE else "")


@dataclass
class _Page:
    pays: Sequence[Any]  # (payment_id, payee, village, amount) in id order
    payee_of: dict[int, str]  # payment id → persons/… ('' when the household's 户主 is unknown)
    details: dict[str, members_pb2.Payee]


async def _load(
    sessions: async_sessionmaker[AsyncSession],
    members: MembersClient,
    b: FileBatch,
    after: int | None,
    problems: _Problems,
    token: str | None,
) -> _Page:
    """The page of payments after id ``after``, with the payees' details from members (skipped once
    a household without 户主 was seen: that already stops the file, as it did before any lookup)."""
    cond = b.where if after is None else and_(b.where, PaymentRow.id > after)
    async with sessions() as s:  # a session per page: no transaction stays open across members calls
        pays = (
            await s.execute(
                select(PaymentRow.id.label("payment_id"), PaymentRow.payee, PaymentRow.village, PaymentRow.amount)
                .where(cond)
                .order_by(PaymentRow.id)
                .limit(PAGE)
            )
        ).all()
        # A per-household payment written before the projection knew the 户主 names the household.
        heads = await household_heads(s, [p.payee for p in pays if p.payee.startswith("households/")])
    payee_of = {p.payment_id: heads.get(p.payee, "") if p.payee.startswith("households/") else p.payee for p in pays}
    known = [x for x in payee_of.values() if x]
    details: dict[str, members_pb2.Payee] = {}
    if known and not problems.no_head and len(known) == len(payee_of):
        details = await members.batch_get_payees(known, b.region, token=token)
    return _Page(pays=pays, payee_of=payee_of, details=details)


async def bank_pages(
    sessions: async_sessionmaker[AsyncSession], members: MembersClient, b: FileBatch, token: str | None
) -> AsyncIterator[tuple[list[list[str]], list[int]]]:
    """The batch's bank-file rows (without 序号) and their amounts a page at a time, in payment order, the next
    page loading while the caller writes this one. Once a payee is found unusable no more rows come, but every
    page is still read so the error lists them all; it is raised after the last page, so a caller that sends
    nothing before the iteration ends sends nothing at all for a refused file."""
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
                pending = asyncio.ensure_future(_load(sessions, members, b, page.pays[-1].payment_id, problems, token))
            problems.no_head.update(p.payee for p in page.pays if not page.payee_of[p.payment_id])
            if not problems.no_head:  # else members was not asked: that refusal comes first, as before paging
                for person in dict.fromkeys(page.payee_of.values()):
                    if not page.details[person].card_number:
                        problems.add_lacking(person, page.details[person])
            if problems:
                continue
            # Made in a worker thread (~50 ms a page), so that the next page's read and members lookups,
            # just scheduled, go out meanwhile instead of after it.
            yield await asyncio.to_thread(_bank_rows, page, b)
        problems.raise_any()
    finally:
        if pending is not None:  # the caller stopped early (cancelled, or a page failed to render)
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)


def _bank_rows(page: _Page, b: FileBatch) -> tuple[list[list[str]], list[int]]:
    rows = []
    for p in page.pays:
        payee = page.details[page.payee_of[p.payment_id]]
        rows.append(
            [
                payee.display_name,
                payee.card_number,
                amount_text(p.amount),
                f"{b.name}/payments/{p.payment_id}",
                village_label(p.village),
                b.program,
                b.period,
                b.note,
            ]
        )
    return rows, [p.amount for p in page.pays]


# ---------------------------------------------------------------- the bank file: writing it


@dataclass(frozen=True)
class BankFile:
    """A bank file written: its name and type, lines and total, size and digest (the content is elsewhere)."""

    filename: str
    content_type: str
    payment_count: int
    total: int
    size_bytes: int
    sha256: str


async def write_bank_files(
    sessions: async_sessionmaker[AsyncSession],
    members: MembersClient,
    b: FileBatch,
    targets: Sequence[tuple[bool, IO[bytes]]],
    *,
    token: str | None,
) -> list[BankFile]:
    """Write the whole bank file into each target (``(csv_format, out)``: the same rows, one read of the payees),
    every payee checked on the way. The writing runs in a worker thread, a page at a time: an xlsx of a million
    lines is a minute of openpyxl, which must not stall the server's other calls."""
    started = time.perf_counter()
    if any(not csv_format for csv_format, _ in targets) and (b.span is None or b.span > XLSX_MAX_LINES):
        async with sessions() as s:  # the id range bounds the count: count only when it may be over
            n = (await s.execute(select(func.count()).select_from(PaymentRow).where(b.where))).scalar_one()
        if n > XLSX_MAX_LINES:
            raise too_many_rows(n)

    def open_all() -> list[FileWriter]:
        return [CsvWriter.to_bytes(out, BANK) if csv_format else XlsxWriter(out, BANK) for csv_format, out in targets]

    writers = await asyncio.to_thread(open_all)

    def add(rows: list[list[str]], amounts: list[int]) -> None:
        for w in writers:
            w.add(rows, amounts)

    def finish() -> None:
        for w in writers:
            w.finish()

    try:
        async for rows, amounts in bank_pages(sessions, members, b, token):
            await asyncio.to_thread(add, rows, amounts)
        await asyncio.to_thread(finish)
    except BaseException:
        for w in writers:
            w.discard()
        raise
    out = []
    for (csv_format, f), w in zip(targets, writers, strict=False):
        size, digest = await asyncio.to_thread(_size_and_digest, f)
        log.info(
            "payment file %s written: %d lines, %d bytes in %.2f s",
            b.name,
            w.count,
            size,
            time.perf_counter() - started,
            extra={"lines": w.count, "bytes": size},
        )
        out.append(
            BankFile(
                filename=f"支付文件_{b.name.replace('/', '-')}_{b.period}.{'csv' if csv_format else 'xlsx'}",
                content_type=CSV_TYPE if csv_format else XLSX_TYPE,
                payment_count=w.count,
                total=w.total,
                size_bytes=size,
                sha256=digest,
            )
        )
    return out


async def write_bank_file(
    sessions: async_sessionmaker[AsyncSession],
    members: MembersClient,
    b: FileBatch,
    *,
    csv_format: bool,
    token: str | None,
    out: IO[bytes],
) -> BankFile:
    """:func:`write_bank_files` into one ``out``."""
    return (await write_bank_files(sessions, members, b, [(csv_format, out)], token=token))[0]


def _size_and_digest(f: IO[bytes]) -> tuple[int, str]:
    f.seek(0)
    h, size = hashlib.sha256(), 0
    while block := f.read(CHUNK_BYTES):
        h.update(block)
        size += len(block)
    f.seek(0)
    return size, h.hexdigest()


def file_too_large(f: BankFile) -> FailedPrecondition:
    return FailedPrecondition(
        f"支付文件有 {f.size_bytes} 字节（{f.payment_count} 笔），超过单次应答 {UNARY_MAX_BYTES} 字节的上限，"
        "请改用 StreamPaymentFile 分段下载",
        reason="FILE_TOO_LARGE",
        metadata={"size_bytes": str(f.size_bytes), "limit": str(UNARY_MAX_BYTES)},
    )


async def bank_file_bytes(
    sessions: async_sessionmaker[AsyncSession],
    members: MembersClient,
    b: FileBatch,
    *,
    csv_format: bool,
    token: str | None,
) -> tuple[BankFile, bytes]:
    """The whole bank file in memory (GetPaymentFile, the CLI): what it is, and its bytes."""
    buf = io.BytesIO()
    meta = await write_bank_file(sessions, members, b, csv_format=csv_format, token=token, out=buf)
    return meta, buf.getvalue()


async def spooled_bank_file(
    sessions: async_sessionmaker[AsyncSession],
    members: MembersClient,
    b: FileBatch,
    *,
    csv_format: bool,
    token: str | None,
) -> AsyncIterator[BankFile | bytes]:
    """StreamPaymentFile's body: first what the file is, then its bytes in :data:`CHUNK_BYTES` pieces — all of it
    written and checked into a spool before the first item, so a refusal is raised with nothing yielded."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        yield await write_bank_file(sessions, members, b, csv_format=csv_format, token=token, out=spool)
        while data := await asyncio.to_thread(spool.read, CHUNK_BYTES):
            yield data
