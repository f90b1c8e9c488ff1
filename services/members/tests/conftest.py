"""Fixtures for the members tests: a migrated database (SQLite and
PostgreSQL via ``db_url``), the service with fresh keys, and its servicer.

``env.service`` is the composed service (``env.service.persons``,
``.households``, ``.network``, ``.sites``, ``.roster``: use cases taking
plain arguments and ``caller=``); ``env.api`` calls the gRPC servicer's
methods directly, as the server would after authentication — under the
caller that :func:`jsx_members.testdata.acting` binds — so tests of an RPC's
contract (field violations on the request's fields, AIP-155 retries) run
without a server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from jsx_members.entrypoints.grpc import MembersServicer
from jsx_members.migrations import migrate
from jsx_members.service import MembersService
from jsx_members.testdata import TODAY
from jsxcore.db import create_engine, session_factory
from jsxcore.pii import BlindIndex, FieldCipher


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
