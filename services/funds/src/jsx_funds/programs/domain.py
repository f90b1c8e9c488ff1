"""Programs domain: the review chain and maker-checker, 公示 days, the effective
state of an application, withdrawal, and the vocabulary the rule plugins see.

Pure Python (no I/O, no SQLAlchemy, no protobuf). The service layer loads
rows, asks this module what a decision means, and writes what it answers.

* Review chain: an application is reviewed level by level (村 → 乡镇 → 县
  (→ 市 → 省)), each step by a caller whose region is exactly the household's
  ancestor at that level (:func:`level_region`).
* Maker-checker (:func:`check_reviewer`): the clerk who submitted an
  application can never decide it, and a reviewer who decided one step
  cannot decide another.
* 公示 (:func:`publicity_end`) starts at the last approval and lasts the
  rule's days from the next day (China time); working days skip Saturday and
  Sunday (public holidays are not known to the service). It ends by time: an
  application IN_PUBLICITY whose end has passed reads as READY_TO_PAY
  (:func:`effective_state`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from jsxcore import hookspecs as hs
from jsxcore.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied
from jsxcore.values import Money, Period, RegionCode

#: China Standard Time: the day a clerk means by a date.
CST = timezone(timedelta(hours=8))

#: Wire program type → the rule vocabulary plugins see (jsxcore.hookspecs.ProgramType).
RULE_TYPE = {
    "SANJIEHE": hs.ProgramType.SANJIEHE.value,
    "LOAN_INTEREST_SUBSIDY": hs.ProgramType.LOAN_INTEREST.value,
    "HAPPINESS_FUND": "HAPPINESS_FUND",
    "SPECIAL_SUPPORT": hs.ProgramType.SPECIAL_SUPPORT.value,
    "HOSPITAL_CARE": hs.ProgramType.NURSING_SUBSIDY.value,
    "HEALTH_INSURANCE": hs.ProgramType.HEALTH_INSURANCE.value,
    "BIRTH_CARE": hs.ProgramType.BIRTH_CARE.value,
    "AUTUMN_SCHOLARSHIP": hs.ProgramType.GOLDEN_AUTUMN.value,
    "WARM_ACTION": hs.ProgramType.WARM_HEART.value,
}
#: Programs paid to a person's own card unless the program says otherwise.
PER_PERSON = frozenset({"SPECIAL_SUPPORT", "HEALTH_INSURANCE", "HOSPITAL_CARE", "AUTUMN_SCHOLARSHIP"})
#: Review levels from the bottom up: VILLAGE, TOWNSHIP, COUNTY, CITY, PROVINCE.
LEVELS: tuple[str, ...] = tuple(hs.APPROVAL_LEVELS)
LEVEL_LABEL = {"VILLAGE": "村", "TOWNSHIP": "乡镇", "COUNTY": "县", "CITY": "市", "PROVINCE": "省"}
_DIGITS = {"VILLAGE": 12, "TOWNSHIP": 9, "COUNTY": 6, "CITY": 4, "PROVINCE": 2}
#: Which situation the rules see when a household has several in force (special families first).
SITUATION_ORDER = ("SPECIAL_BEREAVED", "SPECIAL_DISABLED", "ONLY_CHILD", "TWO_DAUGHTERS")
#: States whose entitled amount counts against the program's budget.
COMMITTED_STATES = ("APPROVED", "IN_PUBLICITY", "OBJECTED", "READY_TO_PAY", "PAYMENT_ISSUED", "PAID", "PAYMENT_FAILED")
#: Effective states an application may be withdrawn from (撤回), as long as no payment names it.
WITHDRAWABLE = ("SUBMITTED", "IN_REVIEW", "APPROVED", "IN_PUBLICITY", "OBJECTED", "READY_TO_PAY")
#: States that end an application without payment: not a claim, not committed budget, never paid.
CLOSED_UNPAID = ("REJECTED", "WITHDRAWN")
#: Stored states of an application whose approval stands and whose 公示 is over (when IN_PUBLICITY, only
#: once its end has passed) or that has been paid for: the applications a payment batch may select from.
IN_FORCE_STATES = ("IN_PUBLICITY", "PAYMENT_ISSUED", "PAID", "PAYMENT_FAILED")
#: States a decision step may be taken in.
IN_REVIEW = ("SUBMITTED", "IN_REVIEW")

STATE_LABEL = {
    "SUBMITTED": "已申请",
    "IN_REVIEW": "审核中",
    "APPROVED": "已审批",
    "IN_PUBLICITY": "公示中",
    "OBJECTED": "有异议",
    "READY_TO_PAY": "待支付",
    "PAYMENT_ISSUED": "支付中",
    "PAID": "已支付",
    "PAYMENT_FAILED": "支付失败",
    "REJECTED": "未通过",
    "WITHDRAWN": "已撤回",
}
PROGRAM_LABEL = {
    "SANJIEHE": "三结合",
    "LOAN_INTEREST_SUBSIDY": "贷款贴息",
    "HAPPINESS_FUND": "幸福基金支出",
    "SPECIAL_SUPPORT": "特别扶助",
    "HOSPITAL_CARE": "住院护理补贴",
    "HEALTH_INSURANCE": "健康保险",
    "BIRTH_CARE": "生育关怀",
    "AUTUMN_SCHOLARSHIP": "金秋助学",
    "WARM_ACTION": "暖心行动",
    "CUSTOM": "自定义",
}


def rule_type(program_type: str, custom_type: str) -> str:
    """The program type as the rule plugins know it (a CUSTOM program: the plugin-defined type)."""
    return RULE_TYPE.get(program_type, custom_type)


def default_beneficiary(program_type: str) -> str:
    """PERSON (paid to the person's own card) or HOUSEHOLD (to the 户主's), by program type."""
    return "PERSON" if program_type in PER_PERSON else "HOUSEHOLD"


def situation_seen(kinds: Iterable[str]) -> str:
    """The situation the rules see among those in force: special families first, else OTHER."""
    have = set(kinds)
    return next((k for k in SITUATION_ORDER if k in have), hs.Situation.OTHER.value)


# ---------------------------------------------------------------- review chain


def check_levels(levels: Sequence[str]) -> bool:
    """A program's fixed review levels: known, bottom up, none twice."""
    if any(x not in LEVELS for x in levels):
        return False
    order = [LEVELS.index(x) for x in levels]
    return order == sorted(set(order))


