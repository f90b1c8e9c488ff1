from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from jsxcore.db import create_engine

from jsx_funds.adapters.db import migrate


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated funds database (SQLite and PostgreSQL)."""
    await asyncio.to_thread(migrate, db_url)
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()
