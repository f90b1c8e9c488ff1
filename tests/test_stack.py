"""The README's first command, for real: the whole local stack (own
nats-server, three service processes, SQLite under one data dir) starts, the
demo's facts cross NATS both ways, everything stops cleanly on its own signal,
and a second run reuses the data instead of repeating it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts the whole stack, twice


def _up(data: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "jsx_dev.stack", "up", "--data-dir", str(data), "--exit-after-demo"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def test_stack_runs_demo_stops_cleanly_and_reuses_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = _up(data)
    assert "演示完成" in first
    assert "events 显示 BOOKED" in first and "基金可用 9500.00 元" in first
    # every child stopped on SIGTERM by itself (none had to be killed)
    assert "有进程未正常退出" not in first and "=-9" not in first, first
    for name in ("members.db", "funds.db", "events.db", "keys.json"):
        assert (data / name).exists()
    # personal data shows masked in the demo output, never in full
    assert re.search(r"4312\*{10}\d{3}[\dX]", first)

    person = re.search(r"登记人员 (persons/\S+)（", first)
    assert person
    second = _up(data)
    assert "演示完成" in second
    # same person, same fund balance: the rerun repeated nothing (AIP-155 request ids)
    assert person.group(1) in second and "基金可用 9500.00 元" in second
