"""Members events on the bus: each event message carries its subject in the
``(jsx.common.v1.event_subject)`` option, so publishing needs no table of
subjects. Events hold resource names and region codes only, never PII."""
from __future__ import annotations

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from jsx.common.v1 import annotations_pb2
from jsx.members.v1 import events_pb2
from jsxcore.outbox import add_event

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
)


def subject_of(message: Message | type[Message]) -> str:
    """``jsx.members.<entity>.<event>`` from the message's option."""
    subject: str = message.DESCRIPTOR.GetOptions().Extensions[annotations_pb2.event_subject]
    if not subject:
        raise ValueError(f"{message.DESCRIPTOR.full_name} has no event_subject option")
    return subject


def emit(session: AsyncSession, message: Message) -> str:
    """Write ``message`` to the outbox in the caller's transaction; returns the event id."""
    return add_event(session, subject_of(message), message)
