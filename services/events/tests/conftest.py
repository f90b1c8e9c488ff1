"""Shared fixture: the events service over real gRPC (its relay and consumers on a real nats-server)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import pytest

from jsx.events.v1 import events_service_pb2_grpc as pb_grpc
from jsx_events.adapters.db import migrate
from jsx_events.composition import EventsService
from jsx_events.entrypoints.grpc import build_runtime
from jsxcore.auth import issue_token
from jsxcore.config import ServiceConfig


@dataclass
class Events:
    stub: pb_grpc.EventsServiceStub
    svc: EventsService
    config: ServiceConfig

    def md(
        self, region: str = "431281", roles: tuple[str, ...] = ("county_clerk",), subject: str = "clerk-1"
    ) -> list[tuple[str, str]]:
        """Call metadata for a caller scoped to ``region``."""
        token = issue_token(self.config.auth_secret, subject=subject, roles=roles, region=region)
        return [("authorization", f"Bearer {token}")]


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
