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
"""
from __future__ import annotations

import inspect
import itertools
import re
from datetime import date
from typing import Any, Iterator

from jsxcore.errors import ConfigError, DomainError, PluginError
from jsxcore.hookspecs import (
    HOOK_NAMES,
    PROJECT,
    Amount,
    Beneficiary,
    Eligibility,
    FundKind,
    PluginMeta,
    ProgramType,
    Situation,
    has_chinese,
)
from jsxcore.plugins import BUILTIN, PluginHost, spec_signature
from jsxcore.values import Money, Period, RegionCode, RegionLevel

__all__ = ["assert_plugin_conforms", "check_plugin", "sample_calls"]

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
        for program, situation, birth, period in itertools.product(ProgramType, Situation, SAMPLE_BIRTHS, SAMPLE_PERIODS):
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
        yield dict(zip(argnames, combo))


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
            shown = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k in ("program_type", "fund_kind", "period", "year"))
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
    return problems


def assert_plugin_conforms(plugin: Any, *, timeout_ms: int = 2000) -> None:
    """``check_plugin`` for pytest: fails listing every problem found."""
    problems = check_plugin(plugin, timeout_ms=timeout_ms)
    name = getattr(getattr(plugin, "JSX_PLUGIN", None), "name", plugin)
    assert not problems, f"规则插件 {name} 不符合规范：\n" + "\n".join(f"- {p}" for p in problems)
