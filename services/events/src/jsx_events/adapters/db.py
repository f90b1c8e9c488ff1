"""The events database: the one declarative Base every context's tables use, migrations,
and the keyset for lists shown newest first.

Each context keeps its rows in its own ``tables.py`` on :class:`Base`; they are imported at
the end of this module so that ``Base.metadata`` (Alembic's target, migrations/env.py) holds
every table. Own tables: activities, plans, visits, awards; plus the projection of member
facts (sites, households, pairings) fed by the members service's events.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Select, and_, or_
from sqlalchemy.orm import DeclarativeBase

from jsxcore.db import NAMING
from jsxcore.errors import InvalidArgument
from jsxcore.paging import Page

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def newest_first(page: Page, query: Select[Any], day: Any, id_: Any) -> Select[Any]:
    """Keyset-paginate ``query`` newest ``day`` first, then by ``id_`` (the ``jsxcore.paging`` token,
    its key ``(day.toordinal(), id)``); fetches one extra row for :meth:`Page.cut`."""
    if page.after is not None:
        after = page.after
        if (
            len(after) != 2
            or not isinstance(after[0], int)
            or not isinstance(after[1], str)
            or not 0 < after[0] < 3652060
        ):
            raise InvalidArgument.field("page_token", "翻页令牌无效，请从第一页重新查询", reason="INVALID_PAGE_TOKEN")
        last = date.fromordinal(after[0])
        query = query.where(or_(day < last, and_(day == last, id_ > after[1])))
    return query.order_by(day.desc(), id_).limit(page.size + 1)


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (startup and tests).

    Synchronous: call before the event loop starts or via ``asyncio.to_thread``.
    """
    from jsxcore.migrations import migrate as _migrate

    _migrate(MIGRATIONS, url, revision)


# Every context's rows, so that Base.metadata is the whole schema.
import jsx_events.activities.tables  # noqa: E402
import jsx_events.awards.tables  # noqa: E402
import jsx_events.plans.tables  # noqa: E402
import jsx_events.projections.tables  # noqa: E402
import jsx_events.visits.tables  # noqa: E402,F401
