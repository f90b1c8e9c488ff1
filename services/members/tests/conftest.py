"""Fixtures for the members tests: a migrated database (SQLite and
PostgreSQL via ``db_url``), the service with fresh keys, and its servicer.

``stack`` (for the end-to-end tests) is the members process itself:
``build_runtime`` on a real gRPC port, the outbox relay publishing to a real
nats-server, and clients for a 沅陵 and a 溆浦 clerk and an auditor.

``env.service`` is the composed service (``env.service.persons``,
``.households``, ``.network``, ``.sites``, ``.roster``: use cases taking
plain arguments and ``caller=``); ``env.api`` calls the gRPC servicer's
methods directly, as the server would after authentication — under the
caller that :func:`jsx_members.testdata.acting` binds — so tests of an RPC's
contract (field violations on the request's fields, AIP-155 retries) run
without a server."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest

from jsx.members.v1 import members_pb2_grpc
from jsx_members.entrypoints.grpc import MembersServicer, build_runtime
from jsx_members.migrations import migrate
from jsx_members.service import MembersService
from jsx_members.testdata import TODAY
from jsxcore.auth import issue_token
from jsxcore.config import ServiceConfig
from jsxcore.db import create_engine, session_factory
from jsxcore.pii import BlindIndex, FieldCipher, generate_key
from jsxcore.plugins import PluginHost
from jsxcore.runtime import setup_logging
from jsxcore.testing.helpers import bearer

SECRET = "s" * 40
#: What the ``stack`` fixture yields: clients, the JetStream context, the relay, the captured logs,
#: the database URL, the runtime.
Stack = dict[str, Any]


class Api:
    """``env.api.CreatePerson(request)`` → ``MembersServicer.CreatePerson(request, context=None)``."""

    def __init__(self, servicer: MembersServicer) -> None:
        self._servicer = servicer

    def __getattr__(self, rpc: str) -> Callable[[Any], Awaitable[Any]]:
        method = getattr(self._servicer, rpc)
        return lambda request: method(request, None)


@dataclass
class Env:
    url: str
    service: MembersService
    engine: object
    api: Api


@pytest.fixture
async def env(db_url: str) -> AsyncIterator[Env]:
    await asyncio.to_thread(migrate, db_url)
    engine = create_engine(db_url)
    svc = MembersService(
        session_factory(engine), FieldCipher(os.urandom(32)), BlindIndex(os.urandom(32)), today=lambda: TODAY
    )
    yield Env(db_url, svc, engine, Api(MembersServicer(svc)))
    await engine.dispose()


@pytest.fixture
async def plugin_env(db_url: str) -> AsyncIterator[Env]:
    """``env`` with every installed rule plugin, enabled for the regions it
    declares (as a deployment without ``JSX_PLUGINS`` runs): 洪江's 会员联系户
    rule applies in 431281, the built-in 1:1 rule elsewhere."""
    await asyncio.to_thread(migrate, db_url)
    engine = create_engine(db_url)
    host = PluginHost()
    host.discover()
    svc = MembersService(
        session_factory(engine),
        FieldCipher(os.urandom(32)),
        BlindIndex(os.urandom(32)),
        plugins=host,
        today=lambda: TODAY,
    )
    yield Env(db_url, svc, engine, Api(MembersServicer(svc, host)))
    await engine.dispose()


class Client:
    """A members stub whose calls carry ``token`` (``client.CreatePerson(request)``)."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self.stub = members_pb2_grpc.MembersServiceStub(channel)
        self.md = bearer(token)

    def __getattr__(self, rpc: str) -> Callable[[Any], Any]:
        method = getattr(self.stub, rpc)
        return lambda req: method(req, metadata=self.md, timeout=20)


@pytest.fixture
async def stack(db_url: str, nats_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    env = {
        "JSX_MEMBERS_DATABASE_URL": db_url,
        "JSX_MEMBERS_NATS_URL": nats_url,
        "JSX_MEMBERS_GRPC_ADDR": "127.0.0.1:0",
        "JSX_MEMBERS_DATA_DIR": str(tmp_path),
        "JSX_PII_KEY": generate_key(),
        "JSX_BLIND_INDEX_KEY": generate_key(),
        "JSX_AUTH_SECRET": SECRET,
    }
    config = ServiceConfig.from_env("members", env)
    await asyncio.to_thread(migrate, db_url)
    logs = io.StringIO()
    handler = setup_logging("members", "DEBUG", stream=logs)
    rt, _service, relay = build_runtime(config)
    port = await rt.start()
    # Each test gets its own stream contents: purge what earlier tests published.
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    clients = {
        "yl": Client(channel, issue_token(SECRET, "clerk-yl", ["county_clerk"], "431222")),
        "xp": Client(channel, issue_token(SECRET, "clerk-xp", ["county_clerk"], "431224")),
        "auditor": Client(channel, issue_token(SECRET, "audit-1", ["auditor"], "431200")),
        "hj": Client(channel, issue_token(SECRET, "clerk-hj", ["county_clerk"], "431281")),
    }
    try:
        try:
            await js.purge_stream("JSX_MEMBERS")
        except Exception:
            pass  # the relay creates the stream on first publish
        yield {"clients": clients, "js": js, "relay": relay, "logs": logs, "url": db_url, "rt": rt}
    finally:
        await channel.close()
        await rt.stop(0)
        await nc.close()
        logging.getLogger().removeHandler(handler)
