"""Migrations one at a time: many replicas starting together migrate a fresh
database once; the others wait on the lock and then find nothing to do.

Each migrator is a real child process (``MIGRATOR`` below) on its own
connection, started together: every child imports everything, says
``ready``, and blocks until the test writes ``go`` to all of them at once.

* PostgreSQL, deterministic: the test itself holds the service's advisory
  lock first, so every child must wait; it releases only once all of them are
  seen waiting (their log line, and ``pg_locks`` rows that are not granted).
  All succeed, one migrates from empty to head, the rest find head; the
  version table holds head once.
* PostgreSQL, no lock (``migrate(…, lock=False)``): the same start shows what
  the lock prevents — all read an empty database, all run the first
  migration in their own transaction, and all but the first fail on the
  catalog's unique index ("already exists" / duplicate key).
* SQLite: the same with the lock file (``<file>.migrate-lock``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jsxcore.migrations import lock_key, script_location_of, sqlite_lock_file, sync_url
from jsxcore.testing.fixtures import _require_postgres, create_postgres_database, drop_postgres_database

pytestmark = pytest.mark.slow  # starts N Python processes per test

N = 4
SERVICE = "funds"  # the longest history: 13 revisions, so the migrators overlap for long
WAIT_S = 120

MIGRATOR = textwrap.dedent(
    """
    import json, logging, sys
    from jsxcore.migrations import migrate, script_location_of

    url, service, lock = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("jsxcore.migrations")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    location = script_location_of(service)
    print("ready", flush=True)
    sys.stdin.readline()  # "go": every migrator starts at the same moment
    try:
        run = migrate(location, url, lock=lock)
        out = {"ok": True, "before": run.before, "after": run.after, "waited": run.waited, "lock": run.lock}
    except Exception as e:
        out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out), flush=True)
    """
)


class Migrators:
    """N migrator processes, ready and waiting for ``go``."""

    def __init__(self, url: str, n: int, *, lock: bool = True) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-c", MIGRATOR, url, SERVICE, "1" if lock else "0"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        for p in self.procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            assert line == "ready", f"migrator did not start: {line!r} {self._stderr(p)}"

    def _stderr(self, p: subprocess.Popen[str]) -> str:
        if p.poll() is None:
            return ""
        assert p.stderr is not None
        return p.stderr.read()

    def go(self) -> None:
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()

    def wait_until_all_wait(self) -> list[str]:
        """Each child's first log line, read once it has logged that it waits for the lock."""
        lines = []
        for p in self.procs:
            assert p.stderr is not None
            lines.append(p.stderr.readline().strip())
        return lines

    def results(self) -> list[dict[str, Any]]:
        out = []
        for p in self.procs:
            stdout, stderr = p.communicate(timeout=WAIT_S)
            assert p.returncode == 0, stderr
            out.append(json.loads(stdout.strip().splitlines()[-1]) | {"stderr": stderr})
        return out

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@contextmanager
def migrators(url: str, n: int = N, *, lock: bool = True) -> Iterator[Migrators]:
    m = Migrators(url, n, lock=lock)
    try:
        yield m
    finally:
        m.kill()


@pytest.fixture
def pg_url() -> Iterator[str]:
    _require_postgres()
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


def _versions(url: str) -> list[str]:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text("SELECT version_num FROM alembic_version"))]
    finally:
        engine.dispose()


def _head() -> str:
    from alembic.script import ScriptDirectory

    from jsxcore.migrations import alembic_config

    head = ScriptDirectory.from_config(alembic_config(script_location_of(SERVICE), "sqlite://")).get_current_head()
    assert head is not None
    return head


def _assert_migrated_once(results: list[dict[str, Any]], url: str, *, all_waited: bool) -> None:
    head = _head()
    assert all(r["ok"] for r in results), [r.get("error") for r in results]
    fresh = [r for r in results if r["before"] == []]
    assert len(fresh) == 1, f"exactly one migrator finds the database empty: {results}"
    assert fresh[0]["after"] == [head]
    for r in results:
        if r is not fresh[0]:
            assert r["before"] == r["after"] == [head], "the others find nothing to do"
    if all_waited:
        assert all(r["waited"] for r in results)
    assert _versions(url) == [head]


