"""The shared plumbing: wire mapping, page tokens, the mutating use-case helper."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import ClassVar

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Integer, String, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2
from jsxcore import paging, wire
from jsxcore.db import create_engine, session_factory
from jsxcore.errors import Aborted, AlreadyExists, InvalidArgument
from jsxcore.idempotency import IdempotencyKey
from jsxcore.testing.helpers import Clock, rid, who
from jsxcore.usecase import Idem, mutate
from jsxcore.values import Money, RegionCode

# ---------------------------------------------------------------- wire


def test_dates_round_trip_and_refuse_impossible_days() -> None:
    assert wire.date_from(wire.date_to(date(2022, 2, 28)), "d") == date(2022, 2, 28)
    assert wire.date_from(common_pb2.Date(), "d") is None
    with pytest.raises(InvalidArgument) as e:
        wire.date_from(common_pb2.Date(), "apply.date", required=True)
    assert e.value.violations[0].field == "apply.date"
    with pytest.raises(InvalidArgument) as e:
        wire.date_from(common_pb2.Date(year=2022, month=2, day=30), "d")
    assert "2022-2-30" in e.value.violations[0].description


def test_timestamps_treat_naive_as_utc() -> None:
    naive = datetime(2022, 9, 5, 2, 0)
    assert wire.ts_from(wire.ts_to(naive), "t") == naive.replace(tzinfo=UTC)
    assert wire.ts_from(Timestamp(), "t") is None
    assert wire.ts_to(None) == Timestamp()


def test_money() -> None:
    assert wire.money_to(Money(94000)).fen == 94000
    assert wire.money_from(common_pb2.Money(fen=5), "amount") == Money(5)
    with pytest.raises(InvalidArgument) as e:
        wire.money_from(common_pb2.Money(fen=0), "amount", positive=True)
    assert e.value.violations[0].field == "amount"


class Kind(str, enum.Enum):
    DAY = "DAY"
    MONTH = "MONTH"


class FakeEnum:
    """Stands in for a generated enum wrapper (Name/Value/keys)."""

    _names: ClassVar[dict[int, str]] = {0: "KIND_UNSPECIFIED", 1: "KIND_DAY", 2: "KIND_MONTH", 3: "KIND_WEEK"}

    @classmethod
    def Name(cls, n: int) -> str:  # protobuf's spelling
        try:
            return cls._names[n]
        except KeyError:
            raise ValueError(n) from None

    @classmethod
    def Value(cls, name: str) -> int:
        for k, v in cls._names.items():
            if v == name:
                return k
        raise ValueError(name)

    @classmethod
    def keys(cls) -> list[str]:
        return list(cls._names.values())


def test_enums_refuse_unspecified_unknown_and_unmapped() -> None:
    assert wire.enum_from(FakeEnum, 2, "KIND_", Kind, "kind", "周期") is Kind.MONTH
    assert wire.enum_to(FakeEnum, "KIND_", Kind.DAY) == 1
    assert wire.enum_to(FakeEnum, "KIND_", None) == 0
    for bad in (0, 3, 99):  # unspecified, a wire name the domain lacks, an undefined number
        with pytest.raises(InvalidArgument) as e:
            wire.enum_from(FakeEnum, bad, "KIND_", Kind, "kind", "周期")
        assert e.value.violations[0].field == "kind"
        assert "DAY" in e.value.violations[0].description


def test_resource_names() -> None:
    assert wire.name_to("funds", 12) == "funds/12"
    assert wire.name_to("funds", "") == ""
    assert wire.id_from("households/abc", "households", "h") == "abc"
    assert wire.id_from("abc", "households", "h") == "abc"
    assert wire.int_id_from("funds/12", "funds", "fund") == 12
    for bad in ("households/households/abc", "persons/abc/x", "households/"):
        with pytest.raises(InvalidArgument):
            wire.id_from(bad, "households", "h")
    for bad in ("funds/0", "funds/-1", f"funds/{2**63}", "funds/１２", "funds/x"):
        with pytest.raises(InvalidArgument) as e:
            wire.int_id_from(bad, "funds", "fund")
        assert e.value.violations[0].field == "fund"


def test_regions_and_periods() -> None:
    assert wire.region_from(common_pb2.RegionCode(code="431281"), "r") == RegionCode.parse("431281")
    assert wire.region_from("", "r", required=False) is None
    with pytest.raises(InvalidArgument):
        wire.region_from("", "r")
    assert str(wire.period_from(common_pb2.Period(code="2022-08"), "p")) == "2022-08"


# ---------------------------------------------------------------- page tokens


def test_page_token_bound_to_query_and_filter() -> None:
    first = paging.page(2, "", query="Q/List", filters=("431281", "ACTIVE"))
    assert first.after is None and first.size == 2
    rows, token = first.cut([1, 2, 3], key=lambda r: r)
    assert rows == [1, 2] and token
    again = paging.page(2, token, query="Q/List", filters=("431281", "ACTIVE"))
    assert again.after == (2,)
    with pytest.raises(InvalidArgument) as e:
        paging.page(2, token, query="Q/List", filters=("431222", "ACTIVE"))
    assert e.value.reason == "PAGE_TOKEN_MISMATCH"
    with pytest.raises(InvalidArgument):
        paging.page(2, token, query="Q/Other", filters=("431281", "ACTIVE"))


def test_forged_and_garbage_tokens_are_invalid_argument() -> None:
    good = paging.page(5, "", query="Q", filters=()).token(7)
    body, mac = good.split(".")
    forged = paging.Page(5, None, "x").token(7).split(".")[0] + "." + mac  # another payload, old MAC
    for bad in (forged, body + "." + "0" * 24, "x" * 5000, "no-dot", "a.b.c", "!!!.abc", body[:-2] + "." + mac):
        with pytest.raises(InvalidArgument) as e:
            paging.page(5, bad, query="Q", filters=())
        assert e.value.violations[0].field == "page_token"
    with pytest.raises(InvalidArgument):
        paging.page(-1, "", query="Q")
    assert paging.page(0, "", query="Q").size == paging.DEFAULT_PAGE
    assert paging.page(10**6, "", query="Q").size == paging.MAX_PAGE


def test_no_next_token_on_the_last_page() -> None:
    p = paging.page(3, "", query="Q")
    assert p.cut([1, 2, 3], key=lambda r: r) == ([1, 2, 3], "")
    assert p.cut([], key=lambda r: r) == ([], "")


class _Base(DeclarativeBase):
    pass


class _Row(_Base):
    __tablename__ = "plumbing_rows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grp: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(20), unique=True)


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(_Base.metadata.create_all)
        await conn.run_sync(IdempotencyKey.metadata.create_all)
    yield session_factory(engine)
    await engine.dispose()


async def test_keyset_pages_walk_every_row_once_with_composite_keys(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s, s.begin():
        await s.execute(insert(_Row), [{"id": i, "grp": "ab"[i % 2], "name": f"n{i}"} for i in range(1, 24)])
    seen: list[int] = []
    token = ""
    while True:
        p = paging.page(5, token, query="Rows", filters=("all",))
        async with sessions() as s:
            rows = list((await s.execute(p.apply(select(_Row), _Row.grp, _Row.id))).scalars())
        page_rows, token = p.cut(rows, key=lambda r: (r.grp, r.id))
        seen += [r.id for r in page_rows]
        if not token:
            break
    assert sorted(seen) == list(range(1, 24)) and len(seen) == len(set(seen))
    assert seen[:12] == [*[i for i in range(1, 24) if i % 2 == 0][:11], 1]


# ---------------------------------------------------------------- mutate


async def test_mutate_is_idempotent_and_maps_integrity_errors(sessions: async_sessionmaker[AsyncSession]) -> None:
    calls = []
    woken = []
    caller = who("clerk", "431281", "county_clerk")

    async def add(s: AsyncSession, name: str) -> common_pb2.Money:
        calls.append(name)
        s.add(_Row(grp="a", name=name))
        await s.flush()
        return common_pb2.Money(fen=len(calls))

    # any mutating request message will do: AIP-155 needs its request_id field
    r = funds_pb2.CreateFundSourceRequest(request_id=rid())
    r.fund_source.display_name = "县财政"
    idem = Idem.of("jsx.funds.v1.FundsService", "CreateFundSource", r)
    first = await mutate(
        sessions, idem, common_pb2.Money, lambda s: add(s, "x"), caller=caller, notify=lambda: woken.append(1)
    )
    second = await mutate(
        sessions, idem, common_pb2.Money, lambda s: add(s, "y"), caller=caller, notify=lambda: woken.append(1)
    )
    assert first == second and calls == ["x"] and len(woken) == 2
    other = funds_pb2.CreateFundSourceRequest(request_id=r.request_id)
    other.fund_source.display_name = "省财政"
    with pytest.raises(InvalidArgument) as e:
        await mutate(
            sessions,
            Idem.of("jsx.funds.v1.FundsService", "CreateFundSource", other),
            common_pb2.Money,
            lambda s: add(s, "z"),
            caller=caller,
        )
    assert e.value.reason == "REQUEST_ID_REUSED"
    # someone else replaying the same request id never gets the first caller's response
    with pytest.raises(InvalidArgument):
        await mutate(sessions, idem, common_pb2.Money, lambda s: add(s, "w"), caller=who("other", "431281"))

    with pytest.raises(Aborted):
        await mutate(sessions, None, common_pb2.Money, lambda s: add(s, "x"))

    def taken(_: IntegrityError) -> AlreadyExists:
        return AlreadyExists("名称已存在", reason="NAME_TAKEN")

    with pytest.raises(AlreadyExists):
        await mutate(sessions, None, common_pb2.Money, lambda s: add(s, "x"), on_conflict=taken)
    async with sessions() as s:
        names = sorted((await s.execute(select(_Row.name))).scalars())
    assert names == ["x"]  # nothing of the refused calls was left behind


def test_clock() -> None:
    c = Clock()
    assert c.today() == date(2022, 9, 5)
    c.advance(hours=15)
    assert c.today() == date(2022, 9, 6)
