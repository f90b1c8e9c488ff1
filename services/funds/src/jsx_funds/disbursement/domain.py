"""Disbursement's business decisions, each written once (pure: no I/O, no SQLAlchemy, no protobuf).

A payment batch pays a program's beneficiaries for a period, once each. Two
planners carry it out (:mod:`jsx_funds.disbursement.planner`): PostgreSQL's
set-based statements and SQLite's keyset pages. They decide nothing of their
own — whatever they compute, they compute by the definitions here, and where
PostgreSQL must compute one in SQL (the 周岁 age, the declared rule input, the
payment key) its SQL is built from these definitions and a test proves the two
equal (``tests/test_disbursement_domain.py``, ``tests/test_planners_equal.py``).

**Who is a candidate.** An application the programs context holds in force
(approved through 公示, or paid for before) in the batch's region:

* periodic programs (:data:`PERIODIC`, 特别扶助 monthly): one in an
  :data:`ENROLLED` state, enrolled from a period starting on or before this
  one (:func:`enrolled_by`);
* other programs: one in a :data:`PAYABLE` state for exactly this period,
  at its entitled amount (:func:`entitled_rule`).

A beneficiary with several candidate applications in the program is paid by
the lowest-numbered one (:func:`first_per_beneficiary`); a beneficiary whose
payment for the period stands is not a candidate; one whose every attempt
failed at the bank is paid again as the next attempt (:func:`next_attempt`).

**What the rules read.** A periodic program's rules are asked by
:class:`RuleInput`: the village, the household's situation on the period's
first day (:func:`situation_of`: special families first), the unit, and the
attributes as far as the region's plugins declare they read them
(:func:`declared_input`: the named attributes, the birth date as a date, as
the 周岁 on the period's first day (:func:`age_text`), or not at all). Two
beneficiaries with equal inputs get the same answer, so a batch asks once per
distinct input (:class:`RuleKey`).

**The amount** is the rules' answer (:func:`rule_paid`, :func:`rule_refused`)
or, for other programs, the approved amount (:func:`entitled_rule`), with its
basis; a batch lists each distinct basis once (:class:`Bases`).

**After a death** (members' ``PersonDied``, projected by funds) a periodic
program pays the person up to the month the region's rule gives
(``jsx_support_end``); a period starting after it is not paid
(:func:`after_support_end`), and the application is listed as skipped with
why (:func:`death_stop`). With no rule for the region the person is not paid
either (a death is known; paying on would be the defect issue 13 reports).

**Payment keys**: ``{program}/{beneficiary}/{period}`` (:func:`payment_key`),
UNIQUE in ``payments``; the n-th attempt after bank failures stores
``key#n`` (:func:`attempt_key`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Literal

from jsx_funds.programs.domain import SITUATION_ORDER as SITUATION_ORDER  # re-exported: dd.SITUATION_ORDER
from jsxcore import hookspecs as hs
from jsxcore.errors import ErrorCollector, FailedPrecondition
from jsxcore.hookspecs import BirthDateUse, RuleInputs
from jsxcore.values import Money, Period, PeriodKind, RegionCode

# ---------------------------------------------------------------- who is a candidate

#: Programs paid every period to enrolled beneficiaries, and the period kind they are paid by.
PERIODIC: Mapping[str, PeriodKind] = {"SPECIAL_SUPPORT": PeriodKind.MONTH}
#: Application states that mean "enrolled" for a periodic program (公示 over, paid before, …).
ENROLLED = ("IN_PUBLICITY", "PAYMENT_ISSUED", "PAID", "PAYMENT_FAILED")
#: Application states a one-off program pays from (公示 over, or failed at the bank and paid again).
PAYABLE = ("IN_PUBLICITY", "PAYMENT_FAILED")
#: Application states a batch moves to PAYMENT_ISSUED (the others already say "being paid"). A monthly
#: beneficiary already being paid keeps its state: rewriting a million rows a month would cost more than
#: the payments themselves.
TO_ISSUE = ("IN_PUBLICITY", "PAYMENT_FAILED")
#: The situation the rules see when the household has none in force.
OTHER = hs.Situation.OTHER.value
#: The situation whose disability grade the rules read.
DISABLED = "SPECIAL_DISABLED"


def period_kind(program_type: str) -> PeriodKind | None:
    """The period kind a periodic program is paid by; ``None`` for programs paid once per application."""
    return PERIODIC.get(program_type)


def candidate_states(periodic: bool) -> tuple[str, ...]:
    """The application states a batch of this kind selects from."""
    return ENROLLED if periodic else PAYABLE


@lru_cache(maxsize=1024)
def period_start(code: str) -> date:
    """The first day of a period code (``2022-07``, ``2022``, …): cached, a batch asks per row."""
    return Period.parse(code).start


def enrolled_by(enrolment: str, period: Period) -> bool:
    """Whether an application for the period ``enrolment`` pays in ``period`` (a periodic program pays an
    application from its own period on; one enrolled from a later month waits, silently)."""
    return period_start(enrolment) <= period.start


def first_per_beneficiary(applications: Iterable[tuple[int, str]]) -> set[int]:
    """Of ``(application id, beneficiary)`` candidates, the ids that pay: each beneficiary's lowest."""
    keep: dict[str, int] = {}
    for app, beneficiary in applications:
        if beneficiary not in keep or app < keep[beneficiary]:
            keep[beneficiary] = app
    return set(keep.values())


