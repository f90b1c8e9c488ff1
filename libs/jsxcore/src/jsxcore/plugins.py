"""The plugin host: discovery, per-region enablement, resolution, provenance,
failure isolation and listing for county rule plugins.

Resolution for a region walks ``region.ancestors()`` — village → township →
county → city → province — and at each level asks the plugins enabled exactly
there (in name order); the first answer that is not ``None`` wins. When no
plugin answers, the built-in defaults (plugin ``builtin``) answer, and when
they have nothing either the call fails with ``NO_RULE``. Every answer comes
back as a :class:`Decision` naming the plugin, its version, the hook and the
level that answered, so services can record provenance.

Calling a plugin goes through pluggy (one ``subset_hook_caller`` per plugin,
so the host knows exactly which plugin answered). A plugin that raises, returns
the wrong type or runs past ``PLUGIN_TIMEOUT_MS`` fails that call with
:class:`~jsxcore.errors.PluginError`; the host keeps serving other calls.
"""

from __future__ import annotations

import argparse
import asyncio
import collections.abc
import concurrent.futures
import dataclasses
import functools
import json
import logging
import os
import sys
import threading
import time
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from importlib.metadata import entry_points
from typing import Any, Generic, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import pluggy

import jsxcore
from jsxcore import hookspecs
from jsxcore.errors import ConfigError, DomainError, FailedPrecondition, PluginError
from jsxcore.hookspecs import (
    HOOK_NAMES,
    NOTHING_READ,
    PROJECT,
    ActivityType,
    ApprovalChain,
    CadenceTarget,
    PairingRules,
    PublicityRule,
    hookimpl,
)
from jsxcore.hookspecs import BirthDateUse as BirthDateUse
from jsxcore.hookspecs import PluginMeta as PluginMeta
from jsxcore.hookspecs import RuleInputs as RuleInputs
from jsxcore.values import Money, RegionCode

__all__ = [
    "BUILTIN",
    "BirthDateUse",
    "Decision",
    "PluginHost",
    "PluginInfo",
    "PluginMeta",
    "RuleInputs",
    "check_type",
    "hookimpl",
    "register_cli",
]

log = logging.getLogger("jsx.plugins")
T = TypeVar("T")

#: Name of the built-in defaults plugin (``Provenance.plugin`` on the wire).
BUILTIN = "builtin"
DEFAULT_TIMEOUT_MS = 2000

#: The hooks whose answers depend on a Beneficiary: what ``PluginMeta.rule_inputs`` declares.
RULE_HOOKS = ("jsx_program_eligibility", "jsx_entitlement_amount")

#: Chinese names of the hooks, for error messages.
HOOK_TITLES: dict[str, str] = {
    "jsx_program_eligibility": "资格认定",
    "jsx_entitlement_amount": "待遇金额",
    "jsx_approval_chain": "审批流程",
    "jsx_publicity_rule": "公示规则",
    "jsx_fund_allowed_uses": "基金用途",
    "jsx_cadence_targets": "活动频次目标",
    "jsx_activity_types": "活动类型",
    "jsx_loan_purposes": "贷款用途",
    "jsx_loan_subsidy_terms": "贷款贴息标准",
    "jsx_loan_subsidy": "贷款贴息核定",
    "jsx_sanjiehe_rules": "三结合项目规则",
    "jsx_sanjiehe_tranche": "三结合分期拨付",
    "jsx_sanjiehe_performance": "三结合绩效评价",
    "jsx_pairing_rules": "结对联系规则",
}
_ADMIN = "请联系县计生协系统管理员"


@dataclass(frozen=True)
class Decision(Generic[T]):
    """A hook's answer with its provenance.

    ``region`` is the level whose plugin answered (``None`` for the built-in
    defaults); services record ``plugin``, ``plugin_version``, ``hook`` and
    ``region`` with every decision they store.
    """

    value: T
    plugin: str
    plugin_version: str
    hook: str
    region: RegionCode | None


