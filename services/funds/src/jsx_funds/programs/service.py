"""Programs and applications: 申请 → 村/乡镇/县(/省) review → 公示 → ready to pay.

* Eligibility, amount, approval chain and 公示 length come from the region's
  rule plugins (``PluginHost.acall``), called before the write transaction
  opens; each answer is stored on the application with its provenance
  (plugin, version, hook, region, reasons) so a clerk can see why.
* The household must be in the funds service's projection of members events
  (:mod:`jsx_funds.projections`); its situation on the period's first day is
  what the rules see. No names or ID numbers are held here.
* Maker-checker and the review chain, 公示 and the effective state are
  :mod:`jsx_funds.programs.domain`. ``(application, seq)`` is unique, so two
  reviewers racing for one step cannot both record it.
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

What other contexts use (public): :func:`effective_state` of a row,
:func:`in_force_applications` (the applications a payment batch selects
from), :meth:`ProgramsService.program_for`, :func:`set_application_state`.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime, timezone
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import events_pb2, funds_pb2
from jsxcore import hookspecs as hs
from jsxcore import wire
from jsxcore.auth import Caller
from jsxcore.db import transaction
from jsxcore.errors import (
    ErrorCollector,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from jsxcore.idempotency import run_idempotent
from jsxcore.pii import FieldCipher
from jsxcore.plugins import Decision, PluginHost
from jsxcore.values import Money, Period, RegionCode

from jsx_funds.adapters import bus, db
from jsx_funds.adapters.db import aware
from jsx_funds.adapters.members import MembersClient
from jsx_funds.callers import actor_of, list_scope
from jsx_funds.ledger.tables import FundRow
from jsx_funds.legacy_wire import SERVICE, decode_token, encode_token, page_size, parse_id, ts
from jsx_funds.disbursement.payees import fill_publicity_names
from jsx_funds.disbursement.tables import application_payment
from jsx_funds.programs import details as dt
from jsx_funds.programs import domain as pd
from jsx_funds.programs.tables import ApplicationRow, ApprovalStepRow, ObjectionRow, ProgramRow, WithdrawalRow
from jsx_funds.programs.wire import application_message, program_message
from jsx_funds.projections.service import household_situations
from jsx_funds.projections.tables import HouseholdProjection


def effective_state(app: ApplicationRow, now: datetime) -> str:
    """The state ``app`` reads as at ``now`` (IN_PUBLICITY whose 公示 is over: READY_TO_PAY)."""
    return pd.effective_state(app.state, aware(app.publicity_end) if app.publicity_end is not None else None, now)


def in_force_applications(program_id: int, region: RegionCode, now: datetime) -> Select[tuple[ApplicationRow]]:
    """The program's applications in ``region`` a payment may be made for: approved through 公示 (its end
    passed) or paid for before (:data:`~jsx_funds.programs.domain.IN_FORCE_STATES`). A selectable of
    :class:`ApplicationRow`: narrow it (state, period), join it, or pick columns with ``with_only_columns``."""
    return select(ApplicationRow).where(
        ApplicationRow.program_id == program_id,
        ApplicationRow.village.startswith(region.prefix),
        ApplicationRow.state.in_(pd.IN_FORCE_STATES),
        # 公示 over: a row still in 公示 waits for a later batch.
        ~((ApplicationRow.state == "IN_PUBLICITY")
          & (ApplicationRow.publicity_end.is_(None) | (ApplicationRow.publicity_end > now))))


async def applications_of(s: AsyncSession, program_id: int, region: RegionCode) -> list[ApplicationRow]:
    """Every application of the program from households in ``region`` (for reports)."""
    return list((await s.execute(select(ApplicationRow).where(
        ApplicationRow.program_id == program_id, ApplicationRow.village.startswith(region.prefix)))).scalars())


async def set_application_state(s: AsyncSession, application_id: int, state: str, now: datetime) -> None:
    """Record a payment's outcome on its application (PAYMENT_ISSUED, PAID, PAYMENT_FAILED), in the caller's
    transaction."""
    await s.execute(update(ApplicationRow).where(ApplicationRow.id == application_id)
                    .values(state=state, updated_at=now))


def _provenance(decision: Decision[Any], reasons: tuple[str, ...]) -> dict[str, Any]:
    return {"plugin": decision.plugin, "plugin_version": decision.plugin_version, "hook": decision.hook,
            "region": decision.region.code if decision.region else "", "reasons": list(reasons)}


class ProgramsService:
    """Programs, applications, approvals, 公示 and objections (proto in, proto out)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        plugins: PluginHost,
        *,
        on_commit: Callable[[], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        members: MembersClient | None = None,
        cipher: FieldCipher | None = None,
    ) -> None:
        self.sessions = sessions
        self.plugins = plugins
        #: seals health details (住院) at rest, DESIGN.md §3.7; without it they are refused
        self.cipher = cipher
        #: the members service over gRPC, when configured: applications are checked
        #: against it, and 公示 entries get masked names from it
        self.members = members
        self._on_commit = on_commit or (lambda: None)
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    async def _mutate(self, method: str, request: Message, response_type: type,
                      handler: Callable[[AsyncSession], Awaitable[Message]], caller: Caller | None):  # type: ignore[no-untyped-def]
        async with transaction(self.sessions) as s:
            result = await run_idempotent(
                s, method=SERVICE + method, request=request, response_type=response_type,
                handler=lambda: handler(s), caller=None if caller is None else caller.subject,
            )
        self._on_commit()
        return result

    # ------------------------------------------------------------ programs

    async def create_program(self, req: funds_pb2.CreateProgramRequest, caller: Caller | None) -> funds_pb2.Program:
        p = req.program
        errs = ErrorCollector()
        name = p.display_name.strip()
        if not name:
            errs.add("program.display_name", "请填写项目名称，例如“2022年洪江市计生特殊家庭特别扶助”")
        ptype = wire.enum_short(funds_pb2.ProgramType, p.type, "PROGRAM_TYPE_")
        if not ptype:
            errs.add("program.type", "请选择项目类别（特别扶助、健康保险、三结合、贷款贴息……）")
        if ptype == "CUSTOM" and not p.custom_type.strip():
            errs.add("program.custom_type", "自定义项目须填写规则插件定义的项目类别")
        region = None
        if not p.region.code:
            errs.add("program.region.code", "请填写主办地区的行政区划代码，例如 431281")
        else:
            try:
                region = RegionCode.parse(p.region.code, field="program.region.code")
            except InvalidArgument as e:
                errs.violations.extend(e.violations)
        fund_id = 0
        try:
            fund_id = parse_id(p.fund, "funds", "program.fund")
        except InvalidArgument as e:
            errs.violations.extend(e.violations)
        if not 2000 <= p.year <= 2100:
            errs.add("program.year", "请填写项目年度，例如 2022")
        if p.budget.fen < 0:
            errs.add("program.budget", "预算不能为负数")
        if p.publicity_days < 0:
            errs.add("program.publicity_days", "公示天数不能为负数")
        levels = [wire.enum_short(funds_pb2.ApprovalLevel, v, "APPROVAL_LEVEL_") for v in p.approval_levels]
        if levels and not pd.check_levels(levels):
            errs.add("program.approval_levels", "审核层级须由下到上排列（村→乡镇→县→市→省），不能重复")
        start = end = None
        try:
            start = wire.date_from(p.start_date, "program.start_date")
            end = wire.date_from(p.end_date, "program.end_date")
        except InvalidArgument as e:
            errs.violations.extend(e.violations)
        if start and end and end < start:
            errs.add("program.end_date", "截止日期不能早于开始日期")
        beneficiary = wire.enum_short(funds_pb2.BeneficiaryKind, p.beneficiary, "BENEFICIARY_KIND_") or pd.default_beneficiary(ptype)
        errs.raise_if_any()
        assert region is not None
        if caller is not None:
            caller.require_region(region)

        async def handler(s: AsyncSession) -> funds_pb2.Program:
            fund = await s.get(FundRow, fund_id)
            if fund is None:
                raise NotFound(f"基金 funds/{fund_id} 不存在，请核对基金编号", reason="FUND_NOT_FOUND")
            if not RegionCode(fund.region).contains(region):
                raise InvalidArgument.field(
                    "program.fund", f"基金 funds/{fund_id} 属于地区 {RegionCode(fund.region).short}，"
                    f"不能为地区 {region.short} 的项目支付，请选择本地区或上级的基金", reason="FUND_OUT_OF_REGION")
            row = ProgramRow(
                name=name[:200], type=ptype, custom_type=p.custom_type.strip()[:64], region=region.code, fund_id=fund_id,
                beneficiary=beneficiary, approval_levels=",".join(levels), publicity_days=p.publicity_days,
                year=p.year, budget=p.budget.fen, start_date=start, end_date=end,
                description=p.description.strip()[:2000], created_at=db.utcnow(), created_by=actor_of(caller),
            )
            s.add(row)
            await s.flush()
            return program_message(row)

        return await self._mutate("CreateProgram", req, funds_pb2.Program, handler, caller)

    async def _program(self, s: AsyncSession, name: str, field: str, caller: Caller | None) -> ProgramRow:
        pid = parse_id(name, "programs", field)
        row = await s.get(ProgramRow, pid)
        if row is None:
            raise NotFound(f"项目 programs/{pid} 不存在，请核对项目编号", reason="PROGRAM_NOT_FOUND")
        if caller is not None and not (caller.in_region(row.region) or RegionCode(row.region).contains(caller.region)):
            caller.require_region(row.region)
        return row

    async def program_for(self, s: AsyncSession, program_id: int, caller: Caller | None) -> ProgramRow:
        """A program another context works on (a payment batch), read in its session: NOT_FOUND, or
        PERMISSION_DENIED when ``caller`` can see neither it nor a region inside it."""
        row = await s.get(ProgramRow, program_id)
        if row is None:
            raise NotFound(f"项目 programs/{program_id} 不存在，请核对项目编号", reason="PROGRAM_NOT_FOUND")
        if caller is not None and not (caller.in_region(row.region) or RegionCode(row.region).contains(caller.region)):
            caller.require_region(row.region)
        return row

    @staticmethod
    async def mark_payment_issued(s: AsyncSession, applications: Sequence[int] | Select[Any], now: datetime) -> None:
        """A payment batch paid these applications (ids, or a query of them): PAYMENT_ISSUED, in its transaction."""
        await s.execute(update(ApplicationRow).where(ApplicationRow.id.in_(applications))
                        .values(state="PAYMENT_ISSUED", updated_at=now).execution_options(synchronize_session=False))

    async def get_program(self, req: funds_pb2.GetProgramRequest, caller: Caller | None) -> funds_pb2.Program:
        async with self.sessions() as s:
            return program_message(await self._program(s, req.name, "name", caller))

    async def list_programs(self, req: funds_pb2.ListProgramsRequest, caller: Caller | None) -> funds_pb2.ListProgramsResponse:
        limit = page_size(req.page_size)
        region = list_scope(RegionCode.parse(req.region.code, field="region.code") if req.region.code else None, caller)
        ptype = wire.enum_short(funds_pb2.ProgramType, req.type, "PROGRAM_TYPE_")
        key = f"programs:{region}:{ptype}"
        after = decode_token(req.page_token, key)
        async with self.sessions() as s:
            stmt = select(ProgramRow).where(ProgramRow.id > after).order_by(ProgramRow.id).limit(limit + 1)
            if region is not None:
                stmt = stmt.where(ProgramRow.region.startswith(region.prefix))
            if ptype:
                stmt = stmt.where(ProgramRow.type == ptype)
            rows = (await s.execute(stmt)).scalars().all()
        more = len(rows) > limit
        rows = rows[:limit]
        return funds_pb2.ListProgramsResponse(
            programs=[program_message(r) for r in rows], next_page_token=encode_token(rows[-1].id, key) if more else "")

    # ------------------------------------------------------------ applications

    async def submit_application(self, req: funds_pb2.SubmitApplicationRequest, caller: Caller | None) -> funds_pb2.Application:
        a = req.application
        hh = a.household
        # The household must exist at members too (the projection may lag); a malformed
        # name is left to the checks below, which report it as a field violation.
        if self.members is not None and caller is not None and hh.startswith("households/") and len(hh) > 11:
            await self.members.get_household(hh, caller.region)
        errs = ErrorCollector()
        hid = ""
        if not a.household.startswith("households/") or len(a.household) <= len("households/"):
            errs.add("application.household", "请填写申请家庭，格式 households/家庭编号")
        else:
            hid = a.household[len("households/"):]
        period = None
        try:
            period = Period.parse(a.period.code, field="application.period.code")
        except InvalidArgument as e:
            errs.violations.extend(e.violations)
        if a.amount_requested.fen < 0:
            errs.add("application.amount_requested", "申请金额不能为负数")
        for key, value in a.attributes.items():
            if len(key) > 64 or len(value) > 500:
                errs.add(f"application.attributes[{key[:64]}]", "补充信息过长（键不超过 64 字，值不超过 500 字）")
            elif key.startswith(pd.RESERVED_ATTRIBUTE_PREFIXES):
                errs.add(f"application.attributes[{key}]",
                         f"“{key}”由系统按申请明细（贷款、住院、三结合、幸福基金）填写，请在明细中填写，不要放在补充信息里")
        details = dt.parse_details(a, errs)
        birth = None
        if "birth_date" in a.attributes:
            try:
                birth = date.fromisoformat(a.attributes["birth_date"])
            except ValueError:
                errs.add("application.attributes[birth_date]", "出生日期格式应为 YYYY-MM-DD，例如 1968-05-01")
        errs.raise_if_any()
        assert period is not None

        # Gather facts and ask the rules before the write transaction opens (plugins may be slow).
        async with self.sessions() as s:
            program = await self._program(s, a.program, "application.program", caller)
            pd.check_details_kind(a.WhichOneof("details"), program.type)
            fund = await s.get(FundRow, program.fund_id) if a.WhichOneof("details") == "happiness_fund" else None
            hh = await s.get(HouseholdProjection, hid)
            if hh is None:
                raise NotFound(
                    f"家庭 {a.household} 尚未从成员系统同步到资金系统，请先在成员系统登记该家庭，稍后再提交",
                    reason="HOUSEHOLD_NOT_FOUND", metadata={"household": a.household})
            situations = await household_situations(s, hid, period.start)
            claims = int((await s.execute(select(func.count()).select_from(ApplicationRow).where(
                ApplicationRow.program_id == program.id, ApplicationRow.household_id == hid,
                ApplicationRow.state.not_in(pd.CLOSED_UNPAID)))).scalar_one())
        village = RegionCode(hh.village)
        if a.village.code and RegionCode.parse(a.village.code, field="application.village.code") != village:
            raise InvalidArgument.field("application.village.code",
                                        f"该家庭登记在 {village.short}，与填写的村 {a.village.code} 不一致", reason="VILLAGE_MISMATCH")
        if caller is not None:
            caller.require_region(village)
        if not RegionCode(program.region).contains(village):
            raise FailedPrecondition(f"该家庭（{village.short}）不在项目主办地区 {RegionCode(program.region).short} 内",
                                     reason="OUT_OF_PROGRAM_REGION")
        if (program.start_date and period.end < program.start_date) or (program.end_date and period.start > program.end_date):
            raise FailedPrecondition(f"申请期间 {period} 不在项目受理期内", reason="OUTSIDE_PROGRAM_PERIOD")
        if program.beneficiary == "PERSON":
            if not a.person.startswith("persons/"):
                raise InvalidArgument.field("application.person", "该项目按人发放，请填写受益人 persons/人员编号",
                                            reason="MISSING_PERSON")
            person = a.person
        else:
            person = ""
        kinds = {x.kind: x for x in situations}
        situation = pd.situation_seen(kinds)
        attributes = dict(a.attributes)
        if situation == "SPECIAL_DISABLED" and kinds["SPECIAL_DISABLED"].disability_grade and "child_disability_grade" not in attributes:
            attributes["child_disability_grade"] = str(kinds["SPECIAL_DISABLED"].disability_grade)
        use_provenance = None
        if details is not None and details["kind"] == "happiness_fund":
            assert fund is not None  # programs.fund_id is a foreign key
            use_provenance = await self._check_happiness_use(fund, details["use"])
        rule_type = pd.rule_type(program.type, program.custom_type)
        # The stored attributes stay the clerk's; the rules also see the details under reserved keys.
        beneficiary = hs.Beneficiary(
            person_id=person or hh.head_person, household_id=a.household, region=village, situation=situation,
            unit="PERSON" if program.beneficiary == "PERSON" else "HOUSEHOLD", birth_date=birth,
            attributes={**attributes, **pd.details_attributes(details)})
        context = {"claims_so_far": claims, "member_count": hh.member_count, "program_year": program.year}

        elig = await self.plugins.acall("jsx_program_eligibility", village, program_type=rule_type,
                                        beneficiary=beneficiary, period=period, context=context)
        if not elig.value.eligible:
            raise FailedPrecondition(
                "不符合申请条件：" + "；".join(elig.value.reasons), reason="NOT_ELIGIBLE",
                metadata={"plugin": elig.plugin, "version": elig.plugin_version})
        provenance = [_provenance(elig, elig.value.reasons)]
        if use_provenance is not None:
            provenance.append(use_provenance)
        try:
            amt = await self.plugins.acall("jsx_entitlement_amount", village, program_type=rule_type,
                                           beneficiary=beneficiary, period=period, context=context)
            entitled = amt.value.amount.fen
            provenance.append(_provenance(amt, amt.value.basis))
        except FailedPrecondition as e:
            if e.reason != "NO_RULE":
                raise
            if a.amount_requested.fen <= 0:
                raise InvalidArgument.field("application.amount_requested",
                                            "本地区没有该项目的金额规则，请填写申请金额（按协议或审批额度）",
                                            reason="MISSING_AMOUNT") from None
            entitled = a.amount_requested.fen
            provenance.append({"plugin": "", "plugin_version": "", "hook": "jsx_entitlement_amount", "region": "",
                               "reasons": ["本地区没有该项目的金额规则，按申请金额核定，由审批人员审核"]})
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

        async def handler(s: AsyncSession) -> funds_pb2.Application:
            dup = (await s.execute(select(ApplicationRow.id).where(
                ApplicationRow.program_id == program.id, ApplicationRow.beneficiary == beneficiary_key,
                ApplicationRow.period == str(period)))).scalar()
            if dup is not None:
                raise pd.duplicate(dup)
            now = self.clock()
            row = ApplicationRow(
                program_id=program.id, household_id=hid, person=person, beneficiary=beneficiary_key,
                village=village.code, period=str(period), amount_requested=a.amount_requested.fen,
                amount_entitled=entitled, state="SUBMITTED", chain=",".join(chain), publicity_days=days,
                publicity_working_days=working, provenance=provenance, attributes=attributes,
                details=dt.seal(self.cipher, details, program.id, beneficiary_key, str(period)),
                created_by=actor_of(caller), created_at=now, updated_at=now,
            )
            s.add(row)
            try:
                await s.flush()
            except IntegrityError:
                raise pd.duplicate(None) from None
            bus.emit(s, bus.application_event(
                events_pb2.ApplicationSubmitted, row, program, amount_requested=common_pb2.Money(fen=row.amount_requested),
                amount_entitled=common_pb2.Money(fen=entitled)))
            return application_message(row, [], [], now, details)

        return await self._mutate("SubmitApplication", req, funds_pb2.Application, handler, caller)

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
            decision = await self.plugins.acall("jsx_fund_allowed_uses", region,
                                                fund_kind=hs.FundKind.HAPPINESS_FUND.value)
        except FailedPrecondition as e:
            if e.reason != "NO_RULE":
                raise
            raise FailedPrecondition(
                f"基金 {label}所在地区 {region.short} 没有幸福基金用途规则，无法确认“{name}”能否列支，申请未保存；"
                f"请联系县计生协系统管理员启用规则插件后重新提交", reason="NO_RULE",
                metadata={"hook": "jsx_fund_allowed_uses", "region": region.code}) from None
        uses = decision.value.uses
        rule = f"规则插件 {decision.plugin} {decision.plugin_version}"
        if name not in uses:
            message = (f"幸福基金 {label}只能用于：{'、'.join(uses) or '（无）'}（{rule}），"
                       f"“{name}”不在其中，请改选允许的用途或改用其他基金")
            raise InvalidArgument(message, reason="FUND_USE_NOT_ALLOWED",
                                  violations=[FieldViolation("application.happiness_fund.use", message)],
                                  metadata={"plugin": decision.plugin, "version": decision.plugin_version,
                                            "allowed_uses": "、".join(uses)})
        return _provenance(decision, (*decision.value.basis, f"用途“{name}”在幸福基金允许的用途内"))

    async def _application(self, s: AsyncSession, name: str, field: str, caller: Caller | None,
                           *, lock: bool = False) -> ApplicationRow:
        aid = parse_id(name, "applications", field)
        if lock:
            # Serialise decisions/objections on one application (row lock on PostgreSQL, writer lock on SQLite).
            await s.execute(update(ApplicationRow).where(ApplicationRow.id == aid)
                            .values(updated_at=ApplicationRow.updated_at))
        row = await s.get(ApplicationRow, aid, populate_existing=True)
        if row is None:
            raise NotFound(f"申请 applications/{aid} 不存在，请核对申请编号", reason="APPLICATION_NOT_FOUND")
        if caller is not None:
            caller.require_region(row.village)
        return row

    async def _message(self, s: AsyncSession, row: ApplicationRow) -> funds_pb2.Application:
        steps = (await s.execute(select(ApprovalStepRow).where(ApprovalStepRow.application_id == row.id)
                                 .order_by(ApprovalStepRow.seq))).scalars().all()
        objs = (await s.execute(select(ObjectionRow).where(ObjectionRow.application_id == row.id)
                                .order_by(ObjectionRow.id))).scalars().all()
        withdrawal = await s.get(WithdrawalRow, row.id) if row.state == "WITHDRAWN" else None
        return application_message(row, steps, objs, self.clock(), self._open(row), withdrawal)

    async def get_application(self, req: funds_pb2.GetApplicationRequest, caller: Caller | None) -> funds_pb2.Application:
        async with self.sessions() as s:
            return await self._message(s, await self._application(s, req.name, "name", caller))

    async def list_applications(self, req: funds_pb2.ListApplicationsRequest, caller: Caller | None) -> funds_pb2.ListApplicationsResponse:
        limit = page_size(req.page_size)
        region = list_scope(RegionCode.parse(req.region.code, field="region.code") if req.region.code else None, caller)
        state = wire.enum_short(funds_pb2.ApplicationState, req.state, "APPLICATION_STATE_")
        period = str(Period.parse(req.period.code, field="period.code")) if req.period.code else ""
        program_id = parse_id(req.program, "programs", "program") if req.program else 0
        hid = req.household[len("households/"):] if req.household.startswith("households/") else req.household
        key = f"apps:{region}:{state}:{period}:{program_id}:{hid}"
        after = decode_token(req.page_token, key)
        now = self.clock()
        async with self.sessions() as s:
            stmt = select(ApplicationRow).where(ApplicationRow.id > after).order_by(ApplicationRow.id).limit(limit + 1)
            if region is not None:
                stmt = stmt.where(ApplicationRow.village.startswith(region.prefix))
            if state == "READY_TO_PAY":
                stmt = stmt.where(ApplicationRow.state == "IN_PUBLICITY", ApplicationRow.publicity_end <= now)
            elif state == "IN_PUBLICITY":
                stmt = stmt.where(ApplicationRow.state == "IN_PUBLICITY", ApplicationRow.publicity_end > now)
            elif state:
                stmt = stmt.where(ApplicationRow.state == state)
            if period:
                stmt = stmt.where(ApplicationRow.period == period)
            if program_id:
                stmt = stmt.where(ApplicationRow.program_id == program_id)
            if hid:
                stmt = stmt.where(ApplicationRow.household_id == hid)
            rows = (await s.execute(stmt)).scalars().all()
            more = len(rows) > limit
            rows = rows[:limit]
            out = [await self._message(s, r) for r in rows]
        return funds_pb2.ListApplicationsResponse(
            applications=out, next_page_token=encode_token(rows[-1].id, key) if more else "")

    async def decide_application(self, req: funds_pb2.DecideApplicationRequest, caller: Caller | None) -> funds_pb2.Application:
        if caller is None:
            raise Unauthenticated("审批须由已登录的审核人员办理", reason="CALLER_REQUIRED")
        decision = wire.enum_short(funds_pb2.ApprovalDecision, req.decision, "APPROVAL_DECISION_")
        if not decision:
            raise InvalidArgument.field("decision", "请选择“同意”或“不同意”", reason="INVALID_ENUM")
        comment = req.comment.strip()
        if decision == "REJECT" and not comment:
            raise InvalidArgument.field("comment", "不同意时请填写审核意见，说明理由", reason="MISSING_COMMENT")

        async def handler(s: AsyncSession) -> funds_pb2.Application:
            app = await self._application(s, req.name, "name", caller, lock=True)
            pd.check_in_review(app.state)
            steps = (await s.execute(select(ApprovalStepRow).where(ApprovalStepRow.application_id == app.id)
                                     .order_by(ApprovalStepRow.seq))).scalars().all()
            chain = app.chain.split(",")
            level = pd.next_level(chain, len(steps))
            want = pd.check_reviewer(reviewer=caller.subject, reviewer_region=caller.region, submitted_by=app.created_by,
                                     decided_by=[st.actor for st in steps], village=app.village, level=level)
            now = self.clock()
            s.add(ApprovalStepRow(application_id=app.id, seq=len(steps), level=level, region=want.code,
                                  decision=decision, comment=comment[:1000], actor=caller.subject,
                                  request_id=req.request_id, created_at=now))
            program = await s.get(ProgramRow, app.program_id)
            assert program is not None
            state = pd.after_decision(decision, len(steps), chain)
            if state == "REJECTED":
                app.state = state
                bus.emit(s, bus.application_event(events_pb2.ApplicationRejected, app, program,
                                                  level=funds_pb2.ApprovalLevel.Value("APPROVAL_LEVEL_" + level)))
            elif state == "IN_REVIEW":
                app.state = state
            else:
                await self._check_budget(s, program, app)
                app.state = state
                app.publicity_start = now
                app.publicity_end = pd.publicity_end(now, app.publicity_days, app.publicity_working_days)
                bus.emit(s, bus.application_event(events_pb2.ApplicationApproved, app, program,
                                                  amount_entitled=common_pb2.Money(fen=app.amount_entitled)))
            app.updated_at = now
            try:
                await s.flush()
            except IntegrityError:
                raise FailedPrecondition("该审核步骤已由他人同时办理，请刷新后查看", reason="STEP_TAKEN") from None
            return await self._message(s, app)

        return await self._mutate("DecideApplication", req, funds_pb2.Application, handler, caller)

    async def _check_budget(self, s: AsyncSession, program: ProgramRow, app: ApplicationRow) -> None:
        if program.budget <= 0:
            return
        # Lock the program row so two final approvals cannot both fit under the same remainder.
        await s.execute(update(ProgramRow).where(ProgramRow.id == program.id).values(budget=ProgramRow.budget))
        used = int((await s.execute(select(func.coalesce(func.sum(ApplicationRow.amount_entitled), 0)).where(
            ApplicationRow.program_id == program.id, ApplicationRow.state.in_(pd.COMMITTED_STATES)))).scalar_one())
        pd.check_budget(program.budget, used, app.amount_entitled)

    async def lodge_objection(self, req: funds_pb2.LodgeObjectionRequest, caller: Caller | None) -> funds_pb2.Application:
        reason = req.reason.strip()
        if not reason:
            raise InvalidArgument.field("reason", "请填写异议内容", reason="MISSING_REASON")

        async def handler(s: AsyncSession) -> funds_pb2.Application:
            app = await self._application(s, req.application, "application", caller, lock=True)
            now = self.clock()
            if effective_state(app, now) not in ("IN_PUBLICITY", "OBJECTED") or \
                    (app.publicity_end is not None and aware(app.publicity_end) <= now):
                raise FailedPrecondition("该申请不在公示期内，不能提出异议", reason="NOT_IN_PUBLICITY")
            obj = ObjectionRow(application_id=app.id, reason=reason[:2000], lodged_by=req.lodged_by.strip()[:200],
                               state="OPEN", lodged_actor=actor_of(caller), lodged_at=now)
            s.add(obj)
            await s.flush()
            app.state, app.updated_at = "OBJECTED", now
            program = await s.get(ProgramRow, app.program_id)
            bus.emit(s, bus.application_event(events_pb2.ApplicationObjected, app, program,
                                              objection=bus.objection_name(app.id, obj.id)))
            return await self._message(s, app)

        return await self._mutate("LodgeObjection", req, funds_pb2.Application, handler, caller)

    async def resolve_objection(self, req: funds_pb2.ResolveObjectionRequest, caller: Caller | None) -> funds_pb2.Application:
        parts = req.name.strip().split("/")
        if len(parts) != 4 or parts[0] != "applications" or parts[2] != "objections" \
                or not parts[1].isdigit() or not parts[3].isdigit():
            raise InvalidArgument.field("name", "异议资源名应写成 applications/申请编号/objections/异议编号",
                                        reason="INVALID_RESOURCE_NAME")
        resolution = req.resolution.strip()
        if not resolution:
            raise InvalidArgument.field("resolution", "请填写处理结果", reason="MISSING_RESOLUTION")

        async def handler(s: AsyncSession) -> funds_pb2.Application:
            app = await self._application(s, f"applications/{parts[1]}", "name", caller, lock=True)
            obj = await s.get(ObjectionRow, int(parts[3]))
            if obj is None or obj.application_id != app.id:
                raise NotFound(f"异议 {req.name} 不存在", reason="OBJECTION_NOT_FOUND")
            if obj.state != "OPEN":
                raise FailedPrecondition("该异议已处理", reason="OBJECTION_RESOLVED")
            now = self.clock()
            obj.state, obj.resolution, obj.resolved_at = ("UPHELD" if req.upheld else "DISMISSED"), resolution[:2000], now
            obj.resolved_actor = actor_of(caller)
            program = await s.get(ProgramRow, app.program_id)
            if req.upheld:
                app.state = "REJECTED"
                bus.emit(s, bus.application_event(events_pb2.ApplicationRejected, app, program))
            else:
                still_open = (await s.execute(select(func.count()).select_from(ObjectionRow).where(
                    ObjectionRow.application_id == app.id, ObjectionRow.state == "OPEN", ObjectionRow.id != obj.id))).scalar_one()
                # only an application stopped by objections goes back to 公示: one
                # already rejected (an earlier objection upheld) stays rejected
                if not still_open and app.state == "OBJECTED":
                    app.state = "IN_PUBLICITY"  # reads as READY_TO_PAY once 公示 is over
            app.updated_at = now
            await s.flush()
            return await self._message(s, app)

        return await self._mutate("ResolveObjection", req, funds_pb2.Application, handler, caller)

    async def withdraw_application(self, req: funds_pb2.WithdrawApplicationRequest,
                                   caller: Caller | None) -> funds_pb2.Application:
        """撤回: the applicant (or a clerk for them) takes an application back before money moves.

        Allowed from :data:`WITHDRAWABLE` (READY_TO_PAY included) while no
        payment names the application; otherwise FAILED_PRECONDITION
        ``NOT_WITHDRAWABLE`` naming the state. Records who/when/why, publishes
        ``ApplicationWithdrawn`` in the same transaction.
        """
        reason = req.reason.strip()
        if not reason:
            raise InvalidArgument.field("reason", "请填写撤回原因，例如“申请人自愿放弃”“已享受其他同类补助”",
                                        reason="MISSING_REASON")
        if len(reason) > 1000:
            raise InvalidArgument.field("reason", f"撤回原因不能超过 1000 个字（现为 {len(reason)} 个字），请精简",
                                        reason="REASON_TOO_LONG")
        aid = parse_id(req.name, "applications", "name")

        async def handler(s: AsyncSession) -> funds_pb2.Application:
            # The fund's row lock first, in one statement (on SQLite the first write takes the writer
            # lock): a payment batch holds it from picking applications until it marks them
            # PAYMENT_ISSUED, so without it a withdrawal could land between the two and be paid anyway.
            fund_of = (select(ProgramRow.fund_id).join(ApplicationRow, ApplicationRow.program_id == ProgramRow.id)
                       .where(ApplicationRow.id == aid).scalar_subquery())
            await s.execute(update(FundRow).where(FundRow.id == fund_of).values(version=FundRow.version + 1))
            app = await self._application(s, req.name, "name", caller, lock=True)
            now = self.clock()
            state = effective_state(app, now)
            if state not in pd.WITHDRAWABLE:
                withdrawn = await s.get(WithdrawalRow, app.id)
                raise pd.not_withdrawable(app.id, state, aware(withdrawn.created_at) if withdrawn else None)
            payment = await self._payment_of(s, app)
            if payment is not None:
                raise FailedPrecondition(
                    f"该申请（当前状态“{pd.STATE_LABEL.get(state, state)}”）已有支付记录 {payment}，款项已进入发放流程，"
                    f"不能撤回；请与财务人员核对该笔支付", reason="NOT_WITHDRAWABLE",
                    metadata={"state": state, "payment": payment})
            s.add(WithdrawalRow(application_id=app.id, previous_state=state, reason=reason, actor=actor_of(caller),
                                request_id=req.request_id, created_at=now))
            app.state, app.updated_at = "WITHDRAWN", now
            program = await s.get(ProgramRow, app.program_id)
            assert program is not None
            bus.emit(s, bus.application_event(
                events_pb2.ApplicationWithdrawn, app, program,
                previous_state=funds_pb2.ApplicationState.Value("APPLICATION_STATE_" + state),
                amount_entitled=common_pb2.Money(fen=app.amount_entitled)))
            await s.flush()
            return await self._message(s, app)

        return await self._mutate("WithdrawApplication", req, funds_pb2.Application, handler, caller)

    @staticmethod
    async def _payment_of(s: AsyncSession, app: ApplicationRow) -> str | None:
        """The key of a payment made for ``app``, if any: batch payments are found through their
        business key (``{p}/{b}/{period}``, every period and retry), a payment made on its own
        through ``applications/{id}``; both are ranges of the UNIQUE key index."""
        return await application_payment(s, app.program_id, app.beneficiary, app.id)

    async def list_publicity(self, req: funds_pb2.ListPublicityRequest, caller: Caller | None) -> funds_pb2.ListPublicityResponse:
        """What is in 公示 now; with members configured, each entry gets the payee's masked name (张*明)."""
        resp = await self._list_publicity(req, caller)
        if self.members is not None and caller is not None and resp.entries:
            await fill_publicity_names(self.sessions, self.members, resp, caller.region)
        return resp

    async def _list_publicity(self, req: funds_pb2.ListPublicityRequest, caller: Caller | None) -> funds_pb2.ListPublicityResponse:
        limit = page_size(req.page_size)
        region = list_scope(RegionCode.parse(req.region.code, field="region.code") if req.region.code else None, caller)
        program_id = parse_id(req.program, "programs", "program") if req.program else 0
        key = f"publicity:{region}:{program_id}"
        after = decode_token(req.page_token, key)
        now = self.clock()
        async with self.sessions() as s:
            stmt = (select(ApplicationRow, ProgramRow).join(ProgramRow, ProgramRow.id == ApplicationRow.program_id)
                    .where(ApplicationRow.id > after, ApplicationRow.state.in_(("IN_PUBLICITY", "OBJECTED")),
                           ApplicationRow.publicity_end > now)
                    .order_by(ApplicationRow.id).limit(limit + 1))
            if region is not None:
                stmt = stmt.where(ApplicationRow.village.startswith(region.prefix))
            if program_id:
                stmt = stmt.where(ApplicationRow.program_id == program_id)
            rows = (await s.execute(stmt)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return funds_pb2.ListPublicityResponse(
            entries=[funds_pb2.PublicityEntry(
                application=bus.application_name(a.id), program_display_name=p.name,
                village=common_pb2.RegionCode(code=a.village), beneficiary=a.person or f"households/{a.household_id}",
                amount=common_pb2.Money(fen=a.amount_entitled), period=common_pb2.Period(code=a.period),
                publicity_start_time=ts(a.publicity_start), publicity_end_time=ts(a.publicity_end),
            ) for a, p in rows],
            next_page_token=encode_token(rows[-1][0].id, key) if more else "")
