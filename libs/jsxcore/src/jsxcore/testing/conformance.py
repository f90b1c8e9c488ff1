"""Plugin conformance kit: what a county developer runs on their own plugin.

    from jsxcore.testing.conformance import assert_plugin_conforms
    import jsx_plugin_mycounty

    def test_conformance():
        assert_plugin_conforms(jsx_plugin_mycounty)

It checks the ``JSX_PLUGIN`` metadata (name, semantic version, region codes),
that every ``jsx_*`` function is a ``@hookimpl`` of a hook that exists with
argument names taken from the spec, and then calls each implemented hook
through a real :class:`~jsxcore.plugins.PluginHost` for each declared region
(and a village inside it) with a grid of sample inputs, asserting that every
answer has the declared type, arrives within the timeout, that amounts are
non-negative ``Money`` and that reasons and basis lines are Chinese sentences.
A plugin may refuse a sample on purpose by raising a ``jsxcore.errors`` class
with a Chinese message and an UPPER_SNAKE_CASE reason (e.g. a period before
its earliest rule); any other exception is a failure. Cadence targets
(``jsx_cadence_targets``) must each have a Chinese description and a key of
their own (their scope and period are checked like every typed answer).

When the plugin declares ``JSX_PLUGIN.rule_inputs`` (what its eligibility
and amount rules read, so a payment batch asks them once per distinct
declared input), the kit checks the declaration is honest: for every program
type, declared or not, it calls the plugin's own ``jsx_program_eligibility``
and ``jsx_entitlement_amount`` on pairs of beneficiaries that agree on
everything declared (region, situation, unit, the declared attribute keys,
the birth date as far as declared) and differ in the rest — person and
household ids, undeclared attribute keys, an extra attribute, a birth date
with the same age on ``period.start`` (``AGE_ON_PERIOD_START``) or any other
(``UNUSED``) — and reports every pair answered differently (eligible and
reasons, amount and basis, or a refusal's reason), naming what made the
difference. It also reports a rule looking up an attribute key it did not
declare, even where the answer happened not to change.

For the 贷款贴息 and 三结合 hooks (since 0.3) the kit also holds a plugin to
the rules it states itself, for each declared region and program years
2022–2024: the 贴息年度 of consecutive years must not overlap; a claim's
subsidy is never above the interest paid, the yearly cap less this year's
earlier claims, or the principal cap × rate cap × days ÷ day count of
``jsx_loan_subsidy_terms`` (one 分 of rounding per receipt), and a receipt paid
outside the 贴息年度 or listed twice adds nothing; a household past
``max_claims``, not among ``households``, with a principal over a ``REFUSE``
cap or a purpose the plugin's ``jsx_loan_purposes`` forbids is refused (the
last with a reason naming the use). A tranche is refused without a signed
agreement, after a failed 验收, for a milestone already paid or whose
prerequisite (progress, a passed 验收) is missing, and for a milestone
``jsx_sanjiehe_rules`` does not list; it never exceeds what is left of the
base or the milestone's share. A 绩效评价's maximum and grade match the
rules, and the score never falls as measured income rises.

For ``jsx_pairing_rules`` (since 0.3) the kit asks every kind of pairing on
each sample day: a 双岗联系人 rule must keep to special families (双岗联系人
are the two contacts of a 计生特殊家庭), and a rule's basis must say, in
Chinese, where its figure comes from.
"""

from __future__ import annotations

import collections.abc
import inspect
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from jsxcore.errors import ConfigError, DomainError, PluginError
from jsxcore.hookspecs import (
    HOOK_NAMES,
    NOTHING_READ,
    PROJECT,
    Amount,
    Beneficiary,
    BirthDateUse,
    CadenceTarget,
    Eligibility,
    FundKind,
    InterestReceiptFacts,
    LoanClaim,
    LoanFacts,
    LoanPurposes,
    LoanSubsidyDecision,
    LoanSubsidyTerms,
    PairingKind,
    PairingRules,
    PerformanceFacts,
    PerformanceResult,
    PluginMeta,
    PriorLoanClaim,
    ProgramType,
    RuleInputs,
    SanjieheRules,
    Situation,
    TrancheMilestone,
    TrancheRequest,
    has_chinese,
)
from jsxcore.plugins import BUILTIN, HOOK_TITLES, RULE_HOOKS, PluginHost, spec_signature
from jsxcore.values import Money, Period, RegionCode, RegionLevel

__all__ = [
    "assert_plugin_conforms",
    "check_pairing_rules",
    "check_plugin",
    "check_program_rules",
    "check_rule_inputs",
    "sample_calls",
    "sample_claim",
    "sample_performance",
    "sample_tranche",
]

_REASON = re.compile(r"^[A-Z][A-Z0-9_]*$")
SAMPLE_PERIODS = (Period.month(2022, 8), Period.month(2023, 1), Period.year_of(2022), Period.year_of(2023))
SAMPLE_YEARS = (2022, 2023)
SAMPLE_BIRTHS = (date(1960, 5, 1), date(1990, 5, 1), None)
SAMPLE_DAYS = (date(2022, 1, 1), date(2022, 7, 1), date(2023, 3, 15))
#: The 贷款贴息 and 三结合 hooks (since 0.3).
PROGRAM_HOOKS = (
    "jsx_loan_purposes",
    "jsx_loan_subsidy_terms",
    "jsx_loan_subsidy",
    "jsx_sanjiehe_rules",
    "jsx_sanjiehe_tranche",
    "jsx_sanjiehe_performance",
)


