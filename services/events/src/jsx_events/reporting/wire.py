"""Presenters of the reports: compliance findings and summaries."""

from __future__ import annotations

from jsx.common.v1 import common_pb2 as cpb
from jsx.events.v1 import events_service_pb2 as pb
from jsx_events.catalog.wire import type_pb
from jsx_events.reporting.domain import Compliance, ComplianceItem, ComplianceReport, Summary, period_code
from jsx_events.visits.domain import Visit, VisitState
from jsxcore import wire
from jsxcore.values import RegionCode

_STATUS = "COMPLIANCE_STATUS_"
#: Shortfalls first, then what is still running, then what is met.
ORDER = {Compliance.SHORT: 0, Compliance.DUE: 1, Compliance.MET: 2}


def subject_name(i: ComplianceItem) -> str:
    """What a finding checked: ``households/{id}`` (per special family), ``sites/{id}``, or a region code."""
    if i.subject_kind == "SPECIAL_FAMILY":
        return wire.name_to("households", i.subject_id)
    return i.subject_id if i.subject_id.isdigit() else wire.name_to("sites", i.subject_id)


def compliance_pb(r: ComplianceReport, shortfalls_only: bool = False) -> pb.ComplianceReport:
    findings = []
    for i in sorted(r.items, key=lambda i: ORDER[i.status]):
        if shortfalls_only and i.status is Compliance.MET:
            continue
        plugin, _, version = i.provenance.partition(" ")
        subj_region = RegionCode(i.subject_id) if i.subject_id.isdigit() and len(i.subject_id) == 12 else r.region
        findings.append(
            pb.ComplianceFinding(
                rule=i.target_key,
                description=i.target,
                subject=subject_name(i),
                region=wire.region_to(i.subject_region or subj_region),
                period=cpb.Period(code=i.window_code),
                required=i.required,
                actual=i.actual,
                met=i.status is Compliance.MET,
                provenance=cpb.Provenance(plugin=plugin, plugin_version=version, hook="jsx_cadence_targets"),
                status=pb.ComplianceStatus.ValueType(wire.enum_to(pb.ComplianceStatus, _STATUS, i.status)),
                reason=i.reason,
                subject_name=i.subject_name,
                window=i.window,
                missing=[h if "/" in h else wire.name_to("households", h) for h in i.missing_ids],
            )
        )
    c = r.counts()
    return pb.ComplianceReport(
        region=wire.region_to(r.region),
        period=cpb.Period(code=period_code(r.period)),
        findings=findings,
        met_count=c["MET"],
        shortfall_count=c["SHORT"],
        due_count=c["DUE"],
    )


def summary_pb(s: Summary, visits: list[Visit], award_count: int) -> pb.Summary:
    o = s.outputs
    lines = []
    for line in s.by_type:
        t, custom = type_pb(line.type)
        lines.append(
            pb.ActivityTypeCount(type=t, custom_type=custom, held_count=line.held, participant_count=line.reached)
        )
    vis = [v for v in visits if s.period.contains(v.visited_on)]
    return pb.Summary(
        region=wire.region_to(s.region),
        period=cpb.Period(code=period_code(s.period)),
        activities=lines,
        outputs=pb.ActivityOutputs(
            materials=o.materials,
            consultations=o.consultations,
            clinic_visits=o.clinic_visits,
            contraceptive_boxes=o.contraceptive_boxes,
            condolence_money=wire.money_to(o.care_money),
        ),
        visit_count=len(vis),
        households_visited=len({v.household_id for v in vis}),
        visit_money=wire.money_to(sum(v.amount.fen for v in vis if v.state is VisitState.BOOKED)),
        award_count=award_count,
        activities_held=s.activities_held,
        people_reached=s.people_reached,
        care_services=s.care_services,
        care_people=s.care_people,
        care_money_paid=wire.money_to(s.care_money_paid),
        visits_pending=s.visits_pending,
        visits_rejected=s.visits_rejected,
        text=s.text(),
    )
