"""Alembic, once for every service — and one migrator at a time.

Each service keeps its own migration history (``migrations/versions``) in its
own package; what is the same everywhere lives here:

* ``run_env(Base.metadata)`` — the whole body of a service's ``env.py``: it
  migrates jsxcore's CoreBase tables (outbox, inbox, idempotency keys) and the
  service's tables together, online or offline (``alembic upgrade --sql``),
  with batch mode on SQLite (which can only ALTER a table by copying it).
* ``migrate(script_location, url)`` — bring a database to a revision; services
  call it at startup and tests on every fresh database.
* ``jsx migrate SERVICE`` — the operator's command (a Kubernetes init
  container, a systemd ``ExecStartPre``, a release step): the same ``migrate``.

**One at a time.** Many replicas of a service may start together (a rolling
update, a scale-up, a node coming back), and each migrates before it serves.
``migrate`` therefore first takes a lock that only one migrator of that
service's database can hold, then reads the revision, upgrades, and lets go;
the others wait on the lock and then find nothing to do:

* PostgreSQL: a session-level ``pg_advisory_lock(key)`` on a connection of
  its own (autocommit, held across Alembic's transaction on another
  connection, released by ``pg_advisory_unlock`` and in any case when that
  connection closes — a killed migrator never leaves it behind). ``key`` is
  :func:`lock_key`: 64 bits of SHA-256 over the name of the package the
  migrations belong to (``jsx_funds``), so it is the same for every replica
  wherever the code is installed. Advisory locks are per database, so
  services on one server do not wait for each other.
* SQLite: an exclusive ``flock`` on a lock file beside the database
  (``<file>.migrate-lock``, left in place; empty). SQLite's own write lock is
  not enough: Alembic does not run SQLite DDL in one transaction, so a
  second migrator could see a half-built schema between two statements.
  An in-memory database needs no lock.

Operators can also run the alembic CLI against a service's folder with
``-x url=postgresql://…`` — that bypasses the lock; prefer ``jsx migrate``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, MetaData, create_engine, make_url, pool, text

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("jsxcore.migrations")

#: How often a waiting SQLite migrator retries its lock file (PostgreSQL waits in the server).
_FLOCK_POLL_S = 0.05


def sync_url(url: str) -> str:
    """Alembic runs on the synchronous drivers: sqlite3 and psycopg 3."""
    if url.startswith("sqlite+aiosqlite:"):
        return "sqlite:" + url[len("sqlite+aiosqlite:") :]
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def alembic_config(script_location: Path | str, url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    # ConfigParser interpolation: a literal % in a password must be doubled
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


@dataclass(frozen=True)
class MigrationRun:
    """What one ``migrate`` call found and did."""

    #: the database's Alembic heads when this migrator got the lock (empty: a fresh database)
    before: tuple[str, ...]
    #: and after the upgrade
    after: tuple[str, ...]
    #: True when another migrator held the lock at first and this one waited for it
    waited: bool
    #: how the run was serialised, e.g. ``pg_advisory_lock(-4172…)`` or ``flock(/data/funds.db.migrate-lock)``
    lock: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def lock_key(script_location: Path | str) -> int:
    """The advisory-lock key of a service's migrations: a signed 64-bit
    integer from the package name (``…/jsx_funds/migrations`` → ``jsx_funds``),
    the same on every replica wherever it is installed."""
    folder = Path(script_location).resolve()
    name = folder.parent.name if folder.name == "migrations" else folder.name
    digest = hashlib.sha256(f"jsx.migrations:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _heads(engine: Engine) -> tuple[str, ...]:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))


@contextlib.contextmanager
def _pg_lock(engine: Engine, key: int) -> Iterator[bool]:
    """Hold ``pg_advisory_lock(key)`` on a connection of its own; yields whether it had to wait."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        waited = not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        if waited:
            log.info("另一个副本正在迁移数据库，等待它完成（pg_advisory_lock %d）", key)
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield waited
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            except Exception:  # a broken connection: closing it releases the lock all the same
                log.warning("迁移锁 %d 释放失败，连接关闭时会自动释放", key, exc_info=True)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if missing); yields whether it had to wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        waited = False
        if sys.platform == "win32":  # the services run on Linux; kept usable on a clerk's Windows PC
            import msvcrt

            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    waited = True
                    time.sleep(_FLOCK_POLL_S)
            try:
                yield waited
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("另一个进程正在迁移数据库，等待它完成（%s）", path)
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                waited = True
            try:
                yield waited
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def sqlite_lock_file(url: str) -> Path | None:
    """The lock file beside a SQLite database file; None for an in-memory database."""
    database = make_url(sync_url(url)).database
    if not database or database == ":memory:" or "mode=memory" in database:
        return None
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database).absolute().with_name(Path(database).name + ".migrate-lock")


