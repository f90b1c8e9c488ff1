"""Typed, documented hook specifications for county rule plugins.

A plugin is a module (found through the ``jsx`` entry-point group) that
declares ``JSX_PLUGIN = PluginMeta(...)`` and implements some of the hooks
below with ``@hookimpl``. Hooks take plain data and return plain results —
decisions with the reasons or basis a clerk can read. Batching, locking and
persistence stay in the services.

Resolution (see :mod:`jsxcore.plugins`): for a region the host asks the
plugins enabled at the village, then township, county, city and province
level, then the built-in defaults; the first answer that is not ``None``
wins. A hook that has nothing to say for its arguments returns ``None`` so
the next level up decides.

Every spec documents each parameter, its return value and the version it was
added in; ``tests/test_hookspecs_documented.py`` enforces that.
"""

from __future__ import annotations

import difflib
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

import pluggy

from jsxcore.errors import InvalidArgument
from jsxcore.values import Money, Period, RegionCode

#: pluggy project name; also the entry-point group plugins are found in.
PROJECT = "jsx"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

T = TypeVar("T")

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:[-+][0-9A-Za-z.+-]+)?$")
_CJK = re.compile(r"[\u4e00-\u9fff]")


def has_chinese(text: str) -> bool:
    """True if ``text`` contains at least one CJK ideograph (reasons and
    basis lines must be readable by a Chinese-speaking clerk)."""
    return bool(_CJK.search(text))


# --------------------------------------------------------------------------
# Vocabulary shared by plugins and services
# --------------------------------------------------------------------------


class ProgramType(StrEnum):
    """Help programs whose rules plugins decide. A ``StrEnum``: members compare
    equal to their string value, so hooks receive and may compare plain str."""

    SPECIAL_SUPPORT = "SPECIAL_SUPPORT"  # 计生特别扶助（按月）
    HEALTH_INSURANCE = "HEALTH_INSURANCE"  # 计生特殊家庭健康保险（按年）
    NURSING_SUBSIDY = "NURSING_SUBSIDY"  # 计生特殊家庭住院护理补贴
    BIRTH_CARE = "BIRTH_CARE"  # 生育关怀救助
    GOLDEN_AUTUMN = "GOLDEN_AUTUMN"  # 金秋助学
    WARM_HEART = "WARM_HEART"  # 暖心行动（走访慰问）
    SANJIEHE = "SANJIEHE"  # 计划生育“三结合”
    LOAN_INTEREST = "LOAN_INTEREST"  # 计生家庭创业贷款贴息

    @property
    def label(self) -> str:
        """The program's Chinese name, for messages and reasons."""
        return PROGRAM_LABELS[self]


PROGRAM_LABELS: dict[ProgramType, str] = {
    ProgramType.SPECIAL_SUPPORT: "计生特别扶助",
    ProgramType.HEALTH_INSURANCE: "计生特殊家庭健康保险",
    ProgramType.NURSING_SUBSIDY: "计生特殊家庭住院护理补贴",
    ProgramType.BIRTH_CARE: "生育关怀救助",
    ProgramType.GOLDEN_AUTUMN: "金秋助学",
    ProgramType.WARM_HEART: "暖心行动",
    ProgramType.SANJIEHE: "计划生育“三结合”",
    ProgramType.LOAN_INTEREST: "计生家庭创业贷款贴息",
}


class Situation(StrEnum):
    """A household's family-planning situation as the rules see it."""

    SPECIAL_BEREAVED = "SPECIAL_BEREAVED"  # 特殊家庭：独生子女死亡（失独）
    SPECIAL_DISABLED = "SPECIAL_DISABLED"  # 特殊家庭：独生子女伤残
    ONLY_CHILD = "ONLY_CHILD"  # 独生子女户
    TWO_DAUGHTERS = "TWO_DAUGHTERS"  # 农村双女户
    OTHER = "OTHER"


SPECIAL_FAMILY = frozenset({Situation.SPECIAL_BEREAVED, Situation.SPECIAL_DISABLED})


class FundKind(StrEnum):
    """Kinds of funds whose allowed uses plugins decide."""

    HAPPINESS_FUND = "HAPPINESS_FUND"  # 村级“幸福基金”
    CARE_FUND = "CARE_FUND"  # 关爱帮扶资金（暖心家园、特殊家庭）
    PROJECT_FUND = "PROJECT_FUND"  # 项目资金（三结合、贴息等）


#: Approval step levels, nearest first.
APPROVAL_LEVELS = ("VILLAGE", "TOWNSHIP", "COUNTY", "CITY", "PROVINCE")

