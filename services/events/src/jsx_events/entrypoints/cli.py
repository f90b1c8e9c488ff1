"""``jsx events …``: record a visit, list visits/activities, compliance report (screen or xlsx).

Works on the events database named by ``JSX_EVENTS_DATABASE_URL`` (same
configuration as the service); the outbox row for 慰问金 is written in the
same transaction, and the running service's relay publishes it.
"""
from __future__ import annotations

import argparse
import asyncio
from datetime import date
from pathlib import Path

from jsxcore.config import ServiceConfig
from jsxcore.db import create_engine, session_factory
from jsxcore.errors import DomainError
from jsxcore.plugins import PluginHost
from jsxcore.values import Money, Period, RegionCode

from jsx_events import domain as d
from jsx_events.adapters.db import migrate
from jsx_events.service import EventsService, new_id


async def _with_service(fn):  # type: ignore[no-untyped-def]
    config = ServiceConfig.from_env("events")
    await asyncio.to_thread(migrate, config.database_url)
    engine = create_engine(config.database_url)
    try:
        return await fn(EventsService(session_factory(engine), PluginHost.from_config(config)))
    finally:
        await engine.dispose()


def export_xlsx(report: d.ComplianceReport, path: Path) -> None:
    """One sheet, one row per finding, shortfalls first."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill

    wb = Workbook()
    ws = wb.active
    ws.title = "活动频次达标情况"
    ws.append([f"{report.region.name or report.region.short} {d.period_label(report.period)} 活动频次达标情况"])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append(["结果", "考核对象", "周期", "要求次数", "实际次数", "目标", "说明", "规则来源"])
    order = {d.Compliance.SHORT: 0, d.Compliance.DUE: 1, d.Compliance.MET: 2}
    red = PatternFill("solid", fgColor="FFC7CE")
    for i in sorted(report.items, key=lambda i: order[i.status]):
        ws.append([d.COMPLIANCE_LABELS[i.status], i.subject_name, i.window, i.required, i.actual, i.target, i.reason,
                   i.provenance])
        if i.status is d.Compliance.SHORT:
            ws.cell(ws.max_row, 1).fill = red
    for col, width in zip("ABCDEFGH", (8, 24, 22, 10, 10, 28, 60, 24)):
        ws.column_dimensions[col].width = width
    wb.save(path)


async def _record(args: argparse.Namespace) -> int:
    fields = dict(id=new_id(), household_id=args.household, region=RegionCode.parse(args.region), visitor_id=args.visitor,
                  visited_on=date.fromisoformat(args.date), notes=args.notes, amount=Money.yuan(args.money),
                  fund_id=args.fund, site_id=args.site, occasion=args.occasion)
    v = await _with_service(lambda svc: svc.record_visit(fields))
    print(f"已登记走访 {v.name}：慰问金 {Money(v.money.fen).format_yuan()} 元，状态 {d.VISIT_STATE_LABELS[d.VisitState(bus_state(v.state))]}")
    return 0


def bus_state(value: int) -> str:
    from jsx.events.v1 import events_service_pb2 as pb

    return pb.VisitState.Name(value).removeprefix("VISIT_STATE_")


async def _list(args: argparse.Namespace) -> int:
    region = RegionCode.parse(args.region)
    visits = await _with_service(lambda svc: svc.list_visits(region, limit=args.limit))
    for v in visits:
        state = d.VisitState(bus_state(v.state))
        extra = f"（{v.rejection_message}）" if state is d.VisitState.REJECTED else ""
        print(f"{v.visit_date.year:04d}-{v.visit_date.month:02d}-{v.visit_date.day:02d}  {v.name}  {v.household}  "
              f"{Money(v.money.fen).format_yuan()} 元  {d.VISIT_STATE_LABELS[state]}{extra}")
    return 0


async def _report(args: argparse.Namespace) -> int:
    region, period = RegionCode.parse(args.region), Period.parse(args.period)

    async def run(svc: EventsService):  # type: ignore[no-untyped-def]
        return await svc.compliance(region, period), await svc.summary(region, period)

    report, summary = await _with_service(run)
    for i in report.items:
        if not args.shortfalls_only or i.status is not d.Compliance.MET:
            print(f"[{d.COMPLIANCE_LABELS[i.status]}] {i.reason}")
    c = report.counts()
    print(f"合计：达标 {c['MET']} 项，未达标 {c['SHORT']} 项，进行中 {c['DUE']} 项")
    print(summary.text)
    if args.xlsx:
        export_xlsx(report, Path(args.xlsx))
        print(f"已导出 {args.xlsx}")
    return 0


def _guard(fn):  # type: ignore[no-untyped-def]
    async def run(args: argparse.Namespace) -> int:
        try:
            return await fn(args)
        except DomainError as e:
            print(f"错误：{e.message}")
            for v in e.violations:
                print(f"  {v.field}：{v.description}")
            return 1
    return run


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("events", help="活动、走访慰问、频次达标报告")
    es = p.add_subparsers(dest="events_command", metavar="COMMAND", required=True)
    r = es.add_parser("record", help="登记一次走访慰问")
    r.add_argument("--household", required=True, help="户编号")
    r.add_argument("--region", required=True, help="户所在村（12位区划代码）")
    r.add_argument("--visitor", required=True, help="走访人，如 volunteers/v1")
    r.add_argument("--date", required=True, help="走访日期 YYYY-MM-DD")
    r.add_argument("--money", default="0", help="慰问金（元），如 500 或 500.00")
    r.add_argument("--fund", default="", help="列支资金编号（有慰问金时必填）")
    r.add_argument("--site", default="", help="计入哪个阵地（如暖心家园）")
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
