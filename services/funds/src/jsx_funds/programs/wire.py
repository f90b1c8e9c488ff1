"""Programs presenters: program and application rows → jsx.funds.v1 messages."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2

from jsx_funds.adapters import bus
from jsx_funds.adapters.db import aware
from jsxcore import wire
from jsx_funds.programs import domain as pd
from jsx_funds.programs.details import fill_details
from jsx_funds.programs.tables import ApplicationRow, ProgramRow, WithdrawalRow


def program_message(row: ProgramRow) -> funds_pb2.Program:
    out = funds_pb2.Program(
        name=bus.program_name(row.id), display_name=row.name,
        type=funds_pb2.ProgramType.Value("PROGRAM_TYPE_" + row.type), custom_type=row.custom_type,
        region=common_pb2.RegionCode(code=row.region), fund=bus.fund_name(row.fund_id),
        beneficiary=funds_pb2.BeneficiaryKind.Value("BENEFICIARY_KIND_" + row.beneficiary),
        approval_levels=[funds_pb2.ApprovalLevel.Value("APPROVAL_LEVEL_" + x) for x in row.approval_levels.split(",") if x],
        publicity_days=row.publicity_days, description=row.description, create_time=wire.ts_to(row.created_at),
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
        state=funds_pb2.ApplicationState.Value("APPLICATION_STATE_" + pd.effective_state(row.state, aware(row.publicity_end) if row.publicity_end is not None else None, now)),
        provenance=[common_pb2.Provenance(plugin=p["plugin"], plugin_version=p["plugin_version"], hook=p["hook"],
                                          reasons=p["reasons"], region=common_pb2.RegionCode(code=p["region"]))
                    for p in row.provenance],
        approval_steps=[funds_pb2.ApprovalStep(
            level=funds_pb2.ApprovalLevel.Value("APPROVAL_LEVEL_" + st.level), region=common_pb2.RegionCode(code=st.region),
            decision=funds_pb2.ApprovalDecision.Value("APPROVAL_DECISION_" + st.decision), comment=st.comment,
            audit=common_pb2.AuditStamp(actor=st.actor, time=wire.ts_to(st.created_at), request_id=st.request_id),
        ) for st in steps],
        objections=[funds_pb2.Objection(
            name=bus.objection_name(row.id, o.id), reason=o.reason, lodged_by=o.lodged_by,
            state=funds_pb2.ObjectionState.Value("OBJECTION_STATE_" + o.state), resolution=o.resolution,
            lodge_time=wire.ts_to(o.lodged_at), resolve_time=wire.ts_to(o.resolved_at) if o.resolved_at else None,
        ) for o in objections],
        attributes=row.attributes, create_time=wire.ts_to(row.created_at), update_time=wire.ts_to(row.updated_at),
    )
    if row.publicity_start is not None:
        out.publicity_start_time.CopyFrom(wire.ts_to(row.publicity_start))
        out.publicity_end_time.CopyFrom(wire.ts_to(row.publicity_end))
    fill_details(out, details)
    if withdrawal is not None:
        out.withdrawal.CopyFrom(funds_pb2.Withdrawal(reason=withdrawal.reason, audit=common_pb2.AuditStamp(
            actor=withdrawal.actor, time=wire.ts_to(withdrawal.created_at), request_id=withdrawal.request_id)))
    return out
