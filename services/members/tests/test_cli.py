"""``jsx members`` commands as a clerk runs them (subprocesses, real files,
a real database and, for lookup/list, a real gRPC server)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jsx_members.adapters import roster
from jsx_members.entrypoints.grpc import build_runtime
from jsx_members.migrations import migrate
from jsx_members.testdata import roster_rows
from jsxcore.auth import issue_token
from jsxcore.config import ServiceConfig
from jsxcore.pii import generate_key

SECRET = "c" * 40


def _env(tmp_path: Path, nats_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "JSX_MEMBERS_DATABASE_URL": f"sqlite:///{tmp_path / 'members.db'}",
        "JSX_MEMBERS_NATS_URL": nats_url,
        "JSX_MEMBERS_DATA_DIR": str(tmp_path),
        "JSX_PII_KEY": generate_key(),
        "JSX_BLIND_INDEX_KEY": generate_key(),
        "JSX_AUTH_SECRET": SECRET,
        "JSX_MEMBERS_GRPC_ADDR": "127.0.0.1:0",
        "JSX_TOKEN": issue_token(SECRET, "clerk-yl", ["county_clerk"], "431222"),
    }


def jsx(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jsxcore.cli", "members", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow  # subprocesses of the CLI, each importing the service
async def test_template_import_errors_export_lookup(tmp_path: Path, nats_url: str) -> None:
    env = _env(tmp_path, nats_url)
    r = await asyncio.to_thread(jsx, env, "template", str(tmp_path / "t.xlsx"))
    assert r.returncode == 0 and (tmp_path / "t.xlsx").exists()

    rows = list(roster_rows(6))
    good = tmp_path / "roster.xlsx"
    roster.write_rows(good, roster.HEADERS, rows)
    bad_rows = [dict(r) for r in rows]
    bad_rows[2]["所属村"] = "4312"
    bad = tmp_path / "bad.xlsx"
    roster.write_rows(bad, roster.HEADERS, bad_rows)

    r = await asyncio.to_thread(jsx, env, "import", str(bad), "--quiet")
    assert r.returncode == 1 and "未导入任何数据" in r.stderr
    assert (tmp_path / "bad_错误.xlsx").exists()
    r = await asyncio.to_thread(jsx, env, "import", str(good), "--quiet")
    assert r.returncode == 0 and "新登记人员 6" in r.stdout, r.stderr
    r = await asyncio.to_thread(jsx, env, "import", str(good), "--quiet")
    assert r.returncode == 0 and "新登记人员 0" in r.stdout and "已登记未变 6" in r.stdout

    r = await asyncio.to_thread(jsx, env, "export", "--region", "431222", str(tmp_path / "out.csv"))
    assert r.returncode == 0 and "已导出 6 人" in r.stdout
    assert rows[0]["身份证号"] not in (tmp_path / "out.csv").read_text(encoding="utf-8-sig")  # clerk: masked

    # lookup/list go through a running service, as an integrating system would.
    config = ServiceConfig.from_env("members", {k: v for k, v in env.items() if k.startswith("JSX_")})
    await asyncio.to_thread(migrate, config.database_url)
    rt, _, _ = build_runtime(config)
    port = await rt.start()
    try:
        env["JSX_MEMBERS_ADDR"] = f"127.0.0.1:{port}"
        r = await asyncio.to_thread(jsx, env, "lookup", rows[0]["身份证号"])
        assert r.returncode == 0, r.stderr
        found = json.loads(r.stdout)
        assert found["idNumberMasked"].endswith(rows[0]["身份证号"][-4:]) and "idNumber" not in found
        r = await asyncio.to_thread(jsx, env, "list", "households")
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 2
        r = await asyncio.to_thread(jsx, env, "list", "persons", "--region", "431224")
        assert r.returncode == 1 and "PERMISSION_DENIED" in r.stderr
    finally:
        await rt.stop(0)