def situation_of(in_force: Iterable[tuple[str, date, int]]) -> tuple[str, int]:
    """The situation the rules see, and its disability grade, from a household's situations in force on the
    period's first day (``(kind, effective_from, grade)``): the first in ``SITUATION_ORDER`` (special
    families first) — OTHER when none is — and the grade of the latest SPECIAL_DISABLED row when that is
    the situation (0 otherwise)."""
    kinds: dict[str, int] = {}
    for kind, _, grade in sorted(in_force, key=lambda s: s[1]):
        kinds[kind] = grade  # the latest row of a kind wins
    situation = next((k for k in SITUATION_ORDER if k in kinds), OTHER)
    return situation, kinds[situation] if situation == DISABLED else 0


def situation_position(situation: str) -> int:
    """A situation's position in ``SITUATION_ORDER`` counted from 1 (0: OTHER) — how PostgreSQL carries it."""
    return SITUATION_ORDER.index(situation) + 1 if situation in SITUATION_ORDER else 0


def situation_at(position: int) -> str:
    """Inverse of :func:`situation_position`."""
    return SITUATION_ORDER[position - 1] if position else OTHER


def payee_of(person: str, head_person: str | None, household_id: str) -> str:
    """Who is paid: the person for per-person programs, else the household's 户主 as the projection knows
    them — or the household itself until it does (the payment file then asks for the head again)."""
    return person or head_person or f"households/{household_id}"


# ---------------------------------------------------------------- what the rules read

#: A birth date the 周岁 is computed from: ``YYYY-MM-DD`` digits (PostgreSQL's regular expression is the same).
BIRTH_DATE_TEXT = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_BIRTH_DATE = re.compile(BIRTH_DATE_TEXT)


def quote_nullable(value: str | None) -> str:
    """PostgreSQL's ``quote_nullable``: ``NULL``, or the text as a string literal (quotes doubled; with a
    backslash, an ``E''`` literal with backslashes doubled). Keeps declared values apart: ``'a,b'`` can
    never be read as two values, and a missing key (``NULL``) differs from an empty one (``''``)."""
    if value is None:
        return "NULL"
    if "\\" in value:
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + value.replace("'", "''") + "'"


def age_text(birth: str | None, start: date) -> str:
    """The 周岁 (whole years) of a ``YYYY-MM-DD`` birth date on ``start``, as text — the year difference,
    less one while the birthday is still ahead (``MM-DD`` compared as text, which orders as the date does);
    any other birth-date text, or none, stands for itself (:func:`quote_nullable`), apart from every age."""
    if birth is None or not _BIRTH_DATE.match(birth):
        return quote_nullable(birth)
    return str(start.year - int(birth[:4]) - (birth[5:] > f"{start:%m-%d}"))