def _sample_regions(meta: PluginMeta) -> list[RegionCode]:
    out: list[RegionCode] = []
    for code in meta.regions:
        region = RegionCode.parse(code)
        out.append(region)
        if region.level is not RegionLevel.VILLAGE:
            # A structurally valid village inside the region: resolution must reach the plugin from below.
            prefix = region.code[: {1: 2, 2: 4, 3: 6, 4: 9}[region.level.value]]
            out.append(RegionCode(prefix + "0101101101"[len(prefix) - 2 :]))
    return out


def sample_calls(hook: str, region: RegionCode) -> Iterator[dict[str, Any]]:
    """The grid of keyword arguments the kit calls ``hook`` with for ``region``."""
    argnames, _ = spec_signature(hook)
    if hook in ("jsx_program_eligibility", "jsx_entitlement_amount"):
        for program, situation, birth, period in itertools.product(
            ProgramType, Situation, SAMPLE_BIRTHS, SAMPLE_PERIODS
        ):
            b = Beneficiary(
                person_id="P-conformance",
                household_id="H-conformance",
                region=region,
                situation=situation.value,
                birth_date=birth,
                attributes={"child_disability_grade": "2"},
            )
            yield {"program_type": program.value, "beneficiary": b, "period": period, "context": {}}
        return
    if hook in ("jsx_loan_subsidy", "jsx_sanjiehe_tranche", "jsx_sanjiehe_performance"):
        for year in SAMPLE_YEARS:
            for kwargs in _program_samples(hook, year):
                yield {**kwargs, "region": region}
        return
    grids: dict[str, tuple[Any, ...]] = {
        "program_type": tuple(p.value for p in ProgramType),
        "fund_kind": tuple(f.value for f in FundKind),
        "amount": (Money.yuan(500), Money.yuan(50000)),
        "year": SAMPLE_YEARS,
        "program_year": SAMPLE_YEARS,
        "kind": tuple(k.value for k in PairingKind),
        "on": SAMPLE_DAYS,
        "event": ("DEATH",),
        "region": (region,),
    }
    for combo in itertools.product(*(grids[n] for n in argnames)):
        yield dict(zip(argnames, combo, strict=True))


def _impls(plugin: Any) -> dict[str, Any]:
    out = {}
    for name in dir(plugin):
        if name.startswith("jsx_"):
            out[name] = getattr(plugin, name)
    return out


def _check_targets(targets: tuple[Any, ...], where: str) -> list[str]:
    """Cadence targets (their types, scope and period the host has checked): a Chinese
    description (the events service quotes it in every finding) and a key of its own."""
    problems = []
    seen: set[str] = set()
    for t in targets:
        if not isinstance(t, CadenceTarget):
            continue
        if not has_chinese(t.description):
            problems.append(f"{where}：目标 {t.key} 的 description 须用中文写明规则（报告逐条引用）")
        if t.key in seen:
            problems.append(f"{where}：目标 key“{t.key}”重复，每个目标须有自己的 key")
        seen.add(t.key)
    return problems


def _check_value(value: Any, where: str) -> list[str]:
    problems = []
    if isinstance(value, tuple) and where.startswith("jsx_cadence_targets"):
        return _check_targets(value, where)
    if isinstance(value, Amount):
        if not isinstance(value.amount, Money) or value.amount.fen < 0:
            problems.append(f"{where}：金额须为非负 Money，实际为 {value.amount!r}")
        lines = value.basis
    elif isinstance(value, Eligibility):
        lines = value.reasons
    else:
        lines = (*(getattr(value, "reasons", ()) or ()), *(getattr(value, "basis", ()) or ()))
    if isinstance(value, (Amount, Eligibility)) and not lines:
        problems.append(f"{where}：缺少理由/依据")
    for line in lines:
        if not isinstance(line, str) or not has_chinese(line):
            problems.append(f"{where}：理由/依据须为中文句子，实际为 {line!r}")
    return problems