def level_region(village: str, level: str) -> RegionCode:
    """The region that reviews ``level`` for a household in ``village`` (its ancestor at that level)."""
    return RegionCode(village[: _DIGITS[level]].ljust(12, "0"))


def next_level(chain: Sequence[str], steps_taken: int) -> str:
    """The level whose decision is due after ``steps_taken`` steps."""
    return chain[steps_taken]


def check_reviewer(
    *,
    reviewer: str,
    reviewer_region: RegionCode,
    submitted_by: str,
    decided_by: Iterable[str],
    village: str,
    level: str,
) -> RegionCode:
    """Maker-checker and the step's level: may ``reviewer`` decide the ``level`` step of an application?

    Returns the region of the step. Raises PermissionDenied ``MAKER_CHECKER`` (the submitter), ``SAME_REVIEWER``
    (decided another step already) or ``WRONG_APPROVAL_LEVEL`` (not exactly that level above the household).
    """
    if submitted_by == reviewer:
        raise PermissionDenied("申请录入人不能审核自己录入的申请（审核与录入须为不同人员）", reason="MAKER_CHECKER")
    if reviewer in set(decided_by):
        raise PermissionDenied("同一人员不能审核同一申请的两个层级", reason="SAME_REVIEWER")
    want = level_region(village, level)
    if reviewer_region != want:
        raise PermissionDenied(
            f"该申请待{LEVEL_LABEL[level]}级审核（{want.short}），您的账号属于 {reviewer_region.short}，不能办理",
            reason="WRONG_APPROVAL_LEVEL",
            metadata={"level": level, "region": want.code},
        )
    return want