def attribute_text(value: object) -> str | None:
    """An attribute's value as the rules' text (attributes are strings on the wire; JSON for anything else)."""
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def declared_input(attributes: Mapping[str, object], reads: RuleInputs, start: date) -> str:
    """The part of an application's attributes its rules read, as the region's plugins declare
    (``RuleInputs``): each declared attribute (sorted by key) quoted, then the birth date as declared
    (as it is, as the 周岁 on ``start``, or not at all), joined by commas. Equal texts, equal answers.
    PostgreSQL computes the same text in SQL (``planner_pg.declared_sql``; tested equal)."""
    parts = [quote_nullable(attribute_text(attributes.get(k))) for k in sorted(reads.attributes)]
    birth = attribute_text(attributes.get("birth_date"))
    if reads.birth_date is BirthDateUse.DATE:
        parts.append(quote_nullable(birth))
    elif reads.birth_date is BirthDateUse.AGE_ON_PERIOD_START:
        parts.append(age_text(birth, start))
    return ",".join(parts)


def parse_attributes(text: str | None) -> dict[str, object]:
    """An application's stored attributes (JSON text) as a mapping."""
    loaded = json.loads(text) if text else {}
    return dict(loaded) if isinstance(loaded, dict) else {}


@dataclass(frozen=True)
class RuleKey:
    """The hook inputs two beneficiaries must share to share the rules' answer (their opaque ids aside,
    which a rule has no way to resolve): village, situation and grade, unit, and the attributes as the
    rules read them — the declared part (:func:`declared_input`), or all of them when not declared."""

    village: str
    situation: str
    grade: int
    per_person: bool
    attributes: str


@dataclass(frozen=True)
class RuleInput:
    """One distinct set of hook inputs, carried by one of its applications (its ids and its whole
    attributes are what the hooks see)."""

    person: str
    beneficiary: str
    household_id: str
    village: str
    attributes: str | None  # the application's attributes, JSON text
    situation: str
    grade: int


def rule_beneficiary(r: RuleInput) -> hs.Beneficiary:
    """The ``Beneficiary`` the eligibility and amount hooks are asked about."""
    attributes = {
        k: v for k, v in ((k, attribute_text(v)) for k, v in parse_attributes(r.attributes).items()) if v is not None
    }
    if r.grade:
        attributes.setdefault("child_disability_grade", str(r.grade))
    birth = attributes.get("birth_date")
    unit: Literal["PERSON", "HOUSEHOLD"] = "PERSON" if r.person else "HOUSEHOLD"
    return hs.Beneficiary(
        person_id=r.person or r.beneficiary,
        household_id=f"households/{r.household_id}",
        region=RegionCode(r.village),
        situation=r.situation,
        unit=unit,
        birth_date=date.fromisoformat(birth) if birth else None,
        attributes=attributes,
    )


# ---------------------------------------------------------------- the amount


@dataclass(frozen=True)
class Rule:
    """The answer for one distinct set of inputs: an amount (分) with its basis, or why not (amount 0)."""

    amount: int
    basis: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def pays(self) -> bool:
        return self.amount > 0


def rule_refused(reasons: Iterable[str]) -> Rule:
    """A rule refused (not eligible, or a rule's own error for this beneficiary): nothing paid, the reasons kept."""
    return Rule(0, (), tuple(reasons))


def rule_paid(amount: int, basis: Iterable[str], plugin: str, version: str) -> Rule:
    """The amount hook's answer; its basis names the plugin and version that made it. Zero pays nothing."""
    if amount <= 0:
        return rule_refused(["按规则核定金额为 0 元"])
    return Rule(amount, (*basis, f"规则插件 {plugin} {version}"))


def entitled_rule(amount: int) -> Rule:
    """A one-off program's amount: the one approved on the application."""
    return Rule(amount, (f"按审批核定金额 {Money(amount).format_yuan()} 元",))


