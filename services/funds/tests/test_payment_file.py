"""The bank payment file and the 公示 names, joined from a real members
service (in-process, its own SQLite database) over gRPC, with the funds
database on SQLite and PostgreSQL and the members projection filled over
real NATS.

Per-person programs pay the person's card, per-household ones the 户主's; a
payee without a card stops the file with FAILED_PRECONDITION naming them
masked; BatchGetPayees is refused to a county clerk and outside the
caller's region; ListPublicity shows 张*明; after producing files (RPC and
CLI) neither the funds database nor the logs hold a card number or a name.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import openpyxl
import pytest
from google.protobuf import field_mask_pb2
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import text

from jsx.common.v1 import common_pb2 as c
from jsx.funds.v1 import funds_pb2 as fpb
from jsx.funds.v1 import funds_pb2_grpc
from jsx.members.v1 import members_pb2 as mpb
from jsx.members.v1 import members_pb2_grpc
from jsx_funds.adapters.db import migrate
from jsx_funds.entrypoints.grpc import build_runtime, compose
from jsx_funds.projections.tables import HouseholdProjection
from jsx_members.entrypoints.grpc import build_runtime as members_runtime
from jsx_members.migrations import migrate as members_migrate
from jsx_members.testdata import make_id_number, make_phone
from jsxcore.auth import issue_token
from jsxcore.cli import main
from jsxcore.config import ServiceConfig
from jsxcore.db import create_engine, session_factory
from jsxcore.errors import NotFound
from jsxcore.pii import generate_key
from jsxcore.plugins import PluginHost
from jsxcore.runtime import error_details, setup_logging
from jsxcore.testing.helpers import Clock, rid, who


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


SECRET = "p" * 40
YL, VILLAGE, TOWNSHIP = "431222", "431222101201", "431222101"
XP, XP_VILLAGE = "431224", "431224102203"
CARDS = {
    "王大明": "6217001234567890123",
    "李秀英": "6217009876543210",
    "张建国": "6228480011223344556",
    "刘桂芳": "6230520099887766",
}


class Client:
    def __init__(self, stub: Any, token: str) -> None:
        self.stub, self.md = stub, (("authorization", f"Bearer {token}"),)

    def __getattr__(self, rpc: str):
        method = getattr(self.stub, rpc)
        return lambda req: method(req, metadata=self.md, timeout=20)


@pytest.fixture
async def stack(db_url: str, nats_url: str, tmp_path: Path, make_api: Any) -> AsyncIterator[dict]:
    keys = {"JSX_PII_KEY": generate_key(), "JSX_BLIND_INDEX_KEY": generate_key(), "JSX_AUTH_SECRET": SECRET}
    logs = io.StringIO()
    handler = setup_logging("test", "DEBUG", stream=logs)
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
    await asyncio.to_thread(migrate, db_url)
    frt, fservice, _ = build_runtime(fconf)
    fport = await frt.start()
    mch, fch = grpc.aio.insecure_channel(f"127.0.0.1:{mport}"), grpc.aio.insecure_channel(f"127.0.0.1:{fport}")
    mstub, fstub = members_pb2_grpc.MembersServiceStub(mch), funds_pb2_grpc.FundsServiceStub(fch)
    tokens = {
        "clerk": issue_token(SECRET, "clerk-yl", ["county_clerk"], YL),
        "fin": issue_token(SECRET, "fin-yl", ["finance_officer"], YL),
        "fin_xp": issue_token(SECRET, "fin-xp", ["finance_officer"], XP),
        "admin": issue_token(SECRET, "admin-1", ["admin"], "430000"),
    }
    host = PluginHost({"hunan": ["430000"], "yuanling": [YL]})
    host.discover()
    try:
        yield {
            "m": {k: Client(mstub, t) for k, t in tokens.items()},
            "f": {k: Client(fstub, t) for k, t in tokens.items()},
            "tokens": tokens,
            "sessions": fservice.sessions,
            "host": host,
            "logs": logs,
            "db_url": db_url,
            "members_addr": f"127.0.0.1:{mport}",
            "tmp": tmp_path,
            "mrt": mrt,
            "make_api": make_api,
        }
    finally:
        await mch.close()
        await fch.close()
        await frt.stop(0)
        await mrt.stop(0)
        logging.getLogger().removeHandler(handler)


async def _person(
    m: Client, name: str, seq: int, *, female: bool, card: str = "", village: str = VILLAGE
) -> mpb.Person:
    birth = date(1966, 3, 1) if female else date(1962, 2, 3)
    return await m.CreatePerson(
        mpb.CreatePersonRequest(
            request_id=rid(),
            person=mpb.Person(
                display_name=name,
                id_number=make_id_number(village[:6], birth, seq, female=female),
                phone=make_phone(77_000_000 + seq),
                village=c.RegionCode(code=village),
                card_number=card,
            ),
        )
    )


async def _household(
    m: Client, head: mpb.Person, mother: mpb.Person, kind: mpb.SituationKind.ValueType, grade: int = 0
) -> mpb.Household:
    return await m.CreateHousehold(
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
                mpb.FamilySituation(kind=kind, effective_from=c.Date(year=2020, month=1, day=1), disability_grade=grade)
            ],
        )
    )


async def scenario(stack: dict[str, Any], extra: int = 0, headless_last: bool = False) -> dict:
    """Two 沅陵 households (失独, 伤残), 刘桂芳 without a card; a per-person and a per-household
    特别扶助 program, both paid for 2022-08. ``extra`` more 失独 households, all with cards, make
    the batches longer; ``headless_last``: the funds projection does not know the last one's 户主
    when the batches are made, so its per-household payment names the household."""
    m = stack["m"]["clerk"]
    p = {
        "王大明": await _person(m, "王大明", 11, female=False, card=CARDS["王大明"]),
        "李秀英": await _person(m, "李秀英", 12, female=True, card=CARDS["李秀英"]),
        "张建国": await _person(m, "张建国", 13, female=False, card=CARDS["张建国"]),
        "刘桂芳": await _person(m, "刘桂芳", 14, female=True),
    }  # no 一卡通 on file yet
    hb = await _household(m, p["王大明"], p["李秀英"], mpb.SITUATION_KIND_SPECIAL_BEREAVED)
    hd = await _household(m, p["张建国"], p["刘桂芳"], mpb.SITUATION_KIND_SPECIAL_DISABLED, 3)
    more = []
    for i in range(extra):
        head = await _person(
            m, f"陈{'一二三四五六七八九十'[i % 10]}强", 100 + 2 * i, female=False, card=f"62170055{i:08d}"
        )
        mother = await _person(
            m, f"陈{'一二三四五六七八九十'[i % 10]}兰", 101 + 2 * i, female=True, card=f"62170066{i:08d}"
        )
        more.append((await _household(m, head, mother, mpb.SITUATION_KIND_SPECIAL_BEREAVED), mother))
    sessions = stack["sessions"]
    for hh in (hb, hd, *(h for h, _ in more)):  # members' events reach the funds projection over real NATS
        for _ in range(300):
            async with sessions() as s:
                if await s.get(HouseholdProjection, hh.name.split("/", 1)[1]) is not None:
                    break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the members household never reached the funds projection")

    clock = Clock(datetime(2022, 7, 4, 2, 0, tzinfo=UTC))
    svc = funds = stack["make_api"](compose(sessions, stack["host"], clock=clock))
    fund = await funds.CreateFund(
        fpb.CreateFundRequest(
            request_id=rid(),
            fund=fpb.Fund(display_name="特别扶助资金", kind=fpb.FUND_KIND_PROGRAM, owner_region=c.RegionCode(code=YL)),
        ),
        None,
    )
    src = await funds.CreateFundSource(
        fpb.CreateFundSourceRequest(
            request_id=rid(),
            fund_source=fpb.FundSource(
                display_name="中央和省级特别扶助资金",
                kind=fpb.FUND_SOURCE_KIND_PROVINCE_FINANCE,
                region=c.RegionCode(code=YL),
            ),
        ),
        None,
    )
    await funds.PostAllocation(
        fpb.PostAllocationRequest(fund=fund.name, source=src.name, amount=c.Money(fen=100_000_00), request_id=rid()),
        None,
    )

    async def program(title: str, kind: fpb.BeneficiaryKind.ValueType) -> fpb.Program:
        return await svc.CreateProgram(
            fpb.CreateProgramRequest(
                request_id=rid(),
                program=fpb.Program(
                    display_name=title,
                    type=fpb.PROGRAM_TYPE_SPECIAL_SUPPORT,
                    region=c.RegionCode(code=YL),
                    fund=fund.name,
                    year=2022,
                    beneficiary=kind,
                ),
            ),
            None,
        )

    async def apply(svc: Any, prog: fpb.Program, hh: mpb.Household, person: str, period: str) -> None:
        app = await svc.SubmitApplication(
            fpb.SubmitApplicationRequest(
                request_id=rid(),
                application=fpb.Application(
                    program=prog.name,
                    household=hh.name,
                    person=person,
                    period=c.Period(code=period),
                    attributes={"birth_date": "1966-03-01"},
                ),
            ),
            who("clerk-yl", YL),
        )
        for reviewer, region in (("v", VILLAGE), ("t", TOWNSHIP), ("c", YL)):
            await svc.DecideApplication(
                fpb.DecideApplicationRequest(
                    request_id=rid(), name=app.name, decision=fpb.APPROVAL_DECISION_APPROVE, comment="同意"
                ),
                who(reviewer, region),
            )

    per_person = await program("2022年沅陵县计生特别扶助（按人）", fpb.BENEFICIARY_KIND_PERSON)
    per_household = await program("2022年沅陵县计生家庭慰问（按户）", fpb.BENEFICIARY_KIND_HOUSEHOLD)
    for hh, mother in ((hb, p["李秀英"]), (hd, p["刘桂芳"]), *more):
        await apply(svc, per_person, hh, mother.name, "2022-07")
        await apply(svc, per_household, hh, "", "2022-07")
    clock.now += timedelta(days=30)  # 公示 over
    if headless_last:
        async with sessions() as s:
            (await s.get(HouseholdProjection, more[-1][0].name.split("/", 1)[1])).head_person = ""
            await s.commit()
    fin = who("fin-yl", YL)
    batches = {}
    for key, prog in (("person", per_person), ("household", per_household)):
        batches[key] = await svc.CreatePaymentBatch(
            fpb.CreatePaymentBatchRequest(
                request_id=rid(), program=prog.name, region=c.RegionCode(code=YL), period=c.Period(code="2022-08")
            ),
            fin,
        )
    # Applications approved just now (real clock): in 公示 while the test runs.
    live = stack["make_api"](compose(sessions, stack["host"]))
    await apply(live, per_person, hb, p["李秀英"].name, "2022-09")
    await apply(live, per_household, hd, "", "2022-09")
    return {
        "persons": p,
        "batches": batches,
        "programs": (per_person, per_household),
        "households": [hb, hd, *(h for h, _ in more)],
    }


def _xlsx_rows(content: bytes) -> list[list[Any]]:  # a cell holds text, a number or a date
    ws = openpyxl.load_workbook(io.BytesIO(content)).active
    assert isinstance(ws, Worksheet)
    return [list(r) for r in ws.iter_rows(values_only=True)]


async def _scan_funds_db(db_url: str, needles: list[str]) -> list[str]:
    """Every needle found anywhere in the funds database (SQLite files incl. WAL, or every PostgreSQL table)."""
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        with sqlite3.connect(path) as con:
            con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        blob = b"".join(f.read_bytes() for f in path.parent.glob(path.name + "*"))
        assert VILLAGE.encode() in blob and re.search(
            rb"[0-9]+/persons/[^/]+/2022-08", blob
        )  # positive control: the scan sees the payment keys
        return [n for n in needles if n.encode() in blob]
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as s:
            tables = (
                (await s.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars().all()
            )
            parts: list[str] = []
            for t in tables:
                parts += [str(v) for v in (await s.execute(text(f'SELECT t::text FROM "{t}" t'))).scalars()]
            dump = "\n".join(parts)
    finally:
        await engine.dispose()
    assert VILLAGE in dump and re.search(
        r"[0-9]+/persons/[^/]+/2022-08", dump
    )  # positive control: the scan sees the payment keys
    # bytea columns (outbox payloads, stored responses) print as hex.
    return [n for n in needles if n in dump or n.encode().hex() in dump]


async def test_payment_file_payees_cards_and_pii(stack: dict[str, Any]) -> None:
    sc = await scenario(stack)
    f, m, p = stack["f"], stack["m"], sc["persons"]
    per_person, per_household = sc["batches"]["person"].name, sc["batches"]["household"].name

    # 刘桂芳 has no card: no file, and the clerk learns who (masked), not the card or full name.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await f["fin"].GetPaymentFile(fpb.GetPaymentFileRequest(payment_batch=per_person))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(e.value) == "MISSING_CARD_NUMBER"
    assert f"刘*芳（{p['刘桂芳'].name}）" in details_of(e.value) and "刘桂芳" not in details_of(e.value)
    assert "李*英" not in details_of(e.value)  # only those lacking a card are listed

    # Per-household: the 户主s' cards — 张建国's household pays although 刘桂芳 has none.
    hfile = await f["fin"].GetPaymentFile(fpb.GetPaymentFileRequest(payment_batch=per_household))
    rows = _xlsx_rows(hfile.content)
    assert rows[0] == [
        "序号",
        "收款人姓名",
        "一卡通卡号/账号",
        "金额（元）",
        "业务参考号",
        "所属村",
        "项目",
        "期间",
        "备注",
    ]
    payees = {r[1]: r for r in rows[1:-1]}
    assert set(payees) == {"王大明", "张建国"}
    assert payees["王大明"][2] == CARDS["王大明"] and payees["张建国"][2] == CARDS["张建国"]
    assert all(
        r[4].startswith(f"{per_household}/payments/") and r[7] == "2022-08" and r[8] == "按户发放（户主收款）"
        for r in rows[1:-1]
    )
    assert rows[-1][0] == "合计" and float(rows[-1][3]) == pytest.approx(sum(float(r[3]) for r in rows[1:-1]))
    assert hfile.payment_count == 2 and hfile.total.fen == round(sum(float(r[3]) for r in rows[1:-1]) * 100)
    assert hfile.filename.endswith(".xlsx")

    # The card is completed in members; the per-person file now pays the mothers' own cards.
    await m["clerk"].UpdatePerson(
        mpb.UpdatePersonRequest(
            request_id=rid(),
            person=mpb.Person(name=p["刘桂芳"].name, card_number=CARDS["刘桂芳"]),
            update_mask=field_mask_pb2.FieldMask(paths=["card_number"]),
        )
    )
    pfile = await f["fin"].GetPaymentFile(
        fpb.GetPaymentFileRequest(payment_batch=per_person, format=fpb.PAYMENT_FILE_FORMAT_CSV)
    )
    text_ = pfile.content.decode("utf-8")
    assert text_.startswith("\ufeff序号,收款人姓名,一卡通卡号/账号,金额（元）") and "\r\n" in text_
    lines = list(csv.reader(io.StringIO(text_.lstrip("\ufeff"))))
    got = {r[1]: (r[2], r[3]) for r in lines[1:-1]}
    assert got == {
        "李秀英": (CARDS["李秀英"], "590.00"),
        "刘桂芳": (CARDS["刘桂芳"], "460.00"),
    }  # 沅陵: national 590/460
    assert lines[-1][:4] == ["合计", "2 笔", "", "1050.00"] and pfile.total.fen == 1050_00

    # The CLI writes both formats with the operator's own token; nothing is stored.
    xlsx, csvp = stack["tmp"] / "支付.xlsx", stack["tmp"] / "支付.csv"
    env = {"JSX_TOKEN": stack["tokens"]["fin"], "JSX_MEMBERS_ADDR": stack["members_addr"]}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        rc = await asyncio.to_thread(
            main,
            [
                "funds",
                "payment-file",
                "--batch",
                per_person,
                "--xlsx",
                str(xlsx),
                "--csv",
                str(csvp),
                "--database-url",
                stack["db_url"],
            ],
        )
        # A clerk's token: members refuses the card numbers, no file.
        os.environ["JSX_TOKEN"] = stack["tokens"]["clerk"]
        denied = stack["tmp"] / "clerk.xlsx"
        rc_clerk = await asyncio.to_thread(
            main, ["funds", "payment-file", per_person, "--xlsx", str(denied), "--database-url", stack["db_url"]]
        )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert rc == 0 and {r[1] for r in _xlsx_rows(xlsx.read_bytes())[1:-1]} == {"李秀英", "刘桂芳"}
    assert CARDS["刘桂芳"] in csvp.read_text(encoding="utf-8-sig")
    assert rc_clerk == 1 and not denied.exists()

    # PII scan: the files hold names and cards (positive control); the funds DB and all logs none.
    needles = list(CARDS.values()) + list(CARDS)
    assert all(
        n.encode() in xlsx.read_bytes() or n in csvp.read_text(encoding="utf-8-sig")
        for n in (CARDS["李秀英"], "刘桂芳")
    )
    assert await _scan_funds_db(stack["db_url"], needles) == []
    logs = stack["logs"].getvalue()
    assert '"payees.read"' in logs and '"persons": 2' in logs  # the audit line is there (positive control)
    # Cards are encrypted in members, so no log line at any level may hold one. Names are plain
    # columns of members' own persons table: its SQL driver's DEBUG lines for that INSERT carry them
    # (members' registration, not this flow); every other line must not.
    assert [n for n in CARDS.values() if n in logs] == []
    leaked = [
        ln[:300]
        for ln in logs.splitlines()
        if any(n in ln for n in CARDS) and not ('"aiosqlite"' in ln and "INSERT INTO persons" in ln)
    ]
    assert leaked == []


async def test_scope_permission_and_publicity_names(stack: dict[str, Any]) -> None:
    sc = await scenario(stack)
    f, m, p = stack["f"], stack["m"], sc["persons"]
    names = [p["王大明"].name, p["李秀英"].name]

    # The finance officer gets full names and cards, in request order.
    got = await m["fin"].BatchGetPayees(mpb.BatchGetPayeesRequest(names=names[::-1]))
    assert [(x.person, x.display_name, x.card_number) for x in got.payees] == [
        (names[1], "李秀英", CARDS["李秀英"]),
        (names[0], "王大明", CARDS["王大明"]),
    ]
    # A county clerk may read persons but not payees; neither may an admin (granted by name only).
    for who_ in ("clerk", "admin"):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await m[who_].BatchGetPayees(mpb.BatchGetPayeesRequest(names=names))
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and reason_of(e.value) == "MISSING_PERMISSION"
    with pytest.raises(grpc.aio.AioRpcError) as e:  # and the clerk cannot get the file through funds either
        await f["clerk"].GetPaymentFile(fpb.GetPaymentFileRequest(payment_batch=sc["batches"]["household"].name))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # 溆浦's finance officer: 沅陵 people are out of region, named; unknown → NOT_FOUND.
    xp_person = await _person(m["admin"], "赵小红", 21, female=True, card="6217000000000021", village=XP_VILLAGE)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await m["fin_xp"].BatchGetPayees(mpb.BatchGetPayeesRequest(names=[xp_person.name, names[1]]))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and reason_of(e.value) == "OUT_OF_REGION"
    assert names[1] in details_of(e.value) and xp_person.name not in details_of(e.value)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await m["fin"].BatchGetPayees(mpb.BatchGetPayeesRequest(names=[names[0], "persons/no-such-person"]))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "persons/no-such-person" in details_of(e.value)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await f["fin_xp"].GetPaymentFile(fpb.GetPaymentFileRequest(payment_batch=sc["batches"]["household"].name))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and reason_of(e.value) == "OUT_OF_REGION"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await m["fin"].BatchGetPayees(mpb.BatchGetPayeesRequest(names=[names[0]] * 1001))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # Masked view for 公示: names 张*明, 身份证/phone masked, no plaintext whatever the role.
    masked = await m["fin"].BatchGetPersons(mpb.BatchGetPersonsRequest(names=names))
    assert [x.display_name for x in masked.persons] == ["王*明", "李*英"]
    assert all(
        not x.id_number and not x.phone and not x.card_number and "*" in x.id_number_masked for x in masked.persons
    )

    # ListPublicity: the person for per-person programs, the 户主 for per-household ones, masked.
    pub = await f["clerk"].ListPublicity(fpb.ListPublicityRequest(region=c.RegionCode(code=YL)))
    shown = {(e.program_display_name, e.beneficiary_display_name) for e in pub.entries}
    assert shown == {(sc["programs"][0].display_name, "李*英"), (sc["programs"][1].display_name, "张*国")}
    assert not any(n in str(pub) for n in CARDS)  # neither full names nor cards

    # Members down: a clear UNAVAILABLE, not a list or a file without names.
    await stack["mrt"].stop(0)
    for call in (
        f["clerk"].ListPublicity(fpb.ListPublicityRequest(region=c.RegionCode(code=YL))),
        f["fin"].GetPaymentFile(fpb.GetPaymentFileRequest(payment_batch=sc["batches"]["household"].name)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE and reason_of(e.value) == "MEMBERS_UNAVAILABLE"


async def test_payee_lookups_in_flight_keep_order_and_refusals(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bank file's payees are fetched from members a few chunks at a time: all of them, each its own."""
    from jsx_funds.adapters import members as adapter

    m = stack["m"]["clerk"]
    names = ["赵一民", "钱二花", "孙三军", "李四妹", "周五福", "吴六娟"]
    people = [await _person(m, name, 40 + i, female=bool(i % 2)) for i, name in enumerate(names)]
    monkeypatch.setattr(adapter, "BATCH", 1)  # six chunks, IN_FLIGHT of them at a time
    client = adapter.MembersClient(stack["members_addr"], SECRET)
    try:
        got = await client.batch_get_payees([p.name for p in people], YL)
        assert [(k, v.display_name) for k, v in got.items()] == [
            (p.name, n) for p, n in zip(people, names, strict=False)
        ]
        # One unknown person among them: members' NOT_FOUND, naming that person, whichever chunk finished first.
        with pytest.raises(NotFound) as e:
            await client.batch_get_payees([p.name for p in people[:3]] + ["persons/no-such"] + [people[4].name], YL)
        assert "persons/no-such" in e.value.message
    finally:
        await client.close()


