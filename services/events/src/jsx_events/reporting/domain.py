"""What was done against plans and targets: plan fulfilment, cadence compliance, summaries.
Pure Python, no I/O.

Vocabulary shared with plugins (``jsxcore.hookspecs.CadenceTarget``):

* ``activity_type`` codes are the activity type codes of :mod:`jsx_events.catalog.domain`
  (or their Chinese names, or a plugin-defined code) plus its pseudo types:
  ``CARE_VISIT`` (走访慰问 visits), ``PLAN`` (年度计划), ``ANY`` (any held activity),
  ``PAIRING`` (every special family has a volunteer)
  and ``SITE`` (coverage: the subject has an open site of the target's ``site_kind``).
* ``scope`` is ``VILLAGE``/``TOWNSHIP``/``COUNTY`` (every region unit of that
  level inside the report region: the region registry's, and any the member
  projection knows), ``ADMIN_VILLAGE`` (every 行政村: the villages without the
  communities, 社区), a site kind (``WARM_HOME`` 暖心家园, ``MEMBER_HOME`` 会员之家,
  ``SCHOOL`` = ``YOUTH_HEALTH_BASE`` 学校/青春健康教育基地, …) or
  ``SPECIAL_FAMILY`` (every 计生特殊家庭 the projection knows in the region).

What counts: held activities (by start date); visits that happened (:attr:`Visit.counts`:
booked, or without 慰问金 — a visit waiting for funds counts once booked, a refused one
never); for a 评选表彰 target the selections the unit's association decided (awarded
decisions, by award year); for a plan item only activities held by the item's deadline.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol, TypeVar

from jsx_events.activities.domain import Activity, ActivityStatus, Outputs
from jsx_events.awards.domain import AWARD_LABELS, Award, AwardDecision, normalize_award_kind
from jsx_events.catalog.domain import PSEUDO_TYPES, ActivityKind, normalize_type, type_label
from jsx_events.plans.domain import ItemProgress, Plan, item_due, item_label, item_name
from jsx_events.projections.domain import SITE_KIND_LABELS, Family, Site, normalize_site_kind
from jsx_events.visits.domain import Visit, VisitState
from jsxcore.errors import InvalidArgument
from jsxcore.values import Money, Period, PeriodKind, RegionCode, RegionLevel

T = TypeVar("T")

# ------------------------------------------------------------------ plan fulfilment


def plan_progress(plan: Plan, linked: Iterable[Activity]) -> tuple[ItemProgress, ...]:
    """Each item of ``plan`` with the activities linked to it (cancelled ones do not count).

    An item is fulfilled only by activities held by its deadline (:func:`item_due`: the end
    of its month, 31 December for a whole-year item): one held later is kept apart as late
    (``late_ids``), so an item due "6月底前" is not done by a September activity.
    """
    due = {i.id: item_due(plan.year, i) for i in plan.items}
    held: dict[str, list[str]] = {}
    late: dict[str, list[str]] = {}
    scheduled: dict[str, list[str]] = {}
    for a in sorted(linked, key=lambda a: (a.start, a.id)):
        if a.plan_id != plan.id or a.status is ActivityStatus.CANCELLED:
            continue
        if a.status is not ActivityStatus.HELD:
            scheduled.setdefault(a.plan_item_id, []).append(a.id)
        elif a.plan_item_id in due and a.start > due[a.plan_item_id]:
            late.setdefault(a.plan_item_id, []).append(a.id)
        else:
            held.setdefault(a.plan_item_id, []).append(a.id)
    return tuple(
        ItemProgress(i, tuple(held.get(i.id, ())), tuple(scheduled.get(i.id, ())), tuple(late.get(i.id, ())))
        for i in plan.items
    )


# ------------------------------------------------------------------ cadence


class PluginTarget(Protocol):
    """What a plugin's ``jsxcore.hookspecs.CadenceTarget`` provides (``award_kind`` and
    ``site_kind`` since hookspecs 0.3; read with a default of "" for older objects)."""

    @property
    def key(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def activity_type(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def per(self) -> str: ...
    @property
    def description(self) -> str: ...


#: Scopes written in Chinese, folded onto codes (site kinds: ``normalize_site_kind``).
_SCOPE_ALIASES = {
    "村": "VILLAGE",
    "村（居、社区）": "VILLAGE",
    "行政村": "ADMIN_VILLAGE",
    "乡镇": "TOWNSHIP",
    "乡（镇）": "TOWNSHIP",
    "县": "COUNTY",
    "特殊家庭": "SPECIAL_FAMILY",
    "计生特殊家庭": "SPECIAL_FAMILY",
}


@dataclass(frozen=True)
class Target:
    """A cadence target as the domain uses it (built from a plugin's
    ``CadenceTarget``): at least ``count`` of ``type`` per ``per`` for every
    subject in ``scope``.

    ``award_kind``: a 评选表彰 target counts the unit's selections of that kind (awarded
    decisions) besides activities of ``type``. ``site_kind``: what a ``SITE`` (coverage)
    target requires each subject to have open."""

    key: str
    scope: str
    type: str
    count: int
    per: str  # MONTH, QUARTER, SEMESTER, YEAR
    description: str = ""
    provenance: str = ""
    award_kind: str = ""
    site_kind: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", normalize_type(self.type))
        scope = self.scope.strip()
        object.__setattr__(
            self,
            "scope",
            _SCOPE_ALIASES.get(scope) or (scope.upper() if scope.isascii() else normalize_site_kind(scope)),
        )
        object.__setattr__(self, "per", self.per.strip().upper())
        object.__setattr__(self, "award_kind", normalize_award_kind(self.award_kind) if self.award_kind else "")
        object.__setattr__(self, "site_kind", normalize_site_kind(self.site_kind) if self.site_kind else "")

    @property
    def level(self) -> RegionLevel | None:
        """The region level whose every unit the target covers (None: sites or families)."""
        return _LEVEL_SCOPES.get(self.scope)

    @property
    def counts_awards(self) -> bool:
        """Award decisions count for this target: a 评选表彰 type, or an award kind named."""
        return bool(self.award_kind) or self.type == ActivityKind.AWARD_SELECTION

    @classmethod
    def from_plugin(cls, t: PluginTarget, provenance: str = "") -> Target:
        return cls(
            key=t.key,
            scope=t.scope.upper(),
            type=t.activity_type,
            count=int(t.count),
            per=t.per.upper(),
            description=t.description,
            provenance=provenance,
            award_kind=str(getattr(t, "award_kind", "") or ""),
            site_kind=str(getattr(t, "site_kind", "") or ""),
        )


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
            ws = [
                Window(p.start, p.end, period_label(p), f"{year}-Q{p.number}")
                for p in (Period.quarter(year, q) for q in range(1, 5))
            ]
        elif per == "SEMESTER":
            ws = [
                Window(date(year, 1, 1), date(year, 6, 30), f"{year}年上半年（春季学期）", f"{year}-H1"),
                Window(date(year, 7, 1), date(year, 12, 31), f"{year}年下半年（秋季学期）", f"{year}-H2"),
            ]
        elif per == "YEAR":
            ws = [Window(date(year, 1, 1), date(year, 12, 31), f"{year}年", str(year))]
        else:
            raise InvalidArgument.field(
                "per", f"考核周期“{per}”无效，应为 MONTH、QUARTER、SEMESTER 或 YEAR", reason="INVALID_CADENCE"
            )
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
class RegionUnit:
    """A township or village of the report region as the region registry lists it;
    ``community``: a 社区 (居委会), not a 行政村."""

    code: RegionCode
    name: str
    community: bool = False


def is_community(name: str) -> bool:
    """Whether a village-level unit's published name is a community's (``麻溪铺社区居委会``),
    not a 行政村's (``仰溪铺村村委会``)."""
    return "社区" in name or name.endswith(("居委会", "居民委员会"))


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
    #: the region units (townships, villages) the region registry lists in the report region:
    #: "every village" of a target means these, plus any the member projection knows
    units: Sequence[RegionUnit] = ()


