#!/usr/bin/env python3
"""One entry point for a fresh machine: sets up what is missing, then runs.

    python3 dev.py up        # the whole stack (NATS + members + funds + events + 公示 board) and its demo
    python3 dev.py test      # static checks, then the test suite (what CI runs); pytest args pass on
    python3 dev.py check     # static checks only: ruff check, ruff format --check, mypy
    python3 dev.py gen       # regenerate Python code from protos/
    python3 dev.py lint      # buf lint on protos/
    python3 dev.py bench X   # run bench/X.py

Only the standard library is used here, because this file runs before anything
is installed. Everything else comes from uv.lock.
"""

from __future__ import annotations

import os
import shutil
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

#: What `check` covers (ruff and mypy settings: pyproject.toml): every package of the repository.
CHECK_PATHS = [
    "dev.py",
    "conftest.py",
    "protos/generate.py",
    "libs/jsxcore",
    "plugins",
    "tools",
    "tests",
    "bench",
    "services/events",
    "services/members",
    "services/funds",
    "services/board",
]


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


def _mypy_runs(paths: list[str]) -> list[list[str]]:
    """The mypy runs covering ``paths``: one for every package (each ``src/``) and loose file,
    then one per directory of top-level modules (``tests/``, ``bench/``): their module names
    (test_service, conftest, …) repeat from one directory to the next. A package's own tests
    run with its ``src/`` beside them (plugins/template is not installed)."""
    packages: list[str] = []
    loose: list[str] = []
    script_dirs: list[Path] = []
    for p in (ROOT / p for p in paths):
        if p.is_file():
            loose.append(str(p.relative_to(ROOT)))
            continue
        for d in sorted({f.parent for f in p.rglob("*.py")}):
            parts = d.relative_to(ROOT).parts
            if "src" in parts:
                continue
            script_dirs.append(d)
        packages += sorted(str(s.relative_to(ROOT)) for s in p.rglob("src") if s.is_dir())
    runs = [[*loose, *packages]] if loose or packages else []
    for d in script_dirs:
        run = [str(d.relative_to(ROOT))]
        if d.name == "tests" and (d.parent / "src").is_dir():
            run.append(str((d.parent / "src").relative_to(ROOT)))
        runs.append(run)
    return runs


def check(env: dict[str, str]) -> int:
    """ruff check, ruff format --check and mypy over CHECK_PATHS; every one runs, all failures shown."""
    steps = [
        [str(BIN / "ruff"), "check", *CHECK_PATHS],
        [str(BIN / "ruff"), "format", "--check", *CHECK_PATHS],
        *([str(BIN / "mypy"), *run] for run in _mypy_runs(CHECK_PATHS)),
    ]
    failed = []
    for step in steps:
        shown = " ".join([Path(step[0]).name, *step[1:]])
        print(f"check: {shown}", flush=True)
        if subprocess.run(step, cwd=ROOT, env=env).returncode != 0:
            failed.append(shown)
    if failed:
        print("check failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        print(
            "fix with `.venv/bin/ruff format PATH` and `.venv/bin/ruff check --fix PATH`, then mypy's notes",
            file=sys.stderr,
        )
        return 1
    return 0


#: Debian packages some tests need, each with a file that shows it is installed. The 公示 board's
#: browser test (services/board/README.md): Chromium and its driver (Selenium drives the system
#: browser, nothing is downloaded), CJK fonts for readable screenshots. libfaketime: that test's and
#: the backup drill's clock jump (公示 over). postgresql-client: pg_dump / pg_restore for `jsx backup`
#: and `jsx restore` on PostgreSQL (tests/test_backup_drill.py, docs/operations.md *Backups*).
APT_PACKAGES = {
    "chromium": "/usr/bin/chromium",
    "chromium-driver": "/usr/bin/chromedriver",
    "fonts-noto-cjk": "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "libfaketime": "/usr/lib/*/faketime/libfaketime.so.1",
    "postgresql-client": "/usr/bin/pg_restore",
}


def ensure_apt_packages() -> None:
    """apt-get install what is missing of APT_PACKAGES — only as root on a Debian-like
    machine; elsewhere say what is missing (those tests then skip outside CI)."""
    missing = [pkg for pkg, path in APT_PACKAGES.items() if not any(Path("/").glob(path.lstrip("/")))]
    if not missing:
        return
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        print(
            f"dev.py: not installed: {' '.join(missing)} (apt-get install -y {' '.join(missing)}); "
            "the tests that need them (the board's browser test, the backup drill) skip without them",
            file=sys.stderr,
        )
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run("apt-get", "update", "-qq", env=env)
    _run("apt-get", "install", "-y", "-qq", *missing, env=env)


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
    elif cmd == "check":
        return check(env)
    elif cmd == "test":
        if check(env) != 0:
            return 1
        ensure_apt_packages()
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
