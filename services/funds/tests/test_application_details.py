"""Program-specific application details on SQLite and PostgreSQL: each kind
(贷款贴息, 住院护理补贴, 三结合, 幸福基金支出) is checked, stored, handed to the
rules as reserved attributes and returned; a bad one is refused with its
field and leaves nothing behind; a 幸福基金 use must be one the village's rule
allows (溆浦 plugin, and a stricter village plugin); 三结合 income gained
reaches the program report; and the same over the real gRPC server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from jsx.common.v1 import common_pb2 as c
from jsx.funds.v1 import funds_pb2 as pb
from jsx.funds.v1 import funds_pb2_grpc
from jsx.members.v1 import events_pb2 as mev
from jsx.members.v1 import members_pb2 as mpb
from jsx_funds.adapters.db import migrate
from jsx_funds.entrypoints.grpc import build_runtime, compose
from jsx_funds.programs.tables import ApplicationRow
from jsx_funds.projections.consumers import apply_household_event
from jsx_funds.reporting.wire import reports_xlsx
from jsxcore.auth import issue_token
from jsxcore.config import ServiceConfig
from jsxcore.db import session_factory, transaction
from jsxcore.errors import FailedPrecondition, InvalidArgument
from jsxcore.hookspecs import (
    Amount,
    Beneficiary,
    Eligibility,
    FundKind,
    FundUses,
    PluginMeta,
    ProgramType,
    has_chinese,
    hookimpl,
)
from jsxcore.outbox import EventMeta, OutboxEvent
from jsxcore.pii import FieldCipher, decode_key, generate_key
from jsxcore.plugins import PluginHost
from jsxcore.runtime import error_details
from jsxcore.testing.helpers import Clock, rid, who
from jsxcore.values import Money, Period, RegionCode

XP, XP_TOWNSHIP, XP_VILLAGE, XP_STRICT = "431224", "431224101", "431224101201", "431224101202"
CS_VILLAGE = "430102001001"  # 长沙: no 幸福基金 use rule anywhere above it


CLERK = who("clerk-xp", XP)


class DetailRules:
    """A county rule plugin reading the reserved detail attributes: 住院护理补贴 50 元/天, at most
    3000 元 a year; 贷款贴息 half the interest paid; everyone eligible for 三结合, 贴息, 幸福基金."""

    JSX_PLUGIN = PluginMeta(
        name="test_detail_rules",
        version="0.1.0",
        regions=(XP, "430102"),
        description="测试用：按申请明细计算的县级规则",
    )
    DAILY, CAP = 50_00, 3000_00

    def __init__(self) -> None:
        self.seen: list[Mapping[str, str]] = []

    @hookimpl
    def jsx_program_eligibility(
        self, program_type: str, beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]
    ) -> Eligibility | None:
        if program_type in (ProgramType.SANJIEHE, ProgramType.LOAN_INTEREST, "HAPPINESS_FUND"):
            return Eligibility(True, ("测试规则：本县家庭均可申请",))
        return None

    @hookimpl
    def jsx_entitlement_amount(
        self, program_type: str, beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]
    ) -> Amount | None:
        self.seen.append(dict(beneficiary.attributes))
        attrs = beneficiary.attributes
        if program_type == ProgramType.NURSING_SUBSIDY:
            days = int(attrs["hospital.days"])
            fen = min(days * self.DAILY, self.CAP)
            return Amount(Money(fen), (f"住院 {days} 天 × 50 元/天，每年最高 3000 元",))
        if program_type == ProgramType.LOAN_INTEREST:
            return Amount(
                Money(int(attrs["loan.interest_paid_fen"]) // 2),
                (f"贴息 50%：实付利息 {int(attrs['loan.interest_paid_fen']) / 100:.2f} 元",),
            )
        return None


class StrictVillage:
    """A village whose 幸福基金 rule is narrower than the county's six uses."""

    JSX_PLUGIN = PluginMeta(
        name="test_strict_village",
        version="0.1.0",
        regions=(XP_STRICT,),
        description="测试用：村级幸福基金只用于尊老爱幼、村民慰问",
    )

    @hookimpl
    def jsx_fund_allowed_uses(self, fund_kind: str, region: RegionCode) -> FundUses | None:
        if fund_kind != FundKind.HAPPINESS_FUND:
            return None
        return FundUses(("尊老爱幼", "村民慰问"), ("本村幸福基金只用于尊老爱幼、村民慰问",))