def _waiting_on_advisory_locks(conn: Any, database: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        " WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = %s",
        (database,),
    ).fetchone()
    return int(row[0])


def test_postgresql_replicas_wait_on_the_advisory_lock_and_migrate_once(pg_url: str) -> None:
    import psycopg

    key = lock_key(script_location_of(SERVICE))
    database = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as holder, migrators(pg_url) as m:
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        m.go()
        said = m.wait_until_all_wait()
        assert all("等待" in line and str(key) in line for line in said), said
        # each logs just before it blocks in pg_advisory_lock: poll the server until all are in
        deadline = time.monotonic() + WAIT_S
        while _waiting_on_advisory_locks(holder, database) < N and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waiting_on_advisory_locks(holder, database) == N, "every migrator waits in the server"
        holder.execute("SELECT pg_advisory_unlock(%s)", (key,))
        results = m.results()
    _assert_migrated_once(results, pg_url, all_waited=True)
    assert {r["lock"] for r in results} == {f"pg_advisory_lock({key})"}


def test_postgresql_replicas_started_together_migrate_once(pg_url: str) -> None:
    with migrators(pg_url) as m:
        m.go()
        results = m.results()
    _assert_migrated_once(results, pg_url, all_waited=False)
    # the one that found the database empty held the lock; the others were behind it
    assert sum(r["waited"] for r in results) >= 1


def test_postgresql_without_the_lock_the_same_start_fails(pg_url: str) -> None:
    """What the lock is for: unlocked migrators all see an empty database and collide."""
    with migrators(pg_url, lock=False) as m:
        m.go()
        results = m.results()
    failed = [r for r in results if not r["ok"]]
    assert len(failed) >= 1, f"the unlocked race went through: {results}"
    for r in failed:
        assert "already exists" in r["error"] or "duplicate key" in r["error"], r["error"]
    # and the one that got through left one head
    assert _versions(pg_url) == [_head()]


def test_sqlite_replicas_wait_on_the_lock_file_and_migrate_once(tmp_path: Path) -> None:
    import fcntl

    url = f"sqlite:///{tmp_path / 'funds.db'}"
    lock_file = sqlite_lock_file(url)
    assert lock_file == tmp_path / "funds.db.migrate-lock"
    with open(lock_file, "a+b") as held, migrators(url) as m:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        m.go()
        said = m.wait_until_all_wait()
        assert all("等待" in line and str(lock_file) in line for line in said), said
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
        results = m.results()
    _assert_migrated_once(results, url, all_waited=True)
    assert {r["lock"] for r in results} == {f"flock({lock_file})"}


def test_sqlite_replicas_started_together_migrate_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'funds.db'}"
    with migrators(url) as m:
        m.go()
        results = m.results()
    _assert_migrated_once(results, url, all_waited=False)


def test_lock_key_depends_on_the_service_not_where_it_is_installed(tmp_path: Path) -> None:
    here = script_location_of(SERVICE)
    elsewhere = tmp_path / "site-packages" / "jsx_funds" / "migrations"
    assert lock_key(here) == lock_key(elsewhere)
    assert len({lock_key(script_location_of(s)) for s in ("members", "funds", "events")}) == 3
    assert -(2**63) <= lock_key(here) < 2**63


def test_in_memory_sqlite_needs_no_lock() -> None:
    assert sqlite_lock_file("sqlite://") is None
    assert sqlite_lock_file("sqlite:///:memory:") is None


def test_jsx_migrate_command(tmp_path: Path) -> None:
    """The operator's command (the Kubernetes init container runs it): migrate, then nothing to do."""
    env = {"PATH": str(Path(sys.executable).parent), "JSX_DEV": "1", "JSX_DATA_DIR": str(tmp_path)}
    jsx = str(Path(sys.executable).parent / "jsx")
    first = subprocess.run([jsx, "migrate", "events"], env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert first.returncode == 0, first.stderr
    assert "已升级" in first.stdout
    again = subprocess.run([jsx, "migrate", "events"], env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert again.returncode == 0 and "已是最新" in again.stdout, again
    bad = subprocess.run([jsx, "migrate", "nosuch"], env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert bad.returncode == 2 and "nosuch" in bad.stderr
