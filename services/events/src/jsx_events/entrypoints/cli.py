"""``jsx events …``: record a visit, list visits/activities, compliance report (screen or xlsx),
annual plans (``jsx events plan create|add-item|list|show``).

Works on the events database named by ``JSX_EVENTS_DATABASE_URL`` (same
configuration as the service); the outbox row for 慰问金 is written in the
same transaction, and the running service's relay publishes it.

``jsx events record`` moves money (its 慰问金 is booked by funds), so it is
authenticated like RecordVisit: a token (``--token`` or ``JSX_TOKEN``, from
``jsx token issue``) verified with the service's secret, the RPC's permission
(``events.visits.write``) and the token's region scope, and the same checks of
what it names (the household, its village, the visitor, the site). It takes the
resource names the other commands print (``households/…``, ``volunteers/…``,
``funds/…``, ``sites/…``; a bare id too). The other commands still work as the
database's operator, without a token (issue 16 extends the token to them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

from jsx.common.v1 import common_pb2 as cpb
from jsx.events.v1 import events_service_pb2 as pb
from jsx_events import SERVICE_NAME
from jsx_events.adapters.db import migrate
from jsx_events.catalog.domain import normalize_type, type_label
from jsx_events.catalog.wire import type_code, type_pb
from jsx_events.composition import EventsService
from jsx_events.plans.wire import plan_from_pb, plan_item_from_pb
from jsx_events.reporting.domain import (
    COMPLIANCE_LABELS,
    Compliance,
    ComplianceItem,
    ComplianceReport,
    period_label,
)
from jsx_events.reporting.wire import ORDER
from jsx_events.visits.domain import VISIT_STATE_LABELS, VisitState
from jsx_events.visits.service import VisitFilter
from jsx_events.visits.wire import visit_from_pb
from jsxcore import wire
from jsxcore.auth import Caller, verify_token
from jsxcore.config import ServiceConfig
from jsxcore.db import create_engine, session_factory
from jsxcore.errors import DomainError, ErrorCollector, InvalidArgument, Unauthenticated
from jsxcore.plugins import PluginHost
from jsxcore.regions import registry
from jsxcore.runtime.interceptors import method_permission
from jsxcore.values import Money, Period, RegionCode

T = TypeVar("T")

#: The CLI works on the service's own database as its operator: no caller, no region limit.
OPERATOR = None


async def _with_service(fn: Callable[[EventsService], Awaitable[T]]) -> T:
    config = ServiceConfig.from_env("events")
    await asyncio.to_thread(migrate, config.database_url)
    engine = create_engine(config.database_url)
    try:
        return await fn(EventsService.build(session_factory(engine), PluginHost.from_config(config)))
    finally:
        await engine.dispose()


def export_xlsx(report: ComplianceReport, path: Path) -> None:
    """One sheet, one row per finding, shortfalls first."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill

    wb = Workbook()
    ws = wb.worksheets[0]  # the new workbook's one sheet
    ws.title = "活动频次达标情况"
    ws.append([f"{report.region.name or report.region.short} {period_label(report.period)} 活动频次达标情况"])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append(["结果", "考核对象", "周期", "要求次数", "实际次数", "目标", "说明", "规则来源", "所在地"])
    red = PatternFill("solid", fgColor="FFC7CE")
    for i in sorted(report.items, key=lambda i: ORDER[i.status]):
        ws.append(
            [
                COMPLIANCE_LABELS[i.status],
                i.subject_name,
                i.window,
                i.required,
                i.actual,
                i.target,
                i.reason,
                i.provenance,
                registry().label(i.subject_region) if i.subject_region else "",
            ]
        )
        if i.status is Compliance.SHORT:
            ws.cell(ws.max_row, 1).fill = red
    for col, width in zip("ABCDEFGHI", (8, 24, 22, 10, 10, 28, 60, 24, 36), strict=True):
        ws.column_dimensions[col].width = width
    wb.save(path)


