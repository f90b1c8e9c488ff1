#!/usr/bin/env python3
"""Outbox → JetStream → consumer inbox throughput, next to raw JetStream limits.

    python3 dev.py bench relay [-n 20000] [--db postgresql://postgres@127.0.0.1:5432/test]

Starts its own nats-server (file storage) and its own database (a temp SQLite
file, or a fresh database on the given PostgreSQL server, dropped after), and
measures in the same run:

* raw publish  — nats-py ``js.publish_async`` with every message in flight
  up to the client's window, same payloads and Nats-Msg-Id headers;
* raw inbox publish — plain ``nc.publish`` with a reply token per message to
  one wildcard inbox of its own, every message in flight: how the relay
  itself publishes since it left ``publish_async``, without the database
  (shown for reference; the goal stays against ``publish_async``);
* raw fetch    — a durable pull consumer fetching and acking the same count;
* outbox insert — ``add_event`` rows committed in transactions of --batch
  (the services' cost; not part of the relay figure);
* relay        — ``Relay.publish_pending`` until the outbox is empty:
  read, publish pipelined, await PubAcks, mark published (goal ≥ 50% of raw publish);
* consumer     — ``Consumer``: fetch, parse, inbox check, a one-row effect,
  inbox insert, commit, ack (compared with raw fetch).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nats
from _common import Report, rate, timed
from google.protobuf.message import Message
from nats.js import api
from sqlalchemy import BigInteger, Integer, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jsx.funds.v1 import events_pb2
from jsxcore.db import CoreBase, create_engine, session_factory, transaction
from jsxcore.outbox import (
    HEADER_EVENT_TYPE,
    HEADER_MSG_ID,
    Consumer,
    EventMeta,
    OutboxEvent,
    Relay,
    add_event,
    stream_name,
)
from jsxcore.testing.fixtures import NatsServer

SERVICE = "bench"
SUBJECT = "jsx.bench.payment.issued"


class BenchBase(DeclarativeBase):
    pass


class Paid(BenchBase):
    """The consumer's effect: one row per event, like a projection would write."""

    __tablename__ = "bench_paid"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    payment: Mapped[str] = mapped_column(String(100))
    fen: Mapped[int] = mapped_column(BigInteger)


def event(i: int) -> events_pb2.PaymentIssued:
    m = events_pb2.PaymentIssued(
        payment=f"paymentBatches/b{i // 1000}/payments/p{i}",
        payment_batch=f"paymentBatches/b{i // 1000}",
        application=f"applications/a{i}",
        program="programs/tebie-fuzhu-2022",
        household=f"households/h{i}",
        payee=f"persons/p{i}",
        fund="funds/hongjiang-county-2022",
    )
    m.village.code = "431281100001"
    m.period.code = "2022-07"
    m.amount.fen = 94000
    return m


def make_database(admin_url: str | None, tmp: str) -> tuple[str, Callable[[], None]]:
    """A fresh database URL and a function that drops it."""
    if not admin_url:
        return f"sqlite:///{tmp}/bench.db", lambda: None
    import psycopg

    name = "jsx_bench_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return admin_url.rsplit("/", 1)[0] + "/" + name, drop


async def raw_publish(nc, payloads: list[bytes], stream: str) -> float:
    js = nc.jetstream()
    await js.add_stream(
        api.StreamConfig(
            name=stream, subjects=[f"{stream.lower()}.>"], storage=api.StorageType.FILE, duplicate_window=120
        )
    )
    with timed() as t:
        futures = [
            await js.publish_async(
                f"{stream.lower()}.payment", p, headers={HEADER_MSG_ID: uuid.uuid4().hex, HEADER_EVENT_TYPE: "x"}
            )
            for p in payloads
        ]
        await asyncio.gather(*futures)
    assert (await js.stream_info(stream)).state.messages == len(payloads)
    return rate(len(payloads), t.seconds)


async def raw_publish_inbox(nc, payloads: list[bytes], stream: str) -> float:
    js = nc.jetstream()
    await js.add_stream(
        api.StreamConfig(
            name=stream, subjects=[f"{stream.lower()}.>"], storage=api.StorageType.FILE, duplicate_window=120
        )
    )
    prefix = nc.new_inbox()
    acked = asyncio.Event()
    got = 0

    async def on_ack(msg) -> None:
        nonlocal got
        assert b'"error"' not in msg.data, msg.data
        got += 1
        if got == len(payloads):
            acked.set()

    sub = await nc.subscribe(prefix + ".*", cb=on_ack)
    headers = {HEADER_MSG_ID: "", HEADER_EVENT_TYPE: "x", "Nats-Expected-Stream": stream}
    with timed() as t:
        for i, p in enumerate(payloads):
            headers[HEADER_MSG_ID] = uuid.uuid4().hex
            await nc.publish(f"{stream.lower()}.payment", p, reply=f"{prefix}.{i}", headers=headers)
        await asyncio.wait_for(acked.wait(), 60)
    await sub.unsubscribe()
    assert (await js.stream_info(stream)).state.messages == len(payloads)
    return rate(len(payloads), t.seconds)


async def raw_fetch(nc, n: int, batch: int, stream: str) -> float:
    js = nc.jetstream()
    sub = await js.pull_subscribe(f"{stream.lower()}.>", durable="raw", stream=stream)
    got = 0
    with timed() as t:
        while got < n:
            msgs = await sub.fetch(batch, timeout=5)
            for m in msgs:
                await m.ack()
            got += len(msgs)
        await nc.flush()
    return rate(n, t.seconds)


