"""Awards on the wire: DecideAward's request → :class:`Nomination`, and the presenter."""

from __future__ import annotations

from datetime import datetime

from jsx.common.v1 import common_pb2 as cpb
from jsx.events.v1 import events_service_pb2 as pb
from jsx_events.awards.domain import Award, AwardDecision, Nomination, normalize_award_kind
from jsxcore import wire
from jsxcore.errors import InvalidArgument
from jsxcore.values import RegionCode

_DECISION_FROM = {
    pb.AWARD_DECISION_APPROVED: AwardDecision.AWARDED,
    pb.AWARD_DECISION_REJECTED: AwardDecision.NOT_AWARDED,
}
DECISION_TO = {v: k for k, v in _DECISION_FROM.items()}


def nomination_from_pb(m: pb.Award) -> Nomination:
    if m.decision not in _DECISION_FROM:
        raise InvalidArgument.field("award.decision", "请选择评选结果（表彰或不表彰）", reason="MISSING_DECISION")
    return Nomination(
        normalize_award_kind(m.kind),
        m.nominee,
        RegionCode.parse(m.region.code, field="award.region"),
        m.year,
        _DECISION_FROM[m.decision],
        m.comment,
        title=m.display_name,
        nominee_region=wire.region_from(m.nominee_region, "award.nominee_region", required=False),
        activity_id=wire.id_from(m.activity, "activities", "award.activity", required=False),
    )


def award_pb(a: Award, actor: str = "", created: datetime | None = None) -> pb.Award:
    return pb.Award(
        name=wire.name_to("awards", a.id),
        display_name=a.label,
        year=a.year,
        region=wire.region_to(a.region),
        nominee=a.nominee_id,
        nominee_region=wire.region_to(a.nominee_region or a.region),
        activity=wire.name_to("activities", a.activity_id),
        decision=DECISION_TO[a.decision],
        comment=a.note,
        kind=a.kind,
        audit=cpb.AuditStamp(actor=actor, time=wire.ts_to(created)),
    )