_LEVEL_SCOPES = {
    "VILLAGE": RegionLevel.VILLAGE,
    "ADMIN_VILLAGE": RegionLevel.VILLAGE,  # 行政村 only: communities (社区) left out
    "TOWNSHIP": RegionLevel.TOWNSHIP,
    "COUNTY": RegionLevel.COUNTY,
}
_UNIT_WORDS = {"VILLAGE": "村（居、社区）", "ADMIN_VILLAGE": "行政村", "TOWNSHIP": "乡（镇）", "COUNTY": "县"}


@dataclass(frozen=True)
class _Subject:
    kind: str
    id: str
    name: str
    region: RegionCode
    is_site: bool
    is_family: bool = False


def _unit_of(r: RegionCode, level: RegionLevel) -> RegionCode:
    return RegionCode(r.code[: {3: 6, 4: 9, 5: 12}[level]].ljust(12, "0"))


def _region_name(code: RegionCode, facts: Facts) -> str:
    return facts.region_names.get(code.code) or code.name or code.short


def _subjects(scope: str, region: RegionCode, facts: Facts) -> list[_Subject]:
    if scope in _LEVEL_SCOPES:
        level = _LEVEL_SCOPES[scope]
        # Region units: the registry's, and the ones the member registry knows of (sites,
        # households) — a code outside the registry still counts once members use it.
        codes: set[RegionCode] = {u.code for u in facts.units if u.code.level is level and region.contains(u.code)}
        for r in [s.region for s in facts.sites] + [f.region for f in facts.families]:
            if r.level >= level and region.contains(r):
                codes.add(_unit_of(r, level))
        if scope == "ADMIN_VILLAGE":  # a code the registry does not list is taken as a village
            codes -= {u.code for u in facts.units if u.community}
        if region.level == level:
            codes.add(region)
        return [_Subject(scope, c.code, _region_name(c, facts), c, False) for c in sorted(codes)]
    if scope == "SPECIAL_FAMILY":
        return [
            _Subject(
                scope,
                f.household_id,
                f"{_region_name(f.region, facts)} 计生特殊家庭 households/{f.household_id}",
                f.region,
                False,
                is_family=True,
            )
            for f in sorted(facts.families, key=lambda f: (f.region, f.household_id))
            if f.special and region.contains(f.region)
        ]
    kind = normalize_site_kind(scope)
    return [
        _Subject(scope, s.id, s.name, s.region, True)
        for s in sorted(facts.sites, key=lambda s: (s.region, s.name, s.id))
        if s.kind == kind and region.contains(s.region)
    ]