def check_in_review(state: str) -> None:
    if state not in IN_REVIEW:
        raise FailedPrecondition(
            f"该申请当前状态为“{STATE_LABEL.get(state, state)}”，不在审核中", reason="NOT_IN_REVIEW"
        )


def after_decision(decision: str, steps_taken: int, chain: Sequence[str]) -> str:
    """The application's state once a step is decided: REJECTED, IN_REVIEW (more levels to go) or
    IN_PUBLICITY (the last approval: 公示 starts)."""
    if decision == "REJECT":
        return "REJECTED"
    return "IN_REVIEW" if steps_taken + 1 < len(chain) else "IN_PUBLICITY"


def check_budget(budget: int, used: int, amount: int) -> None:
    """The last approval fits the program's budget (0 = not capped): Σ committed + this ≤ budget."""
    if budget > 0 and used + amount > budget:
        raise FailedPrecondition(
            f"项目预算不足：预算 {yuan(budget)} 元，已批准 {yuan(used)} 元，本申请 {yuan(amount)} 元",
            reason="BUDGET_EXCEEDED",
        )


# ---------------------------------------------------------------- 公示


def publicity_end(start: datetime, days: int, working_days: bool) -> datetime:
    """公示 runs ``days`` full days from the next day (China time); working days skip Saturday and Sunday."""
    day = start.astimezone(CST).date()
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if not working_days or day.weekday() < 5:
            counted += 1
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), CST).astimezone(UTC)


def effective_state(state: str, publicity_end: datetime | None, now: datetime) -> str:
    """The state an application reads as: IN_PUBLICITY whose 公示 is over reads as READY_TO_PAY."""
    if state == "IN_PUBLICITY" and publicity_end is not None and publicity_end <= now:
        return "READY_TO_PAY"
    return state


def check_objection_open(state: str, publicity_end: datetime | None, now: datetime) -> None:
    """An objection may be lodged only while 公示 runs."""
    if effective_state(state, publicity_end, now) not in ("IN_PUBLICITY", "OBJECTED") or (
        publicity_end is not None and publicity_end <= now
    ):
        raise FailedPrecondition("该申请不在公示期内，不能提出异议", reason="NOT_IN_PUBLICITY")


def after_objection_resolved(state: str, upheld: bool, others_open: int) -> str:
    """Upheld → REJECTED; dismissed with no other open objection → back to 公示 (it reads as READY_TO_PAY
    once over). Only an application stopped by objections goes back: one already rejected stays rejected."""
    if upheld:
        return "REJECTED"
    if not others_open and state == "OBJECTED":
        return "IN_PUBLICITY"
    return state


# ---------------------------------------------------------------- withdrawal


def not_withdrawable(application_id: int, state: str, withdrawn_at: datetime | None) -> FailedPrecondition:
    """Why an application in ``state`` cannot be withdrawn, in words a clerk can act on."""
    label = STATE_LABEL.get(state, state)
    if state == "WITHDRAWN":
        when = f"已于 {withdrawn_at.astimezone(CST):%Y-%m-%d %H:%M} 撤回" if withdrawn_at else "已撤回"
        why = f"{when}，无需再次撤回"
    elif state == "REJECTED":
        why = "审核未通过（或异议成立），申请已终止，无需撤回"
    elif state == "PAYMENT_FAILED":
        why = "已发放过款项（银行支付失败），支付记录须保留对账，不能撤回；如不再补发，请与财务人员联系"
    else:  # PAYMENT_ISSUED, PAID
        why = "款项已发放，不能撤回；如需收回资金，请与财务人员联系办理退款"
    return FailedPrecondition(
        f"申请 applications/{application_id} 当前状态为“{label}”：{why}",
        reason="NOT_WITHDRAWABLE",
        metadata={"state": state},
    )


