"""SubmitApplication checks the household with a real members service over
gRPC (started in-process with its own runtime), as well as against the
funds projection that real NATS fills from members' events: registered →
accepted; unknown to members (though in the projection) → NOT_FOUND;
members down → UNAVAILABLE in Chinese and nothing stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from jsx.common.v1 import common_pb2 as c
from jsx.funds.v1 import funds_pb2 as fpb
from jsx.funds.v1 import funds_pb2_grpc
from jsx.members.v1 import events_pb2 as mev
from jsx.members.v1 import members_pb2 as mpb
from jsx.members.v1 import members_pb2_grpc
from jsx_funds.adapters.db import migrate
from jsx_funds.entrypoints.grpc import build_runtime
from jsx_funds.programs.tables import ApplicationRow
from jsx_funds.projections.consumers import apply_household_event
from jsx_funds.projections.tables import HouseholdProjection
from jsx_members.entrypoints.grpc import build_runtime as members_runtime
from jsx_members.migrations import migrate as members_migrate
from jsx_members.testdata import make_id_number, make_phone
from jsxcore.auth import issue_token
from jsxcore.config import ServiceConfig
from jsxcore.db import transaction
from jsxcore.outbox import EventMeta
from jsxcore.pii import generate_key
from jsxcore.runtime import error_details
from jsxcore.testing.helpers import rid


def reason_of(err: grpc.RpcError) -> str:
    """The ErrorInfo reason a refused call carries (every refusal checked here carries one)."""
    info = error_details(err)[0]
    assert info is not None
    return info.reason


def details_of(err: grpc.aio.AioRpcError) -> str:
    """A refused call's status message (every refusal checked here carries one)."""
    details = err.details()
    assert details is not None
    return details


SECRET = "m" * 40
YL, VILLAGE = "431222", "431222101201"


class Client:
    def __init__(self, stub: Any, token: str) -> None:
        self.stub, self.md = stub, (("authorization", f"Bearer {token}"),)

    def __getattr__(self, rpc: str):
        method = getattr(self.stub, rpc)
        return lambda req: method(req, metadata=self.md, timeout=20)


@pytest.fixture
async def stack(db_url: str, nats_url: str, tmp_path: Path) -> AsyncIterator[dict]:
    keys = {"JSX_PII_KEY": generate_key(), "JSX_BLIND_INDEX_KEY": generate_key(), "JSX_AUTH_SECRET": SECRET}
    # Members keeps its own database (its outbox tables would clash with funds' in one schema).
    murl = f"sqlite:///{tmp_path}/members.db"
    mconf = ServiceConfig.from_env(
        "members",
        {
            **keys,
            "JSX_MEMBERS_DATABASE_URL": murl,
            "JSX_MEMBERS_NATS_URL": nats_url,
            "JSX_MEMBERS_GRPC_ADDR": "127.0.0.1:0",
            "JSX_MEMBERS_DATA_DIR": str(tmp_path),
        },
    )
    await asyncio.to_thread(members_migrate, murl)
    mrt, _, _ = members_runtime(mconf)
    mport = await mrt.start()
    fconf = ServiceConfig.from_env(
        "funds",
        {
            **keys,
            "JSX_FUNDS_DATABASE_URL": db_url,
            "JSX_FUNDS_NATS_URL": nats_url,
            "JSX_FUNDS_GRPC_ADDR": "127.0.0.1:0",
            "JSX_FUNDS_DATA_DIR": str(tmp_path),
            "JSX_FUNDS_MEMBERS_ADDR": f"127.0.0.1:{mport}",
        },
    )
    assert fconf.members_addr == f"127.0.0.1:{mport}"
    await asyncio.to_thread(migrate, db_url)
    frt, fservice, _ = build_runtime(fconf)
    fport = await frt.start()
    mch, fch = grpc.aio.insecure_channel(f"127.0.0.1:{mport}"), grpc.aio.insecure_channel(f"127.0.0.1:{fport}")
    tok = issue_token(SECRET, "clerk-yl", ["county_clerk"], YL)
    try:
        yield {
            "members": Client(members_pb2_grpc.MembersServiceStub(mch), tok),
            "mrt": mrt,
            "sessions": fservice.sessions,
            "funds": Client(funds_pb2_grpc.FundsServiceStub(fch), tok),
            "fin": Client(funds_pb2_grpc.FundsServiceStub(fch), issue_token(SECRET, "fin-yl", ["finance_officer"], YL)),
            "approver": Client(
                funds_pb2_grpc.FundsServiceStub(fch), issue_token(SECRET, "appr-yl", ["county_approver"], YL)
            ),
        }
    finally:
        await mch.close()
        await fch.close()
        await frt.stop(0)
        await mrt.stop(0)


async def _applications(sessions: Any) -> int:
    async with sessions() as s:
        return int((await s.execute(select(func.count()).select_from(ApplicationRow))).scalar_one())


