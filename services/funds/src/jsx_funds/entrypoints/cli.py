"""``jsx funds …`` commands (registered through the ``jsx.cli`` entry point).

* ``jsx funds verify`` — prove the ledger's invariants (see
  :func:`jsx_funds.ledger.verify.verify`); exit 1 with a readable report if any fails.
* ``jsx funds serve`` — run the service (same as ``python -m jsx_funds``).
* ``jsx funds migrate`` — bring the database schema up to date.
* ``jsx funds payment-file BATCH --xlsx FILE / --csv FILE`` — the batch's
  bank file in the county finance bureau layout (姓名, 一卡通卡号, 金额 …),
  payee details read from the members service (``--members-addr`` /
  ``JSX_MEMBERS_ADDR``) with the operator's own ``JSX_TOKEN`` (it must hold
  ``members.payees.read``: a finance officer's); nothing is stored.
  ``--out FILE`` writes the internal id-only list (no personal data).
* ``jsx funds bank-results FILE [--batch paymentBatches/3]`` — import the
  bank's results (CSV or xlsx: 业务参考号, 状态 成功/失败, 失败原因 …); the
  batch defaults to the one the references name. Prints the reconciliation;
  a refused file prints every problem by file row and exits 2.
* ``jsx funds report [--program programs/3 …] [--region R] [--year Y]
  [--xlsx FILE]`` — 项目报表 (资金总额, paid, households and people helped)
  for the given programs, or every program of that year in the region.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from jsx_funds.adapters.db import migrate
from jsx_funds.ledger.verify import verify
from jsxcore.config import ServiceConfig
from jsxcore.db import create_engine, session_factory


def _url(args: argparse.Namespace) -> str:
    return args.database_url or ServiceConfig.from_env("funds").database_url


async def _verify(args: argparse.Namespace) -> int:
    engine = create_engine(_url(args))
    try:
        async with session_factory(engine)() as session:
            problems = await verify(session)
    finally:
        await engine.dispose()
    if not problems:
        print(
            "账目核验通过：每笔凭证借贷平衡，每个基金借贷相等，每笔支付、捐赠均有对应分录，无负数账户，收据编号连续。"
        )
        return 0
    print(f"账目核验失败，发现 {len(problems)} 处问题：", file=sys.stderr)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    return 1


def _disbursement(engine: Any, members: Any = None) -> Any:
    """The disbursement context as the server composes it, over the CLI's own database connection."""
    from jsx_funds.entrypoints.grpc import compose
    from jsxcore.plugins import PluginHost

    return compose(session_factory(engine), PluginHost(), members=members).disbursement


def _batch_id(name: str, field: str = "batch") -> int:
    from jsxcore import wire

    return wire.int_id_from(name, "paymentBatches", field)


async def _payment_file(args: argparse.Namespace) -> int:
    import io
    import os

    from jsx_funds.adapters.members import MembersClient
    from jsx_funds.disbursement.payment_file import amount_text
    from jsxcore.errors import ConfigError, DomainError

    args.batch = args.batch or args.batch_opt
    if not args.batch:
        print("错误：请指定支付批次，例如 paymentBatches/3", file=sys.stderr)
        return 2
    batch_id = _batch_id(args.batch)
    if args.xlsx or args.csv:
        token = os.environ.get("JSX_TOKEN", "").strip()
        addr = args.members_addr or os.environ.get("JSX_MEMBERS_ADDR", "").strip()
        if not token or not addr:
            print(
                "错误：导出银行支付文件需要成员服务地址（--members-addr 或 JSX_MEMBERS_ADDR）和您的访问令牌（JSX_TOKEN，"
                "需具备 members.payees.read 权限，如财务人员）",
                file=sys.stderr,
            )
            return 2
        engine = create_engine(_url(args))
        members = MembersClient(addr, "")
        paths = [(p, fmt_csv) for p, fmt_csv in ((args.xlsx, False), (args.csv, True)) if p]
        bufs = [io.BytesIO() for _ in paths]
        try:
            # Direct database access like the other commands; members checks the token's permission and region.
            written = await _disbursement(engine, members).write_bank_files(
                batch_id, [(fmt_csv, buf) for (_, fmt_csv), buf in zip(paths, bufs, strict=True)], token=token
            )
        except (DomainError, ConfigError) as e:
            print(f"错误：{e}", file=sys.stderr)
            return 1
        finally:
            await members.close()
            await engine.dispose()
        for (path, _), buf, meta in zip(paths, bufs, written, strict=True):
            await asyncio.to_thread(Path(path).write_bytes, buf.getvalue())
            print(f"支付文件已写入 {path}：{meta.payment_count} 笔，合计 {amount_text(meta.total)} 元")
        return 0

    engine = create_engine(_url(args))
    try:
        # streamed: a province-wide batch of a million lines never sits in memory
        if args.out:
            # a local file the command streams into while the batch is read: the CLI's own event loop, nothing else waits
            with open(args.out, "w", encoding="utf-8", newline="") as f:  # noqa: ASYNC230
                await _disbursement(engine).write_id_list(batch_id, f)
            print(f"支付文件已写入 {args.out}")
        else:
            await _disbursement(engine).write_id_list(batch_id, sys.stdout)
    finally:
        await engine.dispose()
    return 0