@dataclass(frozen=True)
class PluginInfo:
    """One row of ``jsx plugins list``: ``regions`` are the regions the plugin
    is enabled for in this deployment, ``declared_regions`` what it declares."""

    name: str
    version: str
    regions: tuple[str, ...]
    hooks: tuple[str, ...]
    description: str
    enabled: bool
    declared_regions: tuple[str, ...] = ()
    distribution: str = ""


# --------------------------------------------------------------------------
# Return-type validation against the spec annotations
# --------------------------------------------------------------------------


@functools.cache
def _hints(obj: Any) -> dict[str, Any]:
    return get_type_hints(obj)


def check_type(value: Any, tp: Any, path: str = "返回值") -> str | None:
    """Check ``value`` against a type annotation, descending into tuples and
    the fields of frozen dataclasses; returns a Chinese description of the first
    mismatch, or ``None`` when it conforms."""
    origin = get_origin(tp)
    if tp is Any:
        return None
    if tp is None or tp is type(None):
        return None if value is None else f"{path} 应为 None，实际为 {type(value).__name__}"
    if origin in (Union, types.UnionType):
        errors = [check_type(value, arg, path) for arg in get_args(tp)]
        return None if any(e is None for e in errors) else next(e for e in errors if e)
    if origin is Literal:
        allowed = get_args(tp)
        return None if value in allowed else f"{path} 应为 {'/'.join(map(str, allowed))} 之一，实际为 {value!r}"
    if origin is tuple:
        if not isinstance(value, tuple):
            return f"{path} 应为 tuple，实际为 {type(value).__name__}"
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            for i, item in enumerate(value):
                if err := check_type(item, args[0], f"{path}[{i}]"):
                    return err
        return None
    if origin in (collections.abc.Mapping, dict):
        return None if isinstance(value, collections.abc.Mapping) else f"{path} 应为映射，实际为 {type(value).__name__}"
    if isinstance(tp, type):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            return f"{path} 应为 {tp.__name__}，实际为 {type(value).__name__}"
        if dataclasses.is_dataclass(tp):
            hints = _hints(tp)
            for f in dataclasses.fields(tp):
                if err := check_type(getattr(value, f.name), hints[f.name], f"{path}.{f.name}"):
                    return err
    return None


@functools.cache
def spec_signature(hook: str) -> tuple[tuple[str, ...], Any]:
    """(argument names, declared return type) of a hook spec."""
    fn = getattr(hookspecs, hook, None)
    if fn is None or hook not in HOOK_NAMES:
        raise ValueError(f"unknown hook {hook!r}; known: {', '.join(HOOK_NAMES)}")
    hints = _hints(fn)
    return tuple(fn.__code__.co_varnames[: fn.__code__.co_argcount]), hints["return"]


# --------------------------------------------------------------------------
# Built-in defaults: conservative answers when no plugin has a rule
# --------------------------------------------------------------------------

_DEFAULT_NOTE = "系统默认规则（本地区未启用地方规则插件）"

#: The 1:1 rule: each special family has its volunteer, each volunteer one family.
DEFAULT_PAIRING_BASIS = (
    f"{_DEFAULT_NOTE}：只为计生特殊家庭（失独、伤残）结对，一名志愿者联系一户计生特殊家庭"
    "（“明确至少 1 名志愿者联系 1 名计生特殊家庭”）"
)

#: Activity types every association runs (DESIGN.md §1, the province's 2022 plan).
NATIONAL_ACTIVITY_TYPES: tuple[ActivityType, ...] = (
    ActivityType("MEMBER_DAY_529", "5.29 会员活动日", ("资料份数", "咨询人次", "义诊人次")),
    ActivityType("WORLD_POPULATION_DAY", "7.11 世界人口日", ("资料份数", "咨询人次")),
    ActivityType("HEALTH_LECTURE", "健康大讲堂", ("参加人次", "资料份数")),
    ActivityType("YOUTH_HEALTH", "青春健康教育", ("参加人次", "资料份数")),
    ActivityType("FREE_CLINIC", "义诊", ("义诊人次", "咨询人次")),
    ActivityType("GROUP_BIRTHDAY", "集体生日", ("参加人次",)),
    ActivityType("AWARDS", "评选表彰", ("表彰人数", "表彰户数")),
)


