"""AIP-155 idempotency on SQLite and PostgreSQL, including real races."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Integer, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jsx.members.v1 import members_pb2
from jsxcore.db import CoreBase, create_engine, session_factory, transaction
from jsxcore.errors import InvalidArgument
from jsxcore.idempotency import IdempotencyKey, purge_before, request_hash, run_idempotent
from jsxcore.testing.helpers import rid

METHOD = "/jsx.members.v1.MembersService/CreatePerson"


class _Base(DeclarativeBase):
    pass


class Effect(_Base):
    __tablename__ = "t_effects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    display_name: Mapped[str] = mapped_column(String(50))


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[Any]:
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(CoreBase.metadata.create_all)
        await conn.run_sync(_Base.metadata.create_all)
    yield session_factory(engine)
    await engine.dispose()


def _req(name: str = "张三", request_id: str | None = None) -> members_pb2.CreatePersonRequest:
    return members_pb2.CreatePersonRequest(
        person=members_pb2.Person(display_name=name), request_id=rid() if request_id is None else request_id
    )


async def _create(
    sessions: Any, req: members_pb2.CreatePersonRequest, *, delay: float = 0.0, fail: bool = False, caller: str = "u1"
) -> members_pb2.Person:
    async with transaction(sessions) as s:

        async def handler() -> members_pb2.Person:
            row = Effect(display_name=req.person.display_name)
            s.add(row)
            await s.flush()
            await asyncio.sleep(delay)  # hold the transaction open so a duplicate races us
            if fail:
                raise RuntimeError("handler failed after its effect")
            return members_pb2.Person(name=f"persons/{row.id}", display_name=row.display_name)

        return await run_idempotent(
            s, method=METHOD, request=req, response_type=members_pb2.Person, handler=handler, caller=caller
        )


async def _effects(sessions: Any) -> int:
    async with sessions() as s:
        return int((await s.execute(select(func.count()).select_from(Effect))).scalar_one())


async def test_replay_returns_first_response(sessions: Any) -> None:
    req = _req()
    first = await _create(sessions, req)
    again = await _create(sessions, req)
    assert again == first
    # the id is case-insensitive: the canonical form is the key
    upper = _req(request_id=req.request_id.upper())
    assert await _create(sessions, upper) == first
    assert await _effects(sessions) == 1


async def test_same_id_different_request_is_rejected(sessions: Any) -> None:
    req = _req("张三")
    await _create(sessions, req)
    with pytest.raises(InvalidArgument) as ei:
        await _create(sessions, _req("李四", request_id=req.request_id))
    assert ei.value.reason == "REQUEST_ID_REUSED" and req.request_id in ei.value.message
    # another caller presenting the same id does not get the first caller's response
    with pytest.raises(InvalidArgument) as ei:
        await _create(sessions, req, caller="someone-else")
    assert ei.value.reason == "REQUEST_ID_REUSED"
    assert await _effects(sessions) == 1


@pytest.mark.parametrize(
    ("request_id", "reason"),
    [
        ("", "MISSING_REQUEST_ID"),
        ("12345", "INVALID_REQUEST_ID"),
        ("00000000-0000-0000-0000-000000000000", "INVALID_REQUEST_ID"),
    ],
)
async def test_request_id_must_be_a_uuid(sessions: Any, request_id: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as ei:
        await _create(sessions, _req(request_id=request_id))
    assert ei.value.reason == reason
    assert [v.field for v in ei.value.violations] == ["request_id"]
    assert await _effects(sessions) == 0


async def test_failed_handler_stores_nothing(sessions: Any) -> None:
    req = _req()
    with pytest.raises(RuntimeError):
        await _create(sessions, req, fail=True)
    assert await _effects(sessions) == 0
    done = await _create(sessions, req)  # the retry really runs
    assert done.display_name == "张三" and await _effects(sessions) == 1


async def test_concurrent_duplicates_have_one_effect(sessions: Any) -> None:
    req = _req()
    results = await asyncio.gather(*(_create(sessions, req, delay=0.3) for _ in range(3)))
    assert results[0] == results[1] == results[2]
    assert await _effects(sessions) == 1
    async with sessions() as s:
        assert (await s.execute(select(func.count()).select_from(IdempotencyKey))).scalar_one() == 1


async def test_loser_takes_over_when_winner_rolls_back(sessions: Any) -> None:
    req = _req()
    winner = asyncio.ensure_future(_create(sessions, req, delay=0.3, fail=True))
    await asyncio.sleep(0.1)  # the winner holds the claim
    loser = asyncio.ensure_future(_create(sessions, req))
    with pytest.raises(RuntimeError):
        await winner
    result = await loser
    assert result.display_name == "张三" and await _effects(sessions) == 1


async def test_hash_ignores_request_id_but_not_content() -> None:
    a, b = _req(request_id=rid()), _req()
    assert request_hash(a, "u") == request_hash(b, "u")
    assert request_hash(a, "u") != request_hash(a, "v")
    assert request_hash(a, "u") != request_hash(_req("李四"), "u")
    assert a.request_id  # the caller's message is not modified


async def test_purge(sessions: Any) -> None:
    await _create(sessions, _req())
    async with transaction(sessions) as s:
        assert await purge_before(s, datetime.now(UTC) - timedelta(days=1)) == 0
        assert await purge_before(s, datetime.now(UTC) + timedelta(seconds=1)) == 1
