"""gRPC entrypoint: jsx.funds.v1.FundsService over the funds contexts.

The runtime's interceptors authenticate the caller, check the permission each
RPC declares in funds.proto and map jsxcore errors to rich statuses. Each
servicer method below maps its request to the use case's arguments and hands
over the caller; nothing else. :func:`compose` builds the contexts — each
service is given the other contexts' services it needs — and
:func:`build_runtime` wires them with the database, the outbox relay, the
event consumers (visit 慰问金, members projection), the members gRPC client
(SubmitApplication checks the household there when ``members_addr`` is set)
and the server; ``main`` is ``python -m jsx_funds``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2, funds_pb2_grpc
from jsx_funds import SERVICE_NAME
from jsx_funds.adapters.db import migrate
from jsx_funds.adapters.members import MembersClient
from jsx_funds.disbursement import wire as disbursement_wire
from jsx_funds.disbursement.service import DisbursementService
from jsx_funds.ledger import wire as lw
from jsx_funds.ledger.service import LedgerService
from jsx_funds.programs import wire as pw
from jsx_funds.programs.service import ProgramsService
from jsx_funds.projections.consumers import build_consumers
from jsx_funds.reporting.service import ReportingService
from jsxcore import wire
from jsxcore.auth import current_caller
from jsxcore.config import ServiceConfig
from jsxcore.outbox import Relay
from jsxcore.pii import FieldCipher
from jsxcore.plugins import PluginHost
from jsxcore.runtime import ServiceRuntime, list_plugins_response, run_service
from jsxcore.usecase import Idem
from jsxcore.values import Period

SERVICE = "funds"


@dataclass(frozen=True)
class Contexts:
    """The funds service's bounded contexts, composed."""

    sessions: async_sessionmaker[AsyncSession]
    plugins: PluginHost
    ledger: LedgerService
    programs: ProgramsService
    disbursement: DisbursementService
    reporting: ReportingService
    members: MembersClient | None = None