class BuiltinDefaults:
    """The last level of resolution. Only rules that are safe everywhere:
    no eligibility or amounts (those must come from a plugin), the full
    village → township → county review, a 7-day publicity period."""

    JSX_PLUGIN = PluginMeta(name=BUILTIN, version=jsxcore.__version__, regions=(), description="系统内置默认规则")

    @hookimpl
    def jsx_approval_chain(self, program_type: str, region: RegionCode, amount: Money) -> ApprovalChain:
        return ApprovalChain(("VILLAGE", "TOWNSHIP", "COUNTY"), (f"{_DEFAULT_NOTE}：村审核→乡镇审核→县审批",))

    @hookimpl
    def jsx_publicity_rule(self, program_type: str, region: RegionCode) -> PublicityRule:
        return PublicityRule(7, False, (f"{_DEFAULT_NOTE}：公示 7 天",))

    @hookimpl
    def jsx_cadence_targets(self, region: RegionCode, year: int) -> tuple[CadenceTarget, ...]:
        return ()

    @hookimpl
    def jsx_activity_types(self, region: RegionCode) -> tuple[ActivityType, ...]:
        return NATIONAL_ACTIVITY_TYPES

    @hookimpl
    def jsx_pairing_rules(self, kind: str, region: RegionCode, on: date) -> PairingRules:
        return PairingRules(1, True, (DEFAULT_PAIRING_BASIS,))


# --------------------------------------------------------------------------
# The host
# --------------------------------------------------------------------------


@dataclass
class _Loaded:
    plugin: Any
    meta: PluginMeta
    distribution: str = ""


class _Progress:
    """Which plugin a resolution is currently inside (read on timeout)."""

    current: _Loaded | None = None


class _Batch:
    """What the one worker of :meth:`PluginHost.call_many` publishes to the
    side that waits for it: which call it is on and since when, so the waiter
    can give every call its own ``timeout_ms`` without a thread per call.

    ``index``/``started``/``stopped`` change only under ``lock``; the worker
    writes ``results[i]`` before it moves ``index`` past ``i``, so the waiter
    may read every slot below ``index`` once it holds the lock.
    """

    __slots__ = ("error", "index", "lock", "n", "progress", "results", "started", "stopped", "wakeup")

    def __init__(self, n: int) -> None:
        self.n = n
        self.results: list[Any] = [None] * n
        self.lock = threading.Lock()
        self.index = 0
        self.started = time.monotonic()
        self.progress = _Progress()
        self.stopped = False  # the waiter gave up on a stuck call: start no more
        self.error: BaseException | None = None  # a non-Exception escaping a plugin (SystemExit, …)
        self.wakeup: concurrent.futures.Future[None] = concurrent.futures.Future()


