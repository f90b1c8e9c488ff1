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
# Region levels (every unit of that level), site kinds (every site of that kind),
# ADMIN_VILLAGE (every 行政村: a village-level unit that is not a 社区/居委会, since 0.3)
# or SPECIAL_FAMILY (every 计生特殊家庭, since 0.3).
Scope = Literal[
    "VILLAGE",
    "ADMIN_VILLAGE",
    "TOWNSHIP",
    "COUNTY",
    "SCHOOL",
    "WARM_HOME",
    "MEMBER_HOME",
    "HEALTH_STATION",
    "YOUTH_HEALTH_BASE",
    "SPECIAL_FAMILY",
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
class SupportEnd:
    """Until when a periodic help goes on after a life event (see :func:`jsx_support_end`).

    ``last_period_month`` is the first day of the last month paid: periods
    starting after that month are not paid. ``basis`` says why, in Chinese,
    naming the rule (and "假定" when no published figure decided it).

    .. versionadded:: 0.3
    """

    last_period_month: date
    basis: tuple[str, ...] = ()


@dataclass(frozen=True)
class CadenceTarget:
    """A recurring target: at least ``count`` activities of ``activity_type``
    per ``per`` for every subject of ``scope`` (every village, school,
    暖心家园 …, or every 计生特殊家庭). ``key`` is stable so shortfall reports
    can refer to it; ``description`` is the rule in the words of its source
    (the events service quotes it in every finding).

    Besides activity type codes, ``activity_type`` may be one of the events
    service's pseudo types ``ANY`` (any activity), ``CARE_VISIT`` (走访慰问:
    visits that happened — booked, or without 慰问金), ``PLAN`` (年度计划),
    ``PAIRING`` (a volunteer per special family) or ``SITE`` (coverage: the
    subject has an open site of kind ``site_kind``).

    ``award_kind`` (an award kind such as ``HAPPY_FAMILY``) makes a 评选表彰
    target count the selections of that kind the subject's association
    decided (awarded decisions of the window's year), besides activities of
    ``activity_type``. ``site_kind`` (``MEMBER_HOME``, ``WARM_HOME`` …) is
    what a ``SITE`` target requires. ``SPECIAL_FAMILY`` scope counts per
    household: ``CARE_VISIT`` visits to that family. ``ADMIN_VILLAGE`` is every
    行政村 (the village-level units of the region registry that are not
    communities — 社区、居委会), where ``VILLAGE`` is every 村（居、社区）.

    .. versionchanged:: 0.3
       ``award_kind``, ``site_kind``, the ``SITE`` pseudo type and the
       ``SPECIAL_FAMILY`` and ``ADMIN_VILLAGE`` scopes added.
    """

    key: str
    scope: Scope
    activity_type: str
    count: int
    per: Per
    description: str
    award_kind: str = ""
    site_kind: str = ""

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("CadenceTarget.count 须为正整数")
        if self.activity_type.strip().upper() == "SITE" and not self.site_kind.strip():
            raise ValueError("CadenceTarget 覆盖类目标（activity_type=SITE）须指明 site_kind（如 MEMBER_HOME）")


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
# Plain data for 贷款贴息 and 三结合 (since 0.3)
# --------------------------------------------------------------------------

#: Basis points in one (100 %): rates and shares are integers, 435 = 4.35 %, 7000 = 70 %.
BASIS_POINTS = 10_000

#: Who lends: a bank, a 农村信用社 / 农村商业银行, or another licensed lender.
LenderKind = Literal["BANK", "RURAL_CREDIT", "OTHER"]
#: How a rule treats a principal above its cap: subsidise only the part inside the cap (超过部分不予贴息), or refuse.
OverCap = Literal["CAP", "REFUSE"]
#: Who carries out a 三结合 project: a household, a cooperative, a company (公司+农户) or a production base.
ImplementerKind = Literal["HOUSEHOLD", "COOPERATIVE", "COMPANY", "BASE"]
#: Who a tranche is paid to: a helped household's card, or the implementing body's account.
TranchePayee = Literal["HOUSEHOLD", "IMPLEMENTER"]
#: What must be on record before a tranche milestone is paid.
MilestoneAfter = Literal["AGREEMENT", "PROGRESS", "ACCEPTANCE"]
#: The latest 验收 of a project: none yet, passed, or failed (then no tranche until a re-inspection passes).
AcceptanceState = Literal["NONE", "PASSED", "FAILED"]
#: What a 绩效评价 is about: one helped household, or the whole project.
PerformanceScope = Literal["HOUSEHOLD", "PROJECT"]

_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _chinese(what: str, lines: Sequence[str], *, required: bool = True) -> None:
    if required and not lines:
        raise ValueError(f"{what} 须至少包含一条中文说明")
    for line in lines:
        if not isinstance(line, str) or not has_chinese(line):
            raise ValueError(f"{what} 须为中文句子，实际为 {line!r}")


def _code(what: str, code: str) -> None:
    if not isinstance(code, str) or not _CODE.match(code):
        raise ValueError(f"{what} 的代码须为 UPPER_SNAKE_CASE（如 PLANTING），实际为 {code!r}")


def _unique(what: str, codes: Sequence[str]) -> None:
    if len(set(codes)) != len(codes):
        raise ValueError(f"{what} 的代码不能重复：{', '.join(codes)}")


def _find(text: str, entries: Sequence[Any], order: Sequence[Any]) -> Any:
    """The entry ``text`` names: its code or name exactly, else the first of
    ``order`` whose name or a keyword appears in ``text``."""
    key = text.strip()
    if not key:
        return None
    for entry in entries:
        if key.upper() == entry.code or key == entry.name:
            return entry
    for entry in order:
        if any(word and word in key for word in (entry.name, *entry.keywords)):
            return entry
    return None


# ---- 贷款贴息 -------------------------------------------------------------


@dataclass(frozen=True)
class LoanPurpose:
    """One entry of a region's loan-purpose list (:func:`jsx_loan_purposes`):
    an allowed category (种植, 养殖 …) or a forbidden use (上学, 看病, 还债,
    赌博, 高利贷 …), with the rule's reason a clerk can read out.

    ``code`` is stable UPPER_SNAKE_CASE (``PLANTING``, ``SCHOOLING``);
    ``keywords`` are words that identify the entry in a clerk's free text
    (``柑橘种植`` → 种植), see :meth:`LoanPurposes.find`.

    .. versionadded:: 0.3
    """

    code: str
    name: str
    allowed: bool
    reason: str
    keywords: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _code("LoanPurpose", self.code)
        _chinese(f"LoanPurpose {self.code} 的名称与理由", (self.name, self.reason))


@dataclass(frozen=True)
class LoanPurposes:
    """What a 贷款贴息 loan may be for in a region, and what it may not.

    .. versionadded:: 0.3
    """

    purposes: tuple[LoanPurpose, ...]
    basis: tuple[str, ...]

    def __post_init__(self) -> None:
        if not any(p.allowed for p in self.purposes):
            raise ValueError("LoanPurposes 须至少包含一项允许的贷款用途")
        _unique("LoanPurposes", [p.code for p in self.purposes])
        _chinese("LoanPurposes.basis", self.basis)

    @property
    def allowed(self) -> tuple[LoanPurpose, ...]:
        return tuple(p for p in self.purposes if p.allowed)

    @property
    def forbidden(self) -> tuple[LoanPurpose, ...]:
        return tuple(p for p in self.purposes if not p.allowed)

    def find(self, text: str) -> LoanPurpose | None:
        """The entry ``text`` means: its code or Chinese name exactly, else the
        first entry whose name or keyword appears in it — forbidden uses first,
        so ``种植还债`` is the forbidden 还债. ``None`` when nothing matches."""
        found: LoanPurpose | None = _find(text, self.purposes, (*self.forbidden, *self.allowed))
        return found


@dataclass(frozen=True)
class LoanFacts:
    """A household's business loan as the clerk recorded it (from the loan
    contract). ``end`` is the contract's last day (inclusive); ``purpose`` a
    :class:`LoanPurpose` code (or the clerk's text, for :meth:`LoanPurposes.find`).

    .. versionadded:: 0.3
    """

    contract_number: str
    lender: str
    lender_kind: LenderKind
    principal: Money
    annual_rate_bp: int  # contract annual rate in basis points: 435 = 4.35 %
    start: date
    end: date
    purpose: str
    borrower_person_id: str = ""  # an id only; rules must not decide by it


@dataclass(frozen=True)
class InterestReceiptFacts:
    """One bank interest certificate (利息凭证/结息单): the interest period
    ``period_start``…``period_end`` (both inclusive), the day it was paid and
    the interest actually paid. A receipt belongs to the 贴息年度 its
    ``paid_on`` falls in.

    .. versionadded:: 0.3
    """

    number: str
    period_start: date
    period_end: date
    paid_on: date
    interest_paid: Money

    @property
    def days(self) -> int:
        """Interest days the receipt covers (both ends counted)."""
        return (self.period_end - self.period_start).days + 1


@dataclass(frozen=True)
class PriorLoanClaim:
    """A 贷款贴息 claim the household already made — in any year, under any
    program (the service leaves out claims rejected or withdrawn).

    .. versionadded:: 0.3
    """

    program_year: int
    program: str  # e.g. ``programs/12``
    subsidy: Money  # approved or paid
    loan_contract: str = ""


@dataclass(frozen=True)
class LoanClaim:
    """Everything a 贷款贴息 rule decides a claim from, gathered by the
    service: the household's situation and 户籍 type (``RURAL``/``URBAN``, or
    ``""`` when not recorded), the loan, the receipts the claim covers and the
    household's claim history across years and programs.

    .. versionadded:: 0.3
    """

    program_year: int
    situation: str  # a Situation value
    hukou: str
    loan: LoanFacts
    receipts: tuple[InterestReceiptFacts, ...]
    history: tuple[PriorLoanClaim, ...] = ()
    household_id: str = ""  # an id only; rules must not decide by it

    @property
    def interest_paid(self) -> Money:
        """Interest actually paid over every receipt of the claim."""
        return sum((r.interest_paid for r in self.receipts), Money(0))

    def prior_years(self) -> tuple[int, ...]:
        """The other 贴息年度 the household already claimed in (each counts once)."""
        return tuple(sorted({c.program_year for c in self.history if c.program_year != self.program_year}))

    def subsidised_this_year(self) -> Money:
        """Subsidy the household already got for this 贴息年度, over every program."""
        return sum((c.subsidy for c in self.history if c.program_year == self.program_year), Money(0))


@dataclass(frozen=True)
class LoanSubsidyTerms:
    """The figures a region's 贷款贴息 rule applies for one program year — what
    the rule states, so services can show and check them and the conformance
    kit can hold the rule's decisions to them.

    ``window_start``…``window_end`` is the 贴息年度 (both inclusive; a receipt
    counts in the year its ``paid_on`` falls in). Per claim the subsidy is at
    most ``min(principal, principal_cap) × min(rate, subsidy_rate_cap_bp) ×
    days ÷ day_count`` for at most ``term_days`` interest days, never more
    than the interest paid, and per household and 贴息年度 at most
    ``yearly_cap`` over all programs; a household may claim in at most
    ``max_claims`` 贴息年度. ``over_cap``: ``CAP`` subsidises only the part of
    the principal inside the cap, ``REFUSE`` refuses the loan.

    .. versionadded:: 0.3
    """

    program_year: int
    window_start: date
    window_end: date
    households: tuple[str, ...]  # Situation values that may claim
    rural_only: bool
    principal_cap: Money
    over_cap: OverCap
    subsidy_rate_cap_bp: int
    day_count: int  # 360 or 365
    term_days: int
    yearly_cap: Money
    max_claims: int
    basis: tuple[str, ...]

    def __post_init__(self) -> None:
        span = (self.window_end - self.window_start).days + 1
        if not 1 <= span <= 366:
            raise ValueError("LoanSubsidyTerms 的贴息年度须为不超过 366 天的连续期间")
        if self.principal_cap.fen <= 0 or self.yearly_cap.fen <= 0:
            raise ValueError("LoanSubsidyTerms 的本金上限、每户每年贴息上限须为正数")
        if not 0 < self.subsidy_rate_cap_bp <= BASIS_POINTS:
            raise ValueError("LoanSubsidyTerms.subsidy_rate_cap_bp 须在 1–10000 之间（基点）")
        if self.day_count not in (360, 365):
            raise ValueError("LoanSubsidyTerms.day_count 须为 360 或 365")
        if self.term_days < 1 or self.max_claims < 1 or not self.households:
            raise ValueError("LoanSubsidyTerms 的贴息期限、最多申请次数须为正数，且须列出可申请的家庭类型")
        _chinese("LoanSubsidyTerms.basis", self.basis)

    def contains(self, day: date) -> bool:
        """True if ``day`` lies in this 贴息年度."""
        return self.window_start <= day <= self.window_end

    def cap_for(self, principal: Money, annual_rate_bp: int, days: int) -> Money:
        """The most the rule may pay for ``days`` interest days of a loan
        (principal and rate each capped), rounded down to the 分."""
        base = min(principal, self.principal_cap)
        rate = max(0, min(annual_rate_bp, self.subsidy_rate_cap_bp))
        return base.mul_ratio(rate * max(0, days), BASIS_POINTS * self.day_count, "ROUND_DOWN")


@dataclass(frozen=True)
class LoanSubsidyDecision:
    """A 贷款贴息 claim decided: eligible or not with the reasons, and the
    subsidy (``Money(0)`` when not eligible) with the basis it was computed
    from; ``receipts`` are the receipt numbers the subsidy counts.

    .. versionadded:: 0.3
    """

    eligible: bool
    reasons: tuple[str, ...]
    subsidy: Money
    basis: tuple[str, ...]
    receipts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _chinese("LoanSubsidyDecision.reasons", self.reasons)
        _chinese("LoanSubsidyDecision.basis", self.basis)
        if not isinstance(self.subsidy, Money) or self.subsidy.fen < 0:
            raise ValueError("LoanSubsidyDecision.subsidy 须为非负 Money（单位：分）")
        if not self.eligible and self.subsidy.fen:
            raise ValueError("不符合条件的贴息申请，贴息金额须为 0")


# ---- 三结合 ---------------------------------------------------------------


@dataclass(frozen=True)
class SanjieheProjectType:
    """A kind of 三结合 project a region supports (种养, 加工, 乡村旅游 …);
    ``keywords`` identify it in a clerk's free text (see :meth:`SanjieheRules.find_type`).

    .. versionadded:: 0.3
    """

    code: str
    name: str
    description: str
    keywords: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _code("SanjieheProjectType", self.code)
        _chinese(f"SanjieheProjectType {self.code} 的名称与说明", (self.name, self.description))


@dataclass(frozen=True)
class AgreementClause:
    """Something every 帮扶协议 must state (帮扶内容, 受助户义务, 预期增收,
    帮扶期限 …), with the rule's reason.

    .. versionadded:: 0.3
    """

    code: str  # SUPPORT, OBLIGATIONS, EXPECTED_INCOME, TERM, …
    name: str
    reason: str

    def __post_init__(self) -> None:
        _code("AgreementClause", self.code)
        _chinese(f"AgreementClause {self.code} 的名称与理由", (self.name, self.reason))


@dataclass(frozen=True)
class TrancheMilestone:
    """One milestone money goes out at: ``share_bp`` of the tranche base (an
    agreement's money support, or the implementing body's budget), paid once
    ``after`` is on record (the signed agreement, a progress visit, a passed 验收).

    .. versionadded:: 0.3
    """

    code: str
    name: str
    share_bp: int
    after: MilestoneAfter
    description: str

    def __post_init__(self) -> None:
        _code("TrancheMilestone", self.code)
        _chinese(f"TrancheMilestone {self.code} 的名称与说明", (self.name, self.description))
        if not 0 < self.share_bp <= BASIS_POINTS:
            raise ValueError("TrancheMilestone.share_bp 须在 1–10000 之间（基点）")


@dataclass(frozen=True)
class PerformanceCriterion:
    """One 绩效评价 criterion worth at most ``points``.

    .. versionadded:: 0.3
    """

    code: str  # HOUSEHOLDS, PEOPLE, INCOME_GAIN, …
    name: str
    points: int
    description: str

    def __post_init__(self) -> None:
        _code("PerformanceCriterion", self.code)
        _chinese(f"PerformanceCriterion {self.code} 的名称与说明", (self.name, self.description))
        if self.points < 1:
            raise ValueError("PerformanceCriterion.points 须为正整数")


@dataclass(frozen=True)
class PerformanceGrade:
    """A 绩效评价 grade (优, 良, 中, 差) for scores from ``min_score`` up.

    .. versionadded:: 0.3
    """

    name: str
    min_score: int

    def __post_init__(self) -> None:
        _chinese("PerformanceGrade.name", (self.name,))


@dataclass(frozen=True)
class SanjieheRules:
    """A region's 三结合 rules for a year: the project types and implementing
    bodies it supports, the households that may be helped, what every 帮扶协议
    must state (and its longest term and money support per household, when the
    rule sets them), the tranche milestones (shares summing to 100 %), and the
    绩效评价 criteria and grades (best first, the last from 0).

    .. versionadded:: 0.3
    """

    year: int
    project_types: tuple[SanjieheProjectType, ...]
    implementers: tuple[ImplementerKind, ...]
    households: tuple[str, ...]  # Situation values that may be helped
    agreement_clauses: tuple[AgreementClause, ...]
    milestones: tuple[TrancheMilestone, ...]
    criteria: tuple[PerformanceCriterion, ...]
    grades: tuple[PerformanceGrade, ...]
    basis: tuple[str, ...]
    agreement_max_months: int | None = None
    support_cap: Money | None = None

    def __post_init__(self) -> None:
        if not (self.project_types and self.implementers and self.households and self.milestones):
            raise ValueError("SanjieheRules 须列出项目类型、实施主体、帮扶对象和拨付节点")
        if not (self.agreement_clauses and self.criteria and self.grades):
            raise ValueError("SanjieheRules 须列出帮扶协议必备内容、绩效评价指标和等级")
        for what, codes in (
            ("项目类型", [t.code for t in self.project_types]),
            ("协议条款", [c.code for c in self.agreement_clauses]),
            ("拨付节点", [m.code for m in self.milestones]),
            ("绩效指标", [c.code for c in self.criteria]),
        ):
            _unique(f"SanjieheRules 的{what}", codes)
        if sum(m.share_bp for m in self.milestones) != BASIS_POINTS:
            raise ValueError("SanjieheRules 各拨付节点的比例合计须为 100%（10000 基点）")
        floors = [g.min_score for g in self.grades]
        if floors != sorted(set(floors), reverse=True) or floors[-1] != 0 or floors[0] > self.max_score:
            raise ValueError("SanjieheRules.grades 须由高到低排列、起评分不重复，最后一档自 0 分起")
        if self.agreement_max_months is not None and self.agreement_max_months < 1:
            raise ValueError("SanjieheRules.agreement_max_months 须为正整数")
        if self.support_cap is not None and self.support_cap.fen <= 0:
            raise ValueError("SanjieheRules.support_cap 须为正数")
        _chinese("SanjieheRules.basis", self.basis)

    @property
    def max_score(self) -> int:
        """The best possible 绩效评价 score: every criterion's points."""
        return sum(c.points for c in self.criteria)

    def grade_for(self, score: int) -> PerformanceGrade:
        """The grade a score earns."""
        return next(g for g in self.grades if score >= g.min_score)

    def milestone(self, code: str) -> TrancheMilestone | None:
        return next((m for m in self.milestones if m.code == code), None)

    def find_type(self, text: str) -> SanjieheProjectType | None:
        """The project type ``text`` means: code or name exactly, else the first
        whose name or keyword appears in it; ``None`` when nothing matches."""
        found: SanjieheProjectType | None = _find(text, self.project_types, self.project_types)
        return found


@dataclass(frozen=True)
class TrancheRequest:
    """A tranche the service is about to pay, with what is on record: the
    milestone, who is paid, the base the milestone's share is of (the
    agreement's money support for a household, the implementing body's budget),
    whether the 帮扶协议 is signed, what was already paid on that base, how many
    progress visits are recorded and the project's latest 验收.

    .. versionadded:: 0.3
    """

    year: int
    project_type: str
    milestone: str
    payee: TranchePayee
    base: Money
    agreement_signed: bool
    paid_milestones: tuple[str, ...]
    paid_so_far: Money
    progress_records: int
    acceptance: AcceptanceState


@dataclass(frozen=True)
class TrancheDecision:
    """Whether a tranche may be paid now, with the reasons, and its amount
    (``Money(0)`` when not allowed) with the basis.

    .. versionadded:: 0.3
    """

    allowed: bool
    reasons: tuple[str, ...]
    amount: Money
    basis: tuple[str, ...]

    def __post_init__(self) -> None:
        _chinese("TrancheDecision.reasons", self.reasons)
        _chinese("TrancheDecision.basis", self.basis)
        if not isinstance(self.amount, Money) or self.amount.fen < 0:
            raise ValueError("TrancheDecision.amount 须为非负 Money（单位：分）")
        if not self.allowed and self.amount.fen:
            raise ValueError("不允许拨付时，拨付金额须为 0")


@dataclass(frozen=True)
class PerformanceFacts:
    """What a 绩效评价 is scored from, for one household or a whole project:
    households and people planned (from the agreements) and helped, and the
    income gain expected (the agreements' sum) and measured (may be negative).

    .. versionadded:: 0.3
    """

    year: int
    scope: PerformanceScope
    project_type: str
    households_planned: int
    households_helped: int
    people_planned: int
    people_helped: int
    income_gain_expected: Money
    income_gain_measured: Money


@dataclass(frozen=True)
class CriterionScore:
    """The points one criterion earned, with its basis line.

    .. versionadded:: 0.3
    """

    code: str
    name: str
    points: int
    max_points: int
    basis: str

    def __post_init__(self) -> None:
        if not 0 <= self.points <= self.max_points:
            raise ValueError("CriterionScore.points 须在 0 与该指标满分之间")
        _chinese("CriterionScore 的名称与依据", (self.name, self.basis))


@dataclass(frozen=True)
class PerformanceResult:
    """A 绩效评价: the score (the criteria's points), out of ``max_score``, the
    grade it earns, the points per criterion and the basis.

    .. versionadded:: 0.3
    """

    score: int
    max_score: int
    grade: str
    lines: tuple[CriterionScore, ...]
    basis: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.score <= self.max_score or self.score != sum(x.points for x in self.lines):
            raise ValueError("PerformanceResult.score 须等于各指标得分之和，且不超过满分")
        if self.max_score != sum(x.max_points for x in self.lines):
            raise ValueError("PerformanceResult.max_score 须等于各指标满分之和")
        _chinese("PerformanceResult 的等级与依据", (self.grade, *self.basis))


# --------------------------------------------------------------------------
# Plain data for pairing volunteers with households (since 0.3)
# --------------------------------------------------------------------------


class PairingKind(StrEnum):
    """How a volunteer is tied to a household (the members service's kinds).

    .. versionadded:: 0.3
    """

    MEMBER_CONTACT = "MEMBER_CONTACT"  # 会员联系户：会员联系、帮扶的家庭
    DUAL_CONTACT = "DUAL_CONTACT"  # 双岗联系人：每户计生特殊家庭的两名联系人之一


#: The most households a pairing rule may let one volunteer take at once.
MAX_HOUSEHOLDS_PER_VOLUNTEER = 100


@dataclass(frozen=True)
class PairingRules:
    """How volunteers are paired with households for one kind of pairing in a
    region, as in force on a day.

    ``max_households_per_volunteer``: the most households a volunteer may
    have open pairings with (of every kind together) when taking a pairing of
    this kind — 1 is the 1:1 rule ("一名志愿者联系一户"). A household has at
    most one open pairing of each kind whatever the rule (the members service
    keeps that). ``special_families_only``: only 计生特殊家庭 (失独、伤残) may
    be paired. ``basis``: where the rule comes from, in Chinese, recorded with
    every pairing it allows and quoted when it refuses one.

    .. versionadded:: 0.3
    """

    max_households_per_volunteer: int
    special_families_only: bool
    basis: tuple[str, ...]

    def __post_init__(self) -> None:
        n = self.max_households_per_volunteer
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_HOUSEHOLDS_PER_VOLUNTEER:
            raise ValueError(
                f"PairingRules.max_households_per_volunteer 须为 1 至 {MAX_HOUSEHOLDS_PER_VOLUNTEER} 的整数"
            )
        _chinese("PairingRules.basis", self.basis)

    @property
    def one_to_one(self) -> bool:
        """One household per volunteer."""
        return self.max_households_per_volunteer == 1


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


@hookspec(firstresult=True)
def jsx_support_end(program_type: str, region: RegionCode, event: str, on: date) -> SupportEnd | None:
    """Say until which month a periodic program keeps paying a beneficiary after a life event.

    The funds service asks this when members reports a death (``event="DEATH"``)
    and plans each batch with it: a period starting after the returned month is
    not paid, and the person's enrolment ends with the basis as its reason.

    :param program_type: a :class:`ProgramType` value, e.g. ``"SPECIAL_SUPPORT"``.
    :param region: the beneficiary's village (resolution goes up from there).
    :param event: the life event, ``"DEATH"`` (more may follow).
    :param on: the day the event happened (the date of death).
    :return: :class:`SupportEnd` (the last month paid, with its basis), or
        ``None`` to defer to the level above.

    .. versionadded:: 0.3
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
    .. versionchanged:: 0.3
       Targets may be per special family (scope ``SPECIAL_FAMILY``) or per 行政村
       (``ADMIN_VILLAGE``), count award decisions of one kind (``award_kind``) or
       require a site in every unit (``SITE`` with ``site_kind``); see
       :class:`CadenceTarget`.
    """


@hookspec(firstresult=True)
def jsx_activity_types(region: RegionCode) -> tuple[ActivityType, ...] | None:
    """List the activity types events may be recorded under in a region.

    :param region: the region the activity takes place in.
    :return: a tuple of :class:`ActivityType` (the complete list for the
        area), or ``None`` to defer to the level above.

    .. versionadded:: 0.1
    """


# ---- 贷款贴息 (计生家庭创业贷款贴息) ---------------------------------------


@hookspec(firstresult=True)
def jsx_loan_purposes(region: RegionCode, on: date) -> LoanPurposes | None:
    """List what a 贷款贴息 loan may be for in a region, and the uses refused.

    Allowed categories (种植, 养殖, 农产品加工, 休闲农业, 乡村旅游 …) and
    forbidden uses (上学, 看病, 还债, 赌博, 高利贷 …), each with the rule's
    reason, as in force on ``on``. The service shows the list to the clerk and
    refuses a loan whose purpose is forbidden, quoting the entry's reason.

    :param region: the borrower household's region.
    :param on: the day the list must be in force (a loan's start date when it
        is recorded; the 贴息年度's first day when a claim is decided).
    :return: :class:`LoanPurposes`, or ``None`` to defer to the level above.

    .. versionadded:: 0.3
    """


@hookspec(firstresult=True)
def jsx_loan_subsidy_terms(region: RegionCode, program_year: int) -> LoanSubsidyTerms | None:
    """State the figures a region's 贷款贴息 rule applies for a program year.

    The 贴息年度 (window), the households that may claim, the principal cap,
    the subsidy-rate cap, the day count, the term, the cap per household per
    year and the most claims per household. Services show them, check the
    receipts a clerk attaches against the window, and the conformance kit
    holds :func:`jsx_loan_subsidy` to them. Use the rule in force on 1 January
    of ``program_year``; raise ``InvalidArgument`` (reason
    ``NO_RULE_FOR_PERIOD``) for a year before the earliest rule.

    :param region: the borrower household's region.
    :param program_year: the program's year (the 贴息年度 it names).
    :return: :class:`LoanSubsidyTerms`, or ``None`` to defer to the level above.

    .. versionadded:: 0.3
    """


@hookspec(firstresult=True)
def jsx_loan_subsidy(claim: LoanClaim, region: RegionCode) -> LoanSubsidyDecision | None:
    """Decide a 贷款贴息 claim: eligible or not, and the subsidy with its basis.

    Decide from the claim alone (the service gathered the loan, the receipts
    and the household's history across years and programs): eligibility
    (household type, purpose, principal and term, number of claims) and the
    subsidy from the interest actually paid, the principal, the contract rate
    and the days, within the caps :func:`jsx_loan_subsidy_terms` states for
    the same region and year. The subsidy is computed, never typed: a clerk's
    figure that differs is refused with this decision's amount and basis.

    :param claim: the :class:`LoanClaim` (plain data; ids only, never 身份证 numbers).
    :param region: the borrower household's region.
    :return: :class:`LoanSubsidyDecision` (``Money(0)`` when not eligible), or
        ``None`` to defer to the level above.

    .. versionadded:: 0.3
    """


# ---- 三结合 (计划生育与发展经济、勤劳致富、建设文明幸福家庭相结合) ----------


@hookspec(firstresult=True)
def jsx_sanjiehe_rules(region: RegionCode, year: int) -> SanjieheRules | None:
    """State a region's 三结合 rules for a year.

    The project types and implementing bodies supported, the households that
    may be helped, what a 帮扶协议 must contain, the tranche milestones and
    their shares, and the 绩效评价 criteria and grades. Use the rule in force
    on 1 January of ``year``; raise ``InvalidArgument`` (reason
    ``NO_RULE_FOR_PERIOD``) before the earliest rule.

    :param region: the project's region.
    :param year: the project's year.
    :return: :class:`SanjieheRules`, or ``None`` to defer to the level above.

    .. versionadded:: 0.3
    """


@hookspec(firstresult=True)
def jsx_sanjiehe_tranche(request: TrancheRequest, region: RegionCode) -> TrancheDecision | None:
    """Decide whether a 三结合 tranche may be paid now, and how much.

    Never allow a tranche before the 帮扶协议 is signed or while the latest
    验收 failed (until a re-inspection passes), nor a milestone twice; the
    amount is the milestone's share of the base, never more than what is left
    of it.

    :param request: the :class:`TrancheRequest` (milestone, payee, base, what is on record).
    :param region: the project's region.
    :return: :class:`TrancheDecision` (``Money(0)`` when not allowed), or
        ``None`` to defer to the level above.

    .. versionadded:: 0.3
    """


@hookspec(firstresult=True)
def jsx_sanjiehe_performance(facts: PerformanceFacts, region: RegionCode) -> PerformanceResult | None:
    """Score a 三结合 绩效评价 for a household or a project.

    Score the households and people helped and the measured income gain by
    the criteria :func:`jsx_sanjiehe_rules` lists, and grade the score.

    :param facts: the :class:`PerformanceFacts` measured at or after 验收.
    :param region: the project's region.
    :return: :class:`PerformanceResult` (score, grade, points per criterion
        with their basis), or ``None`` to defer to the level above.

    .. versionadded:: 0.3
    """


# ---- members: volunteers paired with households ---------------------------


@hookspec(firstresult=True)
def jsx_pairing_rules(kind: str, region: RegionCode, on: date) -> PairingRules | None:
    """State how volunteers are paired with households of a region.

    How many households one volunteer may take at once and whether only
    计生特殊家庭 are paired, for one kind of pairing. The members service asks
    when a pairing is recorded, refuses one past the limit quoting the basis,
    and records the answer's plugin, version and basis with the pairing. The
    built-in default is the 1:1 rule: special families only, one household
    per volunteer.

    :param kind: a :class:`PairingKind` value, e.g. ``"MEMBER_CONTACT"`` (会员联系户).
    :param region: the household's village.
    :param on: the pairing's first day: answer with the rule in force then.
    :return: :class:`PairingRules`, or ``None`` to defer to the level above.

    .. versionadded:: 0.3
    """


#: Hook names in declaration order (docs, listing, conformance kit).
HOOK_NAMES: tuple[str, ...] = tuple(n for n in list(globals()) if n.startswith("jsx_"))
