"""Alembic environment of the funds database (see jsxcore.migrations)."""
from jsxcore.migrations import run_env

from jsx_funds.adapters.db import Base

run_env(Base.metadata)
