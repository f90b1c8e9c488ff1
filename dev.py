#!/usr/bin/env python3
"""One entry point for a fresh machine: sets up what is missing, then runs.

    python3 dev.py up        # the whole stack (NATS + members + funds + events) and its demo
    python3 dev.py test      # the test suite (what CI runs)
    python3 dev.py gen       # regenerate Python code from protos/
    python3 dev.py lint      # buf lint on protos/
    python3 dev.py bench X   # run bench/X.py

Only the standard library is used here, because this file runs before anything
is installed. Everything else comes from uv.lock.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
UV_VERSION = "0.13.9"  # keep equal to the pin in pyproject.toml's dev group


def _run(*cmd: str | os.PathLike[str], **kw: Any) -> None:
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def ensure_env() -> None:
    """Create .venv and sync it to uv.lock (fast no-op when already in sync)."""
    if sys.version_info < (3, 11):  # noqa: UP036  (dev.py runs under whatever python3 the machine has)
        sys.exit(f"jsx needs Python >= 3.11 (found {sys.version.split()[0]})")
    if not PY.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    uv = BIN / "uv"
    if not uv.exists():
        _run(PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"uv=={UV_VERSION}")
    env = dict(os.environ, VIRTUAL_ENV=str(VENV), UV_PYTHON_DOWNLOADS="never")
    env.pop("UV_PROJECT_ENVIRONMENT", None)
    _run(uv, "sync", "--locked", "--all-packages", "--quiet", "--python", PY, cwd=ROOT, env=env)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    cmd, rest = argv[0], argv[1:]
    ensure_env()
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if cmd == "up":
        args = [str(PY), "-m", "jsx_dev.stack", "up", *rest]
    elif cmd == "test":
        args = [str(PY), "-m", "pytest", *rest]
    elif cmd == "gen":
        args = [str(PY), str(ROOT / "protos" / "generate.py"), *rest]
    elif cmd == "lint":
        args = [str(BIN / "buf"), "lint", "protos", *rest]
    elif cmd == "bench":
        if not rest:
            sys.exit("usage: python3 dev.py bench NAME [args]")
        args = [str(PY), str(ROOT / "bench" / f"{rest[0]}.py"), *rest[1:]]
    elif cmd == "sync":
        return 0
    else:
        sys.exit(f"unknown command {cmd!r}; see python3 dev.py --help")
    # exec so Ctrl-C and exit codes go straight to the child
    os.chdir(ROOT)
    os.execve(args[0], args, env)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
