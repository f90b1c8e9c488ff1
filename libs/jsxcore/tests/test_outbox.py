"""Outbox → JetStream → inbox against a real nats-server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nats
import pytest
from google.protobuf import struct_pb2
from sqlalchemy import func, insert, select

from jsxcore import errors
from jsxcore.db import CoreBase, create_engine, session_factory, transaction
from jsxcore.outbox import (
    HEADER_EVENT_TYPE,
    HEADER_MSG_ID,
    InboxEvent,
    OutboxEvent,
    Relay,
    add_event,
    stream_name,
)

WORKER = Path(__file__).with_name("outbox_worker.py")
_spec = importlib.util.spec_from_file_location("outbox_worker", WORKER)
assert _spec and _spec.loader
w = importlib.util.module_from_spec(_spec)
sys.modules["outbox_worker"] = w
_spec.loader.exec_module(w)


@pytest.fixture
async def db(db_url: str):
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(CoreBase.metadata.create_all)
        await conn.run_sync(w.EffectBase.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def service() -> str:
    # A stream of its own per test: the broker is shared by the session.
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
async def js(nats_url: str):
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


async def stream_msgs(js, service: str) -> list:
    """Every message in the service's stream, in order."""
    info = await js.stream_info(stream_name(service))
    return (
        [await js.get_msg(stream_name(service), seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]
        if info.state.messages
        else []
    )


async def emit(sessions, service: str, n: int = 1, mode: str = "ok") -> list[str]:
    ids = []
    async with transaction(sessions) as s:
        for i in range(n):
            ids.append(add_event(s, f"jsx.{service}.thing.happened", w.ThingHappened(amount_fen=100 + i, mode=mode)))
    return ids


async def unpublished(sessions) -> int:
    async with sessions() as s:
        return (await s.execute(select(func.count()).where(OutboxEvent.published_at.is_(None)))).scalar_one()


async def wait_for(pred, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await pred():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.0f} s")
        await asyncio.sleep(0.1)


def run_worker(*args: str, fault: str | None = None) -> int:
    env = dict(os.environ)
    env.pop("JSX_FAULT", None)
    if fault:
        env["JSX_FAULT"] = fault
    return subprocess.run([sys.executable, str(WORKER), *args], env=env, timeout=60).returncode


# --------------------------------------------------------------------------- producer


async def test_add_event_fills_envelope_and_checks_subject(db, service) -> None:
    sessions = session_factory(db)
    msg = w.ThingHappened(amount_fen=5)
    async with transaction(sessions) as s:
        eid = add_event(s, f"jsx.{service}.thing.happened", msg)
        with pytest.raises(errors.InvalidArgument) as bad:
            add_event(s, "jsx.Funds.thing.happened", w.ThingHappened())
        assert bad.value.reason == "INVALID_EVENT_SUBJECT"
        for subject in ("jsx.funds.thing", "funds.a.b.c", "jsx.funds.a.b.c", "jsx.funds.a-b.c", "jsx.funds._a.c"):
            with pytest.raises(errors.InvalidArgument):
                add_event(s, subject, w.ThingHappened())
        # A message type without envelope fields is still a valid payload.
        add_event(s, f"jsx.{service}.thing.noted", struct_pb2.Value(string_value="x"), event_id="fixed-1")
    assert msg.event_id == eid and uuid.UUID(eid)
    assert msg.HasField("occurred_at") and msg.occurred_at.seconds > 1_600_000_000
    async with sessions() as s:
        rows = (await s.execute(select(OutboxEvent).order_by(OutboxEvent.seq))).scalars().all()
    assert [(r.event_id, r.event_type) for r in rows] == [
        (eid, "jsx.test.v1.ThingHappened"),
        ("fixed-1", "google.protobuf.Value"),
    ]
    assert w.ThingHappened.FromString(rows[0].payload) == msg


async def test_add_event_takes_subject_from_the_proto_option(db) -> None:
    from jsx.funds.v1 import events_pb2

    sessions = session_factory(db)
    msg = events_pb2.PaymentIssued(payment="paymentBatches/b1/payments/p1")
    msg.amount.fen = 94000
    async with transaction(sessions) as s:
        eid = add_event(s, None, msg)
        with pytest.raises(ValueError):
            add_event(s, None, w.ThingHappened())  # declares no subject
    async with sessions() as s:
        row = (await s.execute(select(OutboxEvent))).scalar_one()
    assert (row.event_id, row.subject, row.event_type) == (
        eid,
        "jsx.funds.payment.issued",
        "jsx.funds.v1.PaymentIssued",
    )
    assert events_pb2.PaymentIssued.FromString(row.payload).event_id == eid


async def test_rolled_back_event_is_never_published(db, nats_url, js, service) -> None:
    sessions = session_factory(db)
    with pytest.raises(RuntimeError):  # noqa: PT012  (the event and the failure in one transaction)
        async with transaction(sessions) as s:
            add_event(s, f"jsx.{service}.thing.happened", w.ThingHappened(amount_fen=1))
            raise RuntimeError("the state change failed")
    [kept] = await emit(sessions, service)
    relay = Relay(db, nats_url, service=service)
    await relay.ensure_streams()
    assert await relay.publish_pending() == (1, False)
    msgs = await stream_msgs(js, service)
    assert [m.headers[HEADER_MSG_ID] for m in msgs] == [kept]
    assert msgs[0].headers[HEADER_EVENT_TYPE] == "jsx.test.v1.ThingHappened"
    assert await unpublished(sessions) == 0
    await relay.stop()


@pytest.mark.slow
async def test_relay_killed_between_publish_and_mark_event_arrives_once(db, db_url, nats_url, js, service) -> None:
    sessions = session_factory(db)
    ids = await emit(sessions, service, 3)
    # A real relay process publishes, gets its PubAcks, and dies before marking.
    assert run_worker("relay", db_url, nats_url, service, fault="relay.after_publish") == 86
    assert await unpublished(sessions) == 3
    assert len(await stream_msgs(js, service)) == 3
    # A fresh relay republishes; JetStream answers duplicate=true, which is success.
    assert run_worker("relay", db_url, nats_url, service) == 0
    assert await unpublished(sessions) == 0
    msgs = await stream_msgs(js, service)
    assert [m.headers[HEADER_MSG_ID] for m in msgs] == ids
    async with sessions() as s:
        attempts = (await s.execute(select(OutboxEvent.attempts))).scalars().all()
    assert attempts == [1, 1, 1]


@pytest.mark.slow
async def test_events_committed_during_broker_outage_are_published_after(
    db, nats_server, nats_url, js, service
) -> None:
    sessions = session_factory(db)
    relay = Relay(db, nats_url, service=service, poll_interval=0.2, ack_timeout=2.0)
    task = asyncio.create_task(relay.run())
    try:
        before = await emit(sessions, service, 2)
        relay.notify()
        await wait_for(lambda: _eq(unpublished(sessions), 0))
        await js._nc.close()
        nats_server.stop()
        during = await emit(sessions, service, 5)
        relay.notify()
        await asyncio.sleep(1.5)  # the relay tries, fails, backs off
        assert await unpublished(sessions) == 5
        nats_server.start()
        await wait_for(lambda: _eq(unpublished(sessions), 0), timeout=40)
        after = await emit(sessions, service, 1)
        relay.notify()
        await wait_for(lambda: _eq(unpublished(sessions), 0))
    finally:
        await relay.stop()
        task.cancel()
    nc = await nats.connect(nats_url)
    try:
        msgs = await stream_msgs(nc.jetstream(), service)
    finally:
        await nc.close()
    assert [m.headers[HEADER_MSG_ID] for m in msgs] == before + during + after


async def _eq(coro, value) -> bool:
    return (await coro) == value


async def test_two_relays_publish_each_event_once(db, nats_url, js, service) -> None:
    sessions = session_factory(db)
    ids = await emit(sessions, service, 300)
    relays = [Relay(db, nats_url, service=service, batch_size=50, poll_interval=0.1) for _ in range(2)]
    await relays[0].ensure_streams()
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        await wait_for(lambda: _eq(unpublished(sessions), 0))
    finally:
        for r in relays:
            await r.stop()
        for t in tasks:
            t.cancel()
    msgs = await stream_msgs(js, service)
    assert sorted(m.headers[HEADER_MSG_ID] for m in msgs) == sorted(ids)
    if db.dialect.name == "postgresql":
        # The advisory lock lets one replica publish at a time, so order holds.
        assert [m.headers[HEADER_MSG_ID] for m in msgs] == ids
    assert sum(r.published for r in relays) == 300


# --------------------------------------------------------------------------- consumer


async def effects(sessions) -> dict[str, int]:
    async with sessions() as s:
        rows = (await s.execute(select(w.Effect.event_id, func.count()).group_by(w.Effect.event_id))).all()
    return dict(rows)


@pytest.mark.slow
async def test_consumer_killed_before_ack_applies_effect_once(db, db_url, nats_url, service) -> None:
    sessions = session_factory(db)
    [eid] = await emit(sessions, service)
    relay = Relay(db, nats_url, service=service)
    await relay.ensure_streams()
    await relay.publish_pending()
    await relay.stop()
    durable = "funds_projection"
    # A real consumer process commits the effect + inbox row, then dies before acking.
    assert run_worker("consumer", db_url, nats_url, service, durable, fault="consumer.before_ack") == 86
    assert await effects(sessions) == {eid: 1}
    # The broker redelivers after ack_wait; the inbox turns it into a no-op.
    consumer = w.make_consumer(sessions, nats_url, service, durable, ack_wait=1.0)
    task = asyncio.create_task(consumer.run())
    try:
        await wait_for(lambda: _true(consumer.skipped == 1))
    finally:
        await consumer.stop()
        task.cancel()
    assert consumer.applied == 0
    assert await effects(sessions) == {eid: 1}
    async with sessions() as s:
        assert (await s.get(InboxEvent, (durable, eid))) is not None
    info = await _consumer_info(nats_url, service, durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def _true(v: bool) -> bool:
    return v


async def _consumer_info(nats_url: str, service: str, durable: str):
    nc = await nats.connect(nats_url)
    try:
        return await nc.jetstream().consumer_info(stream_name(service), durable)
    finally:
        await nc.close()


@pytest.mark.slow
async def test_consumer_retries_transient_and_terminates_poison(db, nats_url, js, service) -> None:
    sessions = session_factory(db)
    ok1 = await emit(sessions, service, 1, "ok")
    transient = await emit(sessions, service, 1, "transient")
    await emit(sessions, service, 1, "poison")
    ok2 = await emit(sessions, service, 2, "ok")
    relay = Relay(db, nats_url, service=service)
    await relay.ensure_streams()
    await relay.publish_pending()
    await relay.stop()
    # Poison that never reaches a handler: garbage bytes, and an unknown type.
    await js.publish(
        f"jsx.{service}.thing.happened",
        b"\xff\xff\xff",
        headers={HEADER_MSG_ID: "garbage-1", HEADER_EVENT_TYPE: "jsx.test.v1.ThingHappened"},
    )
    await js.publish(
        f"jsx.{service}.thing.happened",
        b"",
        headers={HEADER_MSG_ID: "unknown-1", HEADER_EVENT_TYPE: "jsx.test.v1.Nope"},
    )
    later = await emit(sessions, service, 1, "ok")
    relay = Relay(db, nats_url, service=service)
    await relay.publish_pending()
    await relay.stop()

    consumer = w.make_consumer(sessions, nats_url, service, "c1", retry_delays=(0.5,), batch=10)
    task = asyncio.create_task(consumer.run())
    try:
        want = dict.fromkeys(ok1 + transient + ok2 + later, 1)
        await wait_for(lambda: _eq(effects(sessions), want))
        await asyncio.sleep(1.5)  # long enough for any wrongful redelivery
    finally:
        await consumer.stop()
        task.cancel()
    assert await effects(sessions) == want
    assert consumer.terminated == 3  # poison handler error, garbage, unknown type
    assert consumer.applied == 5
    async with sessions() as s:
        inbox = set((await s.execute(select(InboxEvent.event_id))).scalars())
    assert inbox == set(want)  # a terminated event leaves no inbox row
    info = await _consumer_info(nats_url, service, "c1")
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_relay_pipelines_batches_in_order(db, nats_url, js, service) -> None:
    """On PostgreSQL one claim of the replica lock sends up to ``pipeline``
    batches, each while the previous one's PubAcks come back; SQLite sends one.
    Either way every event goes once, in commit order, and is marked."""
    sessions = session_factory(db)
    ids = await emit(sessions, service, 95)
    relay = Relay(db, nats_url, service=service, batch_size=10, pipeline=3)
    await relay.ensure_streams()
    try:
        marked, full = await relay.publish_pending()
        per_call = 30 if db.dialect.name == "postgresql" else 10
        assert (marked, full) == (per_call, True)
        while full:
            _, full = await relay.publish_pending()
    finally:
        await relay.stop()
    assert await unpublished(sessions) == 0 and relay.published == 95
    assert [m.headers[HEADER_MSG_ID] for m in await stream_msgs(js, service)] == ids


async def test_relay_sends_each_rows_own_extra_headers(db, nats_url, js, service) -> None:
    """Rows without extra headers share one header dict in the relay; a row's
    extras (written by add_event, or by a bulk COPY into the table) must reach
    its own message and no other."""
    sessions = session_factory(db)
    [plain1] = await emit(sessions, service)
    async with transaction(sessions) as s:
        traced = add_event(
            s,
            f"jsx.{service}.thing.happened",
            w.ThingHappened(amount_fen=1),
            headers={"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        )
    copied = str(uuid.uuid4())
    async with transaction(sessions) as s:
        # As a bulk load writes it: a plain INSERT, not add_event.
        await s.execute(
            insert(OutboxEvent).values(
                event_id=copied,
                subject=f"jsx.{service}.thing.happened",
                event_type="jsx.test.v1.ThingHappened",
                payload=w.ThingHappened(amount_fen=2).SerializeToString(),
                headers={"Jsx-Import": "2022-07"},
                attempts=0,
            )
        )
    [plain2] = await emit(sessions, service)
    relay = Relay(db, nats_url, service=service)
    await relay.ensure_streams()
    try:
        assert await relay.publish_pending() == (4, False)
    finally:
        await relay.stop()
    msgs = await stream_msgs(js, service)
    assert [m.headers[HEADER_MSG_ID] for m in msgs] == [plain1, traced, copied, plain2]
    extra = [{k: v for k, v in m.headers.items() if k not in (HEADER_MSG_ID, HEADER_EVENT_TYPE)} for m in msgs]
    stream_hdr = {"Nats-Expected-Stream": stream_name(service)}
    assert extra == [
        stream_hdr,
        {**stream_hdr, "Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        {**stream_hdr, "Jsx-Import": "2022-07"},
        stream_hdr,
    ]


async def test_duplicate_puback_marks_the_row_published(db, nats_url, js, service) -> None:
    """The stream already holds the event (an earlier relay died before
    marking): JetStream answers duplicate=true, which is success."""
    sessions = session_factory(db)
    relay = Relay(db, nats_url, service=service)
    await relay.ensure_streams()
    ids = await emit(sessions, service, 3)
    ack = await js.publish(f"jsx.{service}.thing.happened", b"earlier copy", headers={HEADER_MSG_ID: ids[1]})
    assert not ack.duplicate
    try:
        assert await relay.publish_pending() == (3, False)
    finally:
        await relay.stop()
    msgs = await stream_msgs(js, service)
    assert [m.headers[HEADER_MSG_ID] for m in msgs] == [ids[1], ids[0], ids[2]]
    async with sessions() as s:
        rows = (
            await s.execute(select(OutboxEvent.attempts, OutboxEvent.last_error, OutboxEvent.published_at.is_not(None)))
        ).all()
    assert [tuple(r) for r in rows] == [(1, None, True)] * 3


async def test_refused_publish_keeps_rows_with_the_reason(db, nats_url, js, service) -> None:
    """No stream takes the subject (deleted under the relay): the server's
    no-responders reply is a failure, not a PubAck; the rows stay unpublished
    with the reason and go out once the stream is back, in order."""
    sessions = session_factory(db)
    relay = Relay(db, nats_url, service=service, ack_timeout=5.0)
    await relay.ensure_streams()
    await js.delete_stream(stream_name(service))
    ids = await emit(sessions, service, 3)
    try:
        started = time.monotonic()
        with pytest.raises(errors.Unavailable):
            await relay.publish_pending()
        assert time.monotonic() - started < 4.0  # refused at once, not timed out
        assert await unpublished(sessions) == 3
        async with sessions() as s:
            rows = (await s.execute(select(OutboxEvent.attempts, OutboxEvent.last_error))).all()
        assert [r.attempts for r in rows] == [1, 1, 1]
        assert all("NoStreamResponse" in r.last_error for r in rows), rows
        await relay.ensure_streams()
        assert await relay.publish_pending() == (3, False)
    finally:
        await relay.stop()
    assert [m.headers[HEADER_MSG_ID] for m in await stream_msgs(js, service)] == ids
    async with sessions() as s:
        rows = (await s.execute(select(OutboxEvent.attempts, OutboxEvent.last_error))).all()
    assert [tuple(r) for r in rows] == [(2, None)] * 3


async def test_concurrent_publish_pending_calls_keep_their_own_pubacks(db, nats_url, js, service) -> None:
    """The run loop and a direct publish_pending() may overlap on one relay:
    each call waits for its own PubAcks (reply tokens are never shared), and
    neither call's cleanup drops the other's batch in flight."""
    sessions = session_factory(db)
    ids = await emit(sessions, service, 250)
    relay = Relay(db, nats_url, service=service, batch_size=50, pipeline=2, ack_timeout=3.0)
    await relay.ensure_streams()
    try:
        for _ in range(20):
            await asyncio.gather(relay.publish_pending(), relay.publish_pending())  # raises on a lost PubAck
            if await unpublished(sessions) == 0:
                break
    finally:
        await relay.stop()
    assert await unpublished(sessions) == 0 and relay.published == 250
    msgs = await stream_msgs(js, service)
    assert sorted(m.headers[HEADER_MSG_ID] for m in msgs) == sorted(ids)
    if db.dialect.name == "postgresql":
        assert [m.headers[HEADER_MSG_ID] for m in msgs] == ids
