"""Alembic environment of the members database (see jsxcore.migrations)."""

from jsxcore.migrations import run_env

from jsx_members.adapters.db import Base

run_env(Base.metadata)