def print_compliance(report: ComplianceReport, shortfalls_only: bool = False) -> None:
    """Each target with its wording (the plugin's, from the seeds) and tally, then its findings."""
    by_target: dict[str, list[ComplianceItem]] = {}
    for i in report.items:
        by_target.setdefault(i.target_key, []).append(i)
    for items in by_target.values():
        c = Counter(i.status for i in items)
        first = items[0]
        source = f"，{first.provenance}" if first.provenance else ""
        print(
            f"【{first.target}】（{first.target_key}{source}）达标 {c[Compliance.MET]} 项，"
            f"未达标 {c[Compliance.SHORT]} 项，进行中 {c[Compliance.DUE]} 项"
        )
        for i in sorted(items, key=lambda i: ORDER[i.status]):
            if not shortfalls_only or i.status is not Compliance.MET:
                print(f"  [{COMPLIANCE_LABELS[i.status]}] {i.reason}")


def _state(value: int) -> VisitState:
    return VisitState(wire.enum_short(pb.VisitState, value, "VISIT_STATE_"))


def _caller(args: argparse.Namespace, rpc: str) -> Caller:
    """The token's caller, holding the permission ``rpc`` declares (as the gRPC interceptor checks it)."""
    token = (args.token or os.environ.get("JSX_TOKEN", "")).strip()
    if not token:
        raise Unauthenticated(
            "缺少访问令牌：请用 --token 或环境变量 JSX_TOKEN 提供（由 jsx token issue 签发）", reason="MISSING_TOKEN"
        )
    caller = verify_token(ServiceConfig.from_env("events").auth_secret, token)
    permission = method_permission(f"/{SERVICE_NAME}/{rpc}")
    assert permission is not None, rpc  # every EventsService RPC declares one
    caller.require(permission)
    return caller


def _date_pb(text: str, field: str, errs: ErrorCollector) -> cpb.Date:
    try:
        d = date.fromisoformat(text.strip())
    except ValueError:
        errs.add(field, f"日期“{text}”格式不对，应写成 年-月-日，例如 2022-09-10")
        return cpb.Date()
    return wire.date_to(d) or cpb.Date()


def _money_pb(text: str, field: str, errs: ErrorCollector) -> cpb.Money:
    try:
        return wire.money_to(Money.yuan(text, field=field))
    except InvalidArgument as e:
        for v in e.violations:
            errs.add(v.field, v.description)
        return cpb.Money()


async def _record(args: argparse.Namespace) -> int:
    caller = _caller(args, "RecordVisit")
    errs = ErrorCollector()
    msg = pb.Visit(
        household=args.household,
        region=cpb.RegionCode(code=args.region),
        visitor=args.visitor,
        visit_date=_date_pb(args.date, "visit.visit_date", errs),
        money=_money_pb(args.money, "visit.money", errs),
        fund=args.fund,
        site=args.site,
        occasion=args.occasion,
        notes=args.notes,
    )
    errs.raise_if_any("走访慰问信息有误，请按字段说明修改后重试")
    visit = visit_from_pb(msg)  # the names, region and date as RecordVisit reads them
    v = await _with_service(lambda svc: svc.visits.record_visit(visit, caller=caller))
    print(
        f"已登记走访 {v.name}：慰问金 {Money(v.money.fen).format_yuan()} 元，状态 {VISIT_STATE_LABELS[_state(v.state)]}"
    )
    return 0


async def _list(args: argparse.Namespace) -> int:
    region = RegionCode.parse(args.region)

    async def run(svc: EventsService) -> list[pb.Visit]:
        out: list[pb.Visit] = []
        token = ""
        while len(out) < args.limit:
            page = await svc.visits.list_visits(
                VisitFilter(region), page_size=args.limit - len(out), page_token=token, caller=OPERATOR
            )
            out += page.visits
            token = page.next_page_token
            if not token:
                break
        return out

    for v in await _with_service(run):
        state = _state(v.state)
        extra = f"（{v.rejection_message}）" if state is VisitState.REJECTED else ""
        print(
            f"{v.visit_date.year:04d}-{v.visit_date.month:02d}-{v.visit_date.day:02d}  {v.name}  {v.household}  "
            f"{Money(v.money.fen).format_yuan()} 元  {VISIT_STATE_LABELS[state]}{extra}"
        )
    return 0


