"""``jsx members …`` — the clerk's and operator's command line.

Two ways in, chosen per command:

* ``import``, ``export`` and ``template`` work on the members database
  directly (same config as the service: ``JSX_MEMBERS_DATABASE_URL`` and the
  PII keys). A 100k-row roster is one local transaction instead of 100k RPCs;
  events go to the outbox and the running service's relay publishes them.
  The caller is still checked: a token (``--token`` or ``JSX_TOKEN``, from
  ``jsx token issue``) is verified with the service's secret and its roles and
  region scope apply exactly as over gRPC.
* ``lookup`` and ``list`` are gRPC clients of a running service
  (``--addr`` or ``JSX_MEMBERS_ADDR``), like any integrating system.
* ``serve`` runs the service itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from jsxcore.errors import DomainError


def _token(args: argparse.Namespace) -> str:
    token = args.token or os.environ.get("JSX_TOKEN", "")
    if not token:
        raise SystemExit("缺少访问令牌：请用 --token 或环境变量 JSX_TOKEN 提供（由 jsx token issue 签发）")
    return token


def _print_error(e: DomainError) -> int:
    print(f"错误：{e.message}", file=sys.stderr)
    for v in e.violations:
        print(f"  - {v.field}：{v.description}", file=sys.stderr)
    return 1


async def _with_db(args: argparse.Namespace, work: Any) -> int:
    """Run ``work(service, caller)`` against the database as the token's caller."""
    from jsx_members.migrations import migrate
    from jsx_members.service import MembersService
    from jsxcore.auth import verify_token
    from jsxcore.config import ServiceConfig
    from jsxcore.db import create_engine, session_factory

    config = ServiceConfig.from_env("members")
    caller = verify_token(config.auth_secret, _token(args))
    await asyncio.to_thread(migrate, config.database_url)
    engine = create_engine(config.database_url)
    svc = MembersService(session_factory(engine), config.field_cipher(), config.blind_index())
    try:
        return int(await work(svc, caller))
    except DomainError as e:
        return _print_error(e)
    finally:
        await engine.dispose()


def _cmd_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from jsx_members.adapters import roster

    async def work(svc: Any, caller: Any) -> int:
        headers, rows, total = roster.read_rows(args.file)
        with tqdm(total=total or None, unit="行", desc="校验", file=sys.stderr, disable=args.quiet) as bar:
            report = await svc.roster.import_rows(rows, caller=caller, progress=bar.update)
        if not report.ok:
            out = Path(args.errors or Path(args.file).with_name(Path(args.file).stem + "_错误.xlsx"))
            roster.write_rows(out, headers, report.error_rows(), error_column=True)
            print(
                f"共 {len(report.rows)} 行，其中 {len(report.errors)} 行有误，未导入任何数据。"
                f"请按“错误说明”列修改后重新导入：{out}",
                file=sys.stderr,
            )
            return 1
        print(
            f"导入完成：共 {len(report.rows)} 行；新登记人员 {report.persons_created}，"
            f"新建家庭户 {report.households_created}，新增户成员 {report.members_added}，"
            f"记录家庭类型 {report.situations_recorded}，已登记未变 {report.unchanged}"
        )
        return 0

    return asyncio.run(_with_db(args, work))


def _cmd_export(args: argparse.Namespace) -> int:
    from jsx_members.adapters import roster
    from jsxcore.values import RegionCode

    async def work(svc: Any, caller: Any) -> int:
        rows = await svc.roster.export_rows(RegionCode.parse(args.region, field="region"), caller=caller)
        n = roster.write_rows(args.out, roster.HEADERS, rows)
        print(f"已导出 {n} 人：{args.out}")
        return 0

    return asyncio.run(_with_db(args, work))


