"""Activities on the wire: requests → :class:`Activity` (and UpdateActivity's change), and the presenter."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.field_mask_pb2 import FieldMask

from jsx.events.v1 import events_service_pb2 as pb
from jsx_events.activities.domain import Activity, ActivityChange, ActivityStatus, Outputs
from jsx_events.catalog.wire import type_code, type_pb
from jsx_events.plans.domain import item_name
from jsxcore import wire
from jsxcore.errors import ErrorCollector, InvalidArgument
from jsxcore.values import RegionCode

_STATE = "ACTIVITY_STATE_"

#: Activity fields a client cannot set through UpdateActivity.
OUTPUT_ONLY = frozenset({"name", "plan", "create_time", "update_time"})
SETTABLE = tuple(f.name for f in pb.Activity.DESCRIPTOR.fields if f.name not in OUTPUT_ONLY)


def status_from(value: int) -> ActivityStatus | None:
    """A list filter's ``state`` (UNSPECIFIED: any)."""
    short = wire.enum_short(pb.ActivityState, value, _STATE)
    return ActivityStatus(short) if short else None


def _plan_item_ref(name: str, field: str = "activity.plan_item") -> tuple[str, str]:
    """``plans/{plan}/items/{item}`` → (plan id, item id); ``("", "")`` when empty."""
    if not name:
        return "", ""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "plans" or parts[2] != "items" or not parts[1] or not parts[3]:
        raise InvalidArgument.field(
            field, f"年度计划项“{name}”格式不对，应写成 plans/计划编号/items/项目编号", reason="INVALID_PLAN_ITEM"
        )
    return parts[1], parts[3]


def activity_from_pb(m: pb.Activity, id_: str = "") -> Activity:
    """The activity a request describes (``id_`` empty: the use case assigns one)."""
    held = m.state == pb.ACTIVITY_STATE_HELD
    start = wire.date_from(
        m.held_date if held else m.planned_date,
        "activity.held_date" if held else "activity.planned_date",
        required=True,
    )
    assert start is not None  # required=True
    end = wire.date_from(m.end_date, "activity.end_date") or start
    state = {pb.ACTIVITY_STATE_HELD: ActivityStatus.HELD, pb.ACTIVITY_STATE_CANCELLED: ActivityStatus.CANCELLED}
    o = m.outputs
    plan_id, plan_item_id = _plan_item_ref(m.plan_item)
    return Activity(
        id=id_,
        type=type_code(m.type, m.custom_type),
        title=m.display_name,
        region=RegionCode.parse(m.organiser_region.code, field="activity.organiser_region"),
        start=start,
        end=end,
        status=state.get(m.state, ActivityStatus.PLANNED),
        site_id=wire.id_from(m.site, "sites", "activity.site", required=False),
        participant_ids=tuple(m.participants),
        headcount=m.participant_count,
        outputs=Outputs(
            o.materials,
            o.consultations,
            o.clinic_visits,
            o.contraceptive_boxes,
            wire.money_from(o.condolence_money, "activity.outputs.condolence_money"),
        ),
        attachments=tuple(a.uri for a in m.attachments),
        location=m.location,
        description=m.description,
        plan_id=plan_id,
        plan_item_id=plan_item_id,
    )


def change_of(m: pb.Activity, mask: FieldMask) -> ActivityChange:
    """UpdateActivity's change (AIP-134): the fields ``mask`` names take ``m``'s values, nested
    paths (``outputs.materials``) only that sub-field; an empty mask replaces every settable field.

    Every path must name a settable Activity field: the violations name each bad path
    (``update_mask.paths[i]``), before anything is loaded.
    """
    errs = ErrorCollector()
    for i, path in enumerate(mask.paths):
        if path.split(".")[0] in OUTPUT_ONLY:
            errs.add(f"update_mask.paths[{i}]", f"“{path}”由系统生成，不能修改")
        elif not FieldMask(paths=[path]).IsValidForDescriptor(pb.Activity.DESCRIPTOR):
            errs.add(f"update_mask.paths[{i}]", f"活动没有“{path}”这一项，可修改的有：" + "、".join(SETTABLE))
    errs.raise_if_any("更新字段（update_mask）有误，请按字段说明修改后重试", reason="INVALID_UPDATE_MASK")
    patch, paths = pb.Activity(), FieldMask(paths=list(mask.paths))
    patch.CopyFrom(m)

    def change(old: Activity) -> Activity:
        msg = activity_pb(old)
        if paths.paths:
            paths.MergeMessage(patch, msg, replace_message_field=True, replace_repeated_field=True)
        else:
            msg.CopyFrom(patch)
        return activity_from_pb(msg, old.id)

    return change


def activity_pb(a: Activity, created: datetime | None = None, updated: datetime | None = None) -> pb.Activity:
    t, custom = type_pb(a.type)
    o = a.outputs
    held = a.status is ActivityStatus.HELD
    return pb.Activity(
        name=wire.name_to("activities", a.id),
        display_name=a.title,
        type=t,
        custom_type=custom,
        organiser_region=wire.region_to(a.region),
        site=wire.name_to("sites", a.site_id),
        location=a.location,
        state=pb.ActivityState.ValueType(wire.enum_to(pb.ActivityState, _STATE, a.status)),
        planned_date=wire.date_to(None if held else a.start),
        held_date=wire.date_to(a.start if held else None),
        end_date=wire.date_to(a.end if a.end != a.start else None),
        participant_count=a.reached,
        participants=list(a.participant_ids),
        outputs=pb.ActivityOutputs(
            materials=o.materials,
            consultations=o.consultations,
            clinic_visits=o.clinic_visits,
            contraceptive_boxes=o.contraceptive_boxes,
            condolence_money=wire.money_to(o.care_money),
        ),
        attachments=[pb.Attachment(uri=u) for u in a.attachments],
        description=a.description,
        plan=wire.name_to("plans", a.plan_id),
        plan_item=item_name(a.plan_id, a.plan_item_id),
        create_time=wire.ts_to(created),
        update_time=wire.ts_to(updated),
    )
