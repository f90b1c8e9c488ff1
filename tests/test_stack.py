"""The README's first command, for real: the whole local stack (own
nats-server, three service processes, the public 公示 board, SQLite under one
data dir) starts, the demo's facts cross NATS both ways and its 特别扶助
application shows on the board masked, everything stops cleanly on Ctrl-C or
its own signal, and a second run reuses the data instead of repeating it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts the whole stack, twice

DEMO_VILLAGE = "431281103205"
DEMO_NAME, DEMO_MASKED = "演示户主", "演**主"
ID_RE = re.compile(r"(?<![0-9])[1-9][0-9]{16}[0-9Xx](?![0-9])")


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


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=15) as r:
        return r.status, r.read().decode()


def _up_until_ctrl_c(data: Path) -> tuple[str, str]:
    """``dev.py up`` as a developer runs it: wait for 按 Ctrl-C 停止, read the board's 公示
    page for the demo's village while the stack runs, then Ctrl-C. Returns (output, page)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jsx_dev.stack", "up", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "按 Ctrl-C 停止" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not ready.wait(0.5):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
        out = "".join(lines)
        m = re.search(r"公示栏：(http://127\.0\.0\.1:\d+/gongshi\?region=\d+)", out)
        assert m, out
        assert m.group(1).endswith(f"region={DEMO_VILLAGE}")
        status, page = _get(m.group(1))
        assert status == 200
        home = re.search(r"board +(http://127\.0\.0\.1:\d+/)", out)
        assert home and m.group(1).startswith(home.group(1)), out
        assert _get(home.group(1) + "readyz")[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the stack stops its children itself
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(10)
    out = "".join(lines)
    assert proc.returncode == 0, out
    return out, page


def test_stack_runs_demo_stops_cleanly_and_reuses_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, page = _up_until_ctrl_c(data)
    assert "演示完成" in first
    assert "events 显示 BOOKED" in first and "基金可用 9500.00 元" in first
    # the demo's 特别扶助 application is in 公示, and the board shows it, masked
    assert "进入公示" in first and f"{DEMO_MASKED} 940.00 元" in first, first
    assert DEMO_MASKED in page and "940.00" in page and "2022年洪江市计生特殊家庭特别扶助" in page, page
    assert "<h1>洪江市托口镇马田村正在公示的项目</h1>" in page  # the village by its name (region registry)
    assert DEMO_NAME not in page and not ID_RE.search(page) and "13900001234" not in page
    # every child (the board too) stopped on SIGTERM by itself (none had to be killed)
    assert "有进程未正常退出" not in first and "=-9" not in first, first
    assert re.search(r"已停止：.*board=0", first), first
    for name in ("members.db", "funds.db", "events.db", "keys.json", "board.key"):
        assert (data / name).exists()
    for name in ("nats", "members", "funds", "events", "board"):
        assert (data / "logs" / f"{name}.log").exists(), name
    assert "公示栏已启动" in (data / "logs" / "board.log").read_text()
    # personal data shows masked in the demo output, never in full
    assert re.search(r"4312\*{10}\d{3}[\dX]", first)
    assert DEMO_NAME not in first

    person = re.search(r"登记人员 (persons/\S+)（", first)
    application = re.search(r"特别扶助申请 (applications/\d+) ", first)
    assert person and application
    second = _up(data)
    assert "演示完成" in second
    # same person, same fund balance, same application: the rerun repeated nothing (AIP-155 request ids)
    assert person.group(1) in second and "基金可用 9500.00 元" in second
    assert f"特别扶助申请 {application.group(1)} " in second
