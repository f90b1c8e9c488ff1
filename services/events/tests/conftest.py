"""Shared fixture: the events service over real gRPC (its relay and consumers on a real nats-server)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.message import Message

from jsx.common.v1 import common_pb2 as cpb
from jsx.events.v1 import events_service_pb2_grpc as pb_grpc
from jsx.members.v1 import events_pb2 as mpb
from jsx.members.v1 import members_pb2 as mmpb
from jsx_events.adapters.db import migrate
from jsx_events.composition import EventsService
from jsx_events.entrypoints.grpc import build_runtime
from jsxcore.auth import issue_token
from jsxcore.config import ServiceConfig
from jsxcore.outbox import EventMeta


@dataclass
class Events:
    stub: pb_grpc.EventsServiceStub
    svc: EventsService
    config: ServiceConfig

    @property
    def members(self) -> MemberFacts:
        """Member facts for the running service's projection."""
        return MemberFacts(self.svc)

    def md(
        self, region: str = "431281", roles: tuple[str, ...] = ("county_clerk",), subject: str = "clerk-1"
    ) -> list[tuple[str, str]]:
        """Call metadata for a caller scoped to ``region``."""
        token = issue_token(self.config.auth_secret, subject=subject, roles=roles, region=region)
        return [("authorization", f"Bearer {token}")]


class MemberFacts:
    """What the members service publishes, applied through events' own consumer handler
    (``EventsService.apply_member_event``): the projection a request's names are checked
    against. Names as members write them (``households/…``, ``sites/…``, ``volunteers/…``)."""

    def __init__(self, svc: EventsService) -> None:
        self.svc = svc

    async def _apply(self, *messages: Message) -> None:
        async with self.svc.sessions() as s, s.begin():
            for m in messages:
                await self.svc.apply_member_event(s, m, EventMeta(str(uuid.uuid4()), "s", "t", 1, 1, None))

    async def household(self, household: str, village: str, *, special: bool = False) -> None:
        v = cpb.RegionCode(code=village)
        await self._apply(mpb.HouseholdRegistered(household=household, village=v))
        if special:
            await self._apply(
                mpb.HouseholdSituationChanged(
                    household=household,
                    village=v,
                    kind=mmpb.SITUATION_KIND_SPECIAL_BEREAVED,
                    effective_from=cpb.Date(year=2020, month=1, day=1),
                )
            )

    async def site(self, site: str, village: str, kind: int = mmpb.SITE_KIND_WARM_HOME) -> None:
        await self._apply(
            mpb.SiteOpened(site=site, kind=mmpb.SiteKind.ValueType(kind), village=cpb.RegionCode(code=village))
        )

    async def pairing(self, volunteer: str, household: str, village: str) -> None:
        """Pair ``volunteer`` with ``household`` (registering the household in ``village`` if new)."""
        await self._apply(
            mpb.VolunteerPaired(
                pairing=f"pairings/{uuid.uuid4().hex[:12]}",
                volunteer=volunteer,
                household=household,
                village=cpb.RegionCode(code=village),
            )
        )


@pytest.fixture
def members() -> type[MemberFacts]:
    """``members(svc)``: member facts for an :class:`EventsService` (see :class:`MemberFacts`)."""
    return MemberFacts


@pytest.fixture
async def events(db_url: str, nats_url: str, tmp_path, monkeypatch):
    monkeypatch.setenv("JSX_EVENTS_DATABASE_URL", db_url)
    monkeypatch.setenv("JSX_EVENTS_NATS_URL", nats_url)
    monkeypatch.setenv("JSX_EVENTS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JSX_DEV", "1")
    config = ServiceConfig.from_env("events")
    migrate(config.database_url)
    rt, svc, _ = build_runtime(config)
    port = await rt.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield Events(pb_grpc.EventsServiceStub(channel), svc, config)
    await channel.close()
    await rt.stop(grace=0.5)
