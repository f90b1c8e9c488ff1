"""gRPC entrypoint: jsx.members.v1.MembersService over the service layer.

The runtime's interceptors authenticate the caller, check the permission each
RPC declares in members.proto and map jsxcore errors to rich statuses; this
servicer only hands the request to :class:`jsx_members.service.MembersService`.
``build_runtime`` wires database, migrations, the outbox relay and the
server; ``main`` is ``python -m jsx_members`` / ``jsx members serve``.
"""
from __future__ import annotations

from typing import Any

import grpc

from jsx.common.v1 import common_pb2
from jsx.members.v1 import members_pb2 as pb
from jsx.members.v1 import members_pb2_grpc
from jsxcore.config import ServiceConfig
from jsxcore.outbox import Relay
from jsxcore.runtime import ServiceRuntime, list_plugins_response, run_service

from jsx_members.adapters.bus import SERVICE
from jsx_members.migrations import migrate
from jsx_members.payees import PayeeReads
from jsx_members.service import SERVICE_NAME, MembersService

_METHODS = {
    "CreatePerson": "create_person", "GetPerson": "get_person", "ListPersons": "list_persons",
    "UpdatePerson": "update_person", "LookupPerson": "lookup_person",
    "CreateHousehold": "create_household", "GetHousehold": "get_household", "ListHouseholds": "list_households",
    "RecordSituation": "record_situation", "UpdateHousehold": "update_household", "ListUnpairedFamilies": "list_unpaired_families",
    "CreateMember": "create_member", "GetMember": "get_member", "ListMembers": "list_members", "EndMembership": "end_membership",
    "UpdateMember": "update_member", "UpdateVolunteer": "update_volunteer", "CloseSite": "close_site",
    "CreateVolunteer": "create_volunteer", "GetVolunteer": "get_volunteer", "ListVolunteers": "list_volunteers",
    "PairVolunteer": "pair_volunteer", "EndPairing": "end_pairing", "ListPairings": "list_pairings",
    "CreateSite": "create_site", "GetSite": "get_site", "ListSites": "list_sites", "UpdateSite": "update_site",
}


def _delegate(rpc: str, attr: str) -> Any:
    async def method(self: MembersServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await getattr(self.service, attr)(request)

    method.__name__ = rpc
    method.__doc__ = f"{SERVICE_NAME}/{rpc} → MembersService.{attr}"
    return method


class MembersServicer(members_pb2_grpc.MembersServiceServicer):
    """Thin proto → use-case adapter; every RPC in members.proto is bound."""

    def __init__(self, service: MembersService, plugins: Any = None) -> None:
        self.service = service
        self.plugins = plugins
        self.payees = PayeeReads(service)

    async def BatchGetPayees(self, request: pb.BatchGetPayeesRequest, context: grpc.aio.ServicerContext) -> pb.BatchGetPayeesResponse:
        return await self.payees.batch_get_payees(request)

    async def BatchGetPersons(self, request: pb.BatchGetPersonsRequest, context: grpc.aio.ServicerContext) -> pb.BatchGetPersonsResponse:
        return await self.payees.batch_get_persons(request)

    async def ListPlugins(self, request: common_pb2.ListPluginsRequest, context: grpc.aio.ServicerContext) -> common_pb2.ListPluginsResponse:
        return list_plugins_response(self.plugins, request)


for _rpc, _attr in _METHODS.items():
    setattr(MembersServicer, _rpc, _delegate(_rpc, _attr))

# Fail at import, not at call time, if the proto gains an RPC nobody serves.
_missing = set(pb.DESCRIPTOR.services_by_name["MembersService"].methods_by_name) - set(_METHODS) - {"ListPlugins", "BatchGetPayees", "BatchGetPersons"}
assert not _missing, f"unbound RPCs: {_missing}"


def build_runtime(config: ServiceConfig, **runtime_kw: Any) -> tuple[ServiceRuntime, MembersService, Relay]:
    """The members process: server, service and outbox relay (not started)."""
    rt = ServiceRuntime(config, **runtime_kw)
    relay = Relay(rt.sessions, config.nats_url, service=SERVICE, replicas=config.stream_replicas)
    service = MembersService(rt.sessions, config.field_cipher(), config.blind_index(), on_commit=relay.notify)
    rt.add_servicer(members_pb2_grpc.add_MembersServiceServicer_to_server, MembersServicer(service, rt.plugins), SERVICE_NAME)
    rt.add_background("outbox-relay", relay.run)
    rt.on_shutdown(relay.stop)
    return rt, service, relay


def main() -> None:
    run_service(SERVICE, migrate, build_runtime)
