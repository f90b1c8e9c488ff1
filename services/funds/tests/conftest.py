from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from jsxcore.db import create_engine

from jsx_funds.adapters.db import migrate


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated funds database (SQLite and PostgreSQL)."""
    await asyncio.to_thread(migrate, db_url)
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


import uuid

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2
from jsxcore.db import session_factory

from jsx_funds.ledger.service import LedgerService


@pytest.fixture
def svc(engine: AsyncEngine) -> LedgerService:
    return LedgerService(session_factory(engine))


class Kit:
    """Shorthands for setting up funds, sources and money in tests."""

    def __init__(self, svc: LedgerService) -> None:
        self.svc = svc

    @staticmethod
    def rid() -> str:
        return str(uuid.uuid4())


    async def make_fund(
        self, *, region: str = "431224", kind: int = funds_pb2.FUND_KIND_HAPPINESS, allow_negative: bool = False
    ) -> int:
        fund = await self.svc.create_fund(funds_pb2.CreateFundRequest(request_id=uuid.uuid4().__str__(), fund=funds_pb2.Fund(
            display_name="溆浦县某村幸福基金", kind=kind, owner_region=common_pb2.RegionCode(code=region),
            allow_negative=allow_negative, owner="某村计生协",
        )), None)
        return int(fund.name.split("/")[1])


    async def make_source(self, *, region: str = "431224", kind: int = funds_pb2.FUND_SOURCE_KIND_COUNTY_FINANCE) -> int:
        src = await self.svc.create_fund_source(funds_pb2.CreateFundSourceRequest(request_id=uuid.uuid4().__str__(), fund_source=funds_pb2.FundSource(
            display_name="2022年县级计生专项资金", kind=kind, region=common_pb2.RegionCode(code=region),
        )), None)
        return int(src.name.split("/")[1])


    async def allocate(self, fund_id: int, source_id: int, fen: int, request_id: str | None = None) -> funds_pb2.LedgerEntry:
        return await self.svc.post_allocation(funds_pb2.PostAllocationRequest(
            fund=f"funds/{fund_id}", source=f"fundSources/{source_id}", amount=common_pb2.Money(fen=fen),
            reference="溆财预〔2022〕12号", request_id=request_id or str(uuid.uuid4()),
        ), None)


    @staticmethod
    def donation_request(fund_id: int, fen: int, donor: str = "张三", year: int = 2022) -> funds_pb2.RecordDonationRequest:
        return funds_pb2.RecordDonationRequest(request_id=uuid.uuid4().__str__(), donation=funds_pb2.Donation(
            fund=f"funds/{fund_id}", donor_display_name=donor, donor_kind=funds_pb2.DONOR_KIND_RETURNEE,
            amount=common_pb2.Money(fen=fen), received_date=common_pb2.Date(year=year, month=5, day=29),
        ))


@pytest.fixture
def kit(svc: LedgerService) -> Kit:
    return Kit(svc)
