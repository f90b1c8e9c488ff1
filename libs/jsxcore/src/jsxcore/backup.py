"""Backups of a running jsx stack, and restores into a fresh one (docs/operations.md).

What one backup holds (a directory, ``jsx backup create DIR``):

* ``streams/<STREAM>.tar.s2`` — a JetStream snapshot of every ``JSX_*`` stream
  (``$JS.API.STREAM.SNAPSHOT``; messages *and* the durable consumers with their
  ack floors), taken while the stream serves;
* ``databases/<service>.pgdump`` — ``pg_dump --format=custom`` of a service's
  whole PostgreSQL database, or ``databases/<service>.sqlite`` — a copy made
  with SQLite's online backup API; both safe while the service writes;
* ``manifest.json`` — written last (a directory without it is an unfinished
  backup): when each part was taken, its size and SHA-256, every table's row
  count *as the copy holds it*, each database's Alembic heads, the audit
  chain's head when :mod:`jsxcore.audit` exists, the stream states.

**Order: streams first, then one cut of all databases.** A durable consumer
records an event in its service's inbox before it acks it, so an inbox copied
*after* the stream holds at least what that stream snapshot says was acked:
after a restore the consumers are redelivered only events their inbox already
has (skipped) or has not (applied) — none is lost. The other direction, an
outbox row marked published after its stream was copied, is repaired at restore
by :func:`reconcile_outbox`. The databases are cut together: every PostgreSQL
database's snapshot is exported (``pg_export_snapshot``) and every SQLite file
held in a read transaction first, all within milliseconds (``cut_spread_ms`` in
the manifest), then each is copied from that snapshot (``pg_dump --snapshot``,
``sqlite3.Connection.backup`` inside the read transaction) and counted from it.

**Restore** (``jsx restore DIR``) into a stack whose services are stopped:
streams (refused if the stream exists, unless ``--force``), then databases
(refused unless empty, unless ``--force``), each checked against the manifest
(row counts, schema heads, audit chain), then :func:`reconcile_outbox` makes
every outbox row's published mark agree with the restored stream — so the
relay, once started, publishes exactly the events the stream lacks and nothing
it already holds. Checked on nats-server 2.15: a restored stream does *not*
remember the message ids it holds for deduplication (a re-publish of an id it
has is stored again, even inside the duplicate window), so ``Nats-Msg-Id``
alone would not prevent doubles here; the reconciliation does.

Secrets are not in a backup: the databases hold personal data encrypted with
``JSX_PII_KEY`` and found by ``JSX_BLIND_INDEX_KEY``; keep those keys (and
``JSX_PII_OLD_KEYS``) in the secret store, and restore with the same ones.
Nor does this module need them: database URLs come from ``--db SERVICE=URL``
or the service's own ``JSX_<SERVICE>_DATABASE_URL`` / ``JSX_DATABASE_URL`` /
``JSX_DATA_DIR`` (read as :class:`jsxcore.config.ServiceConfig` reads them).

PostgreSQL needs the client programs ``pg_dump`` and ``pg_restore`` of the
server's major version or newer (Debian/Ubuntu: ``apt-get install
postgresql-client``); ``JSX_PG_BIN`` may name the directory holding them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jsxcore.config import hide_password
from jsxcore.errors import ConfigError, FailedPrecondition

FORMAT = "jsx-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: The services with a database of their own (the 公示 board has none).
SERVICES = ("members", "funds", "events")
#: Clock difference tolerated between the hosts whose clocks meet in :func:`reconcile_outbox`.
RECONCILE_MARGIN = timedelta(minutes=10)
_CHUNK = 128 * 1024
_SERVICE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_STREAM_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- configuration


def database_url(service: str, environ: Mapping[str, str] | None = None) -> str:
    """The database URL ``service`` itself would use: ``JSX_<SERVICE>_DATABASE_URL``,
    then ``JSX_DATABASE_URL``, else ``sqlite:///<DATA_DIR>/<service>.db`` (as
    :meth:`jsxcore.config.ServiceConfig.from_env` reads them, without needing the
    service's secrets: a backup job has no business holding the PII keys)."""
    env = os.environ if environ is None else environ
    prefix = "JSX_" + service.upper() + "_"

    def get(name: str) -> str | None:
        for var in (prefix + name, "JSX_" + name):
            value = env.get(var, "").strip()
            if value:
                return value
        return None

    url = get("DATABASE_URL")
    if url:
        return url
    data_dir = Path(get("DATA_DIR") or "./data").expanduser().absolute()
    return f"sqlite:///{(data_dir / f'{service}.db').as_posix()}"


def nats_url(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("JSX_NATS_URL", "").strip() or "nats://127.0.0.1:4222"


def engine_of(url: str) -> str:
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise ConfigError(f"不支持的数据库地址“{hide_password(url)}”：只支持 sqlite:/// 和 postgresql://")


def sqlite_path(url: str) -> Path:
    """``sqlite:///data/x.db`` / ``sqlite+aiosqlite:////abs/x.db`` → the file."""
    rest = url.split(":", 1)[1]
    if not rest.startswith("///"):
        raise ConfigError(f"SQLite 地址“{url}”应写成 sqlite:///文件路径")
    path = rest[3:].split("?", 1)[0]
    if not path or path == ":memory:":
        raise ConfigError("内存中的 SQLite 数据库无法备份或恢复，请使用数据库文件")
    return Path(path).absolute()


def _pg_conninfo(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password (which goes into ``PGPASSWORD``, never argv)."""
    from sqlalchemy import make_url

    u = make_url(url.replace("postgresql+psycopg://", "postgresql://", 1).replace("postgres://", "postgresql://", 1))
    env: dict[str, str] = {}
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    u = u.set(drivername="postgresql", password=None)
    return u.render_as_string(hide_password=False), env


def _sync_engine(url: str) -> Any:
    from sqlalchemy import create_engine, pool

    from jsxcore.migrations import sync_url

    return create_engine(sync_url(url), poolclass=pool.NullPool)


def pg_binary(name: str) -> str:
    """``pg_dump`` / ``pg_restore``: from ``JSX_PG_BIN``, the PATH, or Debian's versioned directories."""
    if os.environ.get("JSX_PG_BIN"):
        candidate = Path(os.environ["JSX_PG_BIN"]) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]), reverse=True)
    if versions:
        return str(versions[0])
    raise ConfigError(
        f"找不到 {name}：请安装 PostgreSQL 客户端程序（Debian/Ubuntu：apt-get install postgresql-client；"
        "版本不低于数据库服务器），或用 JSX_PG_BIN 指明其所在目录"
    )


