"""Visits on the wire: requests → :class:`Visit`, and the presenter."""

from __future__ import annotations

from datetime import datetime

from jsx.events.v1 import events_service_pb2 as pb
from jsx_events.visits.domain import Visit, VisitState
from jsxcore import wire
from jsxcore.values import RegionCode

_STATE = "VISIT_STATE_"


def state_from(value: int) -> VisitState | None:
    """A list filter's ``state`` (UNSPECIFIED: any)."""
    short = wire.enum_short(pb.VisitState, value, _STATE)
    return VisitState(short) if short else None


def visit_from_pb(m: pb.Visit, id_: str = "") -> Visit:
    """The visit a RecordVisit request describes (not yet validated: :meth:`Visit.recorded`)."""
    day = wire.date_from(m.visit_date, "visit.visit_date", required=True)
    assert day is not None  # required=True
    return Visit(
        id=id_,
        household_id=wire.id_from(m.household, "households", "visit.household", required=False),
        region=RegionCode.parse(m.region.code, field="visit.region"),
        visitor_id=m.visitor,
        visited_on=day,
        notes=m.notes,
        amount=wire.money_from(m.money, "visit.money"),
        fund_id=wire.id_from(m.fund, "funds", "visit.fund", required=False),
        site_id=wire.id_from(m.site, "sites", "visit.site", required=False),
        occasion=m.occasion,
        attachments=tuple(a.uri for a in m.attachments),
    )


def visit_pb(v: Visit, created: datetime | None = None, updated: datetime | None = None) -> pb.Visit:
    return pb.Visit(
        name=wire.name_to("visits", v.id),
        household=wire.name_to("households", v.household_id),
        region=wire.region_to(v.region),
        visitor=v.visitor_id,
        visit_date=wire.date_to(v.visited_on),
        occasion=v.occasion,
        notes=v.notes,
        money=wire.money_to(v.amount),
        fund=wire.name_to("funds", v.fund_id),
        site=wire.name_to("sites", v.site_id),
        state=pb.VisitState.ValueType(wire.enum_to(pb.VisitState, _STATE, v.state)),
        rejection_reason=v.reject_code,
        rejection_message=v.reject_reason,
        ledger_entry=v.booking_ref,
        attachments=[pb.Attachment(uri=u) for u in v.attachments],
        create_time=wire.ts_to(created),
        update_time=wire.ts_to(updated),
    )
