"""Alembic environment of the funds database (see jsxcore.migrations)."""

from jsx_funds.adapters.db import Base
from jsxcore.migrations import run_env

run_env(Base.metadata)
