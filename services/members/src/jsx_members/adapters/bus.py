"""Members events on the bus: each event message carries its subject in the
``(jsx.common.v1.event_subject)`` option (read by
:func:`jsxcore.outbox.subject_of`), so publishing needs no table of
subjects. Events hold resource names and region codes only, never PII.
The messages themselves are built by each context's ``wire.py``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.ext.asyncio import AsyncSession

from jsx.members.v1 import events_pb2
from jsx_members.adapters import db
from jsxcore.outbox import OutboxEvent, add_event, check_subject, subject_of

SERVICE = "members"

#: Every event type this service publishes (for consumers' type maps).
EVENT_TYPES: tuple[type[Message], ...] = (
    events_pb2.PersonRegistered,
    events_pb2.HouseholdRegistered,
    events_pb2.HouseholdSituationChanged,
    events_pb2.MemberJoined,
    events_pb2.MemberLeft,
    events_pb2.VolunteerPaired,
    events_pb2.VolunteerUnpaired,
    events_pb2.SiteOpened,
    events_pb2.HouseholdMembersChanged,
    events_pb2.MemberChanged,
    events_pb2.SiteClosed,
)


def emit(session: AsyncSession, message: Message) -> str:
    """Write ``message`` to the outbox in the caller's transaction; returns the event id."""
    return add_event(session, subject_of(message), message)


async def emit_many(session: AsyncSession, messages: list[Message]) -> None:
    """Outbox rows for many events as one bulk insert (roster import of 100k
    persons): the same rows :func:`jsxcore.outbox.add_event` writes, without
    building an ORM object or parameter dict per event."""
    if not messages:
        return
    now = datetime.now(UTC)
    stamp = Timestamp()
    stamp.FromDatetime(now)
    kinds: dict[type[Message], tuple[str, str]] = {}
    rows: list[tuple[str, str, str, bytes]] = []
    for msg in messages:
        kind = kinds.get(type(msg))
        if kind is None:
            subject = subject_of(msg)
            check_subject(subject)
            kind = kinds[type(msg)] = (subject, msg.DESCRIPTOR.full_name)
        eid = str(uuid.uuid4())  # an event id, not a row id: never drawn from db.new_id
        msg.event_id = eid  # type: ignore[attr-defined]  # every event message has event_id; Message does not say so
        msg.occurred_at.CopyFrom(stamp)  # type: ignore[attr-defined]  # and occurred_at
        rows.append((eid, kind[0], kind[1], msg.SerializeToString(deterministic=True)))
    await db.insert_rows(
        session,
        db.table_of(OutboxEvent),
        ("event_id", "subject", "event_type", "payload"),
        rows,
        const={"headers": {}, "created_at": now, "attempts": 0},
    )
