"""Programs and applications: 申请 → 村/乡镇/县(/省) review → 公示 → ready to pay.

* Eligibility, amount, approval chain and 公示 length come from the region's
  rule plugins (``PluginHost.acall``), called before the write transaction
  opens; each answer is stored on the application with its provenance
  (plugin, version, hook, region, reasons) so a clerk can see why.
* The household must be in the funds service's projection of members events
  (:mod:`jsx_funds.projections`); its situation on the period's first day is
  what the rules see. No names or ID numbers are held here.
* The review chain and maker-checker, 公示, objections and the effective state
  are decided by :mod:`jsx_funds.programs.domain`. ``(application, seq)`` is
  unique, so two reviewers racing for one step cannot both record it.
* Withdrawal (撤回, :meth:`ProgramsService.withdraw_application`): before
  money moves — from any state up to READY_TO_PAY while no payment names the
  application — under the fund's row lock, the one a payment batch holds
  while it picks and pays applications, so a batch and a withdrawal never
  interleave. Who, when, why and the state it left go to
  ``application_withdrawals``; WITHDRAWN is neither committed budget nor
  payable.
* Program-specific details (``Application.details``: 贷款, 住院, 三结合,
  幸福基金): :mod:`jsx_funds.programs.details`. A 幸福基金 spending's use must
  be one the fund's village rule (``jsx_fund_allowed_uses``) allows.

Public for other contexts: :meth:`ProgramsService.program_for` (a program,
region-checked, in the caller's session), :func:`effective_state` of a row,
:func:`in_force_applications` (the applications a payment batch selects from,
as a selectable), :func:`applications_of`, :func:`set_application_state`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import events_pb2, funds_pb2
from jsx_funds import SERVICE_NAME
from jsx_funds.adapters import bus
from jsx_funds.adapters.db import aware, utcnow
from jsx_funds.adapters.members import MembersClient
from jsx_funds.callers import actor_of, list_scope, request_id_of
from jsx_funds.disbursement.tables import application_payment
from jsx_funds.ledger.service import LedgerService
from jsx_funds.ledger.tables import FundRow, lock_fund_where
from jsx_funds.programs import details as dt
from jsx_funds.programs import domain as pd
from jsx_funds.programs.tables import ApplicationRow, ApprovalStepRow, ObjectionRow, ProgramRow, WithdrawalRow
from jsx_funds.programs.wire import application_message, program_message, publicity_entry
from jsx_funds.projections import service as projections
from jsxcore import hookspecs as hs
from jsxcore import paging
from jsxcore.auth import Caller
from jsxcore.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, Unauthenticated
from jsxcore.pii import FieldCipher
from jsxcore.plugins import Decision, PluginHost
from jsxcore.usecase import Idem, mutate
from jsxcore.values import Money, Period, RegionCode


def effective_state(app: ApplicationRow, now: datetime) -> str:
    """The state ``app`` reads as at ``now`` (IN_PUBLICITY whose 公示 is over: READY_TO_PAY)."""
    return pd.effective_state(app.state, aware(app.publicity_end) if app.publicity_end is not None else None, now)


def in_force_applications(program_id: int, region: RegionCode, now: datetime) -> Select[ApplicationRow]:
    """The program's applications in ``region`` a payment may be made for: approved through 公示 (its end
    passed) or paid for before (:data:`~jsx_funds.programs.domain.IN_FORCE_STATES`). A selectable of
    :class:`ApplicationRow`: narrow it (state, period), join it, or pick columns with ``with_only_columns``."""
    return select(ApplicationRow).where(
        ApplicationRow.program_id == program_id,
        ApplicationRow.village.startswith(region.prefix),
        ApplicationRow.state.in_(pd.IN_FORCE_STATES),
        # 公示 over: a row still in 公示 waits for a later batch.
        ~(
            (ApplicationRow.state == "IN_PUBLICITY")
            & (ApplicationRow.publicity_end.is_(None) | (ApplicationRow.publicity_end > now))
        ),
    )


async def applications_of(s: AsyncSession, program_id: int, region: RegionCode) -> list[ApplicationRow]:
    """Every application of the program from households in ``region`` (for reports)."""
    return list(
        (
            await s.execute(
                select(ApplicationRow).where(
                    ApplicationRow.program_id == program_id, ApplicationRow.village.startswith(region.prefix)
                )
            )
        ).scalars()
    )


async def set_application_state(s: AsyncSession, application_id: int, state: str, now: datetime) -> None:
    """Record a payment's outcome on its application (PAYMENT_ISSUED, PAID, PAYMENT_FAILED), in the caller's
    transaction."""
    await s.execute(
        update(ApplicationRow).where(ApplicationRow.id == application_id).values(state=state, updated_at=now)
    )


async def enrolments_of(s: AsyncSession, person: str) -> list[tuple[ApplicationRow, str]]:
    """The person's applications in force (:data:`~jsx_funds.programs.domain.IN_FORCE_STATES`), locked, with
    their program's rule type (for a life event's effect on them)."""
    rows = await s.execute(
        select(ApplicationRow, ProgramRow.type, ProgramRow.custom_type)
        .join(ProgramRow, ProgramRow.id == ApplicationRow.program_id)
        .where(ApplicationRow.person == person, ApplicationRow.state.in_(pd.IN_FORCE_STATES))
        .order_by(ApplicationRow.id)
        .with_for_update(of=ApplicationRow)
    )
    return [(app, pd.rule_type(t, ct)) for app, t, ct in rows]


def note_on_application(app: ApplicationRow, decision: Decision[Any] | None, hook: str, reasons: Sequence[str]) -> None:
    """Append a decision about an application (e.g. its enrolment ended after a death) to its provenance."""
    entry = (
        _provenance(decision, tuple(reasons))
        if decision is not None
        else {"plugin": "", "plugin_version": "", "hook": hook, "region": app.village, "reasons": list(reasons)}
    )
    app.provenance = [*app.provenance, entry]


def _provenance(decision: Decision[Any], reasons: tuple[str, ...]) -> dict[str, Any]:
    return {
        "plugin": decision.plugin,
        "plugin_version": decision.plugin_version,
        "hook": decision.hook,
        "region": decision.region.code if decision.region else "",
        "reasons": list(reasons),
    }


class ProgramsService:
    """Programs, applications, approvals, 公示, objections and withdrawals.

    Use cases take plain arguments, ``caller=`` (None: a trusted in-process
    caller, no region scope) and, when they change something, ``idem=`` (the
    RPC's AIP-155 identity); they return the RPC's response message.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        plugins: PluginHost,
        *,
        ledger: LedgerService | None = None,
        notify: Callable[[], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        members: MembersClient | None = None,
        cipher: FieldCipher | None = None,
    ) -> None:
        self.sessions = sessions
        self.plugins = plugins
        #: the funds a program pays from
        self.ledger = ledger or LedgerService(sessions, notify=notify)
        #: seals health details (住院) at rest, DESIGN.md §3.7; without it they are refused
        self.cipher = cipher
        #: the members service over gRPC, when configured: applications are checked
        #: against it, and 公示 entries get masked names from it
        self.members = members
        self.notify = notify
        self.clock = clock or (lambda: datetime.now(UTC))

    async def _run(
        self,
        idem: Idem | None,
        response_type: type[funds_pb2.Application],
        work: Callable[[AsyncSession], Awaitable[funds_pb2.Application]],
        caller: Caller | None,
    ) -> funds_pb2.Application:
        return await mutate(self.sessions, idem, response_type, work, caller=caller, notify=self.notify)

    # ------------------------------------------------------------ programs

    async def create_program(
        self, new: pd.NewProgram, *, caller: Caller | None, idem: Idem | None
    ) -> funds_pb2.Program:
        if caller is not None:
            caller.require_region(new.region)

        async def work(s: AsyncSession) -> funds_pb2.Program:
            fund = await self.ledger.fund_for_read(s, new.fund_id, None)
            if not RegionCode(fund.region).contains(new.region):
                raise InvalidArgument.field(
                    "program.fund",
                    f"基金 funds/{new.fund_id} 属于地区 {RegionCode(fund.region).short}，"
                    f"不能为地区 {new.region.short} 的项目支付，请选择本地区或上级的基金",
                    reason="FUND_OUT_OF_REGION",
                )
            row = ProgramRow(
                name=new.name,
                type=new.type,
                custom_type=new.custom_type,
                region=new.region.code,
                fund_id=new.fund_id,
                beneficiary=new.beneficiary,
                approval_levels=",".join(new.approval_levels),
                publicity_days=new.publicity_days,
                year=new.year,
                budget=new.budget,
                start_date=new.start_date,
                end_date=new.end_date,
                description=new.description,
                created_at=utcnow(),
                created_by=actor_of(caller),
            )
            s.add(row)
            await s.flush()
            return program_message(row)

        return await mutate(self.sessions, idem, funds_pb2.Program, work, caller=caller, notify=self.notify)

    async def program_for(self, s: AsyncSession, program_id: int, caller: Caller | None) -> ProgramRow:
        """The program, in the caller's session: NotFound, or PermissionDenied unless the caller's region
        and the program's lie one within the other (a county clerk reads the province's program)."""
        row = await s.get(ProgramRow, program_id)
        if row is None:
            raise NotFound(f"项目 programs/{program_id} 不存在，请核对项目编号", reason="PROGRAM_NOT_FOUND")
        if caller is not None and not (caller.in_region(row.region) or RegionCode(row.region).contains(caller.region)):
            caller.require_region(row.region)
        return row

    @staticmethod
    async def mark_payment_issued(s: AsyncSession, applications: Sequence[int] | Select[Any], now: datetime) -> None:
        """A payment batch paid these applications (ids, or a query of them): PAYMENT_ISSUED, in its transaction."""
        await s.execute(
            update(ApplicationRow)
            .where(ApplicationRow.id.in_(applications))
            .values(state="PAYMENT_ISSUED", updated_at=now)
            .execution_options(synchronize_session=False)
        )

    async def get_program(self, program_id: int, *, caller: Caller | None) -> funds_pb2.Program:
        async with self.sessions() as s:
            return program_message(await self.program_for(s, program_id, caller))

    async def list_programs(
        self, *, region: RegionCode | None, program_type: str, page_size: int, page_token: str, caller: Caller | None
    ) -> funds_pb2.ListProgramsResponse:
        scope = list_scope(region, caller)
        page = paging.page(
            page_size,
            page_token,
            query=f"{SERVICE_NAME}/ListPrograms",
            filters=(scope.code if scope else "", program_type),
        )
        stmt = select(ProgramRow)
        if scope is not None:
            stmt = stmt.where(ProgramRow.region.startswith(scope.prefix))
        if program_type:
            stmt = stmt.where(ProgramRow.type == program_type)
        async with self.sessions() as s:
            rows, token = page.cut(
                (await s.execute(page.apply(stmt, ProgramRow.id))).scalars().all(), key=lambda r: r.id
            )
        return funds_pb2.ListProgramsResponse(programs=[program_message(r) for r in rows], next_page_token=token)

    async def programs_for_report(
        self, *, region: RegionCode | None, year: int | None, caller: Caller | None
    ) -> list[ProgramRow]:
        """Every program run in ``region`` (its subtree; None: everywhere), of ``year`` if given, oldest first."""
        scope = list_scope(region, caller)
        stmt = select(ProgramRow).order_by(ProgramRow.id)
        if scope is not None:
            stmt = stmt.where(ProgramRow.region.startswith(scope.prefix))
        if year is not None:
            stmt = stmt.where(ProgramRow.year == year)
        async with self.sessions() as s:
            return list((await s.execute(stmt)).scalars())

    # ------------------------------------------------------------ applications

    async def submit_application(
        self, new: pd.NewApplication, *, caller: Caller | None, idem: Idem | None
    ) -> funds_pb2.Application:
        a = new
        # The household must exist at members too (the projection may lag).
        if self.members is not None and caller is not None:
            await self.members.get_household(a.household, caller.region)
            if a.person:
                found = await self.members.batch_get_persons([a.person], caller.region)
                known = found.get(a.person)
                pd.check_person_in_household(a.person, known.household if known is not None else None, a.household)

        # Gather facts and ask the rules before the write transaction opens (plugins may be slow).
        async with self.sessions() as s:
            program = await self.program_for(s, a.program_id, caller)
            pd.check_details_kind(a.details_kind, program.type)
            fund = (
                await self.ledger.fund_for_read(s, program.fund_id, None)
                if a.details_kind == "happiness_fund"
                else None
            )
            hh = await projections.household(s, a.household_id)
            if hh is None:
                raise NotFound(
                    f"家庭 {a.household} 尚未从成员系统同步到资金系统，请先在成员系统登记该家庭，稍后再提交",
                    reason="HOUSEHOLD_NOT_FOUND",
                    metadata={"household": a.household},
                )
            situations = await projections.household_situations(s, a.household_id, a.period.start)
            claims = int(
                (
                    await s.execute(
                        select(func.count())
                        .select_from(ApplicationRow)
                        .where(
                            ApplicationRow.program_id == program.id,
                            ApplicationRow.household_id == a.household_id,
                            ApplicationRow.state.not_in(pd.CLOSED_UNPAID),
                        )
                    )
                ).scalar_one()
            )
        village = RegionCode(hh.village)
        if a.village is not None and a.village != village:
            raise InvalidArgument.field(
                "application.village.code",
                f"该家庭登记在 {village.short}，与填写的村 {a.village.short} 不一致",
                reason="VILLAGE_MISMATCH",
            )
        if caller is not None:
            caller.require_region(village)
        if not RegionCode(program.region).contains(village):
            raise FailedPrecondition(
                f"该家庭（{village.short}）不在项目主办地区 {RegionCode(program.region).short} 内",
                reason="OUT_OF_PROGRAM_REGION",
            )
        period = a.period
        if (program.start_date and period.end < program.start_date) or (
            program.end_date and period.start > program.end_date
        ):
            raise FailedPrecondition(f"申请期间 {period} 不在项目受理期内", reason="OUTSIDE_PROGRAM_PERIOD")
        if program.beneficiary == "PERSON":
            if not a.person.startswith("persons/"):
                raise InvalidArgument.field(
                    "application.person", "该项目按人发放，请填写受益人 persons/人员编号", reason="MISSING_PERSON"
                )
            person = a.person
        else:
            person = ""
        kinds = {x.kind: x for x in situations}
        situation = pd.situation_seen(kinds)
        attributes = dict(a.attributes)
        if (
            situation == "SPECIAL_DISABLED"
            and kinds["SPECIAL_DISABLED"].disability_grade
            and "child_disability_grade" not in attributes
        ):
            attributes["child_disability_grade"] = str(kinds["SPECIAL_DISABLED"].disability_grade)
        details = dict(a.details) if a.details is not None else None
        use_provenance = None
        if details is not None and details["kind"] == "happiness_fund":
            assert fund is not None  # programs.fund_id is a foreign key
            use_provenance = await self._check_happiness_use(fund, details["use"])
        rule_type = pd.rule_type(program.type, program.custom_type)
        # The stored attributes stay the clerk's; the rules also see the details under reserved keys.
        beneficiary = hs.Beneficiary(
            person_id=person or hh.head_person,
            household_id=a.household,
            region=village,
            situation=situation,
            unit="PERSON" if program.beneficiary == "PERSON" else "HOUSEHOLD",
            birth_date=a.birth_date,
            attributes={**attributes, **pd.details_attributes(details)},
        )
        context = {"claims_so_far": claims, "member_count": hh.member_count, "program_year": program.year}

        elig = await self.plugins.acall(
            "jsx_program_eligibility",
            village,
            program_type=rule_type,
            beneficiary=beneficiary,
            period=period,
            context=context,
        )
        if not elig.value.eligible:
            raise FailedPrecondition(
                "不符合申请条件：" + "；".join(elig.value.reasons),
                reason="NOT_ELIGIBLE",
                metadata={"plugin": elig.plugin, "version": elig.plugin_version},
            )
        provenance = [_provenance(elig, elig.value.reasons)]
        if use_provenance is not None:
            provenance.append(use_provenance)
        try:
            amt = await self.plugins.acall(
                "jsx_entitlement_amount",
                village,
                program_type=rule_type,
                beneficiary=beneficiary,
                period=period,
                context=context,
            )
            entitled = amt.value.amount.fen
            provenance.append(_provenance(amt, amt.value.basis))
        except FailedPrecondition as e:
            if e.reason != "NO_RULE":
                raise
            if a.amount_requested <= 0:
                raise InvalidArgument.field(
                    "application.amount_requested",
                    "本地区没有该项目的金额规则，请填写申请金额（按协议或审批额度）",
                    reason="MISSING_AMOUNT",
                ) from None
            entitled = a.amount_requested
            provenance.append(
                {
                    "plugin": "",
                    "plugin_version": "",
                    "hook": "jsx_entitlement_amount",
                    "region": "",
                    "reasons": ["本地区没有该项目的金额规则，按申请金额核定，由审批人员审核"],
                }
            )
        if entitled <= 0:
            raise FailedPrecondition("按规则核定的金额为 0 元，无需申请", reason="NOTHING_ENTITLED")
        if program.approval_levels:
            chain = program.approval_levels.split(",")
        else:
            ch = await self.plugins.acall("jsx_approval_chain", village, program_type=rule_type, amount=Money(entitled))
            chain = list(ch.value.steps)
            provenance.append(_provenance(ch, ch.value.basis or (" → ".join(pd.LEVEL_LABEL[x] for x in chain),)))
        pub = await self.plugins.acall("jsx_publicity_rule", village, program_type=rule_type)
        days = program.publicity_days or pub.value.days
        working = pub.value.working_days if not program.publicity_days else False
        provenance.append(_provenance(pub, pub.value.basis or (f"公示 {days} 天",)))
        beneficiary_key = person or a.household

        async def work(s: AsyncSession) -> funds_pb2.Application:
            dup = (
                await s.execute(
                    select(ApplicationRow.id).where(
                        ApplicationRow.program_id == program.id,
                        ApplicationRow.beneficiary == beneficiary_key,
                        ApplicationRow.period == str(period),
                    )
                )
            ).scalar()
            if dup is not None:
                raise pd.duplicate(dup)
            now = self.clock()
            row = ApplicationRow(
                program_id=program.id,
                household_id=a.household_id,
                person=person,
                beneficiary=beneficiary_key,
                village=village.code,
                period=str(period),
                amount_requested=a.amount_requested,
                amount_entitled=entitled,
                state="SUBMITTED",
                chain=",".join(chain),
                publicity_days=days,
                publicity_working_days=working,
                provenance=provenance,
                attributes=attributes,
                details=dt.seal(self.cipher, details, program.id, beneficiary_key, str(period)),
                created_by=actor_of(caller),
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            try:
                await s.flush()
            except IntegrityError:
                raise pd.duplicate(None) from None
            bus.emit(
                s,
                bus.application_event(
                    events_pb2.ApplicationSubmitted,
                    row,
                    program,
                    amount_requested=common_pb2.Money(fen=row.amount_requested),
                    amount_entitled=common_pb2.Money(fen=entitled),
                ),
            )
            return application_message(row, [], [], now, details)

        return await self._run(idem, funds_pb2.Application, work, caller)

    def _open(self, row: ApplicationRow) -> dict[str, Any] | None:
        """The application's details in the clear (health details are stored sealed)."""
        return dt.unseal(self.cipher, row.details, row.program_id, row.beneficiary, row.period)

    async def _check_happiness_use(self, fund: FundRow, use: str) -> dict[str, Any]:
        """The use must be one the rule of the fund's village allows (``jsx_fund_allowed_uses``);
        returns the provenance to store. Refusal: INVALID_ARGUMENT ``FUND_USE_NOT_ALLOWED`` naming the
        allowed uses and the plugin; no rule for the region: FAILED_PRECONDITION ``NO_RULE``."""
        name = pd.HAPPINESS_USES[use]
        region = RegionCode(fund.region)
        label = f"funds/{fund.id}（{fund.name}）"
        try:
            decision = await self.plugins.acall(
                "jsx_fund_allowed_uses", region, fund_kind=hs.FundKind.HAPPINESS_FUND.value
            )
        except FailedPrecondition as e:
            if e.reason != "NO_RULE":
                raise
            raise FailedPrecondition(
                f"基金 {label}所在地区 {region.short} 没有幸福基金用途规则，无法确认“{name}”能否列支，申请未保存；"
                f"请联系县计生协系统管理员启用规则插件后重新提交",
                reason="NO_RULE",
                metadata={"hook": "jsx_fund_allowed_uses", "region": region.code},
            ) from None
        uses = decision.value.uses
        rule = f"规则插件 {decision.plugin} {decision.plugin_version}"
        if name not in uses:
            message = (
                f"幸福基金 {label}只能用于：{'、'.join(uses) or '（无）'}（{rule}），"
                f"“{name}”不在其中，请改选允许的用途或改用其他基金"
            )
            raise InvalidArgument(
                message,
                reason="FUND_USE_NOT_ALLOWED",
                violations=[FieldViolation("application.happiness_fund.use", message)],
                metadata={
                    "plugin": decision.plugin,
                    "version": decision.plugin_version,
                    "allowed_uses": "、".join(uses),
                },
            )
        return _provenance(decision, (*decision.value.basis, f"用途“{name}”在幸福基金允许的用途内"))

    async def application_for(
        self, s: AsyncSession, application_id: int, caller: Caller | None, *, lock: bool = False
    ) -> ApplicationRow:
        """The application, in the caller's session (``lock``: its row lock for the transaction)."""
        if lock:
            # Serialise decisions/objections on one application (row lock on PostgreSQL, writer lock on SQLite).
            await s.execute(
                update(ApplicationRow)
                .where(ApplicationRow.id == application_id)
                .values(updated_at=ApplicationRow.updated_at)
            )
        row = await s.get(ApplicationRow, application_id, populate_existing=True)
        if row is None:
            raise NotFound(f"申请 applications/{application_id} 不存在，请核对申请编号", reason="APPLICATION_NOT_FOUND")
        if caller is not None:
            caller.require_region(row.village)
        return row

    async def _message(self, s: AsyncSession, row: ApplicationRow) -> funds_pb2.Application:
        steps = (
            (
                await s.execute(
                    select(ApprovalStepRow)
                    .where(ApprovalStepRow.application_id == row.id)
                    .order_by(ApprovalStepRow.seq)
                )
            )
            .scalars()
            .all()
        )
        objs = (
            (
                await s.execute(
                    select(ObjectionRow).where(ObjectionRow.application_id == row.id).order_by(ObjectionRow.id)
                )
            )
            .scalars()
            .all()
        )
        withdrawal = await s.get(WithdrawalRow, row.id) if row.state == "WITHDRAWN" else None
        return application_message(row, steps, objs, self.clock(), self._open(row), withdrawal)

    async def get_application(self, application_id: int, *, caller: Caller | None) -> funds_pb2.Application:
        async with self.sessions() as s:
            return await self._message(s, await self.application_for(s, application_id, caller))

    async def list_applications(
        self,
        *,
        region: RegionCode | None,
        state: str,
        period: Period | None,
        program_id: int | None,
        household_id: str,
        page_size: int,
        page_token: str,
        caller: Caller | None,
    ) -> funds_pb2.ListApplicationsResponse:
        """``state`` is an effective state ("" = any): READY_TO_PAY and IN_PUBLICITY split on the 公示 end."""
        scope = list_scope(region, caller)
        page = paging.page(
            page_size,
            page_token,
            query=f"{SERVICE_NAME}/ListApplications",
            filters=(scope.code if scope else "", state, str(period or ""), program_id or 0, household_id),
        )
        now = self.clock()
        stmt = select(ApplicationRow)
        if scope is not None:
            stmt = stmt.where(ApplicationRow.village.startswith(scope.prefix))
        if state == "READY_TO_PAY":
            stmt = stmt.where(ApplicationRow.state == "IN_PUBLICITY", ApplicationRow.publicity_end <= now)
        elif state == "IN_PUBLICITY":
            stmt = stmt.where(ApplicationRow.state == "IN_PUBLICITY", ApplicationRow.publicity_end > now)
        elif state:
            stmt = stmt.where(ApplicationRow.state == state)
        if period is not None:
            stmt = stmt.where(ApplicationRow.period == str(period))
        if program_id:
            stmt = stmt.where(ApplicationRow.program_id == program_id)
        if household_id:
            stmt = stmt.where(ApplicationRow.household_id == household_id)
        async with self.sessions() as s:
            rows, token = page.cut(
                (await s.execute(page.apply(stmt, ApplicationRow.id))).scalars().all(), key=lambda r: r.id
            )
            out = [await self._message(s, r) for r in rows]
        return funds_pb2.ListApplicationsResponse(applications=out, next_page_token=token)

    async def decide_application(
        self, application_id: int, decision: str, comment: str, *, caller: Caller | None, idem: Idem | None
    ) -> funds_pb2.Application:
        """One review step: APPROVE or REJECT (with a comment) by a reviewer of the step's level."""
        if caller is None:
            raise Unauthenticated("审批须由已登录的审核人员办理", reason="CALLER_REQUIRED")
        reviewer = caller

        async def work(s: AsyncSession) -> funds_pb2.Application:
            app = await self.application_for(s, application_id, reviewer, lock=True)
            pd.check_in_review(app.state)
            steps = (
                (
                    await s.execute(
                        select(ApprovalStepRow)
                        .where(ApprovalStepRow.application_id == app.id)
                        .order_by(ApprovalStepRow.seq)
                    )
                )
                .scalars()
                .all()
            )
            chain = app.chain.split(",")
            level = pd.next_level(chain, len(steps))
            want = pd.check_reviewer(
                reviewer=reviewer.subject,
                reviewer_region=reviewer.region,
                submitted_by=app.created_by,
                decided_by=[st.actor for st in steps],
                village=app.village,
                level=level,
            )
            now = self.clock()
            s.add(
                ApprovalStepRow(
                    application_id=app.id,
                    seq=len(steps),
                    level=level,
                    region=want.code,
                    decision=decision,
                    comment=comment[:1000],
                    actor=reviewer.subject,
                    request_id=request_id_of(idem),
                    created_at=now,
                )
            )
            program = await s.get(ProgramRow, app.program_id)
            assert program is not None
            state = pd.after_decision(decision, len(steps), chain)
            if state == "REJECTED":
                app.state = state
                bus.emit(
                    s,
                    bus.application_event(
                        events_pb2.ApplicationRejected,
                        app,
                        program,
                        level=funds_pb2.ApprovalLevel.Value("APPROVAL_LEVEL_" + level),
                    ),
                )
            elif state == "IN_REVIEW":
                app.state = state
            else:
                await self._check_budget(s, program, app)
                app.state = state
                app.publicity_start = now
                app.publicity_end = pd.publicity_end(now, app.publicity_days, app.publicity_working_days)
                bus.emit(
                    s,
                    bus.application_event(
                        events_pb2.ApplicationApproved,
                        app,
                        program,
                        amount_entitled=common_pb2.Money(fen=app.amount_entitled),
                    ),
                )
            app.updated_at = now
            try:
                await s.flush()
            except IntegrityError:
                raise FailedPrecondition("该审核步骤已由他人同时办理，请刷新后查看", reason="STEP_TAKEN") from None
            return await self._message(s, app)

        return await self._run(idem, funds_pb2.Application, work, caller)

    async def _check_budget(self, s: AsyncSession, program: ProgramRow, app: ApplicationRow) -> None:
        if program.budget <= 0:
            return
        # Lock the program row so two final approvals cannot both fit under the same remainder.
        await s.execute(update(ProgramRow).where(ProgramRow.id == program.id).values(budget=ProgramRow.budget))
        used = int(
            (
                await s.execute(
                    select(func.coalesce(func.sum(ApplicationRow.amount_entitled), 0)).where(
                        ApplicationRow.program_id == program.id, ApplicationRow.state.in_(pd.COMMITTED_STATES)
                    )
                )
            ).scalar_one()
        )
        pd.check_budget(program.budget, used, app.amount_entitled)

    async def lodge_objection(
        self, application_id: int, reason: str, lodged_by: str, *, caller: Caller | None, idem: Idem | None
    ) -> funds_pb2.Application:
        """An objection during 公示 (it stops payment until resolved)."""

        async def work(s: AsyncSession) -> funds_pb2.Application:
            app = await self.application_for(s, application_id, caller, lock=True)
            now = self.clock()
            pd.check_objection_open(app.state, aware(app.publicity_end) if app.publicity_end is not None else None, now)
            obj = ObjectionRow(
                application_id=app.id,
                reason=reason[:2000],
                lodged_by=lodged_by.strip()[:200],
                state="OPEN",
                lodged_actor=actor_of(caller),
                lodged_at=now,
            )
            s.add(obj)
            await s.flush()
            app.state, app.updated_at = "OBJECTED", now
            program = await s.get(ProgramRow, app.program_id)
            assert program is not None
            bus.emit(
                s,
                bus.application_event(
                    events_pb2.ApplicationObjected, app, program, objection=bus.objection_name(app.id, obj.id)
                ),
            )
            return await self._message(s, app)

        return await self._run(idem, funds_pb2.Application, work, caller)

    async def resolve_objection(
        self,
        application_id: int,
        objection_id: int,
        resolution: str,
        upheld: bool,
        *,
        caller: Caller | None,
        idem: Idem | None,
    ) -> funds_pb2.Application:
        """Upheld → REJECTED; dismissed → back to 公示 (READY_TO_PAY once it is over)."""

        async def work(s: AsyncSession) -> funds_pb2.Application:
            app = await self.application_for(s, application_id, caller, lock=True)
            obj = await s.get(ObjectionRow, objection_id)
            if obj is None or obj.application_id != app.id:
                raise NotFound(
                    f"异议 {bus.objection_name(application_id, objection_id)} 不存在", reason="OBJECTION_NOT_FOUND"
                )
            if obj.state != "OPEN":
                raise FailedPrecondition("该异议已处理", reason="OBJECTION_RESOLVED")
            now = self.clock()
            obj.state, obj.resolution, obj.resolved_at = ("UPHELD" if upheld else "DISMISSED"), resolution[:2000], now
            obj.resolved_actor = actor_of(caller)
            program = await s.get(ProgramRow, app.program_id)
            assert program is not None
            others_open = (
                0
                if upheld
                else (
                    await s.execute(
                        select(func.count())
                        .select_from(ObjectionRow)
                        .where(
                            ObjectionRow.application_id == app.id,
                            ObjectionRow.state == "OPEN",
                            ObjectionRow.id != obj.id,
                        )
                    )
                ).scalar_one()
            )
            app.state = pd.after_objection_resolved(app.state, upheld, others_open)
            if upheld:
                bus.emit(s, bus.application_event(events_pb2.ApplicationRejected, app, program))
            app.updated_at = now
            await s.flush()
            return await self._message(s, app)

        return await self._run(idem, funds_pb2.Application, work, caller)

    async def withdraw_application(
        self, application_id: int, reason: str, *, caller: Caller | None, idem: Idem | None
    ) -> funds_pb2.Application:
        """撤回: the applicant (or a clerk for them) takes an application back before money moves.

        Allowed from :data:`~jsx_funds.programs.domain.WITHDRAWABLE` (READY_TO_PAY included) while no
        payment names the application; otherwise FAILED_PRECONDITION ``NOT_WITHDRAWABLE`` naming the
        state. Records who/when/why, publishes ``ApplicationWithdrawn`` in the same transaction.
        """
        reason = pd.check_withdraw_reason(reason)

        async def work(s: AsyncSession) -> funds_pb2.Application:
            # The fund's row lock first, in one statement (on SQLite the first write takes the writer
            # lock): a payment batch holds it from picking applications until it marks them
            # PAYMENT_ISSUED, so without it a withdrawal could land between the two and be paid anyway.
            await lock_fund_where(
                s,
                select(ProgramRow.fund_id)
                .join(ApplicationRow, ApplicationRow.program_id == ProgramRow.id)
                .where(ApplicationRow.id == application_id)
                .scalar_subquery(),
            )
            app = await self.application_for(s, application_id, caller, lock=True)
            now = self.clock()
            state = effective_state(app, now)
            if state not in pd.WITHDRAWABLE:
                withdrawn = await s.get(WithdrawalRow, app.id)
                raise pd.not_withdrawable(app.id, state, aware(withdrawn.created_at) if withdrawn else None)
            payment = await application_payment(s, app.program_id, app.beneficiary, app.id)
            if payment is not None:
                raise pd.paid_not_withdrawable(state, payment)
            s.add(
                WithdrawalRow(
                    application_id=app.id,
                    previous_state=state,
                    reason=reason,
                    actor=actor_of(caller),
                    request_id=request_id_of(idem),
                    created_at=now,
                )
            )
            app.state, app.updated_at = "WITHDRAWN", now
            program = await s.get(ProgramRow, app.program_id)
            assert program is not None
            bus.emit(
                s,
                bus.application_event(
                    events_pb2.ApplicationWithdrawn,
                    app,
                    program,
                    previous_state=funds_pb2.ApplicationState.Value("APPLICATION_STATE_" + state),
                    amount_entitled=common_pb2.Money(fen=app.amount_entitled),
                ),
            )
            await s.flush()
            return await self._message(s, app)

        return await self._run(idem, funds_pb2.Application, work, caller)

    async def list_publicity(
        self,
        *,
        region: RegionCode | None,
        program_id: int | None,
        page_size: int,
        page_token: str,
        caller: Caller | None,
    ) -> funds_pb2.ListPublicityResponse:
        """What is in 公示 now; with members configured, each entry gets the payee's masked name (张*明)."""
        scope = list_scope(region, caller)
        page = paging.page(
            page_size,
            page_token,
            query=f"{SERVICE_NAME}/ListPublicity",
            filters=(scope.code if scope else "", program_id or 0),
        )
        now = self.clock()
        stmt = (
            select(ApplicationRow, ProgramRow)
            .join(ProgramRow, ProgramRow.id == ApplicationRow.program_id)
            .where(ApplicationRow.state.in_(("IN_PUBLICITY", "OBJECTED")), ApplicationRow.publicity_end > now)
        )
        if scope is not None:
            stmt = stmt.where(ApplicationRow.village.startswith(scope.prefix))
        if program_id:
            stmt = stmt.where(ApplicationRow.program_id == program_id)
        async with self.sessions() as s:
            found = (await s.execute(page.apply(cast("Select[Any]", stmt), ApplicationRow.id))).tuples().all()
            rows, token = page.cut(cast("list[tuple[ApplicationRow, ProgramRow]]", found), key=lambda r: r[0].id)
            resp = funds_pb2.ListPublicityResponse(
                entries=[publicity_entry(a, p.name) for a, p in rows], next_page_token=token
            )
            named = self.members is not None and caller is not None and resp.entries
            heads = (
                await projections.household_heads(
                    s, [e.beneficiary for e in resp.entries if e.beneficiary.startswith("households/")]
                )
                if named
                else {}
            )
        if named:
            assert caller is not None
            await self._masked_names(resp, heads, caller.region)
        return resp

    async def _masked_names(
        self, resp: funds_pb2.ListPublicityResponse, heads: dict[str, str], region: RegionCode
    ) -> None:
        """Each entry's ``beneficiary_display_name``: the masked name (张*明) of whoever is paid — the person, or
        the household's 户主. A household whose head the projection does not know yet keeps an empty name."""
        assert self.members is not None
        who = {
            e.application: heads.get(e.beneficiary, "") if e.beneficiary.startswith("households/") else e.beneficiary
            for e in resp.entries
        }
        persons = (
            await self.members.batch_get_persons([p for p in who.values() if p], region) if any(who.values()) else {}
        )
        for e in resp.entries:
            person = persons.get(who[e.application])
            if person is not None:
                e.beneficiary_display_name = person.display_name  # masked by members (BatchGetPersons is masked-only)
