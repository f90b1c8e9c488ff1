"""The funds service end to end: a real gRPC server on the jsxcore runtime
(auth, rich errors), a real nats-server receiving the outbox events, and
SQLite/PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
from sqlalchemy import func, select

from jsx.common.v1 import common_pb2 as c
from jsx.funds.v1 import events_pb2, funds_pb2_grpc
from jsx.funds.v1 import funds_pb2 as pb
from jsx_funds.adapters.db import migrate
from jsx_funds.entrypoints.grpc import build_runtime
from jsx_funds.ledger.tables import JournalRow
from jsxcore.auth import issue_token
from jsxcore.config import ServiceConfig
from jsxcore.pii import generate_key
from jsxcore.runtime import error_details
from jsxcore.testing.helpers import rid


def reason_of(err: grpc.RpcError) -> str:
    """The ErrorInfo reason a refused call carries (every refusal checked here carries one)."""
    info = error_details(err)[0]
    assert info is not None
    return info.reason


SECRET = "f" * 40


class Client:
    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self.stub = funds_pb2_grpc.FundsServiceStub(channel)
        self.md = (("authorization", f"Bearer {token}"),)

    def __getattr__(self, rpc: str):
        method = getattr(self.stub, rpc)
        return lambda req: method(req, metadata=self.md, timeout=20)


@pytest.fixture
async def stack(db_url: str, nats_url: str, tmp_path: Path) -> AsyncIterator[dict]:
    env = {
        "JSX_FUNDS_DATABASE_URL": db_url,
        "JSX_FUNDS_NATS_URL": nats_url,
        "JSX_FUNDS_GRPC_ADDR": "127.0.0.1:0",
        "JSX_FUNDS_DATA_DIR": str(tmp_path),
        "JSX_PII_KEY": generate_key(),
        "JSX_BLIND_INDEX_KEY": generate_key(),
        "JSX_AUTH_SECRET": SECRET,
    }
    config = ServiceConfig.from_env("funds", env)
    await asyncio.to_thread(migrate, db_url)
    rt, service, _relay = build_runtime(config)
    port = await rt.start()
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    clients = {
        "xp_fin": Client(channel, issue_token(SECRET, "fin-xp", ["finance_officer"], "431224")),
        "yl_fin": Client(channel, issue_token(SECRET, "fin-yl", ["finance_officer"], "431222")),
        "xp_clerk": Client(channel, issue_token(SECRET, "clerk-xp", ["county_clerk"], "431224")),
        "xp_approver": Client(channel, issue_token(SECRET, "appr-xp", ["county_approver"], "431224")),
    }
    try:
        try:
            await js.purge_stream("JSX_FUNDS")
        except Exception:
            pass  # the relay creates the stream on first publish
        yield {"clients": clients, "js": js, "service": service}
    finally:
        await channel.close()
        await rt.stop(0)
        await nc.close()


async def _journals(service: Any) -> int:
    async with service.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(JournalRow))).scalar_one())


async def test_funds_over_grpc(stack: dict[str, Any]) -> None:
    fin, yl, clerk = stack["clients"]["xp_fin"], stack["clients"]["yl_fin"], stack["clients"]["xp_clerk"]
    src = await fin.CreateFundSource(
        pb.CreateFundSourceRequest(
            request_id=rid(),
            fund_source=pb.FundSource(
                display_name="2022年县级幸福基金配套",
                kind=pb.FUND_SOURCE_KIND_COUNTY_FINANCE,
                region=c.RegionCode(code="431224"),
            ),
        )
    )
    fund = await fin.CreateFund(
        pb.CreateFundRequest(
            request_id=rid(),
            fund=pb.Fund(
                display_name="某村幸福基金", kind=pb.FUND_KIND_HAPPINESS, owner_region=c.RegionCode(code="431224102203")
            ),
        )
    )
    assert fund.owner_region.code == "431224102203" and fund.balance.fen == 0

    # idempotent retry: same request_id and body → the first response, posted once
    req = pb.PostAllocationRequest(fund=fund.name, source=src.name, amount=c.Money(fen=2000_00), request_id=rid())
    first = await fin.PostAllocation(req)
    assert await fin.PostAllocation(req) == first
    assert await _journals(stack["service"]) == 1

    don = await fin.RecordDonation(
        pb.RecordDonationRequest(
            request_id=rid(),
            donation=pb.Donation(
                fund=fund.name,
                donor_display_name="返乡企业家王某",
                donor_kind=pb.DONOR_KIND_RETURNEE,
                amount=c.Money(fen=500_00),
                received_date=c.Date(year=2022, month=5, day=29),
            ),
        )
    )
    assert don.receipt_number == "431224102203-2022-000001"
    got = await clerk.GetFund(pb.GetFundRequest(name=fund.name))
    assert got.balance.fen == 2500_00 and got.available.fen == 2500_00

    # permission: a clerk may read but not post money
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await clerk.PostAllocation(
            pb.PostAllocationRequest(fund=fund.name, source=src.name, amount=c.Money(fen=1), request_id=rid())
        )
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # region scope: 沅陵's finance officer cannot see or touch 溆浦's fund
    for call in (
        yl.GetFund(pb.GetFundRequest(name=fund.name)),
        yl.PostAllocation(
            pb.PostAllocationRequest(fund=fund.name, source=src.name, amount=c.Money(fen=1), request_id=rid())
        ),
        yl.ListLedgerEntries(pb.ListLedgerEntriesRequest(fund=fund.name)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(e.value) == "OUT_OF_REGION"
    assert (await yl.ListFunds(pb.ListFundsRequest())).funds == []
    assert [f.name for f in (await clerk.ListFunds(pb.ListFundsRequest())).funds] == [fund.name]

    # bad input: rich INVALID_ARGUMENT with field violations, nothing written
    before = await _journals(stack["service"])
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await fin.RecordDonation(
            pb.RecordDonationRequest(
                request_id=rid(),
                donation=pb.Donation(
                    fund=fund.name, amount=c.Money(fen=0), received_date=c.Date(year=2022, month=2, day=30)
                ),
            )
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _info, bad, _ = error_details(e.value)
    assert bad is not None
    assert {v.field for v in bad.field_violations} == {
        "donation.donor_display_name",
        "donation.donor_kind",
        "donation.amount",
        "donation.received_date",
    }
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await fin.PostAllocation(pb.PostAllocationRequest(fund=fund.name, source=src.name, amount=c.Money(fen=5)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await _journals(stack["service"]) == before

    # reversing the allocation after nothing was spent works; a second reversal is refused
    rev = await fin.ReverseLedgerEntry(
        pb.ReverseLedgerEntryRequest(name=first.name, reason="拨款文号录错", request_id=rid())
    )
    assert rev.amount.fen == -2000_00 and rev.balance_after.fen == 500_00
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await fin.ReverseLedgerEntry(pb.ReverseLedgerEntryRequest(name=first.name, reason="再冲", request_id=rid()))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(e.value) == "ALREADY_REVERSED"

    page = await clerk.ListLedgerEntries(pb.ListLedgerEntriesRequest(fund=fund.name))
    assert [e.kind for e in page.ledger_entries] == [
        pb.ENTRY_KIND_ALLOCATION,
        pb.ENTRY_KIND_DONATION,
        pb.ENTRY_KIND_REVERSAL,
    ]
    bal = await clerk.GetFundBalance(pb.GetFundBalanceRequest(fund=fund.name))
    assert bal.balance.fen == 500_00

    # events reached JetStream through the outbox relay, without the donor's name
    sub = await stack["js"].pull_subscribe("jsx.funds.>", durable=None, stream="JSX_FUNDS")
    subjects: dict[str, bytes] = {}
    deadline = asyncio.get_running_loop().time() + 15
    while len(subjects) < 4 and asyncio.get_running_loop().time() < deadline:
        try:
            for m in await sub.fetch(10, timeout=1):
                subjects[m.subject] = m.data
                await m.ack()
        except TimeoutError:  # nats-py raises its own subclass, or the bare one near the deadline
            pass
    assert set(subjects) == {
        "jsx.funds.fund.opened",
        "jsx.funds.allocation.posted",
        "jsx.funds.donation.received",
        "jsx.funds.ledger_entry.reversed",
    }
    ev = events_pb2.DonationReceived.FromString(subjects["jsx.funds.donation.received"])
    assert ev.amount.fen == 500_00 and ev.receipt_number == don.receipt_number
    assert "王某".encode() not in subjects["jsx.funds.donation.received"]


async def test_programs_and_applications_over_grpc(stack: dict[str, Any]) -> None:
    fin, clerk, appr = stack["clients"]["xp_fin"], stack["clients"]["xp_clerk"], stack["clients"]["xp_approver"]
    fund = await fin.CreateFund(
        pb.CreateFundRequest(
            request_id=rid(),
            fund=pb.Fund(
                display_name="溆浦县特别扶助资金", kind=pb.FUND_KIND_PROGRAM, owner_region=c.RegionCode(code="431224")
            ),
        )
    )
    req = pb.CreateProgramRequest(
        request_id=rid(),
        program=pb.Program(
            display_name="2022年溆浦县计生特别扶助",
            type=pb.PROGRAM_TYPE_SPECIAL_SUPPORT,
            region=c.RegionCode(code="431224"),
            fund=fund.name,
            year=2022,
            budget=c.Money(fen=100_000_00),
        ),
    )
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await clerk.CreateProgram(req)  # a clerk does not create programs
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    program = await appr.CreateProgram(req)
    assert (await clerk.GetProgram(pb.GetProgramRequest(name=program.name))).budget.fen == 100_000_00
    assert [p.name for p in (await clerk.ListPrograms(pb.ListProgramsRequest())).programs] == [program.name]

    # The household is not in the members projection yet: a clear NOT_FOUND, nothing stored.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await clerk.SubmitApplication(
            pb.SubmitApplicationRequest(
                request_id=rid(),
                application=pb.Application(
                    program=program.name,
                    household="households/unknown",
                    person="persons/p1",
                    period=c.Period(code="2022-08"),
                ),
            )
        )
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(e.value) == "HOUSEHOLD_NOT_FOUND"
    assert (await clerk.ListApplications(pb.ListApplicationsRequest())).applications == []
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await clerk.DecideApplication(
            pb.DecideApplicationRequest(request_id=rid(), name="applications/1", decision=pb.APPROVAL_DECISION_APPROVE)
        )
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED  # clerks cannot decide
    assert (await clerk.ListPublicity(pb.ListPublicityRequest())).entries == []

    batch = pb.CreatePaymentBatchRequest(
        request_id=rid(), program=program.name, region=c.RegionCode(code="431224"), period=c.Period(code="2022-08")
    )
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await clerk.CreatePaymentBatch(batch)  # only finance moves money
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await fin.CreatePaymentBatch(batch)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(e.value) == "NOTHING_TO_PAY"