def _place(a: Activity, sites: dict[str, Site]) -> RegionCode:
    site = sites.get(a.site_id)
    return site.region if site else a.region


def _plans_of(subj: _Subject, w: Window, facts: Facts) -> list[Plan]:
    """The subject's own annual plans for the years of ``w`` (a site's plans, or a region's association-wide plan)."""
    return [
        p
        for p in facts.plans
        if p.year in range(w.start.year, w.end.year + 1)
        and (p.site_id == subj.id if subj.is_site else (not p.site_id and p.region == subj.region))
    ]


class _Index:
    """The facts grouped once per report, so each subject scans only its own candidates: by
    site, by household, and by the region prefix of the place (a subject region contains a
    place exactly when the place's code starts with the subject's prefix). The predicates
    applied to the candidates stay the same."""

    def __init__(self, facts: Facts) -> None:
        self.facts = facts
        self.sites = {s.id: s for s in facts.sites}
        self._acts_by_site = _group(facts.activities, lambda a: a.site_id)
        self._visits_by_site = _group(facts.visits, lambda v: v.site_id)
        self._siteless_visits = _group((v for v in facts.visits if not v.site_id), lambda v: v.region.code)
        self._visits_by_household = _group(facts.visits, lambda v: v.household_id)
        self._by_prefix: dict[tuple[str, int], dict[str, list[Any]]] = {}

    def _prefixed(self, what: str, n: int) -> dict[str, list[Any]]:
        key = (what, n)
        if key not in self._by_prefix:
            if what == "activities":
                self._by_prefix[key] = _group(self.facts.activities, lambda a: _place(a, self.sites).code[:n])
            elif what == "visits":
                self._by_prefix[key] = _group(self.facts.visits, lambda v: v.region.code[:n])
            else:
                self._by_prefix[key] = _group(self.facts.sites, lambda s: s.region.code[:n])
        return self._by_prefix[key]

    def activities(self, subj: _Subject) -> Sequence[Activity]:
        if subj.is_family:
            return ()
        if subj.is_site:
            return self._acts_by_site.get(subj.id, [])
        prefix = subj.region.prefix
        return self._prefixed("activities", len(prefix)).get(prefix, [])

    def visits(self, subj: _Subject) -> Sequence[Visit]:
        if subj.is_family:
            return self._visits_by_household.get(subj.id, [])
        if subj.is_site:
            return [*self._visits_by_site.get(subj.id, []), *self._siteless_visits.get(subj.region.code, [])]
        prefix = subj.region.prefix
        return self._prefixed("visits", len(prefix)).get(prefix, [])

    def sites_in(self, subj: _Subject) -> Sequence[Site]:
        if subj.is_family:
            return ()
        prefix = subj.region.prefix
        return self._prefixed("sites", len(prefix)).get(prefix, [])


