"""Fixtures for the members tests: a migrated database (SQLite and
PostgreSQL via ``db_url``), the service with fresh keys, and callers."""
from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

import pytest

from jsx_members.migrations import migrate
from jsx_members.service import MembersService
from jsx_members.testdata import TODAY
from jsxcore.auth import Caller, reset_caller, set_caller
from jsxcore.db import create_engine, session_factory
from jsxcore.pii import BlindIndex, FieldCipher
from jsxcore.values import RegionCode

@dataclass
class Env:
    url: str
    service: MembersService
    engine: object


@pytest.fixture
async def env(db_url: str) -> AsyncIterator[Env]:
    await asyncio.to_thread(migrate, db_url)
    engine = create_engine(db_url)
    svc = MembersService(
        session_factory(engine), FieldCipher(os.urandom(32)), BlindIndex(os.urandom(32)), today=lambda: TODAY
    )
    yield Env(db_url, svc, engine)
    await engine.dispose()
