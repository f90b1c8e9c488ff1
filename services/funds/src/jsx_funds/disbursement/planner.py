"""The batch planner: one interface, two adapters, chosen by the database's dialect here and only here.

A :class:`Planner` writes one CreatePaymentBatch's payments inside the
caller's transaction (the fund locked, the batch row flushed): it finds the
candidates, asks the rules once per distinct input (:class:`RuleBook`), and
writes the payments, their ``PaymentsIssued`` pages and the applications'
PAYMENT_ISSUED — deciding nothing itself: every choice is
:mod:`jsx_funds.disbursement.domain`'s.

* :class:`~jsx_funds.disbursement.planner_pg.PostgresPlanner` — a handful
  of set-based statements (temporary tables, two connections), so that
  Python never touches each of a million rows.
* :class:`~jsx_funds.disbursement.planner_sqlite.SqlitePlanner` — keyset
  pages of :data:`~jsx_funds.disbursement.planner_sqlite.CHUNK`, each written
  before the next is read.

``tests/test_planners_equal.py`` plans the same programs, applications and
projections on both and compares every payment.

Why one transaction for a million payments: the fund lock, the UNIQUE payment
keys and the balance check then cover the whole batch, and a process killed
mid-batch leaves nothing behind (PostgreSQL aborts the dead connection's
transaction, SQLite rolls its journal back on the next open), so the rerun
simply pays everyone.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, String, literal
from sqlalchemy.ext.asyncio import AsyncSession

from jsx.funds.v1 import events_pb2
from jsx_funds.disbursement import domain as dd
from jsx_funds.disbursement import wire
from jsx_funds.programs.domain import IN_FORCE_STATES
from jsx_funds.programs.service import in_force_applications
from jsx_funds.programs.tables import ApplicationRow
from jsxcore.errors import DomainError
from jsxcore.hookspecs import RuleInputs
from jsxcore.outbox import subject_of
from jsxcore.plugins import PluginHost
from jsxcore.values import Period, RegionCode

#: The PaymentsIssued pages' subject and type.
PAGE_SUBJECT = subject_of(events_pb2.PaymentsIssued)
PAGE_TYPE = events_pb2.PaymentsIssued.DESCRIPTOR.full_name


@dataclass(frozen=True)
class BatchProgram:
    """What a batch needs of its program (read through the programs service)."""

    id: int
    name: str
    rule_type: str  # the program type the plugins know it by
    year: int
    fund_id: int


class RuleBook:
    """The rules' answers by :class:`~jsx_funds.disbursement.domain.RuleKey`, each asked once per batch.

    The eligibility and amount hooks take plain data and are pure by contract
    (DESIGN.md §4), so two beneficiaries whose hook arguments are equal get the
    same answer. One ``acall_many`` per hook resolves every new input in a
    single worker thread (a thread per call cost more than the rule itself).
    """

    def __init__(self, plugins: PluginHost, program: BatchProgram, period: Period) -> None:
        self.plugins, self.program, self.period = plugins, program, period
        self.rules: dict[Hashable, dd.Rule] = {}

    def __len__(self) -> int:
        return len(self.rules)

    def __contains__(self, key: Hashable) -> bool:
        return key in self.rules

    def __getitem__(self, key: Hashable) -> dd.Rule:
        return self.rules[key]

    def entitled(self, amount: int) -> dd.Rule:
        """A one-off program's rule: the amount approved on the application."""
        key = ("entitled", amount)
        rule = self.rules.get(key)
        if rule is None:
            rule = self.rules[key] = dd.entitled_rule(amount)
        return rule

    async def ask(self, inputs: dict[Hashable, dd.RuleInput]) -> None:
        """Ask the rules for each key not known yet, by its representative input: eligibility for all,
        then the amount for the eligible."""
        inputs = {k: v for k, v in inputs.items() if k not in self.rules}
        if not inputs:
            return
        ctx = {"program_year": self.program.year}
        calls = [
            (
                RegionCode(r.village),
                {
                    "program_type": self.program.rule_type,
                    "beneficiary": dd.rule_beneficiary(r),
                    "period": self.period,
                    "context": ctx,
                },
            )
            for r in inputs.values()
        ]
        out: list[dd.Rule | None] = [None] * len(calls)
        eligible = []
        for i, elig in enumerate(await self.plugins.acall_many("jsx_program_eligibility", calls)):
            _raise_programming_error(elig)
            if isinstance(elig, DomainError):
                # One beneficiary's rule refusing (e.g. no situation any more) must not stop the others.
                out[i] = dd.rule_refused([elig.message])
            elif not elig.value.eligible:
                out[i] = dd.rule_refused(elig.value.reasons)
            else:
                eligible.append(i)
        amounts = await self.plugins.acall_many("jsx_entitlement_amount", [calls[i] for i in eligible])
        for i, amt in zip(eligible, amounts, strict=False):
            _raise_programming_error(amt)
            if isinstance(amt, DomainError):
                out[i] = dd.rule_refused([amt.message])
            else:
                out[i] = dd.rule_paid(amt.value.amount.fen, amt.value.basis, amt.plugin, amt.plugin_version)
        self.rules.update(zip(inputs, [rule for rule in out if rule is not None], strict=False))