def _run_pg(cmd: list[str], env: Mapping[str, str], what: str) -> str:
    proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-2000:]
        hint = ""
        if "server version mismatch" in detail or "unsupported version" in detail:
            hint = "（客户端程序版本低于数据库服务器：请安装与服务器同版本或更新的 postgresql-client）"
        raise FailedPrecondition(f"{what}失败{hint}：{detail}", reason="PG_TOOL_FAILED")
    return proc.stdout


# ---------------------------------------------------------------- manifest


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise FailedPrecondition(
            f"{directory} 中没有 {MANIFEST}：不是备份目录，或备份没有完成（清单最后写入）", reason="NO_MANIFEST"
        )
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FailedPrecondition(f"{path} 无法读取：{e}", reason="BAD_MANIFEST") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise FailedPrecondition(
            f"{path} 不是本版本可读的备份清单（format={manifest.get('format')!r}, "
            f"format_version={manifest.get('format_version')!r}）",
            reason="BAD_MANIFEST",
        )
    return manifest


def _files(manifest: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for item in (manifest.get("streams") or {}).get("items", []):
        yield item
    for item in (manifest.get("databases") or {}).get("items", []):
        yield item


# ---------------------------------------------------------------- SQLite


def _sqlite_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    return [str(r[0]) for r in rows]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: int(conn.execute(f"SELECT count(*) FROM {_quote(t)}").fetchone()[0]) for t in _sqlite_tables(conn)}


def _heads_sqlite(conn: sqlite3.Connection) -> list[str]:
    if "alembic_version" not in _sqlite_tables(conn):
        return []
    return sorted(str(r[0]) for r in conn.execute("SELECT version_num FROM alembic_version"))


# ---------------------------------------------------------------- audit chain (jsxcore.audit, when present)


def audit_module() -> Any | None:
    """:mod:`jsxcore.audit` when this version has it (the hash-chained audit log), else None."""
    try:
        import importlib

        return importlib.import_module("jsxcore.audit")
    except ImportError:
        return None


def _audit_table(audit: Any) -> str:
    return str(getattr(getattr(audit, "AuditRecord", None), "__tablename__", "audit_log"))


def audit_check(conn: Any, tables: Sequence[str]) -> dict[str, Any] | None:
    """Verify the audit chain on a synchronous SQLAlchemy connection; None when
    jsxcore.audit is absent, ``{"present": False}`` when the database has no audit table."""
    audit = audit_module()
    if audit is None:
        return None
    if _audit_table(audit) not in tables:
        return {"present": False}
    report = audit.verify(conn)
    head = report.head
    return {
        "present": True,
        "records": int(report.checked),
        "first_seq": int(report.first_seq),
        "head_seq": int(head.seq) if head is not None else 0,
        "head_hash": str(head.hash) if head is not None else "",
        "ok": bool(report.ok),
        "problems": [str(p) for p in report.problems][:20],
    }


# ---------------------------------------------------------------- the database cut


@dataclass
class _Held:
    """One database held at the cut: its snapshot stays open until its copy is made."""

    service: str
    url: str
    engine: str
    opened_at: datetime
    sqlite: sqlite3.Connection | None = None
    sa_engine: Any = None
    sa_conn: Any = None
    snapshot_id: str = ""
    server_version: str = ""

    def close(self) -> None:
        if self.sqlite is not None:
            with contextlib.suppress(sqlite3.Error):
                self.sqlite.rollback()
            self.sqlite.close()
        if self.sa_conn is not None:
            with contextlib.suppress(Exception):
                self.sa_conn.rollback()
            self.sa_conn.close()
        if self.sa_engine is not None:
            self.sa_engine.dispose()


def _hold(service: str, url: str) -> _Held:
    kind = engine_of(url)
    if kind == "sqlite":
        path = sqlite_path(url)
        if not path.is_file():
            raise FailedPrecondition(f"服务 {service} 的数据库文件 {path} 不存在", reason="NO_DATABASE")
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA query_only=ON")
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read snapshot starts here
        return _Held(service, url, kind, _now(), sqlite=conn, server_version=sqlite3.sqlite_version)
    from sqlalchemy import text

    eng = _sync_engine(url)
    conn = eng.connect().execution_options(isolation_level="REPEATABLE READ")
    conn.begin()
    conn.execute(text("SET TRANSACTION READ ONLY"))
    snap = str(conn.execute(text("SELECT pg_export_snapshot()")).scalar_one())
    version = str(conn.execute(text("SHOW server_version")).scalar_one())
    return _Held(service, url, kind, _now(), sa_engine=eng, sa_conn=conn, snapshot_id=snap, server_version=version)


def _pg_tables(conn: Any) -> list[tuple[str, str]]:
    from sqlalchemy import text

    rows = conn.execute(
        text(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        )
    ).all()
    return [(str(r[0]), str(r[1])) for r in rows]


def _pg_table_name(schema: str, table: str) -> str:
    return table if schema == "public" else f"{schema}.{table}"


def _pg_counts(conn: Any) -> dict[str, int]:
    from sqlalchemy import text

    return {
        _pg_table_name(s, t): int(conn.execute(text(f"SELECT count(*) FROM {_quote(s)}.{_quote(t)}")).scalar_one())
        for s, t in _pg_tables(conn)
    }


def _pg_heads(conn: Any, tables: Mapping[str, int]) -> list[str]:
    from sqlalchemy import text

    if "alembic_version" not in tables:
        return []
    return sorted(str(r[0]) for r in conn.execute(text("SELECT version_num FROM alembic_version")))


def code_heads(service: str) -> list[str] | None:
    """The Alembic heads of the installed service's migrations (None: not installed here)."""
    try:
        from alembic.script import ScriptDirectory

        from jsxcore.migrations import alembic_config, script_location_of

        location = script_location_of(service)
    except (ConfigError, ImportError):
        return None
    return sorted(ScriptDirectory.from_config(alembic_config(location, "sqlite://")).get_heads())


