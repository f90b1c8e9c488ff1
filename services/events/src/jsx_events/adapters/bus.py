"""Protobuf ↔ domain mappings: wire messages, published events, consumed events.

Resource names on the wire (``visits/{id}``, ``households/{id}``, ``sites/{id}``,
``funds/{id}``) are stored as bare ids; visitors and participants keep their
full names (``persons/…`` or ``volunteers/…``) because either kind may appear.
"""
from __future__ import annotations

import uuid
from datetime import date

from google.protobuf.timestamp_pb2 import Timestamp
from jsx.common.v1 import common_pb2 as cpb
from jsx.events.v1 import events_pb2 as epb
from jsx.events.v1 import events_service_pb2 as pb
from jsx.funds.v1 import events_pb2 as fpb
from jsx.members.v1 import events_pb2 as mpb
from jsx.members.v1 import members_pb2 as mmpb

from jsxcore.errors import InvalidArgument
from jsxcore.values import Money, RegionCode

from jsx_events import domain as d

#: Subjects consumed from the members and funds streams.
MEMBER_SUBJECTS = ("jsx.members.site.>", "jsx.members.household.>", "jsx.members.pairing.>")
FUNDS_SUBJECTS = ("jsx.funds.visit_expense.>",)
MEMBER_TYPES = (mpb.SiteOpened, mpb.SiteClosed, mpb.HouseholdRegistered, mpb.HouseholdSituationChanged,
                mpb.HouseholdMembersChanged, mpb.VolunteerPaired, mpb.VolunteerUnpaired)
FUNDS_TYPES = (fpb.VisitExpenseBooked, fpb.VisitExpenseRejected)

_TYPE_TO_ENUM = {
    d.ActivityKind.MEMBER_DAY: pb.ACTIVITY_TYPE_MEMBER_DAY_0529,
    d.ActivityKind.POPULATION_DAY: pb.ACTIVITY_TYPE_WORLD_POPULATION_DAY_0711,
    d.ActivityKind.HEALTH_LECTURE: pb.ACTIVITY_TYPE_HEALTH_LECTURE,
    d.ActivityKind.YOUTH_HEALTH: pb.ACTIVITY_TYPE_YOUTH_HEALTH_EDUCATION,
    d.ActivityKind.FREE_CLINIC: pb.ACTIVITY_TYPE_FREE_CLINIC,
    d.ActivityKind.PUBLICITY: pb.ACTIVITY_TYPE_PUBLICITY,
    d.ActivityKind.TRAINING: pb.ACTIVITY_TYPE_TRAINING,
    d.ActivityKind.GROUP_BIRTHDAY: pb.ACTIVITY_TYPE_GROUP_BIRTHDAY,
    d.ActivityKind.FESTIVAL_CARE: pb.ACTIVITY_TYPE_FESTIVAL_CONDOLENCE,
    d.ActivityKind.AWARD_SELECTION: pb.ACTIVITY_TYPE_AWARD_SELECTION,
}
_ENUM_TO_TYPE = {v: k for k, v in _TYPE_TO_ENUM.items()}
_STATE = {d.ActivityStatus.PLANNED: pb.ACTIVITY_STATE_PLANNED, d.ActivityStatus.HELD: pb.ACTIVITY_STATE_HELD,
          d.ActivityStatus.CANCELLED: pb.ACTIVITY_STATE_CANCELLED}
_VSTATE = {d.VisitState.PENDING: pb.VISIT_STATE_PENDING, d.VisitState.BOOKED: pb.VISIT_STATE_BOOKED,
           d.VisitState.REJECTED: pb.VISIT_STATE_REJECTED, d.VisitState.NO_MONEY: pb.VISIT_STATE_NO_MONEY}
_DECISION = {d.AwardDecision.AWARDED: pb.AWARD_DECISION_APPROVED, d.AwardDecision.NOT_AWARDED: pb.AWARD_DECISION_REJECTED}
_COMPLIANCE = {d.Compliance.MET: pb.COMPLIANCE_STATUS_MET, d.Compliance.SHORT: pb.COMPLIANCE_STATUS_SHORT,
               d.Compliance.DUE: pb.COMPLIANCE_STATUS_DUE}


# ---------------------------------------------------------------- small values


def bare(name: str, collection: str) -> str:
    """``households/abc`` → ``abc`` (a bare id is accepted as is)."""
    prefix = collection + "/"
    return name[len(prefix):] if name.startswith(prefix) else name


def named(collection: str, id_: str) -> str:
    return f"{collection}/{id_}" if id_ else ""