META = EventMeta(event_id="e", subject="s", event_type="t", num_delivered=1, stream_seq=1, published_at=None)


async def add_household(
    sessions: Any, hid: str, village: str, kind: mpb.SituationKind.ValueType = mpb.SITUATION_KIND_SPECIAL_BEREAVED
) -> None:
    msg = mev.HouseholdSituationChanged(
        household=f"households/{hid}",
        village=c.RegionCode(code=village),
        kind=kind,
        effective_from=c.Date(year=2020, month=1, day=1),
        head_person=f"persons/{hid}-head",
        member_count=3,
    )
    msg.occurred_at.FromSeconds(1_600_000_000)
    async with transaction(sessions) as s:
        await apply_household_event(s, msg, META)


@pytest.fixture
async def env(engine: AsyncEngine, make_api: Any) -> dict[str, Any]:
    sessions = session_factory(engine)
    host = PluginHost()  # every installed plugin for the regions it declares (hunan, huaihua, 溆浦 …)
    host.discover()
    rules = DetailRules()
    host.register(rules)
    host.register(StrictVillage())
    clock = Clock()
    svc = funds = reports = make_api(
        compose(sessions, host, clock=clock, cipher=FieldCipher(decode_key(generate_key())))
    )
    for hid, village in (("h1", XP_VILLAGE), ("h2", XP_VILLAGE), ("s1", XP_STRICT), ("cs1", CS_VILLAGE)):
        await add_household(sessions, hid, village)
    return {
        "sessions": sessions,
        "svc": svc,
        "reports": reports,
        "funds": funds,
        "rules": rules,
        "clock": clock,
        "make_api": make_api,
    }


async def make_program(
    env: dict[str, Any],
    ptype: pb.ProgramType.ValueType,
    region: str = XP,
    fund_kind: pb.FundKind.ValueType = pb.FUND_KIND_PROGRAM,
    levels: tuple[pb.ApprovalLevel.ValueType, ...] = (),
) -> pb.Program:
    fund = await env["funds"].CreateFund(
        pb.CreateFundRequest(
            request_id=rid(),
            fund=pb.Fund(display_name="测试基金", kind=fund_kind, owner_region=c.RegionCode(code=region)),
        ),
        None,
    )
    return await env["svc"].CreateProgram(
        pb.CreateProgramRequest(
            request_id=rid(),
            program=pb.Program(
                display_name=f"2022年测试项目{ptype}",
                type=ptype,
                region=c.RegionCode(code=region),
                fund=fund.name,
                year=2022,
                approval_levels=levels,
                beneficiary=pb.BENEFICIARY_KIND_HOUSEHOLD,
            ),
        ),
        None,
    )


def d(y: int, m: int, day: int) -> c.Date:
    return c.Date(year=y, month=m, day=day)


LOAN = pb.LoanInterestDetails(
    lender="溆浦县农村商业银行",
    principal=c.Money(fen=50_000_00),
    annual_rate_bp=435,
    interest_paid=c.Money(fen=2175_00),
    loan_start=d(2022, 1, 10),
    loan_end=d(2023, 1, 9),
    purpose="柑橘种植",
)
HOSPITAL = pb.HospitalCareDetails(
    hospital="溆浦县人民医院", admission_date=d(2022, 8, 1), discharge_date=d(2022, 8, 13), days=12
)
SANJIEHE = pb.SanjieheDetails(
    project="柑橘种植",
    agreement_number="溆计协帮〔2022〕07号",
    industry="种养",
    partner="溆浦某果业公司",
    income_gained=c.Money(fen=3000_00),
)
HAPPY = pb.HappinessFundDetails(use=pb.HAPPINESS_USE_VILLAGER_CONDOLENCE, resolution_number="村民代表会〔2022〕3号")


def submit(
    program: pb.Program,
    hid: str = "h1",
    period: str = "2022",
    amount: int = 0,
    attributes: dict[str, str] | None = None,
    **details: Any,
) -> pb.SubmitApplicationRequest:
    return pb.SubmitApplicationRequest(
        request_id=rid(),
        application=pb.Application(
            program=program.name,
            household=f"households/{hid}",
            period=c.Period(code=period),
            amount_requested=c.Money(fen=amount),
            attributes=attributes or {},
            **details,
        ),
    )


