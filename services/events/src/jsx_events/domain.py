"""Events domain: activities, annual plans, 走访慰问 visits, awards, cadence
compliance and summaries. Pure Python, no I/O.

Vocabulary shared with plugins (``jsxcore.hookspecs.CadenceTarget``):

* ``activity_type`` codes are the :class:`ActivityKind` values (or their
  Chinese names, or a plugin-defined code) plus the pseudo types in
  :data:`PSEUDO_TYPES`: ``CARE_VISIT`` (走访慰问 visits), ``PLAN`` (年度计划),
  ``ANY`` (any held activity) and ``PAIRING`` (every special family has a
  volunteer).
* ``scope`` is ``VILLAGE``/``TOWNSHIP``/``COUNTY`` (every region unit of that
  level known inside the report region) or a site kind (``WARM_HOME``
  暖心家园, ``MEMBER_HOME`` 会员之家, ``SCHOOL`` = ``YOUTH_HEALTH_BASE`` 学校/青春健康教育基地, …).
"""
from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date

from jsxcore.errors import ErrorCollector, FailedPrecondition, InvalidArgument
from jsxcore.values import Money, Period, PeriodKind, RegionCode, RegionLevel


# ------------------------------------------------------------------ vocabulary


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

#: Pseudo activity types a cadence target may name besides real activity types.
PSEUDO_TYPES: dict[str, str] = {"CARE_VISIT": "走访慰问", "PLAN": "年度计划", "ANY": "活动", "PAIRING": "志愿者结对"}