class Bases:
    """The distinct bases of a batch's amounts, numbered in order of first use (``payments.basis_no``
    indexes ``payment_batches.bases``: a month's million payments share a handful)."""

    def __init__(self) -> None:
        self.listed: list[list[str]] = []
        self._no: dict[tuple[str, ...], int] = {}

    def no(self, basis: Sequence[str]) -> int:
        key = tuple(basis)
        found = self._no.get(key)
        if found is None:
            found = self._no[key] = len(self.listed)
            self.listed.append(list(basis))
        return found


# ---------------------------------------------------------------- payment keys and attempts

#: Between a business key and its attempt number (``key#2``).
ATTEMPT_MARK = "#"


def periodic_key_affixes(program_id: int, period: object) -> tuple[str, str]:
    """What a program's payment key puts around the beneficiary: ``{program}/`` and ``/{period}``
    (``7/persons/9/2022-08``, migration 0012). Ordered program → beneficiary → period, so one
    beneficiary's payments of every period are one range of the key index."""
    return f"{program_id}/", f"/{period}"


def payment_key(program_id: int, beneficiary: str, period: object) -> str:
    """The business key a batch pays at most once (UNIQUE in ``payments``)."""
    prefix, suffix = periodic_key_affixes(program_id, period)
    return prefix + beneficiary + suffix


def attempt_key(business_key: str, attempt: int) -> str:
    """The stored ``payments.payment_key`` of the n-th attempt to pay a business key (1 → the key itself)."""
    return business_key if attempt == 1 else f"{business_key}{ATTEMPT_MARK}{attempt}"


def business_key(stored: str) -> str:
    """``"7/persons/9/2022-08#2"`` → ``"7/persons/9/2022-08"``."""
    head, sep, tail = stored.rpartition(ATTEMPT_MARK)
    return head if sep and tail.isdigit() else stored


def next_attempt(failed: Sequence[bool]) -> int | None:
    """Given whether each stored attempt to pay a key failed at the bank (oldest first), the number of the
    next attempt — ``None`` while one of them stands (the key is paid)."""
    return None if any(not f for f in failed) else len(failed) + 1


# ---------------------------------------------------------------- a batch's refusals


def nothing_to_pay(program_name: str, region: RegionCode, period: Period, skipped: int) -> FailedPrecondition:
    why = f"；另有 {skipped} 人经规则核定本期不予发放" if skipped else ""
    return FailedPrecondition(
        f"{program_name} 在 {region.short} 的 {period} 没有待支付的对象（已全部支付或尚无公示期满的申请）{why}",
        reason="NOTHING_TO_PAY",
    )


def check_covered(fund_id: int, fund_name: str, available: int, count: int, total: int, allow_negative: bool) -> None:
    """The fund must cover the whole batch (unless it may go below zero): else nothing is posted."""
    if total > available and not allow_negative:
        raise FailedPrecondition(
            f"基金 funds/{fund_id}（{fund_name}）余额不足：可用 {yuan(max(available, 0))} 元，"
            f"本批 {count} 笔共需 {yuan(total)} 元，请先拨入资金",
            reason="INSUFFICIENT_FUNDS",
        )


def yuan(fen: int) -> str:
    return Money(fen).format_yuan()


# ---------------------------------------------------------------- after a death


def after_support_end(period: Period, last_month: date) -> bool:
    """Does ``period`` start after the month ``last_month`` (the last month paid)?"""
    start = period.start
    return (start.year, start.month) > (last_month.year, last_month.month)


def death_stop(
    person: str, died: date, period: Period, last_month: date | None, basis: Iterable[str]
) -> tuple[str, ...] | None:
    """The reasons ``person`` (dead on ``died``) is not paid for ``period``, or None when still paid.
    ``last_month`` None: the region has no rule saying until when (not paid, and said so)."""
    if last_month is None:
        return (
            f"受益人 {person} 已于 {died.isoformat()} 死亡，所在地区没有死亡后停发的规则，无法确认可发放到哪个月，"
            "本期不发放，请联系县计生协系统管理员启用规则插件",
        )
    if not after_support_end(period, last_month):
        return None
    return (
        f"受益人 {person} 已于 {died.isoformat()} 死亡，发放至 {last_month:%Y-%m}，{period} 起停发",
        *basis,
    )


