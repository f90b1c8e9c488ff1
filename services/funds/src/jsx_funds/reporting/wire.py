"""Reporting presenters: a program's figures → ``ProgramReport``, the clerks' sentence, and the xlsx 项目报表."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2
from jsx_funds.adapters import bus
from jsxcore.values import Period, RegionCode


def wan_yuan(fen: int) -> str:
    """Fen as 万元 with at most two decimals and no trailing zeros: 61_490_000_00 → "614.9"."""
    text = f"{(Decimal(fen) / Decimal(1_000_000)).quantize(Decimal('0.01')):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def summary(fund_total: int, households: int, people: int, income_gained: int = 0) -> str:
    text = f"资金总额 {wan_yuan(fund_total)} 万元，惠及计生家庭 {households} 户 {people} 人"
    return text + (f"，带动增收 {wan_yuan(income_gained)} 万元" if income_gained > 0 else "")


@dataclass(frozen=True)
class ProgramFigures:
    """What a program report says, in 分 and counts."""

    program_id: int
    region: RegionCode
    period: Period | None
    states: dict[str, int]
    amounts: dict[str, int]
    approved: int
    paid: int
    households: int
    persons: int
    people: int
    fund_total: int
    income_gained: int


def report_message(f: ProgramFigures) -> funds_pb2.ProgramReport:
    out = funds_pb2.ProgramReport(
        program=bus.program_name(f.program_id),
        region=common_pb2.RegionCode(code=f.region.code),
        states=[
            funds_pb2.StateCount(
                state=funds_pb2.ApplicationState.Value("APPLICATION_STATE_" + st),
                count=n,
                amount=common_pb2.Money(fen=f.amounts.get(st, 0)),
            )
            for st, n in sorted(f.states.items())
        ],
        households_helped=f.households,
        persons_helped=f.persons,
        amount_approved=common_pb2.Money(fen=f.approved),
        amount_paid=common_pb2.Money(fen=f.paid),
        fund_total=common_pb2.Money(fen=f.fund_total),
        people_helped=f.people,
        income_gained=common_pb2.Money(fen=f.income_gained),
        summary=summary(f.fund_total, f.households, f.people, f.income_gained),
    )
    if f.period is not None:
        out.period.CopyFrom(common_pb2.Period(code=str(f.period)))
    return out


def reports_xlsx(reports: list[tuple[str, funds_pb2.ProgramReport]], path: str | Path) -> None:
    """Write ``(program display name, report)`` rows as an xlsx 项目报表, amounts in 元 and 万元.

    The 三结合 income gained is the last column (after 说明), so sheets read by column position
    before it was added still line up."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.worksheet.worksheet import Worksheet

    wb = Workbook()
    ws = wb.active
    assert isinstance(ws, Worksheet)  # a new workbook's one sheet
    ws.title = "项目报表"
    header = [
        "项目",
        "项目编号",
        "地区代码",
        "期间",
        "资金总额（万元）",
        "批准金额（元）",
        "已支付（元）",
        "惠及户数",
        "惠及人数",
        "说明",
        "带动增收（元）",
    ]
    ws.append(header)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for name, r in reports:
        ws.append(
            [
                name,
                r.program,
                r.region.code,
                r.period.code or "全部",
                float(Decimal(wan_yuan(r.fund_total.fen))),
                Decimal(r.amount_approved.fen) / 100,
                Decimal(r.amount_paid.fen) / 100,
                r.households_helped,
                r.people_helped,
                r.summary,
                Decimal(r.income_gained.fen) / 100,
            ]
        )
    for col, width in zip("ABCDEFGHIJK", (28, 14, 12, 10, 16, 16, 16, 10, 10, 48, 16), strict=True):
        ws.column_dimensions[col].width = width
    for row in ws.iter_rows(min_row=2, min_col=6, max_col=7):
        for cell in row:
            cell.number_format = "#,##0.00"
    for (cell,) in ws.iter_rows(min_row=2, min_col=11, max_col=11):
        cell.number_format = "#,##0.00"
    wb.save(str(path))
