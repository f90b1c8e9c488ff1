"""The ``jsx`` command: errors reach a clerk as readable Chinese, not tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _jsx(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jsxcore.cli", *args], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.slow
def test_help_lists_every_service_command() -> None:
    out = _jsx("--help")
    assert out.returncode == 0, out.stderr
    for cmd in ("plugins", "token", "members", "funds", "events"):
        assert cmd in out.stdout
    assert "无法加载" not in out.stderr


def test_bad_config_is_one_readable_error(tmp_path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("JSX_")}
    env.update(JSX_DATA_DIR=str(tmp_path))  # no JSX_DEV, no secrets
    out = _jsx("token", "issue", "--sub", "x", "--role", "admin", "--region", "431222", env=env)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "JSX_AUTH_SECRET" in out.stderr
