"""Property-based test: a hypothesis state machine drives the ledger through
allocations, donations, commitments, payments, returns, releases and
reversals against a real database, and after every step checks

* the outcome (success, or FailedPrecondition with nothing posted) against a
  simple independent model of the balances;
* balances derived from entries equal the model's;
* ``verify`` finds nothing wrong (balanced journals and funds, payments with
  entries, mirrored reversals, gap-free receipts).

Each example works on a fresh fund in one migrated database, so examples are
independent without re-migrating.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2
from jsx_funds import SERVICE_NAME
from jsx_funds.adapters.db import migrate
from jsx_funds.entrypoints.grpc import compose
from jsx_funds.ledger import domain as d
from jsx_funds.ledger import service as S
from jsx_funds.ledger import verify as V
from jsx_funds.ledger import wire as lw
from jsxcore.db import create_engine, session_factory, transaction
from jsxcore.errors import FailedPrecondition
from jsxcore.plugins import PluginHost
from jsxcore.testing.helpers import rid
from jsxcore.usecase import Idem
from jsxcore.values import Money, RegionCode

#: a hypothesis state machine over a real database (~8 s)
pytestmark = pytest.mark.slow

amounts = st.integers(min_value=1, max_value=50_000_00)


def idem(req: funds_pb2.PostAllocationRequest) -> Idem:
    return Idem.of(SERVICE_NAME, "PostAllocation", req)


def run_machine(db_url: str, max_examples: int) -> None:
    migrate(db_url)
    loop = asyncio.new_event_loop()
    engine = create_engine(db_url)
    contexts = compose(session_factory(engine), PluginHost())
    svc, payments = contexts.ledger, contexts.disbursement
    run = loop.run_until_complete

    class Ledger(RuleBasedStateMachine):
        commitments = Bundle("commitments")
        payments = Bundle("payments")
        journals = Bundle("journals")

        @initialize(allow_negative=st.booleans())
        def open_fund(self, allow_negative: bool) -> None:
            self.allow_negative = allow_negative
            fund = run(
                svc.create_fund(
                    d.NewFund(
                        name="性质测试基金",
                        kind=d.FundKind.PROGRAM,
                        region=RegionCode.parse("431281"),
                        allow_negative=allow_negative,
                    ),
                    caller=None,
                    idem=None,
                )
            )
            self.fund = int(fund.name.split("/")[1])
            src = run(
                svc.create_fund_source(
                    d.NewSource(name="省财政", kind=d.SourceKind.PROVINCE_FINANCE, region=RegionCode.parse("430000")),
                    caller=None,
                    idem=None,
                )
            )
            self.source = int(src.name.split("/")[1])
            # model: key → Σdebit − Σcredit; keys ("A",), ("C", id), ("E", id), ("I", source id)
            self.model: dict[tuple[Any, ...], int] = {}
            self.effects: dict[int, dict[tuple[Any, ...], int]] = {}
            self.reversed: set[int] = set()
            self.last_allocation: funds_pb2.PostAllocationRequest | None = None

        # -- model helpers

        def ok(self, deltas: dict[tuple[Any, ...], int]) -> bool:
            for key, delta in deltas.items():
                after = self.model.get(key, 0) + delta
                normal = -after if key[0] == "I" else after
                if normal < 0 and not (key == ("A",) and self.allow_negative):
                    return False
            return True

        def apply(self, journal_id: int, deltas: dict[tuple[Any, ...], int]) -> None:
            for key, delta in deltas.items():
                self.model[key] = self.model.get(key, 0) + delta
            self.effects[journal_id] = deltas

        def attempt(self, deltas: dict[tuple[Any, ...], int], action: Any) -> Any:
            """Run ``action``; it must succeed exactly when the model says the posting is allowed."""
            expect = self.ok(deltas)
            try:
                result = run(action())
            except FailedPrecondition:
                assert not expect, f"refused a valid posting {deltas}"
                return None
            assert expect, f"accepted a posting that overdraws: {deltas}"
            return result

        # -- rules

        @rule(target=journals, fen=amounts)
        def allocate(self, fen: int) -> int:
            req = funds_pb2.PostAllocationRequest(
                fund=f"funds/{self.fund}",
                source=f"fundSources/{self.source}",
                amount=common_pb2.Money(fen=fen),
                request_id=rid(),
            )
            entry = run(svc.post_allocation(lw.read_allocation(req), caller=None, idem=idem(req)))
            self.last_allocation = req
            jid = int(entry.name.rsplit("/", 1)[1])
            self.apply(jid, {("A",): fen, ("I", self.source): -fen})
            return jid

        @rule()
        def retry_last_allocation(self) -> None:
            if self.last_allocation is not None:
                req = self.last_allocation  # idempotent: the model must not move
                run(svc.post_allocation(lw.read_allocation(req), caller=None, idem=idem(req)))

        @rule(target=journals, fen=amounts)
        def donate(self, fen: int) -> int:
            don = run(
                svc.record_donation(
                    d.NewDonation(
                        fund_id=self.fund,
                        donor_name="捐赠人",
                        donor_kind=d.DonorKind.MEMBER,
                        amount=Money(fen),
                        received_on=date(2022, 7, 11),
                    ),
                    caller=None,
                    idem=None,
                )
            )
            jid = int(don.name.rsplit("/", 1)[1])
            src = run(self._donation_source())
            self.apply(jid, {("A",): fen, ("I", src): -fen})
            return jid

        async def _donation_source(self) -> int:
            async with svc.sessions() as s:
                fund = await s.get(S.FundRow, self.fund)
                assert fund is not None
                return (await S.donation_source(s, fund)).id

        @rule(target=commitments, fen=amounts)
        def commit(self, fen: int) -> int:
            async def act() -> S.Posted:
                async with transaction(svc.sessions) as s:
                    return await S.commit(s, self.fund, Money(fen), actor="prop")

            # the commitment id is unknown until posted; the model key uses a placeholder then moves
            posted = self.attempt({("A",): -fen, ("C", "new"): fen}, act)
            if posted is None:
                return -1
            cid = posted.journal.id
            self.apply(cid, {("A",): -fen, ("C", cid): fen})
            return cid

        @rule(target=payments, commitment=st.one_of(st.none(), commitments), fen=amounts)
        def pay(self, commitment: int | None, fen: int) -> int:
            if commitment == -1:
                commitment = None
            credit = ("C", commitment) if commitment is not None else ("A",)

            async def act() -> Any:
                async with transaction(svc.sessions) as s:
                    return await payments.pay(
                        s,
                        self.fund,
                        Money(fen),
                        payment_key=rid(),
                        payee="households/1",
                        actor="prop",
                        commitment_id=commitment,
                    )

            res = self.attempt({credit: -fen, ("E", "new"): fen}, act)
            if res is None:
                return -1
            pid = res[1].journal_id
            self.apply(pid, {credit: -fen, ("E", pid): fen})
            return pid

        @rule(payment=payments, fen=amounts)
        def return_payment(self, payment: int, fen: int) -> None:
            if payment == -1:
                return
            deltas = {("A",): fen, ("E", payment): -fen}

            async def act() -> Any:
                async with transaction(svc.sessions) as s:
                    return await payments.return_payment(s, payment, Money(fen), actor="bank", reason="退回")

            res = self.attempt(deltas, act)
            if res is not None:
                self.apply(res[0].journal.id, deltas)

        @rule(commitment=commitments, fen=amounts)
        def release(self, commitment: int, fen: int) -> None:
            if commitment == -1:
                return
            deltas = {("A",): fen, ("C", commitment): -fen}

            async def act() -> Any:
                async with transaction(svc.sessions) as s:
                    return await S.release(s, commitment, Money(fen), actor="prop")

            res = self.attempt(deltas, act)
            if res is not None:
                self.apply(res.journal.id, deltas)

        @rule(journal=consumes(journals) | consumes(commitments) | consumes(payments))
        def reverse(self, journal: int) -> None:
            if journal == -1 or journal not in self.effects:
                return
            deltas = {k: -v for k, v in self.effects[journal].items()}
            if journal in self.reversed:
                deltas = {("never",): 0}

            async def act() -> Any:
                return await svc.reverse_ledger_entry(self.fund, journal, "冲正测试", caller=None, idem=None)

            res = self.attempt(deltas, act)
            if res is not None:
                self.reversed.add(journal)
                for k, v in deltas.items():
                    self.model[k] = self.model.get(k, 0) + v

        # -- invariants

        @invariant()
        def balances_match_model(self) -> None:
            if not hasattr(self, "fund"):
                return
            bal = run(svc.balance(self.fund))
            want = {k: sum(v for key, v in self.model.items() if key[0] == k) for k in "ACEI"}
            assert bal.available.fen == want["A"]
            assert bal.committed.fen == want["C"]
            assert bal.expended.fen == want["E"]
            assert bal.income.fen == -want["I"]
            # money is conserved: what came in is held or spent
            assert bal.income == bal.held + bal.expended

        @invariant()
        def ledger_verifies(self) -> None:
            async def check() -> list[V.Problem]:
                async with svc.sessions() as s:
                    return await V.verify(s)

            assert run(check()) == []

    try:
        run_state_machine_as_test(
            Ledger,
            settings=settings(
                max_examples=max_examples,
                stateful_step_count=12,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        run(engine.dispose())
        loop.close()


def test_ledger_state_machine(db_url: str) -> None:
    run_machine(db_url, max_examples=15 if db_url.startswith("sqlite") else 8)
