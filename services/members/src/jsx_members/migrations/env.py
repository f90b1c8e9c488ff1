"""Alembic environment of the members database (see jsxcore.migrations)."""

from jsx_members.adapters.db import Base
from jsxcore.migrations import run_env

run_env(Base.metadata)