def _group(items: Iterable[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    out: dict[str, list[T]] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


def _visit_is_for(v: Visit, subj: _Subject) -> bool:
    if subj.is_family:
        return v.household_id == subj.id
    if subj.is_site:
        return v.site_id == subj.id or (not v.site_id and v.region == subj.region)
    return subj.region.contains(v.region)


def _visits(subj: _Subject, w: Window, upto: date, idx: _Index) -> list[Visit]:
    """The subject's visits in the window (up to ``upto``), whatever their 慰问金 state."""
    end = min(w.end, upto)
    return [v for v in idx.visits(subj) if w.start <= v.visited_on <= end and _visit_is_for(v, subj)]


def _selections(t: Target, subj: _Subject, w: Window, known_by: date, facts: Facts) -> int:
    """The 评选 the subject's association held in the window, from its awarded decisions
    (of ``t.award_kind`` when named): one per kind and selection activity. A decision counts
    for its award year (a 2022 selection decided in January 2023 is 2022's, once recorded:
    ``known_by``); in a window shorter than a year, by the day it was decided."""
    whole_years = w.start.month == 1 and w.start.day == 1 and w.end.month == 12 and w.end.day == 31
    seen = set()
    for a in facts.awards:
        if a.region != subj.region or a.decision is not AwardDecision.AWARDED:
            continue
        if t.award_kind and a.kind != t.award_kind:
            continue
        if not w.start.year <= a.year <= w.end.year or a.decided_on > known_by:
            continue
        if not whole_years and not w.start <= a.decided_on <= w.end:
            continue
        seen.add((a.kind, a.activity_id))
    return len(seen)


def _open_sites(t: Target, subj: _Subject, w: Window, upto: date, idx: _Index) -> list[Site]:
    """Sites of ``t.site_kind`` inside the subject that are open on the last day looked at."""
    day = min(w.end, upto)
    return [
        s
        for s in idx.sites_in(subj)
        if s.kind == t.site_kind and subj.region.contains(s.region) and s.open_on(day) and not subj.is_family
    ]


def _count(t: Target, subj: _Subject, w: Window, upto: date, idx: _Index, known_by: date = date.max) -> int:
    """How many of what ``t`` counts the subject has in ``w`` up to ``upto``; award decisions of
    the window's year recorded by ``known_by`` (today) count even when decided after ``upto``."""
    facts, sites = idx.facts, idx.sites
    end = min(w.end, upto)

    def in_window(d: date) -> bool:
        return w.start <= d <= end

    def mine_region(r: RegionCode) -> bool:
        return subj.region.contains(r)

    if t.type == "CARE_VISIT":
        # Group visits recorded as CARE_VISIT activities count alongside single visits
        # (not for one family: a group activity names persons, not households).
        group = (
            0
            if subj.is_family
            else sum(
                1
                for a in idx.activities(subj)
                if a.status is ActivityStatus.HELD
                and a.type == "CARE_VISIT"
                and in_window(a.start)
                and (a.site_id == subj.id if subj.is_site else mine_region(_place(a, sites)))
            )
        )
        return group + sum(1 for v in _visits(subj, w, upto, idx) if v.counts)
    if t.type == "PLAN":
        return len(_plans_of(subj, w, facts))
    if t.type == "SITE":
        return len(_open_sites(t, subj, w, upto, idx))
    if subj.is_family:
        return 0  # activities are organised by associations, not counted per household
    acts = [
        a
        for a in idx.activities(subj)
        if a.status is ActivityStatus.HELD
        and in_window(a.start)
        and (t.type == "ANY" or a.type == t.type)
        and (a.site_id == subj.id if subj.is_site else mine_region(_place(a, sites)))
    ]
    n = len(acts)
    if t.counts_awards and not subj.is_site:
        # A selection shows either as an activity of the target's type or as the decisions it produced.
        n = max(n, _selections(t, subj, w, known_by, facts))
    return n


def _visit_note(subj: _Subject, w: Window, upto: date, idx: _Index) -> str:
    """What the visit count leaves out: visits waiting for funds, and refused ones."""
    vis = _visits(subj, w, upto, idx)
    pending = sum(1 for v in vis if v.state is VisitState.PENDING)
    rejected = sum(1 for v in vis if v.state is VisitState.REJECTED)
    parts = []
    if pending:
        parts.append(f"另有{pending}次慰问金待资金服务记账，记账后计入")
    if rejected:
        parts.append(f"{rejected}次慰问金被资金服务拒绝，不计入")
    return "；".join(parts)


def _what(t: Target, custom_labels: Mapping[str, str] | None) -> str:
    if t.award_kind:
        return f"“{AWARD_LABELS.get(t.award_kind, t.award_kind)}”评选表彰"
    if t.type == "SITE":
        return SITE_KIND_LABELS.get(t.site_kind, t.site_kind)
    return type_label(t.type, custom_labels)


def _reason(t: Target, subj: _Subject, w: Window, n: int, status: Compliance, upto: date, what: str) -> str:
    """The Chinese reason of a count target's finding (the wording reports have used since 0.1;
    targets per special family and coverage targets quote the target's own words)."""
    if t.type == "SITE":
        rule = t.description or f"要求每个{_UNIT_WORDS.get(t.scope, '单位')}建有{what}"
        if status is Compliance.MET:
            return f"{w.label} {subj.name} 已建{what}{n}个，达到要求（{rule}）"
        if status is Compliance.SHORT:
            return f"{w.label} {subj.name} 未建{what}（{rule}）"
        return f"{w.label} {subj.name} 截至{upto.isoformat()} 尚未建{what}（{rule}）"
    rule = f"要求{_PER_PHRASE.get(t.per, t.per)}至少{t.count}次"
    if subj.is_family and t.description:
        rule = f"{rule}：{t.description}"
    if status is Compliance.MET:
        return f"{w.label} {subj.name} {what}{n}次，达到要求（{rule}）"
    if status is Compliance.SHORT:
        return (
            f"{w.label} {subj.name} 无{what}记录（{rule}）"
            if n == 0
            else f"{w.label} {subj.name} {what}{n}次，少于要求（{rule}），差{t.count - n}次"
        )
    return (
        f"{w.label} {subj.name} 截至{upto.isoformat()} {what}{n}次，"
        f"本{_PER_UNIT.get(t.per, '期')}尚未结束，还需{t.count - n}次（{rule}）"
    )


def compute_compliance(
    targets: Sequence[Target],
    region: RegionCode,
    period: Period,
    facts: Facts,
    *,
    today: date | None = None,
    custom_labels: Mapping[str, str] | None = None,
) -> ComplianceReport:
    """Evaluate every target for every subject and window overlapping ``period``.

    A window wholly inside the past is MET or SHORT; a window still running on
    ``today`` (or past the report period's end) is MET or DUE. Items carry
    counts and a Chinese reason naming the window, the subject and the rule.
    A ``PLAN`` target is met by the plan's items, not the plan alone (:func:`_plan_item`).
    """
    upto = min(period.end, today) if today else period.end
    idx = _Index(facts)
    items: list[ComplianceItem] = []
    for t in targets:
        what = _what(t, custom_labels)
        for subj in _subjects(t.scope, region, facts):
            if t.type == "PAIRING":
                items.append(_pairing_item(t, subj, period, facts))
                continue
            for w in windows(t.per, period):
                if w.start > upto:
                    continue
                n = _count(t, subj, w, upto, idx, today or date.max)
                finished = w.end <= upto
                if t.type == "PLAN" and n >= t.count:
                    # a plan on paper is not enough: its items due so far must be done
                    items.append(_plan_item(t, subj, w, upto, facts, custom_labels))
                    continue
                status = Compliance.MET if n >= t.count else Compliance.SHORT if finished else Compliance.DUE
                reason = _reason(t, subj, w, n, status, upto, what)
                note = _visit_note(subj, w, upto, idx) if t.type == "CARE_VISIT" else ""
                if note:
                    reason = f"{reason}；{note}"
                items.append(
                    ComplianceItem(
                        t.key,
                        t.description or f"{what}要求{_PER_PHRASE.get(t.per, t.per)}至少{t.count}次",
                        t.scope,
                        subj.id,
                        subj.name,
                        w.label,
                        w.start,
                        w.end,
                        t.count,
                        n,
                        status,
                        reason,
                        t.provenance,
                        missing_ids=(subj.id,) if subj.is_family and status is not Compliance.MET else (),
                        window_code=w.code,
                        subject_region=subj.region,
                    )
                )
    return ComplianceReport(region, period, tuple(items))


def _plan_item(
    t: Target, subj: _Subject, w: Window, upto: date, facts: Facts, custom_labels: Mapping[str, str] | None
) -> ComplianceItem:
    """A PLAN target for a subject that has its plan: MET when every item is fulfilled by
    held activities linked to it (held by the item's deadline), SHORT when an item whose
    month is over (by the report's period end, and by today) is not, DUE while the
    unfulfilled items are not yet due.

    Only activities held by the end of what is looked at (window, period, today) count,
    so a report for a past period stays what it was. ``required``/``actual`` count items.
    """
    seen = min(w.end, upto)
    linked = {a.id: a for a in (*facts.activities, *facts.plan_activities) if a.start <= seen}.values()
    rows = [
        (p, g)
        for p in sorted(_plans_of(subj, w, facts), key=lambda p: (p.year, p.id))
        for g in plan_progress(p, linked)
    ]
    open_ = [(p, g) for p, g in rows if not g.fulfilled]
    overdue = [(p, g) for p, g in open_ if item_due(p.year, g.item) <= seen]
    years = "、".join(sorted({str(p.year) for p, _ in rows}))
    head = f"{subj.name} {years}年度计划" if t.per == "YEAR" else f"{w.label} {subj.name} {years}年度计划"

    def line(p: Plan, g: ItemProgress) -> str:
        when = f"{g.item.month}月底前" if g.item.month else "年内"
        late = f"；另有{len(g.late_ids)}次在期限后开展，不计入" if g.late_ids else ""
        return f"{item_label(g.item, custom_labels)}（计划{g.item.count}次，已开展{len(g.held_ids)}次，{when}{late}）"

    def listed(rs: list[tuple[Plan, ItemProgress]]) -> str:
        return "；".join(line(p, g) for p, g in rs[:10]) + ("等" if len(rs) > 10 else "")

    if overdue:
        status = Compliance.SHORT
        shown = overdue
        reason = (
            f"{head}中 {len(overdue)} 项未完成：{listed(overdue)}。"
            "请开展这些活动，登记活动时关联对应的计划项（plan_item）"
        )
    elif open_:
        status = Compliance.DUE
        shown = open_
        reason = (
            f"{head}已完成{len(rows) - len(open_)}项，截至{seen.isoformat()} 尚有{len(open_)}项未到期：{listed(open_)}"
        )
    else:
        status, shown = Compliance.MET, []
        reason = f"{head}{len(rows)}项均已完成"
    return ComplianceItem(
        t.key,
        t.description or f"{PSEUDO_TYPES['PLAN']}：计划项目按期完成",
        t.scope,
        subj.id,
        subj.name,
        w.label,
        w.start,
        w.end,
        len(rows),
        len(rows) - len(open_),
        status,
        reason,
        t.provenance,
        tuple(item_name(p.id, g.item.id) for p, g in shown),
        w.code,
        subj.region,
    )


def _pairing_item(t: Target, subj: _Subject, period: Period, facts: Facts) -> ComplianceItem:
    fams = [
        f
        for f in facts.families
        if f.special
        and (
            (f.site_id == subj.id or (not f.site_id and f.region == subj.region))
            if subj.is_site
            else f.household_id == subj.id
            if subj.is_family
            else subj.region.contains(f.region)
        )
    ]
    unpaired = tuple(sorted(f.household_id for f in fams if not f.volunteer_ids))
    paired = len(fams) - len(unpaired)
    label = period_label(period)
    if unpaired:
        shown = "、".join(unpaired[:10]) + ("等" if len(unpaired) > 10 else "")
        status = Compliance.SHORT
        reason = (
            f"{label} {subj.name} 有{len(unpaired)}户计生特殊家庭未结对志愿者（户编号 {shown}；"
            f"要求每户至少{t.count}名联系志愿者）"
        )
    else:
        status = Compliance.MET
        reason = f"{label} {subj.name} {len(fams)}户计生特殊家庭均已结对志愿者"
    return ComplianceItem(
        t.key,
        t.description or "每户计生特殊家庭结对志愿者",
        t.scope,
        subj.id,
        subj.name,
        label,
        period.start,
        period.end,
        len(fams),
        paired,
        status,
        reason,
        t.provenance,
        unpaired,
        period_code(period),
        subj.region,
    )


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
        parts = [
            f"{period_label(self.period)}共开展各类活动 {self.activities_held} 场次，"
            f"参与群众 {approx(self.people_reached)}人次"
        ]
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
        parts.append(
            f"开展各类慰问服务 {self.care_services} 场次，慰问人数 {approx(self.care_people)}人，"
            f"发放慰问金 {approx_yuan(self.care_money_paid)}"
        )
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


def summarize(
    region: RegionCode,
    period: Period,
    activities: Sequence[Activity],
    visits: Sequence[Visit],
    custom_labels: Mapping[str, str] | None = None,
) -> Summary:
    """Summarise held activities and visits within ``period`` (already limited to ``region``)."""
    held = [a for a in activities if a.status is ActivityStatus.HELD and period.contains(a.start)]
    vis = [v for v in visits if period.contains(v.visited_on)]
    by: dict[str, list[Activity]] = {}
    for a in held:
        by.setdefault(a.type, []).append(a)
    lines = tuple(
        TypeLine(t, type_label(t, custom_labels), len(acts), sum(a.reached for a in acts))
        for t, acts in sorted(by.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    )
    outputs = sum((a.outputs for a in held), Outputs())
    care_acts = by.get(ActivityKind.FESTIVAL_CARE, [])
    booked = sum((v.amount for v in vis if v.state is VisitState.BOOKED), Money(0))
    return Summary(
        region=region,
        period=period,
        by_type=lines,
        activities_held=len(held),
        people_reached=sum(a.reached for a in held),
        outputs=outputs,
        care_services=len(vis) + len(care_acts),
        care_people=len({v.household_id for v in vis}) + sum(a.reached for a in care_acts),
        care_money_paid=booked + outputs.care_money,
        visits_pending=sum(1 for v in vis if v.state is VisitState.PENDING),
        visits_rejected=sum(1 for v in vis if v.state is VisitState.REJECTED),
    )