def _raise_programming_error(result: object) -> None:
    """A slot of ``acall_many`` holding a TypeError is our call's mistake, not a rule's answer."""
    if isinstance(result, BaseException) and not isinstance(result, DomainError):
        raise result


@dataclass
class BatchRun:
    """One CreatePaymentBatch as the planners see it: what to pay, and what they have written so far."""

    s: AsyncSession
    program: BatchProgram
    region: RegionCode
    period: Period
    periodic: bool
    now: datetime
    batch_id: int
    rules: RuleBook
    #: What the region's rules declare they read (None: not declared, every attribute is an input).
    reads: RuleInputs | None
    #: Marks applications PAYMENT_ISSUED (the programs context's own write), in this transaction: their ids,
    #: or a query of them (PostgreSQL: one statement over the paid candidates).
    issue: Callable[[AsyncSession, Sequence[int] | Select[Any]], Awaitable[None]]
    #: The batch's PAYMENT journal id, drawn by the planner (payments name it before it is written).
    journal_id: int = 0
    tally: dd.Tally = field(default_factory=dd.Tally)
    bases: dd.Bases = field(default_factory=dd.Bases)
    #: Seconds per phase, logged when the batch is written.
    spent: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(
            ("select", "retries", "rules", "insert", "outbox", "issue", "journal"), 0.0
        )
    )
    #: ``persons/…`` not paid this period because they died (:func:`~jsx_funds.disbursement.domain.death_stop`),
    #: with the reasons: left out of :meth:`candidates`, listed as skipped by the service.
    stopped: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Said in the log line when PostgreSQL keyed its candidates by the declared inputs.
    note: str = ""
    started: float = field(default_factory=time.perf_counter)

    @property
    def key_affixes(self) -> tuple[str, str]:
        return dd.periodic_key_affixes(self.program.id, self.period)

    def candidates(self) -> Select[Any]:
        """The applications this batch may pay (both planners start from this one query): those the programs
        context holds in force in the region, narrowed as the domain says for this kind of program."""
        q = in_force_applications(self.program.id, self.region, self.now)
        states = dd.candidate_states(self.periodic)
        if set(states) != set(IN_FORCE_STATES):  # (a periodic program's enrolled states are those: no second IN)
            q = q.where(ApplicationRow.state.in_(states))
        if not self.periodic:
            q = q.where(ApplicationRow.period == str(self.period))
        if self.stopped:
            q = q.where(ApplicationRow.person.not_in(list(self.stopped)))
        return q

    def key_of(self, beneficiary: Any) -> Any:
        """SQL for the payment key (:func:`~jsx_funds.disbursement.domain.payment_key`) of ``beneficiary``."""
        prefix, suffix = self.key_affixes
        return literal(prefix, String) + beneficiary + literal(suffix, String)

    def page(
        self,
        ids: Sequence[int],
        applications: Sequence[int],
        households: Sequence[str],
        payees: Sequence[str],
        villages: Sequence[str],
        amounts: Sequence[int],
    ) -> tuple[str, bytes]:
        """One PaymentsIssued page (counted in the tally): its event id and payload."""
        number = self.tally.page(ids, amounts)
        ev = wire.payments_issued(
            str(uuid.uuid4()),
            self.now,
            self.batch_id,
            self.program.id,
            self.program.fund_id,
            self.period,
            number,
            ids,
            applications,
            households,
            payees,
            villages,
            amounts,
        )
        return ev.event_id, ev.SerializeToString(deterministic=True)

    def basis_no(self, rule: dd.Rule) -> int:
        return self.bases.no(rule.basis)


class Planner(Protocol):
    """Writes one batch's payments into the transaction of ``run.s`` (see the module docstring)."""

    async def write(self, run: BatchRun) -> None: ...


def planner_for(dialect: str) -> Planner:
    """The planner for a database dialect: PostgreSQL's set-based one, else SQLite's keyset pages."""
    if dialect == "postgresql":
        from jsx_funds.disbursement.planner_pg import PostgresPlanner

        return PostgresPlanner()
    from jsx_funds.disbursement.planner_sqlite import SqlitePlanner

    return SqlitePlanner()


def fault(point: str) -> None:
    """Die here if ``JSX_FAULT`` names this point (crash tests only; the outbox's convention);
    ``<point>:stop`` stops the process instead, for a test to ``kill -9`` it there."""
    value = os.environ.get("JSX_FAULT")
    if value == point:
        os._exit(86)
    if value == point + ":stop":
        os.kill(os.getpid(), signal.SIGSTOP)