async def _report(args: argparse.Namespace) -> int:
    region, period = RegionCode.parse(args.region), Period.parse(args.period)

    async def run(svc: EventsService) -> tuple[ComplianceReport, pb.Summary]:
        return (
            await svc.reporting.compliance(region, period, caller=OPERATOR),
            await svc.reporting.summary(region, period, caller=OPERATOR),
        )

    report, summary = await _with_service(run)
    print_compliance(report, args.shortfalls_only)
    c = report.counts()
    print(f"合计：达标 {c['MET']} 项，未达标 {c['SHORT']} 项，进行中 {c['DUE']} 项")
    print(summary.text)
    if args.xlsx:
        export_xlsx(report, Path(args.xlsx))
        print(f"已导出 {args.xlsx}")
    return 0


# ---------------------------------------------------------------- plans (年度计划)
#
# The arguments are turned into the wire messages and through the same
# conversions as CreatePlan/GetPlan/ListPlans, so a mistake gets the words
# (and field names) a gRPC caller would get.


def _item_pb(
    errs: ErrorCollector,
    spec: str | None = None,
    *,
    type_: str = "",
    count: str = "1",
    month: str = "0",
    note: str = "",
    field: str = "items[0]",
) -> pb.PlanItem:
    """``健康大讲堂:2:6:说明`` (type[:count[:month[:note]]]) or the separate values → a wire PlanItem;
    what cannot be read goes to ``errs`` (the caller raises once for every item)."""
    if spec is not None:
        parts = spec.replace("：", ":").split(":", 3)
        type_ = parts[0]
        count = parts[1] if len(parts) > 1 and parts[1].strip() else "1"
        month = parts[2] if len(parts) > 2 and parts[2].strip() else "0"
        note = parts[3] if len(parts) > 3 else ""
    if not type_.strip():
        errs.add(f"{field}.type", "请填写计划项目的活动类型")
    n = _int(count, f"{field}.count", "计划次数须为正整数", errs)
    m = _int(month, f"{field}.month", "计划月份应为1–12（0表示全年任意时间）", errs)
    t, custom = type_pb(normalize_type(type_))
    return pb.PlanItem(type=t, custom_type=custom, count=n, month=m, note=note.strip())


def _int(text: str, field: str, message: str, errs: ErrorCollector) -> int:
    try:
        return int(text.strip().removesuffix("次").removesuffix("月"))
    except ValueError:
        errs.add(field, f"{message}（收到“{text}”）")
        return 0


def _item_lines(item: pb.PlanItem, labels: dict[str, str], late: tuple[str, ...] = ()) -> list[str]:
    code = type_code(item.type, item.custom_type)
    what = "任意活动" if code == "ANY" else type_label(code, labels)
    title = f"{item.note}（{what}）" if item.note and item.note != what else what
    when = f"{item.month}月底前" if item.month else "年内"
    mark = "已完成" if item.fulfilled else "未完成"
    out = [
        f"  [{mark}] {title}：计划 {item.count} 次，已开展 {item.held_count} 次，"
        f"待开展 {item.scheduled_count} 次，{when}  {item.name}"
    ]
    out += [f"      {a}" for a in item.fulfilled_by]
    out += [f"      {a}（在期限后开展，不计入）" for a in late]
    return out


def _region_text(code: str) -> str:
    r = RegionCode(code)
    return f"{r.name}（{r.code}）" if r.name else r.code


def _plan_head(plan: pb.Plan) -> str:
    region = _region_text(plan.region.code)
    where = f"阵地 {plan.site}（{region}）" if plan.site else region
    done = sum(1 for i in plan.items if i.fulfilled)
    title = f"  {plan.display_name}" if plan.display_name else ""
    return f"{plan.year}年  {plan.name}  {where}{title}  已完成 {done}/{len(plan.items)} 项"


def _print_plan(plan: pb.Plan, labels: dict[str, str], late: dict[str, tuple[str, ...]] | None = None) -> None:
    print(_plan_head(plan))
    for item in plan.items:
        for line in _item_lines(item, labels, (late or {}).get(item.name, ())):
            print(line)


