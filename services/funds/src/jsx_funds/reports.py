"""Program reports (项目报表): money, payments and the families helped.

Per program, region (the program's, or a part of it) and period (a year
"2022", a quarter or a month; unset = every period):

* 资金总额 — the program's budget, or, when it has none, the money allocated
  into its fund (the fund's total income);
* applications by state and the amount approved (approved or later);
* amount paid — payments the bank confirmed (PAID), not those still pending
  or failed;
* households helped — distinct households with a PAID payment; people helped
  — distinct persons paid for per-person programs (特别扶助 pays each
  parent), the members of the households paid for per-household programs
  (member count from the members projection; at least the 户主).
* income gained (三结合 绩效) — the ``income_gained`` recorded in the
  三结合 details of the report's applications that are PAID (the bank
  confirmed the payment), in the report's region and with their period in
  the report's period; applications still in review, in 公示, pending at the
  bank or failed do not count, nor do other programs' applications (they
  carry no 三结合 details).

The sentence clerks put in their reports comes with it:
"资金总额 614.9 万元，惠及计生家庭 1515 户 4269 人" (", 带动增收 … 万元" when
income was gained). :func:`reports_xlsx` writes
reports as a spreadsheet (openpyxl).
"""
from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2
from jsxcore.auth import Caller
from jsxcore.values import Period, RegionCode

from jsx_funds.adapters import bus, db
from jsx_funds.adapters.db import (
    ApplicationRow,
    BankResultRow,
    HouseholdProjection,
    PaymentBatchRow,
    PaymentRow,
    ProgramRow,
    in_batch,
)
from jsx_funds.bank import BankService
from jsx_funds.programs import effective_state
from jsx_funds.service import region_prefix

#: Application states that count as approved (the amount is spoken for).
APPROVED_STATES = ("APPROVED", "IN_PUBLICITY", "READY_TO_PAY", "OBJECTED", "PAYMENT_ISSUED", "PAID", "PAYMENT_FAILED")


def wan_yuan(fen: int) -> str:
    """Fen as 万元 with at most two decimals and no trailing zeros: 61_490_000_00 → "614.9"."""
    text = f"{(Decimal(fen) / Decimal(1_000_000)).quantize(Decimal('0.01')):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def summary(fund_total: int, households: int, people: int, income_gained: int = 0) -> str:
    text = f"资金总额 {wan_yuan(fund_total)} 万元，惠及计生家庭 {households} 户 {people} 人"
    return text + (f"，带动增收 {wan_yuan(income_gained)} 万元" if income_gained > 0 else "")


def income_gained(apps: list[ApplicationRow], now) -> int:  # type: ignore[no-untyped-def]
    """Σ 三结合 ``income_gained`` (分) over the applications that are PAID."""
    return sum(int(a.details["income_gained_fen"]) for a in apps
               if a.details and a.details.get("kind") == "sanjiehe" and effective_state(a, now) == "PAID")


def _within(code: str, period: Period | None) -> bool:
    return period is None or period.contains(Period.parse(code))


class ReportsService(BankService):
    """GetProgramReport (and everything of :class:`BankService`)."""

    async def get_program_report(self, req: funds_pb2.GetProgramReportRequest,
                                 caller: Caller | None) -> funds_pb2.ProgramReport:
        period = Period.parse(req.period.code, field="period.code") if req.period.code else None
        async with self.sessions() as s:
            program = await self._program(s, req.program, "program", caller)
            if req.region.code:
                region = RegionCode.parse(req.region.code, field="region.code")
                if caller is not None:
                    caller.require_region(region)
            else:
                region = caller.region if caller is not None else RegionCode(program.region)
            # A region above the program's (the province asking) means the whole program.
            if region.contains(RegionCode(program.region)):
                region = RegionCode(program.region)
            return await program_report(s, program, region, period, self.clock())