# ---------------------------------------------------------------- what a batch wrote


@dataclass
class Tally:
    """What a batch has written so far: payments, their total and id range, event pages, skips."""

    count: int = 0
    total: int = 0
    first_id: int | None = None
    last_id: int | None = None
    pages: int = 0
    skipped: list[dict[str, object]] = field(default_factory=list)

    def page(self, ids: Sequence[int], amounts: Sequence[int]) -> int:
        """Count one event page of payments; returns its number (from 1)."""
        lo, hi = min(ids), max(ids)
        self.first_id = lo if self.first_id is None else min(self.first_id, lo)
        self.last_id = hi if self.last_id is None else max(self.last_id, hi)
        self.count += len(ids)
        self.total += sum(amounts)
        self.pages += 1
        return self.pages

    def skip(self, application: str, reasons: Iterable[str]) -> None:
        self.skipped.append({"application": application, "reasons": list(reasons)})


#: Payments per PaymentsIssued event (~130 bytes each: a page stays far below NATS's 1 MB message limit).
EVENT_PAGE = 1000


def batch_state(count: int, paid: int, failed: int) -> str:
    """ISSUED until the bank answers, PARTIALLY_SETTLED while some are pending, SETTLED when none is."""
    answered = paid + failed
    return "ISSUED" if answered == 0 else "SETTLED" if answered == count else "PARTIALLY_SETTLED"


def unbroken(first: int | None, last: int | None, count: int | None) -> bool:
    """Whether every id from a batch's first payment to its last is one of its payments (nearly always:
    the batch draws them in one statement; another transaction drawing journal ids meanwhile breaks it)."""
    return first is not None and last is not None and count is not None and count == last - first + 1


# ---------------------------------------------------------------- bank results

_REF = re.compile(r"^paymentBatches/([0-9]+)/payments/([0-9]+)$")


def batch_name(batch_id: int) -> str:
    return f"paymentBatches/{batch_id}"


def payment_ref(batch_id: int, payment_id: int) -> str:
    """A batch payment's resource name, also the 业务参考号 on the bank file."""
    return f"{batch_name(batch_id)}/payments/{payment_id}"


@dataclass(frozen=True)
class BankLine:
    """One result the bank returned for a payment (the reference it quotes, 成功/失败, why, 流水号, date)."""

    payment: str
    succeeded: bool
    failure_reason: str = ""
    bank_reference: str = ""
    paid_date: date | None = None
    #: An impossible date as the bank wrote it (``2022-2-30``), reported in its place among the line's problems.
    bad_date: str = ""


def check_bank_lines(batch_id: int, lines: Sequence[BankLine], errs: ErrorCollector) -> dict[int, tuple[int, BankLine]]:
    """The lines of one import checked on their own (before any is looked up): each names a payment of
    this batch once, a failure says why. Returns payment id → (line index, line); problems go to ``errs``."""
    if not lines:
        errs.add("results", "没有任何回盘结果")
    wanted: dict[int, tuple[int, BankLine]] = {}
    for i, r in enumerate(lines):
        line = f"第 {i + 1} 条（{r.payment or '空'}）"
        m = _REF.match(r.payment.strip())
        if m is None:
            errs.add(f"results[{i}].payment", f"{line}：业务参考号格式不对，应为 paymentBatches/批次号/payments/支付号")
            continue
        b, pid = int(m.group(1)), int(m.group(2))
        if b != batch_id:
            errs.add(f"results[{i}].payment", f"{line}：属于批次 paymentBatches/{b}，不是本批次 {batch_name(batch_id)}")
            continue
        if pid in wanted:
            errs.add(f"results[{i}].payment", f"{line}：与第 {wanted[pid][0] + 1} 条重复")
            continue
        if not r.succeeded and not r.failure_reason.strip():
            errs.add(f"results[{i}].failure_reason", f"{line}：支付失败须填写失败原因")
        if r.bad_date:
            errs.add(f"results[{i}].paid_date", f"日期 {r.bad_date} 无效")
        wanted[pid] = (i, r)
    return wanted