Unit = Literal["PERSON", "HOUSEHOLD"]
Per = Literal["MONTH", "QUARTER", "SEMESTER", "YEAR"]
# Region levels (every unit of that level) or site kinds (every site of that kind).
Scope = Literal[
    "VILLAGE", "TOWNSHIP", "COUNTY", "SCHOOL", "WARM_HOME", "MEMBER_HOME", "HEALTH_STATION", "YOUTH_HEALTH_BASE"
]


# --------------------------------------------------------------------------
# What a plugin's rules read (lets a batch ask once per distinct input)
# --------------------------------------------------------------------------


class BirthDateUse(StrEnum):
    """How much of ``Beneficiary.birth_date`` a plugin's rules read.

    Finest first: a caller grouping beneficiaries keeps the exact date
    (``DATE``), only the age in whole years on ``period.start``
    (``AGE_ON_PERIOD_START``; a missing date stays distinct from every age),
    or ignores the date (``UNUSED``).

    .. versionadded:: 0.2
    """

    DATE = "DATE"  # the exact date: every distinct date is a distinct input (the safe default)
    AGE_ON_PERIOD_START = "AGE_ON_PERIOD_START"  # only the age in whole years on the period's first day
    UNUSED = "UNUSED"  # not read at all

    @property
    def fineness(self) -> int:
        """Rank for :meth:`RuleInputs.union`: the finer use (higher) wins."""
        return _BIRTH_DATE_FINENESS[self]


_BIRTH_DATE_FINENESS = {BirthDateUse.UNUSED: 0, BirthDateUse.AGE_ON_PERIOD_START: 1, BirthDateUse.DATE: 2}


@dataclass(frozen=True)
class RuleInputs:
    """What a plugin's eligibility and amount rules for one program type read
    of a Beneficiary besides its region, situation and unit (always inputs)
    and the period/program type/context (the same for a whole batch).

    Declared in ``PluginMeta.rule_inputs`` so that a batch (the monthly
    特别扶助 run) asks ``jsx_program_eligibility`` / ``jsx_entitlement_amount``
    once per distinct *declared* input instead of once per person: two
    beneficiaries that agree on region, situation, unit, the ``attributes``
    keys named here (value, or absent) and ``birth_date`` as far as
    ``birth_date`` says must get the same answers. ``person_id`` and
    ``household_id`` are never inputs. The conformance kit checks the claim.

    :param attributes: the attribute keys read; any other key is ignored by
        these rules. A set, list or tuple is stored as a frozenset.
    :param birth_date: how much of the birth date is read (:class:`BirthDateUse`).

    .. versionadded:: 0.2
    """

    attributes: frozenset[str] = frozenset()
    birth_date: BirthDateUse = BirthDateUse.DATE

    def __post_init__(self) -> None:
        # A plain set literal is the natural way to write keys; a str is left for problems() to report.
        if isinstance(self.attributes, (set, list, tuple)):
            object.__setattr__(self, "attributes", frozenset(self.attributes))

    def union(self, other: RuleInputs) -> RuleInputs:
        """What two rules read together: keys united, the finer birth-date use
        wins (``DATE`` > ``AGE_ON_PERIOD_START`` > ``UNUSED``)."""
        finer = max(self.birth_date, other.birth_date, key=lambda u: BirthDateUse(u).fineness)
        return RuleInputs(frozenset(self.attributes) | frozenset(other.attributes), BirthDateUse(finer))

    def problems(self, where: str) -> list[str]:
        """What is wrong with this declaration, in Chinese; ``where`` names it."""
        out: list[str] = []
        keys = self.attributes
        if not isinstance(keys, frozenset):
            out.append(f"{where} 的 attributes 须为属性名集合（frozenset），实际为 {type(keys).__name__}")
        else:
            for key in sorted(keys, key=repr):
                if not isinstance(key, str) or not key.strip() or key != key.strip():
                    out.append(f"{where} 的属性名 {key!r} 无效：须为非空字符串（不含首尾空格）")
        if not isinstance(self.birth_date, BirthDateUse):
            allowed = "、".join(u.value for u in BirthDateUse)
            out.append(f"{where} 的 birth_date 须为 BirthDateUse（{allowed}），实际为 {self.birth_date!r}")
        return out


#: What a plugin whose declared mapping lacks a program type reads for it.
NOTHING_READ = RuleInputs(frozenset(), BirthDateUse.UNUSED)