async def program_report(s: AsyncSession, program: ProgramRow, region: RegionCode, period: Period | None,
                         now) -> funds_pb2.ProgramReport:  # type: ignore[no-untyped-def]
    """The figures of ``program`` in ``region`` for ``period`` (None = all)."""
    prefix = region_prefix(region)
    apps = [a for a in (await s.execute(select(ApplicationRow).where(
        ApplicationRow.program_id == program.id, ApplicationRow.village.startswith(prefix)))).scalars()
        if _within(a.period, period)]
    states: Counter[str] = Counter()
    amounts: Counter[str] = Counter()
    for a in apps:
        st = effective_state(a, now)
        states[st] += 1
        amounts[st] += a.amount_entitled
    batches = [b for b in (await s.execute(select(PaymentBatchRow).where(
        PaymentBatchRow.program_id == program.id))).scalars() if _within(b.period, period)]
    paid = [row for b in batches for row in (await s.execute(
        select(PaymentRow.household_id, PaymentRow.payee, PaymentRow.amount)
        .join(BankResultRow, BankResultRow.payment_id == PaymentRow.id)
        .where(in_batch(b), BankResultRow.state == "PAID", PaymentRow.village.startswith(prefix)))).all()]
    households = {h for h, _, _ in paid}
    if program.beneficiary == "PERSON":
        people = len({p for _, p, _ in paid})
    else:
        sizes = dict((await s.execute(select(HouseholdProjection.household_id, HouseholdProjection.member_count)
                                      .where(HouseholdProjection.household_id.in_(households)))).all()) if households else {}
        people = sum(max(int(sizes.get(h) or 0), 1) for h in households)
    fund_total = program.budget or (await db.fund_balance(s, program.fund_id)).income.fen
    income = income_gained(apps, now)
    out = funds_pb2.ProgramReport(
        program=bus.program_name(program.id), region=common_pb2.RegionCode(code=region.code),
        states=[funds_pb2.StateCount(state=funds_pb2.ApplicationState.Value("APPLICATION_STATE_" + st), count=n,
                                     amount=common_pb2.Money(fen=amounts[st])) for st, n in sorted(states.items())],
        households_helped=len(households), persons_helped=len({p for _, p, _ in paid}),
        amount_approved=common_pb2.Money(fen=sum(amounts[st] for st in APPROVED_STATES)),
        amount_paid=common_pb2.Money(fen=sum(a for _, _, a in paid)),
        fund_total=common_pb2.Money(fen=fund_total), people_helped=people, income_gained=common_pb2.Money(fen=income),
        summary=summary(fund_total, len(households), people, income))
    if period is not None:
        out.period.CopyFrom(common_pb2.Period(code=str(period)))
    return out


def reports_xlsx(reports: list[tuple[str, funds_pb2.ProgramReport]], path: str | Path) -> None:
    """Write ``(program display name, report)`` rows as an xlsx 项目报表, amounts in 元 and 万元.

    The 三结合 income gained is the last column (after 说明), so sheets read by column position
    before it was added still line up."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = "项目报表"
    header = ["项目", "项目编号", "地区代码", "期间", "资金总额（万元）", "批准金额（元）", "已支付（元）",
              "惠及户数", "惠及人数", "说明", "带动增收（元）"]
    ws.append(header)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for name, r in reports:
        ws.append([name, r.program, r.region.code, r.period.code or "全部",
                   float(Decimal(wan_yuan(r.fund_total.fen))), Decimal(r.amount_approved.fen) / 100,
                   Decimal(r.amount_paid.fen) / 100, r.households_helped, r.people_helped, r.summary,
                   Decimal(r.income_gained.fen) / 100])
    for col, width in zip("ABCDEFGHIJK", (28, 14, 12, 10, 16, 16, 16, 10, 10, 48, 16)):
        ws.column_dimensions[col].width = width
    for row in ws.iter_rows(min_row=2, min_col=6, max_col=7):
        for cell in row:
            cell.number_format = "#,##0.00"
    for (cell,) in ws.iter_rows(min_row=2, min_col=11, max_col=11):
        cell.number_format = "#,##0.00"
    wb.save(str(path))
