"""The one way a mutating use case runs: a transaction, AIP-155 idempotency,
integrity errors mapped, and the outbox relay woken after commit.

The servicer builds an :class:`Idem` from the wire request (the request is what
AIP-155 fingerprints, with ``request_id`` cleared) and passes it, with the plain
arguments it mapped from that request and the :class:`~jsxcore.auth.Caller`, to
the use case. The use case calls :func:`mutate` with the work to do in the
transaction; the response it returns is stored with the idempotency key in the
same transaction, so a retry gets the first response and no second effect.

Use cases that must run without a request id (event consumers, batch jobs,
tests of pure behaviour) pass ``idem=None``: the same transaction and error
mapping, no idempotency record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsxcore.auth import Caller
from jsxcore.db import transaction
from jsxcore.errors import Aborted, DomainError
from jsxcore.idempotency import run_idempotent

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Idem:
    """The AIP-155 identity of one mutating call: the RPC's full method name and its wire request."""

    method: str
    request: Message

    @classmethod
    def of(cls, service: str, rpc: str, request: Message) -> Idem:
        """``Idem.of("jsx.funds.v1.FundsService", "CreateFund", request)``."""
        return cls(f"/{service}/{rpc}", request)


def _default_conflict(_: IntegrityError) -> DomainError:
    return Aborted("数据已被其他操作同时修改，请刷新后重试", reason="CONCURRENT_MODIFICATION")


async def mutate(
    sessions: async_sessionmaker[AsyncSession],
    idem: Idem | None,
    response_type: type[M],
    work: Callable[[AsyncSession], Awaitable[M]],
    *,
    caller: Caller | None = None,
    notify: Callable[[], None] | None = None,
    on_conflict: Callable[[IntegrityError], DomainError] = _default_conflict,
) -> M:
    """Run ``work`` in one transaction, at most once per ``idem``.

    * ``caller`` — whose request it is; its subject is part of the fingerprint, so
      another caller replaying a ``request_id`` gets ``REQUEST_ID_REUSED``, never
      someone else's response.
    * ``notify`` — called after commit (wakes the outbox relay).
    * ``on_conflict`` — maps a unique-constraint violation that escaped the use
      case's own checks (a concurrent request won the race) to a domain error;
      by default ABORTED ``CONCURRENT_MODIFICATION``, which a client may retry.
    """
    try:
        async with transaction(sessions) as s:
            if idem is None:
                result = await work(s)
            else:
                result = await run_idempotent(
                    s,
                    method=idem.method,
                    request=idem.request,
                    response_type=response_type,
                    handler=lambda: work(s),
                    caller=None if caller is None else caller.subject,
                )
    except IntegrityError as exc:
        raise on_conflict(exc) from None
    if notify is not None:
        notify()
    return result


__all__ = ["Idem", "mutate"]
