"""gRPC entrypoint: jsx.funds.v1.FundsService over the service layer.

The runtime's interceptors authenticate the caller, check the permission each
RPC declares in funds.proto and map jsxcore errors to rich statuses; this
servicer hands the request and the caller (for region scope) to
:class:`jsx_funds.service.FundsService`. Programs, applications, 公示, objections, payment batches,
bank results, reconciliation and reports go to :class:`jsx_funds.reports.ReportsService`
(programs → batches → bank → reports). ``build_runtime`` wires database, outbox relay, the
event consumers (visit 慰问金, members projection), the members gRPC client (SubmitApplication
checks the household there when ``members_addr`` is set) and server; ``main`` is ``python -m jsx_funds``.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2, funds_pb2_grpc
from jsxcore.auth import current_caller
from jsxcore.config import ServiceConfig
from jsxcore.errors import FailedPrecondition
from jsxcore.outbox import Relay
from jsxcore.runtime import ServiceRuntime, list_plugins_response, run_service

from jsx_funds.adapters.db import migrate
from jsx_funds.adapters.members import MembersClient
from jsx_funds.consumers import build_consumers
from jsx_funds.payment_file import payment_file, stream_payment_file
from jsx_funds.programs import ProgramsService
from jsx_funds.reports import ReportsService
from jsx_funds.service import FundsService

SERVICE = "funds"
SERVICE_NAME = "jsx.funds.v1.FundsService"

#: RPC → FundsService method; each takes (request, caller).
METHODS = {
    "CreateFundSource": "create_fund_source",
    "ListFundSources": "list_fund_sources",
    "CreateFund": "create_fund",
    "GetFund": "get_fund",
    "ListFunds": "list_funds",
    "PostAllocation": "post_allocation",
    "RecordDonation": "record_donation",
    "ReverseLedgerEntry": "reverse_ledger_entry",
    "GetFundBalance": "get_fund_balance",
    "ListLedgerEntries": "list_ledger_entries",
}
#: RPC → ReportsService (programs, applications, batches, bank results, reports) method.
PROGRAM_METHODS = {
    "SubmitApplication": "submit_application",
    "ListPublicity": "list_publicity",
    "CreateProgram": "create_program",
    "GetProgram": "get_program",
    "ListPrograms": "list_programs",
    "GetApplication": "get_application",
    "ListApplications": "list_applications",
    "DecideApplication": "decide_application",
    "LodgeObjection": "lodge_objection",
    "ResolveObjection": "resolve_objection",
    "WithdrawApplication": "withdraw_application",
    "CreatePaymentBatch": "create_payment_batch",
    "GetPaymentBatch": "get_payment_batch",
    "ListPayments": "list_payments",
    "ImportBankResults": "import_bank_results",
    "GetReconciliation": "get_reconciliation",
    "GetProgramReport": "get_program_report",
}


def _delegate(rpc: str, attr: str, target: str = "service") -> Any:
    async def method(self: FundsServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await getattr(getattr(self, target), attr)(request, current_caller())

    method.__name__ = rpc
    method.__doc__ = f"{SERVICE_NAME}/{rpc} → {target}.{attr}"
    return method


class FundsServicer(funds_pb2_grpc.FundsServiceServicer):
    """Thin proto → use-case adapter."""

    def __init__(self, service: FundsService, plugins: Any = None, programs: ProgramsService | None = None,
                 members: MembersClient | None = None) -> None:
        self.service = service
        self.plugins = plugins
        self.programs = programs
        self.members = members

    def _payees(self, context: grpc.aio.ServicerContext) -> tuple[MembersClient, str | None]:
        """Members and the caller's bearer token, forwarded so members checks *their*
        members.payees.read and audits them."""
        if self.members is None:
            raise FailedPrecondition("资金服务未配置成员服务地址（JSX_MEMBERS_ADDR），无法取得收款人姓名和一卡通账号",
                                     reason="MEMBERS_NOT_CONFIGURED")
        token = next((v.split(" ", 1)[1] for k, v in context.invocation_metadata() or ()
                      if k == "authorization" and isinstance(v, str) and v.startswith("Bearer ")), None)
        return self.members, token

    async def GetPaymentFile(self, request: funds_pb2.GetPaymentFileRequest,
                             context: grpc.aio.ServicerContext) -> funds_pb2.PaymentFile:
        """The bank file in one message, with payee details read from members under the caller's own token."""
        members, token = self._payees(context)
        assert self.programs is not None
        return await payment_file(self.programs.sessions, members, request, current_caller(), token)

    async def StreamPaymentFile(self, request: funds_pb2.StreamPaymentFileRequest,
                                context: grpc.aio.ServicerContext) -> AsyncIterator[funds_pb2.PaymentFileChunk]:
        """The bank file of any size as a stream. An async generator, so the runtime's interceptors
        (jsxcore.runtime.interceptors._wrap_behavior) run auth, permission and error mapping around
        the whole stream: a refusal before the first message is the call's status."""
        members, token = self._payees(context)
        assert self.programs is not None
        async for chunk in stream_payment_file(self.programs.sessions, members, request, current_caller(), token):
            yield chunk

    async def ListPlugins(self, request: common_pb2.ListPluginsRequest, context: grpc.aio.ServicerContext) -> common_pb2.ListPluginsResponse:
        return list_plugins_response(self.plugins, request)


for _rpc, _attr in METHODS.items():
    setattr(FundsServicer, _rpc, _delegate(_rpc, _attr))
for _rpc, _attr in PROGRAM_METHODS.items():
    setattr(FundsServicer, _rpc, _delegate(_rpc, _attr, "programs"))


def build_runtime(config: ServiceConfig, **runtime_kw: Any) -> tuple[ServiceRuntime, FundsService, Relay]:
    """The funds process: server, service and outbox relay (not started)."""
    rt = ServiceRuntime(config, **runtime_kw)
    relay = Relay(rt.sessions, config.nats_url, service=SERVICE, replicas=config.stream_replicas)
    service = FundsService(rt.sessions, on_commit=relay.notify)
    members = MembersClient(config.members_addr, config.auth_secret) if config.members_addr else None
    programs = ReportsService(rt.sessions, rt.plugins, on_commit=relay.notify, members=members,
                              cipher=config.field_cipher())
    if members is not None:
        rt.on_shutdown(members.close)
    rt.add_servicer(funds_pb2_grpc.add_FundsServiceServicer_to_server,
                    FundsServicer(service, rt.plugins, programs, members), SERVICE_NAME)
    rt.add_background("outbox-relay", relay.run)
    rt.on_shutdown(relay.stop)
    # Each consumer has its own connection; on shutdown it stops fetching and the batch in
    # hand commits or rolls back whole (the inbox makes a redelivery after a cut a no-op).
    for consumer in build_consumers(config.nats_url, rt.sessions, on_commit=relay.notify, plugins=rt.plugins):
        rt.add_background(consumer.durable, consumer.run)
        rt.on_shutdown(consumer.stop)
    return rt, service, relay


def main() -> None:
    run_service(SERVICE, migrate, build_runtime)