def check_plugin(plugin: Any, *, timeout_ms: int = 2000) -> list[str]:
    """Run every conformance check on a plugin module or object; returns the
    problems found (Chinese, one per line), empty when it conforms."""
    meta = getattr(plugin, "JSX_PLUGIN", None)
    if not isinstance(meta, PluginMeta):
        return ["缺少模块级声明 JSX_PLUGIN = PluginMeta(name=..., version=..., regions=(...), description=...)"]
    problems = meta.problems()
    if not meta.description or not has_chinese(meta.description):
        problems.append("JSX_PLUGIN.description 须用中文说明插件编码了哪些规则")
    if problems:
        return problems

    impls = _impls(plugin)
    if not impls:
        problems.append("插件没有实现任何钩子（jsx_*）")
    for name, fn in impls.items():
        if name not in HOOK_NAMES:
            problems.append(f"{name} 不是已定义的钩子；已定义：{', '.join(HOOK_NAMES)}")
            continue
        if not hasattr(fn, f"{PROJECT}_impl"):
            problems.append(f"{name} 缺少 @hookimpl 装饰器，宿主不会调用它")
        spec_args, _ = spec_signature(name)
        params = [p for p in inspect.signature(fn).parameters if p != "self"]
        if unknown := [p for p in params if p not in spec_args]:
            problems.append(f"{name} 的参数 {unknown} 不在钩子规范 {list(spec_args)} 中")
    if problems:
        return problems

    host = PluginHost({meta.name: meta.regions}, timeout_ms=timeout_ms)
    try:
        host.register(plugin)
    except ConfigError as exc:
        return [f"注册失败：{exc}"]
    seen: set[str] = set()
    for hook, region in itertools.product(impls, _sample_regions(meta)):
        for kwargs in sample_calls(hook, region):
            shown = ", ".join(
                f"{k}={v}" for k, v in kwargs.items() if k in ("program_type", "fund_kind", "period", "year")
            )
            where = f"{hook} @ {region.short}" + (f"（{shown}）" if shown else "")
            try:
                decision = host.call(hook, region, **kwargs)
            except PluginError as exc:
                problem = f"{where}：{exc.message}"
            except DomainError as exc:
                if exc.metadata.get("plugin") != meta.name:
                    continue  # nobody answered (NO_RULE): the plugin returned None
                problem = ""
                if not has_chinese(exc.message):
                    problem = f"{where}：拒绝时的错误信息须为中文，实际为 {exc.message!r}"
                elif not _REASON.match(exc.reason):
                    problem = f"{where}：错误 reason 须为 UPPER_SNAKE_CASE，实际为 {exc.reason!r}"
            else:
                if decision.plugin == BUILTIN:
                    continue
                problem = "；".join(_check_value(decision.value, where))
            if problem and problem not in seen:
                seen.add(problem)
                problems.append(problem)
    problems.extend(check_program_rules(plugin, meta, host))
    problems.extend(check_pairing_rules(plugin, meta, host))
    problems.extend(check_rule_inputs(plugin, meta))
    return problems


# --------------------------------------------------------------------------
# Is the rule_inputs declaration honest?
# --------------------------------------------------------------------------

#: Periods the declaration is checked over: before and after the 2022-07-01
#: national change (2022-06 needs the 户籍 type), later months, and a year.
RULE_INPUT_PERIODS = (
    Period.month(2022, 6),
    Period.month(2022, 8),
    Period.month(2023, 1),
    Period.month(2024, 12),
    Period.year_of(2023),
)

#: Values tried for attribute keys rules are known to read; ``None`` leaves the
#: key out (absent differs from empty: ``_hukou`` falls back to ``hukou`` only
#: when ``hukou_type`` is absent). Row ``i`` of every key forms one sample.
SAMPLE_ATTRIBUTE_VALUES: dict[str, tuple[str | None, ...]] = {
    "has_living_child": ("false", "true", None, "是", "0"),
    "child_disability_grade": ("1", "2", "3", "4", None),
    "hukou_type": ("RURAL", "URBAN", None, "城镇", None),
    "hukou": ("URBAN", "RURAL", "农村", None, "城镇"),
    "birth_date": ("1960-05-15", None, "1973-08-01", "1972-08-02", "1995-11-30"),
    "hospital.days": ("3", "10", None, "1", "30"),
    "loan.interest_paid_fen": ("120000", "0", None, "50000", "999"),
}
_OTHER_VALUES: tuple[str | None, ...] = ("1", "true", None, "是", "")
_ROWS = 5
_EXTRA_KEY = "conformance_undeclared"
_ITERATED = "（遍历全部属性）"


class _Watched(collections.abc.Mapping[str, str]):
    """Attributes that note which keys a rule looked up."""

    def __init__(self, data: Mapping[str, str], seen: set[str]) -> None:
        self._data, self._seen = dict(data), seen

    def __getitem__(self, key: str) -> str:
        self._seen.add(key)
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        self._seen.add(str(key))
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        self._seen.add(_ITERATED)
        return iter(self._data)

    def __len__(self) -> int:
        self._seen.add(_ITERATED)
        return len(self._data)


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a common year
        return day.replace(year=day.year - years, day=28)


def _age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _births(start: date) -> tuple[date | None, ...]:
    """No date; the latest and the earliest birthday of a 49-year-old on
    ``start`` (the 特别扶助 age); an older and a younger person."""
    return (
        None,
        _years_before(start, 49),
        _years_before(start, 50) + timedelta(days=1),
        date(1960, 5, 15),
        date(1995, 11, 30),
    )


def _twin_birth(birth: date | None, start: date, use: BirthDateUse) -> date | None:
    """A birth date the declaration says the rules cannot tell from ``birth``."""
    if use is BirthDateUse.DATE:
        return birth
    if use is BirthDateUse.UNUSED:
        return _years_before(start, 49) if birth is None else None
    if birth is None:
        return None  # no date is its own input, distinct from every age
    age = _age_on(birth, start)
    latest, earliest = _years_before(start, age), _years_before(start, age + 1) + timedelta(days=1)
    return earliest if birth == latest else latest


def _row(keys: set[str], i: int | None) -> dict[str, str]:
    if i is None:
        return {}
    out = {}
    for key in sorted(keys):
        value = SAMPLE_ATTRIBUTE_VALUES.get(key, _OTHER_VALUES)[i % _ROWS]
        if value is not None:
            out[key] = value
    return out


