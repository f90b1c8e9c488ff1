"""The board's only way to the data: gRPC calls to funds and members with the
board's own token (role ``public_board``).

Every method returns the board's own small dataclasses holding exactly what a
page may show — masked names, amounts, dates, rule reasons — and never a
protobuf message, so a template cannot reach a field nobody chose to publish
(an application's household, its health or loan details, other objectors'
names and contacts). Text that comes from people rather than from rules (a
resolution written by staff) goes through :func:`jsxcore.pii.redact`, and a
name that arrives unmasked is masked again here.

Calls used: FundsService ListPublicity, GetApplication, ListApplications
(state PAID), GetProgram, ListPayments, LodgeObjection; MembersService
BatchGetPersons (masked-only by contract). Errors become :class:`BoardError`
with a kind the pages map to a status and a Chinese message.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import ClassVar, Generic, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2, funds_pb2_grpc
from jsx.members.v1 import members_pb2, members_pb2_grpc
from jsx_board.config import BoardConfig
from jsxcore.pii import mask_name, redact
from jsxcore.runtime import error_details
from jsxcore.values import RegionCode

log = logging.getLogger("jsx_board.gateway")
CST = timezone(timedelta(hours=8))

#: Lines per page of a list.
PAGE_SIZE = 20
#: GetApplication calls in flight for one page.
IN_FLIGHT = 8
#: ListPayments pages read per batch when looking up a paid list's payees.
PAYMENT_PAGES = 5
PAYMENT_PAGE_SIZE = 1000
#: How long program names are kept.
PROGRAM_TTL_S = 600.0

_APPLICATION_RE = re.compile(r"applications/([0-9]{1,12})")

#: Application states in words a villager reads.
STATE_WORDS = {
    "IN_PUBLICITY": "公示中",
    "OBJECTED": "有异议，暂停支付",
    "READY_TO_PAY": "公示期满，待支付",
    "PAYMENT_ISSUED": "支付中",
    "PAID": "已支付",
    "PAYMENT_FAILED": "支付未成功，待重新发放",
    "REJECTED": "未通过",
    "WITHDRAWN": "已撤回",
    "SUBMITTED": "审核中",
    "IN_REVIEW": "审核中",
    "APPROVED": "已审批",
}
OBJECTION_WORDS = {
    "OPEN": "正在核查（该项目暂停支付）",
    "UPHELD": "异议成立：该项目不予支付",
    "DISMISSED": "异议不成立：经核查，该项目继续办理",
}

T = TypeVar("T")
Req = TypeVar("Req")
Resp = TypeVar("Resp")

#: grpc.health.v1 Check, bound on the channel itself: types-grpcio-health-checking declares
#: HealthStub without its methods, and this is all the generated stub does
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


class BoardError(Exception):
    """A call the board could not complete; ``kind`` picks the page and status."""

    STATUS: ClassVar[dict[str, int]] = {
        "unavailable": 503,
        "not_found": 404,
        "out_of_scope": 404,
        "not_in_publicity": 409,
        "form_used": 409,
        "busy": 503,
        "bad_page": 400,
        "refused": 400,
    }

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def status(self) -> int:
        return self.STATUS.get(self.kind, 500)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_token: str = ""


@dataclass(frozen=True)
class PublicItem:
    """One line of 公示."""

    application: str
    program: str
    village: RegionCode
    name: str
    amount_fen: int
    period: str
    basis: tuple[str, ...]
    start: datetime
    end: datetime
    objected: bool = False

    @property
    def item_id(self) -> str:
        return self.application.split("/")[1]


@dataclass(frozen=True)
class PaidItem:
    """One line of a paid list (已发放)."""

    program: str
    village: RegionCode
    name: str
    amount_fen: int
    period: str
    paid_on: date | None
    #: False when ``paid_on`` is the day funds recorded the bank's result (the application's last
    #: change), not the bank's own paid date: funds does not fill Application.payment yet, so the
    #: payment (and its paid_date) cannot be found from the application
    paid_on_exact: bool = True


@dataclass(frozen=True)
class ObjectionOutcome:
    """What the objector may learn about their objection."""

    objection: str
    state: str
    state_words: str
    lodged: datetime | None
    resolved: datetime | None
    resolution: str
    program: str
    amount_fen: int
    village: RegionCode
    application_words: str


def safe_name(name: str) -> str:
    """A name for a public page: masked names pass, anything else is masked here."""
    name = name.strip()
    if not name:
        return ""
    return name if "*" in name else mask_name(name)


def basis_of(app: funds_pb2.Application) -> tuple[str, ...]:
    """The rule reasons behind the amount (the entitlement hooks first), redacted, at most 3 lines."""
    amount_hooks = [p for p in app.provenance if "amount" in p.hook or "entitle" in p.hook]
    chosen = amount_hooks or list(app.provenance)
    lines: list[str] = []
    for p in chosen:
        for r in p.reasons:
            text = redact(r.strip())
            if text and text not in lines:
                lines.append(text[:160])
    return tuple(lines[:3])


def _ts(value: Timestamp) -> datetime | None:
    if not value.seconds and not value.nanos:
        return None
    dt: datetime = value.ToDatetime(tzinfo=UTC)
    return dt


def _state(app: funds_pb2.Application) -> str:
    return funds_pb2.ApplicationState.Name(app.state).removeprefix("APPLICATION_STATE_")


def parse_application(name: str) -> str | None:
    """``applications/12`` (or just ``12``) → canonical name; None if malformed."""
    text = name.strip()
    if text.isdigit():
        text = f"applications/{text}"
    m = _APPLICATION_RE.fullmatch(text)
    return f"applications/{int(m.group(1))}" if m else None


class Gateway:
    """Channels to funds (required) and members (optional) and the calls the pages make."""

    def __init__(self, config: BoardConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._md = (("authorization", f"Bearer {config.token}"),)
        self._funds_ch: grpc.aio.Channel | None = None
        self._members_ch: grpc.aio.Channel | None = None
        self._programs: dict[str, tuple[float, str]] = {}

    def __repr__(self) -> str:
        return f"Gateway(funds={self.config.funds_addr!r}, members={self.config.members_addr!r})"

    # -- channels

    def _channel(self, addr: str) -> grpc.aio.Channel:
        options = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 2000)]
        if self.config.grpc_ca is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=self.config.grpc_ca.read_bytes())
            return grpc.aio.secure_channel(addr, creds, options=options)
        return grpc.aio.insecure_channel(addr, options=options)

    @property
    def funds(self) -> funds_pb2_grpc.FundsServiceAsyncStub:
        if self._funds_ch is None:
            self._funds_ch = self._channel(self.config.funds_addr)
        return funds_pb2_grpc.FundsServiceStub(self._funds_ch)

    @property
    def members(self) -> members_pb2_grpc.MembersServiceAsyncStub | None:
        if self.config.members_addr is None:
            return None
        if self._members_ch is None:
            self._members_ch = self._channel(self.config.members_addr)
        return members_pb2_grpc.MembersServiceStub(self._members_ch)

    async def close(self) -> None:
        for ch in (self._funds_ch, self._members_ch):
            if ch is not None:
                await ch.close()
        self._funds_ch = self._members_ch = None

    async def ready(self) -> bool:
        """True when the funds service answers health SERVING."""
        if self._funds_ch is None:
            _ = self.funds
        assert self._funds_ch is not None
        try:
            check = self._funds_ch.unary_unary(
                HEALTH_CHECK,
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            r = await check(health_pb2.HealthCheckRequest(service=""), timeout=min(2.0, self.config.grpc_timeout_s))
        except grpc.aio.AioRpcError:
            return False
        return bool(r.status == health_pb2.HealthCheckResponse.SERVING)

    # -- one call, errors mapped

    async def _call(self, what: str, call: grpc.aio.UnaryUnaryMultiCallable[Req, Resp], request: Req) -> Resp:
        try:
            return await call(request, metadata=self._md, timeout=self.config.grpc_timeout_s)
        except grpc.aio.AioRpcError as e:
            raise _board_error(what, e) from None

    # -- 公示

    def _in_scope(self, region: RegionCode) -> None:
        if not self.config.region.contains(region):
            raise BoardError("out_of_scope", "本公示栏不公示该地区的项目")

    async def publicity(self, region: RegionCode, page_token: str = "") -> Page[PublicItem]:
        """What is in 公示 now in ``region`` (and below), one page."""
        self._in_scope(region)
        resp = await self._call(
            "ListPublicity",
            self.funds.ListPublicity,
            funds_pb2.ListPublicityRequest(
                region=common_pb2.RegionCode(code=region.code), page_size=PAGE_SIZE, page_token=page_token
            ),
        )
        apps = await self._applications([e.application for e in resp.entries])
        items = [self._item(e, apps.get(e.application)) for e in resp.entries]
        return Page(items, resp.next_page_token)

    async def _applications(self, names: Sequence[str]) -> dict[str, funds_pb2.Application]:
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one(name: str) -> funds_pb2.Application | None:
            async with gate:
                try:
                    return await self._call(
                        "GetApplication", self.funds.GetApplication, funds_pb2.GetApplicationRequest(name=name)
                    )
                except BoardError as e:
                    if e.kind == "unavailable":
                        raise
                    return None  # gone since the list was read: shown without its basis

        got = await asyncio.gather(*(one(n) for n in names))
        return {n: a for n, a in zip(names, got, strict=True) if a is not None}

    @staticmethod
    def _item(entry: funds_pb2.PublicityEntry, app: funds_pb2.Application | None) -> PublicItem:
        start, end = _ts(entry.publicity_start_time), _ts(entry.publicity_end_time)
        return PublicItem(
            application=entry.application,
            program=entry.program_display_name,
            village=RegionCode.parse(entry.village.code),
            name=safe_name(entry.beneficiary_display_name),
            amount_fen=entry.amount.fen,
            period=entry.period.code,
            basis=basis_of(app) if app is not None else (),
            start=start or datetime.now(UTC),
            end=end or datetime.now(UTC),
            objected=app is not None and _state(app) == "OBJECTED",
        )

    async def public_item(self, application: str) -> PublicItem | None:
        """The 公示 line of ``application`` if it is in 公示 now (within this board's region), else None."""
        name = parse_application(application)
        if name is None:
            return None
        try:
            app = await self._call(
                "GetApplication", self.funds.GetApplication, funds_pb2.GetApplicationRequest(name=name)
            )
        except BoardError as e:
            if e.kind in ("not_found", "out_of_scope", "refused"):
                return None
            raise
        village = RegionCode.parse(app.village.code)
        if not self.config.region.contains(village) or _state(app) not in ("IN_PUBLICITY", "OBJECTED"):
            return None
        token = ""
        for _ in range(50):  # one village's 公示 for one program: a page or two
            resp = await self._call(
                "ListPublicity",
                self.funds.ListPublicity,
                funds_pb2.ListPublicityRequest(
                    region=common_pb2.RegionCode(code=village.code),
                    program=app.program,
                    page_size=100,
                    page_token=token,
                ),
            )
            for entry in resp.entries:
                if entry.application == name:
                    return self._item(entry, app)
            token = resp.next_page_token
            if not token:
                break
        return None

    # -- objections

    async def lodge(self, application: str, text: str, contact: str, request_id: str) -> str:
        """LodgeObjection; returns the objection's name. ``contact`` goes only into the request."""
        lodged_by = f"公示栏网上提交；联系方式：{contact}" if contact else "公示栏网上提交（匿名）"
        app = await self._call(
            "LodgeObjection",
            self.funds.LodgeObjection,
            funds_pb2.LodgeObjectionRequest(
                application=application, reason=text, lodged_by=lodged_by, request_id=request_id
            ),
        )
        if not app.objections:
            raise BoardError("unavailable", "异议已提交，但未取得异议编号，请稍后在查询页重试")
        # the response is made in the lodging transaction, objections in id order: ours is the last
        return str(app.objections[-1].name)

    async def outcome(self, objection: str) -> ObjectionOutcome | None:
        """Where ``objection`` stands (None if the board cannot see it)."""
        application = objection.rsplit("/objections/", 1)[0]
        try:
            app = await self._call(
                "GetApplication", self.funds.GetApplication, funds_pb2.GetApplicationRequest(name=application)
            )
        except BoardError as e:
            if e.kind in ("not_found", "out_of_scope", "refused"):
                return None
            raise
        found = next((o for o in app.objections if o.name == objection), None)
        if found is None:
            return None
        state = funds_pb2.ObjectionState.Name(found.state).removeprefix("OBJECTION_STATE_")
        return ObjectionOutcome(
            objection=objection,
            state=state,
            state_words=OBJECTION_WORDS.get(state, "正在核查"),
            lodged=_ts(found.lodge_time),
            resolved=_ts(found.resolve_time),
            resolution=redact(found.resolution.strip())[:1000],
            program=await self.program_name(app.program),
            amount_fen=app.amount_entitled.fen,
            village=RegionCode.parse(app.village.code),
            application_words=STATE_WORDS.get(_state(app), "办理中"),
        )

    # -- paid lists

    async def program_name(self, program: str) -> str:
        now = self._clock()
        hit = self._programs.get(program)
        if hit is not None and now - hit[0] < PROGRAM_TTL_S:
            return hit[1]
        try:
            p = await self._call("GetProgram", self.funds.GetProgram, funds_pb2.GetProgramRequest(name=program))
            name = str(p.display_name)
        except BoardError as e:
            if e.kind == "unavailable":
                raise
            name = ""
        self._programs[program] = (now, name)
        return name

    async def paid(self, region: RegionCode, page_token: str = "") -> Page[PaidItem]:
        """Applications paid in ``region`` (bank confirmed), one page, with masked payee names."""
        self._in_scope(region)
        resp = await self._call(
            "ListApplications",
            self.funds.ListApplications,
            funds_pb2.ListApplicationsRequest(
                region=common_pb2.RegionCode(code=region.code),
                state=funds_pb2.APPLICATION_STATE_PAID,
                page_size=PAGE_SIZE,
                page_token=page_token,
            ),
        )
        apps = list(resp.applications)
        payments = await self._payments(apps)
        payees = {a.name: (payments[a.name].payee if a.name in payments else a.person) for a in apps}
        names = await self._masked_names([p for p in payees.values() if p])
        items = []
        for a in apps:
            pay = payments.get(a.name)
            exact = False
            if pay is not None and pay.paid_date.year > 0:
                exact = True
                paid_on: date | None = date(pay.paid_date.year, pay.paid_date.month, pay.paid_date.day)
            else:
                changed = _ts(a.update_time)
                paid_on = changed.astimezone(CST).date() if changed else None
            items.append(
                PaidItem(
                    program=await self.program_name(a.program),
                    village=RegionCode.parse(a.village.code),
                    name=safe_name(names.get(payees[a.name], "")),
                    amount_fen=pay.amount.fen if pay is not None else a.amount_entitled.fen,
                    period=a.period.code,
                    paid_on=paid_on,
                    paid_on_exact=exact,
                )
            )
        return Page(items, resp.next_page_token)

    async def _payments(self, apps: Sequence[funds_pb2.Application]) -> dict[str, funds_pb2.Payment]:
        """application name → its paid Payment, read batch by batch (bounded: see PAYMENT_PAGES)."""
        wanted: dict[str, set[str]] = {}
        for a in apps:
            if a.payment and "/payments/" in a.payment:
                wanted.setdefault(a.payment.split("/payments/")[0], set()).add(a.name)
        out: dict[str, funds_pb2.Payment] = {}
        for batch, names in wanted.items():
            token = ""
            for _ in range(PAYMENT_PAGES):
                resp = await self._call(
                    "ListPayments",
                    self.funds.ListPayments,
                    funds_pb2.ListPaymentsRequest(
                        payment_batch=batch,
                        state=funds_pb2.PAYMENT_STATE_PAID,
                        page_size=PAYMENT_PAGE_SIZE,
                        page_token=token,
                    ),
                )
                for p in resp.payments:
                    if p.application in names:
                        out[p.application] = p
                token = resp.next_page_token
                if not token or names <= out.keys():
                    break
        return out

    async def _masked_names(self, persons: Sequence[str]) -> dict[str, str]:
        stub = self.members
        unique = list(dict.fromkeys(p for p in persons if p.startswith("persons/")))
        if stub is None or not unique:
            return {}
        try:
            resp = await stub.BatchGetPersons(
                members_pb2.BatchGetPersonsRequest(names=unique[:1000]),
                metadata=self._md,
                timeout=self.config.grpc_timeout_s,
            )
        except grpc.aio.AioRpcError as e:
            log.warning("BatchGetPersons failed: %s", e.code().name)
            return {}  # the list is still worth showing without names
        return {p.name: p.display_name for p in resp.persons}


def _board_error(what: str, e: grpc.aio.AioRpcError) -> BoardError:
    code = e.code()
    info, _, _ = error_details(e)
    reason = info.reason if info is not None else ""
    # status and reason only: a service's message may name people or echo the request
    log.info("%s -> %s %s", what, code.name, reason)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return BoardError("unavailable", "系统暂时无法访问，请稍后再试")
    if code == grpc.StatusCode.NOT_FOUND:
        return BoardError("not_found", "没有找到该项目")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return BoardError("out_of_scope", "本公示栏不公示该项目")
    if code == grpc.StatusCode.FAILED_PRECONDITION and reason == "NOT_IN_PUBLICITY":
        return BoardError("not_in_publicity", "该项目已不在公示期内，不能再提出异议；如有疑问请向村（社区）计生协反映")
    if code == grpc.StatusCode.INVALID_ARGUMENT and reason == "REQUEST_ID_REUSED":
        return BoardError("form_used", "这份表单已经提交过；如需再提出一条异议，请重新打开异议表单")
    if code == grpc.StatusCode.INVALID_ARGUMENT and "TOKEN" in reason:
        return BoardError("bad_page", "翻页参数无效，请从第一页重新查看")
    if code == grpc.StatusCode.ABORTED:
        return BoardError("busy", "系统正忙，请稍后重试")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BoardError("refused", "请求内容有误，请检查后重试")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        log.error("the funds or members service refused the board's token (%s): renew JSX_BOARD_TOKEN", reason)
        return BoardError("unavailable", "公示栏暂时无法访问，请稍后再试")
    log.error("%s failed: %s %s", what, code.name, reason)
    return BoardError("unavailable", "系统暂时无法访问，请稍后再试")


__all__ = [
    "OBJECTION_WORDS",
    "PAGE_SIZE",
    "STATE_WORDS",
    "BoardError",
    "Gateway",
    "ObjectionOutcome",
    "Page",
    "PaidItem",
    "PublicItem",
    "basis_of",
    "parse_application",
    "safe_name",
]
