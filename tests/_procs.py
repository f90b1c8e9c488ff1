"""Service processes for cross-service tests: ``python -m jsx_<service>`` as
a real child process with its own database, gRPC port and log file.

``ServiceProc`` starts, stops (SIGTERM, like an orchestrator), restarts with
extra environment (``JSX_FAULT``), and waits for gRPC health SERVING. Every
start appends to one log file, so a failure can show what each run said.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

T = TypeVar("T")
_FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 300),
]


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class ServiceProc:
    """One service process; ``env`` is the complete environment it gets."""

    def __init__(self, service: str, env: Mapping[str, str], addr: str, log_path: Path) -> None:
        self.service = service
        self.env = dict(env)
        self.addr = addr
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._signalled = False
        self.extra_env: dict[str, str] = {}  # what the running process got on top of env (JSX_FAULT)

    def start(self, extra_env: Mapping[str, str] | None = None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.service} already running (pid {self.proc.pid})")
        self.starts += 1
        self._signalled = False
        self.extra_env = dict(extra_env or {})
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts} {sorted((extra_env or {}).items())} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"jsx_{self.service}"],
                env={**self.env, **(extra_env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C on pytest does not hit it before its finalizer
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        """Send SIGTERM once, without waiting (to stop several processes at once).

        Once: the runtime drops its handler at the first signal, so a second
        SIGTERM kills it mid-drain (like a second Ctrl-C)."""
        if self.proc is not None and self.proc.poll() is None and not self._signalled:
            self._signalled = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL after ``grace``. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.service} did not exit within {timeout:.0f} s\n{self.explain()}") from None

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Block until gRPC health says SERVING; fail with the log tail if it dies or times out."""
        deadline = time.monotonic() + timeout
        # short reconnect backoff: the default (1 s, growing) would notice a
        # freshly listening server seconds late
        with grpc.insecure_channel(self.addr, options=_FAST_RECONNECT) as ch:
            stub: Any = health_pb2_grpc.HealthStub(ch)  # the stubs declare it without methods
            while True:
                if not self.alive():
                    code = self.proc.returncode if self.proc else None
                    raise AssertionError(f"{self.service} exited with {code} while starting\n{self.explain()}")
                try:
                    r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.service} not SERVING within {timeout:.0f} s\n{self.explain()}")
                time.sleep(0.1)

    def explain(self, n: int = 40) -> str:
        return f"--- {self.service} log ({self.log_path}), last {n} lines ---\n{tail(self.log_path, n)}"


@contextmanager
def logs_on_failure(procs: Sequence[ServiceProc]) -> Iterator[None]:
    """Print each process's log tail if the block fails (pytest shows it with the failure)."""
    try:
        yield
    except BaseException:
        for p in procs:
            print(p.explain(60))
        raise


async def until(what: str, probe: Callable[[], Awaitable[T | None]], timeout: float = 30.0, every: float = 0.2) -> T:
    """Poll ``probe`` until it returns something other than None; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        got = await probe()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout:.0f} s: {what}")
        await asyncio.sleep(every)


def clean_env() -> dict[str, str]:
    """The test runner's environment without any JSX_* variable (no leaking config)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("JSX_")}