def compose(
    sessions: async_sessionmaker[AsyncSession],
    plugins: PluginHost,
    *,
    notify: Callable[[], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    members: MembersClient | None = None,
    cipher: FieldCipher | None = None,
) -> Contexts:
    """Each context's service, given what it needs (``notify`` wakes the outbox relay after a commit)."""
    ledger = LedgerService(sessions, notify=notify)
    programs = ProgramsService(
        sessions, plugins, ledger=ledger, notify=notify, clock=clock, members=members, cipher=cipher
    )
    disbursement = DisbursementService(
        sessions, plugins, ledger=ledger, programs=programs, members=members, clock=clock, notify=notify
    )
    reporting = ReportingService(sessions, programs, clock=clock)
    return Contexts(sessions, plugins, ledger, programs, disbursement, reporting, members)


class FundsServicer(funds_pb2_grpc.FundsServiceServicer):
    """Proto → use case, one method per RPC of jsx.funds.v1.FundsService."""

    def __init__(self, contexts: Contexts) -> None:
        self.ledger = contexts.ledger
        self.programs = contexts.programs
        self.disbursement = contexts.disbursement
        self.reporting = contexts.reporting
        self.plugins = contexts.plugins
        self.members = contexts.members
        self.sessions = contexts.sessions

    # ------------------------------------------------------------ sources and funds

    async def CreateFundSource(
        self, request: funds_pb2.CreateFundSourceRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.FundSource:
        return await self.ledger.create_fund_source(
            lw.read_new_source(request.fund_source),
            caller=current_caller(),
            idem=Idem.of(SERVICE_NAME, "CreateFundSource", request),
        )

    async def ListFundSources(
        self, request: funds_pb2.ListFundSourcesRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.ListFundSourcesResponse:
        return await self.ledger.list_fund_sources(
            region=lw.region_filter(request.region),
            page_size=request.page_size,
            page_token=request.page_token,
            caller=current_caller(),
        )

    async def CreateFund(
        self, request: funds_pb2.CreateFundRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.Fund:
        return await self.ledger.create_fund(
            lw.read_new_fund(request.fund), caller=current_caller(), idem=Idem.of(SERVICE_NAME, "CreateFund", request)
        )

    async def GetFund(self, request: funds_pb2.GetFundRequest, context: grpc.aio.ServicerContext) -> funds_pb2.Fund:
        return await self.ledger.get_fund(wire.int_id_from(request.name, "funds", "name"), caller=current_caller())

    async def ListFunds(
        self, request: funds_pb2.ListFundsRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.ListFundsResponse:
        return await self.ledger.list_funds(
            region=lw.region_filter(request.region),
            kind=lw.read_fund_kind_filter(request.kind),
            page_size=request.page_size,
            page_token=request.page_token,
            caller=current_caller(),
        )

    # ------------------------------------------------------------ the ledger

    async def PostAllocation(
        self, request: funds_pb2.PostAllocationRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.LedgerEntry:
        return await self.ledger.post_allocation(
            lw.read_allocation(request), caller=current_caller(), idem=Idem.of(SERVICE_NAME, "PostAllocation", request)
        )

    async def RecordDonation(
        self, request: funds_pb2.RecordDonationRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.Donation:
        return await self.ledger.record_donation(
            lw.read_new_donation(request.donation),
            caller=current_caller(),
            idem=Idem.of(SERVICE_NAME, "RecordDonation", request),
        )

    async def ReverseLedgerEntry(
        self, request: funds_pb2.ReverseLedgerEntryRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.LedgerEntry:
        fund_id, journal_id = lw.read_entry_name(request.name)
        return await self.ledger.reverse_ledger_entry(
            fund_id,
            journal_id,
            lw.read_reason(request.reason),
            caller=current_caller(),
            idem=Idem.of(SERVICE_NAME, "ReverseLedgerEntry", request),
        )

    async def GetFundBalance(
        self, request: funds_pb2.GetFundBalanceRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.FundBalance:
        return await self.ledger.get_fund_balance(
            wire.int_id_from(request.fund, "funds", "fund"),
            wire.date_from(request.as_of, "as_of"),
            caller=current_caller(),
        )

    async def ListLedgerEntries(
        self, request: funds_pb2.ListLedgerEntriesRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.ListLedgerEntriesResponse:
        start, end = lw.read_date_range(request.from_date, request.to_date)
        return await self.ledger.list_ledger_entries(
            wire.int_id_from(request.fund, "funds", "fund"),
            start=start,
            end=end,
            page_size=request.page_size,
            page_token=request.page_token,
            caller=current_caller(),
        )

    # ------------------------------------------------------------ programs and applications

    async def CreateProgram(
        self, request: funds_pb2.CreateProgramRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.Program:
        return await self.programs.create_program(
            pw.read_new_program(request.program),
            caller=current_caller(),
            idem=Idem.of(SERVICE_NAME, "CreateProgram", request),
        )

    async def GetProgram(
        self, request: funds_pb2.GetProgramRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.Program:
        return await self.programs.get_program(
            wire.int_id_from(request.name, "programs", "name"), caller=current_caller()
        )

    async def ListPrograms(
        self, request: funds_pb2.ListProgramsRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.ListProgramsResponse:
        return await self.programs.list_programs(
            region=pw.read_region_filter(request.region),
            program_type=pw.read_program_type_filter(request.type),
            page_size=request.page_size,
            page_token=request.page_token,
            caller=current_caller(),
        )

    async def SubmitApplication(
        self, request: funds_pb2.SubmitApplicationRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.Application:
        return await self.programs.submit_application(
            pw.read_new_application(request.application),
            caller=current_caller(),
            idem=Idem.of(SERVICE_NAME, "SubmitApplication", request),
        )

    async def GetApplication(
        self, request: funds_pb2.GetApplicationRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.Application:
        return await self.programs.get_application(
            wire.int_id_from(request.name, "applications", "name"), caller=current_caller()
        )

    async def ListApplications(
        self, request: funds_pb2.ListApplicationsRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.ListApplicationsResponse:
        return await self.programs.list_applications(
            region=pw.read_region_filter(request.region),
            state=pw.read_state_filter(request.state),
            period=pw.read_period_filter(request.period),
            program_id=pw.read_program_filter(request.program),
            household_id=pw.read_household_filter(request.household),
            page_size=request.page_size,
            page_token=request.page_token,
            caller=current_caller(),
        )

    async def DecideApplication(
        self, request: funds_pb2.DecideApplicationRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.Application:
        decision, comment = pw.read_decision(request.decision, request.comment)
        return await self.programs.decide_application(
            wire.int_id_from(request.name, "applications", "name"),
            decision,
            comment,
            caller=current_caller(),
            idem=Idem.of(SERVICE_NAME, "DecideApplication", request),
        )

    async def LodgeObjection(
        self, request: funds_pb2.LodgeObjectionRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.Application:
        reason = pw.read_objection_reason(request.reason)
        return await self.programs.lodge_objection(
            wire.int_id_from(request.application, "applications", "application"),
            reason,
            request.lodged_by,
            caller=current_caller(),
            idem=Idem.of(SERVICE_NAME, "LodgeObjection", request),
        )

    async def ResolveObjection(
        self, request: funds_pb2.ResolveObjectionRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.Application:
        application_id, objection_id = pw.read_objection_name(request.name)
        return await self.programs.resolve_objection(
            application_id,
            objection_id,
            pw.read_resolution(request.resolution),
            request.upheld,
            caller=current_caller(),
            idem=Idem.of(SERVICE_NAME, "ResolveObjection", request),
        )

    async def WithdrawApplication(
        self, request: funds_pb2.WithdrawApplicationRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.Application:
        return await self.programs.withdraw_application(
            wire.int_id_from(request.name, "applications", "name"),
            request.reason,
            caller=current_caller(),
            idem=Idem.of(SERVICE_NAME, "WithdrawApplication", request),
        )

    async def ListPublicity(
        self, request: funds_pb2.ListPublicityRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.ListPublicityResponse:
        return await self.programs.list_publicity(
            region=pw.read_region_filter(request.region),
            program_id=pw.read_program_filter(request.program),
            page_size=request.page_size,
            page_token=request.page_token,
            caller=current_caller(),
        )

    # ------------------------------------------------------------ disbursement

    async def CreatePaymentBatch(
        self, request: funds_pb2.CreatePaymentBatchRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.PaymentBatch:
        period = Period.parse(request.period.code, field="period.code")
        region = wire.region_from(request.region, "region.code", required=False)
        return await self.disbursement.create_payment_batch(
            wire.int_id_from(request.program, "programs", "program"),
            region,
            period,
            caller=current_caller(),
            idem=Idem.of(SERVICE_NAME, "CreatePaymentBatch", request),
        )

    async def GetPaymentBatch(
        self, request: funds_pb2.GetPaymentBatchRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.PaymentBatch:
        return await self.disbursement.get_payment_batch(
            wire.int_id_from(request.name, "paymentBatches", "name"), caller=current_caller()
        )

    async def ListPayments(
        self, request: funds_pb2.ListPaymentsRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.ListPaymentsResponse:
        return await self.disbursement.list_payments(
            wire.int_id_from(request.payment_batch, "paymentBatches", "payment_batch"),
            wire.enum_short(funds_pb2.PaymentState, request.state, "PAYMENT_STATE_"),
            request.page_size,
            request.page_token,
            caller=current_caller(),
        )

    async def ImportBankResults(
        self, request: funds_pb2.ImportBankResultsRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.ImportBankResultsResponse:
        return await self.disbursement.import_bank_results(
            wire.int_id_from(request.payment_batch, "paymentBatches", "payment_batch"),
            disbursement_wire.bank_lines_from(request.results),
            caller=current_caller(),
            idem=Idem.of(SERVICE_NAME, "ImportBankResults", request),
        )

    async def GetReconciliation(
        self, request: funds_pb2.GetReconciliationRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.Reconciliation:
        return await self.disbursement.get_reconciliation(
            wire.int_id_from(request.payment_batch, "paymentBatches", "payment_batch"), caller=current_caller()
        )

    async def GetPaymentFile(
        self, request: funds_pb2.GetPaymentFileRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.PaymentFile:
        """The bank file in one message, with payee details read from members under the caller's own token."""
        return await self.disbursement.get_payment_file(
            wire.int_id_from(request.payment_batch, "paymentBatches", "payment_batch"),
            request.format == funds_pb2.PAYMENT_FILE_FORMAT_CSV,
            caller=current_caller(),
            token=_bearer(context),
        )

    async def StreamPaymentFile(
        self, request: funds_pb2.StreamPaymentFileRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[funds_pb2.PaymentFileChunk]:
        """The bank file of any size as a stream. An async generator, so the runtime's interceptors
        (jsxcore.runtime.interceptors._wrap_behavior) run auth, permission and error mapping around
        the whole stream: a refusal before the first message is the call's status."""
        async for chunk in self.disbursement.stream_payment_file(
            wire.int_id_from(request.payment_batch, "paymentBatches", "payment_batch"),
            request.format == funds_pb2.PAYMENT_FILE_FORMAT_CSV,
            caller=current_caller(),
            token=_bearer(context),
        ):
            yield chunk

    # ------------------------------------------------------------ reports and plugins

    async def GetProgramReport(
        self, request: funds_pb2.GetProgramReportRequest, context: grpc.aio.ServicerContext
    ) -> funds_pb2.ProgramReport:
        return await self.reporting.get_program_report(
            wire.int_id_from(request.program, "programs", "program"),
            pw.read_region_filter(request.region),
            pw.read_period_filter(request.period),
            caller=current_caller(),
        )

    async def ListPlugins(
        self, request: common_pb2.ListPluginsRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ListPluginsResponse:
        return list_plugins_response(self.plugins, request)


def _bearer(context: grpc.aio.ServicerContext) -> str | None:
    """The caller's bearer token, forwarded to members so it checks *their* members.payees.read and audits them."""
    metadata = context.invocation_metadata() if context is not None else None  # (None: called in process)
    return next(
        (
            v.split(" ", 1)[1]
            for k, v in metadata or ()
            if k == "authorization" and isinstance(v, str) and v.startswith("Bearer ")
        ),
        None,
    )


def build_runtime(config: ServiceConfig, **runtime_kw: Any) -> tuple[ServiceRuntime, Contexts, Relay]:
    """The funds process: server, contexts and outbox relay (not started)."""
    rt = ServiceRuntime(config, **runtime_kw)
    relay = Relay(rt.sessions, config.nats_url, service=SERVICE, replicas=config.stream_replicas)
    members = MembersClient(config.members_addr, config.auth_secret) if config.members_addr else None
    contexts = compose(rt.sessions, rt.plugins, notify=relay.notify, members=members, cipher=config.field_cipher())
    if members is not None:
        rt.on_shutdown(members.close)
    rt.add_servicer(funds_pb2_grpc.add_FundsServiceServicer_to_server, FundsServicer(contexts), SERVICE_NAME)
    rt.add_background("outbox-relay", relay.run)
    rt.on_shutdown(relay.stop)
    # Each consumer has its own connection; on shutdown it stops fetching and the batch in
    # hand commits or rolls back whole (the inbox makes a redelivery after a cut a no-op).
    for consumer in build_consumers(
        config.nats_url, rt.sessions, on_commit=relay.notify, plugins=rt.plugins, disbursement=contexts.disbursement
    ):
        rt.add_background(consumer.durable, consumer.run)
        rt.on_shutdown(consumer.stop)
    return rt, contexts, relay


def main() -> None:
    run_service(SERVICE, migrate, build_runtime)
