"""Payment batches: pay a program's beneficiaries for a period, once each.

Who is paid:

* **Periodic programs** (特别扶助, monthly): every beneficiary enrolled in the
  program in the region — an application approved through 公示 (READY_TO_PAY,
  or already paid in an earlier batch) for a period starting on or before
  this one — whose household still has a situation in force on the period's
  first day (from the members projection). Eligibility and the amount are
  asked of the region's plugins for *this* period, so 2022-08 uses the rule
  in force on 2022-08-01 (洪江 940/580 元, 沅陵 the national 590/460 元).
* **Other programs**: every application for exactly this period that is
  READY_TO_PAY, at its entitled amount.

Nothing is paid twice: each payment's business key is
``programs/{p}/beneficiaries/{b}/periods/{period}`` and ``payments.payment_key``
is UNIQUE. The batch runs in one transaction holding the fund's row lock, and
re-reads which keys are paid after taking it, so concurrent or retried batch
requests pay only what is still unpaid (and a request with nothing left
fails with ``NOTHING_TO_PAY``); a crash mid-batch rolls the whole batch back.
The fund is debited directly (Dr EXPENSE, Cr AVAILABLE); if it cannot cover
the batch, ``INSUFFICIENT_FUNDS`` and nothing is posted.

The payment file (:meth:`BatchesService.payment_file_csv`) lists payee and
household resource ids, village, amount and the payment reference: the funds
service holds no names or card numbers, so the bank layout's name/card
columns are left for the members service to fill (see README).
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import events_pb2, funds_pb2
from jsxcore import hookspecs as hs
from jsxcore.auth import Caller
from jsxcore.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound
from jsxcore.plugins import PluginHost
from jsxcore.values import Money, Period, PeriodKind, RegionCode

from jsx_funds import domain as d
from jsx_funds.adapters import bus, db
from jsx_funds.adapters.db import (
    ApplicationRow,
    BatchPaymentRow,
    HouseholdProjection,
    PaymentBatchRow,
    PaymentRow,
    ProgramRow,
)
from jsx_funds.consumers import household_situations
from jsx_funds.programs import _SITUATION_ORDER, RULE_TYPE, ProgramsService, effective_state
from jsx_funds.service import actor_of, decode_token, encode_token, locked_fund, page_size, parse_id, pay, region_prefix, ts

#: Programs paid every period to enrolled beneficiaries, and the period kind they are paid by.
PERIODIC = {"SPECIAL_SUPPORT": PeriodKind.MONTH}
#: Application states that mean "enrolled" for a periodic program (公示 over, paid before, …).
_ENROLLED = ("IN_PUBLICITY", "PAYMENT_ISSUED", "PAID", "PAYMENT_FAILED")


def payment_key(program_id: int, beneficiary: str, period: Period | str) -> str:
    """The business key paid at most once (UNIQUE in ``payments``)."""
    return f"programs/{program_id}/beneficiaries/{beneficiary}/periods/{period}"


def batch_name(batch_id: int) -> str:
    return f"paymentBatches/{batch_id}"


class _Planned:
    __slots__ = ("app", "amount", "basis", "key")

    def __init__(self, app: ApplicationRow, amount: int, basis: list[str], key: str) -> None:
        self.app, self.amount, self.basis, self.key = app, amount, basis, key


class BatchesService(ProgramsService):
    """CreatePaymentBatch, GetPaymentBatch, ListPayments and the payment file."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], plugins: PluginHost, *,
                 on_commit: Callable[[], None] | None = None, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(sessions, plugins, on_commit=on_commit, clock=clock)

    async def create_payment_batch(self, req: funds_pb2.CreatePaymentBatchRequest, caller: Caller | None) -> funds_pb2.PaymentBatch:
        period = Period.parse(req.period.code, field="period.code")
        if not req.region.code:
            raise InvalidArgument.field("region.code", "请填写发放地区的行政区划代码，例如 431281", reason="MISSING_REGION")
        region = RegionCode.parse(req.region.code, field="region.code")
        if caller is not None:
            caller.require_region(region)
        now = self.clock()
        async with self.sessions() as s:
            program = await self._program(s, req.program, "program", caller)
            if not RegionCode(program.region).contains(region):
                raise InvalidArgument.field("region.code", f"地区 {region.short} 不在项目主办地区 "
                                            f"{RegionCode(program.region).short} 内", reason="OUT_OF_PROGRAM_REGION")
            kind = PERIODIC.get(program.type)
            if kind is not None and period.kind is not kind:
                raise InvalidArgument.field("period.code", f"该项目按月发放，请填写月份，例如 {period.start.year}-08",
                                            reason="PERIOD_KIND")
            stmt = select(ApplicationRow).where(
                ApplicationRow.program_id == program.id,
                ApplicationRow.village.startswith(region_prefix(region))).order_by(ApplicationRow.id)
            stmt = stmt.where(ApplicationRow.state.in_(_ENROLLED)) if kind else stmt.where(
                ApplicationRow.state == "IN_PUBLICITY", ApplicationRow.period == str(period))
            apps = [a for a in (await s.execute(stmt)).scalars()
                    if (a.state != "IN_PUBLICITY" or effective_state(a, now) == "READY_TO_PAY")
                    and (not kind or Period.parse(a.period).start <= period.start)]
            # Rules are asked outside the write transaction; what is already paid is re-read under the lock.
            plan, skipped = await self._plan(s, program, apps, period, kind is not None)
        # An empty plan still goes through the idempotency check: a retried request gets its first answer.

        async def handler(s: AsyncSession) -> funds_pb2.PaymentBatch:
            fund = await locked_fund(s, program.fund_id)
            paid = set((await s.execute(select(PaymentRow.payment_key).where(
                PaymentRow.payment_key.in_([p.key for p in plan])))).scalars())
            todo = [p for p in plan if p.key not in paid]
            if not todo:
                raise FailedPrecondition(self._nothing_message(program, region, period, skipped),
                                         reason="NOTHING_TO_PAY")
            need = sum(p.amount for p in todo)
            have = sum((await db.balances_for(s, [d.AccountKey(fund.id, d.AccountKind.AVAILABLE)])).values())
            if need > have and not fund.allow_negative:
                raise FailedPrecondition(
                    f"基金 funds/{fund.id}（{fund.name}）余额不足：可用 {d.yuan(max(have, 0))} 元，"
                    f"本批 {len(todo)} 笔共需 {d.yuan(need)} 元，请先拨入资金", reason="INSUFFICIENT_FUNDS")
            batch = PaymentBatchRow(program_id=program.id, region=region.code, period=str(period), skipped=skipped,
                                    actor=actor_of(caller), request_id=req.request_id, created_at=now)
            s.add(batch)
            await s.flush()
            for p in todo:
                app = p.app
                payee = app.person or (await self._head(s, app))
                _, prow = await pay(s, fund.id, Money(p.amount), payment_key=p.key, payee=payee,
                                    actor=actor_of(caller), memo=f"{program.name} {period}", emit_event=False)
                s.add(BatchPaymentRow(payment_id=prow.journal_id, batch_id=batch.id, application_id=app.id,
                                      household_id=app.household_id, payee=payee, village=app.village,
                                      amount=p.amount, basis=p.basis, state="PENDING"))
                live = await s.get(ApplicationRow, app.id)
                assert live is not None
                live.state, live.updated_at = "PAYMENT_ISSUED", now
                bus.emit(s, events_pb2.PaymentIssued(
                    payment=f"{batch_name(batch.id)}/payments/{prow.journal_id}", payment_batch=batch_name(batch.id),
                    application=bus.application_name(app.id), program=bus.program_name(program.id),
                    household=f"households/{app.household_id}", payee=payee,
                    village=common_pb2.RegionCode(code=app.village), period=common_pb2.Period(code=str(period)),
                    amount=common_pb2.Money(fen=p.amount), fund=bus.fund_name(fund.id)))
            await s.flush()
            return await self._batch_message(s, batch)

        return await self._mutate("CreatePaymentBatch", req, funds_pb2.PaymentBatch, handler, caller)

    @staticmethod
    def _nothing_message(program: ProgramRow, region: RegionCode, period: Period, skipped: list[Any]) -> str:
        why = f"；另有 {len(skipped)} 人经规则核定本期不予发放" if skipped else ""
        return f"{program.name} 在 {region.short} 的 {period} 没有待支付的对象（已全部支付或尚无公示期满的申请）{why}"

    async def _head(self, s: AsyncSession, app: ApplicationRow) -> str:
        hh = await s.get(HouseholdProjection, app.household_id)
        return hh.head_person if hh is not None and hh.head_person else f"households/{app.household_id}"

    async def _plan(self, s: AsyncSession, program: ProgramRow, apps: list[ApplicationRow], period: Period,
                    periodic: bool) -> tuple[list[_Planned], list[dict[str, Any]]]:
        keys = {a.id: payment_key(program.id, a.beneficiary, period) for a in apps}
        paid = set((await s.execute(select(PaymentRow.payment_key).where(
            PaymentRow.payment_key.in_(list(keys.values()))))).scalars()) if keys else set()
        plan: list[_Planned] = []
        skipped: list[dict[str, Any]] = []
        seen: set[str] = set()
        for app in apps:
            key = keys[app.id]
            if key in paid or key in seen:
                continue  # paid in an earlier batch, or enrolled twice
            seen.add(key)
            if not periodic:
                plan.append(_Planned(app, app.amount_entitled, [f"按审批核定金额 {d.yuan(app.amount_entitled)} 元"], key))
                continue
            sits = {x.kind: x for x in await household_situations(s, app.household_id, period.start)}
            situation = next((k for k in _SITUATION_ORDER if k in sits), hs.Situation.OTHER.value)
            attributes = dict(app.attributes or {})
            if situation == "SPECIAL_DISABLED" and sits["SPECIAL_DISABLED"].disability_grade:
                attributes.setdefault("child_disability_grade", str(sits["SPECIAL_DISABLED"].disability_grade))
            birth = attributes.get("birth_date")
            village = RegionCode(app.village)
            who = hs.Beneficiary(
                person_id=app.person or app.beneficiary, household_id=f"households/{app.household_id}", region=village,
                situation=situation, unit="PERSON" if app.person else "HOUSEHOLD",
                birth_date=datetime.strptime(birth, "%Y-%m-%d").date() if birth else None, attributes=attributes)
            rule_type = RULE_TYPE.get(program.type, program.custom_type)
            ctx = {"program_year": program.year}
            try:
                elig = await self.plugins.acall("jsx_program_eligibility", village, program_type=rule_type,
                                                beneficiary=who, period=period, context=ctx)
                if not elig.value.eligible:
                    skipped.append({"application": bus.application_name(app.id), "reasons": list(elig.value.reasons)})
                    continue
                amt = await self.plugins.acall("jsx_entitlement_amount", village, program_type=rule_type,
                                               beneficiary=who, period=period, context=ctx)
            except DomainError as e:
                # One beneficiary's rule refusing (e.g. no situation any more) must not stop the others.
                skipped.append({"application": bus.application_name(app.id), "reasons": [e.message]})
                continue
            if amt.value.amount.fen <= 0:
                skipped.append({"application": bus.application_name(app.id), "reasons": ["按规则核定金额为 0 元"]})
                continue
            basis = [*amt.value.basis, f"规则插件 {amt.plugin} {amt.plugin_version}"]
            plan.append(_Planned(app, amt.value.amount.fen, basis, key))
        return plan, skipped

    async def _batch_message(self, s: AsyncSession, batch: PaymentBatchRow) -> funds_pb2.PaymentBatch:
        rows = (await s.execute(select(BatchPaymentRow.state, func.count(), func.coalesce(func.sum(BatchPaymentRow.amount), 0))
                                .where(BatchPaymentRow.batch_id == batch.id).group_by(BatchPaymentRow.state))).all()
        by = {st: (int(n), int(total)) for st, n, total in rows}
        n = sum(v[0] for v in by.values())
        paid, failed = by.get("PAID", (0, 0)), by.get("FAILED", (0, 0))
        state = "ISSUED" if paid[0] + failed[0] == 0 else "SETTLED" if paid[0] + failed[0] == n else "PARTIALLY_SETTLED"
        return funds_pb2.PaymentBatch(
            name=batch_name(batch.id), program=bus.program_name(batch.program_id),
            region=common_pb2.RegionCode(code=batch.region), period=common_pb2.Period(code=batch.period),
            state=funds_pb2.PaymentBatchState.Value("PAYMENT_BATCH_STATE_" + state), payment_count=n,
            total=common_pb2.Money(fen=sum(v[1] for v in by.values())),
            paid_count=paid[0], paid_total=common_pb2.Money(fen=paid[1]),
            failed_count=failed[0], failed_total=common_pb2.Money(fen=failed[1]),
            audit=common_pb2.AuditStamp(actor=batch.actor, time=ts(batch.created_at), request_id=batch.request_id))

    async def _batch(self, s: AsyncSession, name: str, field: str, caller: Caller | None) -> PaymentBatchRow:
        bid = parse_id(name, "paymentBatches", field)
        row = await s.get(PaymentBatchRow, bid)
        if row is None:
            raise NotFound(f"支付批次 paymentBatches/{bid} 不存在", reason="PAYMENT_BATCH_NOT_FOUND")
        if caller is not None:
            caller.require_region(row.region)
        return row

    async def get_payment_batch(self, req: funds_pb2.GetPaymentBatchRequest, caller: Caller | None) -> funds_pb2.PaymentBatch:
        async with self.sessions() as s:
            return await self._batch_message(s, await self._batch(s, req.name, "name", caller))

    async def list_payments(self, req: funds_pb2.ListPaymentsRequest, caller: Caller | None) -> funds_pb2.ListPaymentsResponse:
        limit = page_size(req.page_size)
        state = funds_pb2.PaymentState.Name(req.state)[len("PAYMENT_STATE_"):] if req.state else ""
        key = f"payments:{req.payment_batch}:{state}"
        after = decode_token(req.page_token, key)
        async with self.sessions() as s:
            batch = await self._batch(s, req.payment_batch, "payment_batch", caller)
            stmt = (select(BatchPaymentRow).where(BatchPaymentRow.batch_id == batch.id, BatchPaymentRow.payment_id > after)
                    .order_by(BatchPaymentRow.payment_id).limit(limit + 1))
            if state:
                stmt = stmt.where(BatchPaymentRow.state == state)
            rows = (await s.execute(stmt)).scalars().all()
        more = len(rows) > limit
        rows = rows[:limit]
        return funds_pb2.ListPaymentsResponse(
            payments=[funds_pb2.Payment(
                name=f"{batch_name(batch.id)}/payments/{r.payment_id}", application=bus.application_name(r.application_id),
                household=f"households/{r.household_id}", payee=r.payee, amount=common_pb2.Money(fen=r.amount),
                state=funds_pb2.PaymentState.Value("PAYMENT_STATE_" + r.state)) for r in rows],
            next_page_token=encode_token(rows[-1].payment_id, key) if more else "")

    async def payment_file_csv(self, batch_id: int) -> str:
        """The batch's payment file (UTF-8 with BOM so Excel opens it; amounts in 元 with 2 decimals)."""
        async with self.sessions() as s:
            batch = await self._batch(s, batch_name(batch_id), "payment_batch", None)
            program = await s.get(ProgramRow, batch.program_id)
            rows = (await s.execute(select(BatchPaymentRow).where(BatchPaymentRow.batch_id == batch.id)
                                    .order_by(BatchPaymentRow.payment_id))).scalars().all()
        out = io.StringIO()
        out.write("\ufeff")
        w = csv.writer(out, lineterminator="\r\n")
        w.writerow(["序号", "收款人编号", "户编号", "村（社区）代码", "金额（元）", "发放期间", "项目", "业务参考号"])
        for i, r in enumerate(rows, 1):
            w.writerow([i, r.payee, f"households/{r.household_id}", r.village, Money(r.amount).format_yuan(),
                        batch.period, program.name if program else "", f"{batch_name(batch.id)}/payments/{r.payment_id}"])
        w.writerow(["合计", len(rows), "", "", Money(sum(r.amount for r in rows)).format_yuan(), "", "", ""])
        return out.getvalue()