async def stored(env: dict[str, Any]) -> tuple[int, int]:
    """(applications, outbox events) in the database."""
    async with env["sessions"]() as s:
        apps = (await s.execute(select(func.count()).select_from(ApplicationRow))).scalar_one()
        events = (await s.execute(select(func.count()).select_from(OutboxEvent))).scalar_one()
    return int(apps), int(events)


async def test_each_kind_is_stored_passed_to_the_rules_and_returned(env: dict[str, Any]) -> None:
    svc, rules = env["svc"], env["rules"]
    loan_p = await make_program(env, pb.PROGRAM_TYPE_LOAN_INTEREST_SUBSIDY)
    care_p = await make_program(env, pb.PROGRAM_TYPE_HOSPITAL_CARE)
    sjh_p = await make_program(env, pb.PROGRAM_TYPE_SANJIEHE)
    happy_p = await make_program(
        env, pb.PROGRAM_TYPE_HAPPINESS_FUND, region=XP_VILLAGE, fund_kind=pb.FUND_KIND_HAPPINESS
    )

    loan = await svc.SubmitApplication(submit(loan_p, attributes={"note": "首次申请"}, loan_interest=LOAN), CLERK)
    assert loan.loan_interest == LOAN and loan.WhichOneof("details") == "loan_interest"
    assert loan.amount_entitled.fen == 2175_00 // 2  # the plugin read loan.interest_paid_fen
    assert rules.seen[-1] == {
        "note": "首次申请",
        "loan.lender": "溆浦县农村商业银行",
        "loan.principal_fen": "5000000",
        "loan.annual_rate_bp": "435",
        "loan.interest_paid_fen": "217500",
        "loan.start": "2022-01-10",
        "loan.end": "2023-01-09",
        "loan.purpose": "柑橘种植",
    }
    # The clerk's attributes are stored and returned as given; the detail keys are not mixed in.
    assert dict(loan.attributes) == {"note": "首次申请"}

    care = await svc.SubmitApplication(submit(care_p, hospital_care=HOSPITAL), CLERK)
    assert care.hospital_care == HOSPITAL and care.amount_entitled.fen == 12 * 50_00
    sjh = await svc.SubmitApplication(submit(sjh_p, amount=5000_00, sanjiehe=SANJIEHE), CLERK)
    assert sjh.sanjiehe == SANJIEHE and sjh.amount_entitled.fen == 5000_00  # no amount rule: as requested
    assert rules.seen[-1]["sanjiehe.income_gained_fen"] == "300000" and rules.seen[-1]["sanjiehe.industry"] == "种养"
    happy = await svc.SubmitApplication(submit(happy_p, amount=800_00, happiness_fund=HAPPY), CLERK)
    assert happy.happiness_fund == HAPPY
    assert (
        rules.seen[-1]["happiness.use"] == "村民慰问" and rules.seen[-1]["happiness.use_code"] == "VILLAGER_CONDOLENCE"
    )

    # Plain values in the column: money in 分, dates ISO, the use by its code.
    async with env["sessions"]() as s:
        rows = {r.id: r.details for r in (await s.execute(select(ApplicationRow))).scalars()}
    assert rows[int(loan.name.split("/")[1])] == {
        "kind": "loan_interest",
        "lender": "溆浦县农村商业银行",
        "principal_fen": 50_000_00,
        "annual_rate_bp": 435,
        "interest_paid_fen": 2175_00,
        "loan_start": "2022-01-10",
        "loan_end": "2023-01-09",
        "purpose": "柑橘种植",
    }
    # Health details (DESIGN.md §3.7) are sealed: neither the hospital nor the dates are in the clear.
    sealed = rows[int(care.name.split("/")[1])]
    assert set(sealed) == {"kind", "sealed"} and sealed["kind"] == "hospital_care"
    assert not any(x in json.dumps(sealed, ensure_ascii=False) for x in ("人民医院", "2022-08-01", "2022-08-13"))
    assert rows[int(happy.name.split("/")[1])] == {
        "kind": "happiness_fund",
        "use": "VILLAGER_CONDOLENCE",
        "resolution_number": "村民代表会〔2022〕3号",
    }

    for app in (loan, care, sjh, happy):
        got = await svc.GetApplication(pb.GetApplicationRequest(name=app.name), CLERK)
        assert got.WhichOneof("details") == app.WhichOneof("details")
        assert getattr(got, got.WhichOneof("details")) == getattr(app, app.WhichOneof("details"))
    listed = await svc.ListApplications(pb.ListApplicationsRequest(), CLERK)
    assert [(a.name, a.WhichOneof("details")) for a in listed.applications] == [
        (loan.name, "loan_interest"),
        (care.name, "hospital_care"),
        (sjh.name, "sanjiehe"),
        (happy.name, "happiness_fund"),
    ]
    assert listed.applications[2].sanjiehe.income_gained.fen == 3000_00