def _outbox_summary(tables: Mapping[str, int], count_unpublished: Any) -> dict[str, int] | None:
    if "outbox" not in tables:
        return None
    return {"rows": tables["outbox"], "unpublished": int(count_unpublished())}


def _copy_sqlite(held: _Held, out: Path) -> dict[str, Any]:
    assert held.sqlite is not None
    tmp = out.with_name(out.name + ".part")
    dst = sqlite3.connect(tmp)
    try:
        held.sqlite.backup(dst)  # inside the held read transaction: the copy is the cut
    finally:
        dst.close()
    copy = sqlite3.connect(tmp)
    try:
        check = copy.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise FailedPrecondition(
                f"服务 {held.service} 的 SQLite 备份副本未通过完整性检查：{check}", reason="BAD_COPY"
            )
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        tables = _sqlite_counts(copy)
        heads = _heads_sqlite(copy)
        outbox = _outbox_summary(
            tables, lambda: copy.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0]
        )
    finally:
        copy.close()
    audit = _audit_of_file(tmp, list(tables))
    _fsync(tmp)
    tmp.rename(out)
    return {"tables": tables, "schema_heads": heads, "outbox": outbox, "audit": audit}


def _audit_of_file(path: Path, tables: Sequence[str]) -> dict[str, Any] | None:
    if audit_module() is None:
        return None
    eng = _sync_engine(f"sqlite:///{path}")
    try:
        with eng.connect() as conn:
            return audit_check(conn, tables)
    finally:
        eng.dispose()


def _start_pg_dump(held: _Held, out: Path) -> subprocess.Popen[bytes]:
    conninfo, env = _pg_conninfo(held.url)
    cmd = [
        pg_binary("pg_dump"),
        "--format=custom",
        f"--snapshot={held.snapshot_id}",
        "--no-password",
        f"--file={out.with_name(out.name + '.part')}",
        f"--dbname={conninfo}",
    ]
    return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _pg_snapshot_facts(held: _Held) -> dict[str, Any]:
    from sqlalchemy import text

    conn = held.sa_conn
    tables = _pg_counts(conn)
    heads = _pg_heads(conn, tables)
    outbox = _outbox_summary(
        tables, lambda: conn.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NULL")).scalar_one()
    )
    audit = audit_check(conn, list(tables))
    return {"tables": tables, "schema_heads": heads, "outbox": outbox, "audit": audit}


def _pg_dump_version() -> str:
    out = subprocess.run([pg_binary("pg_dump"), "--version"], capture_output=True, text=True).stdout
    return out.strip()


def backup_databases(urls: Mapping[str, str], directory: Path, log: Any = print) -> dict[str, Any]:
    """Cut every database at (nearly) one moment, then copy each from its cut."""
    (directory / "databases").mkdir(parents=True, exist_ok=True)
    held: list[_Held] = []
    items: list[dict[str, Any]] = []
    try:
        for service, url in urls.items():
            held.append(_hold(service, url))
        cut = [h.opened_at for h in held]
        dumps: list[tuple[_Held, Path, subprocess.Popen[bytes]]] = []
        for h in held:
            if h.engine == "postgresql":
                out = directory / "databases" / f"{h.service}.pgdump"
                dumps.append((h, out, _start_pg_dump(h, out)))  # all at once: they read the same cut
        facts: dict[str, dict[str, Any]] = {}
        for h in held:
            if h.engine == "sqlite":
                facts[h.service] = _copy_sqlite(h, directory / "databases" / f"{h.service}.sqlite")
            else:
                facts[h.service] = _pg_snapshot_facts(h)
        for h, out, proc in dumps:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise FailedPrecondition(
                    f"pg_dump 备份服务 {h.service} 的数据库失败：{err.decode(errors='replace').strip()[-2000:]}",
                    reason="PG_TOOL_FAILED",
                )
            part = out.with_name(out.name + ".part")
            _fsync(part)
            part.rename(out)
        for h in held:
            name = f"{h.service}.{'sqlite' if h.engine == 'sqlite' else 'pgdump'}"
            path = directory / "databases" / name
            item: dict[str, Any] = {
                "service": h.service,
                "engine": h.engine,
                "source": hide_password(h.url),
                "file": f"databases/{name}",
                "format": "sqlite3 (online backup API)" if h.engine == "sqlite" else "pg_dump --format=custom",
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "snapshot_at": _iso(h.opened_at),
                "server_version": h.server_version,
                "code_heads": code_heads(h.service),
                **facts[h.service],
            }
            if h.engine == "postgresql":
                item["pg_dump_version"] = _pg_dump_version()
            items.append(item)
            log(
                f"数据库 {h.service}（{h.engine}）已备份：{item['bytes']} 字节，{len(item['tables'])} 张表，"
                f"{sum(item['tables'].values())} 行，结构版本 {','.join(item['schema_heads']) or '无'}"
            )
    finally:
        for h in held:
            h.close()
    spread = (max(cut) - min(cut)).total_seconds() * 1000 if held else 0.0
    return {
        "cut_at": _iso(min(cut)) if held else None,
        "cut_spread_ms": round(spread, 3),
        "items": items,
    }


# ---------------------------------------------------------------- JetStream


async def _nats_connect(url: str) -> Any:
    import nats

    try:
        return await nats.connect(
            url.split(","), connect_timeout=5, max_reconnect_attempts=2, reconnect_time_wait=0.5, allow_reconnect=True
        )
    except Exception as e:
        raise FailedPrecondition(
            f"无法连接 NATS（{hide_password(url)}）：{type(e).__name__} {e}", reason="NATS_UNAVAILABLE"
        ) from None


async def _api(nc: Any, subject: str, body: Mapping[str, Any] | None, timeout: float = 10.0) -> dict[str, Any]:
    msg = await nc.request(subject, json.dumps(body or {}).encode(), timeout=timeout)
    resp: dict[str, Any] = json.loads(msg.data or b"{}")
    return resp


