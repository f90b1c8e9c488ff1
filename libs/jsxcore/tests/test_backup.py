"""jsxcore.backup against a real nats-server, on SQLite and PostgreSQL: a database copied
while it is written holds exactly what its manifest counts; a stream snapshot restores
with its consumers' positions; a restore refuses to overwrite; the outbox marks are made
to agree with the restored stream, so the relay sends exactly what the stream lacks;
``jsx backup verify`` names a damaged file. (The whole-stack drill: tests/test_backup_drill.py.)"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import nats
import pytest
from sqlalchemy import func, insert, select, text, update

from jsxcore import backup
from jsxcore.db import CoreBase, create_engine, session_factory, transaction
from jsxcore.errors import FailedPrecondition
from jsxcore.outbox import OutboxEvent, Relay, add_event, stream_name
from jsxcore.testing.fixtures import create_postgres_database, drop_postgres_database


def _payload() -> Any:
    from google.protobuf import struct_pb2

    return struct_pb2.Value(string_value="x")


async def _emit(sessions: Any, service: str, n: int) -> list[str]:
    async with transaction(sessions) as s:
        return [add_event(s, f"jsx.{service}.thing.happened", _payload()) for _ in range(n)]


@pytest.fixture
def fresh_url(db_url: str, tmp_path: Path) -> Any:
    """Another empty database of the same kind as ``db_url`` (the restore target)."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'svc.db'}"
        return
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        message = "pg_dump/pg_restore not installed (apt-get install postgresql-client; python3 dev.py test does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