class PluginHost:
    """Finds, enables and calls rule plugins.

    ``enabled`` maps plugin name → region codes (``ServiceConfig.plugins``);
    an empty mapping enables every plugin for the regions it declares, a
    non-empty one enables only the plugins it names. A plugin enabled for a
    region applies to that region and everything inside it.

    Every call runs in a daemon worker thread so that ``timeout_ms`` can be
    enforced against a plugin stuck forever (a thread cannot be killed, but
    the caller can stop waiting for it). Starting that thread costs about
    0.5–1 ms, which dominates a rule lookup; callers that need many answers
    at once (a monthly 特别扶助 batch: thousands of beneficiaries) use
    :meth:`call_many` / :meth:`acall_many`, which resolve all of them in one
    worker thread with the same per-call timeout.
    """

    def __init__(
        self, enabled: Mapping[str, Sequence[str]] | None = None, *, timeout_ms: int = DEFAULT_TIMEOUT_MS
    ) -> None:
        self.enabled_config = {k: tuple(v) for k, v in (enabled or {}).items()}
        self.timeout_ms = int(timeout_ms)
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._plugins: dict[str, _Loaded] = {}
        self._at: dict[RegionCode, list[str]] = {}
        self._enabled: dict[str, tuple[RegionCode, ...]] = {}
        self._callers: dict[tuple[str, str], Any] = {}
        self._rule_plugins: dict[str, bool] = {}
        self._lock = threading.Lock()
        self.register(BuiltinDefaults())

    # -- construction ------------------------------------------------------

    @classmethod
    def from_config(cls, config: Any, *, discover: bool = True) -> PluginHost:
        """Build from a ``ServiceConfig`` (``plugins`` mapping and
        ``plugin_timeout_ms``), discover installed plugins and check that the
        configuration names only installed plugins and their regions."""
        host = cls(
            getattr(config, "plugins", None) or {}, timeout_ms=getattr(config, "plugin_timeout_ms", DEFAULT_TIMEOUT_MS)
        )
        if discover:
            host.discover()
        host.validate_config()
        return host

    def discover(self, group: str = PROJECT) -> list[str]:
        """Load and register every plugin in the entry-point group; returns
        the names registered. A plugin that cannot be imported stops startup."""
        names = []
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            try:
                obj = ep.load()
            except Exception as exc:
                log.exception("loading plugin entry point %s failed", ep.name)
                raise ConfigError(f"规则插件 {ep.name} 无法加载：{exc}，{_ADMIN}") from exc
            if any(p.plugin is obj for p in self._plugins.values()):
                continue
            names.append(self.register(obj, distribution=ep.dist.name if ep.dist else ""))
        return names

    def register(self, plugin: Any, *, distribution: str = "") -> str:
        """Register a plugin module or object carrying ``JSX_PLUGIN``; returns its name."""
        meta = getattr(plugin, "JSX_PLUGIN", None)
        if not isinstance(meta, PluginMeta):
            raise ConfigError(
                f"规则插件 {getattr(plugin, '__name__', plugin)!r} 缺少 JSX_PLUGIN = PluginMeta(...) 声明"
            )
        if meta.name != BUILTIN and (problems := meta.problems()):
            raise ConfigError("；".join(problems))
        with self._lock:
            if meta.name in self._plugins:
                raise ConfigError(f"规则插件名称 {meta.name} 重复注册")
            self.pm.register(plugin, name=meta.name)
            try:
                self.pm.check_pending()  # hookimpls named jsx_* that match no spec
            except pluggy.PluginValidationError as exc:
                self.pm.unregister(plugin)
                raise ConfigError(f"规则插件 {meta.name} 实现了未定义的钩子：{exc}") from exc
            self._plugins[meta.name] = _Loaded(plugin, meta, distribution)
            try:
                self._reindex()
            except ConfigError:
                del self._plugins[meta.name]
                self.pm.unregister(plugin)
                raise
        return meta.name

    def validate_config(self) -> None:
        """Raise ConfigError if the enablement names an unknown plugin."""
        unknown = sorted(set(self.enabled_config) - set(self._plugins))
        if unknown:
            raise ConfigError(
                f"配置启用的规则插件未安装：{', '.join(unknown)}；"
                f"已安装：{', '.join(sorted(n for n in self._plugins if n != BUILTIN))}"
            )

    def _reindex(self) -> None:
        at: dict[RegionCode, list[str]] = {}
        enabled: dict[str, tuple[RegionCode, ...]] = {}
        for name, loaded in sorted(self._plugins.items()):
            if name == BUILTIN:
                continue
            declared = [RegionCode.parse(c) for c in loaded.meta.regions]
            if not self.enabled_config:
                codes = declared
            elif name in self.enabled_config:
                codes = [RegionCode.parse(c) for c in self.enabled_config[name]]
            else:
                continue
            for code in codes:
                if not any(d.contains(code) for d in declared):
                    raise ConfigError(
                        f"规则插件 {name} 适用于 {', '.join(loaded.meta.regions)}，"
                        f"不能在地区 {code.short} 启用，请修改插件启用配置"
                    )
                at.setdefault(code, []).append(name)
            enabled[name] = tuple(codes)
        self._at, self._enabled, self._callers, self._rule_plugins = at, enabled, {}, {}

    # -- resolution --------------------------------------------------------

    def _caller(self, hook: str, name: str) -> Any:
        key = (hook, name)
        caller = self._callers.get(key)
        if caller is None:
            others = [p.plugin for n, p in self._plugins.items() if n != name]
            caller = self._callers[key] = self.pm.subset_hook_caller(hook, remove_plugins=others)
        return caller

    def _levels(self, region: RegionCode) -> list[tuple[RegionCode | None, list[str]]]:
        levels: list[tuple[RegionCode | None, list[str]]] = [
            (a, self._at[a]) for a in region.ancestors() if a in self._at
        ]
        levels.append((None, [BUILTIN]))
        return levels

    def _prepare(self, hook: str, region: Any, kwargs: dict[str, Any]) -> tuple[RegionCode, dict[str, Any]]:
        argnames, _ = spec_signature(hook)
        region = RegionCode.parse(region)
        if "region" in argnames:
            if RegionCode.parse(kwargs.setdefault("region", region)) != region:
                raise TypeError(f"{hook}(): region argument differs from the region being resolved")
            kwargs["region"] = region
        missing, extra = set(argnames) - set(kwargs), set(kwargs) - set(argnames)
        if missing or extra:
            raise TypeError(f"{hook}() arguments: missing {sorted(missing)}, unexpected {sorted(extra)}")
        return region, kwargs

    def _resolve(self, hook: str, region: RegionCode, kwargs: dict[str, Any], progress: _Progress) -> Decision[Any]:
        _, returns = spec_signature(hook)
        for level, names in self._levels(region):
            for name in names:
                loaded = self._plugins[name]
                progress.current = loaded
                caller = self._caller(hook, name)
                try:
                    value = caller(**kwargs)
                except DomainError as exc:
                    # A deliberate refusal (e.g. NO_RULE_FOR_PERIOD): pass it on, naming its source.
                    exc.metadata.update(plugin=name, version=loaded.meta.version, hook=hook)
                    raise
                except Exception as exc:
                    log.exception("plugin %s %s raised in %s", name, loaded.meta.version, hook)
                    raise self._error(loaded, hook, f"{type(exc).__name__}: {exc}", "PLUGIN_FAILED") from exc
                if value is None:
                    continue
                if err := check_type(value, returns):
                    log.error("plugin %s %s returned a wrong type from %s: %s", name, loaded.meta.version, hook, err)
                    raise self._error(loaded, hook, f"返回值类型不符合钩子规范（{err}）", "PLUGIN_BAD_RESULT")
                return Decision(value, name, loaded.meta.version, hook, level)
        title = HOOK_TITLES.get(hook, hook)
        raise FailedPrecondition(
            f"地区 {region.short} 没有可用的“{title}”规则（{hook}），{_ADMIN}启用或补充相应的规则插件",
            reason="NO_RULE",
            metadata={"hook": hook, "region": region.code},
        )

    @staticmethod
    def _error(loaded: _Loaded, hook: str, what: str, reason: str) -> PluginError:
        name, version = loaded.meta.name, loaded.meta.version
        return PluginError(
            f"规则插件 {name} {version} 在 {hook} 中出错：{what}，{_ADMIN}",
            reason=reason,
            metadata={"plugin": name, "version": version, "hook": hook},
        )

    def _start(
        self, hook: str, region: RegionCode, kwargs: dict[str, Any]
    ) -> tuple[concurrent.futures.Future[Decision[Any]], _Progress]:
        # A daemon thread per call: a plugin stuck forever can neither be
        # killed nor be allowed to hold up interpreter exit or later calls.
        future: concurrent.futures.Future[Decision[Any]] = concurrent.futures.Future()
        progress = _Progress()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(self._resolve(hook, region, kwargs, progress))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, name=f"jsx-plugin-{hook}", daemon=True).start()
        return future, progress

    def _timeout_error(self, hook: str, progress: _Progress, loaded: _Loaded | None = None) -> PluginError:
        loaded = loaded or progress.current or self._plugins[BUILTIN]
        log.error(
            "plugin %s %s timed out in %s after %d ms", loaded.meta.name, loaded.meta.version, hook, self.timeout_ms
        )
        return self._error(loaded, hook, f"超过 {self.timeout_ms} 毫秒未返回结果", "PLUGIN_TIMEOUT")

    def call(self, hook: str, region: RegionCode | str, /, **kwargs: Any) -> Decision[Any]:
        """Resolve ``hook`` for ``region`` and return the first answer with its
        provenance. Raises PluginError (plugin fault or timeout), the plugin's
        own DomainError (a deliberate refusal), or FailedPrecondition
        ``NO_RULE`` when nothing answers."""
        code, kwargs = self._prepare(hook, region, kwargs)
        future, progress = self._start(hook, code, kwargs)
        try:
            return future.result(timeout=self.timeout_ms / 1000)
        except TimeoutError:
            raise self._timeout_error(hook, progress) from None

    async def acall(self, hook: str, region: RegionCode | str, /, **kwargs: Any) -> Decision[Any]:
        """:meth:`call` for asyncio services: the plugin runs in a worker
        thread, the event loop is never blocked, the timeout still applies."""
        code, kwargs = self._prepare(hook, region, kwargs)
        future, progress = self._start(hook, code, kwargs)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_ms / 1000)
        except TimeoutError:
            raise self._timeout_error(hook, progress) from None

    # -- what the rules read ------------------------------------------------

    def _implements_rules(self, name: str) -> bool:
        known = self._rule_plugins.get(name)
        if known is None:
            impls = {c.name for c in (self.pm.get_hookcallers(self._plugins[name].plugin) or [])}
            known = self._rule_plugins[name] = any(h in impls for h in RULE_HOOKS)
        return known

    def rule_inputs(self, program_type: str, region: RegionCode | str, *, within: bool = False) -> RuleInputs | None:
        """What the eligibility and amount rules for ``program_type`` in
        ``region`` may read of a Beneficiary, so a batch can ask the rules
        once per distinct declared input instead of once per person.

        The union of the declarations (``PluginMeta.rule_inputs``) of every
        plugin enabled at any level of ``region``'s chain (village …
        province) that implements ``jsx_program_eligibility`` or
        ``jsx_entitlement_amount`` — every one of them, not only the one that
        would answer, since which level answers may itself depend on the
        input. ``None`` as soon as one of them did not declare: then every
        attribute and the exact birth date are input. A plugin whose declared
        mapping lacks ``program_type`` contributes
        ``RuleInputs(frozenset(), BirthDateUse.UNUSED)``; with no such plugin
        at all the result is that too. Region, situation and unit are always
        inputs; period, program type and context are the caller's, the same
        for the whole batch. Raises InvalidArgument for a bad region code.

        ``within``: also every plugin enabled for an area inside ``region``
        (a county's monthly batch pays every village in it, and a township
        may have rules of its own).

        .. versionadded:: 0.2
        """
        code = RegionCode.parse(region)
        kind = getattr(program_type, "value", program_type)
        out = NOTHING_READ
        levels = self._levels(code)
        if within:
            levels += [(at, names) for at, names in self._at.items() if at != code and code.contains(at)]
        for _level, names in levels:
            for name in names:
                if not self._implements_rules(name):
                    continue
                declared = self._plugins[name].meta.rule_inputs
                if declared is None:
                    return None
                out = out.union(declared.get(kind, NOTHING_READ))
        return out

    # -- many calls in one worker ------------------------------------------

    def _start_many(self, hook: str, calls: Sequence[tuple[RegionCode | str, Mapping[str, Any]]]) -> _Batch:
        spec_signature(hook)  # an unknown hook fails the whole request, as in call()
        batch = _Batch(len(calls))
        results, lock, progress = batch.results, batch.lock, batch.progress

        def run() -> None:
            i = 0
            try:
                for i, (region, kwargs) in enumerate(calls):
                    with lock:
                        if batch.stopped:
                            return
                        batch.index, batch.started = i, time.monotonic()
                        progress.current = None
                    try:
                        # dict(): _prepare fills in ``region`` and the caller's mapping may be shared or read-only
                        code, kw = self._prepare(hook, region, dict(kwargs))
                        results[i] = self._resolve(hook, code, kw, progress)
                    except (DomainError, TypeError) as exc:  # what call() would raise for this input alone
                        results[i] = exc
                    except Exception as exc:  # not the plugin's (_resolve wraps those): still this input's only
                        log.exception("resolving %s for input %d of a batch failed", hook, i)
                        results[i] = exc
                with lock:
                    batch.index = batch.n
            except BaseException as exc:
                with lock:
                    batch.error, batch.index = exc, i
            finally:
                batch.wakeup.set_result(None)

        if calls:
            threading.Thread(target=run, name=f"jsx-plugin-many-{hook}", daemon=True).start()
        else:
            batch.wakeup.set_result(None)
        return batch

    @staticmethod
    def _stop(batch: _Batch) -> None:
        with batch.lock:
            batch.stopped = True

    def _wait_left(self, hook: str, batch: _Batch) -> float | list[Decision[Any] | DomainError]:
        """Seconds the waiter may still sleep before the current call's
        deadline, or the final results: complete, or — when the current call
        has run past ``timeout_ms`` — the finished ones followed by
        PLUGIN_TIMEOUT errors for the stuck call and every call after it."""
        with batch.lock:
            if batch.error is not None:
                raise batch.error
            if batch.index >= batch.n:
                return list(batch.results)
            left = batch.started + self.timeout_ms / 1000 - time.monotonic()
            if left > 0:
                return left
            batch.stopped = True  # the worker starts nothing more, even if the stuck plugin returns later
            stuck = batch.index
            done = batch.results[:stuck]  # a copy: the worker may still write slot ``stuck``
            loaded = batch.progress.current or self._plugins[BUILTIN]
        out: list[Any] = done
        out.append(self._timeout_error(hook, batch.progress, loaded))
        if stuck + 1 < batch.n:
            log.error(
                "plugin %s %s: %d later inputs of the %s batch not evaluated",
                loaded.meta.name,
                loaded.meta.version,
                batch.n - stuck - 1,
                hook,
            )
            what = f"同一批次中前面一项超过 {self.timeout_ms} 毫秒未返回结果，本项未计算"
            out.extend(self._error(loaded, hook, what, "PLUGIN_TIMEOUT") for _ in range(stuck + 1, batch.n))
        return out

    def call_many(
        self, hook: str, calls: Sequence[tuple[RegionCode | str, Mapping[str, Any]]], /
    ) -> list[Decision[Any] | DomainError]:
        """Resolve ``hook`` for each ``(region, kwargs)`` pair, in order, in ONE
        worker thread, and return one result per pair in input order.

        Why: :meth:`call` starts a thread per call (≈0.5–1 ms), which for a
        batch of thousands of inputs costs seconds; here the thread is started
        once. Each pair is checked and resolved exactly as ``call(hook,
        region, **kwargs)`` would be (same argument checks, same village → …
        → province → ``builtin`` resolution, same provenance on each Decision).

        A failure is returned in that input's slot instead of raised, and the
        other inputs still run: the plugin's own DomainError (a deliberate
        refusal), PluginError (the plugin raised or returned the wrong type),
        FailedPrecondition ``NO_RULE``, InvalidArgument for a bad region code.
        Arguments that do not match the hook spec put in the slot the
        TypeError :meth:`call` would raise (a programming error).

        ``timeout_ms`` bounds each call, measured from when the worker starts
        it. When one runs past it the worker is stuck inside that plugin, so
        its slot and the slot of every input not yet started hold PluginError
        ``PLUGIN_TIMEOUT`` naming that plugin, and this returns about
        ``timeout_ms`` after the stuck call began. Only an unknown ``hook``
        (ValueError) or a non-Exception escaping a plugin (SystemExit, …) is
        raised for the whole request.
        """
        batch = self._start_many(hook, calls)
        try:
            while True:
                left = self._wait_left(hook, batch)
                if isinstance(left, list):
                    return left
                concurrent.futures.wait((batch.wakeup,), timeout=left)
        finally:
            self._stop(batch)

    async def acall_many(
        self, hook: str, calls: Sequence[tuple[RegionCode | str, Mapping[str, Any]]], /
    ) -> list[Decision[Any] | DomainError]:
        """:meth:`call_many` for asyncio services: the inputs are resolved in
        one worker thread (not the event loop's, never one per input). The
        event loop only waits, waking when the batch ends or when the call in
        progress reaches its deadline — then it re-arms for the call the
        worker has moved on to, or gives up on the stuck one. Same results,
        same per-call timeout."""
        batch = self._start_many(hook, calls)
        wakeup = asyncio.wrap_future(batch.wakeup)
        try:
            while True:
                left = self._wait_left(hook, batch)
                if isinstance(left, list):
                    return left
                await asyncio.wait((wakeup,), timeout=left)
        finally:
            self._stop(batch)  # e.g. the awaiting task was cancelled: nobody wants the rest

    # -- listing -----------------------------------------------------------

    def list_plugins(
        self, region: RegionCode | str | None = None, *, include_builtin: bool = False
    ) -> list[PluginInfo]:
        """Installed plugins in name order (built-in defaults last when asked
        for). With ``region``, only plugins enabled for it or a parent."""
        code = RegionCode.parse(region) if region is not None else None
        out = []
        for name, loaded in sorted(self._plugins.items(), key=lambda kv: (kv[0] == BUILTIN, kv[0])):
            if name == BUILTIN and not include_builtin:
                continue
            enabled = self._enabled.get(name, ())
            if code is not None and name != BUILTIN and not any(e.contains(code) for e in enabled):
                continue
            impls = {c.name for c in (self.pm.get_hookcallers(loaded.plugin) or [])}
            out.append(
                PluginInfo(
                    name=name,
                    version=loaded.meta.version,
                    regions=tuple(e.short for e in enabled),
                    hooks=tuple(h for h in HOOK_NAMES if h in impls),
                    description=loaded.meta.description,
                    enabled=name == BUILTIN or bool(enabled),
                    declared_regions=loaded.meta.regions,
                    distribution=loaded.distribution,
                )
            )
        return out