def _status_of(msg: Any) -> str:
    headers = msg.headers or {}
    return str(headers.get("Status", "") or "")


async def snapshot_stream(nc: Any, stream: str, out: Path, timeout: float = 600.0) -> dict[str, Any]:
    """``$JS.API.STREAM.SNAPSHOT.<stream>`` into ``out`` (s2-compressed tar, as the server sends
    it), consumers included. Chunks are acknowledged as they arrive (the server's flow control);
    an empty message ends it. Returns the server's ``config`` and ``state`` of the stream."""
    inbox = nc.new_inbox()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    part = out.with_name(out.name + ".part")
    h = hashlib.sha256()
    size = 0
    # the command line tool's own loop: nothing else waits on it while a chunk is written
    f = open(part, "wb")  # noqa: SIM115, ASYNC230 (closed in finally; chunks arrive in the callback)

    async def on_chunk(msg: Any) -> None:
        nonlocal size
        if done.done():
            return
        status = _status_of(msg)
        if status and not status.startswith("2"):
            desc = (msg.headers or {}).get("Description", "")
            done.set_exception(FailedPrecondition(f"流 {stream} 快照中断：{status} {desc}", reason="SNAPSHOT_FAILED"))
            return
        if not msg.data:
            done.set_result(None)
            return
        f.write(msg.data)
        h.update(msg.data)
        size += len(msg.data)
        if msg.reply:
            await nc.publish(msg.reply, b"")

    sub = await nc.subscribe(inbox, cb=on_chunk, pending_msgs_limit=-1, pending_bytes_limit=-1)
    try:
        resp = await _api(
            nc,
            f"$JS.API.STREAM.SNAPSHOT.{stream}",
            {"deliver_subject": inbox, "no_consumers": False, "chunk_size": _CHUNK, "jsck": False},
        )
        if resp.get("error"):
            raise FailedPrecondition(
                f"流 {stream} 无法快照：{resp['error'].get('description', resp['error'])}", reason="SNAPSHOT_FAILED"
            )
        await asyncio.wait_for(done, timeout)
    finally:
        await sub.unsubscribe()
        f.close()
    _fsync(part)
    part.rename(out)
    return {"config": resp.get("config", {}), "state": resp.get("state", {}), "bytes": size, "sha256": h.hexdigest()}


async def _stream_names(js: Any) -> list[str]:
    names: list[str] = []
    offset = 0
    while True:
        page = await js.streams_info(offset=offset)
        if not page:
            return sorted(names)
        names += [s.config.name for s in page]
        offset += len(page)


async def _consumer_names(nc: Any, stream: str) -> list[str]:
    names: list[str] = []
    offset = 0
    while True:
        resp = await _api(nc, f"$JS.API.CONSUMER.NAMES.{stream}", {"offset": offset})
        got = resp.get("consumers") or []
        names += [str(n) for n in got]
        offset += len(got)
        if not got or offset >= int(resp.get("total", 0)):
            return sorted(names)


async def backup_streams(url: str, directory: Path, only: Sequence[str] = (), log: Any = print) -> dict[str, Any]:
    """Snapshot every ``JSX_*`` stream (or just ``only``)."""
    (directory / "streams").mkdir(parents=True, exist_ok=True)
    nc = await _nats_connect(url)
    try:
        js = nc.jetstream()
        started = _now()
        names = list(only) or [n for n in await _stream_names(js) if n.startswith("JSX_")]
        items = []
        for name in names:
            if not _STREAM_RE.match(name):
                raise ConfigError(f"流名称“{name}”不合法")
            consumers = await _consumer_names(nc, name)
            taken = _now()
            got = await snapshot_stream(nc, name, directory / "streams" / f"{name}.tar.s2")
            state = got["state"]
            items.append(
                {
                    "name": name,
                    "file": f"streams/{name}.tar.s2",
                    "format": "JetStream snapshot (s2-compressed tar), consumers included",
                    "bytes": got["bytes"],
                    "sha256": got["sha256"],
                    "taken_at": _iso(taken),
                    "messages": int(state.get("messages", 0)),
                    "first_seq": int(state.get("first_seq", 0)),
                    "last_seq": int(state.get("last_seq", 0)),
                    "consumers": consumers,
                    "config": got["config"],
                    "state": state,
                }
            )
            log(f"流 {name} 已快照：{items[-1]['messages']} 条消息，消费者 {len(consumers)} 个，{got['bytes']} 字节")
        return {
            "source": hide_password(url),
            "server_version": str(nc._server_info.get("version", "")),
            "started_at": _iso(started),
            "finished_at": _iso(_now()),
            "items": items,
        }
    finally:
        await nc.close()


async def restore_stream(nc: Any, item: Mapping[str, Any], path: Path, *, force: bool = False) -> dict[str, Any]:
    """``$JS.API.STREAM.RESTORE.<name>`` from a snapshot file; refuses an existing stream
    unless ``force`` (which deletes it first)."""
    name = str(item["name"])
    info = await _api(nc, f"$JS.API.STREAM.INFO.{name}", None)
    if not info.get("error"):
        if not force:
            raise FailedPrecondition(
                f"目标 NATS 上已有流 {name}（{info.get('state', {}).get('messages', 0)} 条消息）：拒绝覆盖。"
                "请恢复到全新的 NATS，或确认后加 --force 删除它再恢复",
                reason="STREAM_EXISTS",
            )
        gone = await _api(nc, f"$JS.API.STREAM.DELETE.{name}", None)
        if gone.get("error"):
            raise FailedPrecondition(f"无法删除已有流 {name}：{gone['error']}", reason="RESTORE_FAILED")
    resp = await _api(nc, f"$JS.API.STREAM.RESTORE.{name}", {"config": item["config"], "state": item["state"]})
    if resp.get("error") or not resp.get("deliver_subject"):
        raise FailedPrecondition(f"流 {name} 无法恢复：{resp.get('error')}", reason="RESTORE_FAILED")
    target = str(resp["deliver_subject"])
    with open(path, "rb") as f:  # noqa: ASYNC230 (the command line tool's own loop, as above)
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            ack = await nc.request(target, chunk, timeout=30)
            if ack.data:
                err = json.loads(ack.data).get("error")
                if err:
                    raise FailedPrecondition(f"流 {name} 恢复失败：{err}", reason="RESTORE_FAILED")
    final = await nc.request(target, b"", timeout=600)
    done: dict[str, Any] = json.loads(final.data or b"{}")
    if done.get("error"):
        raise FailedPrecondition(f"流 {name} 恢复失败：{done['error']}", reason="RESTORE_FAILED")
    state = done.get("state", {})
    want = item["state"]
    if (state.get("messages"), state.get("last_seq")) != (want.get("messages"), want.get("last_seq")):
        raise FailedPrecondition(
            f"流 {name} 恢复后的状态与备份不符：{state.get('messages')} 条/末序号 {state.get('last_seq')}，"
            f"备份为 {want.get('messages')} 条/末序号 {want.get('last_seq')}",
            reason="RESTORE_MISMATCH",
        )
    consumers = await _consumer_names(nc, name)
    if sorted(consumers) != sorted(item.get("consumers", [])):
        raise FailedPrecondition(
            f"流 {name} 恢复后的消费者 {consumers} 与备份 {item.get('consumers')} 不符", reason="RESTORE_MISMATCH"
        )
    return {"name": name, "messages": state.get("messages"), "last_seq": state.get("last_seq"), "consumers": consumers}


