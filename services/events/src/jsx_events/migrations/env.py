"""Alembic environment of the events database (see jsxcore.migrations)."""

from jsx_events.adapters.db import Base
from jsxcore.migrations import run_env

run_env(Base.metadata)