def _site(text: str) -> str:
    return wire.id_from(text, "sites", "site", required=False)


async def _plan_create(args: argparse.Namespace) -> int:
    errs = ErrorCollector()
    msg = pb.Plan(
        display_name=args.title,
        region=cpb.RegionCode(code=args.region),
        site=wire.name_to("sites", _site(args.site)),
        year=args.year,
        items=[_item_pb(errs, spec, field=f"items[{n}]") for n, spec in enumerate(args.item)],
    )
    errs.raise_if_any("年度计划有误，请按字段说明修改后重试")
    plan = plan_from_pb(msg)

    async def run(svc: EventsService) -> tuple[pb.Plan, dict[str, str]]:
        return await svc.plans.create_plan(plan, caller=OPERATOR), await svc.catalog.activity_types(plan.region)

    created, labels = await _with_service(run)
    print(f"已登记年度计划 {created.name}，共 {len(created.items)} 项：")
    _print_plan(created, labels)
    return 0


async def _plan_add_item(args: argparse.Namespace) -> int:
    plan_id = wire.id_from(args.plan, "plans", "plan", required=False)
    errs = ErrorCollector()
    msg = _item_pb(errs, type_=args.type, count=args.count, month=args.month, note=args.note, field="plan_item")
    errs.raise_if_any("计划项有误，请按字段说明修改后重试")
    item = plan_item_from_pb(msg)

    async def run(svc: EventsService) -> tuple[pb.PlanItem, pb.Plan, dict[str, str]]:
        added = await svc.plans.add_plan_item(plan_id, item, caller=OPERATOR)
        whole = await svc.reporting.get_plan(plan_id, caller=OPERATOR)
        return added, whole, await svc.catalog.activity_types(RegionCode(whole.region.code))

    added, plan, labels = await _with_service(run)
    print(f"已在 {plan.name} 增加计划项 {added.name}")
    _print_plan(plan, labels)
    return 0


async def _plan_list(args: argparse.Namespace) -> int:
    region = RegionCode.parse(args.region, field="region")

    async def run(svc: EventsService) -> tuple[list[pb.Plan], dict[str, str]]:
        plans: list[pb.Plan] = []
        token = ""
        while True:
            page = await svc.reporting.list_plans(
                region, args.year, _site(args.site), page_token=token, caller=OPERATOR
            )
            plans += page.plans
            token = page.next_page_token
            if not token:
                return plans, await svc.catalog.activity_types(region)

    plans, labels = await _with_service(run)
    if not plans:
        print(f"{_region_text(region.code)} 没有{f'{args.year}年的' if args.year else ''}年度计划")
        return 0
    for plan in plans:
        print(_plan_head(plan))
        if args.items:
            for item in plan.items:
                for line in _item_lines(item, labels):
                    print(line)
    return 0


async def _plan_show(args: argparse.Namespace) -> int:
    plan_id = wire.id_from(args.plan, "plans", "plan", required=False)

    async def run(svc: EventsService) -> tuple[pb.Plan, dict[str, str], dict[str, tuple[str, ...]]]:
        plan = await svc.reporting.get_plan(plan_id, caller=OPERATOR)
        late = await svc.reporting.late_activities(plan_id, caller=OPERATOR)
        return plan, await svc.catalog.activity_types(RegionCode(plan.region.code)), late

    plan, labels, late = await _with_service(run)
    _print_plan(plan, labels, late)
    return 0


