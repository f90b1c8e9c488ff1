"""Migrations and the database-level guarantees of the ledger tables."""
from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine


async def _seed(conn) -> None:  # type: ignore[no-untyped-def]
    await conn.execute(text(
        "INSERT INTO funds (id, name, kind, region, owner, allow_negative, description, version, created_at, created_by)"
        " VALUES (1, 'f', 'PROGRAM', '431281000000', '', false, '', 0, CURRENT_TIMESTAMP, '')"
    ))
    await conn.execute(text("INSERT INTO accounts (id, fund_id, kind, code) VALUES (1, 1, 'AVAILABLE', '1:AVAILABLE')"))
    await conn.execute(text(
        "INSERT INTO journals (id, fund_id, kind, amount, request_id, memo, actor, reference, counterparty, created_at)"
        " VALUES (1, 1, 'ALLOCATION', 100, '', '', '', '', '', CURRENT_TIMESTAMP)"
    ))
    await conn.execute(text("INSERT INTO ledger_entries (id, journal_id, account_id, side, amount) VALUES (1, 1, 1, 'D', 100)"))


@pytest.mark.parametrize("stmt", [
    "UPDATE ledger_entries SET amount = 1",
    "DELETE FROM ledger_entries",
    "UPDATE journals SET memo = 'x'",
    "DELETE FROM journals",
])
async def test_ledger_rows_cannot_be_changed(engine: AsyncEngine, stmt: str) -> None:
    async with engine.begin() as conn:
        await _seed(conn)
    with pytest.raises(DBAPIError, match="immutable"):
        async with engine.begin() as conn:
            await conn.execute(text(stmt))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT amount FROM ledger_entries"))).scalar_one() == 100


@pytest.mark.parametrize("amount", [0, -5])
async def test_entry_amount_must_be_positive(engine: AsyncEngine, amount: int) -> None:
    async with engine.begin() as conn:
        await _seed(conn)
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(text(
                f"INSERT INTO ledger_entries (journal_id, account_id, side, amount) VALUES (1, 1, 'C', {amount})"
            ))


async def test_migrate_is_repeatable(engine: AsyncEngine, db_url: str) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from jsx_funds.adapters.db import MIGRATIONS, migrate

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    migrate(db_url)  # already at head: a no-op, not an error
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one() == head
