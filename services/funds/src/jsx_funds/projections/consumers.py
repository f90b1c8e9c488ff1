"""Use cases driven by other services' events (consumed from NATS JetStream).

Each handler runs inside the transaction of ``jsxcore.outbox.Consumer``,
which records the event id in ``inbox`` in the same transaction, so an effect
is applied once however often JetStream redelivers. Handlers map the event
message to plain values; protobuf stops here.

* :func:`book_visit_expense` — ``jsx.events.visit.recorded``: the visit's
  慰问金 is paid out of the named fund (a PAYMENT journal keyed
  ``visits/{id}``, so it is booked once even if the events service sends the
  visit again under a new event id) and ``VisitExpenseBooked`` is published;
  if it cannot be booked, ``VisitExpenseRejected`` with a reason code and a
  Chinese message, and nothing is posted. Whether the fund may pay 慰问金 at
  all is :func:`visit_use_verdict` (the fund's kind, and for a 幸福基金 the
  county rule ``jsx_fund_allowed_uses`` resolved for the fund's region).
* :func:`apply_household_event` — ``jsx.members.household.*``: the funds
  service's projection of households and their dated situations
  (:func:`jsx_funds.projections.service.apply_household`).
* :func:`apply_death_event` — ``jsx.members.person.died`` and
  ``…death_corrected``: persons' deaths (:func:`jsx_funds.projections.service.apply_death`),
  which stop periodic payments after the month the region's rule says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from typing import TYPE_CHECKING

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.common.v1 import common_pb2
from jsx.events.v1 import events_pb2 as ev
from jsx.members.v1 import events_pb2 as mev
from jsx.members.v1 import members_pb2
from jsx_funds.adapters import bus, db
from jsx_funds.adapters.db import aware
from jsx_funds.disbursement.tables import PaymentRow
from jsx_funds.ledger import domain as d
from jsx_funds.ledger import tables as lt
from jsx_funds.ledger.tables import FundRow
from jsx_funds.projections.service import DeathFact, HouseholdFact, SituationFact, apply_death, apply_household
from jsxcore.errors import DomainError, FailedPrecondition, InvalidArgument, PluginError, Unavailable
from jsxcore.hookspecs import FundKind as RuleFundKind
from jsxcore.outbox import Consumer, EventMeta, stream_name
from jsxcore.plugins import PluginHost
from jsxcore.values import Money, RegionCode

if TYPE_CHECKING:
    from jsx_funds.disbursement.service import DisbursementService

#: Who the ledger names as the actor of a visit expense.
VISIT_ACTOR = "events-service"
VISIT_DURABLE = "funds-visit-expenses"
#: Deliveries of a visit before its 慰问金 is answered anyway: a rule plugin failing this often is answered
#: with ``PLUGIN_UNAVAILABLE`` rather than left unanswered when JetStream stops redelivering.
VISIT_MAX_DELIVER = 20
MEMBERS_DURABLE = "funds-members-projection"
DEATHS_DURABLE = "funds-person-deaths"


def bare_id(name: str, collection: str) -> str:
    """``"households/ab-12"`` → ``"ab-12"``; InvalidArgument (poison) when malformed."""
    prefix = collection + "/"
    if not name.startswith(prefix) or len(name) == len(prefix) or "/" in name[len(prefix) :]:
        raise InvalidArgument(f"事件中的资源名“{name}”格式不对，应为 {collection}/编号", reason="INVALID_RESOURCE_NAME")
    return name[len(prefix) :]


def occurred(msg: Message, meta: EventMeta) -> datetime:
    """When the fact happened: the event's ``occurred_at``, else the broker's timestamp."""
    if msg.HasField("occurred_at"):
        occurred_at: Timestamp = msg.occurred_at  # type: ignore[attr-defined]  # every consumed event message has one
        return occurred_at.ToDatetime(tzinfo=UTC)
    return aware(meta.published_at) if meta.published_at else db.utcnow()


def to_day(value: common_pb2.Date) -> date | None:
    if value.year == 0:
        return None
    return date(value.year, value.month, value.day)


# ---------------------------------------------------------------- 慰问金

#: The use a visit's 慰问金 is spent on, in the vocabulary of ``jsx_fund_allowed_uses``.
#: VisitRecorded (protos/jsx/events/v1/events.proto) has no "use" field: a 走访慰问 visit
#: is always 村民慰问 (the 幸福基金 use it falls under), so every visit maps to it.
VISIT_USE = "村民慰问"

#: Kinds that never pay a visit, whatever the place: their purpose is fixed by what the
#: fund is, not by a county rule (a program fund's money leaves only through its
#: program's approved applications and batches; working funds pay the association's own costs).
_NEVER_FOR_VISITS = {
    d.FundKind.PROGRAM: "项目资金只能按项目申请、审批、公示后发放",
    d.FundKind.OPERATING: "工作经费只用于协会自身的工作开支",
}
#: Kinds whose uses are county rules: the hook's fund kind, and whether a rule is required.
#: A 幸福基金 may only be spent on the uses its rule lists, so with no rule for its region a
#: visit is refused; a relief fund (救助资金) pays 慰问金 unless a county rule says otherwise.
_RULED = {
    d.FundKind.HAPPINESS: (RuleFundKind.HAPPINESS_FUND, True),
    d.FundKind.RELIEF: (RuleFundKind.CARE_FUND, False),
}
_OTHER_FUNDS = "请改用慰问金、救助资金或可用于“村民慰问”的幸福基金账户后重新登记走访"


@dataclass(frozen=True)
class UseVerdict:
    """May this fund pay a visit's 慰问金? ``reason``/``message`` when not; ``basis`` (for the
    ledger memo) names the plugin and version whose rule allowed it, if a rule decided."""

    allowed: bool
    reason: str = ""
    message: str = ""
    basis: str = ""


async def visit_use_verdict(plugins: PluginHost, fund: FundRow) -> UseVerdict:
    """Whether ``fund`` may be spent on a visit (:data:`VISIT_USE`).

    Raises :class:`~jsxcore.errors.Unavailable` when the rule plugin fails or times out
    (a PluginError): the consumer then naks and the visit is retried, rather than refused
    because of a fault that the next delivery may not meet.
    """
    label = f"funds/{fund.id}（{fund.name}）"
    try:
        kind = d.FundKind(fund.kind)
    except ValueError:
        return UseVerdict(
            False, "FUND_USE_NOT_ALLOWED", f"基金 {label}的类别“{fund.kind}”未知，不能列支慰问金，{_OTHER_FUNDS}"
        )
    if kind in _NEVER_FOR_VISITS:
        return UseVerdict(
            False,
            "FUND_USE_NOT_ALLOWED",
            f"基金 {label}为{kind.label}，不能列支慰问金（{_NEVER_FOR_VISITS[kind]}），{_OTHER_FUNDS}",
        )
    if kind not in _RULED:
        return UseVerdict(True)  # 慰问金 and donations not tied to a program
    rule_kind, required = _RULED[kind]
    try:
        decision = await plugins.acall("jsx_fund_allowed_uses", fund.region, fund_kind=rule_kind.value)
    except PluginError as exc:
        raise Unavailable(
            f"核对基金 {label}的用途时规则插件出错，稍后自动重试：{exc.message}",
            reason="PLUGIN_UNAVAILABLE",
            metadata=exc.metadata,
        ) from exc
    except Unavailable:
        raise
    except FailedPrecondition as exc:
        if exc.reason != "NO_RULE":
            # A plugin's deliberate refusal: its message is the clerk's answer.
            return UseVerdict(False, "FUND_USE_NOT_ALLOWED", f"基金 {label}不能列支慰问金：{exc.message}")
        if not required:
            return UseVerdict(True)
        region = RegionCode(fund.region)
        return UseVerdict(
            False,
            "NO_RULE",
            f"{kind.label} {label}所在地区 {region.short} 没有{kind.label}用途规则，无法确认能否列支慰问金，"
            f"请联系县计生协系统管理员启用规则插件后重新登记走访",
        )
    except DomainError as exc:
        return UseVerdict(False, "FUND_USE_NOT_ALLOWED", f"基金 {label}不能列支慰问金：{exc.message}")
    uses = decision.value.uses
    rule = f"规则插件 {decision.plugin} {decision.plugin_version}"
    if VISIT_USE in uses:
        return UseVerdict(True, basis=f"{kind.label}用途“{VISIT_USE}”，依据{rule}")
    return UseVerdict(
        False,
        "FUND_USE_NOT_ALLOWED",
        f"{kind.label} {label}只能用于：{'、'.join(uses) or '（无）'}；慰问金属于「{VISIT_USE}」，"
        f"不在其中（{rule}），{_OTHER_FUNDS}",
    )


async def book_visit_expense(
    s: AsyncSession,
    msg: ev.VisitRecorded,
    meta: EventMeta,
    *,
    plugins: PluginHost,
    disbursement: DisbursementService,
    max_deliver: int = VISIT_MAX_DELIVER,
) -> None:
    """Pay a recorded visit's 慰问金 out of its fund, or publish why not.

    Refusals (reason codes): ``INVALID_AMOUNT``, ``FUND_NOT_FOUND``,
    ``REGION_MISMATCH`` (the household lies outside the fund's region),
    ``FUND_USE_NOT_ALLOWED`` (the fund may not pay 慰问金: a program fund,
    working funds, a 幸福基金 whose county rule does not list 村民慰问),
    ``NO_RULE`` (a 幸福基金 with no use rule for its region),
    ``INSUFFICIENT_FUNDS``. The balance is checked under the fund's row lock
    before posting, so a refusal writes nothing but the rejection event.
    A failing rule plugin raises Unavailable: nak and retry, no answer yet —
    until the delivery JetStream will not follow with another
    (``max_deliver``): then ``PLUGIN_UNAVAILABLE``, so that the events
    service shows the visit as not paid, and why, instead of waiting forever.
    """
    visit = msg.visit
    bare_id(visit, "visits")

    def reject(reason: str, message: str) -> None:
        bus.emit(s, bus.visit_expense_rejected(msg, reason, message))

    amount = msg.money.fen
    if amount <= 0:
        return reject("INVALID_AMOUNT", f"走访 {visit} 的慰问金金额 {d.yuan(amount)} 元无效，须大于 0 元")
    try:
        fund_id = int(bare_id(msg.fund, "funds"))
    except (InvalidArgument, ValueError):
        fund_id = 0
    # The fund's kind and region never change (no RPC updates them), so the rule is resolved
    # before the row lock: a plugin call (up to its timeout) never holds the fund, or on
    # SQLite the database's single writer lock.
    unlocked = await s.get(FundRow, fund_id) if fund_id > 0 else None
    try:
        verdict = await visit_use_verdict(plugins, unlocked) if unlocked is not None else None
    except Unavailable:
        if meta.num_delivered < max_deliver:
            raise
        return reject(
            "PLUGIN_UNAVAILABLE",
            f"走访 {visit} 的慰问金未列支：核对基金 {msg.fund} 用途的规则插件连续 {meta.num_delivered} 次出错，"
            "请联系县计生协系统管理员修复规则插件后重新登记走访",
        )
    fund = await lt.lock_fund(s, fund_id) if unlocked is not None else None
    if fund is None or verdict is None:
        return reject(
            "FUND_NOT_FOUND",
            f"走访 {visit} 指定的慰问金账户“{msg.fund or '（未填写）'}”不存在，请核对基金编号后重新登记",
        )

    # The lock is held: a concurrent delivery of the same visit waits here and then sees our payment.
    done = (await s.execute(select(PaymentRow).where(PaymentRow.payment_key == visit))).scalar()
    if done is not None:
        # Already booked (the visit was sent again under a new event id): repeat the answer.
        bus.emit(s, bus.visit_expense_booked(msg, done.fund_id, done.journal_id))
        return

    try:
        household_region = RegionCode.parse(msg.region.code)
    except InvalidArgument:
        return reject("REGION_MISMATCH", f"走访 {visit} 的受访家庭地区代码“{msg.region.code}”无效")
    fund_region = RegionCode(fund.region)
    if not fund_region.contains(household_region):
        return reject(
            "REGION_MISMATCH",
            f"慰问金账户 funds/{fund.id}（{fund.name}，地区 {fund_region.short}）不能支付地区 "
            f"{household_region.short} 的走访慰问金，请改用该地区的慰问金账户",
        )
    if not verdict.allowed:
        return reject(verdict.reason, verdict.message)
    available = await lt.balances_for(s, [d.AccountKey(fund.id, d.AccountKind.AVAILABLE)])
    have = sum(available.values())
    if have < amount and not fund.allow_negative:
        return reject(
            "INSUFFICIENT_FUNDS",
            f"慰问金账户 funds/{fund.id}（{fund.name}）余额不足：可用 {d.yuan(max(have, 0))} 元，"
            f"本次走访需 {d.yuan(amount)} 元，请先拨入资金后重新登记",
        )
    memo = f"走访慰问金 {visit}" + (f"（{verdict.basis}）" if verdict.basis else "")
    posted, _ = await disbursement.pay(
        s,
        fund.id,
        Money(amount),
        payment_key=visit,
        payee=msg.household,
        actor=VISIT_ACTOR,
        memo=memo,
        emit_event=False,
    )
    bus.emit(s, bus.visit_expense_booked(msg, fund.id, posted.journal.id))


# ---------------------------------------------------------------- members projection

_SITUATION_PREFIX = "SITUATION_KIND_"


async def apply_household_event(
    s: AsyncSession,
    msg: mev.HouseholdRegistered | mev.HouseholdSituationChanged | mev.HouseholdMembersChanged,
    meta: EventMeta,
) -> None:
    """Upsert the household (and, for a situation change, that dated situation)."""
    fact = HouseholdFact(
        household_id=bare_id(msg.household, "households"),
        village=RegionCode.parse(msg.village.code, field="village").code,
        head_person=msg.head_person,
        member_count=msg.member_count,
        occurred_at=occurred(msg, meta),
    )
    situation = None
    if isinstance(msg, mev.HouseholdSituationChanged):
        kind = members_pb2.SituationKind.Name(msg.kind)[len(_SITUATION_PREFIX) :]
        start = to_day(msg.effective_from)
        if kind == "UNSPECIFIED" or start is None:
            raise InvalidArgument(
                f"家庭情况变更事件缺少情况类别或起始日期（{msg.household}）", reason="INVALID_SITUATION_EVENT"
            )
        situation = SituationFact(
            kind=kind,
            effective_from=start,
            effective_to=to_day(msg.effective_to),
            disability_grade=msg.disability_grade,
        )
    await apply_household(s, fact, situation)


async def apply_death_event(
    s: AsyncSession,
    msg: mev.PersonDied | mev.PersonDeathCorrected,
    meta: EventMeta,
    *,
    disbursement: DisbursementService | None = None,
) -> None:
    """Record a death, or its correction (a new date; no date: withdrawn), and note on the person's periodic
    enrolments until when they are paid (``disbursement.end_enrolments``)."""
    bare_id(msg.person, "persons")
    day = to_day(msg.death_date)
    if isinstance(msg, mev.PersonDied) and day is None:
        raise InvalidArgument(f"死亡事件缺少死亡日期（{msg.person}）", reason="INVALID_DEATH_EVENT")
    applied = await apply_death(
        s,
        DeathFact(
            person=msg.person,
            village=RegionCode.parse(msg.village.code, field="village").code,
            household=msg.household if isinstance(msg, mev.PersonDied) else "",
            death_date=day,
            occurred_at=occurred(msg, meta),
        ),
    )
    if applied and disbursement is not None:
        previous = to_day(msg.previous_death_date) if isinstance(msg, mev.PersonDeathCorrected) else None
        await disbursement.end_enrolments(s, msg.person, msg.village.code, day, previous)


# ---------------------------------------------------------------- wiring


def build_consumers(
    nats_url: str,
    sessions: async_sessionmaker[AsyncSession],
    on_commit: Callable[[], None] | None = None,
    *,
    plugins: PluginHost,
    visit_max_deliver: int = VISIT_MAX_DELIVER,
    disbursement: DisbursementService | None = None,
) -> list[Consumer]:
    """The funds process's durable consumers (started by the runtime as background tasks).
    ``on_commit`` (the relay's notify) sends a booking answer as soon as it commits.

    ``plugins`` resolves fund-use rules: the runtime's host (``rt.plugins``), so the
    consumer follows the process's plugin enablement (JSX_PLUGINS) and timeout. ``disbursement`` pays the
    慰问金 (the composed context; one over the same database when not given).
    """
    if disbursement is None:
        from jsx_funds.disbursement.service import DisbursementService
        from jsx_funds.ledger.service import LedgerService
        from jsx_funds.programs.service import ProgramsService

        disbursement = DisbursementService(
            sessions, plugins, ledger=LedgerService(sessions), programs=ProgramsService(sessions, plugins)
        )
    return [
        Consumer(
            nats_url,
            stream=stream_name("events"),
            durable=VISIT_DURABLE,
            subjects=list(bus.VISIT_SUBJECTS),
            handler=partial(
                book_visit_expense, plugins=plugins, disbursement=disbursement, max_deliver=visit_max_deliver
            ),
            sessionmaker=sessions,
            message_types=bus.VISIT_TYPES,
            on_commit=on_commit,
            max_deliver=visit_max_deliver,
        ),
        Consumer(
            nats_url,
            stream=stream_name("members"),
            durable=MEMBERS_DURABLE,
            subjects=list(bus.MEMBER_SUBJECTS),
            handler=apply_household_event,  # type: ignore[arg-type]  # typed per event message; Consumer passes a Message
            sessionmaker=sessions,
            message_types=bus.MEMBER_TYPES,
        ),
        Consumer(
            nats_url,
            stream=stream_name("members"),
            durable=DEATHS_DURABLE,
            subjects=list(bus.DEATH_SUBJECTS),
            handler=partial(apply_death_event, disbursement=disbursement),
            sessionmaker=sessions,
            message_types=bus.DEATH_TYPES,
        ),
    ]