def _guard(fn: Callable[[argparse.Namespace], Awaitable[int]]) -> Callable[[argparse.Namespace], Awaitable[int]]:
    async def run(args: argparse.Namespace) -> int:
        try:
            return await fn(args)
        except DomainError as e:
            print(f"错误：{e.message}")
            for v in e.violations:
                print(f"  {v.field}：{v.description}")
            return 1

    return run


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("events", help="活动、走访慰问、频次达标报告")
    es = p.add_subparsers(dest="events_command", metavar="COMMAND", required=True)
    r = es.add_parser("record", help="登记一次走访慰问（需访问令牌，同 RecordVisit 的权限和辖区）")
    r.add_argument("--household", required=True, help="家庭户，如 households/xxxx（成员服务列出的名称）")
    r.add_argument("--region", required=True, help="户所在村（12位区划代码），须与成员服务登记的一致")
    r.add_argument("--visitor", required=True, help="走访人，如 volunteers/v1（志愿者）或 persons/p1（工作人员）")
    r.add_argument("--date", required=True, help="走访日期 YYYY-MM-DD")
    r.add_argument("--money", default="0", help="慰问金（元），如 500 或 500.00")
    r.add_argument("--fund", default="", help="列支资金，如 funds/12（有慰问金时必填）")
    r.add_argument("--site", default="", help="计入哪个阵地，如 sites/warm-1（暖心家园）")
    r.add_argument("--token", default="", help="访问令牌（默认取环境变量 JSX_TOKEN，由 jsx token issue 签发）")
    r.add_argument("--occasion", default="", help="时节，如 春节、中秋")
    r.add_argument("--notes", default="", help="走访情况")
    r.set_defaults(func=_guard(_record))
    li = es.add_parser("list", help="列出走访记录")
    li.add_argument("--region", required=True)
    li.add_argument("--limit", type=int, default=100)
    li.set_defaults(func=_guard(_list))
    rp = es.add_parser("report", help="活动频次达标报告与工作总结数字")
    rp.add_argument("--region", required=True)
    rp.add_argument("--period", required=True, help="2022、2022Q3 或 2022-08")
    rp.add_argument("--shortfalls-only", action="store_true")
    rp.add_argument("--xlsx", default="", help="导出 Excel 文件路径")
    rp.set_defaults(func=_guard(_report))

    pl = es.add_parser("plan", help="年度计划：登记、增加计划项、查看完成情况")
    ps = pl.add_subparsers(dest="plan_command", metavar="COMMAND", required=True)
    pc = ps.add_parser("create", help="登记年度计划（每个协会或阵地每年一份）")
    pc.add_argument("--region", required=True, help="计划所属协会的区划代码（阵地计划填阵地所在村）")
    pc.add_argument("--year", type=int, required=True, help="计划年度，如 2022")
    pc.add_argument("--site", default="", help="阵地计划：阵地编号，如 sites/warm-1（协会计划不填）")
    pc.add_argument("--title", default="", help="计划名称，如 2022年岩门村暖心家园工作计划")
    pc.add_argument(
        "--item",
        action="append",
        default=[],
        metavar="类型[:次数[:月份[:说明]]]",
        help="计划项，可重复，如 健康大讲堂:2:6:健康人生大讲堂（月份 0 或不填表示年内任意时间）",
    )
    pc.set_defaults(func=_guard(_plan_create))
    pa = ps.add_parser("add-item", help="给已登记的年度计划增加一项")
    pa.add_argument("plan", help="计划，如 plans/xxxx")
    pa.add_argument("--type", required=True, help="活动类型，如 健康大讲堂、义诊、ANY（任意活动）")
    pa.add_argument("--count", default="1", help="计划次数（默认 1）")
    pa.add_argument("--month", default="0", help="计划完成月份 1–12（0 表示年内任意时间）")
    pa.add_argument("--note", default="", help="说明，如 健康人生大讲堂")
    pa.set_defaults(func=_guard(_plan_add_item))
    pli = ps.add_parser("list", help="列出年度计划及完成项数")
    pli.add_argument("--region", required=True)
    pli.add_argument("--year", type=int, default=0)
    pli.add_argument("--site", default="", help="只看某个阵地的计划")
    pli.add_argument("--items", action="store_true", help="同时列出每个计划项")
    pli.set_defaults(func=_guard(_plan_list))
    psh = ps.add_parser("show", help="查看一个年度计划：每项计划次数、已开展、待开展及对应活动")
    psh.add_argument("plan", help="计划，如 plans/xxxx")
    psh.set_defaults(func=_guard(_plan_show))
