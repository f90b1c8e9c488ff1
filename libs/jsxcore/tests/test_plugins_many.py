"""PluginHost.call_many / acall_many: many inputs resolved in one worker thread,
checked against acall one by one, with real installed plugins (entry-point group
"jsx") and real pluggy plugins registered for a region."""

from __future__ import annotations

import asyncio
import threading
import time
import types
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import pytest

from jsxcore.errors import DomainError, FailedPrecondition, InvalidArgument
from jsxcore.hookspecs import Amount, Beneficiary, PluginMeta, hookimpl
from jsxcore.plugins import BUILTIN, Decision, PluginHost
from jsxcore.values import Money, Period, RegionCode

HONGJIANG_VILLAGE = "431281101201"
YUANLING_VILLAGE = "431222101001"
XUPU = "431224"
AUG = Period.month(2022, 8)


def person(region: str, situation: str = "SPECIAL_BEREAVED", pid: str = "P1") -> Beneficiary:
    return Beneficiary(pid, "H1", RegionCode.parse(region), situation, birth_date=date(1962, 3, 1))


def amount_kwargs(
    region: str,
    period: Period = AUG,
    situation: str = "SPECIAL_BEREAVED",
    program: str = "SPECIAL_SUPPORT",
    pid: str = "P1",
) -> dict[str, Any]:
    return {"program_type": program, "beneficiary": person(region, situation, pid), "period": period, "context": {}}


def same(a: Decision[Any] | BaseException, b: Decision[Any] | BaseException) -> bool:
    """A call_many slot equals what acall returned or raised for the same input."""
    if isinstance(a, BaseException) or isinstance(b, BaseException):
        return (
            type(a) is type(b)
            and str(a) == str(b)
            and getattr(a, "reason", None) == getattr(b, "reason", None)
            and getattr(a, "metadata", None) == getattr(b, "metadata", None)
        )
    return a == b  # frozen dataclass: value, plugin, plugin_version, hook, region


async def one_by_one(
    host: PluginHost, hook: str, calls: Sequence[tuple[str | RegionCode, Mapping[str, Any]]]
) -> list[Any]:
    out: list[Any] = []
    for region, kwargs in calls:
        try:
            out.append(await host.acall(hook, region, **dict(kwargs)))
        except (DomainError, TypeError) as exc:
            out.append(exc)
    return out


@pytest.fixture
def host() -> PluginHost:
    h = PluginHost(timeout_ms=1000)
    h.discover()
    return h


# -- same answers as acall ---------------------------------------------------


async def test_results_equal_acall_one_by_one(host: PluginHost) -> None:
    calls: list[tuple[str | RegionCode, Mapping[str, Any]]] = [
        (HONGJIANG_VILLAGE, amount_kwargs(HONGJIANG_VILLAGE)),  # hongjiang 940
        ("431222", amount_kwargs("431222")),  # hunan 590
        (HONGJIANG_VILLAGE, amount_kwargs(HONGJIANG_VILLAGE, situation="SPECIAL_DISABLED")),  # hongjiang 580
        (
            YUANLING_VILLAGE,
            amount_kwargs(YUANLING_VILLAGE, Period.year_of(2022), program="HEALTH_INSURANCE"),
        ),  # yuanling 150
        (XUPU, amount_kwargs(XUPU, situation="SPECIAL_DISABLED")),  # hunan 460
        ("431222", amount_kwargs("431222", Period.month(2022, 6))),  # hunan refuses: NO_RULE_FOR_PERIOD
        ("4312", amount_kwargs("431222")),  # bad region code: InvalidArgument from _prepare
        (
            HONGJIANG_VILLAGE,
            {"program_type": "SPECIAL_SUPPORT", "period": AUG, "context": {}},
        ),  # no beneficiary: TypeError
        (RegionCode.parse(HONGJIANG_VILLAGE), amount_kwargs(HONGJIANG_VILLAGE, Period.year_of(2022))),  # 12 × 940
    ]
    many: list[Any] = await host.acall_many("jsx_entitlement_amount", calls)
    expected = await one_by_one(host, "jsx_entitlement_amount", calls)
    assert len(many) == len(calls)
    for i, (got, want) in enumerate(zip(many, expected, strict=True)):
        assert same(got, want), (i, got, want)
    # and what they are, so that "equal to acall" is not equal-and-wrong
    amounts = [(d.value.amount, d.plugin, d.plugin_version, d.region) for d in many if isinstance(d, Decision)]
    assert amounts == [
        (Money.yuan(940), "hongjiang", "0.1.0", RegionCode.parse("431281")),
        (Money.yuan(590), "hunan", host._plugins["hunan"].meta.version, RegionCode.parse("430000")),
        (Money.yuan(580), "hongjiang", "0.1.0", RegionCode.parse("431281")),
        (Money.yuan(150), "yuanling", host._plugins["yuanling"].meta.version, RegionCode.parse("431222")),
        (Money.yuan(460), "hunan", host._plugins["hunan"].meta.version, RegionCode.parse("430000")),
        (Money.yuan(940 * 12), "hongjiang", "0.1.0", RegionCode.parse("431281")),
    ]
    assert (
        isinstance(many[5], InvalidArgument)
        and many[5].reason == "NO_RULE_FOR_PERIOD"
        and many[5].metadata["plugin"] == "hunan"
    )
    assert isinstance(many[6], InvalidArgument) and many[6].reason == "INVALID_REGION_CODE"
    assert isinstance(many[7], TypeError) and "beneficiary" in str(many[7])
    # the sync form gives the same, and the caller's mappings are left as they were
    assert all(same(a, b) for a, b in zip(host.call_many("jsx_entitlement_amount", calls), expected, strict=True))
    assert "region" not in calls[0][1]


