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
from jsxcore import wire
from jsxcore.auth import current_caller
from jsxcore.config import ServiceConfig
from jsxcore.outbox import Relay
from jsxcore.pii import FieldCipher
from jsxcore.plugins import PluginHost
from jsxcore.runtime import ServiceRuntime, list_plugins_response, run_service
from jsxcore.usecase import Idem
from jsxcore.values import Period

from jsx_funds.adapters.db import migrate
from jsx_funds.adapters.members import MembersClient
from jsx_funds.disbursement import wire as disbursement_wire
from jsx_funds.disbursement.service import DisbursementService
from jsx_funds.ledger.service import LedgerService
from jsx_funds.programs.service import ProgramsService
from jsx_funds.projections.consumers import build_consumers
from jsx_funds.reporting.service import ReportingService

SERVICE = "funds"
SERVICE_NAME = "jsx.funds.v1.FundsService"


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
    ledger = LedgerService(sessions, on_commit=notify)
    programs = ProgramsService(sessions, plugins, on_commit=notify, clock=clock, members=members, cipher=cipher)
    disbursement = DisbursementService(sessions, plugins, ledger=ledger, programs=programs, members=members, clock=clock,
                                       on_commit=notify)
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

    async def CreateFundSource(self, request: funds_pb2.CreateFundSourceRequest,
                               context: grpc.aio.ServicerContext) -> funds_pb2.FundSource:
        return await self.ledger.create_fund_source(request, current_caller())

    async def ListFundSources(self, request: funds_pb2.ListFundSourcesRequest,
                              context: grpc.aio.ServicerContext) -> funds_pb2.ListFundSourcesResponse:
        return await self.ledger.list_fund_sources(request, current_caller())

    async def CreateFund(self, request: funds_pb2.CreateFundRequest, context: grpc.aio.ServicerContext) -> funds_pb2.Fund:
        return await self.ledger.create_fund(request, current_caller())

    async def GetFund(self, request: funds_pb2.GetFundRequest, context: grpc.aio.ServicerContext) -> funds_pb2.Fund:
        return await self.ledger.get_fund(request, current_caller())

    async def ListFunds(self, request: funds_pb2.ListFundsRequest,
                        context: grpc.aio.ServicerContext) -> funds_pb2.ListFundsResponse:
        return await self.ledger.list_funds(request, current_caller())

    # ------------------------------------------------------------ the ledger

    async def PostAllocation(self, request: funds_pb2.PostAllocationRequest,
                             context: grpc.aio.ServicerContext) -> funds_pb2.LedgerEntry:
        return await self.ledger.post_allocation(request, current_caller())

    async def RecordDonation(self, request: funds_pb2.RecordDonationRequest,
                             context: grpc.aio.ServicerContext) -> funds_pb2.Donation:
        return await self.ledger.record_donation(request, current_caller())

    async def ReverseLedgerEntry(self, request: funds_pb2.ReverseLedgerEntryRequest,
                                 context: grpc.aio.ServicerContext) -> funds_pb2.LedgerEntry:
        return await self.ledger.reverse_ledger_entry(request, current_caller())

    async def GetFundBalance(self, request: funds_pb2.GetFundBalanceRequest,
                             context: grpc.aio.ServicerContext) -> funds_pb2.FundBalance:
        return await self.ledger.get_fund_balance(request, current_caller())

    async def ListLedgerEntries(self, request: funds_pb2.ListLedgerEntriesRequest,
                                context: grpc.aio.ServicerContext) -> funds_pb2.ListLedgerEntriesResponse:
        return await self.ledger.list_ledger_entries(request, current_caller())

    # ------------------------------------------------------------ programs and applications

    async def CreateProgram(self, request: funds_pb2.CreateProgramRequest,
                            context: grpc.aio.ServicerContext) -> funds_pb2.Program:
        return await self.programs.create_program(request, current_caller())

    async def GetProgram(self, request: funds_pb2.GetProgramRequest, context: grpc.aio.ServicerContext) -> funds_pb2.Program:
        return await self.programs.get_program(request, current_caller())

    async def ListPrograms(self, request: funds_pb2.ListProgramsRequest,
                           context: grpc.aio.ServicerContext) -> funds_pb2.ListProgramsResponse:
        return await self.programs.list_programs(request, current_caller())

    async def SubmitApplication(self, request: funds_pb2.SubmitApplicationRequest,
                                context: grpc.aio.ServicerContext) -> funds_pb2.Application:
        return await self.programs.submit_application(request, current_caller())

    async def GetApplication(self, request: funds_pb2.GetApplicationRequest,
                             context: grpc.aio.ServicerContext) -> funds_pb2.Application:
        return await self.programs.get_application(request, current_caller())

    async def ListApplications(self, request: funds_pb2.ListApplicationsRequest,
                               context: grpc.aio.ServicerContext) -> funds_pb2.ListApplicationsResponse:
        return await self.programs.list_applications(request, current_caller())

    async def DecideApplication(self, request: funds_pb2.DecideApplicationRequest,
                                context: grpc.aio.ServicerContext) -> funds_pb2.Application:
        return await self.programs.decide_application(request, current_caller())

    async def LodgeObjection(self, request: funds_pb2.LodgeObjectionRequest,
                             context: grpc.aio.ServicerContext) -> funds_pb2.Application:
        return await self.programs.lodge_objection(request, current_caller())

    async def ResolveObjection(self, request: funds_pb2.ResolveObjectionRequest,
                               context: grpc.aio.ServicerContext) -> funds_pb2.Application:
        return await self.programs.resolve_objection(request, current_caller())

    async def WithdrawApplication(self, request: funds_pb2.WithdrawApplicationRequest,
                                  context: grpc.aio.ServicerContext) -> funds_pb2.Application:
        return await self.programs.withdraw_application(request, current_caller())

    async def ListPublicity(self, request: funds_pb2.ListPublicityRequest,
                            context: grpc.aio.ServicerContext) -> funds_pb2.ListPublicityResponse:
        return await self.programs.list_publicity(request, current_caller())

    # ------------------------------------------------------------ disbursement

    async def CreatePaymentBatch(self, request: funds_pb2.CreatePaymentBatchRequest,
                                 context: grpc.aio.ServicerContext) -> funds_pb2.PaymentBatch:
        period = Period.parse(request.period.code, field="period.code")
        region = wire.region_from(request.region, "region.code", required=False)
        return await self.disbursement.create_payment_batch(
            wire.int_id_from(request.program, "programs", "program"), region, period,
            caller=current_caller(), idem=Idem.of(SERVICE_NAME, "CreatePaymentBatch", request))

    async def GetPaymentBatch(self, request: funds_pb2.GetPaymentBatchRequest,
                              context: grpc.aio.ServicerContext) -> funds_pb2.PaymentBatch:
        return await self.disbursement.get_payment_batch(wire.int_id_from(request.name, "paymentBatches", "name"),
                                                         caller=current_caller())

    async def ListPayments(self, request: funds_pb2.ListPaymentsRequest,
                           context: grpc.aio.ServicerContext) -> funds_pb2.ListPaymentsResponse:
        return await self.disbursement.list_payments(
            wire.int_id_from(request.payment_batch, "paymentBatches", "payment_batch"),
            wire.enum_short(funds_pb2.PaymentState, request.state, "PAYMENT_STATE_"), request.page_size,
            request.page_token, caller=current_caller())

    async def ImportBankResults(self, request: funds_pb2.ImportBankResultsRequest,
                                context: grpc.aio.ServicerContext) -> funds_pb2.ImportBankResultsResponse:
        return await self.disbursement.import_bank_results(
            wire.int_id_from(request.payment_batch, "paymentBatches", "payment_batch"),
            disbursement_wire.bank_lines_from(request.results),
            caller=current_caller(), idem=Idem.of(SERVICE_NAME, "ImportBankResults", request))

    async def GetReconciliation(self, request: funds_pb2.GetReconciliationRequest,
                                context: grpc.aio.ServicerContext) -> funds_pb2.Reconciliation:
        return await self.disbursement.get_reconciliation(
            wire.int_id_from(request.payment_batch, "paymentBatches", "payment_batch"), caller=current_caller())

    async def GetPaymentFile(self, request: funds_pb2.GetPaymentFileRequest,
                             context: grpc.aio.ServicerContext) -> funds_pb2.PaymentFile:
        """The bank file in one message, with payee details read from members under the caller's own token."""
        return await self.disbursement.get_payment_file(
            wire.int_id_from(request.payment_batch, "paymentBatches", "payment_batch"),
            request.format == funds_pb2.PAYMENT_FILE_FORMAT_CSV, caller=current_caller(), token=_bearer(context))

    async def StreamPaymentFile(self, request: funds_pb2.StreamPaymentFileRequest,
                                context: grpc.aio.ServicerContext) -> AsyncIterator[funds_pb2.PaymentFileChunk]:
        """The bank file of any size as a stream. An async generator, so the runtime's interceptors
        (jsxcore.runtime.interceptors._wrap_behavior) run auth, permission and error mapping around
        the whole stream: a refusal before the first message is the call's status."""
        async for chunk in self.disbursement.stream_payment_file(
                wire.int_id_from(request.payment_batch, "paymentBatches", "payment_batch"),
                request.format == funds_pb2.PAYMENT_FILE_FORMAT_CSV, caller=current_caller(), token=_bearer(context)):
            yield chunk

    # ------------------------------------------------------------ reports and plugins

    async def GetProgramReport(self, request: funds_pb2.GetProgramReportRequest,
                               context: grpc.aio.ServicerContext) -> funds_pb2.ProgramReport:
        return await self.reporting.get_program_report(request, current_caller())

    async def ListPlugins(self, request: common_pb2.ListPluginsRequest,
                          context: grpc.aio.ServicerContext) -> common_pb2.ListPluginsResponse:
        return list_plugins_response(self.plugins, request)


def _bearer(context: grpc.aio.ServicerContext) -> str | None:
    """The caller's bearer token, forwarded to members so it checks *their* members.payees.read and audits them."""
    return next((v.split(" ", 1)[1] for k, v in context.invocation_metadata() or ()
                 if k == "authorization" and isinstance(v, str) and v.startswith("Bearer ")), None)


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
    for consumer in build_consumers(config.nats_url, rt.sessions, on_commit=relay.notify, plugins=rt.plugins,
                                    disbursement=contexts.disbursement):
        rt.add_background(consumer.durable, consumer.run)
        rt.on_shutdown(consumer.stop)
    return rt, contexts, relay


def main() -> None:
    run_service(SERVICE, migrate, build_runtime)
