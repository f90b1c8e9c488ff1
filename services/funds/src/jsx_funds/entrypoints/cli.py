"""``jsx funds …`` commands (registered through the ``jsx.cli`` entry point).

* ``jsx funds verify`` — prove the ledger's invariants (see
  :func:`jsx_funds.service.verify`); exit 1 with a readable report if any fails.
* ``jsx funds serve`` — run the service (same as ``python -m jsx_funds``).
* ``jsx funds migrate`` — bring the database schema up to date.
* ``jsx funds payment-file BATCH [--out FILE]`` — write a payment batch's
  bank file (CSV, UTF-8 with BOM).
"""
from __future__ import annotations

import argparse
import asyncio
import sys

from jsxcore.config import ServiceConfig
from jsxcore.db import create_engine, session_factory

from jsx_funds.adapters.db import migrate
from jsx_funds.service import verify


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
        print("账目核验通过：每笔凭证借贷平衡，每个基金借贷相等，每笔支付、捐赠均有对应分录，无负数账户，收据编号连续。")
        return 0
    print(f"账目核验失败，发现 {len(problems)} 处问题：", file=sys.stderr)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    return 1


async def _payment_file(args: argparse.Namespace) -> int:
    from jsxcore.plugins import PluginHost

    from jsx_funds.batches import BatchesService
    from jsx_funds.service import parse_id

    engine = create_engine(_url(args))
    try:
        text = await BatchesService(session_factory(engine), PluginHost()).payment_file_csv(
            parse_id(args.batch, "paymentBatches", "batch"))
    finally:
        await engine.dispose()
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        print(f"支付文件已写入 {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from jsx_funds.entrypoints.grpc import main

    main()
    return 0


def _migrate(args: argparse.Namespace) -> int:
    migrate(_url(args))
    print("数据库结构已是最新")
    return 0


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``jsx funds`` and its sub-commands."""
    funds = sub.add_parser("funds", help="资金服务：基金、账目、捐赠")
    cmds = funds.add_subparsers(dest="funds_command", metavar="COMMAND", required=True)
    for name, func, help_ in (
        ("verify", _verify, "核验账目：借贷平衡、支付有分录、无负数账户、收据连续"),
        ("migrate", _migrate, "升级数据库结构"),
        ("serve", _serve, "运行资金服务（gRPC）"),
        ("payment-file", _payment_file, "导出支付批次的银行支付文件（CSV）"),
    ):
        p = cmds.add_parser(name, help=help_)
        if name == "payment-file":
            p.add_argument("batch", help="支付批次，例如 paymentBatches/3 或 3")
            p.add_argument("--out", help="输出文件；默认打印到屏幕")
        if name != "serve":
            p.add_argument("--database-url", help="数据库地址；默认取 JSX_FUNDS_DATABASE_URL / JSX_DATABASE_URL")
        p.set_defaults(func=func)