def paid_not_withdrawable(state: str, payment: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"该申请（当前状态“{STATE_LABEL.get(state, state)}”）已有支付记录 {payment}，款项已进入发放流程，"
        f"不能撤回；请与财务人员核对该笔支付",
        reason="NOT_WITHDRAWABLE",
        metadata={"state": state, "payment": payment},
    )


def check_withdraw_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise InvalidArgument.field(
            "reason", "请填写撤回原因，例如“申请人自愿放弃”“已享受其他同类补助”", reason="MISSING_REASON"
        )
    if len(reason) > 1000:
        raise InvalidArgument.field(
            "reason", f"撤回原因不能超过 1000 个字（现为 {len(reason)} 个字），请精简", reason="REASON_TOO_LONG"
        )
    return reason


def duplicate(existing: int | None) -> AlreadyExists:
    where = f"（applications/{existing}）" if existing else ""
    return AlreadyExists(f"该受益人本期已申请过此项目{where}，不能重复申请", reason="APPLICATION_EXISTS")


# ---------------------------------------------------------------- application details

#: Application.details kind → the program type (wire name without prefix) it belongs to.
DETAILS_FOR = {
    "loan_interest": "LOAN_INTEREST_SUBSIDY",
    "hospital_care": "HOSPITAL_CARE",
    "sanjiehe": "SANJIEHE",
    "happiness_fund": "HAPPINESS_FUND",
}
#: Program type → the details its applications must carry; every other type takes none.
DETAILS_REQUIRED = {program: kind for kind, program in DETAILS_FOR.items()}
DETAILS_LABEL = {
    "loan_interest": "贷款明细（loan_interest）",
    "hospital_care": "住院明细（hospital_care）",
    "sanjiehe": "三结合项目明细（sanjiehe）",
    "happiness_fund": "幸福基金支出明细（happiness_fund）",
}
#: HappinessUse (without prefix) → its Chinese name, the vocabulary ``jsx_fund_allowed_uses`` answers in.
HAPPINESS_USES = {
    "RESPECT_ELDERLY": "尊老爱幼",
    "BIRTH_CARE": "生育关怀",
    "CULTURE_SPORTS": "文体公益",
    "SCHOLARSHIP": "奖学助学",
    "POVERTY_RELIEF": "扶贫帮困",
    "VILLAGER_CONDOLENCE": "村民慰问",
}
#: Attribute keys under these prefixes are filled from the details (hookspecs.Beneficiary lists them):
#: a clerk cannot set them, so a rule reading ``hospital.days`` reads the checked figure.
RESERVED_ATTRIBUTE_PREFIXES = ("loan.", "hospital.", "sanjiehe.", "happiness.")
#: Details kinds that are health information (DESIGN.md §3.7): stored sealed by the PII cipher.
SEALED_DETAILS = frozenset({"hospital_care"})


def hospital_days(admission: date, discharge: date) -> int:
    """住院天数, counted 算入不算出: discharge − admission; admitted and discharged the same day is 1 day."""
    return max((discharge - admission).days, 1)


def check_details_kind(kind: str | None, program_type: str) -> None:
    """The details must be the program's kind: 贷款贴息 needs loan_interest, 住院护理补贴 hospital_care,
    三结合 sanjiehe, 幸福基金支出 happiness_fund; every other program takes none."""
    want = DETAILS_REQUIRED.get(program_type)
    if kind == want:
        return
    label = PROGRAM_LABEL.get(program_type, program_type)
    if kind is None:
        assert want is not None
        raise InvalidArgument.field(
            f"application.{want}", f"{label}项目的申请须填写{DETAILS_LABEL[want]}", reason="MISSING_DETAILS"
        )
    own = f"{DETAILS_LABEL[kind]}只用于{PROGRAM_LABEL[DETAILS_FOR[kind]]}项目，本项目为{label}项目"
    fix = f"，请改填{DETAILS_LABEL[want]}" if want else "，不需要填写明细，请删除"
    raise InvalidArgument.field(f"application.{kind}", own + fix, reason="DETAILS_MISMATCH")