# --------------------------------------------------------------------------
# Plain data in and out of hooks
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PluginMeta:
    """Module-level ``JSX_PLUGIN`` metadata every plugin declares.

    ``regions`` are the region codes (6 or 12 digits) the plugin is written
    for; configuration may enable it for those regions or areas inside them.

    ``rule_inputs`` (optional, since 0.2) maps a program type value (e.g.
    ``"SPECIAL_SUPPORT"``) to the :class:`RuleInputs` its
    ``jsx_program_eligibility`` and ``jsx_entitlement_amount`` rules read.
    ``None`` (the default) means not declared: callers must treat every
    attribute and the exact birth date as input. A declared mapping covers
    every program type: a type missing from it means "for this type my rules
    read no attribute and not the birth date". See
    :meth:`jsxcore.plugins.PluginHost.rule_inputs`.

    .. versionchanged:: 0.2
       ``rule_inputs`` added.
    """

    name: str
    version: str
    regions: tuple[str, ...]
    description: str = ""
    # hash=False: a mapping is not hashable, and the name already identifies a plugin.
    rule_inputs: Mapping[str, RuleInputs] | None = field(default=None, hash=False)

    def problems(self) -> list[str]:
        """What is wrong with this metadata, in Chinese (empty if valid)."""
        out: list[str] = []
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name or ""):
            out.append(f"插件名称 {self.name!r} 须为小写字母、数字或下划线")
        if not _SEMVER.match(self.version or ""):
            out.append(f"插件 {self.name} 的版本号 {self.version!r} 不符合语义化版本（如 0.1.0）")
        if not self.regions:
            out.append(f"插件 {self.name} 未声明适用地区")
        for code in self.regions:
            try:
                RegionCode.parse(code)
            except Exception:
                out.append(f"插件 {self.name} 声明的地区代码 {code!r} 无效")
        out.extend(self._rule_inputs_problems())
        return out

    def _rule_inputs_problems(self) -> list[str]:
        declared = self.rule_inputs
        if declared is None:
            return []
        if not isinstance(declared, Mapping):
            return [
                f"插件 {self.name} 的 rule_inputs 须为“项目类型 → RuleInputs”的映射，实际为 {type(declared).__name__}"
            ]
        out: list[str] = []
        known = [p.value for p in ProgramType]
        for key, inputs in declared.items():
            if not isinstance(key, str) or not key.strip() or key != key.strip():
                out.append(
                    f"插件 {self.name} 的 rule_inputs 项目类型 {key!r} 无效："
                    "须为 ProgramType 的值（如 SPECIAL_SUPPORT）或非空的自定义类型名"
                )
                continue
            if key not in known and (near := difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.9)):
                # A misspelt type would silently declare the real one as reading nothing.
                out.append(
                    f"插件 {self.name} 的 rule_inputs 项目类型 {key!r} 与 {near[0]} 相近，"
                    "疑似拼写错误；自定义项目类型请另取名称"
                )
            where = f"插件 {self.name} 的 rule_inputs[{key!r}]"
            if not isinstance(inputs, RuleInputs):
                out.append(f"{where} 须为 RuleInputs，实际为 {type(inputs).__name__}")
                continue
            out.extend(inputs.problems(where))
        return out


@dataclass(frozen=True)
class Beneficiary:
    """Who a program decision is about. Ids only — never 身份证 numbers.

    ``attributes`` are plain strings: what the clerk entered for the rules
    (e.g. ``birth_date`` ``YYYY-MM-DD``, ``has_living_child``;
    ``child_disability_grade`` defaults to the member projection's grade),
    plus, from the funds service, the application's program-specific details
    under reserved keys. A clerk cannot set the reserved keys, and every key
    of the application's kind is present (empty text when not given). Money
    is in 分 as decimal digits, dates are ``YYYY-MM-DD``:

    - 贷款贴息 (``LOAN_INTEREST``): ``loan.lender``, ``loan.principal_fen``,
      ``loan.annual_rate_bp`` (basis points, 435 = 4.35%),
      ``loan.interest_paid_fen`` (interest paid in the period),
      ``loan.start``, ``loan.end`` (after ``loan.start``), ``loan.purpose``.
    - 住院护理补贴 (``NURSING_SUBSIDY``): ``hospital.name``,
      ``hospital.admission``, ``hospital.discharge``, ``hospital.days``
      (≥ 1, counted 算入不算出: discharge − admission, a same-day stay is 1).
    - 三结合 (``SANJIEHE``): ``sanjiehe.project``,
      ``sanjiehe.agreement_number``, ``sanjiehe.industry``,
      ``sanjiehe.partner``, ``sanjiehe.income_gained_fen``.
    - 幸福基金 spending (``HAPPINESS_FUND``): ``happiness.use`` (the Chinese
      use name, as :func:`jsx_fund_allowed_uses` answers, e.g. 村民慰问 —
      already checked against the fund's rule), ``happiness.use_code``
      (``VILLAGER_CONDOLENCE``…), ``happiness.resolution_number``.
    """

    person_id: str
    household_id: str
    region: RegionCode
    situation: str  # a Situation value
    unit: Unit = "PERSON"  # per-person or per-household payment
    birth_date: date | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Eligibility:
    """Eligible or not, with the reasons (Chinese, one sentence each)."""

    eligible: bool
    reasons: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.reasons or not all(isinstance(r, str) and has_chinese(r) for r in self.reasons):
            raise ValueError("Eligibility.reasons 须至少包含一条中文理由")