async def test_hospital_days_reach_the_plugin_with_provenance(env: dict[str, Any]) -> None:
    svc, rules = env["svc"], env["rules"]
    program = await make_program(env, pb.PROGRAM_TYPE_HOSPITAL_CARE)
    # days left empty: counted from the dates (算入不算出), 8-01 → 8-13 is 12 days
    stay = pb.HospitalCareDetails(
        hospital="怀化市第一人民医院", admission_date=d(2022, 8, 1), discharge_date=d(2022, 8, 13)
    )
    app = await svc.SubmitApplication(submit(program, period="2022-08", hospital_care=stay), CLERK)
    assert app.hospital_care.days == 12 and rules.seen[-1]["hospital.days"] == "12"
    assert rules.seen[-1]["hospital.admission"] == "2022-08-01" and rules.seen[-1]["hospital.discharge"] == "2022-08-13"
    assert app.amount_entitled.fen == 600_00
    prov = {p.hook: p for p in app.provenance}
    assert prov["jsx_entitlement_amount"].plugin == "test_detail_rules"
    assert prov["jsx_entitlement_amount"].plugin_version == "0.1.0"
    assert prov["jsx_entitlement_amount"].reasons[0].startswith("住院 12 天 × 50 元/天")
    assert prov["jsx_program_eligibility"].plugin == "hunan"  # special families: the province decides

    # A same-day stay is 1 day; a long one is capped by the plugin's yearly limit.
    same = await svc.SubmitApplication(
        submit(
            program,
            period="2022-09",
            hospital_care=pb.HospitalCareDetails(
                hospital="溆浦县人民医院", admission_date=d(2022, 9, 3), discharge_date=d(2022, 9, 3)
            ),
        ),
        CLERK,
    )
    assert (same.hospital_care.days, same.amount_entitled.fen) == (1, 50_00)
    long = await svc.SubmitApplication(
        submit(
            program,
            period="2022-10",
            hospital_care=pb.HospitalCareDetails(
                hospital="溆浦县人民医院", admission_date=d(2022, 10, 1), discharge_date=d(2022, 12, 20), days=80
            ),
        ),
        CLERK,
    )
    assert long.amount_entitled.fen == 3000_00

    # A service without the PII key refuses health details rather than store them in the clear.
    bare = env["make_api"](compose(env["sessions"], svc.plugins, clock=env["clock"]))
    with pytest.raises(FailedPrecondition) as e:
        await bare.SubmitApplication(submit(program, period="2022-11", hospital_care=stay), CLERK)
    assert e.value.reason == "NO_PII_KEY" and "加密密钥" in e.value.message
    with pytest.raises(FailedPrecondition):
        await bare.GetApplication(pb.GetApplicationRequest(name=app.name), CLERK)
    async with env["sessions"]() as s:
        assert (
            await s.execute(select(func.count()).select_from(ApplicationRow).where(ApplicationRow.period == "2022-11"))
        ).scalar_one() == 0


