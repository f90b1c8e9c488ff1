"""Each service's Alembic history builds exactly the schema its models
declare, on SQLite and PostgreSQL: a model change without a migration (or a
migration that drifts from the models) fails here, not in production."""

from __future__ import annotations

import importlib

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from jsxcore.db import CoreBase

SERVICES = {
    "members": ("jsx_members.migrations", "jsx_members.adapters.db"),
    "funds": ("jsx_funds.adapters.db", "jsx_funds.adapters.db"),
    "events": ("jsx_events.adapters.db", "jsx_events.adapters.db"),
}


def _sync_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_migrations_match_models(service: str, db_url: str) -> None:
    migrate_mod, models_mod = SERVICES[service]
    importlib.import_module(migrate_mod).migrate(db_url)
    base = importlib.import_module(models_mod).Base
    import jsxcore.idempotency  # registers its table on CoreBase
    import jsxcore.outbox  # noqa: F401  (registers its tables on CoreBase)

    combined = sa.MetaData()
    for metadata in (CoreBase.metadata, base.metadata):
        for table in metadata.tables.values():
            table.to_metadata(combined)
    engine = sa.create_engine(_sync_url(db_url))
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [
                d
                for d in compare_metadata(ctx, combined)
                # alembic's own bookkeeping table is not a model
                if not (d[0] == "remove_table" and d[1].name == "alembic_version")
            ]
    finally:
        engine.dispose()
    assert diff == [], f"{service}: models and migrations differ:\n" + "\n".join(map(str, diff))
