"""计划生育“三结合” projects: the pure domain — projects, 帮扶协议, tranches,
tracking, 验收 and 绩效评价, and the lifecycle that ties them.

Pure Python: no database, no protobuf, no I/O. A :class:`Project` is an
immutable value; every step returns a new one (the service layer loads it,
calls one step, stores the result and emits the event). The region's rules
come from the plugins as plain data — ``jsx_sanjiehe_rules`` (types,
implementers, what a 帮扶协议 must contain), ``jsx_sanjiehe_tranche`` (whether
and how much a milestone pays) and ``jsx_sanjiehe_performance`` (score and
grade) — which the service fetches through the PluginHost and passes in.

Lifecycle (each step records who and when)::

    申报 DECLARED → 县审核 COUNTY_REVIEWED → 省立项 PROVINCE_APPROVED (provincial money only)
      → 签协议 AGREEMENTS_SIGNED → 拨付 DISBURSING → 跟踪 TRACKING
      → 验收 ACCEPTED | ACCEPTANCE_FAILED (→ re-inspection) → 绩效 EVALUATED
    a review may refuse: → REJECTED

Hard rules, whatever a plugin says: no tranche before a signed 帮扶协议 (for a
household: its own agreement), none while the latest 验收 failed (until a
re-inspection passes), none after the project's 绩效评价; a 验收 only after
tracking; a 绩效评价 only after a passed 验收. Maker-checker as for
applications: the declarer reviews, approves, inspects and evaluates nothing
of their own project (``PermissionDenied`` ``MAKER_CHECKER``), one person
does not review at two levels (``SAME_REVIEWER``), and a tranche is approved
by someone other than who proposed it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from jsxcore.errors import ErrorCollector, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from jsxcore.hookspecs import (
    AcceptanceState,
    ImplementerKind,
    PerformanceFacts,
    PerformanceResult,
    SanjieheRules,
    TrancheDecision,
    TranchePayee,
    TrancheRequest,
)
from jsxcore.values import Money, RegionCode

__all__ = [
    "Acceptance",
    "Agreement",
    "Implementer",
    "Performance",
    "Progress",
    "Project",
    "ProjectsSummary",
    "Stage",
    "Step",
    "StepRecord",
    "Tranche",
    "TrancheState",
    "summarize",
]

_MAX_TEXT = 500


class Stage(StrEnum):
    """Where a project is in its lifecycle."""

    DECLARED = "DECLARED"  # 申报
    COUNTY_REVIEWED = "COUNTY_REVIEWED"  # 县审核通过
    PROVINCE_APPROVED = "PROVINCE_APPROVED"  # 省立项
    AGREEMENTS_SIGNED = "AGREEMENTS_SIGNED"  # 已签帮扶协议
    DISBURSING = "DISBURSING"  # 拨付中
    TRACKING = "TRACKING"  # 跟踪中
    ACCEPTED = "ACCEPTED"  # 验收合格
    ACCEPTANCE_FAILED = "ACCEPTANCE_FAILED"  # 验收不合格，待整改复验
    EVALUATED = "EVALUATED"  # 已完成绩效评价
    REJECTED = "REJECTED"  # 审核未通过

    @property
    def label(self) -> str:
        return _STAGE_LABELS[self]


_STAGE_LABELS = {
    Stage.DECLARED: "已申报",
    Stage.COUNTY_REVIEWED: "县审核通过",
    Stage.PROVINCE_APPROVED: "省已立项",
    Stage.AGREEMENTS_SIGNED: "已签帮扶协议",
    Stage.DISBURSING: "拨付中",
    Stage.TRACKING: "跟踪中",
    Stage.ACCEPTED: "验收合格",
    Stage.ACCEPTANCE_FAILED: "验收不合格（待整改复验）",
    Stage.EVALUATED: "已完成绩效评价",
    Stage.REJECTED: "审核未通过",
}

#: Stages in which agreements may be signed, tranches paid and progress recorded.
_UNDER_WAY = frozenset({Stage.AGREEMENTS_SIGNED, Stage.DISBURSING, Stage.TRACKING})


class Step(StrEnum):
    """What a person did to a project (the lifecycle's audit trail)."""

    DECLARE = "DECLARE"  # 申报
    COUNTY_REVIEW = "COUNTY_REVIEW"  # 县审核
    PROVINCE_APPROVAL = "PROVINCE_APPROVAL"  # 省立项
    SIGN_AGREEMENT = "SIGN_AGREEMENT"  # 签协议
    PROPOSE_TRANCHE = "PROPOSE_TRANCHE"  # 提出拨付
    DECIDE_TRANCHE = "DECIDE_TRANCHE"  # 审批拨付
    RECORD_PROGRESS = "RECORD_PROGRESS"  # 跟踪记录
    RECORD_ACCEPTANCE = "RECORD_ACCEPTANCE"  # 验收
    EVALUATE = "EVALUATE"  # 绩效评价

    @property
    def label(self) -> str:
        return {
            "DECLARE": "申报",
            "COUNTY_REVIEW": "县审核",
            "PROVINCE_APPROVAL": "省立项",
            "SIGN_AGREEMENT": "签订帮扶协议",
            "PROPOSE_TRANCHE": "提出拨付",
            "DECIDE_TRANCHE": "审批拨付",
            "RECORD_PROGRESS": "跟踪记录",
            "RECORD_ACCEPTANCE": "验收",
            "EVALUATE": "绩效评价",
        }[self.value]


@dataclass(frozen=True)
class StepRecord:
    """Who did what to the project, when, and with which outcome/reference."""

    step: Step
    actor: str
    at: datetime
    outcome: str = ""  # APPROVE / REJECT / PASS / FAIL, or "" for a plain record
    comment: str = ""
    ref: str = ""  # the agreement number, tranche id … the step concerns


def _clean(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip()


def _text(errors: ErrorCollector, path: str, value: str, what: str, *, required: bool = True) -> str:
    clean = _clean(value)
    if required and not clean:
        errors.add(path, f"请填写{what}")
    elif len(clean) > _MAX_TEXT:
        errors.add(path, f"{what}过长（最多 {_MAX_TEXT} 字）")
    return clean


def _actor(actor: str) -> str:
    clean = _clean(actor)
    if not clean:
        raise InvalidArgument.field("actor", "须记录办理人员（登录账号）", reason="MISSING_ACTOR")
    return clean


def _months_between(start: date, end: date) -> int:
    """Whole or started months from ``start`` to ``end`` (both inclusive)."""
    months = (end.year - start.year) * 12 + end.month - start.month
    return months + (1 if end.day >= start.day else 0)


_IMPLEMENTER_LABELS: Mapping[str, str] = {
    "HOUSEHOLD": "农户",
    "COOPERATIVE": "农民专业合作社",
    "COMPANY": "企业（公司+农户）",
    "BASE": "生产基地",
}


@dataclass(frozen=True)
class Implementer:
    """Who carries out the project: a household (``household_id``), a
    cooperative, a company in a 公司+农户 scheme, or a production base."""

    kind: ImplementerKind
    name: str
    household_id: str = ""


@dataclass(frozen=True)
class Agreement:
    """A 帮扶协议 with one helped household, signed before any money moves.

    ``support_money`` is the money support (the base its tranches are shares
    of); ``support_in_kind`` describes support in kind; ``people`` is how many
    of the household are helped (for 绩效); ``clauses`` holds the text of any
    further clause the region's rule requires, by its code."""

    number: str
    household_id: str
    support_money: Money
    support_in_kind: str
    obligations: str
    expected_income_gain: Money
    start: date
    end: date
    people: int
    signed_on: date
    clauses: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        *,
        number: str,
        household_id: str,
        support_money: Money,
        support_in_kind: str,
        obligations: str,
        expected_income_gain: Money,
        start: date | None,
        end: date | None,
        people: int,
        signed_on: date | None,
        rules: SanjieheRules,
        clauses: Mapping[str, str] | None = None,
        field: str = "agreement",
    ) -> Agreement:
        """Check a 帮扶协议 as typed against what the region's rule requires it
        to contain (``InvalidArgument`` ``INVALID_AGREEMENT``)."""
        errors = ErrorCollector()
        f = f"{field}." if field else ""
        clean_number = _text(errors, f"{f}number", number, "帮扶协议编号")
        household = _text(errors, f"{f}household", household_id, "受助家庭")
        in_kind = _text(errors, f"{f}support_in_kind", support_in_kind, "实物帮扶内容", required=False)
        duty = _text(errors, f"{f}obligations", obligations, "受助户义务", required=False)
        extra = {k: _clean(v) for k, v in (clauses or {}).items()}
        if support_money.fen < 0:
            errors.add(f"{f}support_money", "帮扶资金不能为负数")
        if expected_income_gain.fen < 0:
            errors.add(f"{f}expected_income_gain", "预期增收不能为负数")
        if people < 1:
            errors.add(f"{f}people", "受助人数须至少为 1 人")
        if signed_on is None:
            errors.add(f"{f}signed_on", "请填写协议签订日期")
        for clause in rules.agreement_clauses:
            if clause.code == "SUPPORT":
                if support_money.fen <= 0 and not in_kind:
                    errors.add(f"{f}support_money", f"协议须载明{clause.name}（帮扶资金或实物）：{clause.reason}")
            elif clause.code == "OBLIGATIONS":
                if not duty:
                    errors.add(f"{f}obligations", f"协议须载明{clause.name}：{clause.reason}")
            elif clause.code == "EXPECTED_INCOME":
                if expected_income_gain.fen <= 0:
                    errors.add(f"{f}expected_income_gain", f"协议须载明{clause.name}（大于 0 元）：{clause.reason}")
            elif clause.code == "TERM":
                if start is None or end is None:
                    errors.add(f"{f}start", f"协议须载明{clause.name}（起止日期）：{clause.reason}")
            elif not extra.get(clause.code):
                errors.add(f"{f}clauses[{clause.code}]", f"协议须载明{clause.name}：{clause.reason}")
        if start is not None and end is not None:
            if end < start:
                errors.add(f"{f}end", f"帮扶期限止日 {end.isoformat()} 早于起日 {start.isoformat()}")
            elif rules.agreement_max_months is not None and _months_between(start, end) > rules.agreement_max_months:
                errors.add(f"{f}end", f"帮扶期限超过本地区规定的最长 {rules.agreement_max_months} 个月")
        if rules.support_cap is not None and support_money > rules.support_cap:
            errors.add(
                f"{f}support_money",
                f"帮扶资金 {support_money.format_yuan()} 元超过本地区每户上限 {rules.support_cap.format_yuan()} 元",
            )
        errors.raise_if_any("帮扶协议内容不全或有误，请按字段说明修改后重试", reason="INVALID_AGREEMENT")
        assert signed_on is not None
        first = start or signed_on
        return cls(
            clean_number,
            household,
            support_money,
            in_kind,
            duty,
            expected_income_gain,
            first,
            end or first,
            people,
            signed_on,
            extra,
        )


class TrancheState(StrEnum):
    PROPOSED = "PROPOSED"  # 已提出，待审批
    APPROVED = "APPROVED"  # 已审批，由资金服务经台账与一卡通支付
    REJECTED = "REJECTED"  # 审批未通过


@dataclass(frozen=True)
class Tranche:
    """One payment of a milestone, to a household's card (``agreement_number``
    names its 帮扶协议) or to the implementing body's account."""

    id: str
    milestone: str
    payee: TranchePayee
    agreement_number: str
    amount: Money
    basis: tuple[str, ...]
    proposed_by: str
    proposed_at: datetime
    state: TrancheState = TrancheState.PROPOSED
    decided_by: str = ""
    decided_at: datetime | None = None
    comment: str = ""

    @property
    def counts(self) -> bool:
        """Proposed or approved: it takes its share of the base."""
        return self.state is not TrancheState.REJECTED


@dataclass(frozen=True)
class Progress:
    """A tracking visit: when, by whom, what was found, attachments by reference
    (file ids the service stores elsewhere), optionally one household."""

    visit_date: date
    visitor: str
    notes: str
    attachments: tuple[str, ...] = ()
    household_id: str = ""

    @classmethod
    def create(
        cls,
        *,
        visit_date: date | None,
        visitor: str,
        notes: str,
        attachments: Iterable[str] = (),
        household_id: str = "",
        field: str = "progress",
    ) -> Progress:
        errors = ErrorCollector()
        f = f"{field}." if field else ""
        who = _text(errors, f"{f}visitor", visitor, "走访人员")
        text = _text(errors, f"{f}notes", notes, "跟踪情况")
        refs = tuple(_clean(a) for a in attachments)
        for i, ref in enumerate(refs):
            if not ref:
                errors.add(f"{f}attachments[{i}]", "附件引用不能为空")
        if visit_date is None:
            errors.add(f"{f}visit_date", "请填写走访日期")
        errors.raise_if_any("跟踪记录有误，请按字段说明修改后重试", reason="INVALID_PROGRESS")
        assert visit_date is not None
        return cls(visit_date, who, text, refs, _clean(household_id))


@dataclass(frozen=True)
class Acceptance:
    """A 验收: its date ``on``, inspectors, pass or fail, findings (required on a fail)."""

    on: date
    inspectors: tuple[str, ...]
    passed: bool
    findings: str
    recorded_by: str

    @classmethod
    def create(
        cls,
        *,
        on: date | None,
        inspectors: Iterable[str],
        passed: bool,
        findings: str,
        recorded_by: str,
        field: str = "acceptance",
    ) -> Acceptance:
        errors = ErrorCollector()
        f = f"{field}." if field else ""
        names = tuple(n for n in (_clean(x) for x in inspectors) if n)
        if not names:
            errors.add(f"{f}inspectors", "请填写验收人员（至少 1 人）")
        elif len(set(names)) != len(names):
            errors.add(f"{f}inspectors", "验收人员有重复")
        text = _text(errors, f"{f}findings", findings, "验收意见", required=not passed)
        if on is None:
            errors.add(f"{f}on", "请填写验收日期")
        errors.raise_if_any("验收记录有误，请按字段说明修改后重试", reason="INVALID_ACCEPTANCE")
        assert on is not None
        return cls(on, names, passed, text, _actor(recorded_by))


@dataclass(frozen=True)
class Performance:
    """A 绩效评价 of one household (``household_id``) or the whole project: the
    facts it was scored from and the rule's result."""

    scope: Literal["HOUSEHOLD", "PROJECT"]
    household_id: str
    facts: PerformanceFacts
    result: PerformanceResult
    evaluated_by: str
    at: datetime


@dataclass(frozen=True)
class Project:
    """A 三结合 project and everything recorded about it (see the module docstring)."""

    name: str
    project_type: str
    year: int
    region: RegionCode
    implementer: Implementer
    partner: str
    budget: Money
    funds: tuple[str, ...]
    provincial_money: bool
    stage: Stage
    steps: tuple[StepRecord, ...]
    agreements: tuple[Agreement, ...] = ()
    tranches: tuple[Tranche, ...] = ()
    progress: tuple[Progress, ...] = ()
    acceptances: tuple[Acceptance, ...] = ()
    performances: tuple[Performance, ...] = ()

    # -- 申报 -------------------------------------------------------------

    @classmethod
    def declare(
        cls,
        *,
        name: str,
        project_type: str,
        year: int,
        region: RegionCode,
        implementer: Implementer,
        partner: str,
        budget: Money,
        funds: Sequence[str],
        provincial_money: bool,
        rules: SanjieheRules,
        actor: str,
        at: datetime,
        field: str = "project",
    ) -> Project:
        """申报: check the project as typed against the region's rule for its year."""
        errors = ErrorCollector()
        f = f"{field}." if field else ""
        clean_name = _text(errors, f"{f}name", name, "项目名称")
        partner_name = _text(errors, f"{f}partner", partner, "合作企业", required=implementer.kind == "COMPANY")
        kind = rules.find_type(project_type)
        if kind is None:
            names = "、".join(t.name for t in rules.project_types)
            errors.add(f"{f}type", f"项目类型“{project_type}”不在本地区三结合扶持类型中：{names}")
        if implementer.kind not in rules.implementers:
            allowed = "、".join(_IMPLEMENTER_LABELS.get(k, k) for k in rules.implementers)
            errors.add(f"{f}implementer.kind", f"本地区三结合项目的实施主体须为：{allowed}")
        _text(errors, f"{f}implementer.name", implementer.name, "实施主体名称")
        if implementer.kind == "HOUSEHOLD" and not _clean(implementer.household_id):
            errors.add(f"{f}implementer.household", "实施主体为农户时，请填写该户")
        if year != rules.year:
            errors.add(f"{f}year", f"项目年度 {year} 与所用规则的年度 {rules.year} 不一致")
        if budget.fen <= 0:
            errors.add(f"{f}budget", "项目预算须大于 0 元")
        clean_funds = tuple(dict.fromkeys(x for x in (_clean(s) for s in funds) if x))
        if not clean_funds:
            errors.add(f"{f}funds", "请至少选择一个支付该项目的资金")
        errors.raise_if_any("三结合项目信息有误，请按字段说明修改后重试", reason="INVALID_PROJECT")
        assert kind is not None
        who = _actor(actor)
        return cls(
            name=clean_name,
            project_type=kind.code,
            year=year,
            region=region,
            implementer=replace(
                implementer, name=_clean(implementer.name), household_id=_clean(implementer.household_id)
            ),
            partner=partner_name,
            budget=budget,
            funds=clean_funds,
            provincial_money=provincial_money,
            stage=Stage.DECLARED,
            steps=(StepRecord(Step.DECLARE, who, at),),
        )

    # -- who did what -----------------------------------------------------

    @property
    def declarer(self) -> str:
        return self.steps[0].actor

    def _reviewers(self) -> set[str]:
        return {s.actor for s in self.steps if s.step in (Step.COUNTY_REVIEW, Step.PROVINCE_APPROVAL)}

    def _not_declarer(self, actor: str, what: str) -> str:
        who = _actor(actor)
        if who == self.declarer:
            raise PermissionDenied(
                f"项目申报人不能{what}自己申报的项目（申报与{what}须为不同人员）", reason="MAKER_CHECKER"
            )
        return who

    def _need(self, stages: Iterable[Stage], what: str) -> None:
        allowed = tuple(stages)
        if self.stage not in allowed:
            raise FailedPrecondition(
                f"项目“{self.name}”当前为“{self.stage.label}”，不能{what}"
                f"（须为：{'、'.join(s.label for s in allowed)}）",
                reason="WRONG_STAGE",
                metadata={"stage": self.stage.value},
            )

    def _with(self, step: StepRecord, **changes: Any) -> Project:
        return replace(self, steps=(*self.steps, step), **changes)

    # -- 县审核, 省立项 ----------------------------------------------------

    def review_county(self, *, actor: str, at: datetime, approve: bool, comment: str = "") -> Project:
        """县审核: by someone other than the declarer; a refusal needs a comment."""
        self._need((Stage.DECLARED,), "县审核")
        who = self._not_declarer(actor, "审核")
        note = self._comment(approve, comment)
        stage = Stage.COUNTY_REVIEWED if approve else Stage.REJECTED
        return self._with(
            StepRecord(Step.COUNTY_REVIEW, who, at, "APPROVE" if approve else "REJECT", note), stage=stage
        )

    def approve_province(self, *, actor: str, at: datetime, approve: bool, comment: str = "") -> Project:
        """省立项 (provincial money only): by someone who neither declared nor reviewed it at the county."""
        if not self.provincial_money:
            raise FailedPrecondition(
                f"项目“{self.name}”不使用省级资金，县审核通过即可签订帮扶协议，无需省立项", reason="NO_PROVINCE_STEP"
            )
        self._need((Stage.COUNTY_REVIEWED,), "省立项")
        who = self._not_declarer(actor, "审批")
        if who in self._reviewers():
            raise PermissionDenied("同一人员不能在县审核和省立项两个层级审批同一项目", reason="SAME_REVIEWER")
        note = self._comment(approve, comment)
        stage = Stage.PROVINCE_APPROVED if approve else Stage.REJECTED
        return self._with(
            StepRecord(Step.PROVINCE_APPROVAL, who, at, "APPROVE" if approve else "REJECT", note), stage=stage
        )

    @staticmethod
    def _comment(approve: bool, comment: str) -> str:
        note = _clean(comment)
        if not approve and not note:
            raise InvalidArgument.field("comment", "不同意时请填写审核意见，说明理由", reason="MISSING_COMMENT")
        return note[:_MAX_TEXT]

    @property
    def approved_stage(self) -> Stage:
        """The stage after which agreements may be signed."""
        return Stage.PROVINCE_APPROVED if self.provincial_money else Stage.COUNTY_REVIEWED

    # -- 签协议 -------------------------------------------------------------

    def sign_agreement(self, agreement: Agreement, *, actor: str, at: datetime) -> Project:
        """签协议: once the project is approved; one agreement per household, unique
        numbers, the agreements' money support within the budget."""
        self._need((self.approved_stage, *_UNDER_WAY), "签订帮扶协议")
        who = _actor(actor)
        if any(a.number == agreement.number for a in self.agreements):
            raise FailedPrecondition(f"帮扶协议编号 {agreement.number} 已存在", reason="AGREEMENT_EXISTS")
        if any(a.household_id == agreement.household_id for a in self.agreements):
            raise FailedPrecondition(
                f"该户（{agreement.household_id}）已签订本项目的帮扶协议，每户一份", reason="AGREEMENT_EXISTS"
            )
        total = sum((a.support_money for a in self.agreements), agreement.support_money)
        if total > self.budget:
            raise FailedPrecondition(
                f"各帮扶协议的帮扶资金合计 {total.format_yuan()} 元将超过项目预算 {self.budget.format_yuan()} 元",
                reason="OVER_BUDGET",
            )
        stage = Stage.AGREEMENTS_SIGNED if self.stage is self.approved_stage else self.stage
        step = StepRecord(Step.SIGN_AGREEMENT, who, at, ref=agreement.number)
        return self._with(step, stage=stage, agreements=(*self.agreements, agreement))

    def agreement(self, number: str) -> Agreement:
        found = next((a for a in self.agreements if a.number == number), None)
        if found is None:
            raise NotFound(f"项目“{self.name}”没有编号为 {number} 的帮扶协议", reason="AGREEMENT_NOT_FOUND")
        return found

    # -- 拨付 -------------------------------------------------------------

    @property
    def acceptance_state(self) -> AcceptanceState:
        """The latest 验收: NONE, PASSED or FAILED."""
        if not self.acceptances:
            return "NONE"
        return "PASSED" if self.acceptances[-1].passed else "FAILED"

    def _base(self, payee: TranchePayee, agreement_number: str) -> tuple[Money, bool, tuple[Tranche, ...]]:
        if payee == "HOUSEHOLD":
            signed = next((a for a in self.agreements if a.number == agreement_number), None)
            base = signed.support_money if signed else Money(0)
            on_base = tuple(
                t for t in self.tranches if t.payee == "HOUSEHOLD" and t.agreement_number == agreement_number
            )
            return base, signed is not None, on_base
        households = sum((a.support_money for a in self.agreements), Money(0))
        on_base = tuple(t for t in self.tranches if t.payee == "IMPLEMENTER")
        return max(self.budget - households, Money(0)), bool(self.agreements), on_base

    def tranche_request(self, milestone: str, payee: TranchePayee, agreement_number: str = "") -> TrancheRequest:
        """What ``jsx_sanjiehe_tranche`` decides a tranche from. The base is the
        agreement's money support (household) or the budget less every
        agreement's money support (implementing body)."""
        base, signed, on_base = self._base(payee, agreement_number)
        counted = [t for t in on_base if t.counts]
        return TrancheRequest(
            year=self.year,
            project_type=self.project_type,
            milestone=milestone,
            payee=payee,
            base=base,
            agreement_signed=signed,
            paid_milestones=tuple(dict.fromkeys(t.milestone for t in counted)),
            paid_so_far=sum((t.amount for t in counted), Money(0)),
            progress_records=len(self.progress),
            acceptance=self.acceptance_state,
        )

    def check_may_pay(self, payee: TranchePayee, agreement_number: str = "") -> None:
        """Refuse a tranche the project's state forbids, whatever the rule says:
        before a signed 帮扶协议 (``AGREEMENT_NOT_SIGNED``), while the latest 验收
        failed (``ACCEPTANCE_FAILED``), after the 绩效评价 (``WRONG_STAGE``)."""
        if self.stage in (Stage.DECLARED, Stage.COUNTY_REVIEWED, Stage.PROVINCE_APPROVED, Stage.REJECTED) or (
            not self.agreements
        ):
            raise FailedPrecondition(
                f"项目“{self.name}”尚未签订帮扶协议，不能拨付资金（须先签协议后拨款）", reason="AGREEMENT_NOT_SIGNED"
            )
        if payee == "HOUSEHOLD" and not any(a.number == agreement_number for a in self.agreements):
            raise FailedPrecondition(
                f"帮扶协议 {agreement_number or '（未填写）'} 尚未签订，不能向该户拨付（须先签协议后拨款）",
                reason="AGREEMENT_NOT_SIGNED",
            )
        if self.acceptance_state == "FAILED":
            last = self.acceptances[-1]
            raise FailedPrecondition(
                f"项目“{self.name}”{last.on.isoformat()} 验收不合格（{last.findings}），须整改后复验合格才能继续拨付",
                reason="ACCEPTANCE_FAILED",
            )
        if self.stage is Stage.EVALUATED:
            raise FailedPrecondition(f"项目“{self.name}”已完成绩效评价，不能再拨付", reason="WRONG_STAGE")

    def propose_tranche(
        self,
        *,
        tranche_id: str,
        milestone: str,
        payee: TranchePayee,
        agreement_number: str = "",
        decision: TrancheDecision,
        typed_amount: Money | None = None,
        actor: str,
        at: datetime,
    ) -> Project:
        """提出拨付: ``decision`` is ``jsx_sanjiehe_tranche``'s answer for
        :meth:`tranche_request`; refused when it does not allow the tranche, when
        a typed amount differs from its amount, or when a proposal for the same
        milestone and base is still pending."""
        self.check_may_pay(payee, agreement_number)
        who = _actor(actor)
        if any(t.id == tranche_id for t in self.tranches):
            raise FailedPrecondition(f"拨付记录 {tranche_id} 已存在", reason="TRANCHE_EXISTS")
        _, _, on_base = self._base(payee, agreement_number)
        if any(t.milestone == milestone and t.state is TrancheState.PROPOSED for t in on_base):
            raise FailedPrecondition("该节点已有待审批的拨付，请先审批", reason="TRANCHE_PENDING")
        if not decision.allowed:
            raise FailedPrecondition("不能拨付：" + "；".join(decision.reasons), reason="TRANCHE_NOT_ALLOWED")
        if typed_amount is not None and typed_amount != decision.amount:
            raise InvalidArgument.field(
                "tranche.amount",
                f"填写的拨付金额 {typed_amount.format_yuan()} 元与按规则核定的 {decision.amount.format_yuan()} 元不一致，"
                "拨付金额按规则计算、不能手填。核定依据：" + "；".join(decision.basis),
                reason="AMOUNT_MISMATCH",
            )
        tranche = Tranche(tranche_id, milestone, payee, agreement_number, decision.amount, decision.basis, who, at)
        stage = Stage.DISBURSING if self.stage is Stage.AGREEMENTS_SIGNED else self.stage
        step = StepRecord(Step.PROPOSE_TRANCHE, who, at, ref=tranche_id)
        return self._with(step, stage=stage, tranches=(*self.tranches, tranche))

    def decide_tranche(self, tranche_id: str, *, actor: str, at: datetime, approve: bool, comment: str = "") -> Project:
        """审批拨付: by someone other than who proposed it; still refused while the
        latest 验收 failed."""
        tranche = next((t for t in self.tranches if t.id == tranche_id), None)
        if tranche is None:
            raise NotFound(f"项目“{self.name}”没有拨付记录 {tranche_id}", reason="TRANCHE_NOT_FOUND")
        if tranche.state is not TrancheState.PROPOSED:
            raise FailedPrecondition(f"拨付记录 {tranche_id} 已审批，不能重复审批", reason="TRANCHE_DECIDED")
        who = _actor(actor)
        if who == tranche.proposed_by:
            raise PermissionDenied(
                "提出拨付的人员不能审批自己提出的拨付（提出与审批须为不同人员）", reason="MAKER_CHECKER"
            )
        note = self._comment(approve, comment)
        if approve:
            self.check_may_pay(tranche.payee, tranche.agreement_number)
        state = TrancheState.APPROVED if approve else TrancheState.REJECTED
        decided = replace(tranche, state=state, decided_by=who, decided_at=at, comment=note)
        tranches = tuple(decided if t.id == tranche_id else t for t in self.tranches)
        step = StepRecord(Step.DECIDE_TRANCHE, who, at, "APPROVE" if approve else "REJECT", note, tranche_id)
        return self._with(step, tranches=tranches)

    # -- 跟踪, 验收 ---------------------------------------------------------

    def record_progress(self, progress: Progress, *, actor: str, at: datetime) -> Project:
        """跟踪: once agreements are signed (also while a failed 验收 is being put right)."""
        self._need((*_UNDER_WAY, Stage.ACCEPTANCE_FAILED), "记录跟踪情况")
        who = _actor(actor)
        if progress.household_id and not any(a.household_id == progress.household_id for a in self.agreements):
            raise FailedPrecondition(
                f"该户（{progress.household_id}）没有签订本项目的帮扶协议", reason="AGREEMENT_NOT_SIGNED"
            )
        stage = Stage.TRACKING if self.stage in (Stage.AGREEMENTS_SIGNED, Stage.DISBURSING) else self.stage
        return self._with(StepRecord(Step.RECORD_PROGRESS, who, at), stage=stage, progress=(*self.progress, progress))

    def record_acceptance(self, acceptance: Acceptance, *, at: datetime) -> Project:
        """验收 (or a re-inspection after a failed one): after tracking; the
        declarer neither inspects nor records it."""
        self._need((Stage.DISBURSING, Stage.TRACKING, Stage.ACCEPTANCE_FAILED), "验收")
        if not self.progress:
            raise FailedPrecondition(f"项目“{self.name}”还没有跟踪记录，请先跟踪再验收", reason="NO_PROGRESS")
        who = self._not_declarer(acceptance.recorded_by, "验收")
        if self.declarer in acceptance.inspectors:
            raise PermissionDenied("项目申报人不能担任本项目的验收人员", reason="MAKER_CHECKER")
        stage = Stage.ACCEPTED if acceptance.passed else Stage.ACCEPTANCE_FAILED
        outcome = "PASS" if acceptance.passed else "FAIL"
        step = StepRecord(Step.RECORD_ACCEPTANCE, who, at, outcome, acceptance.findings)
        return self._with(step, stage=stage, acceptances=(*self.acceptances, acceptance))

    # -- 绩效 -------------------------------------------------------------

    def performance_facts(
        self,
        *,
        scope: Literal["HOUSEHOLD", "PROJECT"],
        income_gain_measured: Money,
        household_id: str = "",
        households_helped: int | None = None,
        people_helped: int | None = None,
    ) -> PerformanceFacts:
        """What ``jsx_sanjiehe_performance`` scores: planned figures from the
        agreements (one household's, or all), helped figures as measured
        (by default: as planned)."""
        if scope == "HOUSEHOLD":
            mine = [a for a in self.agreements if a.household_id == household_id]
            if not mine:
                raise FailedPrecondition(
                    f"该户（{household_id}）没有签订本项目的帮扶协议", reason="AGREEMENT_NOT_SIGNED"
                )
        else:
            mine = list(self.agreements)
        planned_households, planned_people = len(mine), sum(a.people for a in mine)
        helped = planned_households if households_helped is None else households_helped
        people = planned_people if people_helped is None else people_helped
        if helped < 0 or people < 0 or helped > planned_households or people < helped:
            raise InvalidArgument.field(
                "performance.households_helped",
                f"帮扶户数、受益人数须为非负数，户数不超过签订协议的 {planned_households} 户，人数不少于户数",
                reason="INVALID_PERFORMANCE",
            )
        return PerformanceFacts(
            year=self.year,
            scope=scope,
            project_type=self.project_type,
            households_planned=planned_households,
            households_helped=helped,
            people_planned=planned_people,
            people_helped=people,
            income_gain_expected=sum((a.expected_income_gain for a in mine), Money(0)),
            income_gain_measured=income_gain_measured,
        )

    def evaluate(
        self, facts: PerformanceFacts, result: PerformanceResult, *, household_id: str = "", actor: str, at: datetime
    ) -> Project:
        """绩效评价 (the rule's ``result`` for ``facts``): after a passed 验收, by
        someone other than the declarer; once per household and once for the project."""
        self._need((Stage.ACCEPTED, Stage.EVALUATED), "绩效评价")
        who = self._not_declarer(actor, "评价")
        if facts.scope == "PROJECT" and any(p.scope == "PROJECT" for p in self.performances):
            raise FailedPrecondition(f"项目“{self.name}”已完成项目绩效评价", reason="ALREADY_EVALUATED")
        if facts.scope == "HOUSEHOLD":
            if any(p.scope == "HOUSEHOLD" and p.household_id == household_id for p in self.performances):
                raise FailedPrecondition(f"该户（{household_id}）已完成绩效评价", reason="ALREADY_EVALUATED")
            if not any(a.household_id == household_id for a in self.agreements):
                raise FailedPrecondition(
                    f"该户（{household_id}）没有签订本项目的帮扶协议", reason="AGREEMENT_NOT_SIGNED"
                )
        performance = Performance(
            facts.scope, household_id if facts.scope == "HOUSEHOLD" else "", facts, result, who, at
        )
        stage = Stage.EVALUATED if facts.scope == "PROJECT" else self.stage
        step = StepRecord(Step.EVALUATE, who, at, result.grade, ref=household_id)
        return self._with(step, stage=stage, performances=(*self.performances, performance))

    # -- figures ------------------------------------------------------------

    @property
    def paid(self) -> Money:
        """Money in approved tranches."""
        return sum((t.amount for t in self.tranches if t.state is TrancheState.APPROVED), Money(0))


@dataclass(frozen=True)
class ProjectsSummary:
    """Projects, money and families over a set of projects, in the seeds' own form."""

    projects: int
    amount: Money
    households: int
    people: int

    def sentence(self, lead: str = "先后承接实施") -> str:
        """``"先后承接实施项目 45 个，资金总额 614.9 万元，惠及计生家庭 1515 户 4269 人"``."""
        wan = (Decimal(self.amount.fen) / Decimal(1_000_000)).quantize(Decimal("0.01"))
        text = f"{wan:f}".rstrip("0").rstrip(".")
        return (
            f"{lead}项目 {self.projects} 个，资金总额 {text} 万元，惠及计生家庭 {self.households} 户 {self.people} 人"
        )


def summarize(projects: Iterable[Project]) -> ProjectsSummary:
    """Approved projects (past 县审核/省立项, not rejected): their budgets, the
    distinct households with an agreement and the people those agreements help."""
    count, amount, people = 0, Money(0), 0
    households: set[str] = set()
    for p in projects:
        if p.stage in (Stage.DECLARED, Stage.REJECTED) or (p.provincial_money and p.stage is Stage.COUNTY_REVIEWED):
            continue
        count += 1
        amount += p.budget
        for a in p.agreements:
            if a.household_id not in households:
                households.add(a.household_id)
                people += a.people
    return ProjectsSummary(count, amount, len(households), people)