async def test_each_rule_is_refused_with_its_field_and_nothing_stored(env: dict[str, Any]) -> None:
    svc = env["svc"]
    loan_p = await make_program(env, pb.PROGRAM_TYPE_LOAN_INTEREST_SUBSIDY)
    care_p = await make_program(env, pb.PROGRAM_TYPE_HOSPITAL_CARE)
    sjh_p = await make_program(env, pb.PROGRAM_TYPE_SANJIEHE)
    happy_p = await make_program(
        env, pb.PROGRAM_TYPE_HAPPINESS_FUND, region=XP_VILLAGE, fund_kind=pb.FUND_KIND_HAPPINESS
    )
    special_p = await make_program(env, pb.PROGRAM_TYPE_SPECIAL_SUPPORT)
    before = await stored(env)

    def loan(**kw: Any) -> dict[str, Any]:
        m = pb.LoanInterestDetails()
        m.CopyFrom(LOAN)
        for k, v in kw.items():
            if isinstance(v, (c.Money, c.Date)):
                getattr(m, k).CopyFrom(v)
            else:
                setattr(m, k, v)
        return {"loan_interest": m}

    def care(**kw: Any) -> dict[str, Any]:
        m = pb.HospitalCareDetails()
        m.CopyFrom(HOSPITAL)
        for k, v in kw.items():
            getattr(m, k).CopyFrom(v) if isinstance(v, c.Date) else setattr(m, k, v)
        return {"hospital_care": m}

    cases: list[tuple[pb.Program, dict[str, Any], str, str]] = [
        (loan_p, loan(principal=c.Money(fen=0)), "application.loan_interest.principal", "大于 0 元"),
        (loan_p, loan(principal=c.Money(fen=-1)), "application.loan_interest.principal", "大于 0 元"),
        (loan_p, loan(annual_rate_bp=0), "application.loan_interest.annual_rate_bp", "1～10000"),
        (loan_p, loan(annual_rate_bp=10001), "application.loan_interest.annual_rate_bp", "4.35% 填 435"),
        (loan_p, loan(interest_paid=c.Money(fen=-5)), "application.loan_interest.interest_paid", "大于 0 元"),
        (loan_p, loan(loan_end=d(2022, 1, 10)), "application.loan_interest.loan_end", "须晚于起始日 2022-01-10"),
        (loan_p, loan(loan_end=d(2021, 12, 31)), "application.loan_interest.loan_end", "须晚于起始日"),
        (loan_p, loan(loan_start=d(2022, 2, 30)), "application.loan_interest.loan_start", "2022-2-30 无效"),
        (loan_p, loan(loan_start=c.Date()), "application.loan_interest.loan_start", "请填写贷款起始日"),
        (loan_p, loan(purpose="  "), "application.loan_interest.purpose", "请填写贷款用途"),
        (loan_p, loan(lender=""), "application.loan_interest.lender", "请填写贷款银行"),
        (care_p, care(discharge_date=d(2022, 7, 31)), "application.hospital_care.discharge_date", "不能早于入院日期"),
        (care_p, care(days=13), "application.hospital_care.days", "应为 12 天：按“算入不算出”计算"),
        (care_p, care(days=-1), "application.hospital_care.days", "不能为负数"),
        (care_p, care(admission_date=c.Date()), "application.hospital_care.admission_date", "请填写入院日期"),
        (care_p, care(hospital=""), "application.hospital_care.hospital", "请填写住院医院名称"),
        (
            sjh_p,
            {"sanjiehe": pb.SanjieheDetails(agreement_number="溆计协帮〔2022〕07号")},
            "application.sanjiehe.project",
            "请填写三结合项目名称",
        ),
        (
            sjh_p,
            {"sanjiehe": pb.SanjieheDetails(project="柑橘种植")},
            "application.sanjiehe.agreement_number",
            "帮扶协议编号",
        ),
        (
            sjh_p,
            {"sanjiehe": pb.SanjieheDetails(project="柑橘种植", agreement_number="7号", income_gained=c.Money(fen=-1))},
            "application.sanjiehe.income_gained",
            "不能为负数",
        ),
        (
            happy_p,
            {"happiness_fund": pb.HappinessFundDetails(resolution_number="3号")},
            "application.happiness_fund.use",
            "村民慰问",
        ),
        (
            happy_p,
            # 99: no HappinessUse value
            {"happiness_fund": pb.HappinessFundDetails(use=pb.HappinessUse.ValueType(99), resolution_number="3号")},
            "application.happiness_fund.use",
            "请选择幸福基金用途",
        ),
        (
            happy_p,
            {"happiness_fund": pb.HappinessFundDetails(use=pb.HAPPINESS_USE_SCHOLARSHIP)},
            "application.happiness_fund.resolution_number",
            "村级审议决议编号",
        ),
        # the kind must be the program's
        (loan_p, {"hospital_care": HOSPITAL}, "application.hospital_care", "本项目为贷款贴息项目，请改填贷款明细"),
        (care_p, {}, "application.hospital_care", "住院护理补贴项目的申请须填写住院明细"),
        (loan_p, {}, "application.loan_interest", "须填写贷款明细"),
        (sjh_p, {"happiness_fund": HAPPY}, "application.happiness_fund", "请改填三结合项目明细"),
        (happy_p, {}, "application.happiness_fund", "须填写幸福基金支出明细"),
        (special_p, {"sanjiehe": SANJIEHE}, "application.sanjiehe", "本项目为特别扶助项目，不需要填写明细"),
        # the reserved keys are the service's, not the clerk's
        (
            care_p,
            {"hospital_care": HOSPITAL, "attributes": {"hospital.days": "30"}},
            "application.attributes[hospital.days]",
            "由系统按申请明细",
        ),
    ]
    for program, details, field, words in cases:
        attributes = details.pop("attributes", None)
        with pytest.raises(InvalidArgument) as e:
            await svc.SubmitApplication(submit(program, amount=100_00, attributes=attributes, **details), CLERK)
        fields = {v.field: v.description for v in e.value.violations}
        assert field in fields, (field, fields)
        assert words in fields[field] and has_chinese(e.value.message), (field, fields[field])
    # Several problems at once come back together.
    with pytest.raises(InvalidArgument) as e:
        await svc.SubmitApplication(
            submit(loan_p, **loan(annual_rate_bp=0, principal=c.Money(fen=0), loan_end=d(2020, 1, 1))), CLERK
        )
    assert {v.field for v in e.value.violations} == {
        "application.loan_interest.annual_rate_bp",
        "application.loan_interest.principal",
        "application.loan_interest.loan_end",
    }
    assert await stored(env) == before  # no application, no event


