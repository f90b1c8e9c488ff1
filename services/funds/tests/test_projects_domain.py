"""三结合 domain (jsx_funds.projects): the lifecycle 申报 → 县审核 → 省立项 → 签协议 →
拨付 → 跟踪 → 验收 → 绩效 with maker-checker, and the rules of the shipped
plugins (through a real PluginHost) for 帮扶协议, tranches and 绩效. No database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from jsx_funds.projects import (
    Acceptance,
    Agreement,
    Implementer,
    Progress,
    Project,
    ProjectsSummary,
    Stage,
    Step,
    TrancheState,
    summarize,
)
from jsxcore.errors import DomainError, FailedPrecondition, InvalidArgument, PermissionDenied
from jsxcore.hookspecs import PerformanceResult, SanjieheRules, TrancheDecision, TranchePayee, has_chinese
from jsxcore.plugins import PluginHost
from jsxcore.values import Money, RegionCode

XUPU = RegionCode.parse("431224")
VILLAGE = "431224101201"
T0 = datetime(2022, 3, 1, 2, 0, tzinfo=UTC)
CLERK, COUNTY, PROVINCE, FINANCE, INSPECTOR = "clerk-xp", "county-xp", "province-hn", "finance-xp", "inspector-xp"


@pytest.fixture(scope="module")
def host() -> PluginHost:
    h = PluginHost(timeout_ms=2000)
    h.discover()
    return h


@pytest.fixture(scope="module")
def rules(host: PluginHost) -> SanjieheRules:
    value: SanjieheRules = host.call("jsx_sanjiehe_rules", VILLAGE, year=2022).value
    return value


def at(days: int) -> datetime:
    return T0 + timedelta(days=days)


def fields(e: DomainError) -> dict[str, str]:
    return {v.field: v.description for v in e.violations}


def declare(rules: SanjieheRules, provincial: bool = True, **changes: Any) -> Project:
    values: dict[str, Any] = {
        "name": "溆浦县柑橘种植三结合项目",
        "project_type": "种养",
        "year": 2022,
        "region": XUPU,
        "implementer": Implementer("COMPANY", "溆浦某果业公司"),
        "partner": "溆浦某果业公司",
        "budget": Money.yuan(100_000),
        "funds": ("funds/3",),
        "provincial_money": provincial,
        "rules": rules,
        "actor": CLERK,
        "at": at(0),
    }
    return Project.declare(**{**values, **changes})


def agreement(
    rules: SanjieheRules, number: str = "溆计协帮〔2022〕07号", household: str = "households/h1", **changes: Any
) -> Agreement:
    values: dict[str, Any] = {
        "number": number,
        "household_id": household,
        "support_money": Money.yuan(10_000),
        "support_in_kind": "柑橘苗 300 株",
        "obligations": "按技术规程种植，参加 2 次培训，配合跟踪回访",
        "expected_income_gain": Money.yuan(5_000),
        "start": date(2022, 4, 1),
        "end": date(2023, 3, 31),
        "people": 3,
        "signed_on": date(2022, 4, 1),
        "rules": rules,
    }
    return Agreement.create(**{**values, **changes})


def approved(rules: SanjieheRules, provincial: bool = True) -> Project:
    p = declare(rules, provincial).review_county(actor=COUNTY, at=at(5), approve=True)
    return p.approve_province(actor=PROVINCE, at=at(10), approve=True) if provincial else p


def signed(rules: SanjieheRules) -> Project:
    p = approved(rules).sign_agreement(agreement(rules), actor=CLERK, at=at(20))
    return p.sign_agreement(agreement(rules, "溆计协帮〔2022〕08号", "households/h2"), actor=CLERK, at=at(21))


def tranche(
    host: PluginHost,
    p: Project,
    milestone: str,
    payee: TranchePayee = "HOUSEHOLD",
    agreement_number: str = "溆计协帮〔2022〕07号",
) -> TrancheDecision:
    request = p.tranche_request(milestone, payee, agreement_number)
    value: TrancheDecision = host.call("jsx_sanjiehe_tranche", VILLAGE, request=request).value
    return value


def propose(
    host: PluginHost,
    p: Project,
    tid: str,
    milestone: str,
    number: str = "溆计协帮〔2022〕07号",
    typed: Money | None = None,
    actor: str = CLERK,
) -> Project:
    d = tranche(host, p, milestone, "HOUSEHOLD", number)
    return p.propose_tranche(
        tranche_id=tid,
        milestone=milestone,
        payee="HOUSEHOLD",
        agreement_number=number,
        decision=d,
        typed_amount=typed,
        actor=actor,
        at=at(30),
    )


# -- 申报 ----------------------------------------------------------------------------------------


def test_declare_checks_what_the_clerk_typed_against_the_rules(rules: SanjieheRules) -> None:
    p = declare(rules)
    assert (p.stage, p.project_type, p.declarer) == (Stage.DECLARED, "PLANTING_BREEDING", CLERK)
    assert p.steps[0].step is Step.DECLARE
    with pytest.raises(InvalidArgument) as e:
        declare(
            rules,
            project_type="房地产开发",
            budget=Money(0),
            funds=(" ",),
            partner="",
            year=2023,
            implementer=Implementer("COMPANY", ""),
        )
    got = fields(e.value)
    assert e.value.reason == "INVALID_PROJECT" and all(has_chinese(v) for v in got.values())
    assert set(got) == {
        "project.type",
        "project.budget",
        "project.funds",
        "project.partner",
        "project.year",
        "project.implementer.name",
    }
    assert "种养、加工、乡村旅游" in got["project.type"]
    with pytest.raises(InvalidArgument) as h:
        declare(rules, implementer=Implementer("HOUSEHOLD", "张某家庭农场"), partner="")
    assert set(fields(h.value)) == {"project.implementer.household"}


# -- 县审核, 省立项: maker-checker --------------------------------------------------------------


def test_the_clerk_cannot_approve_their_own_project(rules: SanjieheRules) -> None:
    p = declare(rules)
    with pytest.raises(PermissionDenied) as e:
        p.review_county(actor=CLERK, at=at(1), approve=True)
    assert e.value.reason == "MAKER_CHECKER" and "申报人不能审核自己申报的项目" in e.value.message
    county = p.review_county(actor=COUNTY, at=at(5), approve=True)
    with pytest.raises(PermissionDenied) as same:
        county.approve_province(actor=COUNTY, at=at(6), approve=True)
    assert same.value.reason == "SAME_REVIEWER"
    with pytest.raises(PermissionDenied):
        county.approve_province(actor=CLERK, at=at(6), approve=True)
    done = county.approve_province(actor=PROVINCE, at=at(10), approve=True)
    assert done.stage is Stage.PROVINCE_APPROVED
    assert [(s.step, s.actor, s.outcome) for s in done.steps] == [
        (Step.DECLARE, CLERK, ""),
        (Step.COUNTY_REVIEW, COUNTY, "APPROVE"),
        (Step.PROVINCE_APPROVAL, PROVINCE, "APPROVE"),
    ]


def test_refusals_need_a_comment_and_stop_the_project(rules: SanjieheRules) -> None:
    p = declare(rules)
    with pytest.raises(InvalidArgument) as e:
        p.review_county(actor=COUNTY, at=at(1), approve=False)
    assert e.value.reason == "MISSING_COMMENT"
    rejected = p.review_county(actor=COUNTY, at=at(1), approve=False, comment="实施主体带动能力不足")
    assert rejected.stage is Stage.REJECTED
    with pytest.raises(FailedPrecondition) as stage:
        rejected.sign_agreement(agreement(rules), actor=CLERK, at=at(2))
    assert stage.value.reason == "WRONG_STAGE" and "审核未通过" in stage.value.message


def test_county_money_needs_no_province_step(rules: SanjieheRules) -> None:
    p = approved(rules, provincial=False)
    with pytest.raises(FailedPrecondition) as e:
        p.approve_province(actor=PROVINCE, at=at(6), approve=True)
    assert e.value.reason == "NO_PROVINCE_STEP"
    assert p.sign_agreement(agreement(rules), actor=CLERK, at=at(7)).stage is Stage.AGREEMENTS_SIGNED
    # a provincial project must wait for 省立项
    with pytest.raises(FailedPrecondition):
        declare(rules).review_county(actor=COUNTY, at=at(5), approve=True).sign_agreement(
            agreement(rules), actor=CLERK, at=at(6)
        )


# -- 签协议 --------------------------------------------------------------------------------------


def test_an_agreement_must_contain_what_the_rule_requires(rules: SanjieheRules) -> None:
    with pytest.raises(InvalidArgument) as e:
        agreement(
            rules,
            support_money=Money(0),
            support_in_kind="",
            obligations="",
            expected_income_gain=Money(0),
            start=None,
            end=None,
            people=0,
        )
    got = fields(e.value)
    assert e.value.reason == "INVALID_AGREEMENT"
    assert set(got) == {
        "agreement.support_money",
        "agreement.obligations",
        "agreement.expected_income_gain",
        "agreement.start",
        "agreement.people",
    }
    assert "帮扶内容" in got["agreement.support_money"] and "假定标准" in got["agreement.obligations"]
    p = approved(rules).sign_agreement(agreement(rules), actor=CLERK, at=at(20))
    with pytest.raises(FailedPrecondition) as again:
        p.sign_agreement(agreement(rules, "溆计协帮〔2022〕09号"), actor=CLERK, at=at(21))
    assert again.value.reason == "AGREEMENT_EXISTS" and "每户一份" in again.value.message
    with pytest.raises(FailedPrecondition) as over:
        p.sign_agreement(
            agreement(rules, "溆计协帮〔2022〕10号", "households/h9", support_money=Money.yuan(95_000)),
            actor=CLERK,
            at=at(21),
        )
    assert over.value.reason == "OVER_BUDGET"


# -- 拨付 ----------------------------------------------------------------------------------------


def test_no_tranche_before_the_agreement(host: PluginHost, rules: SanjieheRules) -> None:
    p = approved(rules)
    d = tranche(host, p, "FIRST")
    assert not d.allowed and any("帮扶协议尚未签订" in r for r in d.reasons)  # the rule says so
    with pytest.raises(FailedPrecondition) as e:  # and the domain refuses whatever a rule says
        p.propose_tranche(
            tranche_id="t1",
            milestone="FIRST",
            payee="HOUSEHOLD",
            agreement_number="溆计协帮〔2022〕07号",
            decision=TrancheDecision(True, ("宽松规则",), Money.yuan(7_000), ("宽松",)),
            actor=CLERK,
            at=at(30),
        )
    assert e.value.reason == "AGREEMENT_NOT_SIGNED" and "须先签协议后拨款" in e.value.message
    one = p.sign_agreement(agreement(rules), actor=CLERK, at=at(20))
    with pytest.raises(FailedPrecondition) as other:
        one.check_may_pay("HOUSEHOLD", "溆计协帮〔2022〕99号")  # a household without its own agreement
    assert other.value.reason == "AGREEMENT_NOT_SIGNED"


def test_tranches_by_milestone_with_maker_checker(host: PluginHost, rules: SanjieheRules) -> None:
    p = propose(host, signed(rules), "t1", "FIRST")
    t = p.tranches[0]
    assert (p.stage, t.amount, t.state) == (Stage.DISBURSING, Money.yuan(7_000), TrancheState.PROPOSED)
    assert any("70%" in b for b in t.basis)
    with pytest.raises(PermissionDenied) as own:
        p.decide_tranche("t1", actor=CLERK, at=at(31), approve=True)
    assert own.value.reason == "MAKER_CHECKER"
    with pytest.raises(FailedPrecondition) as pending:
        propose(host, p, "t1b", "FIRST")
    assert pending.value.reason == "TRANCHE_PENDING"
    p = p.decide_tranche("t1", actor=FINANCE, at=at(31), approve=True)
    assert p.tranches[0].state is TrancheState.APPROVED and p.paid == Money.yuan(7_000)
    with pytest.raises(FailedPrecondition) as twice:
        propose(host, p, "t2", "FIRST")
    assert twice.value.reason == "TRANCHE_NOT_ALLOWED" and "同一节点不能重复拨付" in twice.value.message
    with pytest.raises(FailedPrecondition) as early:
        propose(host, p, "t3", "FINAL")
    assert early.value.reason == "TRANCHE_NOT_ALLOWED" and "验收合格后拨付" in early.value.message


def test_a_typed_tranche_amount_that_differs_is_refused(host: PluginHost, rules: SanjieheRules) -> None:
    with pytest.raises(InvalidArgument) as e:
        propose(host, signed(rules), "t1", "FIRST", typed=Money.yuan(10_000))
    assert e.value.reason == "AMOUNT_MISMATCH"
    assert "填写的拨付金额 10000.00 元与按规则核定的 7000.00 元不一致" in fields(e.value)["tranche.amount"]
    assert propose(host, signed(rules), "t1", "FIRST", typed=Money.yuan(7_000)).tranches[0].amount == Money.yuan(7_000)


def inspected(p: Project, passed: bool, days: int, findings: str = "") -> Project:
    a = Acceptance.create(
        on=date(2022, 9, 1) + timedelta(days=days),
        inspectors=(INSPECTOR, "县财政局 李某"),
        passed=passed,
        findings=findings,
        recorded_by=INSPECTOR,
    )
    return p.record_acceptance(a, at=at(200 + days))


def test_no_tranche_after_a_failed_acceptance_until_a_reinspection_passes(
    host: PluginHost, rules: SanjieheRules
) -> None:
    p = propose(host, signed(rules), "t1", "FIRST").decide_tranche("t1", actor=FINANCE, at=at(31), approve=True)
    with pytest.raises(FailedPrecondition) as untracked:
        inspected(p, True, 0)
    assert untracked.value.reason == "NO_PROGRESS"
    visit = Progress.create(
        visit_date=date(2022, 6, 15),
        visitor="县计生协 王某",
        notes="苗木成活率 92%，长势良好",
        attachments=("files/visit-0615.jpg",),
        household_id="households/h1",
    )
    p = p.record_progress(visit, actor=CLERK, at=at(106))
    assert p.stage is Stage.TRACKING
    failed = inspected(p, False, 0, findings="部分苗木未按协议栽种，需补栽")
    assert failed.stage is Stage.ACCEPTANCE_FAILED and failed.acceptance_state == "FAILED"
    with pytest.raises(FailedPrecondition) as blocked:
        propose(host, failed, "t2", "FINAL")
    assert blocked.value.reason == "ACCEPTANCE_FAILED" and "须整改后复验合格才能继续拨付" in blocked.value.message
    with pytest.raises(FailedPrecondition):  # no other household's tranche either
        propose(host, failed, "t3", "FIRST", "溆计协帮〔2022〕08号")
    # a tranche proposed before the 验收 cannot be approved after it failed
    pending = propose(host, p, "t3", "FIRST", "溆计协帮〔2022〕08号")
    with pytest.raises(FailedPrecondition):
        inspected(pending, False, 0, findings="需补栽").decide_tranche("t3", actor=FINANCE, at=at(210), approve=True)
    # 整改 tracked, the re-inspection passes: the final tranche goes out
    fixed = failed.record_progress(
        Progress.create(visit_date=date(2022, 9, 20), visitor="县计生协 王某", notes="已补栽"), actor=CLERK, at=at(220)
    )
    passed = inspected(fixed, True, 30)
    assert passed.stage is Stage.ACCEPTED and len(passed.acceptances) == 2
    final = propose(host, passed, "t4", "FINAL")
    assert final.tranches[-1].amount == Money.yuan(3_000)
    with pytest.raises(FailedPrecondition) as again:
        inspected(passed, True, 40)
    assert again.value.reason == "WRONG_STAGE"


def test_the_declarer_cannot_inspect_or_evaluate(host: PluginHost, rules: SanjieheRules) -> None:
    p = signed(rules).record_progress(
        Progress.create(visit_date=date(2022, 6, 1), visitor="王某", notes="正常"), actor=CLERK, at=at(90)
    )
    a = Acceptance.create(on=date(2022, 9, 1), inspectors=(CLERK,), passed=True, findings="", recorded_by=INSPECTOR)
    with pytest.raises(PermissionDenied) as e:
        p.record_acceptance(a, at=at(200))
    assert e.value.reason == "MAKER_CHECKER"
    own = Acceptance.create(on=date(2022, 9, 1), inspectors=(INSPECTOR,), passed=True, findings="", recorded_by=CLERK)
    with pytest.raises(PermissionDenied):
        p.record_acceptance(own, at=at(200))
    with pytest.raises(InvalidArgument) as bad:
        Acceptance.create(on=None, inspectors=(), passed=False, findings="", recorded_by=INSPECTOR)
    assert set(fields(bad.value)) == {"acceptance.inspectors", "acceptance.findings", "acceptance.on"}
    accepted = inspected(p, True, 0)
    facts = accepted.performance_facts(scope="PROJECT", income_gain_measured=Money.yuan(9_000))
    result = host.call("jsx_sanjiehe_performance", VILLAGE, facts=facts).value
    with pytest.raises(PermissionDenied):
        accepted.evaluate(facts, result, actor=CLERK, at=at(300))


# -- 绩效 ----------------------------------------------------------------------------------------


def test_performance_per_household_and_project(host: PluginHost, rules: SanjieheRules) -> None:
    p = signed(rules)
    before = p.performance_facts(scope="PROJECT", income_gain_measured=Money.yuan(1))
    early = host.call("jsx_sanjiehe_performance", VILLAGE, facts=before).value
    with pytest.raises(FailedPrecondition) as e:
        p.evaluate(before, early, actor=COUNTY, at=at(100))
    assert e.value.reason == "WRONG_STAGE"  # 绩效 only after a passed 验收
    p = p.record_progress(
        Progress.create(visit_date=date(2022, 6, 1), visitor="王某", notes="正常"), actor=CLERK, at=at(90)
    )
    p = inspected(p, True, 0)
    one = p.performance_facts(scope="HOUSEHOLD", household_id="households/h1", income_gain_measured=Money.yuan(6_000))
    assert (one.households_planned, one.people_planned, one.income_gain_expected) == (1, 3, Money.yuan(5_000))
    r1: PerformanceResult = host.call("jsx_sanjiehe_performance", VILLAGE, facts=one).value
    assert (r1.score, r1.grade) == (100, "优")
    p = p.evaluate(one, r1, household_id="households/h1", actor=COUNTY, at=at(300))
    with pytest.raises(FailedPrecondition):
        p.evaluate(one, r1, household_id="households/h1", actor=COUNTY, at=at(301))
    whole = p.performance_facts(
        scope="PROJECT", income_gain_measured=Money.yuan(6_500), households_helped=2, people_helped=5
    )
    r = host.call("jsx_sanjiehe_performance", VILLAGE, facts=whole).value
    # 2/2 户 → 30, 5/6 人 → 16, 6500/10000 元 → 32: 78 中
    assert (r.score, r.grade) == (78, "中") and all("假定" in x.basis for x in r.lines)
    done = p.evaluate(whole, r, actor=COUNTY, at=at(302))
    assert done.stage is Stage.EVALUATED and done.steps[-1].outcome == "中"
    with pytest.raises(FailedPrecondition) as after:
        propose(host, done, "t9", "FINAL")
    assert after.value.reason == "WRONG_STAGE"
    with pytest.raises(InvalidArgument):
        p.performance_facts(scope="PROJECT", income_gain_measured=Money(0), households_helped=3)


def test_the_seeds_report_sentence(rules: SanjieheRules) -> None:
    assert ProjectsSummary(45, Money.yuan(6_149_000), 1515, 4269).sentence() == (
        "先后承接实施项目 45 个，资金总额 614.9 万元，惠及计生家庭 1515 户 4269 人"
    )
    s = summarize([signed(rules), declare(rules), approved(rules, provincial=False)])
    assert (s.projects, s.amount, s.households, s.people) == (2, Money.yuan(200_000), 2, 6)
    assert s.sentence() == "先后承接实施项目 2 个，资金总额 20 万元，惠及计生家庭 2 户 6 人"


def test_the_implementing_body_is_paid_from_the_budget_less_the_households_support(
    host: PluginHost, rules: SanjieheRules
) -> None:
    p = signed(rules)  # budget 100,000 元; two agreements of 10,000 元
    request = p.tranche_request("FIRST", "IMPLEMENTER")
    assert (request.base, request.agreement_signed, request.paid_so_far) == (Money.yuan(80_000), True, Money(0))
    d = tranche(host, p, "FIRST", "IMPLEMENTER", "")
    p = p.propose_tranche(
        tranche_id="body-1", milestone="FIRST", payee="IMPLEMENTER", decision=d, actor=CLERK, at=at(30)
    )
    assert p.tranches[-1].amount == Money.yuan(56_000)
    # the households' bases are their own
    assert p.tranche_request("FIRST", "HOUSEHOLD", "溆计协帮〔2022〕07号").paid_so_far == Money(0)
    assert p.tranche_request("FIRST", "IMPLEMENTER").paid_milestones == ("FIRST",)
    # a rejected proposal gives its share back
    p = p.decide_tranche("body-1", actor=FINANCE, at=at(31), approve=False, comment="账户信息有误")
    assert p.tranche_request("FIRST", "IMPLEMENTER").paid_so_far == Money(0) and p.paid == Money(0)
