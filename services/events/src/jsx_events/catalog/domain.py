"""The activity type vocabulary every events context shares. Pure Python, no I/O.

Codes are the :class:`ActivityKind` values (or a plugin-defined code, see
``jsxcore.hookspecs.jsx_activity_types``); clerks and plugin authors may also
write the Chinese names (``健康大讲堂``) or the pseudo types a cadence target
names (:data:`PSEUDO_TYPES`): ``CARE_VISIT`` (走访慰问 visits), ``PLAN``
(年度计划), ``ANY`` (any held activity), ``PAIRING`` (every special family
has a volunteer) and ``SITE`` (every unit has an open site of a kind).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class ActivityKind(enum.StrEnum):
    """Built-in activity types; plugins add more through ``jsx_activity_types``."""

    MEMBER_DAY = "MEMBER_DAY_529"
    POPULATION_DAY = "WORLD_POPULATION_DAY"
    HEALTH_LECTURE = "HEALTH_LECTURE"
    YOUTH_HEALTH = "YOUTH_HEALTH"
    FREE_CLINIC = "FREE_CLINIC"
    PUBLICITY = "PUBLICITY"
    TRAINING = "TRAINING"
    GROUP_BIRTHDAY = "GROUP_BIRTHDAY"
    FESTIVAL_CARE = "FESTIVAL_CARE"
    AWARD_SELECTION = "AWARDS"


ACTIVITY_LABELS: dict[str, str] = {
    ActivityKind.MEMBER_DAY: "5.29会员活动日",
    ActivityKind.POPULATION_DAY: "7.11世界人口日",
    ActivityKind.HEALTH_LECTURE: "健康大讲堂",
    ActivityKind.YOUTH_HEALTH: "青春健康教育",
    ActivityKind.FREE_CLINIC: "义诊",
    ActivityKind.PUBLICITY: "宣传",
    ActivityKind.TRAINING: "培训",
    ActivityKind.GROUP_BIRTHDAY: "集体生日",
    ActivityKind.FESTIVAL_CARE: "节日慰问",
    ActivityKind.AWARD_SELECTION: "评选表彰",
}

#: The built-in type codes.
BUILT_IN: frozenset[str] = frozenset(ActivityKind)

#: Pseudo activity types a cadence target may name besides real activity types.
PSEUDO_TYPES: dict[str, str] = {
    "CARE_VISIT": "走访慰问",
    "PLAN": "年度计划",
    "ANY": "活动",
    "PAIRING": "志愿者结对",
    "SITE": "阵地覆盖",
}

# Names clerks and plugin authors write, folded onto codes.
_TYPE_ALIASES: dict[str, str] = {
    "5.29": ActivityKind.MEMBER_DAY,
    "会员活动日": ActivityKind.MEMBER_DAY,
    "5.29会员活动日": ActivityKind.MEMBER_DAY,
    "7.11": ActivityKind.POPULATION_DAY,
    "世界人口日": ActivityKind.POPULATION_DAY,
    "健康人生大讲堂": ActivityKind.HEALTH_LECTURE,
    "健康人生": ActivityKind.HEALTH_LECTURE,
    "大讲堂": ActivityKind.HEALTH_LECTURE,
    "评选": ActivityKind.AWARD_SELECTION,
    "走访": "CARE_VISIT",
    "慰问": "CARE_VISIT",
    "VISIT": "CARE_VISIT",
    "计划": "PLAN",
}
for _code, _label in {**ACTIVITY_LABELS, **PSEUDO_TYPES}.items():
    _TYPE_ALIASES[_label] = _code


def normalize_type(text: str) -> str:
    """An activity type code from a code or a Chinese name (``健康大讲堂`` → ``HEALTH_LECTURE``).
    Unknown text is returned upper-cased/stripped: it may be a plugin-defined code."""
    s = text.strip().replace(" ", "").replace("“", "").replace("”", "").replace('"', "")
    if s in _TYPE_ALIASES:
        return _TYPE_ALIASES[s]
    return s.upper() if s.isascii() else s


def type_label(code: str, custom: Mapping[str, str] | None = None) -> str:
    """The Chinese name of a type code (plugin names in ``custom`` first)."""
    if custom and code in custom:
        return custom[code]
    return ACTIVITY_LABELS.get(code) or PSEUDO_TYPES.get(code) or code


def plugin_code(code: str, custom: Mapping[str, str]) -> str:
    """A plugin type written by its Chinese name (``理事会会议``) → the plugin's code
    (``COUNCIL_MEETING``), for the region's plugin types ``custom`` (code → name); any other
    code is returned as it is."""
    if code in custom:
        return code
    wanted = normalize_type(code)
    return next((c for c, name in custom.items() if normalize_type(name) == wanted), code)