async def test_happiness_use_must_be_allowed_by_the_village_rule(env: dict[str, Any]) -> None:
    svc = env["svc"]
    # 溆浦: the county plugin allows the six uses, 村民慰问 among them.
    xupu_p = await make_program(
        env, pb.PROGRAM_TYPE_HAPPINESS_FUND, region=XP_VILLAGE, fund_kind=pb.FUND_KIND_HAPPINESS
    )
    ok = await svc.SubmitApplication(submit(xupu_p, amount=500_00, happiness_fund=HAPPY), CLERK)
    use = {p.hook: p for p in ok.provenance}["jsx_fund_allowed_uses"]
    assert (use.plugin, use.region.code) == ("xupu", "431224000000")
    assert use.reasons[-1] == "用途“村民慰问”在幸福基金允许的用途内" and any("溆浦县" in r for r in use.reasons)

    # A village whose rule lists only 尊老爱幼 and 村民慰问: 奖学助学 is refused, naming both and the plugin.
    strict_p = await make_program(
        env, pb.PROGRAM_TYPE_HAPPINESS_FUND, region=XP_STRICT, fund_kind=pb.FUND_KIND_HAPPINESS
    )
    before = await stored(env)
    with pytest.raises(InvalidArgument) as e:
        await svc.SubmitApplication(
            submit(
                strict_p,
                hid="s1",
                amount=500_00,
                happiness_fund=pb.HappinessFundDetails(
                    use=pb.HAPPINESS_USE_SCHOLARSHIP, resolution_number="村民代表会〔2022〕5号"
                ),
            ),
            CLERK,
        )
    assert e.value.reason == "FUND_USE_NOT_ALLOWED"
    assert [v.field for v in e.value.violations] == ["application.happiness_fund.use"]
    assert "只能用于：尊老爱幼、村民慰问（规则插件 test_strict_village 0.1.0），“奖学助学”不在其中" in e.value.message
    assert (
        e.value.metadata["plugin"] == "test_strict_village" and e.value.metadata["allowed_uses"] == "尊老爱幼、村民慰问"
    )
    assert await stored(env) == before
    fine = await svc.SubmitApplication(
        submit(
            strict_p,
            hid="s1",
            amount=500_00,
            happiness_fund=pb.HappinessFundDetails(
                use=pb.HAPPINESS_USE_RESPECT_ELDERLY, resolution_number="村民代表会〔2022〕6号"
            ),
        ),
        CLERK,
    )
    assert {p.hook: p for p in fine.provenance}["jsx_fund_allowed_uses"].plugin == "test_strict_village"

    # No 幸福基金 rule for the fund's region at all: refused, nothing stored.
    cs_p = await make_program(env, pb.PROGRAM_TYPE_HAPPINESS_FUND, region=CS_VILLAGE, fund_kind=pb.FUND_KIND_HAPPINESS)
    before = await stored(env)
    with pytest.raises(FailedPrecondition) as e2:
        await svc.SubmitApplication(
            submit(cs_p, hid="cs1", amount=500_00, happiness_fund=HAPPY), who("clerk-cs", "430102")
        )
    assert e2.value.reason == "NO_RULE" and "没有幸福基金用途规则" in e2.value.message
    assert await stored(env) == before


