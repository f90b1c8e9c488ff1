"""``jsx`` command line. Each service adds its own sub-command through the
``jsx.cli`` entry-point group: a ``register(subparsers)`` function that adds a
parser and sets ``func`` (sync or async, receiving the parsed args)."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from importlib.metadata import entry_points


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jsx", description="jsx 计生协项目资金平台 命令行")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from jsxcore import cli_core

    cli_core.register(sub)
    for ep in sorted(entry_points(group="jsx.cli"), key=lambda e: e.name):
        try:
            register = ep.load()
        except Exception as e:  # one broken service package must not take the whole CLI down
            print(f"警告：命令 {ep.name} 无法加载（{type(e).__name__}: {e}），已跳过", file=sys.stderr)
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    from jsxcore.errors import ConfigError, DomainError

    try:
        result = func(args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
    except ConfigError as e:
        print(f"配置错误：{e}", file=sys.stderr)
        return 2
    except DomainError as e:
        # the same words a gRPC caller would get, without a traceback
        print(f"错误（{e.reason}）：{e.message}", file=sys.stderr)
        for v in e.violations:
            print(f"  {v.field}: {v.description}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
