"""The SQLite planner: keyset pages of candidates, each ruled on and written before the next is read.

We hold SQLite's single writer lock (the fund lock wrote first), so ids past
the current maximum are ours. Payment ids share the journals' id space, and
SQLite gives a new journal max(id) + 1: the batch journal takes the id after
every id a payment of this batch could take, so later journals (and the single
payments named after them) never meet a batch payment's id.

Pages are read in application order. The rare beneficiaries with several
candidate applications are found first, and only the first of each pays
(:func:`~jsx_funds.disbursement.domain.first_per_beneficiary`); each page's
query anti-joins ``payments`` on the payment key, so what an earlier page
paid, or an earlier batch, is not selected again.
"""

from __future__ import annotations

import typing
from collections.abc import Hashable, Sequence
from typing import Any

from sqlalchemy import Table, Text, cast, func, insert, select
from sqlalchemy.engine import Row

from jsx_funds.disbursement import domain as dd
from jsx_funds.disbursement.planner import PAGE_SUBJECT, PAGE_TYPE, BatchRun, fault
from jsx_funds.disbursement.tables import PaymentFailureRow, PaymentRow, payment_attempts
from jsx_funds.ledger.tables import JournalRow
from jsx_funds.programs.tables import ApplicationRow
from jsx_funds.projections.service import household_heads, situations_in_force
from jsx_funds.projections.tables import SituationProjection
from jsxcore.outbox import OutboxEvent

#: Applications read, ruled on and written per round trip (SQLite caps bound parameters at 32 766).
CHUNK = 5_000


class SqlitePlanner:
    """:class:`~jsx_funds.disbursement.planner.Planner` for SQLite (and any database without the set-based path)."""

    async def write(self, run: BatchRun) -> None:
        s = run.s
        top = max(
            int((await s.execute(select(func.coalesce(func.max(JournalRow.id), 0)))).scalar_one()),
            int((await s.execute(select(func.coalesce(func.max(PaymentRow.id), 0)))).scalar_one()),
        )
        upper = int((await s.execute(select(func.count()).select_from(_select(run).subquery()))).scalar_one())
        next_id, run.journal_id = top + 1, top + 1 + upper
        pager = _Pages(run)
        await pager.find_twice()
        after = 0
        while rows := (
            await s.execute(_select(run).where(ApplicationRow.id > after).order_by(ApplicationRow.id).limit(CHUNK))
        ).all():
            after = rows[-1].id
            page = await pager.rule(rows)
            if page:
                ids = list(range(next_id, next_id + len(page)))
                next_id += len(page)
                await pager.insert(page, ids)
            fault("batch.after_chunk")


def _select(run: BatchRun) -> Any:
    """The candidates (:meth:`BatchRun.candidates`) not yet paid this period — unpaid, or their first attempt
    failed at the bank (whether a retry stands is :func:`~jsx_funds.disbursement.domain.next_attempt`'s)."""
    return (
        run.candidates()
        .outerjoin(PaymentRow, PaymentRow.payment_key == run.key_of(ApplicationRow.beneficiary))
        .outerjoin(PaymentFailureRow, PaymentFailureRow.payment_id == PaymentRow.id)
        .where(PaymentRow.id.is_(None) | PaymentFailureRow.payment_id.is_not(None))
        .with_only_columns(
            ApplicationRow.id,
            ApplicationRow.household_id,
            ApplicationRow.person,
            ApplicationRow.beneficiary,
            ApplicationRow.village,
            ApplicationRow.period,
            ApplicationRow.state,
            ApplicationRow.amount_entitled,
            cast(ApplicationRow.attributes, Text).label("attributes"),
            PaymentFailureRow.payment_id.label("failed"),
        )
    )


