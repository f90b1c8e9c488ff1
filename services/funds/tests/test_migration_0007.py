"""Migration 0007 on a database that already holds money: what the previous release wrote survives.

The rows are written in the 0006 shape (a journal per batch payment, the
bank's answer on ``batch_payments``), then the database is upgraded to head
and read through today's code: the ledger still proves out, the batch
reconciles, the bank's answers are where the API shows them, and new
payments and batches go on from there without colliding with the old ids.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from jsx.funds.v1 import funds_pb2 as pb
from jsx_funds.adapters.db import migrate
from jsx_funds.disbursement.tables import PaymentBatchRow, PaymentRow
from jsx_funds.entrypoints.grpc import compose
from jsx_funds.ledger.verify import verify
from jsxcore.db import create_engine, session_factory
from jsxcore.plugins import PluginHost
from jsxcore.values import Money

NOW = "2022-08-20 08:00:00+00:00"
KEY = "programs/1/beneficiaries/persons/{}/periods/2022-08"  # as keys were written before 0012
SHORT_KEY = "1/persons/{}/2022-08"  # since 0012


async def _old_rows(conn: Any) -> None:
    """A 洪江 fund with 10 000 元, and a 2022-08 batch of two payments: one paid, one failed and returned."""
    stmts = [
        "INSERT INTO funds (id, name, kind, region, owner, allow_negative, description, version, created_at, created_by)"
        " VALUES (1, '特别扶助资金', 'PROGRAM', '431281', '', false, '', 5, :now, '')",
        "INSERT INTO fund_sources (id, name, kind, region, reference, created_at) VALUES (1, '省财政', 'PROVINCE_FINANCE', '431281', '', :now)",
        "INSERT INTO accounts (id, fund_id, kind, source_id, code) VALUES (1, 1, 'AVAILABLE', NULL, '1:AVAILABLE'),"
        " (2, 1, 'INCOME', 1, '1:INCOME:1'), (3, 1, 'EXPENSE', NULL, '1:EXPENSE')",
        "INSERT INTO journals (id, fund_id, kind, amount, reference, counterparty, request_id, memo, actor, created_at) VALUES"
        " (1, 1, 'ALLOCATION', 1000000, '', 'fundSources/1', '', '', 'fin', :now),"
        " (2, 1, 'PAYMENT', 94000, '', 'persons/a', '', '', 'fin', :now),"
        " (3, 1, 'PAYMENT', 58000, '', 'persons/b', '', '', 'fin', :now),"
        " (4, 1, 'PAYMENT_RETURN', 58000, '', 'funds/1/payments/3', '', '银行退回：账户已销户', 'fin', :now)",
        "INSERT INTO ledger_entries (id, journal_id, account_id, side, amount, commitment_id, payment_id) VALUES"
        " (1, 1, 1, 'D', 1000000, NULL, NULL), (2, 1, 2, 'C', 1000000, NULL, NULL)",
        "INSERT INTO payments (journal_id, fund_id, payment_key, payee, amount, commitment_id, created_at) VALUES"
        f" (2, 1, '{KEY.format('a')}', 'persons/a', 94000, NULL, :now), (3, 1, '{KEY.format('b')}', 'persons/b', 58000, NULL, :now)",
        "INSERT INTO ledger_entries (id, journal_id, account_id, side, amount, commitment_id, payment_id) VALUES"
        " (3, 2, 3, 'D', 94000, NULL, 2), (4, 2, 1, 'C', 94000, NULL, NULL),"
        " (5, 3, 3, 'D', 58000, NULL, 3), (6, 3, 1, 'C', 58000, NULL, NULL),"
        " (7, 4, 1, 'D', 58000, NULL, NULL), (8, 4, 3, 'C', 58000, NULL, 3)",
        "INSERT INTO programs (id, name, type, custom_type, region, fund_id, beneficiary, approval_levels, publicity_days,"
        " year, budget, description, created_at, created_by) VALUES (1, '2022年洪江市计生特别扶助', 'SPECIAL_SUPPORT', '',"
        " '431281', 1, 'PERSON', '', 0, 2022, 0, '', :now, 'clerk')",
        "INSERT INTO applications (id, program_id, household_id, person, beneficiary, village, period, amount_requested,"
        " amount_entitled, state, chain, publicity_days, publicity_working_days, provenance, attributes, created_by,"
        " created_at, updated_at) VALUES"
        " (1, 1, 'h1', 'persons/a', 'persons/a', '431281101201', '2022-08', 0, 94000, 'PAID', 'VILLAGE', 7, false, '[]', '{}', 'clerk', :now, :now),"
        " (2, 1, 'h2', 'persons/b', 'persons/b', '431281101201', '2022-08', 0, 58000, 'PAYMENT_FAILED', 'VILLAGE', 7, false, '[]', '{}', 'clerk', :now, :now)",
        "INSERT INTO payment_batches (id, program_id, region, period, skipped, actor, request_id, created_at)"
        " VALUES (1, 1, '431281', '2022-08', '[]', 'fin', 'r1', :now)",
        "INSERT INTO batch_payments (payment_id, batch_id, application_id, household_id, payee, village, amount, basis, state,"
        " bank_reference, failure_reason, paid_date, settled_at) VALUES"
        " (2, 1, 1, 'h1', 'persons/a', '431281101201', 94000, '[\"洪江 940 元\"]', 'PAID', 'B-0001', '', '2022-08-25', :now),"
        " (3, 1, 2, 'h2', 'persons/b', '431281101201', 58000, '[\"洪江 580 元\"]', 'FAILED', '', '账户已销户', NULL, :now)",
        "INSERT INTO payment_failures (payment_id, return_journal_id, reason, actor, failed_at) VALUES (3, 4, '账户已销户', 'fin', :now)",
    ]
    for stmt in stmts:
        await conn.execute(text(stmt), {"now": NOW} if ":now" in stmt else {})
    if conn.dialect.name == "postgresql":  # explicit ids above: move the sequences past them
        for table in ("journals", "ledger_entries", "applications", "payment_batches"):
            await conn.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            )


async def test_money_written_before_0007_survives_it(db_url: str) -> None:
    await asyncio.to_thread(migrate, db_url, "0006")
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await _old_rows(conn)
        await engine.dispose()
        await asyncio.to_thread(migrate, db_url)
        sessions = session_factory(engine)
        svc = compose(sessions, PluginHost(), clock=lambda: datetime(2022, 9, 20, tzinfo=UTC)).disbursement

        async with sessions() as s:
            assert [str(p) for p in await verify(s)] == []
            old = [await s.get(PaymentRow, 2), await s.get(PaymentRow, 3)]
            assert [(p.id, p.journal_id, p.batch_id, p.application_id, p.village, p.basis) for p in old if p] == [
                (2, 2, 1, 1, "431281101201", ["洪江 940 元"]),
                (3, 3, 1, 2, "431281101201", ["洪江 580 元"]),
            ]
            batch = await s.get(PaymentBatchRow, 1)
            assert batch is not None
            assert (batch.first_payment_id, batch.last_payment_id) == (2, 3)
        rec = await svc.get_reconciliation(1, caller=None)
        assert rec.balanced, list(rec.discrepancies)
        assert (rec.paid_count, rec.failed_count, rec.pending_count, rec.ledger_total.fen) == (1, 1, 0, 94000)

        listed = {p.name: p for p in (await svc.list_payments(1, caller=None)).payments}
        assert listed["paymentBatches/1/payments/2"].bank_reference == "B-0001"
        assert listed["paymentBatches/1/payments/2"].paid_date.day == 25
        assert listed["paymentBatches/1/payments/3"].failure_reason == "账户已销户"
        assert {p.state for p in listed.values()} == {pb.PAYMENT_STATE_PAID, pb.PAYMENT_STATE_FAILED}

        # 0012 shortened the keys; the failed one is found under its new form and paid again (key#2),
        # and a payment on its own takes a fresh id.
        assert [p.payment_key for p in old if p] == [SHORT_KEY.format("a"), SHORT_KEY.format("b")]
        async with sessions.begin() as s:
            _, again = await svc.pay(
                s, 1, Money(58000), payment_key=SHORT_KEY.format("b"), payee="persons/b", actor="fin"
            )
        assert again.payment_key == SHORT_KEY.format("b") + "#2" and again.id == again.journal_id and again.id > 4
        async with sessions() as s:
            assert [str(p) for p in await verify(s)] == []
            assert (await s.execute(text("SELECT count(*) FROM payments"))).scalar_one() == 3
    finally:
        await engine.dispose()
