"""Migrations and the database-level guarantees of the ledger tables."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine


async def _seed(conn: Any) -> None:
    await conn.execute(
        text(
            "INSERT INTO funds (id, name, kind, region, owner, allow_negative, description, version, created_at, created_by)"
            " VALUES (1, 'f', 'PROGRAM', '431281000000', '', false, '', 0, CURRENT_TIMESTAMP, '')"
        )
    )
    await conn.execute(text("INSERT INTO accounts (id, fund_id, kind, code) VALUES (1, 1, 'AVAILABLE', '1:AVAILABLE')"))
    await conn.execute(
        text(
            "INSERT INTO journals (id, fund_id, kind, amount, request_id, memo, actor, reference, counterparty, created_at)"
            " VALUES (1, 1, 'ALLOCATION', 100, '', '', '', '', '', CURRENT_TIMESTAMP)"
        )
    )
    await conn.execute(
        text("INSERT INTO ledger_entries (id, journal_id, account_id, side, amount) VALUES (1, 1, 1, 'D', 100)")
    )


@pytest.mark.parametrize(
    "stmt",
    [
        "UPDATE ledger_entries SET amount = 1",
        "DELETE FROM ledger_entries",
        "UPDATE journals SET memo = 'x'",
        "DELETE FROM journals",
    ],
)
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
            await conn.execute(
                text(f"INSERT INTO ledger_entries (journal_id, account_id, side, amount) VALUES (1, 1, 'C', {amount})")
            )


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


async def test_outbox_payloads_use_lz4_on_postgresql(engine: AsyncEngine, db_url: str) -> None:
    """Migration 0011: a batch's ~100 kB event pages are TOASTed with lz4 (pglz cost ~0.5 s per 1M payments)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("TOAST compression is PostgreSQL's")
    from alembic import command

    from jsx_funds.adapters.db import MIGRATIONS, migrate
    from jsxcore.migrations import alembic_config

    query = text("SELECT attcompression FROM pg_attribute WHERE attrelid = 'outbox'::regclass AND attname = 'payload'")
    async with engine.connect() as conn:
        assert (await conn.execute(query)).scalar_one() == "l"
        # A page written now is stored lz4-compressed and reads back whole.
        page = b"paymentBatches/1/payments/" * 8000
        await conn.execute(
            text(
                "INSERT INTO outbox (event_id, subject, event_type, payload, headers, created_at, attempts)"
                " VALUES ('e1', 's', 't', :p, '{}', CURRENT_TIMESTAMP, 0)"
            ),
            {"p": page},
        )
        row = (
            await conn.execute(text("SELECT pg_column_compression(payload), payload FROM outbox WHERE event_id = 'e1'"))
        ).one()
        assert row[0] == "lz4" and bytes(row[1]) == page
        await conn.commit()
    await engine.dispose()
    command.downgrade(alembic_config(MIGRATIONS, db_url), "0010")
    async with engine.connect() as conn:
        assert (await conn.execute(query)).scalar_one() == ""
    await engine.dispose()
    migrate(db_url)
    async with engine.connect() as conn:
        assert (await conn.execute(query)).scalar_one() == "l"
        assert (
            bytes((await conn.execute(text("SELECT payload FROM outbox WHERE event_id = 'e1'"))).scalar_one()) == page
        )