async def run(args: argparse.Namespace) -> int:
    n, batch, rounds = args.n, args.batch, args.rounds
    report = Report(f"outbox relay: {n} events × {rounds} rounds, batch {batch}, database {args.db_kind}")
    best = {"raw_pub": 0.0, "raw_inbox": 0.0, "raw_sub": 0.0, "relay": 0.0, "insert": 0.0, "e2e": 0.0}
    with tempfile.TemporaryDirectory(prefix="jsx-bench-") as tmp:
        server = NatsServer(Path(tmp) / "nats")
        server.start()
        db_url, drop = make_database(args.db, tmp)
        engine = create_engine(db_url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(CoreBase.metadata.create_all)
                await conn.run_sync(BenchBase.metadata.create_all)
            sessions = session_factory(engine)
            payloads = [event(i).SerializeToString() for i in range(n)]
            nc = await nats.connect(server.url)
            relay = Relay(engine, server.url, service=SERVICE, batch_size=batch)
            await relay.ensure_streams()

            # Alternate raw and relay rounds and keep each one's best: the
            # machine is shared, so a single pass mostly measures neighbours.
            for k in range(rounds):
                best["raw_pub"] = max(best["raw_pub"], await raw_publish(nc, payloads, f"RAW{k}"))
                best["raw_sub"] = max(best["raw_sub"], await raw_fetch(nc, n, batch, f"RAW{k}"))
                best["raw_inbox"] = max(best["raw_inbox"], await raw_publish_inbox(nc, payloads, f"RAWINBOX{k}"))

                with timed() as t_insert:
                    for start in range(k * n, (k + 1) * n, batch):
                        async with transaction(sessions) as s:
                            for i in range(start, min(start + batch, (k + 1) * n)):
                                add_event(s, SUBJECT, event(i))
                before = relay.published
                with timed() as t_relay:
                    while True:
                        _, full = await relay.publish_pending()
                        if not full:
                            break
                async with sessions() as s:
                    left = (
                        await s.execute(select(func.count()).where(OutboxEvent.published_at.is_(None)))
                    ).scalar_one()
                assert left == 0 and relay.published - before == n, (left, relay.published - before)
                best["relay"] = max(best["relay"], rate(n, t_relay.seconds))
                best["insert"] = max(best["insert"], rate(n, t_insert.seconds))
                best["e2e"] = max(best["e2e"], rate(n, t_insert.seconds + t_relay.seconds))
            await relay.stop()
            await nc.close()

            total = n * rounds

            async def consume(durable: str, effect: bool) -> float:
                async def handler(session: AsyncSession, msg: Message, meta: EventMeta) -> None:
                    if effect:
                        session.add(Paid(payment=msg.payment, fen=msg.amount.fen))  # type: ignore[attr-defined]  # only PaymentIssued comes here

                consumer = Consumer(
                    server.url,
                    stream=stream_name(SERVICE),
                    durable=durable,
                    subjects=SUBJECT,
                    handler=handler,
                    sessionmaker=sessions,
                    message_types=[events_pb2.PaymentIssued],
                    batch=batch,
                    max_ack_pending=max(batch * 2, 1000),
                )
                with timed() as t:
                    task = asyncio.create_task(consumer.run())
                    while consumer.applied + consumer.skipped < total:  # noqa: ASYNC110  (no event for a count)
                        await asyncio.sleep(0.01)
                    await consumer.stop()
                    await task
                assert consumer.applied == total, consumer.applied
                return rate(total, t.seconds)

            inbox_only = await consume("bench_inbox_only", effect=False)
            consumed = await consume("bench_projection", effect=True)
            async with sessions() as s:
                effects = (await s.execute(select(func.count()).select_from(Paid))).scalar_one()
            assert effects == total, effects
        finally:
            await engine.dispose()
            server.stop()
            drop()

    report.add(
        "relay: outbox → JetStream (PubAck'd, marked)", best["relay"], best["raw_pub"], "raw js.publish_async", goal=0.5
    )
    report.add(
        "relay, against the relay's own way of publishing", best["relay"], best["raw_inbox"], "raw nc.publish + inbox"
    )
    report.add("consumer: fetch → inbox → ack (no-op handler)", inbox_only, best["raw_sub"], "raw pull fetch + ack")
    report.add("consumer: fetch → ORM effect row + inbox → ack", consumed, best["raw_sub"], "raw pull fetch + ack")
    report.add("outbox insert (add_event, commit per batch)", best["insert"])
    report.add("insert + relay, end to end", best["e2e"], best["raw_pub"], "raw js.publish_async")
    report.notes.append("relay time excludes inserting the outbox rows (shown on its own line)")
    report.notes.append(
        f"best of {rounds} alternating rounds for raw, relay and insert; consumer: one pass "
        f"over all {n * rounds} events"
    )
    report.notes.append(f"payload: jsx.funds.v1.PaymentIssued, {len(payloads[0])} bytes; nats-server file storage")
    report.print()
    return 0 if report.ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=20000, help="events (default 20000)")
    p.add_argument("--batch", type=int, default=1000, help="relay batch / fetch batch / insert transaction size")
    p.add_argument("--rounds", type=int, default=3, help="alternating raw/relay rounds; best of each is kept")
    p.add_argument(
        "--db",
        default=None,
        help="PostgreSQL admin URL (a fresh database is created and dropped); default: a temporary SQLite file",
    )
    args = p.parse_args()
    args.db_kind = "postgresql" if args.db else "sqlite"
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