def to_date(m: cpb.Date, field: str, *, required: bool = True) -> date | None:
    if not (m.year or m.month or m.day):
        if required:
            raise InvalidArgument.field(field, "请填写日期（年、月、日）", reason="MISSING_DATE")
        return None
    try:
        return date(m.year, m.month, m.day)
    except ValueError:
        raise InvalidArgument.field(field, f"日期 {m.year}-{m.month}-{m.day} 不是有效日期", reason="INVALID_DATE") from None


def date_pb(day: date | None) -> cpb.Date:
    return cpb.Date(year=day.year, month=day.month, day=day.day) if day else cpb.Date()


def region(m: cpb.RegionCode, field: str) -> RegionCode:
    return RegionCode.parse(m.code, field=field)


def region_pb(r: RegionCode) -> cpb.RegionCode:
    return cpb.RegionCode(code=r.code)


def money(m: cpb.Money) -> Money:
    return Money(m.fen)


#: Wire form of a period: ``2022``, ``2022-08``, ``2022-Q3``, ``2022-H1``.
period_code = d.period_code


def ts(dt: object) -> Timestamp:
    t = Timestamp()
    if dt is not None:
        t.FromDatetime(dt)  # type: ignore[arg-type]
    return t


def type_code(t: int, custom: str) -> str:
    if t == pb.ACTIVITY_TYPE_CUSTOM:
        if not custom.strip():
            raise InvalidArgument.field("custom_type", "自定义活动类型须填写类型代码或名称", reason="MISSING_CUSTOM_TYPE")
        return d.normalize_type(custom)
    if t not in _ENUM_TO_TYPE:
        raise InvalidArgument.field("type", "请选择活动类型", reason="MISSING_ACTIVITY_TYPE")
    return str(_ENUM_TO_TYPE[t])


def type_pb(code: str) -> tuple[int, str]:
    e = _TYPE_TO_ENUM.get(code)  # type: ignore[call-overload]
    return (e, "") if e is not None else (pb.ACTIVITY_TYPE_CUSTOM, code)


# ---------------------------------------------------------------- entities


def activity_from_pb(m: pb.Activity, id_: str) -> d.Activity:
    held = m.state == pb.ACTIVITY_STATE_HELD
    start = to_date(m.held_date if held else m.planned_date, "activity.held_date" if held else "activity.planned_date")
    assert start is not None
    end = to_date(m.end_date, "activity.end_date", required=False) or start
    state = {pb.ACTIVITY_STATE_HELD: d.ActivityStatus.HELD, pb.ACTIVITY_STATE_CANCELLED: d.ActivityStatus.CANCELLED}
    o = m.outputs
    return d.Activity(
        id=id_, type=type_code(m.type, m.custom_type), title=m.display_name, region=region(m.organiser_region, "activity.organiser_region"),
        start=start, end=end, status=state.get(m.state, d.ActivityStatus.PLANNED), site_id=bare(m.site, "sites"),
        participant_ids=tuple(m.participants), headcount=m.participant_count,
        outputs=d.Outputs(o.materials, o.consultations, o.clinic_visits, o.contraceptive_boxes, money(o.condolence_money)),
        attachments=tuple(a.uri for a in m.attachments), location=m.location, description=m.description,
        **_plan_item_ref(m.plan_item),
    )


def _plan_item_ref(name: str, field: str = "activity.plan_item") -> dict[str, str]:
    """``plans/{plan}/items/{item}`` → ``plan_id``/``plan_item_id`` keyword arguments."""
    if not name:
        return {}
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "plans" or parts[2] != "items" or not parts[1] or not parts[3]:
        raise InvalidArgument.field(field, f"年度计划项“{name}”格式不对，应写成 plans/计划编号/items/项目编号",
                                    reason="INVALID_PLAN_ITEM")
    return {"plan_id": parts[1], "plan_item_id": parts[3]}


def plan_item_name(plan_id: str, item_id: str) -> str:
    return f"plans/{plan_id}/items/{item_id}" if plan_id and item_id else ""


def activity_pb(a: d.Activity, created: object = None, updated: object = None) -> pb.Activity:
    t, custom = type_pb(a.type)
    o = a.outputs
    held = a.status is d.ActivityStatus.HELD
    return pb.Activity(
        name=named("activities", a.id), display_name=a.title, type=t, custom_type=custom,  # type: ignore[arg-type]
        organiser_region=region_pb(a.region), site=named("sites", a.site_id), location=a.location,
        state=_STATE[a.status], planned_date=date_pb(None if held else a.start), held_date=date_pb(a.start if held else None),
        end_date=date_pb(a.end if a.end != a.start else None), participant_count=a.reached,
        participants=list(a.participant_ids),
        outputs=pb.ActivityOutputs(materials=o.materials, consultations=o.consultations, clinic_visits=o.clinic_visits,
                                   contraceptive_boxes=o.contraceptive_boxes, condolence_money=cpb.Money(fen=o.care_money.fen)),
        attachments=[pb.Attachment(uri=u) for u in a.attachments], description=a.description,
        plan=named("plans", a.plan_id), plan_item=plan_item_name(a.plan_id, a.plan_item_id),
        create_time=ts(created), update_time=ts(updated),
    )