@dataclass(frozen=True)
class Amount:
    """An entitlement amount and the basis it was computed from, e.g.
    ``("国家标准 590 元/人/月（2022-07-01 起）",)``."""

    amount: Money
    basis: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Money):
            raise TypeError("Amount.amount 须为 Money（单位：分）")
        if self.amount.fen < 0:
            raise ValueError("Amount.amount 不能为负数")
        if not self.basis or not all(isinstance(b, str) and has_chinese(b) for b in self.basis):
            raise ValueError("Amount.basis 须至少包含一条中文依据")


@dataclass(frozen=True)
class ApprovalChain:
    """Review/approval levels in order, e.g. ``("VILLAGE", "TOWNSHIP", "COUNTY")``."""

    steps: tuple[str, ...]
    basis: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.steps or any(s not in APPROVAL_LEVELS for s in self.steps):
            raise ValueError(f"ApprovalChain.steps 须为 {APPROVAL_LEVELS} 中的级别")
        order = [APPROVAL_LEVELS.index(s) for s in self.steps]
        if order != sorted(set(order)):
            raise ValueError("ApprovalChain.steps 须由下到上、不重复")


@dataclass(frozen=True)
class PublicityRule:
    """How long a decision is made public (公示) before payment."""

    days: int
    working_days: bool
    basis: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError("PublicityRule.days 须为正整数")


@dataclass(frozen=True)
class FundUses:
    """The uses a fund may be spent on (Chinese names, e.g. 尊老爱幼)."""

    uses: tuple[str, ...]
    basis: tuple[str, ...] = ()


@dataclass(frozen=True)
class CadenceTarget:
    """A recurring target: at least ``count`` activities of ``activity_type``
    per ``per`` for every site of kind ``scope`` (every village, school,
    暖心家园 …). ``key`` is stable so shortfall reports can refer to it.
    Besides activity type codes, ``activity_type`` may be one of the events
    service's pseudo types ``ANY`` (any activity), ``CARE_VISIT`` (走访慰问),
    ``PLAN`` (年度计划) or ``PAIRING`` (a volunteer per special family)."""

    key: str
    scope: Scope
    activity_type: str
    count: int
    per: Per
    description: str

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("CadenceTarget.count 须为正整数")


@dataclass(frozen=True)
class ActivityType:
    """An activity type events can be recorded under, and the outputs
    (资料份数, 咨询人次 …) counted for it."""

    code: str
    name: str
    outputs: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# Effective-dated rule tables (a helper for plugin authors)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Dated(Generic[T]):
    """One row of a rule table: ``value`` applies from ``since`` until the
    next row's date. ``source`` says where the figure comes from."""

    since: date
    value: T
    source: str


class DatedTable(Generic[T]):
    """Rows effective from a date; ``at(day)`` returns the row in force.

    A day before the earliest row raises ``InvalidArgument`` with reason
    ``NO_RULE_FOR_PERIOD`` instead of guessing a figure.
    """

    def __init__(self, what: str, rows: Sequence[Dated[T]]) -> None:
        if not rows:
            raise ValueError("DatedTable needs at least one row")
        self.what = what
        self.rows = tuple(sorted(rows, key=lambda r: r.since))
        self._dates = [r.since for r in self.rows]

    def at(self, day: date) -> Dated[T]:
        i = bisect_right(self._dates, day)
        if i == 0:
            raise InvalidArgument.field(
                "period",
                f"{self.what}在 {day.isoformat()} 没有适用的标准（现有标准自 "
                f"{self.rows[0].since.isoformat()} 起施行），请核对期间或联系县计生协系统管理员补充历史标准",
                reason="NO_RULE_FOR_PERIOD",
            )
        return self.rows[i - 1]

    def monthly_amount(self, period: Period, *extra_basis: str) -> Amount:
        """For a table of monthly rates (``Money``): the total over every
        month of ``period``, each month at the rule in force on its 1st, with
        a basis line per rate used (``… × 6 个月``) plus ``extra_basis``."""
        total = Money(0)
        used: dict[Dated[Any], int] = {}
        for month in period.months():
            row = self.at(month.start)
            total += row.value
            used[row] = used.get(row, 0) + 1
        basis = [row.source if n == 1 else f"{row.source} × {n} 个月" for row, n in used.items()]
        return Amount(total, (*basis, *extra_basis))