async def stream_msg_ids(nc: Any, stream: str, since: datetime | None = None) -> dict[str, int]:
    """``Nats-Msg-Id`` → stream sequence of every message stored at or after ``since``
    (all when None), read headers-only through a short-lived consumer of our own."""
    from nats.js import api

    js = nc.jetstream()
    name = f"jsx-restore-scan-{uuid.uuid4().hex[:12]}"
    cfg = api.ConsumerConfig(
        name=name,
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.ALL if since is None else api.DeliverPolicy.BY_START_TIME,
        opt_start_time=None if since is None else since.astimezone(UTC),
        headers_only=True,
        inactive_threshold=60.0,
        mem_storage=True,
    )
    info = await js._jsm.add_consumer(stream, config=cfg)
    ids: dict[str, int] = {}
    try:
        want = int(info.num_pending or 0)
        got = 0
        sub = await js.pull_subscribe_bind(consumer=name, stream=stream)
        while got < want:
            try:
                msgs = await sub.fetch(min(1000, want - got), timeout=5)
            except TimeoutError:
                raise FailedPrecondition(f"读取流 {stream} 的消息编号超时", reason="SCAN_TIMEOUT") from None
            for m in msgs:
                got += 1
                mid = (m.headers or {}).get("Nats-Msg-Id")
                if mid:
                    ids[mid] = int(m.metadata.sequence.stream)
        await sub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, name)
    return ids


# ---------------------------------------------------------------- outbox ↔ stream


@dataclass
class Reconciled:
    """What :func:`reconcile_outbox` found and changed in one service database."""

    service: str
    checked: int = 0
    #: marked published in the database, absent from the restored stream: unmarked (the relay sends them)
    unmarked: list[str] = field(default_factory=list)
    #: not marked, but the restored stream holds them: marked (the relay would send them twice)
    marked: list[str] = field(default_factory=list)
    scanned_from: str | None = None
    stream_messages_scanned: int = 0


async def reconcile_outbox(
    url: str, nc: Any, service: str, since: datetime, *, margin: timedelta = RECONCILE_MARGIN, full: bool = False
) -> Reconciled:
    """Make the published marks of ``service``'s outbox agree with its restored stream.

    Uncertain rows: those not marked, and those marked at or after ``since`` − ``margin``
    (``since``: when the stream snapshot began; a row marked before it had its PubAck
    before it, so the snapshot holds it). Each is looked up by event id among the
    stream's messages stored from the oldest uncertain row's creation (− ``margin``) on,
    or among all of them with ``full``."""
    from sqlalchemy import or_, select, update

    from jsxcore.outbox import OutboxEvent, stream_name

    t = OutboxEvent
    result = Reconciled(service)
    eng = _sync_engine(url)
    try:
        with eng.begin() as conn:
            from sqlalchemy import inspect

            if "outbox" not in inspect(conn).get_table_names():
                return result
            rows = conn.execute(
                select(t.seq, t.event_id, t.published_at, t.created_at).where(
                    or_(t.published_at.is_(None), t.published_at >= since - margin)
                )
            ).all()
            result.checked = len(rows)
            if not rows:
                return result
            oldest = min(_aware(r.created_at) for r in rows)
            scan_from = None if full else min(oldest, since) - margin
            ids = await stream_msg_ids(nc, stream_name(service), scan_from)
            result.scanned_from = _iso(scan_from) if scan_from else None
            result.stream_messages_scanned = len(ids)
            missing = [r for r in rows if r.published_at is not None and r.event_id not in ids]
            present = [r for r in rows if r.published_at is None and r.event_id in ids]
            if missing:
                conn.execute(
                    update(t)
                    .where(t.seq.in_([r.seq for r in missing]))
                    .values(published_at=None, last_error="恢复后流中没有此事件：重新发布")
                )
            if present:
                conn.execute(
                    update(t).where(t.seq.in_([r.seq for r in present])).values(published_at=_now(), last_error=None)
                )
            result.unmarked = [r.event_id for r in missing]
            result.marked = [r.event_id for r in present]
    finally:
        eng.dispose()
    return result


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


# ---------------------------------------------------------------- databases: restore


def _target_tables(url: str) -> list[str]:
    if engine_of(url) == "sqlite":
        path = sqlite_path(url)
        if not path.exists() or path.stat().st_size == 0:
            return []
        conn = sqlite3.connect(path)
        try:
            return _sqlite_tables(conn)
        finally:
            conn.close()
    eng = _sync_engine(url)
    try:
        with eng.connect() as conn:
            return [_pg_table_name(s, t) for s, t in _pg_tables(conn)]
    finally:
        eng.dispose()


