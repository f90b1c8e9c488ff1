"""``jsx funds verify`` on a healthy ledger and on one corrupted behind the service's back."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jsx_funds.disbursement.service import DisbursementService
from jsx_funds.ledger import service as S
from jsx_funds.ledger import verify as V
from jsx_funds.ledger.service import LedgerService
from jsxcore.db import transaction
from jsxcore.values import Money

#: runs `jsx funds verify` as a subprocess (~8 s)
pytestmark = pytest.mark.slow


def run_verify(db_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jsxcore.cli", "funds", "verify", "--database-url", db_url],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_verify_passes_then_reports_corruption(
    svc: LedgerService, kit: Any, engine: AsyncEngine, db_url: str, api: Any, disbursement: DisbursementService
) -> None:
    fund, src = await kit.make_fund(), await kit.make_source()
    await kit.allocate(fund, src, 1000_00)
    await api.RecordDonation(kit.donation_request(fund, 10_00))
    async with transaction(svc.sessions) as s:
        c = await S.commit(s, fund, Money(300_00), actor="t")
        _, p = await disbursement.pay(
            s,
            fund,
            Money(200_00),
            payment_key="applications/1",
            payee="households/1",
            actor="t",
            commitment_id=c.journal.id,
        )
        await disbursement.return_payment(s, p.journal_id, Money(50_00), actor="bank", reason="卡号错误")
    async with svc.sessions() as s:
        assert await V.verify(s) == []
    from jsx_funds.entrypoints.cli import _verify

    assert await _verify(argparse.Namespace(database_url=db_url)) == 0

    # Someone writes a one-sided journal straight into the database.
    async with engine.begin() as conn:
        acc = (await conn.execute(text(f"SELECT id FROM accounts WHERE code = '{fund}:AVAILABLE'"))).scalar_one()
        await conn.execute(
            text(
                "INSERT INTO journals (id, fund_id, kind, amount, request_id, memo, actor, reference, counterparty, created_at)"
                f" VALUES (9999, {fund}, 'ALLOCATION', 500, '', '', 'intruder', '', '', CURRENT_TIMESTAMP)"
            )
        )
        await conn.execute(
            text(f"INSERT INTO ledger_entries (journal_id, account_id, side, amount) VALUES (9999, {acc}, 'D', 500)")
        )
    bad = run_verify(db_url)
    assert bad.returncode == 1
    assert f"账目 funds/{fund}/ledgerEntries/9999" in bad.stderr
    assert "只有 1 条分录" in bad.stderr and "借方 5.00 元 ≠ 贷方 0.00 元" in bad.stderr
    assert f"基金 funds/{fund}: 借方合计" in bad.stderr
