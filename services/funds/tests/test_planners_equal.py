"""The two batch planners are one rule: the same programs, applications and projections planned on SQLite
(keyset pages) and on PostgreSQL (set-based statements, each of its three ways of keying the rule inputs)
give the same payments — beneficiary, period, amount, basis, attempt, payee — the same skips with the same
reasons, the same refusals and the same application states afterwards.

The data holds the awkward cases: households with several situations in force (special families first,
the latest 伤残 grade), situations ending the day before the period or starting the day after, mothers
whose 49th birthday falls on the period's first day or the day after, an enrolment from a later month, a
beneficiary enrolled twice (once from a later month), an application still in 公示, a rule refusing,
attributes that need quoting, per-household payees with and without a known 户主, a one-off program at
its entitled amounts — bank failures paid again as attempt 2 and 3 — and deaths: one before the period
(not paid, skipped with the reason), one within August (paid for August, not for September), one withdrawn
(paid on).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from jsx.common.v1 import common_pb2 as c
from jsx.funds.v1 import events_pb2 as fev
from jsx.funds.v1 import funds_pb2 as pb
from jsx_funds.adapters.db import migrate
from jsx_funds.disbursement import domain as dd
from jsx_funds.disbursement.tables import PaymentBatchRow, PaymentRow
from jsx_funds.entrypoints.grpc import Contexts, compose
from jsx_funds.ledger.verify import verify
from jsx_funds.programs.tables import ApplicationRow
from jsx_funds.projections.tables import HouseholdProjection, PersonDeathProjection, SituationProjection
from jsxcore.db import create_engine, session_factory, transaction
from jsxcore.errors import DomainError
from jsxcore.outbox import OutboxEvent
from jsxcore.plugins import PluginHost
from jsxcore.testing.fixtures import _require_postgres, create_postgres_database, drop_postgres_database
from jsxcore.testing.helpers import Clock, rid, who
from jsxcore.values import Period, RegionCode

pytestmark = pytest.mark.slow

HJ = "431281"
VILLAGES = ("431281101201", "431281102203")
START = datetime(2022, 7, 4, 2, 0, tzinfo=UTC)
#: When the batches run: 公示 of the applications below is over, one is still running.
BATCH_TIME = datetime(2022, 8, 5, 2, 0, tzinfo=UTC)
T = datetime(2022, 6, 1, tzinfo=UTC)
OPEN = None

#: household → (situations (kind, from, to, grade), head person)
HOUSEHOLDS: dict[str, tuple[list[tuple[str, date, date | None, int]], str]] = {
    "h1": ([("SPECIAL_BEREAVED", date(2020, 1, 1), OPEN, 0)], "persons/h1-head"),
    # two 伤残 rows: the latest grade counts
    "h2": (
        [("SPECIAL_DISABLED", date(2019, 1, 1), OPEN, 2), ("SPECIAL_DISABLED", date(2021, 6, 1), OPEN, 3)],
        "persons/h2-head",
    ),
    # 失独 and 伤残: 失独 first
    "h3": (
        [("SPECIAL_BEREAVED", date(2020, 1, 1), OPEN, 0), ("SPECIAL_DISABLED", date(2020, 1, 1), OPEN, 1)],
        "persons/h3-head",
    ),
    # 独生子女 since 2010, 伤残 from the period's very first day
    "h4": (
        [("ONLY_CHILD", date(2010, 1, 1), OPEN, 0), ("SPECIAL_DISABLED", date(2022, 8, 1), OPEN, 2)],
        "persons/h4-head",
    ),
    # ended the day before the period: nothing in force
    "h5": ([("SPECIAL_DISABLED", date(2020, 1, 1), date(2022, 7, 31), 1)], "persons/h5-head"),
    # starts the day after the period's first day: in force from September
    "h6": ([("SPECIAL_BEREAVED", date(2022, 8, 2), OPEN, 0)], "persons/h6-head"),
    **{f"h{i}": ([("SPECIAL_BEREAVED", date(2020, 1, 1), OPEN, 0)], f"persons/h{i}-head") for i in range(7, 19)},
    # a 户主 the projection does not know yet: paid to the household
    "h19": ([("SPECIAL_DISABLED", date(2020, 1, 1), OPEN, 3)], ""),
    "h20": ([("SPECIAL_BEREAVED", date(2020, 1, 1), OPEN, 0)], "persons/h20-head"),
}
#: per-person applications: (household, period, state, publicity end, attributes)
ENDED, RUNNING = T, datetime(2022, 9, 30, tzinfo=UTC)
PER_PERSON = [
    ("h1", "2022-07", "PAID", ENDED, {"birth_date": "1966-05-20", "hukou_type": "RURAL"}),
    ("h2", "2022-07", "PAID", ENDED, {"birth_date": "1964-12-31"}),
    ("h3", "2022-07", "PAID", ENDED, {"birth_date": "1960-01-01"}),
    ("h4", "2022-07", "IN_PUBLICITY", ENDED, {"birth_date": "1965-08-02"}),  # first paid: marked PAYMENT_ISSUED
    ("h5", "2022-07", "PAID", ENDED, {"birth_date": "1966-05-20"}),
    ("h6", "2022-07", "PAID", ENDED, {"birth_date": "1966-05-20"}),
    ("h7", "2022-07", "PAID", ENDED, {"birth_date": "1973-08-01"}),  # 49 on 2022-08-01
    ("h8", "2022-07", "PAID", ENDED, {"birth_date": "1973-08-02"}),  # 48 on 2022-08-01, 49 on 2022-09-01
    ("h9", "2022-07", "PAID", ENDED, {"birth_date": "1973-07-31"}),
    ("h10", "2022-09", "IN_PUBLICITY", ENDED, {"birth_date": "1966-05-20"}),  # enrolled from September
    ("h11", "2022-09", "PAID", ENDED, {"birth_date": "1966-05-20"}),  # enrolled twice: this one from September …
    ("h11", "2022-07", "PAID", ENDED, {"birth_date": "1966-05-20", "hukou_type": "URBAN"}),  # … this one before
    ("h12", "2022-06", "PAID", ENDED, {"birth_date": "1962-02-02"}),  # enrolled twice, both in force
    ("h12", "2022-07", "PAID", ENDED, {"birth_date": "1962-02-02", "hukou_type": "RURAL"}),
    ("h13", "2022-07", "IN_PUBLICITY", RUNNING, {"birth_date": "1966-05-20"}),  # 公示 still running
    ("h14", "2022-07", "PAYMENT_FAILED", ENDED, {"birth_date": "1958-03-03"}),
    ("h15", "2022-07", "PAID", ENDED, {"birth_date": "1966-05-20", "has_living_child": "true"}),  # not 失独
    ("h16", "2022-07", "PAID", ENDED, {"birth_date": "1966-05-20", "hukou": 'O\'Brien, "x" \\ y'}),  # quoted
    ("h17", "2022-07", "PAID", ENDED, {}),  # no birth date: refused
    ("h18", "2022-07", "PAID", ENDED, {"birth_date": "1961-11-11", "note": "not read by the rules"}),
    ("h19", "2022-07", "PAID", ENDED, {"birth_date": "1961-11-11"}),
]
#: recorded deaths: person → date (None: withdrawn as recorded in error)
DEATHS: dict[str, date | None] = {
    "h3": date(2022, 7, 15),
    "h9": date(2022, 8, 10),
    "h18": None,
}
#: per-household applications of a second program: (household, state)
PER_HOUSEHOLD = [("h1", "PAID"), ("h19", "PAID"), ("h20", "IN_PUBLICITY"), ("h5", "PAID")]
#: a one-off program (三结合) paid at the entitled amount: (household, period, state, 分)
ONE_OFF = [
    ("h1", "2022-08", "IN_PUBLICITY", 3000_00),
    ("h2", "2022-08", "IN_PUBLICITY", 0),
    ("h3", "2022-09", "IN_PUBLICITY", 2000_00),
    ("h4", "2022-08", "REJECTED", 1000_00),
    ("h7", "2022-08", "IN_PUBLICITY", 1500_00),
]


async def _setup(api: Any, sessions: Any) -> dict[str, int]:
    """Fund, money and three programs through the RPCs; households, situations and applications as rows."""
    fund = await api.CreateFund(
        pb.CreateFundRequest(
            request_id=rid(),
            fund=pb.Fund(display_name="特别扶助资金", kind=pb.FUND_KIND_PROGRAM, owner_region=c.RegionCode(code=HJ)),
        )
    )
    src = await api.CreateFundSource(
        pb.CreateFundSourceRequest(
            request_id=rid(),
            fund_source=pb.FundSource(
                display_name="中央和省级特别扶助资金",
                kind=pb.FUND_SOURCE_KIND_PROVINCE_FINANCE,
                region=c.RegionCode(code=HJ),
            ),
        )
    )
    await api.PostAllocation(
        pb.PostAllocationRequest(fund=fund.name, source=src.name, amount=c.Money(fen=1_000_000_00), request_id=rid())
    )
    ids = {}
    for key, title, ptype, kind in (
        ("person", "2022年洪江市计生特别扶助", pb.PROGRAM_TYPE_SPECIAL_SUPPORT, pb.BENEFICIARY_KIND_PERSON),
        (
            "household",
            "2022年洪江市计生特别扶助（按户）",
            pb.PROGRAM_TYPE_SPECIAL_SUPPORT,
            pb.BENEFICIARY_KIND_HOUSEHOLD,
        ),
        ("oneoff", "2022年洪江市三结合", pb.PROGRAM_TYPE_SANJIEHE, pb.BENEFICIARY_KIND_HOUSEHOLD),
    ):
        program = await api.CreateProgram(
            pb.CreateProgramRequest(
                request_id=rid(),
                program=pb.Program(
                    display_name=title,
                    type=ptype,
                    region=c.RegionCode(code=HJ),
                    fund=fund.name,
                    year=2022,
                    beneficiary=kind,
                ),
            )
        )
        ids[key] = int(program.name.split("/")[1])
    village = {h: VILLAGES[int(h[1:]) % 2] for h in HOUSEHOLDS}
    common = {
        "amount_requested": 0,
        "chain": "VILLAGE,TOWNSHIP,COUNTY",
        "publicity_days": 7,
        "publicity_working_days": False,
        "publicity_start": T,
        "provenance": [],
        "created_by": "clerk",
        "created_at": T,
        "updated_at": T,
    }
    async with transaction(sessions) as s:
        await s.execute(
            insert(HouseholdProjection),
            [
                {
                    "household_id": h,
                    "village": village[h],
                    "head_person": head,
                    "member_count": 3,
                    "as_of": T,
                    "updated_at": T,
                }
                for h, (_, head) in HOUSEHOLDS.items()
            ],
        )
        await s.execute(
            insert(SituationProjection),
            [
                {
                    "household_id": h,
                    "kind": kind,
                    "effective_from": since,
                    "effective_to": until,
                    "disability_grade": grade,
                    "as_of": T,
                }
                for h, (sits, _) in HOUSEHOLDS.items()
                for kind, since, until, grade in sits
            ],
        )
        await s.execute(
            insert(PersonDeathProjection),
            [
                {
                    "person": f"persons/{h}-mother",
                    "village": village[h],
                    "household": f"households/{h}",
                    "death_date": died,
                    "as_of": T,
                    "updated_at": T,
                }
                for h, died in DEATHS.items()
            ],
        )
        for h, period, state, end, attributes in PER_PERSON:
            await s.execute(
                insert(ApplicationRow).values(
                    program_id=ids["person"],
                    household_id=h,
                    person=f"persons/{h}-mother",
                    beneficiary=f"persons/{h}-mother",
                    village=village[h],
                    period=period,
                    amount_entitled=0,
                    state=state,
                    publicity_end=end,
                    attributes=attributes,
                    **common,
                )
            )
        for h, state in PER_HOUSEHOLD:
            await s.execute(
                insert(ApplicationRow).values(
                    program_id=ids["household"],
                    household_id=h,
                    person="",
                    beneficiary=f"households/{h}",
                    village=village[h],
                    period="2022-07",
                    amount_entitled=0,
                    state=state,
                    publicity_end=ENDED,
                    attributes={"birth_date": "1960-01-01"},
                    **common,
                )
            )
        for h, period, state, fen in ONE_OFF:
            await s.execute(
                insert(ApplicationRow).values(
                    program_id=ids["oneoff"],
                    household_id=h,
                    person="",
                    beneficiary=f"households/{h}",
                    village=village[h],
                    period=period,
                    amount_entitled=fen,
                    state=state,
                    publicity_end=ENDED,
                    attributes={},
                    **common,
                )
            )
    return ids


async def _batch(ctx: Contexts, sessions: Any, program_id: int, period: str) -> Any:
    """One batch, as what it paid and skipped (or the refusal's reason), by beneficiary — never by id."""
    try:
        b = await ctx.disbursement.create_payment_batch(
            program_id,
            RegionCode.parse(HJ),
            Period.parse(period),
            caller=who("fin-hj", HJ, "finance_officer"),
            idem=None,
        )
    except DomainError as e:
        return ("refused", e.reason)
    bid = int(b.name.split("/")[1])
    async with sessions() as s:
        batch = await s.get(PaymentBatchRow, bid)
        apps = {
            a.id: (a.beneficiary, a.period)
            for a in (await s.execute(select(ApplicationRow).where(ApplicationRow.program_id == program_id))).scalars()
        }
        rows = (await s.execute(select(PaymentRow).where(PaymentRow.batch_id == bid))).scalars().all()
        pages = [
            fev.PaymentsIssued.FromString(p)
            for p in (
                await s.execute(
                    select(OutboxEvent.payload).where(OutboxEvent.subject == "jsx.funds.payment_batch.issued")
                )
            ).scalars()
        ]
    prefix, suffix = dd.periodic_key_affixes(program_id, period)
    paid = set()
    for p in rows:
        key = dd.business_key(p.payment_key)
        attempt = int(p.payment_key.rsplit(dd.ATTEMPT_MARK, 1)[1]) if p.payment_key != key else 1
        assert key.startswith(prefix) and key.endswith(suffix)
        paid.add(
            (
                key[len(prefix) : -len(suffix)],
                apps[p.application_id],
                p.amount,
                tuple(batch.bases[p.basis_no]),
                attempt,
                p.payee,
                p.household_id,
                p.village,
            )
        )
    paged = {
        (n, a) for e in pages if e.payment_batch == b.name for n, a in zip(e.payment_names, e.amounts_fen, strict=False)
    }
    assert paged == {(dd.payment_ref(bid, p.id), p.amount) for p in rows}  # every payment in its page, once
    skipped = {(apps[int(x["application"].split("/")[1])], tuple(x["reasons"])) for x in batch.skipped}
    return ("paid", b.payment_count, b.total.fen, frozenset(paid), frozenset(skipped))


async def _fail(ctx: Contexts, batch: Any, program_id: int, beneficiaries: set[str]) -> None:
    """The bank returns the payments of ``beneficiaries`` in the last batch of ``program_id`` as failed."""
    async with ctx.sessions() as s:
        bid = (
            await s.execute(
                select(PaymentBatchRow.id)
                .where(PaymentBatchRow.program_id == program_id)
                .order_by(PaymentBatchRow.id.desc())
                .limit(1)
            )
        ).scalar_one()
    listed = await ctx.disbursement.list_payments(bid, page_size=500, caller=None)
    lines = [
        dd.BankLine(
            payment=p.name,
            succeeded=p.payee.removeprefix("persons/").removesuffix("-mother") not in beneficiaries,
            failure_reason="账户已销户",
        )
        for p in listed.payments
    ]
    await ctx.disbursement.import_bank_results(bid, lines, caller=None, idem=None)


async def plan(url: str, make_api: Any) -> list[Any]:
    """Everything the scenario's batches did, on the database at ``url`` (``make_api``: the servicer in process)."""
    await asyncio.to_thread(migrate, url)
    engine = create_engine(url)
    try:
        sessions = session_factory(engine)
        host = PluginHost({"hunan": ["430000"], "hongjiang": [HJ]})
        host.discover()
        clock = Clock(START)
        ctx = compose(sessions, host, clock=clock)
        ids = await _setup(make_api(ctx), sessions)
        clock.now = BATCH_TIME
        person, household, oneoff = ids["person"], ids["household"], ids["oneoff"]
        out = [await _batch(ctx, sessions, person, "2022-08")]
        await _fail(ctx, None, person, {"h1", "h2"})
        out.append(await _batch(ctx, sessions, person, "2022-08"))  # h1 and h2 again, as attempt 2
        await _fail(ctx, None, person, {"h1"})
        out.append(await _batch(ctx, sessions, person, "2022-08"))  # h1 as attempt 3
        out.append(await _batch(ctx, sessions, person, "2022-08"))  # nothing left
        clock.now = BATCH_TIME + timedelta(days=31)
        out.append(await _batch(ctx, sessions, person, "2022-09"))
        out.append(await _batch(ctx, sessions, household, "2022-08"))
        out.append(await _batch(ctx, sessions, oneoff, "2022-08"))
        out.append(await _batch(ctx, sessions, oneoff, "2022-08"))
        async with sessions() as s:
            out.append(
                sorted(
                    (a.program_id - min(ids.values()), a.beneficiary, a.period, a.state)
                    for a in (await s.execute(select(ApplicationRow))).scalars()
                )
            )
            assert await verify(s) == []
        return out
    finally:
        await engine.dispose()


_SQLITE: list[Any] = []


@pytest.mark.parametrize("path", ["sampled", "raw", "rebuilt"])
async def test_sqlite_and_postgresql_pay_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, make_api: Any
) -> None:
    """PostgreSQL's three ways: the candidates keyed by the declared inputs at once (``sampled``: most
    applications here have inputs of their own), grouped as stored and keyed in Python (``raw``), or
    rebuilt keyed by the declaration when there are too many raw inputs (``rebuilt``)."""
    _require_postgres()
    from jsx_funds.disbursement import planner_pg

    if not _SQLITE:
        _SQLITE.append(await plan(f"sqlite:///{tmp_path / 'plan.db'}", make_api))
    sqlite = _SQLITE[0]
    if path != "sampled":
        monkeypatch.setattr(planner_pg, "SAMPLE", 0)
    if path == "rebuilt":
        monkeypatch.setattr(planner_pg, "RAW_GROUPS", 0)
    url = create_postgres_database()
    try:
        postgresql = await plan(url, make_api)
    finally:
        drop_postgres_database(url)
    assert len(sqlite) == len(postgresql)
    for i, (a, b) in enumerate(zip(sqlite, postgresql, strict=False)):
        assert a == b, f"step {i}: SQLite {a!r}\n PostgreSQL {b!r}"
    # The scenario did what it says (on both, as they are equal).
    first, again, third, nothing, september, per_household, oneoff, oneoff_again, _states = sqlite
    assert first[0] == "paid" and {p[0] for p in first[3]} >= {"persons/h1-mother", "persons/h7-mother"}
    assert {(p[0], p[4]) for p in again[3]} == {("persons/h1-mother", 2), ("persons/h2-mother", 2)}
    assert {(p[0], p[4]) for p in third[3]} == {("persons/h1-mother", 3)}
    assert nothing == ("refused", "NOTHING_TO_PAY")
    paid_aug = {p[0] for p in first[3]}
    assert not paid_aug & {
        "persons/h5-mother",
        "persons/h6-mother",
        "persons/h8-mother",
        "persons/h10-mother",
        "persons/h13-mother",
        "persons/h15-mother",
        "persons/h17-mother",
    }
    # Deaths: h3 died in July (not paid for August, skipped with why), h9 in August (paid for August only).
    assert "persons/h9-mother" in paid_aug and "persons/h18-mother" in paid_aug
    assert "persons/h3-mother" not in paid_aug
    (why,) = [r for (b, _), r in first[4] if b == "persons/h3-mother"]
    assert "2022-07-15 死亡" in why[0] and "2022-08 起停发" in why[0] and "假定" in why[1]
    paid_sep = {p[0]: p for p in september[3]}
    assert "persons/h9-mother" not in paid_sep and "persons/h18-mother" in paid_sep
    assert {"persons/h6-mother", "persons/h8-mother", "persons/h10-mother"} <= set(paid_sep)
    assert paid_sep["persons/h11-mother"][1] == ("persons/h11-mother", "2022-09")  # the lower id, now in force
    assert {p[0]: p[1][1] for p in first[3]}["persons/h11-mother"] == "2022-07"  # August: the one enrolled by then
    assert {p[5] for p in per_household[3]} >= {"persons/h1-head", "households/h19"}
    assert oneoff[0] == "paid" and {(p[0], p[2]) for p in oneoff[3]} == {
        ("households/h1", 3000_00),
        ("households/h7", 1500_00),
    }
    assert oneoff_again == ("refused", "NOTHING_TO_PAY")