def _cmd_template(args: argparse.Namespace) -> int:
    from jsx_members.adapters import roster

    roster.write_template(args.out)
    print(f"已生成花名册模板：{args.out}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from jsx_members.entrypoints.grpc import main

    main()
    return 0


async def _rpc(args: argparse.Namespace, call: Any) -> int:
    import grpc
    from google.protobuf.json_format import MessageToJson

    from jsx.members.v1 import members_pb2_grpc
    from jsxcore.runtime import error_details

    addr = args.addr or os.environ.get("JSX_MEMBERS_ADDR") or "127.0.0.1:50051"
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = members_pb2_grpc.MembersServiceStub(channel)
        md = (("authorization", f"Bearer {_token(args)}"),)
        try:
            for msg in await call(stub, md):
                print(MessageToJson(msg, ensure_ascii=False, indent=None))
        except grpc.aio.AioRpcError as e:
            print(f"错误（{e.code().name}）：{e.details()}", file=sys.stderr)
            _, bad, _ = error_details(e)
            for v in bad.field_violations if bad else ():
                print(f"  - {v.field}：{v.description}", file=sys.stderr)
            return 1
    return 0


def _cmd_lookup(args: argparse.Namespace) -> int:
    from jsx.members.v1 import members_pb2 as pb

    async def call(stub: Any, md: Any) -> list[Any]:
        view = pb.PERSON_VIEW_FULL if args.full else pb.PERSON_VIEW_MASKED
        return [await stub.LookupPerson(pb.LookupPersonRequest(id_number=args.id_number, view=view), metadata=md)]

    return asyncio.run(_rpc(args, call))


def _cmd_list(args: argparse.Namespace) -> int:
    from jsx.common.v1 import common_pb2
    from jsx.members.v1 import members_pb2 as pb

    region = common_pb2.RegionCode(code=args.region or "")
    kinds = {
        "persons": (
            "ListPersons",
            lambda t: pb.ListPersonsRequest(region=region, page_token=t, page_size=500),
            "persons",
        ),
        "households": (
            "ListHouseholds",
            lambda t: pb.ListHouseholdsRequest(
                region=region,
                page_token=t,
                page_size=500,
                situation=pb.SituationKind.Value(args.situation) if args.situation else pb.SITUATION_KIND_UNSPECIFIED,
            ),
            "households",
        ),
        "unpaired": (
            "ListUnpairedFamilies",
            lambda t: pb.ListUnpairedFamiliesRequest(region=region, page_token=t, page_size=500),
            "households",
        ),
        "members": (
            "ListMembers",
            lambda t: pb.ListMembersRequest(region=region, page_token=t, page_size=500),
            "members",
        ),
        "volunteers": (
            "ListVolunteers",
            lambda t: pb.ListVolunteersRequest(region=region, page_token=t, page_size=500),
            "volunteers",
        ),
        "sites": ("ListSites", lambda t: pb.ListSitesRequest(region=region, page_token=t, page_size=500), "sites"),
    }
    rpc, build, attr = kinds[args.what]

    async def call(stub: Any, md: Any) -> list[Any]:
        out: list[Any] = []
        token = ""
        while True:
            resp = await getattr(stub, rpc)(build(token), metadata=md)
            out += list(getattr(resp, attr))
            token = resp.next_page_token
            if not token or len(out) >= args.limit:
                return out[: args.limit]

    return asyncio.run(_rpc(args, call))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``jsx members …`` (wired through the ``jsx.cli`` entry point)."""
    p = sub.add_parser("members", help="人员、家庭户、会员、志愿者、阵地：花名册导入导出、查询、运行服务")
    ms = p.add_subparsers(dest="members_command", metavar="ACTION", required=True)

    def with_token(q: argparse.ArgumentParser) -> argparse.ArgumentParser:
        q.add_argument("--token", help="访问令牌（默认取环境变量 JSX_TOKEN）")
        return q

    imp = with_token(ms.add_parser("import", help="导入花名册（.xlsx/.csv）：整表校验，有误则不导入并生成错误表"))
    imp.add_argument("file", help="花名册文件")
    imp.add_argument("--errors", help="错误表保存路径（默认：原文件名_错误.xlsx）")
    imp.add_argument("--quiet", action="store_true", help="不显示进度条")
    imp.set_defaults(func=_cmd_import)

    exp = with_token(ms.add_parser("export", help="导出某辖区的花名册（与导入同格式）"))
    exp.add_argument("--region", required=True, help="区划代码，如 431222")
    exp.add_argument("out", help="输出文件（.xlsx 或 .csv）")
    exp.set_defaults(func=_cmd_export)

    tpl = ms.add_parser("template", help="生成空白花名册模板（含填写说明）")
    tpl.add_argument("out", nargs="?", default="花名册模板.xlsx")
    tpl.set_defaults(func=_cmd_template)

    lk = with_token(ms.add_parser("lookup", help="按身份证号查人（经服务，按权限脱敏）"))
    lk.add_argument("id_number")
    lk.add_argument("--full", action="store_true", help="请求完整信息（需 members.pii.read 权限，会被审计）")
    lk.add_argument("--addr", help="服务地址 host:port（默认 JSX_MEMBERS_ADDR）")
    lk.set_defaults(func=_cmd_lookup)

    ls = with_token(ms.add_parser("list", help="列出人员/家庭户/未结对特殊家庭/会员/志愿者/阵地（每行一条 JSON）"))
    ls.add_argument("what", choices=["persons", "households", "unpaired", "members", "volunteers", "sites"])
    ls.add_argument("--region", help="区划代码（默认：令牌的辖区）")
    ls.add_argument("--situation", help="家庭类型，如 SITUATION_KIND_SPECIAL_BEREAVED（仅 households）")
    ls.add_argument("--limit", type=int, default=1000)
    ls.add_argument("--addr", help="服务地址 host:port（默认 JSX_MEMBERS_ADDR）")
    ls.set_defaults(func=_cmd_list)

    sv = ms.add_parser("serve", help="运行 members 服务（配置取自 JSX_MEMBERS_* / JSX_* 环境变量）")
    sv.set_defaults(func=_cmd_serve)
