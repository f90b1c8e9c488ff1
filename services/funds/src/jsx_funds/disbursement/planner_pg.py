"""The PostgreSQL planner: a batch as a handful of set-based statements in its transaction.

Python touching each of a million rows (read, rule lookup, render, write) was
the batch's cost, so the server does the per-row work and Python only what is
not per row, plus the event pages (bench/monthly_batch, bench/README.md):

1. ``jsx_batch_cand``: every candidate (:meth:`BatchRun.candidates`, the one
   query both planners start from) with its situation on the period's first
   day, its payee, a number ``n`` and a hash of its hook inputs — of the
   declared ones when most applications have inputs of their own — in one
   statement, run by the server's parallel workers. The payment ids are drawn
   for the numbers on a second connection meanwhile (:meth:`_draw_ids`).
2. A bank-failed key's retry number (rare rows); a beneficiary enrolled twice
   keeps the first application that is enrolled by this period, and a
   household with several situations in force is selected again, aggregated
   (both found on a second connection while step 1 runs).
3. The rules, once per distinct input (``GROUP BY`` the hook inputs), their
   answers in ``jsx_batch_rules``.
4. The payments a block range at a time, their PaymentsIssued pages made
   meanwhile; the pages into the outbox, and first-time applications marked
   PAYMENT_ISSUED.

Every business choice is :mod:`jsx_funds.disbursement.domain`'s; the SQL that
computes one is built here from it — the situation order, the payee, the 周岁
and the declared rule input (:func:`declared_sql`, :func:`age_sql`), the key
and its attempt mark — and tested equal to it (``tests/test_disbursement_domain.py``,
``tests/test_planners_equal.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Hashable, Sequence
from datetime import date
from typing import Any, NamedTuple

import psycopg
from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    false,
    func,
    literal,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from jsx_funds.disbursement import domain as dd
from jsx_funds.disbursement.planner import PAGE_SUBJECT, PAGE_TYPE, BatchRun, fault
from jsx_funds.disbursement.tables import PaymentBatchRow, PaymentFailureRow, PaymentRow, payment_attempts
from jsx_funds.programs.tables import ApplicationRow
from jsx_funds.projections.service import situations_in_force
from jsx_funds.projections.tables import HouseholdProjection, SituationProjection
from jsxcore.errors import Aborted
from jsxcore.hookspecs import BirthDateUse, RuleInputs

#: The candidates and the rules' answers of a batch (temporary tables, dropped at commit).
CAND, RULES = "jsx_batch_cand", "jsx_batch_rules"
#: Candidate table blocks per INSERT (~90 000 rows in 8 kB blocks; their pages are made while they are inserted).
CHUNK_BLOCKS = 2000
#: Applications sampled to tell whether most have rule inputs of their own (0: never judge so up front).
SAMPLE = 50_000
#: Distinct raw rule inputs above which a batch groups by what the rules declare they read instead.
RAW_GROUPS = 20_000
#: The hook inputs of a periodic program's candidate (``GROUP BY`` these asks the rules once per distinct input).
RULE_COLUMNS = ("village", "sit", "grade", "per_person", "attributes", "period")
#: The journals' id sequence, which payments share.
_SEQUENCE = "SELECT pg_get_serial_sequence('journals', 'id')"


class _Member(NamedTuple):
    """One application standing for its group of equal hook inputs, read whole."""

    person: str
    beneficiary: str
    household_id: str
    village: str
    attributes: str | None


# ---------------------------------------------------------------- SQL built from the domain's definitions


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (attribute keys are plugin-declared text)."""
    return '"' + name.replace('"', '""') + '"'


def age_sql(birth: str, start: date) -> str:
    """SQL for :func:`~jsx_funds.disbursement.domain.age_text` of the text ``birth`` on ``start``."""
    return (
        f"CASE WHEN {birth} ~ '{dd.BIRTH_DATE_TEXT}' THEN"
        f" ({start.year} - left({birth}, 4)::int - (substr({birth}, 6) > '{start:%m-%d}' COLLATE \"C\")::int)::text"
        f" ELSE quote_nullable({birth}) END"
    )