def check_against_recorded(
    i: int,
    line: BankLine,
    batch_id: int,
    payment_batch: int | None,
    recorded: str | None,
    recorded_reason: str,
    errs: ErrorCollector,
) -> None:
    """A line against what is stored: the payment must exist in this batch, and a result already recorded
    must not be contradicted (a repeat is fine: it changes nothing)."""
    where = f"第 {i + 1} 条（{line.payment}）"
    if payment_batch is None:
        errs.add(f"results[{i}].payment", f"{where}：本系统没有这笔支付，请核对业务参考号")
    elif payment_batch != batch_id:
        errs.add(f"results[{i}].payment", f"{where}：属于批次 {batch_name(payment_batch)}，不是本批次")
    elif recorded is not None and (recorded == "PAID") != line.succeeded:
        was = "已支付成功" if recorded == "PAID" else f"已记为支付失败（{recorded_reason}）"
        errs.add(
            f"results[{i}].payment",
            f"{where}：该笔此前{was}，与本次“{'成功' if line.succeeded else '失败'}”不符；"
            "如银行更正了结果，请联系县级财务人工处理",
        )


# ---------------------------------------------------------------- reconciliation


@dataclass(frozen=True)
class Reconciled:
    """A batch's 对账: issued = paid + failed + pending (counts and 分), against the ledger."""

    count: Mapping[str, int]
    total: Mapping[str, int]
    issued_count: int
    issued_total: int
    ledger_total: int
    problems: tuple[str, ...]

    @property
    def balanced(self) -> bool:
        return not self.problems

    @property
    def summary(self) -> str:
        c, t = self.count, self.total
        return (
            f"共 {self.issued_count} 笔 {yuan(self.issued_total)} 元 = 已支付 {c['PAID']} 笔 {yuan(t['PAID'])} 元"
            f" + 失败退回 {c['FAILED']} 笔 {yuan(t['FAILED'])} 元"
            f" + 待回盘 {c['PENDING']} 笔 {yuan(t['PENDING'])} 元"
        )


def to_recover(ref: str, death_reasons: tuple[str, ...] | None) -> str | None:
    """Reconciliation's flag for a payment issued although :func:`death_stop` says the period was not to be
    paid (the death arrived after the batch): the reason to recover it, or None."""
    if death_reasons is None:
        return None
    return f"{ref} 应追回：{'；'.join(death_reasons)}"


def reconcile(payments: Iterable[tuple[str, int, str, bool]], ledger_total: int) -> Reconciled:
    """``payments``: (reference, 分, state PENDING/PAID/FAILED, has its return journal); ``ledger_total``: the
    EXPENSE the batch's journal(s) debited less what its failures' return journals credited back."""
    count = {"PENDING": 0, "PAID": 0, "FAILED": 0}
    total = {"PENDING": 0, "PAID": 0, "FAILED": 0}
    problems: list[str] = []
    issued_n = issued = 0
    for ref, amount, state, returned in payments:
        issued_n += 1
        issued += amount
        count[state] += 1
        total[state] += amount
        if state == "FAILED" and not returned:
            problems.append(f"{ref} 记为失败，但没有退回记录")
    if issued != total["PAID"] + total["FAILED"] + total["PENDING"]:  # a state outside the three
        problems.append("批次总额 ≠ 已支付 + 失败 + 待回盘")
    if ledger_total != total["PAID"] + total["PENDING"]:
        problems.append(
            f"账上净支出 {yuan(ledger_total)} 元 ≠ 已支付 + 待回盘 {yuan(total['PAID'] + total['PENDING'])} 元"
        )
    return Reconciled(count, total, issued_n, issued, ledger_total, tuple(problems))
