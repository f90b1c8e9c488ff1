from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncEngine

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2
from jsx_funds.adapters.db import migrate
from jsx_funds.disbursement.service import DisbursementService
from jsx_funds.entrypoints.grpc import Contexts, FundsServicer, compose
from jsx_funds.ledger.service import LedgerService
from jsxcore.auth import Caller, reset_caller, set_caller
from jsxcore.db import create_engine, session_factory
from jsxcore.plugins import PluginHost
from jsxcore.testing.helpers import rid, who

#: Who a test's RPC is made by when it names nobody: a trusted province-wide administrator whose
#: records read "system", as the in-process calls of the service layer did before callers were explicit.
SYSTEM = who("system", "430000")


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated funds database (SQLite and PostgreSQL)."""
    await asyncio.to_thread(migrate, db_url)
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


class Api:
    """The FundsServicer called in process, as the gRPC server calls it: the request is mapped by the
    servicer (field violations come from there) and the caller is bound for ``current_caller()``.

    ``await api.CreateFund(request)`` (made by :data:`SYSTEM`) or ``await api.CreateFund(request, caller)``.
    """

    def __init__(self, contexts: Contexts) -> None:
        self.contexts = contexts
        self.servicer = FundsServicer(contexts)
        self.sessions = contexts.sessions
        self.plugins = contexts.plugins
        self.ledger = contexts.ledger
        self.programs = contexts.programs
        self.disbursement = contexts.disbursement
        self.reporting = contexts.reporting

    async def balance(self, fund_id: int) -> Any:
        return await self.ledger.balance(fund_id)

    def __getattr__(self, rpc: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.servicer, rpc)

        async def call(request: Message, caller: Caller | None = None) -> Any:
            token = set_caller(caller or SYSTEM)
            try:
                return await method(request, None)
            finally:
                reset_caller(token)

        return call


@pytest.fixture
def contexts(engine: AsyncEngine) -> Contexts:
    return compose(session_factory(engine), PluginHost())


@pytest.fixture
def api(contexts: Contexts) -> Api:
    return Api(contexts)


@pytest.fixture
def make_api() -> type[Api]:
    """:class:`Api` for tests that compose their own contexts (plugins, clock …)."""
    return Api


@pytest.fixture
def svc(contexts: Contexts) -> LedgerService:
    return contexts.ledger


@pytest.fixture
def disbursement(contexts: Contexts) -> DisbursementService:
    """Pays and returns payments in a caller's transaction (``pay``, ``return_payment``)."""
    return contexts.disbursement


class Kit:
    """Shorthands for setting up funds, sources and money in tests (through the RPCs)."""

    def __init__(self, api: Api) -> None:
        self.api = api

    rid = staticmethod(rid)

    async def make_fund(
        self,
        *,
        region: str = "431224",
        kind: funds_pb2.FundKind.ValueType = funds_pb2.FUND_KIND_HAPPINESS,
        allow_negative: bool = False,
    ) -> int:
        fund = await self.api.CreateFund(
            funds_pb2.CreateFundRequest(
                request_id=rid(),
                fund=funds_pb2.Fund(
                    display_name="溆浦县某村幸福基金",
                    kind=kind,
                    owner_region=common_pb2.RegionCode(code=region),
                    allow_negative=allow_negative,
                    owner="某村计生协",
                ),
            )
        )
        return int(fund.name.split("/")[1])

    async def make_source(
        self,
        *,
        region: str = "431224",
        kind: funds_pb2.FundSourceKind.ValueType = funds_pb2.FUND_SOURCE_KIND_COUNTY_FINANCE,
    ) -> int:
        src = await self.api.CreateFundSource(
            funds_pb2.CreateFundSourceRequest(
                request_id=rid(),
                fund_source=funds_pb2.FundSource(
                    display_name="2022年县级计生专项资金",
                    kind=kind,
                    region=common_pb2.RegionCode(code=region),
                ),
            )
        )
        return int(src.name.split("/")[1])

    async def allocate(
        self, fund_id: int, source_id: int, fen: int, request_id: str | None = None
    ) -> funds_pb2.LedgerEntry:
        return await self.api.PostAllocation(
            funds_pb2.PostAllocationRequest(
                fund=f"funds/{fund_id}",
                source=f"fundSources/{source_id}",
                amount=common_pb2.Money(fen=fen),
                reference="溆财预〔2022〕12号",
                request_id=request_id or rid(),
            )
        )

    @staticmethod
    def donation_request(
        fund_id: int, fen: int, donor: str = "张三", year: int = 2022
    ) -> funds_pb2.RecordDonationRequest:
        return funds_pb2.RecordDonationRequest(
            request_id=rid(),
            donation=funds_pb2.Donation(
                fund=f"funds/{fund_id}",
                donor_display_name=donor,
                donor_kind=funds_pb2.DONOR_KIND_RETURNEE,
                amount=common_pb2.Money(fen=fen),
                received_date=common_pb2.Date(year=year, month=5, day=29),
            ),
        )


@pytest.fixture
def kit(api: Api) -> Kit:
    return Kit(api)