def _outcome(fn: Any, params: tuple[str, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    try:
        value = fn(**{k: v for k, v in kwargs.items() if k in params})
    except DomainError as exc:
        return ("拒绝", type(exc).__name__, exc.reason)
    except Exception as exc:  # a failure: the host-based checks report it; here only whether it is the same
        return ("出错", type(exc).__name__, str(exc))
    if isinstance(value, Eligibility):
        return ("资格", value.eligible, value.reasons)
    if isinstance(value, Amount):
        return ("金额", value.amount.fen if isinstance(value.amount, Money) else value.amount, value.basis)
    return ("其他", repr(value))


def _show(outcome: tuple[Any, ...]) -> str:
    kind = outcome[0]
    if kind == "资格":
        text = ("符合：" if outcome[1] else "不符合：") + "；".join(outcome[2])
    elif kind == "金额":
        text = f"{Money(outcome[1]) if isinstance(outcome[1], int) else outcome[1]}（{'；'.join(outcome[2])}）"
    elif kind == "拒绝":
        text = f"拒绝 {outcome[1]}（{outcome[2]}）"
    elif kind == "出错":
        text = f"出错 {outcome[1]}: {outcome[2]}"
    else:
        text = str(outcome[1])
    return text if len(text) <= 120 else text[:117] + "…"


def _one_change_each(base: Beneficiary, twin: Beneficiary) -> Iterator[tuple[str, Beneficiary]]:
    """``base`` with one of the ways ``twin`` differs from it applied: to name
    the undeclared input an answer depends on."""
    yield "ids", replace(base, person_id=twin.person_id, household_id=twin.household_id)
    if twin.birth_date != base.birth_date:
        yield "birth", replace(base, birth_date=twin.birth_date)
    for key in sorted(set(base.attributes) | set(twin.attributes)):
        if base.attributes.get(key) != twin.attributes.get(key):
            one = {k: v for k, v in base.attributes.items() if k != key}
            if key in twin.attributes:
                one[key] = twin.attributes[key]
            yield f"attr:{key}", replace(base, attributes=one)


def _declared_for(meta: PluginMeta, program_type: str) -> RuleInputs:
    return (meta.rule_inputs or {}).get(program_type, NOTHING_READ)


def check_rule_inputs(plugin: Any, meta: PluginMeta | None = None) -> list[str]:
    """Check a plugin's ``JSX_PLUGIN.rule_inputs`` against its rules (see the
    module docstring); returns the problems found (Chinese), empty when the
    declaration holds on every sample or nothing is declared."""
    meta = meta or getattr(plugin, "JSX_PLUGIN", None)
    if not isinstance(meta, PluginMeta) or meta.rule_inputs is None:
        return []
    hooks = {h: getattr(plugin, h) for h in RULE_HOOKS if callable(getattr(plugin, h, None))}
    if not hooks:
        return []
    params = {h: tuple(p for p in inspect.signature(fn).parameters if p != "self") for h, fn in hooks.items()}
    program_types = [p.value for p in ProgramType] + sorted(k for k in meta.rule_inputs if k not in set(ProgramType))
    problems: list[str] = []
    reported: set[tuple[str, str, str]] = set()

    def report(hook: str, program_type: str, cause: str, text: str) -> None:
        if (hook, program_type, cause) not in reported:
            reported.add((hook, program_type, cause))
            problems.append(text)

    for program_type, region, period, situation in itertools.product(
        program_types, _sample_regions(meta), RULE_INPUT_PERIODS, Situation
    ):
        declared = _declared_for(meta, program_type)
        keys = set(declared.attributes)
        undeclared = set(SAMPLE_ATTRIBUTE_VALUES) - keys
        for i, birth in itertools.product((None, *range(_ROWS)), _births(period.start)):
            attrs = _row(keys | undeclared, i)
            base = Beneficiary("P-conformance-1", "H-conformance-1", region, situation.value, "PERSON", birth, attrs)
            # Everything the declaration says the rules do not read, changed at once.
            twin_attrs = {
                **{k: v for k, v in attrs.items() if k in keys},
                **_row(undeclared, 0 if i is None else i + 1),
            }
            twin_attrs[_EXTRA_KEY] = "1"
            twin_birth = _twin_birth(birth, period.start, declared.birth_date)
            twin = replace(
                base,
                person_id="P-conformance-2",
                household_id="H-conformance-2",
                birth_date=twin_birth,
                attributes=twin_attrs,
            )
            for hook, fn in hooks.items():
                seen: set[str] = set()
                call = {"program_type": program_type, "period": period, "context": {}}
                first = _outcome(
                    fn, params[hook], {**call, "beneficiary": replace(base, attributes=_Watched(attrs, seen))}
                )
                where = f"{HOOK_TITLES[hook]}（{hook}，{program_type}，{region.short}，{period}）"
                for key in sorted(seen - keys - {_EXTRA_KEY}):
                    report(
                        hook,
                        program_type,
                        f"read:{key}",
                        f"{where}：读取了属性 {key}，但 rule_inputs 未声明它；"
                        f"请在 rule_inputs[{program_type!r}].attributes 中声明"
                        if key != _ITERATED
                        else f"{where}：遍历了全部属性，无法按 rule_inputs 分组；请按属性名读取并在 rule_inputs 中声明",
                    )
                other = _outcome(fn, params[hook], {**call, "beneficiary": twin})
                if other == first:
                    continue
                culprits = [
                    (name, changed)
                    for name, changed in _one_change_each(base, twin)
                    if _outcome(fn, params[hook], {**call, "beneficiary": changed}) != first
                ] or [("together", twin)]
                for cause, culprit in culprits:
                    if cause == "ids":
                        what = "个人、家庭编号（person_id、household_id；规则不得依据编号作决定）"
                    elif cause == "birth":
                        what = f"出生日期（{birth} 与 {culprit.birth_date}，声明为 {declared.birth_date.value}"
                        if declared.birth_date is BirthDateUse.AGE_ON_PERIOD_START:
                            what += f"，两者在 {period.start} 时周岁相同"
                        what += "）"
                    elif cause.startswith("attr:"):
                        key = cause[5:]
                        what = f"未声明的属性 {key}（{attrs.get(key)!r} 与 {culprit.attributes.get(key)!r}）"
                    else:
                        what = "未声明的输入（编号、出生日期、未声明的属性同时不同）"
                    report(
                        hook,
                        program_type,
                        cause,
                        f"rule_inputs 声明与规则不符：{where}对 {situation.value} 的两个对象只在{what}上不同，"
                        f"结果却不同：{_show(first)} ≠ "
                        f"{_show(_outcome(fn, params[hook], {**call, 'beneficiary': culprit}))}；"
                        "请在 rule_inputs 中声明该输入，或改正规则",
                    )
    return problems


# --------------------------------------------------------------------------
# 贷款贴息 and 三结合: do the decisions keep the rules the plugin states?
# --------------------------------------------------------------------------

#: Program years the loan and 三结合 checks run over.
PROGRAM_YEARS = (2022, 2023, 2024)
_RATE_BP = 435  # a usual contract rate (4.35 %)
_BASE = Money.yuan(10_000)  # a tranche base


def _window(terms: LoanSubsidyTerms | None, year: int) -> tuple[date, date]:
    return (terms.window_start, terms.window_end) if terms else (date(year, 1, 1), date(year, 12, 31))


def _quarters(
    start: date, end: date, principal: Money, rate_bp: int, prefix: str = "R"
) -> tuple[InterestReceiptFacts, ...]:
    """Four receipts splitting ``start``…``end``, each paying the contract interest (÷ 360) on its last day."""
    span = (end - start).days + 1
    cuts = [start + timedelta(days=span * i // 4) for i in range(5)]
    out = []
    for i in range(4):
        first, last = cuts[i], cuts[i + 1] - timedelta(days=1)
        days = (last - first).days + 1
        out.append(
            InterestReceiptFacts(f"{prefix}{i + 1}", first, last, last, principal.mul_ratio(rate_bp * days, 3_600_000))
        )
    return tuple(out)


def sample_claim(
    year: int,
    terms: LoanSubsidyTerms | None = None,
    purposes: LoanPurposes | None = None,
    *,
    situation: str | None = None,
    hukou: str = "RURAL",
    principal: Money | None = None,
    rate_bp: int = _RATE_BP,
    purpose: str | None = None,
    history: tuple[PriorLoanClaim, ...] = (),
    receipts: tuple[InterestReceiptFacts, ...] | None = None,
) -> LoanClaim:
    """A 贷款贴息 claim inside the plugin's own rule (a household it names, an
    allowed purpose, half the principal cap, four quarterly receipts over the
    贴息年度), with any of those replaced."""
    start, end = _window(terms, year)
    if principal is None:
        principal = Money((terms.principal_cap.fen // 2 // 100) * 100) if terms else Money.yuan(30_000)
    if purpose is None:
        purpose = purposes.allowed[0].code if purposes else "PLANTING"
    loan = LoanFacts("HT-conformance", "测试农村商业银行", "RURAL_CREDIT", principal, rate_bp, start, end, purpose)
    return LoanClaim(
        program_year=year,
        situation=situation or (terms.households[0] if terms else Situation.ONLY_CHILD.value),
        hukou=hukou,
        loan=loan,
        receipts=_quarters(start, end, principal, rate_bp) if receipts is None else receipts,
        history=history,
        household_id="H-conformance",
    )


def sample_tranche(year: int, milestone: str, **changes: Any) -> TrancheRequest:
    """A 三结合 tranche with everything on record (signed agreement, progress, a passed 验收), with ``changes``."""
    base = TrancheRequest(
        year=year,
        project_type="PLANTING_BREEDING",
        milestone=milestone,
        payee="HOUSEHOLD",
        base=_BASE,
        agreement_signed=True,
        paid_milestones=(),
        paid_so_far=Money(0),
        progress_records=2,
        acceptance="PASSED",
    )
    return replace(base, **changes)


def sample_performance(year: int, scope: str = "PROJECT", **changes: Any) -> PerformanceFacts:
    """A 三结合 绩效评价 of a 10-household, 30-person project expecting 50,000 元 more income, with ``changes``."""
    base = PerformanceFacts(
        year=year,
        scope="PROJECT" if scope == "PROJECT" else "HOUSEHOLD",
        project_type="PLANTING_BREEDING",
        households_planned=10,
        households_helped=10,
        people_planned=30,
        people_helped=30,
        income_gain_expected=Money.yuan(50_000),
        income_gain_measured=Money.yuan(50_000),
    )
    return replace(base, **changes)


def _program_samples(hook: str, year: int) -> Iterator[dict[str, Any]]:
    """Plugin-independent samples for the 贷款贴息/三结合 hooks (the typed grid)."""
    if hook == "jsx_loan_subsidy":
        yield {"claim": sample_claim(year)}
        yield {"claim": sample_claim(year, purpose="GAMBLING")}
        yield {"claim": sample_claim(year, principal=Money.yuan(80_000), rate_bp=900)}
        yield {
            "claim": sample_claim(
                year, history=tuple(PriorLoanClaim(year - i, "programs/1", Money(0)) for i in (1, 2, 3))
            )
        }
    elif hook == "jsx_sanjiehe_tranche":
        for milestone in ("FIRST", "FINAL"):
            yield {"request": sample_tranche(year, milestone)}
            yield {"request": sample_tranche(year, milestone, agreement_signed=False, acceptance="FAILED")}
    elif hook == "jsx_sanjiehe_performance":
        for scope in ("PROJECT", "HOUSEHOLD"):
            yield {"facts": sample_performance(year, scope)}
            yield {"facts": sample_performance(year, scope, households_helped=3, income_gain_measured=Money.yuan(-100))}


class _Asker:
    """Calls a plugin's hooks through the host: the value, or None when nobody
    answered or the plugin refused on purpose (the typed grid judges refusals)."""

    def __init__(self, host: PluginHost, meta: PluginMeta, impls: Mapping[str, Any], problems: list[str]) -> None:
        self.host, self.meta, self.impls, self.problems = host, meta, impls, problems

    def __call__(self, hook: str, region: RegionCode, **kwargs: Any) -> Any:
        if hook not in self.impls:
            return None
        try:
            decision = self.host.call(hook, region, **kwargs)
        except PluginError as exc:
            self.report(f"{hook} @ {region.short}：{exc.message}")
            return None
        except DomainError:
            return None
        return None if decision.plugin == BUILTIN else decision.value

    def report(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)


def _loan_checks(ask: _Asker, region: RegionCode) -> None:
    where_r = f"@ {region.short}"
    previous: LoanSubsidyTerms | None = None
    for year in PROGRAM_YEARS:
        terms: LoanSubsidyTerms | None = ask("jsx_loan_subsidy_terms", region, program_year=year)
        if terms is not None:
            if terms.program_year != year:
                ask.report(f"jsx_loan_subsidy_terms {where_r}：问 {year} 年，答的是 {terms.program_year} 年的标准")
            if previous is not None and previous.program_year == year - 1 and terms.window_start <= previous.window_end:
                ask.report(
                    f"jsx_loan_subsidy_terms {where_r}：{year - 1} 与 {year} 贴息年度重叠（{previous.window_end} ≥ {terms.window_start}），同一张凭证会计入两个年度"
                )
        previous = terms
        start, _end = _window(terms, year)
        purposes: LoanPurposes | None = ask("jsx_loan_purposes", region, on=start)
        if "jsx_loan_subsidy" not in ask.impls:
            continue
        base = sample_claim(year, terms, purposes)
        cases: list[tuple[str, LoanClaim]] = [("符合条件的申请", base)]
        for p in purposes.forbidden if purposes else ():
            cases.append((f"禁止用途 {p.code}（{p.name}）", replace(base, loan=replace(base.loan, purpose=p.code))))
        cap = terms.principal_cap if terms else Money.yuan(50_000)
        cases.append(("本金超过上限", replace(base, loan=replace(base.loan, principal=cap + Money.yuan(30_000)))))
        rate_cap = terms.subsidy_rate_cap_bp if terms else 500
        cases.append(("合同利率高于贴息率上限", replace(base, loan=replace(base.loan, annual_rate_bp=rate_cap + 300))))
        cases.append(
            ("实付利息很少", replace(base, receipts=tuple(replace(r, interest_paid=Money(1)) for r in base.receipts)))
        )
        cases.append(("同一凭证重复", replace(base, receipts=(*base.receipts, base.receipts[0]))))
        early = InterestReceiptFacts(
            "R-outside",
            start - timedelta(days=90),
            start - timedelta(days=1),
            start - timedelta(days=1),
            Money.yuan(500),
        )
        moved = replace(base.loan, start=start - timedelta(days=90))
        outside = replace(base, loan=moved, receipts=(early, *base.receipts))
        cases.append(("含贴息年度以外的凭证", outside))
        max_claims = terms.max_claims if terms else 3
        prior = tuple(
            PriorLoanClaim(year - i, "programs/conformance", Money.yuan(100)) for i in range(1, max_claims + 1)
        )
        cases.append((f"已享受 {max_claims} 次", replace(base, history=prior)))
        cases.append((f"已享受 {max_claims - 1} 次", replace(base, history=prior[:-1])))
        yearly = terms.yearly_cap if terms else Money.yuan(2_500)
        this_year = (PriorLoanClaim(year, "programs/other", max(yearly - Money.yuan(1), Money(0))),)
        cases.append(("本年度其他项目已贴息接近上限", replace(base, history=this_year)))
        for situation in Situation:
            if terms is not None and situation.value not in terms.households:
                cases.append((f"家庭类型 {situation.value}", replace(base, situation=situation.value)))
        decisions = {name: ask("jsx_loan_subsidy", region, claim=claim) for name, claim in cases}
        claims = dict(cases)
        for name, decision in decisions.items():
            if decision is not None:
                for problem in _loan_invariants(claims[name], decision, terms, purposes):
                    ask.report(f"jsx_loan_subsidy {where_r}（{year} 年，{name}）：{problem}")
        base_d, out_d = decisions["符合条件的申请"], decisions["含贴息年度以外的凭证"]
        if base_d is not None and out_d is not None and out_d.eligible and out_d.subsidy != base_d.subsidy:
            ask.report(
                f"jsx_loan_subsidy {where_r}（{year} 年）：付息日在贴息年度以外的凭证被计入了贴息（{out_d.subsidy} ≠ {base_d.subsidy}）"
            )
        dup_d = decisions["同一凭证重复"]
        if base_d is not None and dup_d is not None and dup_d.eligible and dup_d.subsidy > base_d.subsidy:
            ask.report(
                f"jsx_loan_subsidy {where_r}（{year} 年）：同一张利息凭证计算了两次贴息（{dup_d.subsidy} > {base_d.subsidy}）"
            )


def _loan_invariants(
    claim: LoanClaim, d: LoanSubsidyDecision, terms: LoanSubsidyTerms | None, purposes: LoanPurposes | None
) -> Iterator[str]:
    if d.subsidy > claim.interest_paid:
        yield f"贴息 {d.subsidy} 超过实付利息 {claim.interest_paid}"
    numbers = {r.number for r in claim.receipts}
    if not set(d.receipts) <= numbers:
        yield f"decision.receipts {d.receipts} 含申请中没有的凭证"
    if purposes is not None:
        p = purposes.find(claim.loan.purpose)
        if p is not None and not p.allowed:
            if d.eligible:
                yield f"禁止用途 {p.name} 的贷款被认定为符合条件"
            elif not any(p.name in r or p.reason in r for r in d.reasons):
                yield f"拒绝禁止用途 {p.name} 时，理由中须写明该用途或规则的理由（{p.reason}）"
    if terms is None:
        return
    left = max(terms.yearly_cap - claim.subsidised_this_year(), Money(0))
    if d.subsidy > left:
        yield f"贴息 {d.subsidy} 超过每户每年上限 {terms.yearly_cap} 减去本年度已贴息 {claim.subsidised_this_year()}"
    inside = [r for r in claim.receipts if terms.contains(r.paid_on)]
    slack = Money(len(claim.receipts))  # one 分 of rounding per receipt
    most = sum((terms.cap_for(claim.loan.principal, claim.loan.annual_rate_bp, r.days) for r in inside), Money(0))
    if d.subsidy > most + slack:
        yield (
            f"贴息 {d.subsidy} 超过插件自己声明的上限：本金不超过 {terms.principal_cap}、年贴息率不超过 "
            f"{terms.subsidy_rate_cap_bp} 基点、按 ÷{terms.day_count} 计的 {most}"
        )
    if d.subsidy > terms.cap_for(claim.loan.principal, claim.loan.annual_rate_bp, terms.term_days) + slack:
        yield f"贴息 {d.subsidy} 超过贴息期限 {terms.term_days} 天的上限"
    if d.eligible and len(claim.prior_years()) >= terms.max_claims:
        yield f"已享受 {len(claim.prior_years())} 次仍被认定为符合条件（插件声明每户最多 {terms.max_claims} 次）"
    if d.eligible and claim.situation not in terms.households:
        yield f"{claim.situation} 不在插件声明的贴息对象 {terms.households} 中，却被认定为符合条件"
    if d.eligible and terms.over_cap == "REFUSE" and claim.loan.principal > terms.principal_cap:
        yield f"本金 {claim.loan.principal} 超过上限 {terms.principal_cap}（插件声明超过即不予贴息），却被认定为符合条件"


def _sanjiehe_checks(ask: _Asker, region: RegionCode) -> None:
    where_r = f"@ {region.short}"
    for year in PROGRAM_YEARS:
        rules: SanjieheRules | None = ask("jsx_sanjiehe_rules", region, year=year)
        if rules is not None and rules.year != year:
            ask.report(f"jsx_sanjiehe_rules {where_r}：问 {year} 年，答的是 {rules.year} 年的规则")
        if "jsx_sanjiehe_tranche" in ask.impls:
            milestones = rules.milestones if rules else ()
            codes = [m.code for m in milestones] or ["FIRST", "FINAL"]
            for code in [*codes, "CONFORMANCE_UNKNOWN"]:
                m = rules.milestone(code) if rules else None
                for name, request, must_refuse in _tranche_cases(year, code, m, rules is not None and m is None):
                    d = ask("jsx_sanjiehe_tranche", region, request=request)
                    if d is None:
                        continue
                    where = f"jsx_sanjiehe_tranche {where_r}（{year} 年，节点 {code}，{name}）"
                    if must_refuse and d.allowed:
                        ask.report(f"{where}：应不允许拨付，却允许拨付 {d.amount}")
                    left = max(request.base - request.paid_so_far, Money(0))
                    if d.amount > left:
                        ask.report(f"{where}：拨付 {d.amount} 超过基数尚余的 {left}")
                    if m is not None and rules is not None:
                        share = request.base.mul_ratio(m.share_bp, 10_000, "ROUND_UP") + Money(len(rules.milestones))
                        if d.amount > share:
                            ask.report(
                                f"{where}：拨付 {d.amount} 超过插件声明的该节点比例 {m.share_bp} 基点（{share}）"
                            )
        if "jsx_sanjiehe_performance" in ask.impls:
            _performance_checks(ask, region, year, rules)


def _tranche_cases(
    year: int, code: str, m: TrancheMilestone | None, unknown: bool
) -> Iterator[tuple[str, TrancheRequest, bool]]:
    yield "条件齐备", sample_tranche(year, code), unknown
    yield "协议未签订", sample_tranche(year, code, agreement_signed=False), True
    yield "验收不合格", sample_tranche(year, code, acceptance="FAILED"), True
    yield "该节点已拨付", sample_tranche(year, code, paid_milestones=(code,), paid_so_far=Money.yuan(1)), True
    yield "基数已拨完", sample_tranche(year, code, paid_so_far=_BASE), False
    yield "已拨一部分", sample_tranche(year, code, paid_so_far=Money.yuan(9_000)), False
    if m is not None and m.after == "ACCEPTANCE":
        yield "尚未验收", sample_tranche(year, code, acceptance="NONE"), True
    if m is not None and m.after == "PROGRESS":
        yield "没有跟踪记录", sample_tranche(year, code, progress_records=0), True


def _performance_checks(ask: _Asker, region: RegionCode, year: int, rules: SanjieheRules | None) -> None:
    for scope in ("PROJECT", "HOUSEHOLD"):
        for households, people in ((0, 0), (5, 15), (10, 30), (12, 40)):
            scores: list[tuple[Money, int]] = []
            for measured in (-1_000, 0, 25_000, 50_000, 80_000):
                facts = sample_performance(
                    year,
                    scope,
                    households_helped=households,
                    people_helped=people,
                    income_gain_measured=Money.yuan(measured),
                )
                r: PerformanceResult | None = ask("jsx_sanjiehe_performance", region, facts=facts)
                if r is None:
                    continue
                where = f"jsx_sanjiehe_performance @ {region.short}（{year} 年，{scope}，{households} 户 {people} 人，实测增收 {measured} 元）"
                if rules is not None:
                    if r.max_score != rules.max_score:
                        ask.report(f"{where}：满分 {r.max_score} 与插件声明的评价指标满分 {rules.max_score} 不符")
                    if r.grade != rules.grade_for(r.score).name:
                        ask.report(f"{where}：{r.score} 分应为“{rules.grade_for(r.score).name}”，实际为“{r.grade}”")
                scores.append((facts.income_gain_measured, r.score))
            for (lo, a), (hi, b) in itertools.pairwise(scores):
                if b < a:
                    ask.report(
                        f"jsx_sanjiehe_performance @ {region.short}（{year} 年，{scope}）：实测增收由 {lo} 增至 {hi}，得分反而由 {a} 降为 {b}"
                    )


def check_program_rules(plugin: Any, meta: PluginMeta, host: PluginHost) -> list[str]:
    """The 贷款贴息 and 三结合 checks of :func:`check_plugin` (see the module
    docstring): a plugin's decisions keep the caps, window, number of claims,
    forbidden purposes, milestone shares and grades it states itself, with its
    host ``host``. Returns the problems found (Chinese)."""
    impls = {h: fn for h, fn in _impls(plugin).items() if h in PROGRAM_HOOKS}
    problems: list[str] = []
    if not impls:
        return problems
    ask = _Asker(host, meta, impls, problems)
    for region in _sample_regions(meta):
        _loan_checks(ask, region)
        _sanjiehe_checks(ask, region)
    return problems


def check_pairing_rules(plugin: Any, meta: PluginMeta, host: PluginHost) -> list[str]:
    """The ``jsx_pairing_rules`` checks of :func:`check_plugin` (see the module
    docstring), with its host ``host``. Returns the problems found (Chinese)."""
    impls = {h: fn for h, fn in _impls(plugin).items() if h == "jsx_pairing_rules"}
    problems: list[str] = []
    if not impls:
        return problems
    ask = _Asker(host, meta, impls, problems)
    for region, day, kind in itertools.product(_sample_regions(meta), SAMPLE_DAYS, PairingKind):
        rules: PairingRules | None = ask("jsx_pairing_rules", region, kind=kind.value, on=day)
        if rules is None:
            continue
        where = f"jsx_pairing_rules @ {region.short}（{kind.value}，{day.isoformat()}）"
        if kind is PairingKind.DUAL_CONTACT and not rules.special_families_only:
            ask.report(f"{where}：双岗联系人只为计生特殊家庭设立，special_families_only 须为 True")
    return problems


def assert_plugin_conforms(plugin: Any, *, timeout_ms: int = 2000) -> None:
    """``check_plugin`` for pytest: fails listing every problem found."""
    problems = check_plugin(plugin, timeout_ms=timeout_ms)
    name = getattr(getattr(plugin, "JSX_PLUGIN", None), "name", plugin)
    assert not problems, f"规则插件 {name} 不符合规范：\n" + "\n".join(f"- {p}" for p in problems)
