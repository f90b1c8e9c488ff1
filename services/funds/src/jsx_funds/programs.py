"""Programs and applications: 申请 → 村/乡镇/县(/省) review → 公示 → ready to pay.

* Eligibility, amount, approval chain and 公示 length come from the region's
  rule plugins (``PluginHost.acall``), called before the write transaction
  opens; each answer is stored on the application with its provenance
  (plugin, version, hook, region, reasons) so a clerk can see why.
* The household must be in the funds service's projection of members events
  (:mod:`jsx_funds.consumers`); its situation on the period's first day is
  what the rules see. No names or ID numbers are held here.
* Maker-checker: the clerk who submitted an application can never decide it,
  and a reviewer who decided one step cannot decide another. A step is
  decided by a caller whose region is exactly that level above the
  household (a 乡镇 token for the TOWNSHIP step, …). ``(application, seq)``
  is unique, so two reviewers racing for one step cannot both record it.
* 公示 starts at the last approval and lasts the plugin's days (calendar, or
  Monday–Friday when the rule says working days; public holidays are not
  known to the service). It ends by time: an application IN_PUBLICITY whose
  end has passed reads as READY_TO_PAY. An open objection (OBJECTED) blocks
  payment until resolved: upheld → REJECTED, dismissed → back to 公示 (or
  ready to pay if it is over).
* Withdrawal (撤回, :meth:`ProgramsService.withdraw_application`): before
  money moves — from any state up to READY_TO_PAY while no payment names the
  application — under the fund's row lock, the one a payment batch holds
  while it picks and pays applications, so a batch and a withdrawal never
  interleave. Who, when, why and the state it left go to
  ``application_withdrawals``; WITHDRAWN is neither committed budget nor
  payable (not in ``_COMMITTED_STATES`` nor the batch's states).
* Program-specific details (``Application.details``: 贷款, 住院, 三结合,
  幸福基金) are checked on submission (:func:`parse_details`,
  :func:`check_details_kind`), stored as JSON on the application — health
  details (住院) sealed by the PII cipher (``SEALED_DETAILS``),
  given to the rules as attributes under reserved keys
  (:func:`details_attributes`, documented on ``hookspecs.Beneficiary``) and
  returned on reads. A 幸福基金 spending's use must be one the fund's village
  rule (``jsx_fund_allowed_uses``) allows.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import events_pb2, funds_pb2
from jsxcore import hookspecs as hs
from jsxcore.auth import Caller
from jsxcore.db import transaction
from jsxcore.errors import (
    AlreadyExists,
    ErrorCollector,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from jsxcore.idempotency import run_idempotent
from jsxcore.pii import FieldCipher
from jsxcore.plugins import Decision, PluginHost
from jsxcore.values import Money, Period, RegionCode, RegionLevel

from jsx_funds import domain as d
from jsx_funds.adapters import bus, db
from jsx_funds.adapters.members import MembersClient
from jsx_funds.payees import fill_publicity_names
from jsx_funds.adapters.db import (
    ApplicationRow,
    ApprovalStepRow,
    FundRow,
    HouseholdProjection,
    ObjectionRow,
    PaymentRow,
    ProgramRow,
    WithdrawalRow,
)
from jsx_funds.consumers import aware, household_situations
from jsx_funds.service import (
    CST,
    SERVICE,
    _scope,
    actor_of,
    decode_token,
    encode_token,
    page_size,
    parse_id,
    region_prefix,
    to_date,
    ts,
)

#: Wire program type → the rule vocabulary plugins see (jsxcore.hookspecs.ProgramType).
RULE_TYPE = {
    "SANJIEHE": hs.ProgramType.SANJIEHE.value,
    "LOAN_INTEREST_SUBSIDY": hs.ProgramType.LOAN_INTEREST.value,
    "HAPPINESS_FUND": "HAPPINESS_FUND",
    "SPECIAL_SUPPORT": hs.ProgramType.SPECIAL_SUPPORT.value,
    "HOSPITAL_CARE": hs.ProgramType.NURSING_SUBSIDY.value,
    "HEALTH_INSURANCE": hs.ProgramType.HEALTH_INSURANCE.value,
    "BIRTH_CARE": hs.ProgramType.BIRTH_CARE.value,
    "AUTUMN_SCHOLARSHIP": hs.ProgramType.GOLDEN_AUTUMN.value,
    "WARM_ACTION": hs.ProgramType.WARM_HEART.value,
}
#: Programs paid to a person's own card unless the program says otherwise.
PER_PERSON = {"SPECIAL_SUPPORT", "HEALTH_INSURANCE", "HOSPITAL_CARE", "AUTUMN_SCHOLARSHIP"}
LEVELS = hs.APPROVAL_LEVELS  # VILLAGE, TOWNSHIP, COUNTY, CITY, PROVINCE
LEVEL_LABEL = {"VILLAGE": "村", "TOWNSHIP": "乡镇", "COUNTY": "县", "CITY": "市", "PROVINCE": "省"}
_REGION_LEVEL = {
    "VILLAGE": RegionLevel.VILLAGE, "TOWNSHIP": RegionLevel.TOWNSHIP, "COUNTY": RegionLevel.COUNTY,
    "CITY": RegionLevel.CITY, "PROVINCE": RegionLevel.PROVINCE,
}
_DIGITS = {"VILLAGE": 12, "TOWNSHIP": 9, "COUNTY": 6, "CITY": 4, "PROVINCE": 2}
#: Which situation the rules see when a household has several in force (special families first).
_SITUATION_ORDER = ("SPECIAL_BEREAVED", "SPECIAL_DISABLED", "ONLY_CHILD", "TWO_DAUGHTERS")
#: States whose entitled amount counts against the program's budget.
_COMMITTED_STATES = ("APPROVED", "IN_PUBLICITY", "OBJECTED", "READY_TO_PAY", "PAYMENT_ISSUED", "PAID", "PAYMENT_FAILED")
#: Effective states an application may be withdrawn from (撤回), as long as no payment names it.
WITHDRAWABLE = ("SUBMITTED", "IN_REVIEW", "APPROVED", "IN_PUBLICITY", "OBJECTED", "READY_TO_PAY")
#: States that end an application without payment: not a claim, not committed budget, never paid.
_CLOSED_UNPAID = ("REJECTED", "WITHDRAWN")


def level_region(village: str, level: str) -> RegionCode:
    """The region that reviews ``level`` for a household in ``village`` (its ancestor at that level)."""
    return RegionCode(village[: _DIGITS[level]].ljust(12, "0"))


def publicity_end(start: datetime, days: int, working_days: bool) -> datetime:
    """公示 runs ``days`` full days from the next day (China time); working days skip Saturday and Sunday."""
    day = start.astimezone(CST).date()
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if not working_days or day.weekday() < 5:
            counted += 1
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), CST).astimezone(timezone.utc)


def effective_state(app: ApplicationRow, now: datetime) -> str:
    """IN_PUBLICITY whose 公示 is over reads as READY_TO_PAY."""
    if app.state == "IN_PUBLICITY" and app.publicity_end is not None and aware(app.publicity_end) <= now:
        return "READY_TO_PAY"
    return app.state


def _provenance(decision: Decision[Any], reasons: tuple[str, ...]) -> dict[str, Any]:
    return {"plugin": decision.plugin, "plugin_version": decision.plugin_version, "hook": decision.hook,
            "region": decision.region.code if decision.region else "", "reasons": list(reasons)}


def _enum_short(enum_type: Any, value: int, prefix: str) -> str:
    try:
        name = enum_type.Name(value)
    except ValueError:
        return ""
    return "" if name.endswith("UNSPECIFIED") else name[len(prefix):]


# ------------------------------------------------------------ application details

#: Application.details oneof field → the program type (wire name without prefix) it belongs to.
DETAILS_FOR = {"loan_interest": "LOAN_INTEREST_SUBSIDY", "hospital_care": "HOSPITAL_CARE",
               "sanjiehe": "SANJIEHE", "happiness_fund": "HAPPINESS_FUND"}
#: Program type → the details its applications must carry; every other type takes none.
DETAILS_REQUIRED = {program: kind for kind, program in DETAILS_FOR.items()}
DETAILS_LABEL = {"loan_interest": "贷款明细（loan_interest）", "hospital_care": "住院明细（hospital_care）",
                 "sanjiehe": "三结合项目明细（sanjiehe）", "happiness_fund": "幸福基金支出明细（happiness_fund）"}
PROGRAM_LABEL = {
    "SANJIEHE": "三结合", "LOAN_INTEREST_SUBSIDY": "贷款贴息", "HAPPINESS_FUND": "幸福基金支出",
    "SPECIAL_SUPPORT": "特别扶助", "HOSPITAL_CARE": "住院护理补贴", "HEALTH_INSURANCE": "健康保险",
    "BIRTH_CARE": "生育关怀", "AUTUMN_SCHOLARSHIP": "金秋助学", "WARM_ACTION": "暖心行动", "CUSTOM": "自定义",
}
#: HappinessUse (without prefix) → its Chinese name, the vocabulary ``jsx_fund_allowed_uses`` answers in.
HAPPINESS_USES = {
    "RESPECT_ELDERLY": "尊老爱幼", "BIRTH_CARE": "生育关怀", "CULTURE_SPORTS": "文体公益",
    "SCHOLARSHIP": "奖学助学", "POVERTY_RELIEF": "扶贫帮困", "VILLAGER_CONDOLENCE": "村民慰问",
}
#: Attribute keys under these prefixes are filled from the details (hookspecs.Beneficiary lists them):
#: a clerk cannot set them, so a rule reading ``hospital.days`` reads the checked figure.
RESERVED_ATTRIBUTE_PREFIXES = ("loan.", "hospital.", "sanjiehe.", "happiness.")


def hospital_days(admission: date, discharge: date) -> int:
    """住院天数, counted 算入不算出: discharge − admission; admitted and discharged the same day is 1 day."""
    return max((discharge - admission).days, 1)


def _iso(day: date | None) -> str:
    return day.isoformat() if day else ""


def _pb_date(iso: str) -> common_pb2.Date | None:
    if not iso:
        return None
    day = date.fromisoformat(iso)
    return common_pb2.Date(year=day.year, month=day.month, day=day.day)


def parse_details(a: funds_pb2.Application, errs: ErrorCollector) -> dict[str, Any] | None:
    """``a.details`` as stored (plain values, money in 分, dates ISO), or None when unset.

    Each problem becomes a field violation in ``errs`` (the caller raises
    them together with the rest of the request's). Whether the kind fits the
    program is :func:`check_details_kind`, once the program is known.
    """
    kind = a.WhichOneof("details")
    if kind is None:
        return None
    f = f"application.{kind}"

    def text(value: str, name: str, label: str, limit: int, required: bool = True) -> str:
        value = value.strip()
        if required and not value:
            errs.add(f"{f}.{name}", f"请填写{label}")
        elif len(value) > limit:
            errs.add(f"{f}.{name}", f"{label}不能超过 {limit} 个字")
        return value[:limit]

    def day(msg: common_pb2.Date, name: str, label: str) -> date | None:
        try:
            got = to_date(msg, f"{f}.{name}")
        except InvalidArgument as e:
            errs.violations.extend(e.violations)
            return None
        if got is None:
            errs.add(f"{f}.{name}", f"请填写{label}（年、月、日）")
        return got

    if kind == "loan_interest":
        m = a.loan_interest
        lender = text(m.lender, "lender", "贷款银行", 100)
        if m.principal.fen <= 0:
            errs.add(f"{f}.principal", "贷款本金须大于 0 元，请按借款合同填写")
        if not 1 <= m.annual_rate_bp <= 10000:
            errs.add(f"{f}.annual_rate_bp", "年利率按基点填写（1 个基点 = 0.01%），须在 1～10000 之间，例如年利率 4.35% 填 435")
        if m.interest_paid.fen <= 0:
            errs.add(f"{f}.interest_paid", "本期实付利息须大于 0 元，请按银行利息回单填写")
        start = day(m.loan_start, "loan_start", "贷款起始日")
        end = day(m.loan_end, "loan_end", "贷款到期日")
        if start and end and end <= start:
            errs.add(f"{f}.loan_end", f"贷款到期日 {end} 须晚于起始日 {start}，请按借款合同填写")
        purpose = text(m.purpose, "purpose", "贷款用途（例如 柑橘种植、农产品加工）", 200)
        return {"kind": kind, "lender": lender, "principal_fen": m.principal.fen, "annual_rate_bp": m.annual_rate_bp,
                "interest_paid_fen": m.interest_paid.fen, "loan_start": _iso(start), "loan_end": _iso(end),
                "purpose": purpose}
    if kind == "hospital_care":
        m = a.hospital_care
        hospital = text(m.hospital, "hospital", "住院医院名称", 100)
        admission = day(m.admission_date, "admission_date", "入院日期")
        discharge = day(m.discharge_date, "discharge_date", "出院日期")
        days = m.days
        if days < 0:
            errs.add(f"{f}.days", "住院天数不能为负数")
        elif admission and discharge:
            if discharge < admission:
                errs.add(f"{f}.discharge_date", f"出院日期 {discharge} 不能早于入院日期 {admission}，请按出院记录填写")
            else:
                want = hospital_days(admission, discharge)
                if days == 0:
                    days = want  # left empty: counted from the dates
                elif days != want:
                    errs.add(f"{f}.days", f"住院天数应为 {want} 天：按“算入不算出”计算，即出院日期减入院日期"
                                          f"（{discharge} − {admission}），当天入院当天出院计 1 天；不填则按日期自动计算")
        return {"kind": kind, "hospital": hospital, "admission": _iso(admission), "discharge": _iso(discharge),
                "days": days}
    if kind == "sanjiehe":
        m = a.sanjiehe
        project = text(m.project, "project", "三结合项目名称（例如 柑橘种植）", 200)
        agreement = text(m.agreement_number, "agreement_number", "帮扶协议编号", 64)
        industry = text(m.industry, "industry", "产业类别", 64, required=False)
        partner = text(m.partner, "partner", "合作企业名称", 200, required=False)
        if m.income_gained.fen < 0:
            errs.add(f"{f}.income_gained", "增收金额不能为负数；尚未验收的可不填")
        return {"kind": kind, "project": project, "agreement_number": agreement, "industry": industry,
                "partner": partner, "income_gained_fen": m.income_gained.fen}
    m = a.happiness_fund
    use = _enum_short(funds_pb2.HappinessUse, m.use, "HAPPINESS_USE_")
    if not use:
        errs.add(f"{f}.use", f"请选择幸福基金用途：{'、'.join(HAPPINESS_USES.values())}之一")
    resolution = text(m.resolution_number, "resolution_number", "村级审议决议编号（幸福基金支出须经村级组织审议通过）", 64)
    return {"kind": kind, "use": use, "resolution_number": resolution}


#: Details kinds that are health information (DESIGN.md §3.7): stored sealed by the PII cipher.
SEALED_DETAILS = frozenset({"hospital_care"})


def _details_aad(program_id: int, beneficiary: str, period: str) -> bytes:
    # Bound to the application's unique key: a sealed value copied to another row does not open.
    return f"applications.details:{program_id}:{beneficiary}:{period}".encode()


def check_details_kind(kind: str | None, program: ProgramRow) -> None:
    """The details must be the program's kind: 贷款贴息 needs loan_interest, 住院护理补贴 hospital_care,
    三结合 sanjiehe, 幸福基金支出 happiness_fund; every other program takes none."""
    want = DETAILS_REQUIRED.get(program.type)
    if kind == want:
        return
    label = PROGRAM_LABEL.get(program.type, program.type)
    if kind is None:
        assert want is not None
        raise InvalidArgument.field(f"application.{want}", f"{label}项目的申请须填写{DETAILS_LABEL[want]}",
                                    reason="MISSING_DETAILS")
    own = f"{DETAILS_LABEL[kind]}只用于{PROGRAM_LABEL[DETAILS_FOR[kind]]}项目，本项目为{label}项目"
    fix = f"，请改填{DETAILS_LABEL[want]}" if want else "，不需要填写明细，请删除"
    raise InvalidArgument.field(f"application.{kind}", own + fix, reason="DETAILS_MISMATCH")


def details_attributes(details: dict[str, Any] | None) -> dict[str, str]:
    """The details flattened for the rules (``hs.Beneficiary.attributes``); every key of the kind is
    present (empty text when not given). The keys are a contract with county plugins:
    see ``jsxcore.hookspecs.Beneficiary``."""
    if not details:
        return {}
    kind = details["kind"]
    if kind == "loan_interest":
        return {"loan.lender": details["lender"], "loan.principal_fen": str(details["principal_fen"]),
                "loan.annual_rate_bp": str(details["annual_rate_bp"]),
                "loan.interest_paid_fen": str(details["interest_paid_fen"]),
                "loan.start": details["loan_start"], "loan.end": details["loan_end"], "loan.purpose": details["purpose"]}
    if kind == "hospital_care":
        return {"hospital.name": details["hospital"], "hospital.admission": details["admission"],
                "hospital.discharge": details["discharge"], "hospital.days": str(details["days"])}
    if kind == "sanjiehe":
        return {"sanjiehe.project": details["project"], "sanjiehe.agreement_number": details["agreement_number"],
                "sanjiehe.industry": details["industry"], "sanjiehe.partner": details["partner"],
                "sanjiehe.income_gained_fen": str(details["income_gained_fen"])}
    return {"happiness.use": HAPPINESS_USES[details["use"]], "happiness.use_code": details["use"],
            "happiness.resolution_number": details["resolution_number"]}


def fill_details(out: funds_pb2.Application, details: dict[str, Any] | None) -> None:
    """Set ``out``'s details oneof from the stored value."""
    if not details:
        return
    kind = details["kind"]
    if kind == "loan_interest":
        out.loan_interest.CopyFrom(funds_pb2.LoanInterestDetails(
            lender=details["lender"], principal=common_pb2.Money(fen=details["principal_fen"]),
            annual_rate_bp=details["annual_rate_bp"], interest_paid=common_pb2.Money(fen=details["interest_paid_fen"]),
            loan_start=_pb_date(details["loan_start"]), loan_end=_pb_date(details["loan_end"]),
            purpose=details["purpose"]))
    elif kind == "hospital_care":
        out.hospital_care.CopyFrom(funds_pb2.HospitalCareDetails(
            hospital=details["hospital"], admission_date=_pb_date(details["admission"]),
            discharge_date=_pb_date(details["discharge"]), days=details["days"]))
    elif kind == "sanjiehe":
        out.sanjiehe.CopyFrom(funds_pb2.SanjieheDetails(
            project=details["project"], agreement_number=details["agreement_number"], industry=details["industry"],
            partner=details["partner"], income_gained=common_pb2.Money(fen=details["income_gained_fen"])))
    elif kind == "happiness_fund":
        out.happiness_fund.CopyFrom(funds_pb2.HappinessFundDetails(
            use=funds_pb2.HappinessUse.Value("HAPPINESS_USE_" + details["use"]),
            resolution_number=details["resolution_number"]))


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
        ptype = _enum_short(funds_pb2.ProgramType, p.type, "PROGRAM_TYPE_")
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
        levels = [_enum_short(funds_pb2.ApprovalLevel, v, "APPROVAL_LEVEL_") for v in p.approval_levels]
        if levels and ("" in levels or [LEVELS.index(x) for x in levels] != sorted(set(LEVELS.index(x) for x in levels))):
            errs.add("program.approval_levels", "审核层级须由下到上排列（村→乡镇→县→市→省），不能重复")
        start = end = None
        try:
            start = to_date(p.start_date, "program.start_date")
            end = to_date(p.end_date, "program.end_date")
        except InvalidArgument as e:
            errs.violations.extend(e.violations)
        if start and end and end < start:
            errs.add("program.end_date", "截止日期不能早于开始日期")
        beneficiary = _enum_short(funds_pb2.BeneficiaryKind, p.beneficiary, "BENEFICIARY_KIND_") or (
            "PERSON" if ptype in PER_PERSON else "HOUSEHOLD")
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

    async def get_program(self, req: funds_pb2.GetProgramRequest, caller: Caller | None) -> funds_pb2.Program:
        async with self.sessions() as s:
            return program_message(await self._program(s, req.name, "name", caller))

    async def list_programs(self, req: funds_pb2.ListProgramsRequest, caller: Caller | None) -> funds_pb2.ListProgramsResponse:
        limit = page_size(req.page_size)
        region = _scope(req.region.code, caller, "region.code")
        ptype = _enum_short(funds_pb2.ProgramType, req.type, "PROGRAM_TYPE_")
        key = f"programs:{region}:{ptype}"
        after = decode_token(req.page_token, key)
        async with self.sessions() as s:
            stmt = select(ProgramRow).where(ProgramRow.id > after).order_by(ProgramRow.id).limit(limit + 1)
            if region is not None:
                stmt = stmt.where(ProgramRow.region.startswith(region_prefix(region)))
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
            elif key.startswith(RESERVED_ATTRIBUTE_PREFIXES):
                errs.add(f"application.attributes[{key}]",
                         f"“{key}”由系统按申请明细（贷款、住院、三结合、幸福基金）填写，请在明细中填写，不要放在补充信息里")
        details = parse_details(a, errs)
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
            check_details_kind(a.WhichOneof("details"), program)
            fund = await s.get(FundRow, program.fund_id) if a.WhichOneof("details") == "happiness_fund" else None
            hh = await s.get(HouseholdProjection, hid)
            if hh is None:
                raise NotFound(
                    f"家庭 {a.household} 尚未从成员系统同步到资金系统，请先在成员系统登记该家庭，稍后再提交",
                    reason="HOUSEHOLD_NOT_FOUND", metadata={"household": a.household})
            situations = await household_situations(s, hid, period.start)
            claims = int((await s.execute(select(func.count()).select_from(ApplicationRow).where(
                ApplicationRow.program_id == program.id, ApplicationRow.household_id == hid,
                ApplicationRow.state.not_in(_CLOSED_UNPAID)))).scalar_one())
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
        situation = next((k for k in _SITUATION_ORDER if k in kinds), hs.Situation.OTHER.value)
        attributes = dict(a.attributes)
        if situation == "SPECIAL_DISABLED" and kinds["SPECIAL_DISABLED"].disability_grade and "child_disability_grade" not in attributes:
            attributes["child_disability_grade"] = str(kinds["SPECIAL_DISABLED"].disability_grade)
        use_provenance = None
        if details is not None and details["kind"] == "happiness_fund":
            assert fund is not None  # programs.fund_id is a foreign key
            use_provenance = await self._check_happiness_use(fund, details["use"])
        rule_type = RULE_TYPE.get(program.type, program.custom_type)
        # The stored attributes stay the clerk's; the rules also see the details under reserved keys.
        beneficiary = hs.Beneficiary(
            person_id=person or hh.head_person, household_id=a.household, region=village, situation=situation,
            unit="PERSON" if program.beneficiary == "PERSON" else "HOUSEHOLD", birth_date=birth,
            attributes={**attributes, **details_attributes(details)})
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
            provenance.append(_provenance(ch, ch.value.basis or (" → ".join(LEVEL_LABEL[x] for x in chain),)))
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
                raise _duplicate(dup)
            now = self.clock()
            row = ApplicationRow(
                program_id=program.id, household_id=hid, person=person, beneficiary=beneficiary_key,
                village=village.code, period=str(period), amount_requested=a.amount_requested.fen,
                amount_entitled=entitled, state="SUBMITTED", chain=",".join(chain), publicity_days=days,
                publicity_working_days=working, provenance=provenance, attributes=attributes,
                details=self._seal(details, program.id, beneficiary_key, str(period)),
                created_by=actor_of(caller), created_at=now, updated_at=now,
            )
            s.add(row)
            try:
                await s.flush()
            except IntegrityError:
                raise _duplicate(None) from None
            bus.emit(s, bus.application_event(
                events_pb2.ApplicationSubmitted, row, program, amount_requested=common_pb2.Money(fen=row.amount_requested),
                amount_entitled=common_pb2.Money(fen=entitled)))
            return application_message(row, [], [], now, details)

        return await self._mutate("SubmitApplication", req, funds_pb2.Application, handler, caller)

    def _seal(self, details: dict[str, Any] | None, program_id: int, beneficiary: str, period: str) -> dict[str, Any] | None:
        """Health details as ``{"kind", "sealed"}`` (AES-GCM, bound to the application's key); others as they are."""
        if not details or details["kind"] not in SEALED_DETAILS:
            return details
        if self.cipher is None:
            raise FailedPrecondition("本服务未配置个人信息加密密钥，不能保存住院等健康信息，请联系管理员",
                                     reason="NO_PII_KEY")
        token = self.cipher.encrypt(json.dumps(details, ensure_ascii=False),
                                    aad=_details_aad(program_id, beneficiary, period))
        return {"kind": details["kind"], "sealed": base64.b64encode(token).decode()}

    def _open(self, row: ApplicationRow) -> dict[str, Any] | None:
        """The application's details in the clear (see :meth:`_seal`)."""
        details = row.details
        if not details or "sealed" not in details:
            return details
        if self.cipher is None:
            raise FailedPrecondition("本服务未配置个人信息加密密钥，无法读取住院等健康信息，请联系管理员",
                                     reason="NO_PII_KEY")
        return json.loads(self.cipher.decrypt(base64.b64decode(details["sealed"]),
                                              aad=_details_aad(row.program_id, row.beneficiary, row.period)))

    async def _check_happiness_use(self, fund: FundRow, use: str) -> dict[str, Any]:
        """The use must be one the rule of the fund's village allows (``jsx_fund_allowed_uses``);
        returns the provenance to store. Refusal: INVALID_ARGUMENT ``FUND_USE_NOT_ALLOWED`` naming the
        allowed uses and the plugin; no rule for the region: FAILED_PRECONDITION ``NO_RULE``."""
        name = HAPPINESS_USES[use]
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
        region = _scope(req.region.code, caller, "region.code")
        state = _enum_short(funds_pb2.ApplicationState, req.state, "APPLICATION_STATE_")
        period = str(Period.parse(req.period.code, field="period.code")) if req.period.code else ""
        program_id = parse_id(req.program, "programs", "program") if req.program else 0
        hid = req.household[len("households/"):] if req.household.startswith("households/") else req.household
        key = f"apps:{region}:{state}:{period}:{program_id}:{hid}"
        after = decode_token(req.page_token, key)
        now = self.clock()
        async with self.sessions() as s:
            stmt = select(ApplicationRow).where(ApplicationRow.id > after).order_by(ApplicationRow.id).limit(limit + 1)
            if region is not None:
                stmt = stmt.where(ApplicationRow.village.startswith(region_prefix(region)))
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
        decision = _enum_short(funds_pb2.ApprovalDecision, req.decision, "APPROVAL_DECISION_")
        if not decision:
            raise InvalidArgument.field("decision", "请选择“同意”或“不同意”", reason="INVALID_ENUM")
        comment = req.comment.strip()
        if decision == "REJECT" and not comment:
            raise InvalidArgument.field("comment", "不同意时请填写审核意见，说明理由", reason="MISSING_COMMENT")

        async def handler(s: AsyncSession) -> funds_pb2.Application:
            app = await self._application(s, req.name, "name", caller, lock=True)
            if app.state not in ("SUBMITTED", "IN_REVIEW"):
                raise FailedPrecondition(f"该申请当前状态为“{STATE_LABEL.get(app.state, app.state)}”，不在审核中",
                                         reason="NOT_IN_REVIEW")
            if app.created_by == caller.subject:
                raise PermissionDenied("申请录入人不能审核自己录入的申请（审核与录入须为不同人员）",
                                       reason="MAKER_CHECKER")
            steps = (await s.execute(select(ApprovalStepRow).where(ApprovalStepRow.application_id == app.id)
                                     .order_by(ApprovalStepRow.seq))).scalars().all()
            if any(st.actor == caller.subject for st in steps):
                raise PermissionDenied("同一人员不能审核同一申请的两个层级", reason="SAME_REVIEWER")
            chain = app.chain.split(",")
            level = chain[len(steps)]
            want = level_region(app.village, level)
            if caller.region != want:
                raise PermissionDenied(
                    f"该申请待{LEVEL_LABEL[level]}级审核（{want.short}），您的账号属于 {caller.region.short}，不能办理",
                    reason="WRONG_APPROVAL_LEVEL", metadata={"level": level, "region": want.code})
            now = self.clock()
            s.add(ApprovalStepRow(application_id=app.id, seq=len(steps), level=level, region=want.code,
                                  decision=decision, comment=comment[:1000], actor=caller.subject,
                                  request_id=req.request_id, created_at=now))
            program = await s.get(ProgramRow, app.program_id)
            assert program is not None
            if decision == "REJECT":
                app.state = "REJECTED"
                bus.emit(s, bus.application_event(events_pb2.ApplicationRejected, app, program,
                                                  level=funds_pb2.ApprovalLevel.Value("APPROVAL_LEVEL_" + level)))
            elif len(steps) + 1 < len(chain):
                app.state = "IN_REVIEW"
            else:
                await self._check_budget(s, program, app)
                app.state = "IN_PUBLICITY"
                app.publicity_start = now
                app.publicity_end = publicity_end(now, app.publicity_days, app.publicity_working_days)
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
            ApplicationRow.program_id == program.id, ApplicationRow.state.in_(_COMMITTED_STATES)))).scalar_one())
        if used + app.amount_entitled > program.budget:
            raise FailedPrecondition(
                f"项目预算不足：预算 {d.yuan(program.budget)} 元，已批准 {d.yuan(used)} 元，"
                f"本申请 {d.yuan(app.amount_entitled)} 元", reason="BUDGET_EXCEEDED")

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
            if state not in WITHDRAWABLE:
                raise _not_withdrawable(app, state, await s.get(WithdrawalRow, app.id))
            payment = await self._payment_of(s, app)
            if payment is not None:
                raise FailedPrecondition(
                    f"该申请（当前状态“{STATE_LABEL.get(state, state)}”）已有支付记录 {payment}，款项已进入发放流程，"
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
        batch = db.beneficiary_keys(app.program_id, app.beneficiary)
        own = f"applications/{app.id}"
        return (await s.execute(select(PaymentRow.payment_key).where(
            (batch & (PaymentRow.application_id == app.id)) | (PaymentRow.payment_key == own)
            | db.key_range(own + "#")).limit(1))).scalar()

    async def list_publicity(self, req: funds_pb2.ListPublicityRequest, caller: Caller | None) -> funds_pb2.ListPublicityResponse:
        """What is in 公示 now; with members configured, each entry gets the payee's masked name (张*明)."""
        resp = await self._list_publicity(req, caller)
        if self.members is not None and caller is not None and resp.entries:
            await fill_publicity_names(self.sessions, self.members, resp, caller.region)
        return resp

    async def _list_publicity(self, req: funds_pb2.ListPublicityRequest, caller: Caller | None) -> funds_pb2.ListPublicityResponse:
        limit = page_size(req.page_size)
        region = _scope(req.region.code, caller, "region.code")
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
                stmt = stmt.where(ApplicationRow.village.startswith(region_prefix(region)))
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


def _not_withdrawable(app: ApplicationRow, state: str, withdrawal: WithdrawalRow | None) -> FailedPrecondition:
    """Why ``app`` in ``state`` cannot be withdrawn, in words a clerk can act on."""
    label = STATE_LABEL.get(state, state)
    if state == "WITHDRAWN":
        when = f"已于 {aware(withdrawal.created_at).astimezone(CST):%Y-%m-%d %H:%M} 撤回" if withdrawal else "已撤回"
        why = f"{when}，无需再次撤回"
    elif state == "REJECTED":
        why = "审核未通过（或异议成立），申请已终止，无需撤回"
    elif state == "PAYMENT_FAILED":
        why = "已发放过款项（银行支付失败），支付记录须保留对账，不能撤回；如不再补发，请与财务人员联系"
    else:  # PAYMENT_ISSUED, PAID
        why = "款项已发放，不能撤回；如需收回资金，请与财务人员联系办理退款"
    return FailedPrecondition(f"申请 applications/{app.id} 当前状态为“{label}”：{why}", reason="NOT_WITHDRAWABLE",
                              metadata={"state": state})


def _duplicate(existing: int | None) -> AlreadyExists:
    where = f"（applications/{existing}）" if existing else ""
    return AlreadyExists(f"该受益人本期已申请过此项目{where}，不能重复申请", reason="APPLICATION_EXISTS")


STATE_LABEL = {
    "SUBMITTED": "已申请", "IN_REVIEW": "审核中", "APPROVED": "已审批", "IN_PUBLICITY": "公示中", "OBJECTED": "有异议",
    "READY_TO_PAY": "待支付", "PAYMENT_ISSUED": "支付中", "PAID": "已支付", "PAYMENT_FAILED": "支付失败",
    "REJECTED": "未通过", "WITHDRAWN": "已撤回",
}


def program_message(row: ProgramRow) -> funds_pb2.Program:
    out = funds_pb2.Program(
        name=bus.program_name(row.id), display_name=row.name,
        type=funds_pb2.ProgramType.Value("PROGRAM_TYPE_" + row.type), custom_type=row.custom_type,
        region=common_pb2.RegionCode(code=row.region), fund=bus.fund_name(row.fund_id),
        beneficiary=funds_pb2.BeneficiaryKind.Value("BENEFICIARY_KIND_" + row.beneficiary),
        approval_levels=[funds_pb2.ApprovalLevel.Value("APPROVAL_LEVEL_" + x) for x in row.approval_levels.split(",") if x],
        publicity_days=row.publicity_days, description=row.description, create_time=ts(row.created_at),
        year=row.year, budget=common_pb2.Money(fen=row.budget),
    )
    for field, day in (("start_date", row.start_date), ("end_date", row.end_date)):
        if day is not None:
            getattr(out, field).CopyFrom(common_pb2.Date(year=day.year, month=day.month, day=day.day))
    return out


def application_message(row: ApplicationRow, steps: Any, objections: Any, now: datetime,
                        details: dict[str, Any] | None, withdrawal: WithdrawalRow | None = None) -> funds_pb2.Application:
    """The wire Application; ``details`` in the clear (the row may hold them sealed)."""
    out = funds_pb2.Application(
        name=bus.application_name(row.id), program=bus.program_name(row.program_id),
        household=f"households/{row.household_id}", person=row.person,
        village=common_pb2.RegionCode(code=row.village), period=common_pb2.Period(code=row.period),
        amount_requested=common_pb2.Money(fen=row.amount_requested),
        amount_entitled=common_pb2.Money(fen=row.amount_entitled),
        state=funds_pb2.ApplicationState.Value("APPLICATION_STATE_" + effective_state(row, now)),
        provenance=[common_pb2.Provenance(plugin=p["plugin"], plugin_version=p["plugin_version"], hook=p["hook"],
                                          reasons=p["reasons"], region=common_pb2.RegionCode(code=p["region"]))
                    for p in row.provenance],
        approval_steps=[funds_pb2.ApprovalStep(
            level=funds_pb2.ApprovalLevel.Value("APPROVAL_LEVEL_" + st.level), region=common_pb2.RegionCode(code=st.region),
            decision=funds_pb2.ApprovalDecision.Value("APPROVAL_DECISION_" + st.decision), comment=st.comment,
            audit=common_pb2.AuditStamp(actor=st.actor, time=ts(st.created_at), request_id=st.request_id),
        ) for st in steps],
        objections=[funds_pb2.Objection(
            name=bus.objection_name(row.id, o.id), reason=o.reason, lodged_by=o.lodged_by,
            state=funds_pb2.ObjectionState.Value("OBJECTION_STATE_" + o.state), resolution=o.resolution,
            lodge_time=ts(o.lodged_at), resolve_time=ts(o.resolved_at) if o.resolved_at else None,
        ) for o in objections],
        attributes=row.attributes, create_time=ts(row.created_at), update_time=ts(row.updated_at),
    )
    if row.publicity_start is not None:
        out.publicity_start_time.CopyFrom(ts(row.publicity_start))
        out.publicity_end_time.CopyFrom(ts(row.publicity_end))
    fill_details(out, details)
    if withdrawal is not None:
        out.withdrawal.CopyFrom(funds_pb2.Withdrawal(reason=withdrawal.reason, audit=common_pb2.AuditStamp(
            actor=withdrawal.actor, time=ts(withdrawal.created_at), request_id=withdrawal.request_id)))
    return out