async def test_migration_0012_shortens_batch_payment_keys_both_ways(engine: AsyncEngine, db_url: str) -> None:
    """Periodic keys lose their constant words (programs/…/beneficiaries/…/periods/…) and get them back on
    downgrade, retries (#n) included; keys of payments made on their own are left alone; the ledger stays
    append-only afterwards."""
    from alembic import command

    from jsx_funds.adapters.db import MIGRATIONS, migrate
    from jsxcore.migrations import alembic_config

    long_keys = [
        "programs/7/beneficiaries/persons/9/periods/2022-08",
        "programs/7/beneficiaries/persons/9/periods/2022-08#2",
        "programs/12/beneficiaries/households/hh-3/periods/2023",
        "applications/42",
        "visits/5",
    ]
    short_keys = [
        "7/persons/9/2022-08",
        "7/persons/9/2022-08#2",
        "12/households/hh-3/2023",
        "applications/42",
        "visits/5",
    ]
    await engine.dispose()
    command.downgrade(alembic_config(MIGRATIONS, db_url), "0011")
    async with engine.begin() as conn:
        await _seed(conn)
        for i, key in enumerate(long_keys, start=10):
            await conn.execute(
                text(
                    "INSERT INTO payments (id, journal_id, fund_id, payment_key, payee, amount, created_at)"
                    " VALUES (:i, 1, 1, :k, 'persons/9', 100, CURRENT_TIMESTAMP)"
                ),
                {"i": i, "k": key},
            )
    await engine.dispose()
    migrate(db_url)
    keys = text("SELECT payment_key FROM payments ORDER BY id")
    async with engine.connect() as conn:
        assert (await conn.execute(keys)).scalars().all() == short_keys
    with pytest.raises(DBAPIError, match="immutable"):
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE payments SET payee = 'x'"))
    await engine.dispose()
    command.downgrade(alembic_config(MIGRATIONS, db_url), "0011")
    async with engine.connect() as conn:
        assert (await conn.execute(keys)).scalars().all() == long_keys
    await engine.dispose()
    migrate(db_url)


async def test_migration_0013_records_each_batchs_count_and_total(engine: AsyncEngine, db_url: str) -> None:
    """Batches written before 0013 get their payment count and total from their payments; downgrade drops both."""
    from alembic import command

    from jsx_funds.adapters.db import MIGRATIONS, migrate
    from jsxcore.migrations import alembic_config

    await engine.dispose()
    command.downgrade(alembic_config(MIGRATIONS, db_url), "0012")
    async with engine.begin() as conn:
        await _seed(conn)
        await conn.execute(
            text(
                "INSERT INTO programs (id, name, type, custom_type, region, fund_id, beneficiary, approval_levels, publicity_days,"
                " year, budget, description, created_at, created_by)"
                " VALUES (1, 'p', 'SPECIAL_SUPPORT', '', '431281', 1, 'PERSON', '', 7, 2022, 0, '', CURRENT_TIMESTAMP, '')"
            )
        )
        for bid in (1, 2, 3):
            await conn.execute(
                text(
                    "INSERT INTO payment_batches (id, program_id, region, period, skipped, actor, request_id, created_at)"
                    " VALUES (:b, 1, '431281', '2022-08', '[]', 'fin', '', CURRENT_TIMESTAMP)"
                ),
                {"b": bid},
            )
        payments: tuple[tuple[int, int | None, int], ...] = (
            (10, 1, 94000),
            (11, 1, 58000),
            (12, 2, 94000),
            (13, None, 500),
        )
        for pid, batch_id, amount in payments:
            await conn.execute(
                text(
                    "INSERT INTO payments (id, journal_id, fund_id, payment_key, payee, amount, created_at, batch_id)"
                    " VALUES (:i, 1, 1, :k, 'persons/9', :a, CURRENT_TIMESTAMP, :b)"
                ),
                {"i": pid, "k": f"k{pid}", "a": amount, "b": batch_id},
            )
    await engine.dispose()
    migrate(db_url)
    counts = text("SELECT id, payment_count, payment_total FROM payment_batches ORDER BY id")
    async with engine.connect() as conn:
        # Batch 3 has no payments (none is ever committed so; the backfill leaves it empty, not zero).
        assert [tuple(r) for r in (await conn.execute(counts)).all()] == [
            (1, 2, 152000),
            (2, 1, 94000),
            (3, None, None),
        ]
    await engine.dispose()
    command.downgrade(alembic_config(MIGRATIONS, db_url), "0012")
    async with engine.connect() as conn:
        with pytest.raises(DBAPIError):
            await conn.execute(counts)
    await engine.dispose()
    migrate(db_url)