async def test_other_hooks_no_rule_and_builtin(host: PluginHost) -> None:
    calls = [
        ("431224101001", {"fund_kind": "HAPPINESS_FUND"}),  # xupu's six uses
        ("440000", {"fund_kind": "HAPPINESS_FUND"}),  # nothing anywhere: NO_RULE
        (
            HONGJIANG_VILLAGE,
            {"fund_kind": "HAPPINESS_FUND", "region": "431222"},
        ),  # region argument contradicts: TypeError
    ]
    many: list[Any] = await host.acall_many("jsx_fund_allowed_uses", calls)
    expected = await one_by_one(host, "jsx_fund_allowed_uses", calls)
    assert all(same(a, b) for a, b in zip(many, expected, strict=True))
    assert many[0].plugin == "xupu" and len(many[0].value.uses) == 6
    assert isinstance(many[1], FailedPrecondition) and many[1].reason == "NO_RULE" and "基金用途" in many[1].message
    assert isinstance(many[2], TypeError)
    pub: list[Any] = await host.acall_many(
        "jsx_publicity_rule", [(HONGJIANG_VILLAGE, {"program_type": "SPECIAL_SUPPORT"})]
    )
    assert (pub[0].plugin, pub[0].region, pub[0].value.days) == (BUILTIN, None, 7)
    assert await host.acall_many("jsx_publicity_rule", []) == [] and host.call_many("jsx_publicity_rule", []) == []
    with pytest.raises(ValueError, match="unknown hook"):
        await host.acall_many("jsx_no_such_hook", calls)


# -- misbehaving plugins ------------------------------------------------------


def _plugin(name: str, **hooks: object) -> types.ModuleType:
    module = types.ModuleType(f"jsx_plugin_{name}")
    module.JSX_PLUGIN = PluginMeta(name, "0.0.1", ("431281",), "测试插件")  # type: ignore[attr-defined]  # a plugin module built at run time
    vars(module).update(hooks)
    return module


def _host(name: str, impl: object, timeout_ms: int) -> PluginHost:
    host = PluginHost({"hunan": ["430000"], name: ["431281"]}, timeout_ms=timeout_ms)
    host.discover()
    host.register(_plugin(name, jsx_entitlement_amount=impl))
    return host


@hookimpl
def _picky(program_type, beneficiary, period, context):
    # fails only for some inputs, refuses some deliberately, answers the rest
    if beneficiary.situation == "SPECIAL_DISABLED":
        raise ZeroDivisionError("division by zero")
    if beneficiary.person_id == "WRONG":
        return 940
    if beneficiary.person_id == "REFUSE":
        raise InvalidArgument("本县 2022 年标准未公布", reason="NO_RULE_FOR_PERIOD")
    return Amount(Money.yuan(1), ("测试标准 1 元",))