async def _stream(
    client: Client,
    batch: str,
    fmt: fpb.PaymentFileFormat.ValueType = fpb.PAYMENT_FILE_FORMAT_CSV,
) -> tuple[list[fpb.PaymentFileChunk], grpc.aio.AioRpcError | None]:
    """Every message StreamPaymentFile sent before it ended, and its error (None when OK)."""
    got: list[fpb.PaymentFileChunk] = []
    try:
        async for msg in client.StreamPaymentFile(fpb.StreamPaymentFileRequest(payment_batch=batch, format=fmt)):
            got.append(msg)
    except grpc.aio.AioRpcError as e:
        return got, e
    return got, None


async def test_stream_payment_file_is_the_same_file_in_chunks(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from jsx_funds.disbursement import payment_file as pf

    sc = await scenario(stack, extra=4, headless_last=True)
    f, m, p = stack["f"], stack["m"], sc["persons"]
    per_person, per_household = sc["batches"]["person"].name, sc["batches"]["household"].name
    # Six payments per batch at 4 a page, 256-byte chunks, the spool on disk past 1 KiB: the
    # small batches cross pages (the second one prefetched), chunks and the spill to a file.
    monkeypatch.setattr(pf, "PAGE", 4)
    monkeypatch.setattr(pf, "CHUNK_BYTES", 256)
    monkeypatch.setattr(pf, "SPOOL_BYTES", 1024)

    # 刘桂芳 (page 1) has no card: the status lists her masked, and not one message came — no metadata either.
    got, err = await _stream(f["fin"], per_person)
    assert got == [] and err is not None and err.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_details(err)[0]
    assert info is not None and info.reason == "MISSING_CARD_NUMBER" and info.metadata["count"] == "1"
    assert f"刘*芳（{p['刘桂芳'].name}）" in details_of(err) and "刘桂芳" not in details_of(err)

    # The last household's payment (page 2) names the household, whose 户主 the projection still
    # does not know: PAYEE_UNKNOWN naming it, nothing streamed. Once known, its head is paid.
    last, head = sc["households"][-1].name, sc["households"][-1].head
    got, err = await _stream(f["fin"], per_household, fpb.PAYMENT_FILE_FORMAT_XLSX)
    assert got == [] and err is not None and err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(err) == "PAYEE_UNKNOWN" and last in details_of(err)
    # The refused workbook's sheet file (page 1's names and cards) is gone now, not at process exit.
    from openpyxl.worksheet import _writer as openpyxl_writer

    assert [x for x in openpyxl_writer.ALL_TEMP_FILES if os.path.exists(x)] == []  # noqa: ASYNC240 (a check, not serving code)
    async with stack["sessions"]() as s:
        (await s.get(HouseholdProjection, last.split("/", 1)[1])).head_person = head
        await s.commit()

    await m["clerk"].UpdatePerson(
        mpb.UpdatePersonRequest(
            request_id=rid(),
            person=mpb.Person(name=p["刘桂芳"].name, card_number=CARDS["刘桂芳"]),
            update_mask=field_mask_pb2.FieldMask(paths=["card_number"]),
        )
    )
    for batch, fmt in ((per_person, fpb.PAYMENT_FILE_FORMAT_CSV), (per_household, fpb.PAYMENT_FILE_FORMAT_XLSX)):
        one = await f["fin"].GetPaymentFile(fpb.GetPaymentFileRequest(payment_batch=batch, format=fmt))
        got, err = await _stream(f["fin"], batch, fmt)
        assert err is None
        assert got[0].WhichOneof("chunk") == "metadata" and not got[0].metadata.content
        assert all(x.WhichOneof("chunk") == "data" for x in got[1:])
        content = b"".join(x.data for x in got[1:])
        assert all(0 < len(x.data) <= 256 for x in got[1:]) and len(got) - 1 == -(-len(content) // 256) >= 3
        meta = got[0].metadata
        assert (meta.filename, meta.content_type, meta.payment_count, meta.total.fen) == (
            one.filename,
            one.content_type,
            one.payment_count,
            one.total.fen,
        ) and meta.payment_count == 6
        assert meta.size_bytes == len(content) and meta.sha256 == hashlib.sha256(content).hexdigest()
        assert one.size_bytes == len(one.content) and one.sha256 == hashlib.sha256(one.content).hexdigest()
        if fmt == fpb.PAYMENT_FILE_FORMAT_CSV:
            assert content == one.content  # byte for byte
            lines = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
            assert [r[0] for r in lines[1:-1]] == ["1", "2", "3", "4", "5", "6"]  # 序号 runs on across pages
            assert len({r[4] for r in lines[1:-1]}) == 6 and lines[-1][:2] == ["合计", "6 笔"]
            assert round(sum(float(r[3]) for r in lines[1:-1]) * 100) == meta.total.fen
        else:
            rows = _xlsx_rows(content)
            assert rows == _xlsx_rows(one.content) and len(rows) == 8
            assert rows[-2][1:3] == ["陈四强", "6217005500000003"]  # the household's 户主, resolved on page 2
            ws = openpyxl.load_workbook(io.BytesIO(content)).active
            assert isinstance(ws, Worksheet)
            assert ws.title == "支付明细" and ws.freeze_panes == "A2"
            assert (
                ws["D2"].number_format == "0.00" and ws["C2"].data_type == "s" and ws["A1"].font.b and ws["D8"].font.b
            )

    # An xlsx over Excel's row limit is refused before any byte (CSV serves it); GetPaymentFile over its
    # one-message limit says to stream.
    monkeypatch.setattr(pf, "XLSX_MAX_LINES", 5)
    got, err = await _stream(f["fin"], per_person, fpb.PAYMENT_FILE_FORMAT_XLSX)
    assert got == [] and err is not None and reason_of(err) == "TOO_MANY_ROWS_FOR_XLSX"
    assert "CSV" in details_of(err)
    monkeypatch.setattr(pf, "UNARY_MAX_BYTES", 500)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await f["fin"].GetPaymentFile(
            fpb.GetPaymentFileRequest(payment_batch=per_person, format=fpb.PAYMENT_FILE_FORMAT_CSV)
        )
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and reason_of(e.value) == "FILE_TOO_LARGE"
    assert "StreamPaymentFile" in details_of(e.value)
    got, err = await _stream(f["fin"], per_person)
    assert err is None and sum(len(x.data) for x in got[1:]) > 500

    logs = stack["logs"].getvalue()
    assert f"payment file {per_person} written: 6 lines" in logs  # positive control: this flow logs
    assert [n for n in [*CARDS.values(), *(f"6217005500000{i:03d}" for i in range(4))] if n in logs] == []


async def test_stream_payment_file_is_authorised_like_get(stack: dict[str, Any]) -> None:
    sc = await scenario(stack)
    f, batch = stack["f"], sc["batches"]["household"].name  # both 户主 have cards
    got, err = await _stream(f["fin"], batch)
    assert err is None and got[0].metadata.payment_count == 2 and len(got) >= 2  # positive control

    async def refused(client: Client, req_batch: str = batch) -> grpc.aio.AioRpcError:
        got, err = await _stream(client, req_batch)
        assert got == [] and err is not None
        return err

    # A county clerk lacks funds.payments.write: the runtime's permission check on the stream.
    e = await refused(f["clerk"])
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED and reason_of(e) == "MISSING_PERMISSION"
    # admin may write payments but is not granted members.payees.read: members refuses the forwarded token.
    e = await refused(f["admin"])
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED and "成员服务" in details_of(e)
    # 溆浦's finance officer: the batch is 沅陵's.
    e = await refused(f["fin_xp"])
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED and reason_of(e) == "OUT_OF_REGION"
    # No token at all; an unknown batch; a malformed name.
    e = await refused(Client(f["fin"].stub, ""))
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED
    e = await refused(f["fin"], "paymentBatches/999999")
    assert e.code() == grpc.StatusCode.NOT_FOUND and reason_of(e) == "PAYMENT_BATCH_NOT_FOUND"
    e = await refused(f["fin"], "batch-3")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
