"""Program reports (项目报表): money, payments and the families helped.

Per program, region (the program's, or a part of it) and period (a year
"2022", a quarter or a month; unset = every period):

* 资金总额 — the money the ledger moved for this program in the report's
  region and period: its payments (its batches' payments to households in
  the region, of batches whose period lies in the report's, and the payments
  made on their own for its applications in the region and period) that the
  bank has not returned — paid, or still with the bank. Not the budget and
  not the fund's balance: several programs share one fund (four programs on
  one 30 万 fund each reported 30 万), and neither a budget nor a fund knows
  a region or a period. (The ledger's earmarks (预留) name no program, so none
  is counted.)
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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.funds.v1 import funds_pb2
from jsx_funds.adapters import bus
from jsx_funds.disbursement.domain import ATTEMPT_MARK
from jsx_funds.disbursement.tables import (
    BankResultRow,
    PaymentBatchRow,
    PaymentFailureRow,
    PaymentRow,
    in_batch,
    key_range,
)
from jsx_funds.programs.service import ProgramsService, applications_of, effective_state
from jsx_funds.programs.tables import ApplicationRow, ProgramRow
from jsx_funds.projections.service import household_sizes
from jsx_funds.reporting.wire import ProgramFigures, report_message
from jsxcore.auth import Caller
from jsxcore.errors import NotFound
from jsxcore.values import Period, RegionCode

#: Application states that count as approved (the amount is spoken for).
APPROVED_STATES = ("APPROVED", "IN_PUBLICITY", "READY_TO_PAY", "OBJECTED", "PAYMENT_ISSUED", "PAID", "PAYMENT_FAILED")


def income_gained(apps: list[ApplicationRow], now: datetime) -> int:
    """Σ 三结合 ``income_gained`` (分) over the applications that are PAID."""
    return sum(
        int(a.details["income_gained_fen"])
        for a in apps
        if a.details and a.details.get("kind") == "sanjiehe" and effective_state(a, now) == "PAID"
    )


def _within(code: str, period: Period | None) -> bool:
    return period is None or period.contains(Period.parse(code))


class ReportingService:
    """GetProgramReport and the CLI's reports; reads the other contexts through their public queries."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        programs: ProgramsService,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.sessions = sessions
        self.programs = programs
        self.clock = clock or (lambda: datetime.now(UTC))

    async def get_program_report(
        self, program_id: int, region: RegionCode | None, period: Period | None, *, caller: Caller | None
    ) -> funds_pb2.ProgramReport:
        """The program's figures in ``region`` (default: the caller's, or the program's for a trusted caller)
        for ``period`` (None: every period). A region above the program's means the whole program."""
        if region is not None and caller is not None:
            caller.require_region(region)
        async with self.sessions() as s:
            program = await self.programs.program_for(s, program_id, caller)
            if region is None:
                region = caller.region if caller is not None else RegionCode(program.region)
            # A region above the program's (the province asking) means the whole program.
            if region.contains(RegionCode(program.region)):
                region = RegionCode(program.region)
            return await program_report(s, program, region, period, self.clock())

    async def program_reports(
        self,
        *,
        program_ids: Sequence[int] = (),
        region: RegionCode | None = None,
        year: int | None = None,
        caller: Caller | None,
    ) -> list[tuple[str, funds_pb2.ProgramReport]]:
        """``(program display name, report)`` for the given programs, or for every program of ``year`` run in
        ``region`` — each in ``region`` (the whole program when the region is above it; a program whose region
        lies outside ``region`` is left out) for the whole of ``year`` (None: every period). NotFound names
        the programs that do not exist."""
        period = Period.parse(str(year), field="year") if year is not None else None
        if program_ids:
            async with self.sessions() as s:
                found = [await s.get(ProgramRow, pid) for pid in program_ids]
            missing = [bus.program_name(pid) for pid, row in zip(program_ids, found, strict=True) if row is None]
            if missing:
                raise NotFound(f"项目不存在：{'、'.join(missing)}", reason="PROGRAM_NOT_FOUND")
            programs = [row for row in found if row is not None]
        elif region is not None:
            # Programs run above the region (the county's, asked for one township) report their figures in
            # it as well as those run inside it; the loop below keeps just those two kinds.
            if caller is not None:
                caller.require_region(region)
            programs = await self.programs.programs_for_report(region=None, year=year, caller=None)
        else:
            programs = await self.programs.programs_for_report(region=None, year=year, caller=caller)
        out = []
        now = self.clock()
        async with self.sessions() as s:
            for prog in programs:
                own = RegionCode(prog.region)
                where = region or own
                if where.contains(own):
                    where = own
                elif not own.contains(where):
                    continue
                out.append((prog.name, await program_report(s, prog, where, period, now)))
        return out