async def test_a_raising_plugin_fails_only_its_own_inputs() -> None:
    host = _host("picky", _picky, 1000)
    calls = [
        (HONGJIANG_VILLAGE, amount_kwargs(HONGJIANG_VILLAGE)),
        (HONGJIANG_VILLAGE, amount_kwargs(HONGJIANG_VILLAGE, situation="SPECIAL_DISABLED")),
        ("431222", amount_kwargs("431222")),  # not picky's region
        (HONGJIANG_VILLAGE, amount_kwargs(HONGJIANG_VILLAGE, pid="WRONG")),
        (HONGJIANG_VILLAGE, amount_kwargs(HONGJIANG_VILLAGE, pid="REFUSE")),
        (HONGJIANG_VILLAGE, amount_kwargs(HONGJIANG_VILLAGE, pid="P2")),
    ]
    many: list[Any] = await host.acall_many("jsx_entitlement_amount", calls)
    assert all(same(a, b) for a, b in zip(many, await one_by_one(host, "jsx_entitlement_amount", calls), strict=True))
    assert [type(r).__name__ for r in many] == [
        "Decision",
        "PluginError",
        "Decision",
        "PluginError",
        "InvalidArgument",
        "Decision",
    ]
    assert many[1].reason == "PLUGIN_FAILED" and "ZeroDivisionError" in many[1].message
    assert many[1].metadata == {"plugin": "picky", "version": "0.0.1", "hook": "jsx_entitlement_amount"}
    assert many[3].reason == "PLUGIN_BAD_RESULT"
    assert many[4].reason == "NO_RULE_FOR_PERIOD" and many[4].metadata["plugin"] == "picky"
    assert (many[0].value.amount, many[0].plugin) == (Money.yuan(1), "picky")
    assert (many[2].value.amount, many[2].plugin) == (Money.yuan(590), "hunan")
    assert many[5].plugin == "picky"


SEEN: list[tuple[str, int, str]] = []  # (person_id, thread ident, thread name) as the plugin saw them
WORKERS: list[threading.Thread] = []  # the thread each call ran in
ENTERED = threading.Event()  # a STUCK call has started
RELEASE = threading.Event()  # lets a STUCK call return (the test sets it once it has seen the cut-off)
RETURNED: list[str] = []  # person ids whose call returned


@hookimpl
def _slow(program_type, beneficiary, period, context):
    SEEN.append((beneficiary.person_id, threading.get_ident(), threading.current_thread().name))
    WORKERS.append(threading.current_thread())
    if beneficiary.person_id == "STUCK":
        ENTERED.set()
        RELEASE.wait(60)  # stuck until the test lets go, far past any timeout used here
    elif beneficiary.person_id.startswith("SLOW"):
        time.sleep(float(beneficiary.person_id[4:]))
    RETURNED.append(beneficiary.person_id)
    return Amount(Money.yuan(2), ("测试标准 2 元",))


def _inputs(*pids: str) -> list[tuple[str | RegionCode, dict[str, Any]]]:
    return [(HONGJIANG_VILLAGE, amount_kwargs(HONGJIANG_VILLAGE, pid=p)) for p in pids]


@pytest.mark.parametrize("form", ["async", "sync"])
async def test_a_stuck_call_times_out_with_every_later_one_while_the_loop_keeps_serving(form: str) -> None:
    host = _host("slowpoke", _slow, 1000)
    for kept in (SEEN, WORKERS, RETURNED):
        kept.clear()
    ENTERED.clear()
    RELEASE.clear()
    calls = _inputs("A", "B", "STUCK", "C", "D")
    order: list[str] = []

    async def batch() -> list[Any]:
        if form == "async":
            many: list[Any] = await host.acall_many("jsx_entitlement_amount", calls)
        else:
            many = await asyncio.to_thread(host.call_many, "jsx_entitlement_amount", calls)
        order.append("batch returned")
        return many

    async def meanwhile() -> Decision[Any]:
        # another request the service answers while the batch's worker is stuck inside the plugin
        await asyncio.to_thread(ENTERED.wait, 30)
        d = await host.acall("jsx_entitlement_amount", "431222", **amount_kwargs("431222"))
        order.append("served")
        return d

    try:
        many, other = await asyncio.gather(batch(), meanwhile())
        # cut off by the timeout, not by the stuck call returning: it is still stuck
        assert not RELEASE.is_set() and "STUCK" not in RETURNED
    finally:
        RELEASE.set()
    # the event loop kept serving while the batch waited for the stuck call
    assert order == ["served", "batch returned"]
    assert (other.value.amount, other.plugin) == (Money.yuan(590), "hunan")
    assert [type(r).__name__ for r in many] == ["Decision", "Decision", "PluginError", "PluginError", "PluginError"]
    for r in many[2:]:
        assert r.reason == "PLUGIN_TIMEOUT" and r.metadata == {
            "plugin": "slowpoke",
            "version": "0.0.1",
            "hook": "jsx_entitlement_amount",
        }
        assert (
            r.message.startswith("规则插件 slowpoke 0.0.1 在 jsx_entitlement_amount 中出错")
            and "1000 毫秒" in r.message
        )
    assert "本项未计算" in many[3].message and "本项未计算" not in many[2].message
    # once given up on, the worker starts no later input even after the plugin returns
    worker = next(t for (p, _, _), t in zip(SEEN, WORKERS, strict=True) if p == "STUCK")
    await asyncio.to_thread(worker.join, 30)
    assert not worker.is_alive() and RETURNED == ["A", "B", "STUCK"]
    assert [p for p, _, _ in SEEN] == ["A", "B", "STUCK"]
    assert many[2].reason == "PLUGIN_TIMEOUT"  # the returned list is not written to afterwards