# --------------------------------------------------------------------------
# CLI: jsx plugins list [--json]
# --------------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace) -> int:
    from jsxcore.config import parse_plugins

    # Same variables the services read (ServiceConfig), without needing a service's other settings.
    try:
        host = PluginHost(parse_plugins(os.environ.get("JSX_PLUGINS", "")))
        host.discover()
        host.validate_config()
    except (ConfigError, ValueError) as exc:
        print(f"插件配置有误：{exc}", file=sys.stderr)
        return 2
    infos = host.list_plugins(args.region, include_builtin=args.all)
    if args.json:
        print(json.dumps([dataclasses.asdict(i) for i in infos], ensure_ascii=False, indent=2))
        return 0
    for i in infos:
        state = "已启用" if i.enabled else "未启用"
        print(f"{i.name} {i.version}  [{state}]  地区: {', '.join(i.regions) or '-'}  {i.description}")
        print(f"    钩子: {', '.join(i.hooks) or '-'}")
    return 0


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``jsx plugins list [--json] [--region CODE] [--all]``."""
    p = sub.add_parser("plugins", help="规则插件：列出已安装的插件")
    psub = p.add_subparsers(dest="plugins_command", metavar="COMMAND")
    lp = psub.add_parser("list", help="列出规则插件（名称、版本、地区、钩子）")
    lp.add_argument("--json", action="store_true", help="以 JSON 输出")
    lp.add_argument("--region", help="只列出对该地区生效的插件，如 431281")
    lp.add_argument("--all", action="store_true", help="同时列出系统内置默认规则")
    lp.set_defaults(func=_cmd_list)

    def _usage(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=_usage)