async def test_submit_checks_household_with_members_over_grpc(stack: dict[str, Any]) -> None:
    members, funds, sessions = stack["members"], stack["funds"], stack["sessions"]
    head = await members.CreatePerson(
        mpb.CreatePersonRequest(
            request_id=rid(),
            person=mpb.Person(
                display_name="王大",
                id_number=make_id_number(YL, date(1962, 2, 3), 71),
                phone=make_phone(66_000_001),
                village=c.RegionCode(code=VILLAGE),
            ),
        )
    )
    mother = await members.CreatePerson(
        mpb.CreatePersonRequest(
            request_id=rid(),
            person=mpb.Person(
                display_name="李二",
                id_number=make_id_number(YL, date(1966, 3, 1), 72, female=True),
                phone=make_phone(66_000_002),
                village=c.RegionCode(code=VILLAGE),
            ),
        )
    )
    hh = await members.CreateHousehold(
        mpb.CreateHouseholdRequest(
            request_id=rid(),
            household=mpb.Household(
                head=head.name,
                village=c.RegionCode(code=VILLAGE),
                members=[
                    mpb.HouseholdMember(person=head.name, relation=mpb.RELATION_HEAD),
                    mpb.HouseholdMember(person=mother.name, relation=mpb.RELATION_SPOUSE),
                ],
            ),
            situations=[
                mpb.FamilySituation(
                    kind=mpb.SITUATION_KIND_SPECIAL_BEREAVED, effective_from=c.Date(year=2021, month=3, day=1)
                )
            ],
        )
    )
    # Members' events reach the funds projection over real NATS.
    hid = hh.name.split("/", 1)[1]
    for _ in range(200):
        async with sessions() as s:
            if await s.get(HouseholdProjection, hid) is not None:
                break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the members household never reached the funds projection")
    # A household the projection has but members does not (deleted there, or a stale projection).
    async with transaction(sessions) as s:
        await apply_household_event(
            s,
            mev.HouseholdSituationChanged(
                household="households/ghost-1",
                village=c.RegionCode(code=VILLAGE),
                kind=mpb.SITUATION_KIND_SPECIAL_BEREAVED,
                effective_from=c.Date(year=2020, month=1, day=1),
                head_person="persons/ghost",
                member_count=1,
            ),
            EventMeta(event_id="g", subject="s", event_type="t", num_delivered=1, stream_seq=1, published_at=None),
        )

    fund = await stack["fin"].CreateFund(
        fpb.CreateFundRequest(
            request_id=rid(),
            fund=fpb.Fund(display_name="特别扶助资金", kind=fpb.FUND_KIND_PROGRAM, owner_region=c.RegionCode(code=YL)),
        )
    )
    program = await stack["approver"].CreateProgram(
        fpb.CreateProgramRequest(
            request_id=rid(),
            program=fpb.Program(
                display_name="2022年沅陵县计生特别扶助",
                type=fpb.PROGRAM_TYPE_SPECIAL_SUPPORT,
                region=c.RegionCode(code=YL),
                fund=fund.name,
                year=2022,
            ),
        )
    )

    def submit(household: str, person: str) -> fpb.SubmitApplicationRequest:
        return fpb.SubmitApplicationRequest(
            request_id=rid(),
            application=fpb.Application(
                program=program.name,
                household=household,
                person=person,
                period=c.Period(code="2022-07"),
                attributes={"birth_date": "1966-03-01"},
            ),
        )

    app = await funds.SubmitApplication(submit(hh.name, mother.name))
    assert app.household == hh.name and app.amount_entitled.fen == 590_00

    with pytest.raises(grpc.aio.AioRpcError) as e:
        await funds.SubmitApplication(submit("households/ghost-1", "persons/ghost"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "成员服务中没有家庭" in details_of(e.value)
    assert reason_of(e.value) == "HOUSEHOLD_NOT_FOUND"
    assert await _applications(sessions) == 1

    # A person of no household (or another one) is refused, naming the field.
    outsider = await members.CreatePerson(
        mpb.CreatePersonRequest(
            request_id=rid(),
            person=mpb.Person(
                display_name="张三",
                id_number=make_id_number(YL, date(1965, 4, 4), 73, female=True),
                phone=make_phone(66_000_003),
                village=c.RegionCode(code=VILLAGE),
            ),
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await funds.SubmitApplication(submit(hh.name, outsider.name))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "不是所申请家庭" in (e.value.details() or "")
    info = error_details(e.value)[0]
    assert info is not None and info.reason == "PERSON_NOT_IN_HOUSEHOLD"
    assert any(
        v.field == "application.person" for d in error_details(e.value)[1:] for v in getattr(d, "field_violations", [])
    )
    assert await _applications(sessions) == 1

    await stack["mrt"].stop(0)  # members goes down
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await funds.SubmitApplication(submit(hh.name, head.name))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "成员服务暂时无法访问" in details_of(e.value)
    assert reason_of(e.value) == "MEMBERS_UNAVAILABLE"
    assert await _applications(sessions) == 1  # nothing stored
