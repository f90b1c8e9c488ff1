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
its earliest rule); any other exception is a failure.

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
    Eligibility,
    FundKind,
    PluginMeta,
    ProgramType,
    RuleInputs,
    Situation,
    has_chinese,
)
from jsxcore.plugins import BUILTIN, HOOK_TITLES, RULE_HOOKS, PluginHost, spec_signature
from jsxcore.values import Money, Period, RegionCode, RegionLevel

__all__ = ["assert_plugin_conforms", "check_plugin", "check_rule_inputs", "sample_calls"]

_REASON = re.compile(r"^[A-Z][A-Z0-9_]*$")
SAMPLE_PERIODS = (Period.month(2022, 8), Period.month(2023, 1), Period.year_of(2022), Period.year_of(2023))
SAMPLE_YEARS = (2022, 2023)
SAMPLE_BIRTHS = (date(1960, 5, 1), date(1990, 5, 1), None)


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
    grids: dict[str, tuple[Any, ...]] = {
        "program_type": tuple(p.value for p in ProgramType),
        "fund_kind": tuple(f.value for f in FundKind),
        "amount": (Money.yuan(500), Money.yuan(50000)),
        "year": SAMPLE_YEARS,
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


def _check_value(value: Any, where: str) -> list[str]:
    problems = []
    if isinstance(value, Amount):
        if not isinstance(value.amount, Money) or value.amount.fen < 0:
            problems.append(f"{where}：金额须为非负 Money，实际为 {value.amount!r}")
        lines = value.basis
    elif isinstance(value, Eligibility):
        lines = value.reasons
    else:
        lines = getattr(value, "basis", ()) or ()
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


def assert_plugin_conforms(plugin: Any, *, timeout_ms: int = 2000) -> None:
    """``check_plugin`` for pytest: fails listing every problem found."""
    problems = check_plugin(plugin, timeout_ms=timeout_ms)
    name = getattr(getattr(plugin, "JSX_PLUGIN", None), "name", plugin)
    assert not problems, f"规则插件 {name} 不符合规范：\n" + "\n".join(f"- {p}" for p in problems)