def details_attributes(details: Mapping[str, Any] | None) -> dict[str, str]:
    """The details flattened for the rules (``hs.Beneficiary.attributes``); every key of the kind is
    present (empty text when not given). The keys are a contract with county plugins:
    see ``jsxcore.hookspecs.Beneficiary``."""
    if not details:
        return {}
    kind = details["kind"]
    if kind == "loan_interest":
        return {
            "loan.lender": details["lender"],
            "loan.principal_fen": str(details["principal_fen"]),
            "loan.annual_rate_bp": str(details["annual_rate_bp"]),
            "loan.interest_paid_fen": str(details["interest_paid_fen"]),
            "loan.start": details["loan_start"],
            "loan.end": details["loan_end"],
            "loan.purpose": details["purpose"],
        }
    if kind == "hospital_care":
        return {
            "hospital.name": details["hospital"],
            "hospital.admission": details["admission"],
            "hospital.discharge": details["discharge"],
            "hospital.days": str(details["days"]),
        }
    if kind == "sanjiehe":
        return {
            "sanjiehe.project": details["project"],
            "sanjiehe.agreement_number": details["agreement_number"],
            "sanjiehe.industry": details["industry"],
            "sanjiehe.partner": details["partner"],
            "sanjiehe.income_gained_fen": str(details["income_gained_fen"]),
        }
    return {
        "happiness.use": HAPPINESS_USES[details["use"]],
        "happiness.use_code": details["use"],
        "happiness.resolution_number": details["resolution_number"],
    }


def yuan(fen: int) -> str:
    return Money(fen).format_yuan()


# ---------------------------------------------------------------- use-case inputs


@dataclass(frozen=True)
class NewProgram:
    """A help program to create (its fund's region must contain its own)."""

    name: str
    type: str  # jsx.funds.v1.ProgramType without its prefix
    region: RegionCode
    fund_id: int
    year: int
    beneficiary: str  # PERSON or HOUSEHOLD
    custom_type: str = ""
    #: Review levels fixed by the program, bottom up; empty: the region plugin's chain.
    approval_levels: tuple[str, ...] = ()
    #: 公示 days fixed by the program; 0: the region plugin's rule.
    publicity_days: int = 0
    budget: int = 0  # 分; 0 = not capped
    start_date: date | None = None
    end_date: date | None = None
    description: str = ""


@dataclass(frozen=True)
class NewApplication:
    """An application as submitted: who, for which program and period, and what the clerk gave the rules."""

    program_id: int
    household_id: str  # without ``households/``
    period: Period
    person: str = ""  # ``persons/…`` for per-person programs
    village: RegionCode | None = None  # as the clerk gave it: must be the household's
    amount_requested: int = 0  # 分
    attributes: Mapping[str, str] = field(default_factory=dict)
    #: the checked details (``programs.details.parse_details``), and their kind as given (None: none)
    details: Mapping[str, Any] | None = None
    details_kind: str | None = None
    birth_date: date | None = None

    @property
    def household(self) -> str:
        return f"households/{self.household_id}"


def check_person_in_household(person: str, members_household: str | None, household: str) -> None:
    """``application.person`` must belong to the household applied for, as members records it
    (``members_household``: the person's household there; None: members does not know the person)."""
    if members_household == household:
        return
    if members_household is None:
        why = f"成员系统中没有人员 {person}"
    elif not members_household:
        why = f"人员 {person} 在成员系统中不属于任何家庭"
    else:
        why = f"人员 {person} 在成员系统中属于 {members_household}"
    raise InvalidArgument.field(
        "application.person",
        f"{why}，不是所申请家庭 {household} 的成员，请核对申请对象或先在成员系统调整家庭成员",
        reason="PERSON_NOT_IN_HOUSEHOLD",
    )
