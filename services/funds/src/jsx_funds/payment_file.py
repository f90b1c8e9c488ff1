"""The bank payment file of a batch (一卡通发放文件), in a county finance
bureau's layout.

Columns: 序号, 收款人姓名, 一卡通卡号/账号, 金额（元）, 业务参考号, 所属村, 项目,
期间, 备注 — then a 合计 line. Amounts are 元 with 2 decimals from integer
分; 业务参考号 is ``paymentBatches/{b}/payments/{p}``, the key the bank's
回盘 file must quote (see :mod:`jsx_funds.bank`).

The payments come from this service's database (``payments`` of the batch); the
payee (the person for per-person programs, the 户主 for per-household
ones — :mod:`jsx_funds.payees`) gets name and card number from
``MembersService.BatchGetPayees`` at the moment the file is made. The file
is returned as bytes and never stored; nothing here logs a name or card
number. If any payee has no card number on file, no file is produced:
``FAILED_PRECONDITION MISSING_CARD_NUMBER`` lists them (masked names) so
the clerk can complete them in members first.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.styles import Font
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2
from jsxcore.auth import Caller
from jsxcore.errors import FailedPrecondition, NotFound
from jsxcore.pii import mask_name
from jsxcore.values import Money, RegionCode

from jsx_funds.adapters.db import PaymentBatchRow, PaymentRow, ProgramRow, in_batch
from jsx_funds.adapters.members import MembersClient
from jsx_funds.payees import household_heads
from jsx_funds.service import parse_id

HEADER = ("序号", "收款人姓名", "一卡通卡号/账号", "金额（元）", "业务参考号", "所属村", "项目", "期间", "备注")
#: Payees named in the missing-card message; the rest are counted.
_LIST_IN_MESSAGE = 20

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPE = "text/csv; charset=utf-8"


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
        out: list[list[str | int]] = [list(HEADER)]
        for i, x in enumerate(self.lines, 1):
            out.append([i, x.payee_name, x.card_number, Money(x.amount).format_yuan(), x.reference, x.village,
                        self.program, self.period, x.note])
        out.append(["合计", f"{len(self.lines)} 笔", "", Money(self.total).format_yuan(), "", "", "", "", ""])
        return out


def _village_label(code: str) -> str:
    r = RegionCode.parse(code)
    return f"{r.name}（{code}）" if r.name else code


async def build(sessions: async_sessionmaker[AsyncSession], members: MembersClient, batch: str, *,
                caller: Caller | None = None, token: str | None = None) -> PaymentFileData:
    """Join the batch's payments with their payees' details from members.

    ``caller`` (None for the CLI's direct database access) must cover the
    batch's region; ``token``, when given, is forwarded to members so it
    checks *that* caller's ``members.payees.read`` and audits them, else
    members sees a ``system`` token over the batch's region.
    """
    bid = parse_id(batch, "paymentBatches", "payment_batch")
    async with sessions() as s:
        row = await s.get(PaymentBatchRow, bid)
        if row is None:
            raise NotFound(f"支付批次 paymentBatches/{bid} 不存在", reason="PAYMENT_BATCH_NOT_FOUND")
        if caller is not None:
            caller.require_region(row.region)
        program = await s.get(ProgramRow, row.program_id)
        pays = (await s.execute(
            select(PaymentRow.id.label("payment_id"), PaymentRow.payee, PaymentRow.household_id,
                   PaymentRow.village, PaymentRow.amount)
            .where(in_batch(row)).order_by(PaymentRow.id))).all()
        # A per-household payment written before the projection knew the 户主 names the household.
        heads = await household_heads(s, [p.payee for p in pays if p.payee.startswith("households/")])
    if not pays:
        raise FailedPrecondition(f"支付批次 paymentBatches/{bid} 没有支付明细，无需生成支付文件", reason="EMPTY_BATCH")
    per_household = program is not None and program.beneficiary == "HOUSEHOLD"
    payee_of = {p.payment_id: heads.get(p.payee, "") if p.payee.startswith("households/") else p.payee for p in pays}
    no_head = sorted({p.payee for p in pays if not payee_of[p.payment_id]})
    if no_head:
        raise FailedPrecondition(
            f"以下家庭尚无户主信息，支付文件未生成，请先在成员管理中登记户主：{_listing(no_head)}",
            reason="PAYEE_UNKNOWN", metadata={"count": str(len(no_head))})
    details = await members.batch_get_payees(payee_of.values(), row.region, token=token)
    lacking = [f"{mask_name(details[p].display_name)}（{p}）" for p in dict.fromkeys(payee_of.values())
               if not details[p].card_number]
    if lacking:
        raise FailedPrecondition(
            f"以下 {len(lacking)} 名收款人没有登记一卡通账号，支付文件未生成，请先在成员管理中补录后再导出：{_listing(lacking)}",
            reason="MISSING_CARD_NUMBER", metadata={"count": str(len(lacking))})
    bname = f"paymentBatches/{bid}"
    note = "按户发放（户主收款）" if per_household else "按人发放"
    return PaymentFileData(
        batch=bname, program=program.name if program else "", period=row.period,
        lines=[Line(payee_name=details[payee_of[p.payment_id]].display_name,
                    card_number=details[payee_of[p.payment_id]].card_number, amount=p.amount,
                    reference=f"{bname}/payments/{p.payment_id}", village=_village_label(p.village), note=note)
               for p in pays])


def _listing(items: list[str]) -> str:
    shown = "、".join(items[:_LIST_IN_MESSAGE])
    return shown + (f" 等 {len(items)} 项" if len(items) > _LIST_IN_MESSAGE else "")


def render_csv(data: PaymentFileData) -> bytes:
    """UTF-8 with BOM (Excel opens it), CRLF; card numbers as plain digits."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(data.rows())
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def render_xlsx(data: PaymentFileData) -> bytes:
    """One sheet 支付明细; card numbers as text so long ones keep every digit, amounts as numbers (0.00)."""
    wb = Workbook()
    ws = wb.active
    ws.title = "支付明细"
    rows = data.rows()
    for r in rows:
        ws.append(r)
    for (cell,) in ws.iter_rows(min_row=2, min_col=4, max_col=4):
        cell.value, cell.number_format = Decimal(str(cell.value)), "0.00"  # a number the bank can sum
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for cell in ws[ws.max_row]:
        cell.font = Font(bold=True)
    for col, width in zip("ABCDEFGHI", (6, 12, 24, 12, 34, 26, 28, 10, 20)):
        ws.column_dimensions[col].width = width
    ws.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


async def payment_file(sessions: async_sessionmaker[AsyncSession], members: MembersClient,
                       req: funds_pb2.GetPaymentFileRequest, caller: Caller | None, token: str | None) -> funds_pb2.PaymentFile:
    """``GetPaymentFile``: the rendered file in the response, not stored."""
    data = await build(sessions, members, req.payment_batch, caller=caller, token=token)
    is_csv = req.format == funds_pb2.PAYMENT_FILE_FORMAT_CSV
    content = render_csv(data) if is_csv else render_xlsx(data)
    return funds_pb2.PaymentFile(
        filename=f"支付文件_{data.batch.replace('/', '-')}_{data.period}.{'csv' if is_csv else 'xlsx'}",
        content_type=CSV_TYPE if is_csv else XLSX_TYPE, content=content, payment_count=len(data.lines),
        total=common_pb2.Money(fen=data.total))
