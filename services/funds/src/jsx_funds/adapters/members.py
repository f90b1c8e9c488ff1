"""The members service over gRPC: is this household registered there?

SubmitApplication checks the household against the funds service's own
projection (built from members events) *and*, when ``members_addr`` is
configured, against ``jsx.members.v1.MembersService.GetHousehold`` — the
projection may lag, or miss a household members has since closed. The call
carries a short-lived service token (role ``system``, the caller's region,
signed with the shared ``auth_secret``), so members applies its own region
scope. Only existence is used: no personal data is read or kept.
"""
from __future__ import annotations

import grpc

from jsx.members.v1 import members_pb2, members_pb2_grpc
from jsxcore.auth import issue_token
from jsxcore.errors import NotFound, PermissionDenied, Unavailable
from jsxcore.values import RegionCode

#: Subject of the tokens this adapter mints (shows in members' audit log).
SUBJECT = "service:funds"


class MembersClient:
    """A lazily opened channel to the members service."""

    def __init__(self, addr: str, secret: str, *, timeout: float = 5.0) -> None:
        self.addr, self._secret, self.timeout = addr, secret, timeout
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> members_pb2_grpc.MembersServiceStub:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.addr)
        return members_pb2_grpc.MembersServiceStub(self._channel)

    async def get_household(self, household: str, region: RegionCode | str) -> members_pb2.Household:
        """The household as members sees it from ``region``; NotFound / PermissionDenied / Unavailable in Chinese."""
        token = issue_token(self._secret, SUBJECT, ["system"], region, ttl=60, name="资金服务")
        try:
            return await self._stub().GetHousehold(members_pb2.GetHouseholdRequest(name=household),
                                                   metadata=(("authorization", f"Bearer {token}"),),
                                                   timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"成员服务中没有家庭 {household}，请先在成员管理中登记该家庭", reason="HOUSEHOLD_NOT_FOUND",
                               metadata={"household": household}) from None
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise PermissionDenied(f"家庭 {household} 不在您的管辖地区内（成员服务拒绝查询）", reason="OUT_OF_REGION",
                                       metadata={"household": household}) from None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise NotFound(f"成员服务不认识家庭编号 {household}，请核对", reason="HOUSEHOLD_NOT_FOUND",
                               metadata={"household": household}) from None
            # Down, timed out, or failing: the application is not stored, the clerk may simply retry.
            raise Unavailable("成员服务暂时无法访问，无法核实申请家庭，申请未保存，请稍后重试",
                              reason="MEMBERS_UNAVAILABLE", metadata={"members_addr": self.addr}) from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