def visit_fields(m: pb.Visit, id_: str) -> dict[str, object]:
    """Keyword arguments for :meth:`domain.Visit.record`."""
    return dict(id=id_, household_id=bare(m.household, "households"), region=region(m.region, "visit.region"),
                visitor_id=m.visitor, visited_on=to_date(m.visit_date, "visit.visit_date"), notes=m.notes,
                amount=money(m.money), fund_id=bare(m.fund, "funds"), site_id=bare(m.site, "sites"), occasion=m.occasion,
                attachments=tuple(a.uri for a in m.attachments))


def visit_pb(v: d.Visit, created: object = None, updated: object = None) -> pb.Visit:
    return pb.Visit(
        name=named("visits", v.id), household=named("households", v.household_id), region=region_pb(v.region),
        visitor=v.visitor_id, visit_date=date_pb(v.visited_on), occasion=v.occasion, notes=v.notes,
        money=cpb.Money(fen=v.amount.fen), fund=named("funds", v.fund_id), site=named("sites", v.site_id),
        state=_VSTATE[v.state], rejection_reason=v.reject_code, rejection_message=v.reject_reason,  # type: ignore[arg-type]
        ledger_entry=v.booking_ref, attachments=[pb.Attachment(uri=u) for u in v.attachments],
        create_time=ts(created), update_time=ts(updated),
    )


def plan_from_pb(m: pb.Plan, id_: str) -> d.Plan:
    if not 1900 <= m.year <= 2999:
        raise InvalidArgument.field("plan.year", "请填写计划年度，例如 2022", reason="INVALID_YEAR")
    items = tuple(plan_item_from_pb(it, str(uuid.uuid4())) for it in m.items)
    return d.Plan(id_, region(m.region, "plan.region"), m.year, items, bare(m.site, "sites"), m.display_name)


def plan_item_from_pb(m: pb.PlanItem, id_: str) -> d.PlanItem:
    return d.PlanItem(id_, type_code(m.type, m.custom_type), m.count, m.note, m.month)


def plan_item_pb(plan_id: str, g: d.ItemProgress) -> pb.PlanItem:
    """One item of plan ``plan_id`` with its fulfilment."""
    it = g.item
    t, custom = type_pb(it.type)
    return pb.PlanItem(type=t, custom_type=custom, month=it.month, count=it.count, note=it.title,  # type: ignore[arg-type]
                       name=plan_item_name(plan_id, it.id), fulfilled_by=[named("activities", a) for a in g.held_ids],
                       held_count=len(g.held_ids), scheduled_count=len(g.scheduled_ids), fulfilled=g.fulfilled)


def plan_pb(p: d.Plan, created: object = None, progress: tuple[d.ItemProgress, ...] = ()) -> pb.Plan:
    """The plan; with ``progress`` (from :func:`domain.plan_progress`) each item shows its fulfilment."""
    by_item = {g.item.id: g for g in progress}
    items = [plan_item_pb(p.id, by_item.get(it.id) or d.ItemProgress(it)) for it in p.items]
    return pb.Plan(name=named("plans", p.id), display_name=p.title, region=region_pb(p.region), site=named("sites", p.site_id),
                   year=p.year, items=items, create_time=ts(created))


def award_from_pb(m: pb.Award, id_: str, decided_on: date) -> d.Award:
    decision = {pb.AWARD_DECISION_APPROVED: d.AwardDecision.AWARDED, pb.AWARD_DECISION_REJECTED: d.AwardDecision.NOT_AWARDED}
    if m.decision not in decision:
        raise InvalidArgument.field("award.decision", "请选择评选结果（表彰或不表彰）", reason="MISSING_DECISION")
    r = region(m.region, "award.region")
    nominee_region = RegionCode.parse(m.nominee_region.code, field="award.nominee_region") if m.nominee_region.code else r
    return d.Award(id_, d.normalize_award_kind(m.kind), m.nominee, r, r.level, m.year, decision[m.decision], decided_on,
                   m.comment, title=m.display_name, nominee_region=nominee_region, activity_id=bare(m.activity, "activities"))


def award_pb(a: d.Award, actor: str = "", created: object = None) -> pb.Award:
    return pb.Award(name=named("awards", a.id), display_name=a.title or d.AWARD_LABELS.get(a.kind, a.kind), year=a.year,
                    region=region_pb(a.region), nominee=a.nominee_id, nominee_region=region_pb(a.nominee_region or a.region),
                    activity=named("activities", a.activity_id), decision=_DECISION[a.decision], comment=a.note, kind=a.kind,
                    audit=cpb.AuditStamp(actor=actor, time=ts(created)))


