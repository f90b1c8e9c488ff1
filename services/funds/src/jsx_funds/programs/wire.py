"""The programs context's proto boundary: requests → the use cases' plain arguments (with
jsxcore.wire; a bad request reports every field at once), and program and application rows
→ jsx.funds.v1 messages (presenters)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2
from jsx_funds.adapters import bus
from jsx_funds.adapters.db import aware
from jsx_funds.programs import domain as pd
from jsx_funds.programs.details import fill_details, parse_details
from jsx_funds.programs.tables import ApplicationRow, ApprovalStepRow, ObjectionRow, ProgramRow, WithdrawalRow
from jsxcore import wire
from jsxcore.errors import ErrorCollector, InvalidArgument
from jsxcore.values import Period, RegionCode

# ---------------------------------------------------------------- requests


def read_new_program(p: funds_pb2.Program) -> pd.NewProgram:
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
            region = wire.region_from(p.region, "program.region.code")
        except InvalidArgument as e:
            errs.violations.extend(e.violations)
    fund_id = 0
    try:
        fund_id = wire.int_id_from(p.fund, "funds", "program.fund")
    except InvalidArgument as e:
        errs.violations.extend(e.violations)
    if not 2000 <= p.year <= 2100:
        errs.add("program.year", "请填写项目年度，例如 2022")
    if p.budget.fen < 0:
        errs.add("program.budget", "预算不能为负数")
    if p.publicity_days < 0:
        errs.add("program.publicity_days", "公示天数不能为负数")
    levels = tuple(wire.enum_short(funds_pb2.ApprovalLevel, v, "APPROVAL_LEVEL_") for v in p.approval_levels)
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
    beneficiary = wire.enum_short(
        funds_pb2.BeneficiaryKind, p.beneficiary, "BENEFICIARY_KIND_"
    ) or pd.default_beneficiary(ptype)
    errs.raise_if_any()
    assert region is not None
    return pd.NewProgram(
        name=name[:200],
        type=ptype,
        custom_type=p.custom_type.strip()[:64],
        region=region,
        fund_id=fund_id,
        beneficiary=beneficiary,
        approval_levels=levels,
        publicity_days=p.publicity_days,
        year=p.year,
        budget=p.budget.fen,
        start_date=start,
        end_date=end,
        description=p.description.strip()[:2000],
    )


def read_program_type_filter(value: int) -> str:
    return wire.enum_short(funds_pb2.ProgramType, value, "PROGRAM_TYPE_")


def read_new_application(a: funds_pb2.Application) -> pd.NewApplication:
    errs = ErrorCollector()
    hid = ""
    if not a.household.startswith("households/") or len(a.household) <= len("households/"):
        errs.add("application.household", "请填写申请家庭，格式 households/家庭编号")
    else:
        hid = a.household[len("households/") :]
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
            errs.add(
                f"application.attributes[{key}]",
                f"“{key}”由系统按申请明细（贷款、住院、三结合、幸福基金）填写，请在明细中填写，不要放在补充信息里",
            )
    details = parse_details(a, errs)
    birth = None
    if "birth_date" in a.attributes:
        try:
            birth = date.fromisoformat(a.attributes["birth_date"])
        except ValueError:
            errs.add("application.attributes[birth_date]", "出生日期格式应为 YYYY-MM-DD，例如 1968-05-01")
    errs.raise_if_any()
    assert period is not None
    program_id = wire.int_id_from(a.program, "programs", "application.program")
    village = wire.region_from(a.village, "application.village.code", required=False)
    return pd.NewApplication(
        program_id=program_id,
        household_id=hid,
        period=period,
        person=a.person,
        village=village,
        amount_requested=a.amount_requested.fen,
        attributes=dict(a.attributes),
        details=details,
        details_kind=a.WhichOneof("details"),
        birth_date=birth,
    )


def read_state_filter(value: int) -> str:
    return wire.enum_short(funds_pb2.ApplicationState, value, "APPLICATION_STATE_")


def read_period_filter(msg: common_pb2.Period) -> Period | None:
    return wire.period_from(msg, "period.code", required=False)


def read_program_filter(name: str) -> int | None:
    return wire.int_id_from(name, "programs", "program") if name else None


def read_household_filter(name: str) -> str:
    """``households/{id}`` or the bare id → the bare id ("" = any household)."""
    return name[len("households/") :] if name.startswith("households/") else name


def read_decision(value: int, comment: str) -> tuple[str, str]:
    """APPROVE or REJECT, and the comment (required when rejecting)."""
    decision = wire.enum_short(funds_pb2.ApprovalDecision, value, "APPROVAL_DECISION_")
    if not decision:
        raise InvalidArgument.field("decision", "请选择“同意”或“不同意”", reason="INVALID_ENUM")
    comment = comment.strip()
    if decision == "REJECT" and not comment:
        raise InvalidArgument.field("comment", "不同意时请填写审核意见，说明理由", reason="MISSING_COMMENT")
    return decision, comment


def read_objection_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise InvalidArgument.field("reason", "请填写异议内容", reason="MISSING_REASON")
    return reason


def read_objection_name(name: str) -> tuple[int, int]:
    """``applications/3/objections/7`` → (3, 7)."""
    parts = name.strip().split("/")
    if (
        len(parts) != 4
        or parts[0] != "applications"
        or parts[2] != "objections"
        or not parts[1].isdigit()
        or not parts[3].isdigit()
    ):
        raise InvalidArgument.field(
            "name", "异议资源名应写成 applications/申请编号/objections/异议编号", reason="INVALID_RESOURCE_NAME"
        )
    return int(parts[1]), int(parts[3])


def read_resolution(resolution: str) -> str:
    resolution = resolution.strip()
    if not resolution:
        raise InvalidArgument.field("resolution", "请填写处理结果", reason="MISSING_RESOLUTION")
    return resolution


def read_region_filter(msg: common_pb2.RegionCode) -> RegionCode | None:
    return wire.region_from(msg, "region.code", required=False)


# ---------------------------------------------------------------- presenters


def program_message(row: ProgramRow) -> funds_pb2.Program:
    out = funds_pb2.Program(
        name=bus.program_name(row.id),
        display_name=row.name,
        type=funds_pb2.ProgramType.Value("PROGRAM_TYPE_" + row.type),
        custom_type=row.custom_type,
        region=common_pb2.RegionCode(code=row.region),
        fund=bus.fund_name(row.fund_id),
        beneficiary=funds_pb2.BeneficiaryKind.Value("BENEFICIARY_KIND_" + row.beneficiary),
        approval_levels=[
            funds_pb2.ApprovalLevel.Value("APPROVAL_LEVEL_" + x) for x in row.approval_levels.split(",") if x
        ],
        publicity_days=row.publicity_days,
        description=row.description,
        create_time=wire.ts_to(row.created_at),
        year=row.year,
        budget=common_pb2.Money(fen=row.budget),
    )
    for field, day in (("start_date", row.start_date), ("end_date", row.end_date)):
        if day is not None:
            getattr(out, field).CopyFrom(common_pb2.Date(year=day.year, month=day.month, day=day.day))
    return out


def application_message(
    row: ApplicationRow,
    steps: Sequence[ApprovalStepRow],
    objections: Sequence[ObjectionRow],
    now: datetime,
    details: dict[str, Any] | None,
    withdrawal: WithdrawalRow | None = None,
) -> funds_pb2.Application:
    """The wire Application; ``details`` in the clear (the row may hold them sealed)."""
    out = funds_pb2.Application(
        name=bus.application_name(row.id),
        program=bus.program_name(row.program_id),
        household=f"households/{row.household_id}",
        person=row.person,
        village=common_pb2.RegionCode(code=row.village),
        period=common_pb2.Period(code=row.period),
        amount_requested=common_pb2.Money(fen=row.amount_requested),
        amount_entitled=common_pb2.Money(fen=row.amount_entitled),
        state=funds_pb2.ApplicationState.Value(
            "APPLICATION_STATE_"
            + pd.effective_state(row.state, aware(row.publicity_end) if row.publicity_end is not None else None, now)
        ),
        provenance=[
            common_pb2.Provenance(
                plugin=p["plugin"],
                plugin_version=p["plugin_version"],
                hook=p["hook"],
                reasons=p["reasons"],
                region=common_pb2.RegionCode(code=p["region"]),
            )
            for p in row.provenance
        ],
        approval_steps=[
            funds_pb2.ApprovalStep(
                level=funds_pb2.ApprovalLevel.Value("APPROVAL_LEVEL_" + st.level),
                region=common_pb2.RegionCode(code=st.region),
                decision=funds_pb2.ApprovalDecision.Value("APPROVAL_DECISION_" + st.decision),
                comment=st.comment,
                audit=common_pb2.AuditStamp(actor=st.actor, time=wire.ts_to(st.created_at), request_id=st.request_id),
            )
            for st in steps
        ],
        objections=[
            funds_pb2.Objection(
                name=bus.objection_name(row.id, o.id),
                reason=o.reason,
                lodged_by=o.lodged_by,
                state=funds_pb2.ObjectionState.Value("OBJECTION_STATE_" + o.state),
                resolution=o.resolution,
                lodge_time=wire.ts_to(o.lodged_at),
                resolve_time=wire.ts_to(o.resolved_at) if o.resolved_at else None,
            )
            for o in objections
        ],
        attributes=row.attributes,
        create_time=wire.ts_to(row.created_at),
        update_time=wire.ts_to(row.updated_at),
    )
    if row.publicity_start is not None:
        out.publicity_start_time.CopyFrom(wire.ts_to(row.publicity_start))
        out.publicity_end_time.CopyFrom(wire.ts_to(row.publicity_end))
    fill_details(out, details)
    if withdrawal is not None:
        out.withdrawal.CopyFrom(
            funds_pb2.Withdrawal(
                reason=withdrawal.reason,
                audit=common_pb2.AuditStamp(
                    actor=withdrawal.actor, time=wire.ts_to(withdrawal.created_at), request_id=withdrawal.request_id
                ),
            )
        )
    return out


def publicity_entry(a: ApplicationRow, program_name: str) -> funds_pb2.PublicityEntry:
    return funds_pb2.PublicityEntry(
        application=bus.application_name(a.id),
        program_display_name=program_name,
        village=common_pb2.RegionCode(code=a.village),
        beneficiary=a.person or f"households/{a.household_id}",
        amount=common_pb2.Money(fen=a.amount_entitled),
        period=common_pb2.Period(code=a.period),
        publicity_start_time=wire.ts_to(a.publicity_start),
        publicity_end_time=wire.ts_to(a.publicity_end),
    )