async def test_income_gained_of_paid_sanjiehe_applications_in_the_report(env: dict[str, Any], tmp_path: Path) -> None:
    svc, funds, clock = env["svc"], env["funds"], env["clock"]
    program = await make_program(
        env, pb.PROGRAM_TYPE_SANJIEHE, levels=(pb.APPROVAL_LEVEL_VILLAGE, pb.APPROVAL_LEVEL_COUNTY)
    )
    src = await funds.CreateFundSource(
        pb.CreateFundSourceRequest(
            request_id=rid(),
            fund_source=pb.FundSource(
                display_name="2022年县级三结合资金",
                kind=pb.FUND_SOURCE_KIND_COUNTY_FINANCE,
                region=c.RegionCode(code=XP),
            ),
        ),
        None,
    )
    await funds.PostAllocation(
        pb.PostAllocationRequest(fund=program.fund, source=src.name, amount=c.Money(fen=20_000_00), request_id=rid()),
        None,
    )
    apps = {}
    for hid, income in (("h1", 3000_00), ("h2", 2000_00)):
        details = pb.SanjieheDetails(
            project="柑橘种植",
            agreement_number=f"溆计协帮〔2022〕{hid}号",
            industry="种养",
            income_gained=c.Money(fen=income),
        )
        app = await svc.SubmitApplication(submit(program, hid=hid, amount=5000_00, sanjiehe=details), CLERK)
        for reviewer, region in (("v", XP_VILLAGE), ("c", XP)):
            await svc.DecideApplication(
                pb.DecideApplicationRequest(
                    request_id=rid(), name=app.name, decision=pb.APPROVAL_DECISION_APPROVE, comment="同意"
                ),
                who(reviewer, region),
            )
        apps[hid] = app
    # Approved and in 公示 only: no income counts yet.
    report = pb.GetProgramReportRequest(program=program.name, period=c.Period(code="2022"))
    assert (await env["reports"].GetProgramReport(report, CLERK)).income_gained.fen == 0

    clock.now += timedelta(days=30)
    batch = await svc.CreatePaymentBatch(
        pb.CreatePaymentBatchRequest(
            request_id=rid(), program=program.name, region=c.RegionCode(code=XP), period=c.Period(code="2022")
        ),
        who("fin", XP),
    )
    payments = {
        p.household: p.name
        for p in (await svc.ListPayments(pb.ListPaymentsRequest(payment_batch=batch.name), None)).payments
    }
    assert (await env["reports"].GetProgramReport(report, CLERK)).income_gained.fen == 0  # issued, not confirmed
    await svc.ImportBankResults(
        pb.ImportBankResultsRequest(
            payment_batch=batch.name,
            request_id=rid(),
            results=[
                pb.BankResult(payment=payments["households/h1"], succeeded=True),
                pb.BankResult(payment=payments["households/h2"], succeeded=False, failure_reason="账户已冻结"),
            ],
        ),
        None,
    )
    r = await env["reports"].GetProgramReport(report, CLERK)
    assert r.income_gained.fen == 3000_00  # h1 paid; h2 failed at the bank
    assert r.households_helped == 1 and r.summary.endswith("，带动增收 0.3 万元")
    other = await env["reports"].GetProgramReport(
        pb.GetProgramReportRequest(program=program.name, period=c.Period(code="2021")), CLERK
    )
    assert other.income_gained.fen == 0

    out = tmp_path / "报表.xlsx"
    reports_xlsx([("2022年溆浦县三结合", r)], out)
    ws = load_workbook(out).active
    assert isinstance(ws, Worksheet)
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][10] == "带动增收（元）" and rows[1][10] == 3000