async def test_the_timeout_is_per_call_not_per_batch() -> None:
    # five calls of 0.15 s with a 0.4 s timeout: 0.75 s in all, each within its own deadline
    host = _host("slowpoke", _slow, 400)
    SEEN.clear()
    many: list[Any] = await host.acall_many("jsx_entitlement_amount", _inputs(*["SLOW0.15"] * 5))
    assert all(isinstance(d, Decision) and d.value.amount == Money.yuan(2) for d in many)
    assert all(isinstance(d, Decision) for d in host.call_many("jsx_entitlement_amount", _inputs(*["SLOW0.15"] * 5)))


async def test_cancelling_the_awaiting_task_stops_the_worker() -> None:
    host = _host("slowpoke", _slow, 2000)
    SEEN.clear()
    task = asyncio.create_task(host.acall_many("jsx_entitlement_amount", _inputs("SLOW0.3", "A", "B")))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.4)
    assert [p for p, _, _ in SEEN] == ["SLOW0.3"]


async def test_one_worker_thread_for_all_inputs_not_the_loop() -> None:
    host = _host("slowpoke", _slow, 1000)
    SEEN.clear()
    before = {t.ident for t in threading.enumerate()}
    many: list[Any] = await host.acall_many("jsx_entitlement_amount", _inputs(*[f"P{i}" for i in range(200)]))
    assert len(many) == 200 and all(isinstance(d, Decision) for d in many)
    idents = {ident for _, ident, _ in SEEN}
    names = {name for _, _, name in SEEN}
    assert len(idents) == 1 and threading.get_ident() not in idents and not idents & before
    assert names == {"jsx-plugin-many-jsx_entitlement_amount"}
    assert [p for p, _, _ in SEEN] == [f"P{i}" for i in range(200)]  # in input order


# -- the measure the funds service asked for (printed, not asserted) ------------


async def test_measure_acall_vs_acall_many(host: PluginHost, capsys: pytest.CaptureFixture[str]) -> None:
    regions = [HONGJIANG_VILLAGE, "431222", YUANLING_VILLAGE, XUPU]
    calls = [
        (r, amount_kwargs(r, situation=("SPECIAL_BEREAVED", "SPECIAL_DISABLED")[i % 2], pid=f"P{i}"))
        for i, r in enumerate(regions * 500)
    ]
    assert len(calls) == 2000
    t0 = time.perf_counter()
    one = [await host.acall("jsx_entitlement_amount", r, **kw) for r, kw in calls]
    t1 = time.perf_counter()
    many: list[Any] = await host.acall_many("jsx_entitlement_amount", calls)
    t2 = time.perf_counter()
    assert many == one
    with capsys.disabled():
        print(
            f"\n2000 jsx_entitlement_amount calls: acall one by one {t1 - t0:.3f} s ({(t1 - t0) / 2:.3f} ms/call), "
            f"acall_many {t2 - t1:.3f} s ({(t2 - t1) / 2 * 1000:.1f} µs/call), {(t1 - t0) / (t2 - t1):.0f}× faster"
        )