def _restored_facts(url: str) -> dict[str, Any]:
    if engine_of(url) == "sqlite":
        conn = sqlite3.connect(sqlite_path(url))
        try:
            tables = _sqlite_counts(conn)
            heads = _heads_sqlite(conn)
        finally:
            conn.close()
        eng = _sync_engine(url)
        try:
            with eng.connect() as sa:
                audit = audit_check(sa, list(tables))
        finally:
            eng.dispose()
        return {"tables": tables, "schema_heads": heads, "audit": audit}
    eng = _sync_engine(url)
    try:
        with eng.connect() as conn:
            tables = _pg_counts(conn)
            return {"tables": tables, "schema_heads": _pg_heads(conn, tables), "audit": audit_check(conn, list(tables))}
    finally:
        eng.dispose()


def restore_database(item: Mapping[str, Any], directory: Path, url: str, *, force: bool = False) -> dict[str, Any]:
    """Restore one service database from the backup into ``url`` and check it against the
    manifest (every table's row count, the schema heads, the audit chain)."""
    service = str(item["service"])
    src = directory / str(item["file"])
    kind = engine_of(url)
    if kind != item["engine"]:
        raise FailedPrecondition(
            f"服务 {service} 的备份是 {item['engine']} 数据库，不能恢复到 {kind}（{hide_password(url)}）",
            reason="ENGINE_MISMATCH",
        )
    existing = _target_tables(url)
    if existing and not force:
        raise FailedPrecondition(
            f"目标数据库 {hide_password(url)} 不是空库（已有 {len(existing)} 张表，如 {', '.join(existing[:3])}）："
            "拒绝覆盖。请恢复到新建的空数据库，或确认后加 --force",
            reason="DATABASE_NOT_EMPTY",
        )
    if kind == "sqlite":
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and force:
            aside = path.with_name(f"{path.name}.replaced-{_now():%Y%m%dT%H%M%S}")
            path.rename(aside)  # never deleted here: the operator removes it once the restore is accepted
            for suffix in ("-wal", "-shm"):
                extra = path.with_name(path.name + suffix)
                if extra.exists():
                    extra.rename(aside.with_name(aside.name + suffix))
        tmp = path.with_name(path.name + ".restoring")
        source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
        dest = sqlite3.connect(tmp)
        try:
            source.backup(dest)
        finally:
            dest.close()
            source.close()
        _fsync(tmp)
        tmp.rename(path)
    else:
        conninfo, env = _pg_conninfo(url)
        cmd = [pg_binary("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error", "--no-password"]
        cmd += ["--single-transaction", *(["--clean", "--if-exists"] if existing else [])]
        _run_pg([*cmd, f"--dbname={conninfo}", str(src)], env, f"pg_restore 恢复服务 {service} 的数据库")
    facts = _restored_facts(url)
    problems = []
    if facts["schema_heads"] != item["schema_heads"]:
        problems.append(f"结构版本 {facts['schema_heads']}，备份为 {item['schema_heads']}")
    for table, n in item["tables"].items():
        got = facts["tables"].get(table)
        if got != n:
            problems.append(f"表 {table} 有 {got} 行，备份为 {n} 行")
    unexpected = sorted(set(facts["tables"]) - set(item["tables"]))
    if unexpected:
        problems.append(f"多出备份中没有的表：{', '.join(unexpected)}")
    audit = facts["audit"]
    if audit is not None and audit.get("present"):
        if not audit["ok"]:
            problems.append("审计日志链核验失败：" + "；".join(audit["problems"]))
        want = item.get("audit") or {}
        if want.get("present") and (audit["head_seq"], audit["head_hash"]) != (want["head_seq"], want["head_hash"]):
            problems.append(f"审计链头为第 {audit['head_seq']} 条，备份为第 {want['head_seq']} 条（哈希不同）")
    if problems:
        raise FailedPrecondition(
            f"服务 {service} 的数据库恢复后与备份不符：" + "；".join(problems), reason="RESTORE_MISMATCH"
        )
    return {"service": service, **facts}


# ---------------------------------------------------------------- whole backups


def _parse_db_args(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        service, sep, url = pair.partition("=")
        if not sep or not _SERVICE_RE.match(service.strip()) or not url.strip():
            raise ConfigError(f"--db 应写成 服务名=数据库地址，例如 funds=postgresql://jsx@db/funds（得到“{pair}”）")
        out[service.strip()] = url.strip()
    return out


def _database_urls(services: Sequence[str], explicit: Mapping[str, str]) -> dict[str, str]:
    unknown = sorted(set(explicit) - set(services))
    if unknown:
        raise ConfigError(f"--db 指定了未选择的服务：{', '.join(unknown)}")
    return {s: explicit.get(s) or database_url(s) for s in services}


def create(
    directory: Path,
    *,
    urls: Mapping[str, str],
    nats: str | None,
    streams: Sequence[str] = (),
    log: Any = print,
) -> dict[str, Any]:
    """A whole backup into ``directory`` (new or empty): streams, then the database cut,
    then ``manifest.json``. ``nats=None`` skips the streams."""
    if directory.exists() and any(directory.iterdir()):
        raise FailedPrecondition(f"备份目录 {directory} 不是空的：每次备份请用新目录", reason="BACKUP_DIR_NOT_EMPTY")
    directory.mkdir(parents=True, exist_ok=True)
    started = _now()
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "started_at": _iso(started),
        "order": "streams, then one cut of all databases",
        "tool": {
            "jsxcore": _version("jsxcore"),
            "python": platform.python_version(),
            "host": socket.gethostname(),
        },
        "secrets_included": False,
    }
    manifest["streams"] = asyncio.run(backup_streams(nats, directory, streams, log)) if nats else None
    manifest["databases"] = backup_databases(urls, directory, log) if urls else None
    manifest["finished_at"] = _iso(_now())
    manifest["audit_module"] = audit_module() is not None
    tmp = directory / (MANIFEST + ".part")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _fsync(tmp)
    tmp.rename(directory / MANIFEST)
    return manifest


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def verify(directory: Path) -> list[str]:
    """Every problem with a backup directory (empty: sound). Checks each file's size and
    SHA-256 against the manifest, opens each SQLite copy (integrity_check, schema heads)
    and lists each PostgreSQL dump's contents with ``pg_restore --list``."""
    manifest = _read_manifest(directory)
    problems: list[str] = []
    listed = set()
    for item in _files(manifest):
        rel = str(item["file"])
        listed.add(rel)
        path = directory / rel
        if not path.is_file():
            problems.append(f"{rel}：文件不存在")
            continue
        if path.stat().st_size != item["bytes"]:
            problems.append(f"{rel}：大小 {path.stat().st_size} 字节，清单记录 {item['bytes']} 字节")
            continue
        if sha256_file(path) != item["sha256"]:
            problems.append(f"{rel}：SHA-256 与清单不符（文件已损坏或被改动）")
            continue
        if item.get("engine") == "sqlite":
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                check = conn.execute("PRAGMA integrity_check").fetchone()[0]
                if check != "ok":
                    problems.append(f"{rel}：SQLite 完整性检查未通过（{check}）")
                elif _heads_sqlite(conn) != item["schema_heads"]:
                    problems.append(f"{rel}：结构版本 {_heads_sqlite(conn)} 与清单 {item['schema_heads']} 不符")
            except sqlite3.DatabaseError as e:
                problems.append(f"{rel}：不是可读的 SQLite 数据库（{e}）")
            finally:
                conn.close()
        elif item.get("engine") == "postgresql":
            try:
                toc = _run_pg([pg_binary("pg_restore"), "--list", str(path)], {}, f"pg_restore --list {rel}")
            except FailedPrecondition as e:
                problems.append(f"{rel}：{e.message}")
                continue
            tables = {m.group(1) for m in re.finditer(r" TABLE DATA \S+ (\S+) ", toc)}
            missing = sorted(t for t in item["tables"] if t.split(".")[-1] not in tables)
            if missing:
                problems.append(f"{rel}：转储中缺少表数据 {', '.join(missing)}")
    for found in sorted(directory.rglob("*")):
        rel = found.relative_to(directory).as_posix()
        if found.is_file() and rel != MANIFEST and rel not in listed:
            problems.append(f"{rel}：清单中没有这个文件")
    return problems


@dataclass
class RestoreReport:
    streams: list[dict[str, Any]] = field(default_factory=list)
    databases: list[dict[str, Any]] = field(default_factory=list)
    reconciled: list[Reconciled] = field(default_factory=list)


def restore(
    directory: Path,
    *,
    urls: Mapping[str, str],
    nats: str | None,
    streams: bool = True,
    force: bool = False,
    margin: timedelta = RECONCILE_MARGIN,
    full_scan: bool = False,
    log: Any = print,
) -> RestoreReport:
    """Restore the streams (unless ``streams=False``), then the databases in ``urls``, then
    reconcile each outbox with its stream on ``nats`` (``None``: no broker is touched). The
    services must not run meanwhile.

    ``streams=False`` restores databases under the broker's live streams (one service's
    database lost, the broker fine): their durable consumers are then ahead of the restored
    inboxes, so the restored services' own durables (named ``<service>-…``) are deleted; each
    service recreates its durables at start and is redelivered its streams from the first
    message, the inbox skipping what the restored database already applied."""
    problems = verify(directory)
    if problems:
        raise FailedPrecondition("备份校验未通过，未做任何恢复：" + "；".join(problems), reason="BACKUP_INVALID")
    manifest = _read_manifest(directory)
    dbs = {i["service"]: i for i in (manifest.get("databases") or {}).get("items", [])}
    missing = sorted(set(urls) - set(dbs))
    if missing:
        raise FailedPrecondition(f"备份中没有服务 {', '.join(missing)} 的数据库", reason="NOT_IN_BACKUP")
    for service, url in urls.items():  # refuse before touching anything
        if _target_tables(url) and not force:
            raise FailedPrecondition(
                f"服务 {service} 的目标数据库 {hide_password(url)} 不是空库：拒绝覆盖（确认后加 --force）",
                reason="DATABASE_NOT_EMPTY",
            )
    report = RestoreReport()

    async def run() -> None:
        nc = await _nats_connect(nats) if nats else None
        try:
            if nc is not None and streams and manifest.get("streams"):
                for item in manifest["streams"]["items"]:
                    got = await restore_stream(nc, item, directory / item["file"], force=force)
                    report.streams.append(got)
                    log(
                        f"流 {got['name']} 已恢复：{got['messages']} 条消息，消费者 {', '.join(got['consumers']) or '无'}"
                    )
            for service, url in urls.items():
                facts = await asyncio.to_thread(restore_database, dbs[service], directory, url, force=force)
                report.databases.append(facts)
                audit = facts["audit"]
                said = (
                    "本版本没有 jsxcore.audit，未核验审计链"
                    if audit is None
                    else "无审计表"
                    if not audit.get("present")
                    else f"审计链 {audit['records']} 条核验通过，链头第 {audit['head_seq']} 条与备份一致"
                )
                log(
                    f"数据库 {service} 已恢复并核对：{len(facts['tables'])} 张表行数与备份一致，"
                    f"结构版本 {','.join(facts['schema_heads']) or '无'}；{said}"
                )
            if nc is not None and not streams:
                for service in urls:
                    await _replay_consumers(nc, service, log)
            taken = (manifest.get("streams") or {}).get("started_at") or (manifest.get("databases") or {}).get("cut_at")
            if nc is not None and urls and taken:
                since = _parse_iso(taken)
                js = nc.jetstream()
                have = set(await _stream_names(js))
                from jsxcore.outbox import stream_name

                for service, url in urls.items():
                    if stream_name(service) not in have:
                        continue
                    rec = await reconcile_outbox(url, nc, service, since, margin=margin, full=full_scan)
                    report.reconciled.append(rec)
                    log(
                        f"发件箱 {service}：核对 {rec.checked} 行；流中缺少、将重新发布 {len(rec.unmarked)} 条；"
                        f"流中已有、标为已发布 {len(rec.marked)} 条"
                    )
        finally:
            if nc is not None:
                await nc.close()

    asyncio.run(run())
    return report


async def _replay_consumers(nc: Any, service: str, log: Any) -> None:
    """Delete ``service``'s durables (``<service>-…``) on every ``JSX_*`` stream, saying which."""
    js = nc.jetstream()
    for stream in await _stream_names(js):
        if not stream.startswith("JSX_"):
            continue
        info = await js.stream_info(stream)
        for name in await _consumer_names(nc, stream):
            if not name.startswith(f"{service}-"):
                continue
            await js.delete_consumer(stream, name)
            lost = info.state.first_seq > 1
            log(
                f"消费者 {stream}/{name} 已删除：服务 {service} 启动后重建并从流的第一条消息重新接收，"
                "收件箱跳过已处理的事件"
                + (f"（注意：流已不含第 1–{info.state.first_seq - 1} 条消息，无法重放）" if lost else "")
            )


# ---------------------------------------------------------------- CLI


def _services(args: argparse.Namespace) -> list[str]:
    chosen = list(args.service or SERVICES)
    for s in chosen:
        if not _SERVICE_RE.match(s):
            raise ConfigError(f"服务名“{s}”不合法")
    return chosen


def _cmd_create(args: argparse.Namespace) -> int:
    urls = {} if args.no_databases else _database_urls(_services(args), _parse_db_args(args.db or []))
    nats = None if args.no_streams else (args.nats_url or nats_url())
    t0 = time.monotonic()
    manifest = create(Path(args.dir), urls=urls, nats=nats, streams=args.stream or [])
    dbs = manifest.get("databases") or {}
    spread = f"，各数据库快照相差 {dbs['cut_spread_ms']:.1f} 毫秒" if dbs.get("items") else ""
    print(f"备份完成：{args.dir}（用时 {time.monotonic() - t0:.1f} 秒{spread}）。可用 jsx backup verify 校验。")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    problems = verify(Path(args.dir))
    if problems:
        print(f"备份校验失败，发现 {len(problems)} 处问题：")
        for p in problems:
            print(f"  - {p}")
        return 1
    manifest = _read_manifest(Path(args.dir))
    n = sum(1 for _ in _files(manifest))
    print(f"备份校验通过：{n} 个文件的大小和 SHA-256 与清单一致（备份于 {manifest['started_at']}）。")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    manifest = _read_manifest(directory)
    in_backup = [i["service"] for i in (manifest.get("databases") or {}).get("items", [])]
    services = [] if args.no_databases else list(args.service or in_backup)
    urls = _database_urls(services, _parse_db_args(args.db or []))
    nats = None if args.no_nats else (args.nats_url or nats_url())
    report = restore(
        directory,
        urls=urls,
        nats=nats,
        streams=not args.no_streams,
        force=args.force,
        margin=timedelta(seconds=args.reconcile_margin),
        full_scan=args.full_scan,
    )
    print(
        f"恢复完成：流 {len(report.streams)} 个、数据库 {len(report.databases)} 个，均与备份清单一致。"
        "现在可以启动各服务；启动后发件箱只补发流中缺少的事件。"
    )
    return 0


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``jsx backup create|verify`` and ``jsx restore``."""
    db_help = "服务名=数据库地址，可多次给出；默认取服务自己的配置（JSX_<服务>_DATABASE_URL 等）"
    p = sub.add_parser(
        "backup",
        help="备份运行中的整个系统（NATS 流 + 各服务数据库）或校验备份",
        description="在线备份：先快照各 JSX_* 流（含消费者进度），再同时截取各服务数据库（PostgreSQL 用 pg_dump，"
        "SQLite 用在线备份接口），最后写清单 manifest.json（大小、SHA-256、每张表行数、结构版本）。"
        "备份不含密钥：JSX_PII_KEY 等须另行保管，恢复时使用同一套密钥。",
    )
    bsub = p.add_subparsers(dest="backup_command", metavar="SUBCOMMAND", required=True)
    c = bsub.add_parser("create", help="新建一份备份到空目录")
    c.add_argument("dir", help="备份目录（新建或空目录）")
    c.add_argument("--service", action="append", help=f"只备份这些服务的数据库（默认 {'、'.join(SERVICES)}）")
    c.add_argument("--db", action="append", metavar="SERVICE=URL", help=db_help)
    c.add_argument("--nats-url", help="NATS 地址（默认 JSX_NATS_URL 或 nats://127.0.0.1:4222）")
    c.add_argument("--stream", action="append", help="只快照这些流（默认所有 JSX_* 流）")
    c.add_argument("--no-streams", action="store_true", help="不快照 NATS 流")
    c.add_argument("--no-databases", action="store_true", help="不备份数据库")
    c.set_defaults(func=_cmd_create)
    v = bsub.add_parser("verify", help="按清单校验备份目录中每个文件")
    v.add_argument("dir", help="备份目录")
    v.set_defaults(func=_cmd_verify)

    r = sub.add_parser(
        "restore",
        help="把备份恢复到全新的 NATS 和空数据库（服务须停止）",
        description="顺序：先恢复流，再恢复数据库，逐表核对行数、结构版本和审计链，最后使各发件箱的已发布标记与流一致"
        "（流中缺少的事件由服务启动后重新发布，流中已有的不再发布）。目标流已存在或目标数据库非空时拒绝，除非 --force。",
    )
    r.add_argument("dir", help="备份目录")
    r.add_argument("--service", action="append", help="只恢复这些服务的数据库（默认备份中的全部）")
    r.add_argument("--db", action="append", metavar="SERVICE=URL", help=db_help)
    r.add_argument("--nats-url", help="目标 NATS 地址（默认 JSX_NATS_URL 或 nats://127.0.0.1:4222）")
    r.add_argument(
        "--no-streams",
        action="store_true",
        help="不恢复流，只恢复数据库到现有的流之下：所恢复服务的持久消费者被删除，服务启动后从头重收（收件箱去重）",
    )
    r.add_argument("--no-nats", action="store_true", help="完全不连接 NATS（不恢复流，也不核对发件箱）")
    r.add_argument("--no-databases", action="store_true", help="不恢复数据库")
    r.add_argument("--force", action="store_true", help="覆盖已存在的流和非空数据库（SQLite 原文件改名保留）")
    r.add_argument(
        "--reconcile-margin",
        type=float,
        default=RECONCILE_MARGIN.total_seconds(),
        metavar="SECONDS",
        help="核对发件箱时容许的主机时钟误差（默认 600 秒）",
    )
    r.add_argument("--full-scan", action="store_true", help="核对发件箱时读取整个流（不按时间截取）")
    r.set_defaults(func=_cmd_restore)
