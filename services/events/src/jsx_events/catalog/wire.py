"""Activity types on the wire: the ``ActivityType`` enum, or CUSTOM with a plugin's code."""

from __future__ import annotations

from jsx.events.v1 import events_service_pb2 as pb
from jsx_events.catalog.domain import ActivityKind, normalize_type
from jsxcore.errors import InvalidArgument

_TYPE_TO_ENUM: dict[str, int] = {
    ActivityKind.MEMBER_DAY: pb.ACTIVITY_TYPE_MEMBER_DAY_0529,
    ActivityKind.POPULATION_DAY: pb.ACTIVITY_TYPE_WORLD_POPULATION_DAY_0711,
    ActivityKind.HEALTH_LECTURE: pb.ACTIVITY_TYPE_HEALTH_LECTURE,
    ActivityKind.YOUTH_HEALTH: pb.ACTIVITY_TYPE_YOUTH_HEALTH_EDUCATION,
    ActivityKind.FREE_CLINIC: pb.ACTIVITY_TYPE_FREE_CLINIC,
    ActivityKind.PUBLICITY: pb.ACTIVITY_TYPE_PUBLICITY,
    ActivityKind.TRAINING: pb.ACTIVITY_TYPE_TRAINING,
    ActivityKind.GROUP_BIRTHDAY: pb.ACTIVITY_TYPE_GROUP_BIRTHDAY,
    ActivityKind.FESTIVAL_CARE: pb.ACTIVITY_TYPE_FESTIVAL_CONDOLENCE,
    ActivityKind.AWARD_SELECTION: pb.ACTIVITY_TYPE_AWARD_SELECTION,
}
_ENUM_TO_TYPE = {v: k for k, v in _TYPE_TO_ENUM.items()}


def type_code(t: int, custom: str) -> str:
    """``type`` + ``custom_type`` of a request → a type code (field violations name ``type``/``custom_type``)."""
    if t == pb.ACTIVITY_TYPE_CUSTOM:
        if not custom.strip():
            raise InvalidArgument.field(
                "custom_type", "自定义活动类型须填写类型代码或名称", reason="MISSING_CUSTOM_TYPE"
            )
        return normalize_type(custom)
    if t not in _ENUM_TO_TYPE:
        raise InvalidArgument.field("type", "请选择活动类型", reason="MISSING_ACTIVITY_TYPE")
    return _ENUM_TO_TYPE[t]


def type_pb(code: str) -> tuple[pb.ActivityType.ValueType, str]:
    """A type code → (``type``, ``custom_type``) of a response."""
    e = _TYPE_TO_ENUM.get(code)
    return (pb.ActivityType.ValueType(e), "") if e is not None else (pb.ACTIVITY_TYPE_CUSTOM, code)