# ------------------------------------------------------------------ over gRPC

SECRET = "d" * 40


async def test_details_over_grpc(db_url: str, nats_url: str, tmp_path: Path) -> None:
    config = ServiceConfig.from_env(
        "funds",
        {
            "JSX_FUNDS_DATABASE_URL": db_url,
            "JSX_FUNDS_NATS_URL": nats_url,
            "JSX_FUNDS_GRPC_ADDR": "127.0.0.1:0",
            "JSX_FUNDS_DATA_DIR": str(tmp_path),
            "JSX_PII_KEY": generate_key(),
            "JSX_BLIND_INDEX_KEY": generate_key(),
            "JSX_AUTH_SECRET": SECRET,
        },
    )
    await asyncio.to_thread(migrate, db_url)
    rt, service, _ = build_runtime(config)
    rt.plugins.register(DetailRules())
    port = await rt.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = funds_pb2_grpc.FundsServiceStub(channel)

    def md(subject: str, roles: list[str]) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {issue_token(SECRET, subject, roles, XP)}"),)

    clerk, appr, fin = (
        md("clerk-xp", ["county_clerk"]),
        md("appr-xp", ["county_approver"]),
        md("fin-xp", ["finance_officer"]),
    )
    try:
        await add_household(service.sessions, "g1", XP_VILLAGE)
        fund = await stub.CreateFund(
            pb.CreateFundRequest(
                request_id=rid(),
                fund=pb.Fund(
                    display_name="溆浦县住院护理补贴资金", kind=pb.FUND_KIND_PROGRAM, owner_region=c.RegionCode(code=XP)
                ),
            ),
            metadata=fin,
        )
        program = await stub.CreateProgram(
            pb.CreateProgramRequest(
                request_id=rid(),
                program=pb.Program(
                    display_name="2022年溆浦县计生特殊家庭住院护理补贴",
                    type=pb.PROGRAM_TYPE_HOSPITAL_CARE,
                    region=c.RegionCode(code=XP),
                    fund=fund.name,
                    year=2022,
                ),
            ),
            metadata=appr,
        )

        bad = pb.HospitalCareDetails(
            hospital="溆浦县人民医院", admission_date=d(2022, 8, 13), discharge_date=d(2022, 8, 1)
        )
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.SubmitApplication(
                pb.SubmitApplicationRequest(
                    request_id=rid(),
                    application=pb.Application(
                        program=program.name,
                        household="households/g1",
                        person="persons/g1-head",
                        period=c.Period(code="2022-08"),
                        hospital_care=bad,
                    ),
                ),
                metadata=clerk,
            )
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        _, bad_request, _ = error_details(e.value)
        assert bad_request is not None
        assert [v.field for v in bad_request.field_violations] == ["application.hospital_care.discharge_date"]
        assert "不能早于入院日期" in bad_request.field_violations[0].description
        assert (await stub.ListApplications(pb.ListApplicationsRequest(), metadata=clerk)).applications == []

        app = await stub.SubmitApplication(
            pb.SubmitApplicationRequest(
                request_id=rid(),
                application=pb.Application(
                    program=program.name,
                    household="households/g1",
                    person="persons/g1-head",
                    period=c.Period(code="2022-08"),
                    hospital_care=HOSPITAL,
                ),
            ),
            metadata=clerk,
        )
        assert app.hospital_care == HOSPITAL and app.amount_entitled.fen == 600_00
        got = await stub.GetApplication(pb.GetApplicationRequest(name=app.name), metadata=clerk)
        assert got.hospital_care == HOSPITAL
        assert {p.hook: p.plugin for p in got.provenance}["jsx_entitlement_amount"] == "test_detail_rules"
        listed = await stub.ListApplications(pb.ListApplicationsRequest(), metadata=clerk)
        assert [a.hospital_care.days for a in listed.applications] == [12]
    finally:
        await channel.close()
        await rt.stop(0)