# Names clerks and plugin authors write, folded onto codes.
_TYPE_ALIASES: dict[str, str] = {
    "5.29": ActivityKind.MEMBER_DAY, "会员活动日": ActivityKind.MEMBER_DAY, "5.29会员活动日": ActivityKind.MEMBER_DAY,
    "7.11": ActivityKind.POPULATION_DAY, "世界人口日": ActivityKind.POPULATION_DAY,
    "健康人生大讲堂": ActivityKind.HEALTH_LECTURE, "健康人生": ActivityKind.HEALTH_LECTURE,
    "大讲堂": ActivityKind.HEALTH_LECTURE, "评选": ActivityKind.AWARD_SELECTION,
    "走访": "CARE_VISIT", "慰问": "CARE_VISIT", "VISIT": "CARE_VISIT", "计划": "PLAN",
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


def type_label(code: str, custom: dict[str, str] | None = None) -> str:
    """The Chinese name of a type code (plugin names in ``custom`` first)."""
    if custom and code in custom:
        return custom[code]
    return ACTIVITY_LABELS.get(code) or PSEUDO_TYPES.get(code) or code


SITE_KIND_LABELS: dict[str, str] = {
    "WARM_HOME": "暖心家园",
    "MEMBER_HOME": "会员之家",
    "HEALTH_STATION": "健康驿站",
    "YOUTH_HEALTH_BASE": "青春健康教育基地",
}
# Schools appear in the members registry as 青春健康教育基地 sites.
_SITE_ALIASES = {v: k for k, v in SITE_KIND_LABELS.items()} | {"SCHOOL": "YOUTH_HEALTH_BASE", "学校": "YOUTH_HEALTH_BASE"}


def normalize_site_kind(text: str) -> str:
    s = text.strip()
    return _SITE_ALIASES.get(s) or _SITE_ALIASES.get(s.upper()) or s.upper()


class AwardKind(enum.StrEnum):
    HAPPY_FAMILY = "HAPPY_FAMILY"
    BEST_MEMBER = "BEST_MEMBER"
    HONEST_HOUSEHOLD = "HONEST_HOUSEHOLD"
    HEALTH_STAR = "HEALTH_STAR"


AWARD_LABELS: dict[str, str] = {
    AwardKind.HAPPY_FAMILY: "幸福家庭",
    AwardKind.BEST_MEMBER: "最美协会人",
    AwardKind.HONEST_HOUSEHOLD: "诚信计生户",
    AwardKind.HEALTH_STAR: "健康之星",
}
_AWARD_ALIASES = {v: k for k, v in AWARD_LABELS.items()} | {"幸福好家庭": AwardKind.HAPPY_FAMILY}


def normalize_award_kind(text: str) -> str:
    s = text.strip()
    return _AWARD_ALIASES.get(s, s.upper() if s.isascii() else s)


class ActivityStatus(enum.StrEnum):
    PLANNED = "PLANNED"
    HELD = "HELD"
    CANCELLED = "CANCELLED"


class VisitState(enum.StrEnum):
    """``NO_MONEY``: a visit without 慰问金, nothing for funds to book."""

    NO_MONEY = "NO_MONEY"
    PENDING = "PENDING"
    BOOKED = "BOOKED"
    REJECTED = "REJECTED"


VISIT_STATE_LABELS = {
    VisitState.NO_MONEY: "无慰问金",
    VisitState.PENDING: "待记账",
    VisitState.BOOKED: "已记账",
    VisitState.REJECTED: "被拒绝",
}


class AwardDecision(enum.StrEnum):
    AWARDED = "AWARDED"
    NOT_AWARDED = "NOT_AWARDED"


# ------------------------------------------------------------------ entities


@dataclass(frozen=True)
class Outputs:
    """What an activity produced. Counts are whole numbers; 慰问金 in 分."""

    materials: int = 0  # 资料发放份数
    consultations: int = 0  # 咨询人次
    clinic_visits: int = 0  # 义诊人次
    contraceptive_boxes: int = 0  # 药具发放盒数
    care_money: Money = Money(0)  # 慰问金 total

    def problems(self, prefix: str = "outputs") -> list[tuple[str, str]]:
        out = []
        for name, label in (("materials", "资料发放份数"), ("consultations", "咨询人次"),
                            ("clinic_visits", "义诊人次"), ("contraceptive_boxes", "药具发放盒数")):
            if getattr(self, name) < 0:
                out.append((f"{prefix}.{name}", f"{label}不能为负数"))
        if self.care_money.is_negative:
            out.append((f"{prefix}.care_money", "慰问金不能为负数"))
        return out

    def __add__(self, other: Outputs) -> Outputs:
        return Outputs(self.materials + other.materials, self.consultations + other.consultations,
                       self.clinic_visits + other.clinic_visits,
                       self.contraceptive_boxes + other.contraceptive_boxes, self.care_money + other.care_money)


@dataclass(frozen=True)
class Activity:
    """One activity (planned or held) organised by an association.

    ``region`` is the organising association's region; ``site_id`` the
    place (会员之家, 暖心家园, school …) from the members service, if any.
    ``participant_ids`` are member/person ids; ``headcount`` covers people
    not recorded by id, so people reached is ``max(headcount, len(ids))``.
    """

    id: str
    type: str
    title: str
    region: RegionCode
    start: date
    end: date
    status: ActivityStatus = ActivityStatus.PLANNED
    site_id: str = ""
    participant_ids: tuple[str, ...] = ()
    headcount: int = 0
    outputs: Outputs = Outputs()
    attachments: tuple[str, ...] = ()
    plan_item_id: str = ""  # the plan item it fulfils (plans/{plan_id}/items/{plan_item_id})
    plan_id: str = ""  # the plan of that item (alone: a link made before items had ids)
    location: str = ""
    description: str = ""

    @property
    def reached(self) -> int:
        return max(self.headcount, len(set(self.participant_ids)))

    def validate(self, known_types: Iterable[str] = ()) -> None:
        """Raise InvalidArgument listing every bad field."""
        errs = ErrorCollector()
        if self.type not in set(ActivityKind) and self.type not in set(known_types):
            errs.add("type", f"活动类型“{self.type}”未定义：请使用内置类型（如 健康大讲堂、义诊）或本地插件提供的类型")
        if not self.title.strip():
            errs.add("title", "请填写活动名称")
        if self.end < self.start:
            errs.add("end_date", "结束日期不能早于开始日期")
        if self.headcount < 0:
            errs.add("headcount", "参与人数不能为负数")
        for f, d in self.outputs.problems():
            errs.add(f, d)
        errs.raise_if_any("活动信息有误，请按字段说明修改后重试")

    def held(self, start: date | None = None, end: date | None = None, **changes: object) -> Activity:
        """The activity marked held (dates may be corrected to the actual ones)."""
        if self.status is ActivityStatus.CANCELLED:
            raise FailedPrecondition("活动已取消，不能登记为已开展；请新建活动", reason="ACTIVITY_CANCELLED")
        return replace(self, status=ActivityStatus.HELD, start=start or self.start, end=end or self.end, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PlanItem:
    """One line of an annual plan: ``count`` activities of ``type`` (``ANY``: any type).

    ``id`` is stable: activities name the item they fulfil as ``plans/{plan}/items/{id}``.
    """

    id: str
    type: str
    count: int
    title: str = ""
    month: int = 0  # 0 = any time in the year

    def problems(self, prefix: str, known_types: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """(field, Chinese description) for each bad value; with ``known_types`` (the plugin's
        types for the region) the type must be built in, one of those, or ``ANY``."""
        out = []
        if self.count < 1:
            out.append((f"{prefix}.count", "计划次数须为正整数"))
        if not self.type:
            out.append((f"{prefix}.type", "请填写计划项目的活动类型"))
        elif known_types is not None and self.type not in {*ActivityKind, *known_types, "ANY"}:
            out.append((f"{prefix}.type", f"活动类型“{self.type}”未定义：请使用内置类型（如 健康大讲堂、义诊）、"
                                          "本地插件提供的类型，或 ANY（任意活动）"))
        if not 0 <= self.month <= 12:
            out.append((f"{prefix}.month", "计划月份应为1–12（0表示全年任意时间）"))
        return out


@dataclass(frozen=True)
class ItemProgress:
    """How far a plan item is: the held activities that fulfil it and those still planned."""

    item: PlanItem
    held_ids: tuple[str, ...] = ()
    scheduled_ids: tuple[str, ...] = ()

    @property
    def fulfilled(self) -> bool:
        return len(self.held_ids) >= self.item.count


def item_due(year: int, item: PlanItem) -> date:
    """The last day a plan item may be done: the end of its month, or 31 December for a whole-year item."""
    return Period.month(year, item.month).end if item.month else date(year, 12, 31)


def item_label(item: PlanItem, custom_labels: dict[str, str] | None = None) -> str:
    """How a clerk recognises a plan item: its note, else its type's name."""
    return item.title.strip() or type_label(item.type, custom_labels)


def plan_progress(plan: Plan, linked: Iterable[Activity]) -> tuple[ItemProgress, ...]:
    """Each item of ``plan`` with the activities linked to it (cancelled ones do not count)."""
    held: dict[str, list[str]] = {}
    scheduled: dict[str, list[str]] = {}
    for a in sorted(linked, key=lambda a: (a.start, a.id)):
        if a.plan_id == plan.id and a.status is not ActivityStatus.CANCELLED:
            (held if a.status is ActivityStatus.HELD else scheduled).setdefault(a.plan_item_id, []).append(a.id)
    return tuple(ItemProgress(i, tuple(held.get(i.id, ())), tuple(scheduled.get(i.id, ()))) for i in plan.items)


def plan_link_problems(a: Activity, plan: Plan | None, item: PlanItem | None, caller_scope: RegionCode | None,
                       ref: str, field_name: str = "activity.plan_item",
                       custom_labels: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Why ``a`` cannot fulfil plan item ``ref`` (empty: it can).

    The item must exist, its plan lie in the caller's region, be the
    organiser's own (or an enclosing association's) plan, be for the year
    the activity takes place in, be the site's plan when it is a site plan,
    and plan the activity's type (an ``ANY`` item takes every type).
    """
    if plan is None or item is None:
        return [(field_name, f"年度计划项“{ref}”不存在：请从年度计划中选择（格式 plans/计划编号/items/项目编号）")]
    out = []
    if caller_scope is not None and not caller_scope.contains(plan.region):
        out.append((field_name, f"年度计划项“{ref}”属于{plan.region.name or plan.region.code}的计划，不在您的辖区内"))
    elif not plan.region.contains(a.region):
        out.append((field_name, f"年度计划项“{ref}”是{plan.region.name or plan.region.code}的计划，"
                                f"本活动的组织单位（{a.region.name or a.region.code}）不在其范围内"))
    if plan.year != a.start.year:
        out.append((field_name, f"年度计划项“{ref}”是{plan.year}年的计划，活动日期在{a.start.year}年，"
                                "请选择当年的计划项"))
    if plan.site_id and plan.site_id != a.site_id:
        out.append((field_name, f"年度计划项“{ref}”是阵地 sites/{plan.site_id} 的计划，活动须在该阵地开展（site）"))
    if item.type not in ("ANY", a.type):
        out.append((field_name, f"年度计划项“{ref}”计划的是“{type_label(item.type, custom_labels)}”，"
                                f"与本活动类型“{type_label(a.type, custom_labels)}”不符"))
    return out


@dataclass(frozen=True)
class Plan:
    """年度计划 of a site (``site_id``) or an association (its ``region``)."""

    id: str
    region: RegionCode
    year: int
    items: tuple[PlanItem, ...]
    site_id: str = ""
    title: str = ""

    def validate(self, known_types: Iterable[str] | None = None) -> None:
        """Raise InvalidArgument listing every bad field (``known_types``: see :meth:`PlanItem.problems`)."""
        errs = ErrorCollector()
        if not self.items:
            errs.add("items", "年度计划至少要有一项内容")
        for i, item in enumerate(self.items):
            for f, msg in item.problems(f"items[{i}]", known_types):
                errs.add(f, msg)
        errs.raise_if_any("年度计划有误，请按字段说明修改后重试")


@dataclass(frozen=True)
class Visit:
    """走访慰问: a visitor (volunteer/clerk id) visits a household.

    With 慰问金 (``amount`` > 0) a ``fund_id`` is required and the visit waits
    (PENDING) for the funds service to book or reject it.
    """

    id: str
    household_id: str
    region: RegionCode
    visitor_id: str
    visited_on: date
    notes: str = ""
    amount: Money = Money(0)
    fund_id: str = ""
    site_id: str = ""
    state: VisitState = VisitState.NO_MONEY
    reject_reason: str = ""
    booking_ref: str = ""
    occasion: str = ""
    attachments: tuple[str, ...] = ()
    reject_code: str = ""

    @classmethod
    def record(cls, **kw: object) -> Visit:
        """A new visit, validated, in its initial state."""
        v = cls(**kw)  # type: ignore[arg-type]
        errs = ErrorCollector()
        if not v.household_id:
            errs.add("household_id", "请填写走访的家庭（户编号）")
        if not v.visitor_id:
            errs.add("visitor_id", "请填写走访人（志愿者或工作人员编号）")
        if v.amount.is_negative:
            errs.add("amount", "慰问金不能为负数")
        if v.amount and not v.fund_id:
            errs.add("fund_id", "发放慰问金时须指明由哪个资金（fund）列支")
        errs.raise_if_any("走访慰问信息有误，请按字段说明修改后重试")
        return replace(v, state=VisitState.PENDING if v.amount else VisitState.NO_MONEY)

    def booked(self, booking_ref: str) -> Visit:
        """Funds booked the 慰问金. Repeating the same result is a no-op."""
        if self.state is VisitState.BOOKED:
            return self
        if self.state is not VisitState.PENDING:
            raise FailedPrecondition(f"走访记录状态为“{VISIT_STATE_LABELS[self.state]}”，不能再记账",
                                     reason="VISIT_NOT_PENDING")
        return replace(self, state=VisitState.BOOKED, booking_ref=booking_ref)

    def rejected(self, reason: str, code: str = "") -> Visit:
        """Funds refused the 慰问金 (e.g. the fund cannot cover it)."""
        if self.state is VisitState.REJECTED:
            return self
        if self.state is not VisitState.PENDING:
            raise FailedPrecondition(f"走访记录状态为“{VISIT_STATE_LABELS[self.state]}”，不能再改为被拒绝",
                                     reason="VISIT_NOT_PENDING")
        return replace(self, state=VisitState.REJECTED, reject_reason=reason or "资金服务拒绝记账（未说明原因）",
                       reject_code=code)


@dataclass(frozen=True)
class Award:
    """评选表彰 decision: ``nominee_id`` (household/person/member id),
    awarded by the association of ``region`` at ``level`` for ``year``."""

    id: str
    kind: str
    nominee_id: str
    region: RegionCode
    level: RegionLevel
    year: int
    decision: AwardDecision
    decided_on: date
    note: str = ""
    title: str = ""
    nominee_region: RegionCode | None = None
    activity_id: str = ""

    def validate(self) -> None:
        errs = ErrorCollector()
        if not self.nominee_id:
            errs.add("nominee_id", "请填写被推荐对象编号")
        if not self.kind:
            errs.add("kind", "请填写表彰类别（如 幸福家庭、最美协会人、诚信计生户、健康之星）")
        if not 1900 <= self.year <= 2999:
            errs.add("year", "评选年度无效")
        errs.raise_if_any("评选表彰信息有误，请按字段说明修改后重试")


# ------------------------------------------------------------------ member facts (projection)


@dataclass(frozen=True)
class Site:
    id: str
    kind: str  # WARM_HOME, MEMBER_HOME, SCHOOL, …
    name: str
    region: RegionCode


@dataclass(frozen=True)
class Family:
    """A household as events needs it: ids only. ``special`` = 计生特殊家庭."""

    household_id: str
    region: RegionCode
    special: bool = False
    site_id: str = ""
    volunteer_ids: tuple[str, ...] = ()


# ------------------------------------------------------------------ cadence


@dataclass(frozen=True)
class Target:
    """A cadence target as the domain uses it (built from a plugin's
    ``CadenceTarget``): at least ``count`` of ``type`` per ``per`` for every
    subject in ``scope``."""

    key: str
    scope: str
    type: str
    count: int
    per: str  # MONTH, QUARTER, SEMESTER, YEAR
    description: str = ""
    provenance: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", normalize_type(self.type))
        object.__setattr__(self, "scope", self.scope.strip().upper() if self.scope.isascii() else normalize_site_kind(self.scope))
        object.__setattr__(self, "per", self.per.strip().upper())

    @classmethod
    def from_plugin(cls, t: object, provenance: str = "") -> Target:
        return cls(key=t.key, scope=t.scope.upper(), type=t.activity_type,  # type: ignore[attr-defined]
                   count=int(t.count), per=t.per.upper(), description=t.description, provenance=provenance)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Window:
    start: date
    end: date
    label: str  # "2022年第3季度"
    code: str = ""  # "2022-Q3"


_PER_PHRASE = {"MONTH": "每月", "QUARTER": "每季度", "SEMESTER": "每学期", "YEAR": "每年"}
_PER_UNIT = {"MONTH": "月", "QUARTER": "季度", "SEMESTER": "学期", "YEAR": "年度"}


def period_label(p: Period) -> str:
    if p.kind is PeriodKind.MONTH:
        return f"{p.year}年{p.number}月"
    if p.kind is PeriodKind.QUARTER:
        return f"{p.year}年第{p.number}季度"
    if p.kind is PeriodKind.HALF:
        return f"{p.year}年{'上' if p.number == 1 else '下'}半年"
    return f"{p.year}年"


def period_code(p: Period) -> str:
    """Wire form of a period (``jsx.common.v1.Period.code``): ``2022``, ``2022-08``, ``2022-Q3``, ``2022-H1``."""
    return str(p).replace("Q", "-Q").replace("H", "-H")


def windows(per: str, period: Period) -> list[Window]:
    """The cadence windows (months, quarters, semesters, years) that overlap ``period``.

    Semesters are half years: 上半年（春季学期） Jan–Jun, 下半年（秋季学期） Jul–Dec.
    """
    out: list[Window] = []
    for year in range(period.start.year, period.end.year + 1):
        if per == "MONTH":
            cands = [Period.month(year, m) for m in range(1, 13)]
            ws = [Window(p.start, p.end, period_label(p), f"{year}-{p.number:02d}") for p in cands]
        elif per == "QUARTER":
            ws = [Window(p.start, p.end, period_label(p), f"{year}-Q{p.number}")
                  for p in (Period.quarter(year, q) for q in range(1, 5))]
        elif per == "SEMESTER":
            ws = [Window(date(year, 1, 1), date(year, 6, 30), f"{year}年上半年（春季学期）", f"{year}-H1"),
                  Window(date(year, 7, 1), date(year, 12, 31), f"{year}年下半年（秋季学期）", f"{year}-H2")]
        elif per == "YEAR":
            ws = [Window(date(year, 1, 1), date(year, 12, 31), f"{year}年", str(year))]
        else:
            raise InvalidArgument.field("per", f"考核周期“{per}”无效，应为 MONTH、QUARTER、SEMESTER 或 YEAR",
                                        reason="INVALID_CADENCE")
        out.extend(w for w in ws if w.start <= period.end and w.end >= period.start)
    return out


class Compliance(enum.StrEnum):
    MET = "MET"  # 达标
    SHORT = "SHORT"  # 未达标（周期已结束）
    DUE = "DUE"  # 周期未结束，尚未达到


COMPLIANCE_LABELS = {Compliance.MET: "达标", Compliance.SHORT: "未达标", Compliance.DUE: "进行中"}


@dataclass(frozen=True)
class ComplianceItem:
    target_key: str
    target: str  # description
    subject_kind: str  # scope
    subject_id: str  # site id or region code
    subject_name: str
    window: str
    window_start: date
    window_end: date
    required: int
    actual: int
    status: Compliance
    reason: str
    provenance: str = ""
    missing_ids: tuple[str, ...] = ()  # PAIRING: household ids; PLAN: plans/{plan}/items/{item} not done
    window_code: str = ""  # wire period: 2022, 2022-08, 2022-Q3, 2022-H1
    subject_region: RegionCode | None = None


@dataclass(frozen=True)
class ComplianceReport:
    region: RegionCode
    period: Period
    items: tuple[ComplianceItem, ...]

    @property
    def shortfalls(self) -> list[ComplianceItem]:
        return [i for i in self.items if i.status is Compliance.SHORT]

    def counts(self) -> Counter[str]:
        return Counter(i.status.value for i in self.items)


@dataclass(frozen=True)
class Facts:
    """Everything the cadence computation reads, already limited to the report region."""

    sites: Sequence[Site] = ()
    families: Sequence[Family] = ()
    activities: Sequence[Activity] = ()
    visits: Sequence[Visit] = ()
    plans: Sequence[Plan] = ()
    awards: Sequence[Award] = ()
    region_names: dict[str, str] = field(default_factory=dict)
    #: activities linked to items of ``plans`` (the query GetPlan uses, so a report and the
    #: plan agree on what fulfils an item); linked ones among ``activities`` count too
    plan_activities: Sequence[Activity] = ()


_LEVEL_SCOPES = {"VILLAGE": RegionLevel.VILLAGE, "TOWNSHIP": RegionLevel.TOWNSHIP, "COUNTY": RegionLevel.COUNTY}


@dataclass(frozen=True)
class _Subject:
    kind: str
    id: str
    name: str
    region: RegionCode
    is_site: bool


def _subjects(scope: str, region: RegionCode, facts: Facts) -> list[_Subject]:
    if scope in _LEVEL_SCOPES:
        level = _LEVEL_SCOPES[scope]
        # Region units are the ones the member registry knows of (sites, households):
        # a village with neither is not in the association's network yet.
        codes: set[RegionCode] = set()
        for r in [s.region for s in facts.sites] + [f.region for f in facts.families]:
            if r.level >= level and region.contains(r):
                codes.add(RegionCode(r.code[: {3: 6, 4: 9, 5: 12}[level]].ljust(12, "0")))
        if region.level == level:
            codes.add(region)
        return [_Subject(scope, c.code, facts.region_names.get(c.code) or c.name or c.short, c, False)
                for c in sorted(codes)]
    kind = normalize_site_kind(scope)
    return [_Subject(scope, s.id, s.name, s.region, True)
            for s in sorted(facts.sites, key=lambda s: (s.region, s.name, s.id)) if s.kind == kind and region.contains(s.region)]


def _place(a: Activity, sites: dict[str, Site]) -> RegionCode:
    site = sites.get(a.site_id)
    return site.region if site else a.region


def _plans_of(subj: _Subject, w: Window, facts: Facts) -> list[Plan]:
    """The subject's own annual plans for the years of ``w`` (a site's plans, or a region's association-wide plan)."""
    return [p for p in facts.plans if p.year in range(w.start.year, w.end.year + 1)
            and (p.site_id == subj.id if subj.is_site else (not p.site_id and p.region == subj.region))]


def _count(t: Target, subj: _Subject, w: Window, upto: date, facts: Facts, sites: dict[str, Site]) -> int:
    end = min(w.end, upto)

    def in_window(d: date) -> bool:
        return w.start <= d <= end

    def mine_region(r: RegionCode) -> bool:
        return subj.region.contains(r)

    if t.type == "CARE_VISIT":
        # Group visits recorded as CARE_VISIT activities count alongside single visits.
        group = sum(1 for a in facts.activities if a.status is ActivityStatus.HELD and a.type == "CARE_VISIT"
                    and in_window(a.start) and (a.site_id == subj.id if subj.is_site else mine_region(_place(a, sites))))
        return group + sum(1 for v in facts.visits if in_window(v.visited_on) and (
            (v.site_id == subj.id or (not v.site_id and v.region == subj.region)) if subj.is_site
            else mine_region(v.region)))
    if t.type == "PLAN":
        return len(_plans_of(subj, w, facts))
    acts = [a for a in facts.activities if a.status is ActivityStatus.HELD and in_window(a.start)
            and (t.type == "ANY" or a.type == t.type)
            and (a.site_id == subj.id if subj.is_site else mine_region(_place(a, sites)))]
    n = len(acts)
    if t.type == ActivityKind.AWARD_SELECTION and not subj.is_site:
        # A selection shows either as a 评选表彰 activity or as the decisions it produced.
        kinds = {a.kind for a in facts.awards if a.region == subj.region and in_window(a.decided_on)}
        n = max(n, len(kinds))
    return n


def compute_compliance(targets: Sequence[Target], region: RegionCode, period: Period, facts: Facts,
                       *, today: date | None = None, custom_labels: dict[str, str] | None = None) -> ComplianceReport:
    """Evaluate every target for every subject and window overlapping ``period``.

    A window wholly inside the past is MET or SHORT; a window still running on
    ``today`` (or past the report period's end) is MET or DUE. Items carry
    counts and a Chinese reason naming the window, the subject and the rule.
    A ``PLAN`` target is met by the plan's items, not the plan alone (:func:`_plan_item`).
    """
    upto = min(period.end, today) if today else period.end
    sites = {s.id: s for s in facts.sites}
    items: list[ComplianceItem] = []
    for t in targets:
        what = type_label(t.type, custom_labels)
        rule = f"要求{_PER_PHRASE.get(t.per, t.per)}至少{t.count}次"
        for subj in _subjects(t.scope, region, facts):
            if t.type == "PAIRING":
                items.append(_pairing_item(t, subj, period, facts))
                continue
            for w in windows(t.per, period):
                if w.start > upto:
                    continue
                n = _count(t, subj, w, upto, facts, sites)
                finished = w.end <= upto
                if t.type == "PLAN" and n >= t.count:
                    # a plan on paper is not enough: its items due so far must be done
                    items.append(_plan_item(t, subj, w, upto, facts, custom_labels))
                    continue
                if n >= t.count:
                    status, reason = Compliance.MET, f"{w.label} {subj.name} {what}{n}次，达到要求（{rule}）"
                elif finished:
                    status = Compliance.SHORT
                    reason = (f"{w.label} {subj.name} 无{what}记录（{rule}）" if n == 0 else
                              f"{w.label} {subj.name} {what}{n}次，少于要求（{rule}），差{t.count - n}次")
                else:
                    status = Compliance.DUE
                    reason = (f"{w.label} {subj.name} 截至{upto.isoformat()} {what}{n}次，"
                              f"本{_PER_UNIT.get(t.per, '期')}尚未结束，还需{t.count - n}次（{rule}）")
                items.append(ComplianceItem(t.key, t.description or f"{what}{rule}", t.scope, subj.id, subj.name,
                                            w.label, w.start, w.end, t.count, n, status, reason, t.provenance,
                                            window_code=w.code, subject_region=subj.region))
    return ComplianceReport(region, period, tuple(items))


def _plan_item(t: Target, subj: _Subject, w: Window, upto: date, facts: Facts,
               custom_labels: dict[str, str] | None) -> ComplianceItem:
    """A PLAN target for a subject that has its plan: MET when every item is fulfilled by
    held activities linked to it, SHORT when an item whose month is over (by the report's
    period end, and by today) is not, DUE while the unfulfilled items are not yet due.

    Only activities held by the end of what is looked at (window, period, today) count,
    so a report for a past period stays what it was. ``required``/``actual`` count items.
    """
    seen = min(w.end, upto)
    linked = {a.id: a for a in (*facts.activities, *facts.plan_activities) if a.start <= seen}.values()
    rows = [(p, g) for p in sorted(_plans_of(subj, w, facts), key=lambda p: (p.year, p.id))
            for g in plan_progress(p, linked)]
    open_ = [(p, g) for p, g in rows if not g.fulfilled]
    overdue = [(p, g) for p, g in open_ if item_due(p.year, g.item) <= seen]
    years = "、".join(sorted({str(p.year) for p, _ in rows}))
    head = f"{subj.name} {years}年度计划" if t.per == "YEAR" else f"{w.label} {subj.name} {years}年度计划"

    def line(p: Plan, g: ItemProgress) -> str:
        when = f"{g.item.month}月底前" if g.item.month else "年内"
        return f"{item_label(g.item, custom_labels)}（计划{g.item.count}次，已开展{len(g.held_ids)}次，{when}）"

    def listed(rs: list[tuple[Plan, ItemProgress]]) -> str:
        return "；".join(line(p, g) for p, g in rs[:10]) + ("等" if len(rs) > 10 else "")

    if overdue:
        status = Compliance.SHORT
        shown = overdue
        reason = (f"{head}中 {len(overdue)} 项未完成：{listed(overdue)}。"
                  "请开展这些活动，登记活动时关联对应的计划项（plan_item）")
    elif open_:
        status = Compliance.DUE
        shown = open_
        reason = (f"{head}已完成{len(rows) - len(open_)}项，截至{seen.isoformat()} 尚有{len(open_)}项未到期："
                  f"{listed(open_)}")
    else:
        status, shown = Compliance.MET, []
        reason = f"{head}{len(rows)}项均已完成"
    return ComplianceItem(t.key, t.description or f"{PSEUDO_TYPES['PLAN']}：计划项目按期完成", t.scope, subj.id,
                          subj.name, w.label, w.start, w.end, len(rows), len(rows) - len(open_), status, reason,
                          t.provenance, tuple(f"plans/{p.id}/items/{g.item.id}" for p, g in shown), w.code, subj.region)


def _pairing_item(t: Target, subj: _Subject, period: Period, facts: Facts) -> ComplianceItem:
    fams = [f for f in facts.families if f.special and (
        (f.site_id == subj.id or (not f.site_id and f.region == subj.region)) if subj.is_site
        else subj.region.contains(f.region))]
    unpaired = tuple(sorted(f.household_id for f in fams if not f.volunteer_ids))
    paired = len(fams) - len(unpaired)
    label = period_label(period)
    if unpaired:
        shown = "、".join(unpaired[:10]) + ("等" if len(unpaired) > 10 else "")
        status = Compliance.SHORT
        reason = (f"{label} {subj.name} 有{len(unpaired)}户计生特殊家庭未结对志愿者（户编号 {shown}；"
                  f"要求每户至少{t.count}名联系志愿者）")
    else:
        status = Compliance.MET
        reason = f"{label} {subj.name} {len(fams)}户计生特殊家庭均已结对志愿者"
    return ComplianceItem(t.key, t.description or "每户计生特殊家庭结对志愿者", t.scope, subj.id, subj.name, label,
                          period.start, period.end, len(fams), paired, status, reason, t.provenance, unpaired,
                          period_code(period), subj.region)


# ------------------------------------------------------------------ summary


@dataclass(frozen=True)
class TypeLine:
    type: str
    label: str
    held: int
    reached: int


@dataclass(frozen=True)
class Summary:
    """Figures for a region and period, in the shape of the associations' reports."""

    region: RegionCode
    period: Period
    by_type: tuple[TypeLine, ...]
    activities_held: int
    people_reached: int
    outputs: Outputs
    care_services: int  # 慰问服务场次: visits + 节日慰问 activities
    care_people: int  # 慰问人数: households visited + 节日慰问 participants
    care_money_paid: Money  # booked visits + activities' 慰问金
    visits_pending: int
    visits_rejected: int

    def text(self) -> str:
        """``开展各类慰问服务 68 场次，慰问人数 1000 余人，发放慰问金 20 余万元`` and the rest."""
        parts = [f"{period_label(self.period)}共开展各类活动 {self.activities_held} 场次，"
                 f"参与群众 {approx(self.people_reached)}人次"]
        parts += [f"{line.label} {line.held} 场次" for line in self.by_type]
        o = self.outputs
        if o.materials:
            parts.append(f"发放宣传资料 {approx(o.materials)}份")
        if o.contraceptive_boxes:
            parts.append(f"免费发放避孕和生殖保健药品 {approx(o.contraceptive_boxes)}盒")
        if o.consultations:
            parts.append(f"接受咨询 {approx(o.consultations)}人次")
        if o.clinic_visits:
            parts.append(f"免费义诊 {approx(o.clinic_visits)}人次")
        parts.append(f"开展各类慰问服务 {self.care_services} 场次，慰问人数 {approx(self.care_people)}人，"
                     f"发放慰问金 {approx_yuan(self.care_money_paid)}")
        return "，".join(parts) + "。"


def approx(n: int) -> str:
    """Report style: 68 → "68 ", 1043 → "1000 余", 12345 → "1.2 万余"."""
    if n < 100:
        return f"{n} "
    if n >= 10000:
        tenths = n // 1000
        return f"{tenths // 10}.{tenths % 10} 万余" if tenths % 10 else f"{tenths // 10} 万余"
    step = 10 ** (len(str(n)) - 2)
    return f"{n // step * step} 余" if n % step else f"{n} "


def approx_yuan(m: Money) -> str:
    """Report style money: 205,300.00 元 → "20 余万元", 8,560 元 → "8560 元"."""
    yuan = m.fen // 100
    if yuan >= 10000:
        wan, rest = divmod(yuan, 10000)
        return f"{wan} 余万元" if rest or m.fen % 100 else f"{wan} 万元"
    return f"{m.format_yuan().removesuffix('.00')} 元"


def summarize(region: RegionCode, period: Period, activities: Sequence[Activity], visits: Sequence[Visit],
              custom_labels: dict[str, str] | None = None) -> Summary:
    """Summarise held activities and visits within ``period`` (already limited to ``region``)."""
    held = [a for a in activities if a.status is ActivityStatus.HELD and period.contains(a.start)]
    vis = [v for v in visits if period.contains(v.visited_on)]
    by: dict[str, list[Activity]] = {}
    for a in held:
        by.setdefault(a.type, []).append(a)
    lines = tuple(TypeLine(t, type_label(t, custom_labels), len(acts), sum(a.reached for a in acts))
                  for t, acts in sorted(by.items(), key=lambda kv: (-len(kv[1]), kv[0])))
    outputs = sum((a.outputs for a in held), Outputs())
    care_acts = by.get(ActivityKind.FESTIVAL_CARE, [])
    booked = sum((v.amount for v in vis if v.state is VisitState.BOOKED), Money(0))
    return Summary(
        region=region, period=period, by_type=lines, activities_held=len(held),
        people_reached=sum(a.reached for a in held), outputs=outputs,
        care_services=len(vis) + len(care_acts),
        care_people=len({v.household_id for v in vis}) + sum(a.reached for a in care_acts),
        care_money_paid=booked + outputs.care_money,
        visits_pending=sum(1 for v in vis if v.state is VisitState.PENDING),
        visits_rejected=sum(1 for v in vis if v.state is VisitState.REJECTED),
    )