def declared_sql(reads: RuleInputs, start: date) -> tuple[str, str]:
    """SQL text of a candidate's :func:`~jsx_funds.disbursement.domain.declared_input`, over ``ra`` (its
    attributes parsed by ``json_to_record``), and the record columns ``ra`` needs. ``quote_nullable`` is
    PostgreSQL's own, which :func:`~jsx_funds.disbursement.domain.quote_nullable` mirrors (tested)."""
    keys = sorted(set(reads.attributes) | {"birth_date"})
    parts = [f"quote_nullable(ra.{ident(k)})" for k in sorted(reads.attributes)]
    if reads.birth_date is BirthDateUse.DATE:
        parts.append("quote_nullable(ra.birth_date)")
    elif reads.birth_date is BirthDateUse.AGE_ON_PERIOD_START:
        parts.append(age_sql("ra.birth_date", start))
    listed = ", ".join(parts) or "''"
    return f"concat_ws(',', {listed})", ", ".join(f"{ident(k)} text" for k in keys)


def _situation_position() -> Any:
    """SQL for :func:`~jsx_funds.disbursement.domain.situation_position` of a situation row's kind."""
    return case({k: dd.situation_position(k) for k in dd.SITUATION_ORDER}, value=SituationProjection.kind)


def _payee(head: Any) -> Any:
    """SQL for :func:`~jsx_funds.disbursement.domain.payee_of` (the head looked up only for rows without a person)."""
    return case(
        (ApplicationRow.person != "", ApplicationRow.person),
        else_=func.coalesce(func.nullif(head, ""), literal("households/") + ApplicationRow.household_id),
    )


def _key_sql() -> str:
    """SQL for the stored key of a candidate's attempt (:func:`~jsx_funds.disbursement.domain.attempt_key` of
    :func:`~jsx_funds.disbursement.domain.payment_key`), with the prefix and suffix as parameters."""
    return (
        "%(prefix)s || c.beneficiary || %(suffix)s || CASE WHEN c.attempt > 1 THEN "
        f"'{dd.ATTEMPT_MARK}' || c.attempt::text ELSE '' END"
    )


def _compiled(stmt: Any, conn: Any) -> tuple[str, dict[str, Any]]:
    """``stmt`` as SQL text and parameters for the driver's own cursor."""
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    return str(compiled), compiled.params


def _in(column: Any, values: list[Any], type_: Any) -> Any:
    """``column IN values`` as one array parameter (a chunk of bound values costs more to send)."""
    return column == any_(bindparam(None, values, type_=ARRAY(type_)))


# ---------------------------------------------------------------- the planner


class PostgresPlanner:
    """:class:`~jsx_funds.disbursement.planner.Planner` for PostgreSQL."""

    async def write(self, run: BatchRun) -> None:
        await _SetBased(run).write()


