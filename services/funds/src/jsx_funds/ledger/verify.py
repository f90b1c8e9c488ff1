"""``verify``: prove the ledger's invariants from the stored rows (``jsx funds verify``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from jsx_funds.adapters import bus
from jsx_funds.disbursement.tables import PaymentFailureRow, PaymentRow
from jsx_funds.ledger import domain as d
from jsx_funds.ledger import tables as t
from jsx_funds.ledger.tables import AccountRow, DonationRow, EntryRow, FundRow, JournalRow

# ---------------------------------------------------------------- invariant check


@dataclass(frozen=True)
class Problem:
    """One broken ledger invariant, described for an accountant."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


async def verify(session: AsyncSession) -> list[Problem]:
    """Prove the ledger's invariants from the stored rows; return every violation found.

    * each journal has ≥ 2 entries, debits = credits = its header amount, and
      every entry is on an account of the journal's fund;
    * per fund, Σdebits = Σcredits;
    * every payment has its PAYMENT journal (its own, or its batch's) whose
      EXPENSE debit equals the sum of the payments it carries; every donation
      its DONATION journal of its amount; a payment the bank failed has a
      PAYMENT_RETURN journal taking its whole amount back out of EXPENSE;
    * a reversal's entries mirror the journal it reverses;
    * no account ends on the wrong side of zero (available may, where the
      fund allows it);
    * donation receipt numbers per region and year are 1…N with no gap.
    """
    problems: list[Problem] = []
    debit = func.coalesce(func.sum(case((EntryRow.side == "D", EntryRow.amount), else_=0)), 0)
    credit = func.coalesce(func.sum(case((EntryRow.side == "C", EntryRow.amount), else_=0)), 0)
    net = func.coalesce(func.sum(case((EntryRow.side == "D", EntryRow.amount), else_=-EntryRow.amount)), 0)

    rows = (
        await session.execute(
            select(
                JournalRow.id,
                JournalRow.fund_id,
                JournalRow.kind,
                JournalRow.amount,
                func.count(EntryRow.id),
                debit,
                credit,
            )
            .select_from(JournalRow)
            .outerjoin(EntryRow, EntryRow.journal_id == JournalRow.id)
            .group_by(JournalRow.id, JournalRow.fund_id, JournalRow.kind, JournalRow.amount)
        )
    ).all()
    for jid, fid, kind, amount, n, dr, cr in rows:
        where = f"账目 {bus.entry_name(fid, jid)}（{kind}）"
        if n < 2:
            problems.append(Problem(where, f"只有 {n} 条分录，复式记账至少需要 2 条"))
        if dr != cr:
            problems.append(Problem(where, f"借方 {d.yuan(dr)} 元 ≠ 贷方 {d.yuan(cr)} 元"))
        if dr != amount:
            problems.append(Problem(where, f"分录借方合计 {d.yuan(dr)} 元与凭证金额 {d.yuan(amount)} 元不符"))

    for jid, fid, afund in (
        await session.execute(
            select(JournalRow.id, JournalRow.fund_id, AccountRow.fund_id)
            .join(EntryRow, EntryRow.journal_id == JournalRow.id)
            .join(AccountRow, AccountRow.id == EntryRow.account_id)
            .where(AccountRow.fund_id != JournalRow.fund_id)
        )
    ).all():
        problems.append(Problem(f"账目 {bus.entry_name(fid, jid)}", f"含有基金 funds/{afund} 的分录"))

    for fid, dr, cr in (
        await session.execute(
            select(AccountRow.fund_id, debit, credit)
            .select_from(EntryRow)
            .join(AccountRow, AccountRow.id == EntryRow.account_id)
            .group_by(AccountRow.fund_id)
        )
    ).all():
        if dr != cr:
            problems.append(Problem(f"基金 funds/{fid}", f"借方合计 {d.yuan(dr)} 元 ≠ 贷方合计 {d.yuan(cr)} 元"))

    # Every payment's journal exists, is a PAYMENT journal of its fund, and its
    # EXPENSE debit is exactly the sum of the payments it carries (one for a
    # payment made on its own, a whole batch for a batch journal).
    per_journal = (
        select(
            PaymentRow.journal_id.label("jid"),
            PaymentRow.fund_id.label("fid"),
            func.count().label("n"),
            func.sum(PaymentRow.amount).label("amt"),
        )
        .group_by(PaymentRow.journal_id, PaymentRow.fund_id)
        .subquery()
    )
    expense_debits = (
        select(EntryRow.journal_id.label("jid"), func.sum(EntryRow.amount).label("amt"))
        .join(AccountRow, AccountRow.id == EntryRow.account_id)
        .where(AccountRow.kind == "EXPENSE", EntryRow.side == "D")
        .group_by(EntryRow.journal_id)
        .subquery()
    )
    for jid, fid, n, amount, kind, jfund, booked in (
        await session.execute(
            select(
                per_journal.c.jid,
                per_journal.c.fid,
                per_journal.c.n,
                per_journal.c.amt,
                JournalRow.kind,
                JournalRow.fund_id,
                expense_debits.c.amt,
            )
            .outerjoin(JournalRow, JournalRow.id == per_journal.c.jid)
            .outerjoin(expense_debits, expense_debits.c.jid == per_journal.c.jid)
        )
    ).all():
        what = f"支付 {bus.payment_name(fid, jid)}" if n == 1 else f"账目 {bus.entry_name(fid, jid)} 的 {n} 笔支付"
        if kind is None:
            problems.append(Problem(what, f"没有对应的支出凭证 {jid}"))
        elif kind != "PAYMENT" or jfund != fid or int(booked or 0) != int(amount):
            problems.append(
                Problem(
                    what,
                    f"支付金额合计 {d.yuan(int(amount))} 元，但支出分录为 {d.yuan(int(booked or 0))} 元"
                    + ("" if jfund == fid else f"（凭证属于基金 funds/{jfund}）"),
                )
            )

    # A payment the bank failed: a PAYMENT_RETURN journal gave its whole amount back out of EXPENSE.
    returned = (
        select(EntryRow.journal_id.label("jid"), func.sum(EntryRow.amount).label("amt"))
        .join(AccountRow, AccountRow.id == EntryRow.account_id)
        .where(AccountRow.kind == "EXPENSE", EntryRow.side == "C")
        .group_by(EntryRow.journal_id)
        .subquery()
    )
    for pid, fid, amount, rkind, back in (
        await session.execute(
            select(PaymentFailureRow.payment_id, PaymentRow.fund_id, PaymentRow.amount, JournalRow.kind, returned.c.amt)
            .join(PaymentRow, PaymentRow.id == PaymentFailureRow.payment_id)
            .join(JournalRow, JournalRow.id == PaymentFailureRow.return_journal_id)
            .outerjoin(returned, returned.c.jid == PaymentFailureRow.return_journal_id)
        )
    ).all():
        if rkind != d.JournalKind.PAYMENT_RETURN.value or int(back or 0) != amount:
            problems.append(
                Problem(
                    f"支付 {bus.payment_name(fid, pid)}",
                    f"银行已退回 {d.yuan(amount)} 元，但退款凭证为 {rkind}，冲减支出 {d.yuan(int(back or 0))} 元",
                )
            )

    for jid, fid, amount, kind, jamount in (
        await session.execute(
            select(
                DonationRow.journal_id, DonationRow.fund_id, DonationRow.amount, JournalRow.kind, JournalRow.amount
            ).join(JournalRow, JournalRow.id == DonationRow.journal_id)
        )
    ).all():
        if kind != "DONATION" or jamount != amount:
            problems.append(Problem(f"捐赠 {bus.donation_name(fid, jid)}", f"捐赠 {d.yuan(amount)} 元与入账凭证不符"))

    for rid_, fid, orig in (
        await session.execute(
            select(JournalRow.id, JournalRow.fund_id, JournalRow.reverses_id).where(JournalRow.reverses_id.is_not(None))
        )
    ).all():
        assert orig is not None  # the query selects reversals only
        mine = Counter((ln.account, ln.side.value, ln.amount.fen) for ln in await t.journal_lines(session, rid_))
        theirs = Counter(
            (ln.account, ln.side.flip().value, ln.amount.fen) for ln in await t.journal_lines(session, orig)
        )
        if mine != theirs:
            problems.append(Problem(f"冲正 {bus.entry_name(fid, rid_)}", f"分录与被冲正账目 {orig} 不是相反的镜像"))

    funds = dict((await session.execute(select(FundRow.id, FundRow.allow_negative))).all())
    for fid, kind, sid, cid, pid, bal in (
        await session.execute(
            select(
                AccountRow.fund_id,
                AccountRow.kind,
                AccountRow.source_id,
                EntryRow.commitment_id,
                EntryRow.payment_id,
                net,
            )
            .select_from(EntryRow)
            .join(AccountRow, AccountRow.id == EntryRow.account_id)
            .group_by(
                AccountRow.fund_id, AccountRow.kind, AccountRow.source_id, EntryRow.commitment_id, EntryRow.payment_id
            )
        )
    ).all():
        ak = d.AccountKind(kind)
        normal = bal if ak.debit_normal else -bal
        if normal < 0 and not (ak is d.AccountKind.AVAILABLE and funds.get(fid)):
            what = {
                "AVAILABLE": "可用余额",
                "COMMITTED": f"预留 {cid}",
                "EXPENSE": f"支付 {pid}",
                "INCOME": f"来源 fundSources/{sid} 的收入",
            }[kind]
            problems.append(Problem(f"基金 funds/{fid}", f"{what} 为负数（{d.yuan(normal)} 元）"))

    counters = {
        (r, y): n
        for r, y, n in (
            await session.execute(
                select(t.ReceiptCounterRow.region, t.ReceiptCounterRow.year, t.ReceiptCounterRow.last_no)
            )
        ).all()
    }
    issued: dict[tuple[str, int], list[int]] = {}
    for region, no in (
        await session.execute(
            select(FundRow.region, DonationRow.receipt_no).join(FundRow, FundRow.id == DonationRow.fund_id)
        )
    ).all():
        _, year, seq = no.rsplit("-", 2)
        issued.setdefault((region, int(year)), []).append(int(seq))
    for key in set(issued) | set(counters):
        seqs = sorted(issued.get(key, []))
        if seqs != list(range(1, counters.get(key, 0) + 1)):
            problems.append(
                Problem(f"收据 {key[0]}-{key[1]}", f"编号不连续：计数器 {counters.get(key, 0)}，已开 {len(seqs)} 张")
            )
    return problems
