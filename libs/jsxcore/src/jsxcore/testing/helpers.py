"""Small helpers every service's tests share: request ids, callers, a clock, gRPC clients, JetStream messages.

::

    from jsxcore.testing.helpers import Clock, rid, who

    CLERK = who("clerk-hj", "431281", "county_clerk")
    await svc.create_fund(..., caller=CLERK, idem=Idem.of(SERVICE, "CreateFund", req))
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from jsxcore.auth import Caller
from jsxcore.values import RegionCode

#: A Monday, 10:00 in China: a working day, so 公示 working-day counts start cleanly.
MONDAY_10H_CST = datetime(2022, 9, 5, 2, 0, tzinfo=UTC)


def rid() -> str:
    """A fresh AIP-155 request id."""
    return str(uuid.uuid4())


def who(subject: str, region: str, *roles: str, display_name: str | None = None) -> Caller:
    """A verified caller with ``roles`` (default ``admin``) scoped to ``region``."""
    return Caller(
        subject=subject,
        display_name=display_name or subject,
        roles=roles or ("admin",),
        region=RegionCode.parse(region),
    )


class Clock:
    """A settable clock for services that take ``clock=`` (``clock.now``, ``clock.advance(days=…)``)."""

    def __init__(self, now: datetime = MONDAY_10H_CST) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def today(self) -> date:
        """The day in China (UTC+8) — what a clerk means by a date."""
        return (self.now + timedelta(hours=8)).date()


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC call metadata carrying ``token``."""
    return (("authorization", f"Bearer {token}"),)


@asynccontextmanager
async def grpc_stub(addr: str, stub_class: type[Any]) -> AsyncIterator[Any]:
    """A stub over a fresh insecure channel to ``addr``, closed afterwards."""
    channel = grpc.aio.insecure_channel(addr)
    try:
        yield stub_class(channel)
    finally:
        await channel.close()


async def pull_messages(js: JetStreamContext, subject: str, stream: str, n: int, *, within: float = 20) -> list[Msg]:
    """Up to ``n`` messages on ``subject`` in ``stream`` (an ephemeral pull consumer), waiting at
    most ``within`` seconds for them; fewer if they do not all arrive in time."""
    sub = await js.pull_subscribe(subject, durable=None, stream=stream)
    got: list[Msg] = []
    deadline = asyncio.get_running_loop().time() + within
    while len(got) < n and asyncio.get_running_loop().time() < deadline:
        try:
            got += await sub.fetch(n - len(got), timeout=1)
        except TimeoutError:  # nats-py raises its own subclass, or the bare one near the deadline
            pass
    await sub.unsubscribe()
    return got


__all__ = ["MONDAY_10H_CST", "Clock", "bearer", "grpc_stub", "pull_messages", "rid", "who"]