class _SetBased:
    def __init__(self, run: BatchRun) -> None:
        self.run = run
        #: this program's other batches for this period, (id, first payment id, last payment id).
        self.period_batches: Sequence[Any] = []
        #: the candidates were (re)built keyed by the declared inputs.
        self.declared = False
        #: how many candidate rows were numbered (``n`` runs from 1 to this, with gaps where rows left).
        self.numbered = 0
        #: the amount for each paid input hash (``jsx_batch_rules`` as the client knows it), and whether any
        #: candidate is not paid (refused, or enrolled from a later period): then the rows read back include
        #: rows without a payment.
        self.amount_of: dict[int, int] = {}
        self.some_unpaid = False
        self.id_sequence = ""

    async def write(self) -> None:
        run = self.run
        s = run.s
        # The batch journal's id is drawn first; payments draw theirs from the same sequence.
        self.id_sequence = str((await s.execute(text(_SEQUENCE))).scalar_one())
        run.journal_id = int(
            (await s.execute(text("SELECT nextval(CAST(:seq AS regclass))"), {"seq": self.id_sequence})).scalar_one()
        )
        conn = await s.connection()
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        clock, spent = time.perf_counter, run.spent
        t = clock()
        twice = asyncio.ensure_future(self._exceptions(conn.engine))
        drawing: asyncio.Future[tuple[int, int]] | None = None
        try:
            async with raw.cursor() as cur:
                # Room for the hash joins of a million candidates in memory (the default is 4 MB);
                # and no JIT, which spends ~0.6 s compiling a plan this size and runs it no faster.
                await cur.execute("SET LOCAL work_mem = '256MB'")
                await cur.execute("SET LOCAL jit = off")
                self.declared = run.reads is not None and await self._many_inputs(cur)
                self.period_batches = (
                    await s.execute(
                        select(
                            PaymentBatchRow.id, PaymentBatchRow.first_payment_id, PaymentBatchRow.last_payment_id
                        ).where(
                            PaymentBatchRow.program_id == run.program.id,
                            PaymentBatchRow.period == str(run.period),
                            PaymentBatchRow.id != run.batch_id,
                        )
                    )
                ).all()
                sql, params = self._cand_sql(self._candidates(), conn)
                # The statement reads a program's whole enrolment: let the server's parallel workers scan and
                # join it (the planner's default costs keep a million rows in one process; 2.0 → 1.1 s with
                # one worker). max_parallel_workers_per_gather stays the operator's (docs/operations.md).
                await cur.execute("SET LOCAL parallel_setup_cost = 0")
                await cur.execute("SET LOCAL parallel_tuple_cost = 0")
                await cur.execute(f"CREATE TEMP TABLE {CAND} ON COMMIT DROP AS {sql}", params)
                self.numbered = cur.rowcount
                await cur.execute("SET LOCAL parallel_setup_cost TO DEFAULT")
                await cur.execute("SET LOCAL parallel_tuple_cost TO DEFAULT")
                t, spent["select"] = clock(), clock() - t
                dups, several = await twice
                if several:
                    # Households with more than one situation in force came once per situation: again, aggregated.
                    await cur.execute(f"DELETE FROM {CAND} WHERE household_id = ANY(%s)", (several,))
                    sql, params = self._cand_sql(self._candidates(several), conn)
                    await cur.execute(f"INSERT INTO {CAND} {sql}", params)
                    self.numbered += cur.rowcount
                # Every candidate is numbered now: their payment ids are drawn on a second connection
                # while this one goes on (a sequence is not transactional).
                drawing = asyncio.ensure_future(self._draw_ids(conn.engine))
                if dups:
                    await self._first_per_beneficiary(cur, dups)
                # Last: the rows re-selected above come with attempt 1 like the others.
                await self._retries(cur)
                t, spent["retries"] = clock(), clock() - t
                issue = await self._rules(cur)
                t, spent["rules"] = clock(), clock() - t
                await self._write(cur, issue, await drawing)
                if self.declared:
                    run.note = " (keyed as the rules declare)"
        finally:
            for task in (twice, drawing):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _exceptions(self, engine: Any) -> tuple[list[str], list[str]]:
        """The rare rows the candidates statement leaves to fix: beneficiaries with more than one
        application in the program, and households with more than one situation in force on the
        period's first day (supersets of both).

        Read on a second connection while the first builds the candidates. A
        change committed in between (a second application approved, a second
        situation recorded) still pays nobody twice: both rows carry the same
        payment key, and the batch is refused whole (``CONCURRENT_CHANGE``).
        """
        run = self.run
        async with engine.connect() as rc:
            twice = (
                (
                    await rc.execute(
                        select(ApplicationRow.beneficiary)
                        .where(ApplicationRow.program_id == run.program.id)
                        .group_by(ApplicationRow.beneficiary)
                        .having(func.count() > 1)
                    )
                )
                .scalars()
                .all()
            )
            several: Sequence[str] = []
            if run.periodic:
                several = (
                    (
                        await rc.execute(
                            select(SituationProjection.household_id)
                            .where(situations_in_force(run.period.start))
                            .group_by(SituationProjection.household_id)
                            .having(func.count() > 1)
                        )
                    )
                    .scalars()
                    .all()
                )
        return list(twice), list(several)

    def _inputs(self) -> tuple[str, ...]:
        """The candidate columns the rules' answer depends on (``GROUP BY`` these asks once per distinct input)."""
        return RULE_COLUMNS if self.run.periodic else ("amount_entitled",)

    def _candidates(self, several: list[str] | None = None) -> Any:
        """The set-based selection: the candidates with what the rules and the payment need, per row.

        ``sit`` is the situation's position (:func:`~jsx_funds.disbursement.domain.situation_position`) of
        the household's first situation in force on the period's first day (0: none, OTHER) and ``grade``
        the disability grade of its latest SPECIAL_DISABLED situation when that is the one
        (:func:`~jsx_funds.disbursement.domain.situation_of`). Nearly every household has one situation in
        force, so the statement joins them as they are (a row per situation; aggregating a million
        households cost ~1 s more); ``several`` lists the households with more, for which it aggregates
        instead (and selects only those). ``h`` hashes the hook inputs, so the rules' answers join on one
        column (on six, the planner sorted a million rows for a merge join, or hashed them the wrong way round).
        """
        run = self.run
        key = run.key_of(ApplicationRow.beneficiary)
        head = (
            select(HouseholdProjection.head_person)
            .where(HouseholdProjection.household_id == ApplicationRow.household_id)
            .scalar_subquery()
        )
        # Paid already: only this program's batches for this period can hold this period's keys (single payments
        # take applications/… and visits/… keys), so the anti-join reads their id ranges, not every month ever
        # paid (a running program's history: +0.9 s a month of a million, growing). A key paid any other way
        # still stops the INSERT at the UNIQUE index, and the batch is refused whole (CONCURRENT_CHANGE).
        table = PaymentRow.__table__
        paid = (
            select(table.c.id, table.c.payment_key)
            .where(
                or_(
                    false(),
                    *(
                        table.c.batch_id == b
                        if first is None or last is None
                        else and_(table.c.id.between(first, last), table.c.batch_id == b)
                        for b, first, last in self.period_batches
                    ),
                )
            )
            .subquery("paid")
        )
        columns: dict[str, Any] = {
            "app": ApplicationRow.id,
            "household_id": ApplicationRow.household_id,
            "beneficiary": ApplicationRow.beneficiary,
            "village": ApplicationRow.village,
            "period": ApplicationRow.period,
            "state": ApplicationRow.state,
            "per_person": ApplicationRow.person != "",
            "attributes": ApplicationRow.attributes,
            "payee": _payee(head),
            "failed": PaymentFailureRow.payment_id,
            "attempt": literal(1, Integer),
        }
        if not run.periodic:
            # (Every candidate row is written to the temporary table: only what a later step reads.)
            columns["amount_entitled"] = ApplicationRow.amount_entitled
        stmt = run.candidates()
        if self.period_batches:
            stmt = (
                stmt.outerjoin(paid, paid.c.payment_key == key)
                .outerjoin(PaymentFailureRow, PaymentFailureRow.payment_id == paid.c.id)
                # Unpaid, or the first attempt failed at the bank (its retries: _retries).
                .where(paid.c.id.is_(None) | PaymentFailureRow.payment_id.is_not(None))
            )
        else:
            # The period's first batch: nothing of it is paid yet. Joining an empty set still cost ~0.25 s a million.
            columns["failed"] = literal(None, BigInteger)
        if run.periodic:
            disabled = dd.situation_position(dd.DISABLED)
            position = _situation_position()
            in_force = situations_in_force(run.period.start)
            if several is None:
                sits = (
                    select(
                        SituationProjection.household_id,
                        position.label("sit"),
                        SituationProjection.disability_grade.label("grade"),
                    )
                    .where(in_force)
                    .subquery()
                )
            else:
                # Plain aggregates (an ordered string_agg per household cost twice as much): the first
                # situation in the order, and the latest SPECIAL_DISABLED row's grade packed behind its start
                # date so that max() picks it.
                latest = (
                    SituationProjection.effective_from - literal(date(1900, 1, 1))
                ) * 1000 + SituationProjection.disability_grade
                sits = (
                    select(
                        SituationProjection.household_id,
                        func.min(position).label("sit"),
                        (func.max(latest).filter(SituationProjection.kind == dd.DISABLED) % 1000).label("grade"),
                    )
                    .where(in_force, _in(SituationProjection.household_id, several, String))
                    .group_by(SituationProjection.household_id)
                    .subquery()
                )
                stmt = stmt.where(_in(ApplicationRow.household_id, several, String))
            sit = func.coalesce(sits.c.sit, 0)
            columns.update(sit=sit, grade=case((sit == disabled, func.coalesce(sits.c.grade, 0)), else_=0))
            stmt = stmt.outerjoin(sits, sits.c.household_id == ApplicationRow.household_id)
        h = func.hashtextextended(func.concat_ws(literal("\x1f"), *(cast(columns[c], Text) for c in self._inputs())), 0)
        return stmt.with_only_columns(*(v.label(k) for k, v in columns.items()), h.label("h"))

    async def _first_per_beneficiary(self, cur: Any, dups: list[str]) -> None:
        """A beneficiary with several candidate applications keeps the lowest-numbered one that is enrolled
        by this period (:func:`~jsx_funds.disbursement.domain.first_per_beneficiary`; the others — and, for a
        periodic program, any enrolled from a later period, which :meth:`_rules` leaves out — are dropped)."""
        await cur.execute(f"SELECT app, beneficiary, period FROM {CAND} WHERE beneficiary = ANY(%s)", (dups,))
        rows = await cur.fetchall()
        keep = dd.first_per_beneficiary(
            (app, b) for app, b, period in rows if not self.run.periodic or dd.enrolled_by(period, self.run.period)
        )
        drop = [app for app, b, _ in rows if app not in keep]
        if drop:
            await cur.execute(f"DELETE FROM {CAND} WHERE app = ANY(%s)", (drop,))

    async def _retries(self, cur: Any) -> None:
        """Attempt numbers for rows whose first payment failed at the bank; rows whose retry stands are dropped."""
        run = self.run
        await cur.execute(f"SELECT app, beneficiary FROM {CAND} WHERE failed IS NOT NULL")
        drop, again = [], []
        for app, beneficiary in await cur.fetchall():
            attempt = dd.next_attempt(
                [
                    failed
                    for _, failed in await payment_attempts(
                        run.s, dd.payment_key(run.program.id, beneficiary, run.period)
                    )
                ]
            )
            if attempt is None:
                drop.append(app)
            else:
                again.append((attempt, app))
        if drop:
            await cur.execute(f"DELETE FROM {CAND} WHERE app = ANY(%s)", (drop,))
        if again:
            await cur.executemany(f"UPDATE {CAND} SET attempt = %s WHERE app = %s", again)

    async def _rules(self, cur: Any) -> bool:
        """The rules' answers per distinct input into ``jsx_batch_rules`` (``h`` → amount, basis).

        Skipped applications (a rule's 0) are recorded with the rule's
        reasons; rows enrolled from a later period are left out silently.
        Returns whether any paid row's application is still to be marked
        PAYMENT_ISSUED.
        """
        run = self.run
        cols = self._inputs()
        groups = await self._groups(cur, cols)
        if run.reads is not None and not self.declared and len(groups) > RAW_GROUPS:
            # Nearly every mother has inputs of her own (her birth date): ask the rules once per input
            # as their plugins declare they read it (e.g. the age on the period's first day) instead.
            await self._declare_candidates(cur)
            groups = await self._groups(cur, cols)
        if len({g[0] for g in groups}) != len(groups):
            # Two distinct inputs with one 64-bit hash (odds ~1e-12 a batch): never pay by the wrong rule.
            raise RuntimeError("payment batch: hook inputs hash to the same value; rerun the batch")
        n = len(cols)
        answers: list[tuple[int, Hashable | dd.Rule, int]] = []
        ask_apps: dict[Hashable, tuple[int, str, int]] = {}
        declared: dict[str, str] = {}
        for row in groups:
            h, values, (member, to_issue) = row[0], row[1 : 1 + n], row[1 + n :]
            if not run.periodic:
                answers.append((h, run.rules.entitled(values[0]), to_issue))
                continue
            village, sit, grade, per_person, attributes, period = values
            if not dd.enrolled_by(period, run.period):
                continue  # enrolled from a later month
            situation = dd.situation_at(sit)
            # Keyed candidates already hold the declared part of the attributes (_declare_candidates).
            if not self.declared and run.reads is not None:
                if attributes not in declared:
                    declared[attributes] = dd.declared_input(
                        dd.parse_attributes(attributes), run.reads, run.period.start
                    )
                attributes = declared[attributes]
            key = dd.RuleKey(village, situation, grade, per_person, attributes)
            if key not in run.rules and key not in ask_apps:
                ask_apps[key] = (member, situation, grade)
            answers.append((h, key, to_issue))
        if ask_apps:
            # One member's own application stands for each group, read whole: the hooks see its opaque
            # ids (a rule cannot resolve them) and its attributes.
            await cur.execute(
                "SELECT id, person, beneficiary, household_id, village, CAST(attributes AS text)"
                " FROM applications WHERE id = ANY(%s)",
                ([m for m, _, _ in ask_apps.values()],),
            )
            whole = {r[0]: _Member(*r[1:]) for r in await cur.fetchall()}
            await run.rules.ask(
                {k: dd.RuleInput(*whole[m], situation, grade) for k, (m, situation, grade) in ask_apps.items()}
            )
        rows, refused, issue = [], {}, False
        for h, answer, to_issue in answers:
            rule = answer if isinstance(answer, dd.Rule) else run.rules[answer]
            if not rule.pays:
                refused[h] = rule.reasons
                continue
            rows.append((h, rule.amount, run.basis_no(rule)))
            self.amount_of[h] = rule.amount
            issue = issue or to_issue > 0
        self.some_unpaid = len(rows) < len(groups)
        await cur.execute(
            f"CREATE TEMP TABLE {RULES} (h bigint PRIMARY KEY, amount bigint NOT NULL,"
            " basis_no smallint NOT NULL) ON COMMIT DROP"
        )
        async with cur.copy(f"COPY {RULES} FROM STDIN") as cp:
            for row in rows:
                await cp.write_row(row)
        await cur.execute(f"ANALYZE {RULES}")
        if refused:
            await cur.execute(f"SELECT app, h FROM {CAND} WHERE h = ANY(%s) ORDER BY app", (list(refused),))
            for app, h in await cur.fetchall():
                run.tally.skip(f"applications/{app}", refused[h])
        return issue

    async def _groups(self, cur: Any, cols: tuple[str, ...]) -> list[Any]:
        """The candidates' distinct rule inputs: (h, *inputs, one member's application id, how many still to be
        marked PAYMENT_ISSUED). Where the rules declare what they read, no more than ``RAW_GROUPS`` + 1 of them
        are fetched: past that the batch groups by the declaration."""
        # (attributes is json, which has no equality: grouped as its text.)
        listed = ", ".join("CAST(attributes AS text)" if c == "attributes" else c for c in cols)
        groups: list[Any] = []
        async with cur.connection.cursor(name="jsx_batch_groups") as gcur:
            await gcur.execute(
                f"SELECT h, {listed}, min(app),"
                f" count(*) FILTER (WHERE state = ANY(%s)) FROM {CAND} GROUP BY h, {listed}",
                (list(dd.TO_ISSUE),),
            )
            while rows := await gcur.fetchmany(5000):
                groups.extend(rows)
                if self.run.reads is not None and not self.declared and len(groups) > RAW_GROUPS:
                    break
        return groups

    async def _many_inputs(self, cur: Any) -> bool:
        """Whether most of the program's applications have rule inputs of their own (real birth dates),
        judged on up to ``SAMPLE`` of them: then the candidates are keyed by the declared inputs at once."""
        await cur.execute(
            "SELECT count(*), count(DISTINCT (village, CAST(attributes AS text))) FROM (SELECT village,"
            " attributes FROM applications WHERE program_id = %s LIMIT %s) AS s",
            (self.run.program.id, SAMPLE),
        )
        n, distinct = await cur.fetchone()
        return bool(n) and distinct > n // 2

    def _cand_sql(self, candidates: Any, conn: Any) -> tuple[str, dict[str, Any]]:
        """The candidates' SQL, keyed by the declared rule inputs when :attr:`declared` (see
        :meth:`_declared_select`), each row numbered ``n`` after the rows already numbered (its payment id
        will be ``n`` + the batch's base, :meth:`_draw_ids`). Numbered on top, so that everything below can
        run in parallel workers."""
        sql, params = _compiled(candidates, conn)
        if self.declared:
            # (a ColumnCollection iterates its columns: the names are its keys)
            keep = [k for k in candidates.selected_columns.keys() if k not in ("h", "attributes")]  # noqa: SIM118
            sql = self._declared_select(keep, f"({sql})")
        # Numbered in application order, as the SQLite planner pays: payment ids (and so the bank file's
        # 序号) follow the applications, whatever order parallel workers return the rows in.
        return f"SELECT c.*, row_number() OVER (ORDER BY c.app) + {int(self.numbered)} AS n FROM ({sql}) AS c", params

    def _declared_select(self, keep: list[str], source: str) -> str:
        """``source``'s candidates with ``h`` hashing the declared rule inputs and ``attributes`` holding their
        text (:func:`declared_sql`) — computed once per candidate, so the rules' answers join on ``h`` as ever."""
        reads = self.run.reads
        assert reads is not None
        text_, columns = declared_sql(reads, self.run.period.start)
        h = (
            "hashtextextended(concat_ws(E'\\x1f', c.village, c.sit::text, c.grade::text, c.per_person::text, c.t,"
            " c.period), 0)"
        )
        listed = ", ".join(f"c.{ident(k)}" for k in keep)
        # OFFSET 0 keeps the inner query whole: flattened, the text would be computed twice (for h and for itself).
        return (
            f"SELECT {listed}, c.t AS attributes, {h} AS h FROM (SELECT {listed}, {text_} AS t FROM {source} AS c"
            f" CROSS JOIN LATERAL json_to_record(c.attributes) AS ra({columns}) OFFSET 0) AS c"
        )

    async def _declare_candidates(self, cur: Any) -> None:
        """Rebuild ``jsx_batch_cand`` keyed by the declared rule inputs (when the sample did not foresee it)."""
        await cur.execute(
            f"SELECT attname FROM pg_attribute WHERE attrelid = '{CAND}'::regclass AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum"
        )
        keep = [c for (c,) in await cur.fetchall() if c not in ("h", "attributes")]
        self.declared = True
        await cur.execute(f"CREATE TEMP TABLE {CAND}_declared ON COMMIT DROP AS {self._declared_select(keep, CAND)}")
        await cur.execute(f"DROP TABLE {CAND}")
        await cur.execute(f"ALTER TABLE {CAND}_declared RENAME TO {CAND}")

    async def _write(self, cur: Any, issue: bool, drawn: tuple[int, int]) -> None:
        """The payments, their PaymentsIssued pages, and the applications.

        A block range of the candidates at a time (``ctid``, a TID range
        scan): its rows are read into the client, then its INSERT is sent,
        and Python makes their pages from the rows already here while the
        server inserts — the two cores work at once, and nothing is sent
        back per inserted row (``RETURNING`` cost ~1 s a million). A
        candidate's payment id is ``base + n`` (:meth:`_base`). The rows read come
        without their amounts: the client knows each input hash's amount
        (:attr:`amount_of`), and joining the rules a second time per range
        cost the server ~0.3 s a million.
        """
        run = self.run
        clock, spent = time.perf_counter, run.spent
        t = clock()
        base = await self._base(cur, *drawn)
        paying = f"FROM {CAND} c JOIN {RULES} r ON r.h = c.h"
        prefix, suffix = run.key_affixes
        params = {
            "prefix": prefix,
            "suffix": suffix,
            "base": base,
            "journal": run.journal_id,
            "fund": run.program.fund_id,
            "now": run.now,
            "batch": run.batch_id,
        }
        await cur.execute(f"SELECT pg_relation_size('{CAND}') / current_setting('block_size')::int + 1")
        blocks = (await cur.fetchone())[0]
        events: list[tuple[str, bytes]] = []
        lines: list[tuple[Any, ...]] = []
        amount_of, some_unpaid = self.amount_of, self.some_unpaid
        conn = cur.connection

        def pages(lines: Sequence[tuple[Any, ...]]) -> tuple[str, bytes]:
            ids, apps, households, payees, villages, hashes = zip(*lines, strict=False)
            return run.page(ids, apps, households, payees, villages, [amount_of[h] for h in hashes])

        # Binary rows: the integers arrive without text parsing.
        async with conn.cursor(binary=True) as rows_cur:
            for first in range(0, blocks, CHUNK_BLOCKS):
                where = f" WHERE c.ctid >= '({first},0)'::tid AND c.ctid < '({first + CHUNK_BLOCKS},0)'::tid"
                await rows_cur.execute(
                    f"SELECT c.n + %(base)s, c.app, c.household_id, c.payee, c.village, c.h FROM {CAND} c{where}",
                    {"base": base},
                )
                inserting = asyncio.ensure_future(
                    cur.execute(
                        "INSERT INTO payments (id, journal_id, fund_id, payment_key, payee, amount, created_at, batch_id,"
                        " application_id, household_id, village, basis_no)"
                        f" SELECT c.n + %(base)s, %(journal)s, %(fund)s, {_key_sql()}, c.payee, r.amount, %(now)s, %(batch)s,"
                        f" c.app, c.household_id, c.village, r.basis_no {paying}{where}",
                        params,
                    )
                )
                try:
                    await asyncio.sleep(0)  # let it send the INSERT
                    lines.extend(await rows_cur.fetchall())  # already here: no round trip
                    if some_unpaid:
                        lines = [line for line in lines if line[5] in amount_of]
                    full = len(lines) - len(lines) % dd.EVENT_PAGE
                    events.extend(pages(lines[i : i + dd.EVENT_PAGE]) for i in range(0, full, dd.EVENT_PAGE))
                    lines = lines[full:]
                finally:
                    try:
                        await inserting
                    except psycopg.errors.UniqueViolation:
                        # Two candidate rows with one payment key: a second application or situation committed
                        # while the candidates were read (see _exceptions). Nothing is written; a rerun sees it.
                        raise Aborted(
                            "发放批次执行期间有申请或家庭情况发生变更，本批次未支付任何款项，请重新发起本批次",
                            reason="CONCURRENT_CHANGE",
                        ) from None
                fault("batch.after_chunk")
        if lines:
            events.append(pages(lines))
        t, spent["insert"] = clock(), clock() - t
        if events:
            # Payloads as binary parameters: COPY's text form doubles each ~100 kB page into hex.
            await cur.executemany(
                "INSERT INTO outbox (event_id, subject, event_type, payload, headers, created_at, attempts)"
                " VALUES (%s, %s, %s, %b, '{}', %s, 0)",
                [(eid, PAGE_SUBJECT, PAGE_TYPE, payload, run.now) for eid, payload in events],
            )
        t2 = clock()
        if issue:
            # One statement: the first-time applications among those paid (a program's first month is all of them).
            cand, rules = table(CAND, column("app"), column("h"), column("state")), table(RULES, column("h"))
            await run.issue(
                run.s, select(cand.c.app).join(rules, rules.c.h == cand.c.h).where(cand.c.state.in_(dd.TO_ISSUE))
            )
        spent["outbox"] = t2 - t
        spent["issue"] = clock() - t2

    async def _draw_ids(self, engine: Any) -> tuple[int, int]:
        """Draw as many ids as candidates were numbered from the journals' sequence (payments share its id
        space), in one statement on a connection of its own; returns the lowest and highest drawn."""
        async with engine.connect() as c:
            lo, hi = (
                await c.execute(
                    text(
                        f"SELECT min(v), max(v) FROM (SELECT nextval({self._seq()}) AS v"
                        " FROM generate_series(1, :n)) AS s"
                    ),
                    {"n": self.numbered},
                )
            ).one()
        return lo, hi

    async def _base(self, cur: Any, lo: int | None, hi: int | None) -> int:
        """The base that makes candidate ``n``'s payment id ``base + n``.

        Nearly always nobody else drew journal ids while :meth:`_draw_ids`
        did, and the drawn ids are one unbroken range: the base is its start
        (the payment file then numbers lines by id, see ``domain.unbroken``).
        If another transaction drew meanwhile, ours are scattered: each
        candidate then draws its own instead (a rewrite of the table; the
        first draw's ids are left unused, as a rolled-back batch leaves its
        ids).
        """
        if lo is not None and hi is not None and contiguous(lo, hi, self.numbered):
            return int(lo) - 1
        await cur.execute(f"UPDATE {CAND} SET n = nextval({self._seq()})")
        return 0

    def _seq(self) -> str:
        """The journals' id sequence as an SQL constant (``pg_get_serial_sequence`` per row cost 6 s a million)."""
        return "'" + self.id_sequence.replace("'", "''") + "'::regclass"


def contiguous(lo: int, hi: int, n: int) -> bool:
    """Whether ``n`` ids drawn from ``lo`` to ``hi`` are one unbroken range."""
    return hi - lo + 1 == n
