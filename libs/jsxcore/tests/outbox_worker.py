"""Test helper for test_outbox.py: a test event type, an effect table, and a
process entry point so crash tests can kill a real relay or consumer.

    python outbox_worker.py relay DB_URL NATS_URL SERVICE
    python outbox_worker.py consumer DB_URL NATS_URL SERVICE DURABLE

With ``JSX_FAULT=relay.after_publish`` / ``consumer.before_ack`` the process
dies (exit 86) inside the crash window under test.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import Message
from sqlalchemy import Integer, String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jsxcore import errors
from jsxcore.db import create_engine, session_factory
from jsxcore.outbox import Consumer, EventMeta, Relay, stream_name


def _build_event_type() -> type[Message]:
    """jsx.test.v1.ThingHappened{event_id, occurred_at, amount_fen, mode}: a real
    proto message with the envelope fields every jsx event carries."""
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="jsx/test/v1/outbox_test.proto",
        package="jsx.test.v1",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    m = fdp.message_type.add(name="ThingHappened")
    m.field.add(name="event_id", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    m.field.add(
        name="occurred_at",
        number=2,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_OPTIONAL,
        type_name=".google.protobuf.Timestamp",
    )
    m.field.add(name="amount_fen", number=3, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    m.field.add(name="mode", number=4, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("jsx.test.v1.ThingHappened"))


ThingHappened = _build_event_type()


class EffectBase(DeclarativeBase):
    pass


class Effect(EffectBase):
    """One row per applied event; deliberately no unique key, so a doubled
    effect would show as two rows."""

    __tablename__ = "test_effect"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    amount_fen: Mapped[int] = mapped_column(Integer)


async def handler(session: AsyncSession, msg: Message, meta: EventMeta) -> None:
    event: Any = msg  # a class built from a descriptor at run time: no generated attributes
    mode = event.mode
    if mode == "transient" and meta.num_delivered < 2:
        raise errors.Unavailable("下游暂不可用，稍后重试")
    if mode == "poison":
        raise errors.InvalidArgument("事件内容不合法", reason="BAD_EVENT")
    session.add(Effect(event_id=meta.event_id, amount_fen=event.amount_fen))


def make_consumer(db_or_sessions, nats_url: str, service: str, durable: str, **kw) -> Consumer:
    return Consumer(
        nats_url,
        stream=stream_name(service),
        durable=durable,
        subjects=f"jsx.{service}.>",
        handler=handler,
        sessionmaker=db_or_sessions,
        message_types=[ThingHappened],
        **kw,
    )


async def _main(argv: list[str]) -> None:
    mode, db_url, nats_url, service = argv[:4]
    engine = create_engine(db_url)
    try:
        if mode == "relay":
            relay = Relay(engine, nats_url, service=service)
            await relay.ensure_streams()
            await relay.publish_pending()
            await relay.stop()
        elif mode == "consumer":
            consumer = make_consumer(session_factory(engine), nats_url, service, argv[4], ack_wait=1.0)
            task = asyncio.create_task(consumer.run())
            await asyncio.sleep(10)  # the fault point ends us long before this
            await consumer.stop()
            task.cancel()
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))