def migrate(script_location: Path | str, url: str, revision: str = "head", *, lock: bool = True) -> MigrationRun:
    """Upgrade the database at ``url`` to ``revision``, one migrator at a time
    (see the module docstring). Blocking: call it before the event loop
    starts, or through ``asyncio.to_thread``. ``lock=False`` exists for the
    test that shows what the lock prevents; nothing else should use it."""
    from alembic import command

    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        if not lock:
            held: contextlib.AbstractContextManager[bool] = contextlib.nullcontext(False)
            how = "none"
        elif engine.dialect.name == "postgresql":
            key = lock_key(script_location)
            held, how = _pg_lock(engine, key), f"pg_advisory_lock({key})"
        elif engine.dialect.name == "sqlite" and (path := sqlite_lock_file(url)) is not None:
            held, how = _file_lock(path), f"flock({path})"
        else:
            held, how = contextlib.nullcontext(False), "none (in-memory database)"
        with held as waited:
            before = _heads(engine)
            command.upgrade(alembic_config(script_location, url), revision)
            after = _heads(engine)
    finally:
        engine.dispose()
    if before != after:
        log.info("数据库已迁移：%s → %s", ",".join(before) or "（空库）", ",".join(after))
    return MigrationRun(before=before, after=after, waited=waited, lock=how)


def script_location_of(service: str) -> Path:
    """``members`` → the installed ``jsx_members/migrations`` folder."""
    from jsxcore.errors import ConfigError

    package = "jsx_" + service.replace("-", "_")
    spec = importlib.util.find_spec(package) if service.replace("-", "_").isidentifier() else None
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        if (Path(folder) / "migrations" / "env.py").is_file():
            return Path(folder) / "migrations"
    raise ConfigError(f"服务“{service}”未安装或没有数据库迁移脚本（找不到 {package}/migrations/env.py）")


def _cmd_migrate(args: argparse.Namespace) -> int:
    from jsxcore.config import ServiceConfig, hide_password

    location = script_location_of(args.service)
    url = args.database_url or ServiceConfig.from_env(args.service).database_url
    run = migrate(location, url, args.revision)
    where = f"{args.service}（{hide_password(url)}）"
    waited = "；等待了另一个副本的迁移" if run.waited else ""
    if run.changed:
        print(f"{where} 数据库结构已升级：{','.join(run.before) or '空库'} → {','.join(run.after)}{waited}")
    else:
        print(f"{where} 数据库结构已是最新（{','.join(run.after) or '无'}），无需升级{waited}")
    return 0


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``jsx migrate SERVICE``: the operator's (and Kubernetes init container's) migration step."""
    p = sub.add_parser(
        "migrate",
        help="升级一个服务的数据库结构（多副本同时执行也只迁移一次）",
        description="升级 members/funds/events 之一的数据库结构。数据库地址取 --database-url，"
        "否则与服务相同（JSX_<服务>_DATABASE_URL / JSX_DATABASE_URL）。"
        "同一数据库同一时刻只有一个迁移在执行，其余等待后发现已是最新。",
    )
    p.add_argument("service", help="服务名：members、funds 或 events")
    p.add_argument("--database-url", help="数据库地址；默认取服务配置")
    p.add_argument("--revision", default="head", help="目标版本，默认 head")
    p.set_defaults(func=_cmd_migrate)


def run_env(*service_metadata: MetaData) -> None:
    """The body of a service's ``migrations/env.py``."""
    from alembic import context

    import jsxcore.idempotency  # registers its table on CoreBase
    import jsxcore.outbox  # noqa: F401  (registers its tables on CoreBase)
    from jsxcore.db import CoreBase

    target = [CoreBase.metadata, *service_metadata]
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    url = sync_url(url or "")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target, literal_binds=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context.configure(
                connection=conn,
                target_metadata=target,
                compare_type=True,
                render_as_batch=conn.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