def compliance_pb(r: d.ComplianceReport, shortfalls_only: bool = False) -> pb.ComplianceReport:
    order = {d.Compliance.SHORT: 0, d.Compliance.DUE: 1, d.Compliance.MET: 2}
    items = sorted(r.items, key=lambda i: order[i.status])
    findings = []
    for i in items:
        if shortfalls_only and i.status is d.Compliance.MET:
            continue
        plugin, _, version = i.provenance.partition(" ")
        subj_region = RegionCode(i.subject_id) if i.subject_id.isdigit() and len(i.subject_id) == 12 else r.region
        findings.append(pb.ComplianceFinding(
            rule=i.target_key, description=i.target,
            subject=i.subject_id if i.subject_id.isdigit() else named("sites", i.subject_id),
            region=region_pb(i.subject_region or subj_region), period=cpb.Period(code=i.window_code),
            required=i.required, actual=i.actual, met=i.status is d.Compliance.MET,
            provenance=cpb.Provenance(plugin=plugin, plugin_version=version, hook="jsx_cadence_targets"),
            status=_COMPLIANCE[i.status], reason=i.reason, subject_name=i.subject_name, window=i.window,  # type: ignore[arg-type]
            missing=[h if "/" in h else named("households", h) for h in i.missing_ids]))
    c = r.counts()
    return pb.ComplianceReport(region=region_pb(r.region), period=cpb.Period(code=period_code(r.period)), findings=findings,
                               met_count=c["MET"], shortfall_count=c["SHORT"], due_count=c["DUE"])


def summary_pb(s: d.Summary, visits: list[d.Visit], award_count: int) -> pb.Summary:
    o = s.outputs
    lines = []
    for line in s.by_type:
        t, custom = type_pb(line.type)
        lines.append(pb.ActivityTypeCount(type=t, custom_type=custom, held_count=line.held, participant_count=line.reached))  # type: ignore[arg-type]
    vis = [v for v in visits if s.period.contains(v.visited_on)]
    return pb.Summary(
        region=region_pb(s.region), period=cpb.Period(code=period_code(s.period)), activities=lines,
        outputs=pb.ActivityOutputs(materials=o.materials, consultations=o.consultations, clinic_visits=o.clinic_visits,
                                   contraceptive_boxes=o.contraceptive_boxes, condolence_money=cpb.Money(fen=o.care_money.fen)),
        visit_count=len(vis), households_visited=len({v.household_id for v in vis}),
        visit_money=cpb.Money(fen=sum(v.amount.fen for v in vis if v.state is d.VisitState.BOOKED)),
        award_count=award_count, activities_held=s.activities_held, people_reached=s.people_reached,
        care_services=s.care_services, care_people=s.care_people, care_money_paid=cpb.Money(fen=s.care_money_paid.fen),
        visits_pending=s.visits_pending, visits_rejected=s.visits_rejected, text=s.text())


# ---------------------------------------------------------------- published events


def activity_held_event(a: d.Activity) -> epb.ActivityHeld:
    t, custom = type_pb(a.type)
    return epb.ActivityHeld(activity=named("activities", a.id), type=t, custom_type=custom,  # type: ignore[arg-type]
                            organiser_region=region_pb(a.region), site=named("sites", a.site_id),
                            held_date=date_pb(a.start), participant_count=a.reached)


def visit_recorded_event(v: d.Visit) -> epb.VisitRecorded:
    """Ids, region and amount only: never notes (they may mention health or names)."""
    return epb.VisitRecorded(visit=named("visits", v.id), household=named("households", v.household_id),
                             region=region_pb(v.region), fund=named("funds", v.fund_id),
                             money=cpb.Money(fen=v.amount.fen), visit_date=date_pb(v.visited_on))


def award_decided_event(a: d.Award) -> epb.AwardDecided:
    return epb.AwardDecided(award=named("awards", a.id), region=region_pb(a.region), nominee=a.nominee_id,
                            nominee_region=region_pb(a.nominee_region or a.region), year=a.year, decision=_DECISION[a.decision])  # type: ignore[arg-type]


def subject_of(message: object) -> str:
    from jsx.common.v1 import annotations_pb2

    return message.DESCRIPTOR.GetOptions().Extensions[annotations_pb2.event_subject]  # type: ignore[attr-defined]


#: Site kinds as the members service names them (SiteKind enum without its prefix).
def site_kind(value: int) -> str:
    return mmpb.SiteKind.Name(value).removeprefix("SITE_KIND_") if value else "UNSPECIFIED"