async def _bank_results(args: argparse.Namespace) -> int:
    import re

    from jsx_funds.disbursement.bank_file import read_bank_file
    from jsxcore.errors import InvalidArgument

    try:
        lines = read_bank_file(args.file)
        batch = args.batch or next(
            (m.group(0) for ln in lines if (m := re.match(r"paymentBatches/[0-9]+", ln.result.payment))), ""
        )
        if not batch:
            raise InvalidArgument.field(
                "batch", "文件中没有可识别的业务参考号，请用 --batch 指定批次", reason="MISSING_BATCH"
            )
        batch_id = _batch_id(batch)
    except InvalidArgument as e:
        return _print_violations(e, {})
    engine = create_engine(_url(args))
    try:
        svc = _disbursement(engine)
        try:
            # A fresh file each run: no request id to replay (a repeated line changes nothing anyway).
            res = await svc.import_bank_results(batch_id, [ln.result for ln in lines], caller=None, idem=None)
        except InvalidArgument as e:
            return _print_violations(e, {i: ln.row for i, ln in enumerate(lines)})
        rec = await svc.get_reconciliation(batch_id, caller=None)
    finally:
        await engine.dispose()
    print(f"回盘已导入 {batch}：本次成功 {res.paid_count} 笔，失败 {res.failed_count} 笔（已登记的结果不重复处理）")
    print(rec.summary)
    for p in rec.failed_payments:
        print(f"  失败 {p.name} {p.payee} {p.amount.fen / 100:.2f} 元：{p.failure_reason}")
    for problem in rec.discrepancies:
        print(f"  对账不符：{problem}", file=sys.stderr)
    return 0 if rec.balanced else 1


def _print_violations(e: Exception, rows: dict[int, int]) -> int:
    """Print a refused file's problems, naming the file row of each result where known."""
    import re

    print(f"回盘文件未导入（全部不处理）：{getattr(e, 'message', e)}", file=sys.stderr)
    for v in getattr(e, "violations", []):
        m = re.match(r"results\[([0-9]+)\]", v.field)
        where = f"文件第 {rows[int(m.group(1))]} 行 " if m and int(m.group(1)) in rows else ""
        print(f"  - {where}{v.description}", file=sys.stderr)
    return 2


async def _report(args: argparse.Namespace) -> int:
    from jsx_funds.entrypoints.grpc import compose
    from jsx_funds.reporting.wire import reports_xlsx
    from jsxcore import wire
    from jsxcore.errors import DomainError
    from jsxcore.plugins import PluginHost
    from jsxcore.values import Period

    engine = create_engine(_url(args))
    try:
        reporting = compose(session_factory(engine), PluginHost()).reporting
        out = await reporting.program_reports(
            program_ids=[wire.int_id_from(p, "programs", "program") for p in args.program or ()],
            region=wire.region_from(args.region, "region", required=False) if args.region else None,
            year=Period.parse(args.year, field="year").start.year if args.year else None,
            caller=None,
        )
    except DomainError as e:
        print(e.message, file=sys.stderr)
        return 2
    finally:
        await engine.dispose()
    if not out:
        print("没有符合条件的项目", file=sys.stderr)
        return 1
    for name, r in out:
        print(
            f"{name}（{r.program}，{r.region.code}，{r.period.code or '全部期间'}）：{r.summary}；"
            f"已支付 {r.amount_paid.fen / 100:,.2f} 元"
        )
    if args.xlsx:
        reports_xlsx(out, args.xlsx)
        print(f"报表已写入 {args.xlsx}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from jsx_funds.entrypoints.grpc import main

    main()
    return 0


def _migrate(args: argparse.Namespace) -> int:
    migrate(_url(args))
    print("数据库结构已是最新")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``jsx funds`` and its sub-commands."""
    funds = sub.add_parser("funds", help="资金服务：基金、账目、捐赠")
    cmds = funds.add_subparsers(dest="funds_command", metavar="COMMAND", required=True)
    for name, func, help_ in (
        ("verify", _verify, "核验账目：借贷平衡、支付有分录、无负数账户、收据连续"),
        ("migrate", _migrate, "升级数据库结构"),
        ("serve", _serve, "运行资金服务（gRPC）"),
        ("payment-file", _payment_file, "导出支付批次的银行支付文件（xlsx/CSV，含收款人姓名和一卡通账号）"),
        ("bank-results", _bank_results, "导入银行回盘结果（CSV/xlsx：成功/失败），失败款项退回基金，并显示对账"),
        ("report", _report, "项目报表：资金总额、已支付、惠及户数和人数（可导出 xlsx）"),
    ):
        p = cmds.add_parser(name, help=help_)
        if name == "payment-file":
            p.add_argument("batch", nargs="?", help="支付批次，例如 paymentBatches/3 或 3")
            p.add_argument("--batch", dest="batch_opt", help="同上（也可用位置参数）")
            p.add_argument("--xlsx", help="银行支付文件（xlsx）输出路径")
            p.add_argument("--csv", help="银行支付文件（CSV，UTF-8 带 BOM）输出路径")
            p.add_argument("--members-addr", help="成员服务地址；默认取 JSX_MEMBERS_ADDR")
            p.add_argument("--out", help="内部核对清单（仅编号，无个人信息）；默认打印到屏幕")
        if name == "bank-results":
            p.add_argument("file", help="银行回盘文件（.csv 或 .xlsx）")
            p.add_argument("--batch", help="支付批次；默认取文件中业务参考号所属批次")
        if name == "report":
            p.add_argument(
                "--program", action="append", help="项目，例如 programs/3；可写多次；默认该地区该年度全部项目"
            )
            p.add_argument("--region", help="地区代码，例如 431281；默认项目主办地区")
            p.add_argument("--year", help="年度，例如 2022；默认全部期间")
            p.add_argument("--xlsx", help="导出 xlsx 文件")
        if name != "serve":
            p.add_argument("--database-url", help="数据库地址；默认取 JSX_FUNDS_DATABASE_URL / JSX_DATABASE_URL")
        p.set_defaults(func=func)