async def program_report(
    s: AsyncSession, program: ProgramRow, region: RegionCode, period: Period | None, now: datetime
) -> funds_pb2.ProgramReport:
    """The figures of ``program`` in ``region`` for ``period`` (None = all)."""
    prefix = region.prefix
    apps = [a for a in await applications_of(s, program.id, region) if _within(a.period, period)]
    states: Counter[str] = Counter()
    amounts: Counter[str] = Counter()
    for a in apps:
        st = effective_state(a, now)
        states[st] += 1
        amounts[st] += a.amount_entitled
    batches = [
        b
        for b in (await s.execute(select(PaymentBatchRow).where(PaymentBatchRow.program_id == program.id))).scalars()
        if _within(b.period, period)
    ]
    paid = [
        row
        for b in batches
        for row in (
            await s.execute(
                select(PaymentRow.household_id, PaymentRow.payee, PaymentRow.amount)
                .join(BankResultRow, BankResultRow.payment_id == PaymentRow.id)
                .where(in_batch(b), BankResultRow.state == "PAID", PaymentRow.village.startswith(prefix))
            )
        ).all()
    ]
    households = {h for h, _, _ in paid}
    if program.beneficiary == "PERSON":
        people = len({p for _, p, _ in paid})
    else:
        sizes = await household_sizes(s, households) if households else {}
        people = sum(max(int(sizes.get(h) or 0), 1) for h in households)
    fund_total = await _moved(s, batches, prefix) + await _paid_on_their_own(s, [a.id for a in apps])
    return report_message(
        ProgramFigures(
            program_id=program.id,
            region=region,
            period=period,
            states=dict(states),
            amounts=dict(amounts),
            approved=sum(amounts[st] for st in APPROVED_STATES),
            paid=sum(a for _, _, a in paid),
            households=len(households),
            persons=len({p for _, p, _ in paid}),
            people=people,
            fund_total=fund_total,
            income_gained=income_gained(apps, now),
        )
    )


async def _moved(s: AsyncSession, batches: list[PaymentBatchRow], prefix: str) -> int:
    """Σ the batches' payments to households in the region (village under ``prefix``) not returned by the bank."""
    total = 0
    for b in batches:
        total += int(
            (
                await s.execute(
                    select(func.coalesce(func.sum(PaymentRow.amount), 0))
                    .outerjoin(PaymentFailureRow, PaymentFailureRow.payment_id == PaymentRow.id)
                    .where(in_batch(b), PaymentRow.village.startswith(prefix), PaymentFailureRow.payment_id.is_(None))
                )
            ).scalar_one()
        )
    return total


async def _paid_on_their_own(s: AsyncSession, application_ids: list[int]) -> int:
    """Σ the payments keyed ``applications/{id}`` (and their retries) of these applications, not returned."""
    total = 0
    for i in range(0, len(application_ids), 200):
        keys = [f"applications/{a}" for a in application_ids[i : i + 200]]
        total += int(
            (
                await s.execute(
                    select(func.coalesce(func.sum(PaymentRow.amount), 0))
                    .outerjoin(PaymentFailureRow, PaymentFailureRow.payment_id == PaymentRow.id)
                    .where(
                        or_(PaymentRow.payment_key.in_(keys), *(key_range(k + ATTEMPT_MARK) for k in keys)),
                        PaymentRow.batch_id.is_(None),
                        PaymentFailureRow.payment_id.is_(None),
                    )
                )
            ).scalar_one()
        )
    return total