class _Pages:
    """State across pages: the last beneficiary decided, the declared parts of attributes seen."""

    def __init__(self, run: BatchRun) -> None:
        self.run = run
        self.declared: dict[str, str] = {}
        #: Beneficiaries with more than one candidate application, and the one of each that pays.
        self.twice: set[str] = set()
        self.first: set[int] = set()

    async def find_twice(self) -> None:
        run = self.run
        twice = (
            select(ApplicationRow.beneficiary)
            .where(ApplicationRow.program_id == run.program.id)
            .group_by(ApplicationRow.beneficiary)
            .having(func.count() > 1)
        )
        rows = (
            await run.s.execute(
                run.candidates()
                .where(ApplicationRow.beneficiary.in_(twice))
                .with_only_columns(ApplicationRow.id, ApplicationRow.beneficiary, ApplicationRow.period)
            )
        ).all()
        self.twice = {b for _, b, _ in rows}
        self.first = dd.first_per_beneficiary(
            (app, b) for app, b, period in rows if not run.periodic or dd.enrolled_by(period, run.period)
        )

    async def rule(self, rows: Sequence[Row[Any]]) -> list[tuple[Any, int, dd.Rule, str]]:
        """The page's applications that pay, each with its attempt number, rule and payee (skips recorded)."""
        run = self.run
        chosen: list[tuple[Any, int]] = []
        for r in rows:
            if run.periodic and not dd.enrolled_by(r.period, run.period):
                continue  # enrolled from a later month: waits, silently
            if r.beneficiary in self.twice and r.id not in self.first:
                continue  # enrolled twice: the first application pays
            attempt = 1
            if r.failed is not None:
                found = dd.next_attempt(
                    [
                        failed
                        for _, failed in await payment_attempts(
                            run.s, dd.payment_key(run.program.id, r.beneficiary, run.period)
                        )
                    ]
                )
                if found is None:
                    continue  # paid again after a bank failure, and that retry stands
                attempt = found
            chosen.append((r, attempt))
        heads = await household_heads(run.s, [r.household_id for r, _ in chosen if not r.person])
        if not run.periodic:
            rules = [(r, a, run.rules.entitled(r.amount_entitled)) for r, a in chosen]
        else:
            rules = await self._periodic_rules(chosen)
        out = []
        for r, attempt, rule in rules:
            if not rule.pays:
                run.tally.skip(f"applications/{r.id}", rule.reasons)
                continue
            out.append(
                (r, attempt, rule, dd.payee_of(r.person, heads.get(f"households/{r.household_id}"), r.household_id))
            )
        return out

    async def _periodic_rules(self, chosen: list[tuple[Any, int]]) -> list[tuple[Any, int, dd.Rule]]:
        run = self.run
        found: dict[str, list[tuple[str, Any, int]]] = {}
        if chosen:  # one query for the page's households
            for hid, kind, since, grade in (
                await run.s.execute(
                    select(
                        SituationProjection.household_id,
                        SituationProjection.kind,
                        SituationProjection.effective_from,
                        SituationProjection.disability_grade,
                    ).where(
                        SituationProjection.household_id.in_(list({r.household_id for r, _ in chosen})),
                        situations_in_force(run.period.start),
                    )
                )
            ).all():
                found.setdefault(hid, []).append((kind, since, grade))
        keyed: list[tuple[Any, int, dd.RuleKey]] = []
        ask: dict[Hashable, dd.RuleInput] = {}
        for r, attempt in chosen:
            situation, grade = dd.situation_of(found.get(r.household_id, ()))
            key = dd.RuleKey(r.village, situation, grade, bool(r.person), self._declared(r.attributes))
            if key not in run.rules and key not in ask:
                ask[key] = dd.RuleInput(
                    r.person, r.beneficiary, r.household_id, r.village, r.attributes, situation, grade
                )
            keyed.append((r, attempt, key))
        await run.rules.ask(ask)
        return [(r, attempt, run.rules[key]) for r, attempt, key in keyed]

    def _declared(self, attributes: str | None) -> str:
        """What the rules read of an application's attributes (all of the text unless declared)."""
        reads = self.run.reads
        text = attributes or ""
        if reads is None:
            return text
        out = self.declared.get(text)
        if out is None:
            out = self.declared[text] = dd.declared_input(dd.parse_attributes(text), reads, self.run.period.start)
        return out

    async def insert(self, page: list[tuple[Any, int, dd.Rule, str]], ids: list[int]) -> None:
        """The page's payments and PaymentsIssued pages (Core executemany through the tables' types: SQLite's
        DateTime and JSON storage forms), and its applications marked PAYMENT_ISSUED."""
        run = self.run
        prefix, suffix = run.key_affixes
        now, fid, jid, bid = run.now, run.program.fund_id, run.journal_id, run.batch_id
        payments, lines, issue = [], [], []
        for pid, (r, attempt, rule, payee) in zip(ids, page, strict=False):
            payments.append(
                {
                    "id": pid,
                    "journal_id": jid,
                    "fund_id": fid,
                    "payment_key": dd.attempt_key(f"{prefix}{r.beneficiary}{suffix}", attempt),
                    "payee": payee,
                    "amount": rule.amount,
                    "created_at": now,
                    "batch_id": bid,
                    "application_id": r.id,
                    "household_id": r.household_id,
                    "village": r.village,
                    "basis_no": run.basis_no(rule),
                }
            )
            lines.append((pid, r.id, r.household_id, payee, r.village, rule.amount))
            if r.state in dd.TO_ISSUE:
                issue.append(r.id)
        events = [
            run.page(*zip(*lines[i : i + dd.EVENT_PAGE], strict=False)) for i in range(0, len(lines), dd.EVENT_PAGE)
        ]
        conn = await run.s.connection()
        await conn.execute(insert(typing.cast(Table, PaymentRow.__table__)), payments)
        await conn.execute(
            insert(typing.cast(Table, OutboxEvent.__table__)),
            [
                {
                    "event_id": eid,
                    "subject": PAGE_SUBJECT,
                    "event_type": PAGE_TYPE,
                    "payload": payload,
                    "headers": {},
                    "created_at": now,
                    "attempts": 0,
                }
                for eid, payload in events
            ],
        )
        if issue:
            await run.issue(run.s, issue)