async def test_backup_restore_roundtrip(db_url: str, fresh_url: str, nats_url: str, tmp_path: Path) -> None:
    service = "t" + uuid.uuid4().hex[:10]
    stream = stream_name(service)
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(CoreBase.metadata.create_all)
        await conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        await conn.execute(text("INSERT INTO alembic_version VALUES ('0007_test')"))
        await conn.execute(text("CREATE TABLE things (id INTEGER PRIMARY KEY, name VARCHAR(20))"))
    sessions = session_factory(engine)
    relay = Relay(engine, nats_url, service=service)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        await relay.ensure_streams()
        ids = await _emit(sessions, service, 6)
        assert (await relay.publish_pending())[0] == 6
        # a durable consumer that has acked 4 of the 6 (its position travels in the snapshot)
        await js.add_consumer(stream, durable_name="other-things", ack_policy="explicit")
        sub = await js.pull_subscribe_bind("other-things", stream)
        for m in await sub.fetch(4, timeout=5):
            await m.ack()
        await asyncio.sleep(0.2)

        # Writes go on while the database is copied: the copy holds what its manifest counts.
        stop = asyncio.Event()

        async def writer() -> int:
            n = 0
            while not stop.is_set():
                async with transaction(sessions) as s:
                    await s.execute(insert(CoreBase.metadata.tables["outbox"]).values(**_row(service, f"w{n}")))
                n += 1
                await asyncio.sleep(0.005)
            return n

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.1)
        out = tmp_path / "backup"
        manifest = await asyncio.to_thread(backup.create, out, urls={service: db_url}, nats=nats_url, streams=[stream])
        stop.set()
        written = await task
        [db] = manifest["databases"]["items"]
        [st] = manifest["streams"]["items"]
        assert db["schema_heads"] == ["0007_test"] and db["tables"]["things"] == 0
        assert 6 <= db["tables"]["outbox"] < 6 + written + 1, (db["tables"], written)
        assert st["messages"] == 6 and st["consumers"] == ["other-things"]
        assert backup.verify(out) == []

        # Restoring onto a broker that has the stream, or into a database that is not empty: refused.
        with pytest.raises(FailedPrecondition) as e:
            await asyncio.to_thread(backup.restore, out, urls={service: fresh_url}, nats=nats_url, log=_quiet)
        assert e.value.reason == "STREAM_EXISTS" and backup._target_tables(fresh_url) == []
        with pytest.raises(FailedPrecondition) as e:
            await asyncio.to_thread(backup.restore, out, urls={service: db_url}, nats=nats_url, log=_quiet)
        assert e.value.reason == "DATABASE_NOT_EMPTY" and "不是空库" in e.value.message

        await relay.stop()
        await js.delete_stream(stream)  # a fresh broker, as far as this stream goes
        report = await asyncio.to_thread(backup.restore, out, urls={service: fresh_url}, nats=nats_url, log=_quiet)
        [rec] = report.reconciled
        # the writer's rows were never published: not in the stream, they stay for the relay
        assert rec.unmarked == [] and rec.marked == []
        assert (await js.stream_info(stream)).state.messages == 6
        ci = await js.consumer_info(stream, "other-things")
        assert ci.ack_floor.stream_seq == 4 and ci.num_pending == 2

        # The two windows of an online backup, staged in the restored database:
        restored = create_engine(fresh_url)
        rsessions = session_factory(restored)
        async with transaction(rsessions) as s:
            # (a) published before the snapshot, marked after the cut → unmarked here, but in the stream
            await s.execute(update(OutboxEvent).where(OutboxEvent.event_id == ids[5]).values(published_at=None))
            # (b) marked published after the stream snapshot → marked here, absent from the stream
            await s.execute(insert(OutboxEvent).values(**_row(service, "late", published=True)))
        rec = await _reconcile(fresh_url, nats_url, service, manifest)
        assert rec.marked == [ids[5]] and rec.unmarked == ["late"], rec
        # the relay then sends the writer's rows and "late", and nothing the stream already has
        relay2 = Relay(restored, nats_url, service=service)
        try:
            sent, _ = await relay2.publish_pending()
        finally:
            await relay2.stop()
        assert sent == db["tables"]["outbox"] - 6 + 1
        msg_ids = await _all_ids(nc, stream)
        assert len(msg_ids) == len(set(msg_ids)) == 6 + sent  # each event once
        async with rsessions() as s:
            left = (await s.execute(select(func.count()).where(OutboxEvent.published_at.is_(None)))).scalar_one()
        assert left == 0
        await restored.dispose()

        # One database lost, the broker fine: restored under the live stream (streams=False).
        # The service's own durables are deleted (it replays the stream, its inbox skipping
        # what it has); the live stream holds every event the copy had not yet marked.
        await js.add_consumer(stream, durable_name=f"{service}-projection", ack_policy="explicit")
        third = _third(fresh_url, tmp_path)
        try:
            report = await asyncio.to_thread(
                backup.restore, out, urls={service: third}, nats=nats_url, streams=False, log=_quiet
            )
            assert report.streams == [] and report.reconciled[0].unmarked == []
            assert len(report.reconciled[0].marked) == db["tables"]["outbox"] - 6  # the writer's rows, sent since
            assert {c.name for c in await js.consumers_info(stream)} == {"other-things"}
        finally:
            if not third.startswith("sqlite"):
                drop_postgres_database(third)

        # A damaged file is named by verify, and a restore from it does nothing.
        bad = tmp_path / "damaged"
        shutil.copytree(out, bad)
        target = bad / db["file"]
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
        problems = backup.verify(bad)
        assert len(problems) == 1 and db["file"] in problems[0] and "SHA-256" in problems[0], problems
        (bad / "stray.txt").write_text("x")
        assert any("stray.txt" in p for p in backup.verify(bad))
    finally:
        await relay.stop()
        await nc.close()
        await engine.dispose()


def _third(like: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'third.db'}" if like.startswith("sqlite") else create_postgres_database()


def _quiet(*_a: Any) -> None:
    pass


def _row(service: str, event_id: str, *, published: bool = False) -> dict[str, Any]:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return {
        "event_id": event_id,
        "subject": f"jsx.{service}.thing.happened",
        "event_type": "google.protobuf.Value",
        "payload": _payload().SerializeToString(),
        "headers": {},
        "created_at": now,
        "published_at": now if published else None,
        "attempts": 0,
    }


async def _reconcile(url: str, nats_url: str, service: str, manifest: dict[str, Any]) -> backup.Reconciled:
    nc = await nats.connect(nats_url)
    try:
        since = backup._parse_iso(manifest["streams"]["started_at"])
        return await backup.reconcile_outbox(url, nc, service, since)
    finally:
        await nc.close()


async def _all_ids(nc: Any, stream: str) -> list[str]:
    js = nc.jetstream()
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        m = await js.get_msg(stream, seq)
        out.append(m.headers["Nats-Msg-Id"])
    return out
