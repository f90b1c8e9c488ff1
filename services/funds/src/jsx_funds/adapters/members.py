"""The members service over gRPC: is this household registered there?

SubmitApplication checks the household against the funds service's own
projection (built from members events) *and*, when ``members_addr`` is
configured, against ``jsx.members.v1.MembersService.GetHousehold`` — the
projection may lag, or miss a household members has since closed. The call
carries a short-lived service token (role ``system``, the caller's region,
signed with the shared ``auth_secret``), so members applies its own region
scope. Only existence is used: no personal data is read or kept.

Two batch reads serve the payment file and the 公示 list
(:mod:`jsx_funds.disbursement.payment_file`, ListPublicity in :mod:`jsx_funds.programs.service`):
``batch_get_payees`` (full names and 一卡通 card numbers; sent with the
*caller's own* token when given, so members checks that person's
``members.payees.read`` and audits them) and ``batch_get_persons`` (masked
names). The answers are used at once and never stored or logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import grpc

from jsx.members.v1 import members_pb2, members_pb2_grpc
from jsxcore.auth import issue_token
from jsxcore.errors import (
    ConfigError,
    DomainError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from jsxcore.runtime import error_details
from jsxcore.values import RegionCode

#: Subject of the tokens this adapter mints (shows in members' audit log).
SUBJECT = "service:funds"
#: Persons per batch call (members' AIP-231 cap).
BATCH = 1000
#: Batch calls in flight at once.
IN_FLIGHT = 4

T = TypeVar("T")


class MembersClient:
    """A lazily opened channel to the members service."""

    def __init__(self, addr: str, secret: str, *, timeout: float = 5.0) -> None:
        self.addr, self._secret, self.timeout = addr, secret, timeout
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> members_pb2_grpc.MembersServiceAsyncStub:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.addr)
        return members_pb2_grpc.MembersServiceStub(self._channel)

    def _token(self, region: RegionCode | str) -> str:
        if not self._secret:
            raise ConfigError("未配置 JSX_AUTH_SECRET，无法以资金服务身份访问成员服务")
        return issue_token(self._secret, SUBJECT, ["system"], region, ttl=60, name="资金服务")

    async def get_household(self, household: str, region: RegionCode | str) -> members_pb2.Household:
        """The household as members sees it from ``region``; NotFound / PermissionDenied / Unavailable in Chinese."""
        token = self._token(region)
        try:
            return await self._stub().GetHousehold(
                members_pb2.GetHouseholdRequest(name=household),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=self.timeout,
            )
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFound(
                    f"成员服务中没有家庭 {household}，请先在成员管理中登记该家庭",
                    reason="HOUSEHOLD_NOT_FOUND",
                    metadata={"household": household},
                ) from None
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise PermissionDenied(
                    f"家庭 {household} 不在您的管辖地区内（成员服务拒绝查询）",
                    reason="OUT_OF_REGION",
                    metadata={"household": household},
                ) from None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise NotFound(
                    f"成员服务不认识家庭编号 {household}，请核对",
                    reason="HOUSEHOLD_NOT_FOUND",
                    metadata={"household": household},
                ) from None
            # Down, timed out, or failing: the application is not stored, the clerk may simply retry.
            raise Unavailable(
                "成员服务暂时无法访问，无法核实申请家庭，申请未保存，请稍后重试",
                reason="MEMBERS_UNAVAILABLE",
                metadata={"members_addr": self.addr},
            ) from None

    async def _batched(
        self,
        names: Iterable[str],
        token: str,
        call: Callable[[list[str], tuple[tuple[str, str], ...]], Awaitable[list[T]]],
    ) -> dict[str, T]:
        """``call`` per chunk of :data:`BATCH` distinct names; results keyed by name, members' refusals
        re-raised with members' own Chinese message (it names the persons)."""
        unique = list(dict.fromkeys(names))
        md = (("authorization", f"Bearer {token}"),)
        chunks = [unique[i : i + BATCH] for i in range(0, len(unique), BATCH)]
        # A few calls in flight: a province's bank file is hundreds of chunks, and each waits
        # mostly on members' database; more in flight would only queue at members.
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one(chunk: list[str]) -> list[T]:
            async with gate:
                return await call(chunk, md)

        results = await asyncio.gather(*(one(c) for c in chunks), return_exceptions=True)
        out: dict[str, T] = {}
        for chunk, got in zip(chunks, results, strict=True):
            if isinstance(got, grpc.aio.AioRpcError):
                raise _relay(got, self.addr) from None  # the first refusal in name order
            if isinstance(got, BaseException):
                raise got
            out.update(
                zip(chunk, got, strict=False)
            )  # members answers in request order; a short answer leaves the rest out
        return out

    async def batch_get_payees(
        self, persons: Iterable[str], region: RegionCode | str, *, token: str | None = None
    ) -> dict[str, members_pb2.Payee]:
        """``persons/{id}`` → name, full card number, village. ``token`` (the caller's own) is
        forwarded when given, else a ``system`` token over ``region`` is minted."""

        async def call(chunk: list[str], md: tuple[tuple[str, str], ...]) -> list[members_pb2.Payee]:
            resp = await self._stub().BatchGetPayees(
                members_pb2.BatchGetPayeesRequest(names=chunk), metadata=md, timeout=self.timeout
            )
            return list(resp.payees)

        return await self._batched(persons, token or self._token(region), call)

    async def batch_get_persons(
        self, persons: Iterable[str], region: RegionCode | str, *, token: str | None = None
    ) -> dict[str, members_pb2.Person]:
        """``persons/{id}`` → the masked Person (张*明)."""

        async def call(chunk: list[str], md: tuple[tuple[str, str], ...]) -> list[members_pb2.Person]:
            resp = await self._stub().BatchGetPersons(
                members_pb2.BatchGetPersonsRequest(names=chunk), metadata=md, timeout=self.timeout
            )
            return list(resp.persons)

        return await self._batched(persons, token or self._token(region), call)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None


def _relay(e: grpc.aio.AioRpcError, addr: str) -> DomainError:
    """Members' refusal as the same kind of error here, with its reason and message."""
    info = error_details(e)[0]
    reason, meta = (info.reason, dict(info.metadata)) if info is not None else (None, {})
    message = f"成员服务：{e.details()}"
    kinds: dict[grpc.StatusCode, type[DomainError]] = {
        grpc.StatusCode.NOT_FOUND: NotFound,
        grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
        grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
        grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    }
    kind = kinds.get(e.code())
    if kind is not None:
        return kind(message, reason=reason, metadata=meta)
    return Unavailable(
        "成员服务暂时无法访问，无法取得收款人信息，请稍后重试",
        reason="MEMBERS_UNAVAILABLE",
        metadata={"members_addr": addr},
    )
