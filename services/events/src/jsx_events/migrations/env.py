"""Alembic environment of the events database (see jsxcore.migrations)."""
from jsxcore.migrations import run_env

from jsx_events.adapters.db import Base

run_env(Base.metadata)