# --------------------------------------------------------------------------
# Hook specifications, grouped by program
# --------------------------------------------------------------------------

# ---- all programs: eligibility and amounts -------------------------------


@hookspec(firstresult=True)
def jsx_program_eligibility(
    program_type: str, beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]
) -> Eligibility | None:
    """Decide whether a beneficiary may receive a program's help for a period.

    :param program_type: a :class:`ProgramType` value, e.g. ``"SPECIAL_SUPPORT"``.
    :param beneficiary: the person or household, with its region and situation.
    :param period: the period applied for (a month for 特别扶助, a year for 健康保险).
    :param context: plain facts the service gathered (e.g. ``claims_so_far``);
        plugins must not fetch data themselves.
    :return: :class:`Eligibility` with Chinese reasons, or ``None`` when this
        plugin has no rule for the program (the next level up decides).

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def jsx_entitlement_amount(
    program_type: str, beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]
) -> Amount | None:
    """Compute how much a beneficiary is entitled to for a period.

    Use the rule in force on the 1st of each month the period covers; raise
    ``InvalidArgument`` (reason ``NO_RULE_FOR_PERIOD``) for periods before the
    earliest known rule rather than guessing.

    :param program_type: a :class:`ProgramType` value.
    :param beneficiary: the person or household being paid.
    :param period: the period being paid.
    :param context: plain facts the service gathered (e.g. ``hospital_days``).
    :return: :class:`Amount` (non-negative :class:`Money` in 分, with its basis),
        or ``None`` when this plugin has no rule for the program.

    .. versionadded:: 0.1
    """


# ---- application flow: approval and publicity ----------------------------


@hookspec(firstresult=True)
def jsx_approval_chain(program_type: str, region: RegionCode, amount: Money) -> ApprovalChain | None:
    """Say which levels review and approve an application, lowest first.

    :param program_type: a :class:`ProgramType` value.
    :param region: the applicant's region.
    :param amount: the amount applied for (some places add a level above a threshold).
    :return: :class:`ApprovalChain`, or ``None`` to defer to the level above.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def jsx_publicity_rule(program_type: str, region: RegionCode) -> PublicityRule | None:
    """Say how long an approved list is made public (公示) before payment.

    :param program_type: a :class:`ProgramType` value.
    :param region: the region whose list is published.
    :return: :class:`PublicityRule`, or ``None`` to defer to the level above.

    .. versionadded:: 0.1
    """


# ---- funds: 幸福基金 and other funds -------------------------------------


@hookspec(firstresult=True)
def jsx_fund_allowed_uses(fund_kind: str, region: RegionCode) -> FundUses | None:
    """List what a fund may be spent on.

    :param fund_kind: a :class:`FundKind` value, e.g. ``"HAPPINESS_FUND"``.
    :param region: the fund's region (a 幸福基金 belongs to a village).
    :return: :class:`FundUses`, or ``None`` to defer to the level above.

    .. versionadded:: 0.1
    """


# ---- events: activity types and cadence targets --------------------------


@hookspec(firstresult=True)
def jsx_cadence_targets(region: RegionCode, year: int) -> tuple[CadenceTarget, ...] | None:
    """List the recurring activity targets for sites in a region for a year.

    The answering plugin returns the complete list for its area (it may build
    on a higher level's table by importing it).

    :param region: the region whose sites are measured.
    :param year: the calendar year the targets apply to.
    :return: a tuple of :class:`CadenceTarget`, or ``None`` to defer to the level above.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def jsx_activity_types(region: RegionCode) -> tuple[ActivityType, ...] | None:
    """List the activity types events may be recorded under in a region.

    :param region: the region the activity takes place in.
    :return: a tuple of :class:`ActivityType` (the complete list for the
        area), or ``None`` to defer to the level above.

    .. versionadded:: 0.1
    """


#: Hook names in declaration order (docs, listing, conformance kit).
HOOK_NAMES: tuple[str, ...] = tuple(n for n in list(globals()) if n.startswith("jsx_"))
