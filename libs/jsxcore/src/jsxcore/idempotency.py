"""AIP-155 request identification: every mutating RPC carries ``request_id``.

``run_idempotent`` runs inside the caller's transaction:

* same ``request_id`` + same request → the stored first response, no effect;
* same ``request_id`` + different request → INVALID_ARGUMENT
  ``REQUEST_ID_REUSED``;
* missing or malformed ``request_id`` (must be a UUID) → INVALID_ARGUMENT with
  a field violation on ``request_id``;
* otherwise the handler runs and its response is stored in the same
  transaction, so the effect and the record of it commit or vanish together.

Key: ``(method, request_id)``. The stored hash covers the request (with
``request_id`` cleared, serialized deterministically) *and* the caller's
subject, so another caller presenting someone else's ``request_id`` gets
``REQUEST_ID_REUSED`` instead of the first caller's response.

Races: the key row is claimed *before* the handler runs, with
``INSERT … ON CONFLICT DO NOTHING``. Two identical requests racing: the second
insert waits for the first transaction (PostgreSQL row lock, SQLite write
lock); once the first commits, the second inserts nothing, reads the winner's
row and returns the winner's response — its handler never runs. If the first
rolls back, the second claims the key and runs normally. This relies on READ
COMMITTED (PostgreSQL's default) so the re-read sees the winner's commit.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy import DateTime, Index, LargeBinary, String, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from jsxcore.db import CoreBase, rowcount
from jsxcore.errors import Aborted, InvalidArgument

M = TypeVar("M", bound=Message)


class IdempotencyKey(CoreBase):
    """One handled mutating request and the response it got."""

    __tablename__ = "idempotency_keys"

    method: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: sha256 hex of caller subject + deterministic request bytes (request_id cleared)
    request_hash: Mapped[str] = mapped_column(String(64))
    caller: Mapped[str] = mapped_column(String(200), default="")
    response: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    #: full proto name of the stored response; empty while the claim is in flight
    response_type: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)


def normalize_request_id(value: str) -> str:
    """The canonical lower-case UUID form, or InvalidArgument on ``request_id``."""
    if not value:
        raise InvalidArgument.field(
            "request_id",
            "缺少请求编号（request_id）：每个修改类请求都须携带一个新生成的 UUID",
            reason="MISSING_REQUEST_ID",
        )
    try:
        parsed = uuid.UUID(value.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.int == 0 or len(value.strip()) not in (32, 36):
        raise InvalidArgument.field(
            "request_id",
            f"请求编号（request_id）“{value[:64]}”不是有效的 UUID，例如 3f2b8c1e-6d4a-4e1f-9c2d-7a8b9c0d1e2f",
            reason="INVALID_REQUEST_ID",
        )
    return str(parsed)


def request_hash(request: Message, caller: str = "") -> str:
    """sha256 over the caller and the request with ``request_id`` cleared."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("request_id")
    h = hashlib.sha256(caller.encode() + b"\x00")
    h.update(copy.SerializeToString(deterministic=True))
    return h.hexdigest()


def _current_subject() -> str:
    from jsxcore.auth import _CALLER

    caller = _CALLER.get()
    return caller.subject if caller is not None else ""


def _insert(dialect: str) -> postgresql.Insert | sqlite.Insert:
    if dialect == "postgresql":
        return postgresql.insert(IdempotencyKey)
    if dialect == "sqlite":
        return sqlite.insert(IdempotencyKey)
    raise NotImplementedError(f"idempotency keys are not supported on {dialect}")


async def _load(session: AsyncSession, method: str, request_id: str) -> IdempotencyKey | None:
    result = await session.execute(
        select(IdempotencyKey)
        .where(IdempotencyKey.method == method, IdempotencyKey.request_id == request_id)
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


def _replay(row: IdempotencyKey, digest: str, response_type: type[M]) -> M:
    if row.request_hash != digest:
        raise InvalidArgument(
            f"请求编号（request_id）{row.request_id} 已用于另一笔内容不同的请求；"
            "如是新的业务请生成新的请求编号，如是重试请保持请求内容完全一致",
            reason="REQUEST_ID_REUSED",
            metadata={"request_id": row.request_id, "method": row.method},
        )
    if not row.response_type:
        # Only visible to the same transaction re-entering; other transactions
        # never see an unfinished claim.
        raise Aborted("相同请求正在处理中，请稍后重试", reason="REQUEST_IN_PROGRESS")
    if row.response_type != response_type.DESCRIPTOR.full_name:
        raise InvalidArgument(
            f"请求编号（request_id）{row.request_id} 已用于其他类型的请求，请生成新的请求编号",
            reason="REQUEST_ID_REUSED",
            metadata={"request_id": row.request_id, "method": row.method},
        )
    return response_type.FromString(row.response)


async def run_idempotent(
    session: AsyncSession,
    *,
    method: str,
    request: Message,
    response_type: type[M],
    handler: Callable[[], Awaitable[M]],
    caller: str | None = None,
) -> M:
    """Run ``handler`` at most once per ``(method, request.request_id)``.

    Call it inside the transaction that also holds the handler's effects
    (``async with transaction(sessions) as s: return await run_idempotent(s, …)``).
    ``method`` is the RPC's full name (``/jsx.funds.v1.FundsService/ApproveApplication``);
    ``caller`` defaults to the current RPC caller's subject.
    """
    request_id = normalize_request_id(getattr(request, "request_id"))  # noqa: B009  (any request type)
    digest = request_hash(request, _current_subject() if caller is None else caller)

    row = await _load(session, method, request_id)
    if row is not None:
        return _replay(row, digest, response_type)

    claim = (
        _insert(session.get_bind().dialect.name)
        .values(
            method=method,
            request_id=request_id,
            request_hash=digest,
            caller=_current_subject() if caller is None else caller,
            response=b"",
            response_type="",
            created_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing(index_elements=["method", "request_id"])
        # RETURNING says whether *this* statement inserted; rowcount proved unreliable under the race
        .returning(IdempotencyKey.request_id)
    )
    result = await session.execute(claim)
    if result.first() is None:
        # Lost a race: the winner has committed (our insert waited for it).
        row = await _load(session, method, request_id)
        if row is None:  # pragma: no cover - would need the winner's row deleted in between
            raise Aborted("请求冲突，请稍后重试", reason="REQUEST_CONFLICT")
        return _replay(row, digest, response_type)

    response = await handler()
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.method == method, IdempotencyKey.request_id == request_id)
        .values(response=response.SerializeToString(deterministic=True), response_type=response.DESCRIPTOR.full_name)
    )
    return response


async def purge_before(session: AsyncSession, before: datetime) -> int:
    """Delete keys created before ``before`` (retention job); returns the count."""
    result = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < before))
    return rowcount(result)


__all__ = ["IdempotencyKey", "normalize_request_id", "purge_before", "request_hash", "run_idempotent"]
