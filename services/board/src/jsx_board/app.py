"""The board's web app: server-rendered pages on Starlette with Jinja2 templates.

Pages (Chinese, mobile first, no JavaScript anywhere — the CSP forbids it):

=================  ===========================================================
``/``              home: pick a county, township or village
``/gongshi``       what is in 公示 now for ``?region=`` (default: the board's),
                   masked names, amounts, rule basis, days left; ``&page=``
``/yiyi``          GET ``?item=<application id>``: the objection form;
                   POST: lodge it (LodgeObjection) and show the reference
``/chaxun``        look an objection's outcome up by its reference ``?ref=``
``/yifafang``      paid lists (bank confirmed) for ``?region=``, masked
``/zhangmu``       幸福基金 public accounts: only when an ``accounts`` page
                   provider is given (see :class:`AccountsPage`); 404 otherwise
``/healthz``       liveness (the process answers); ``/readyz``: funds SERVING
``/static/…``      the stylesheet
=================  ===========================================================

Rate limits (per client address; objections also per contact): see
:mod:`jsx_board.limits`. The access log holds method, path (never the query
string, a form or an address), status and time.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jsx_board import regions
from jsx_board.config import BoardConfig
from jsx_board.gateway import BoardError, Gateway, PublicItem
from jsx_board.limits import ContactKeys, RateLimiter, address_key, retry_after_s
from jsx_board.refs import References
from jsx_board.regions import region_label, short_label
from jsxcore.errors import InvalidArgument
from jsxcore.pii import redact
from jsxcore.values import RegionCode, RegionLevel

log = logging.getLogger("jsx_board")
access_log = logging.getLogger("jsx_board.access")

CST = timezone(timedelta(hours=8))
HERE = Path(__file__).parent
MAX_FORM_BYTES = 16 * 1024
TEXT_MIN, TEXT_MAX, CONTACT_MAX = 5, 1000, 60
_PAGE_TOKEN_MAX = 256
_EXEMPT = ("/static/", "/healthz", "/readyz")

#: Sent with every response: no scripts at all, nothing framed, no referrer leaks.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


class AccountsPage(Protocol):
    """Hook for the 幸福基金 public accounts page (issue 15's governance part).

    Given a region, return the template name and its context (the provider
    reads the accounts RPC with the board's gateway), or None when that region
    has no public accounts. Until such a provider is passed to
    :func:`create_app`, ``/zhangmu`` answers 404 and the menu hides the link.
    """

    async def __call__(self, gateway: Gateway, region: RegionCode) -> tuple[str, dict[str, Any]] | None: ...


@dataclass(frozen=True)
class RegionNav:
    """What the region links of a page show (templates ``_region_trail`` and ``_region_areas``)."""

    #: the board's region down to this page's, both included
    trail: list[RegionCode]
    #: the regions one level below, in code order
    below: list[RegionCode]
    #: what those are called: 县（市、区）, 乡镇（街道）, 村（社区）
    below_word: str


# ---------------------------------------------------------------- formatting


def yuan(fen: int) -> str:
    """``123456`` → ``1,234.56 元`` (exact: integer 分)."""
    sign = "-" if fen < 0 else ""
    fen = abs(int(fen))
    return f"{sign}{fen // 100:,}.{fen % 100:02d} 元"


def cn_date(value: datetime | date) -> str:
    d = value.astimezone(CST).date() if isinstance(value, datetime) else value
    return f"{d.year}年{d.month}月{d.day}日"


def cn_datetime(value: datetime) -> str:
    t = value.astimezone(CST)
    return f"{t.year}年{t.month}月{t.day}日 {t:%H:%M}"


def last_day(end: datetime) -> date:
    """公示 ends at midnight (China time) after its last day: that last day."""
    return (end.astimezone(CST) - timedelta(seconds=1)).date()


def days_left_words(end: datetime, now: datetime) -> str:
    left = (last_day(end) - now.astimezone(CST).date()).days
    if left > 0:
        return f"还有 {left} 天"
    if left == 0:
        return "今天截止"
    return "已截止"


def period_words(code: str) -> str:
    """``2022-08`` → 2022年8月; ``2022`` → 2022年; ``2022-Q3`` → 2022年第3季度; ``2022-H1`` → 2022年上半年."""
    if len(code) == 4 and code.isdigit():
        return f"{code}年"
    year, _, rest = code.partition("-")
    if rest.isdigit():
        return f"{year}年{int(rest)}月"
    if rest[:1] == "Q":
        return f"{year}年第{rest[1:]}季度"
    if rest in ("H1", "H2"):
        return f"{year}年{'上' if rest == 'H1' else '下'}半年"
    return code


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        yuan=yuan,
        cn_date=cn_date,
        cn_datetime=cn_datetime,
        last_day=lambda end: cn_date(last_day(end)),
        days_left=days_left_words,
        period=period_words,
        region=region_label,
        short=short_label,
    )
    return env


# ---------------------------------------------------------------- client address


def client_address(request: Request, trusted: tuple[str, ...]) -> str:
    """The peer's address; behind a trusted proxy, the right-most address in
    ``X-Forwarded-For`` that is not itself a trusted proxy."""
    peer = request.client.host if request.client else ""
    if not trusted or not _within(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop
    return peer


def _within(addr: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n) for n in networks)


# ---------------------------------------------------------------- the app


class Board:
    """The pages, with what they share: gateway, references, limiters, templates, clock."""

    def __init__(
        self,
        config: BoardConfig,
        gateway: Gateway,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        accounts: AccountsPage | None = None,
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.clock = clock
        self.refs = References(config.secret)
        self.pages = RateLimiter(config.rate_pages, clock=monotonic)
        self.objections = RateLimiter(config.rate_objections, clock=monotonic)
        self.contacts = RateLimiter(config.rate_contact, clock=monotonic)
        self.contact_keys = ContactKeys()
        self.accounts = accounts
        self.env = _templates()

    # -- rendering

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def render(
        self, template: str, status: int = 200, headers: Mapping[str, str] | None = None, **ctx: Any
    ) -> Response:
        base = {
            "site_title": self.config.title,
            "board_region": self.config.region,
            "accounts_enabled": self.accounts is not None,
            "now": self.now(),
            "status": status,
        }
        html = self.env.get_template(template).render({**base, **ctx})
        return HTMLResponse(html, status_code=status, headers=dict(headers or {}))

    def message(self, status: int, heading: str, message: str, *, kind: str = "bad", **extra: Any) -> Response:
        links = extra.pop("links", [("/gongshi", "查看正在公示的项目"), ("/", "返回首页")])
        return self.render("message.html", status, heading=heading, message=message, kind=kind, links=links, **extra)

    def error(self, e: BoardError) -> Response:
        heading = {
            "unavailable": "暂时无法访问",
            "busy": "系统正忙",
            "not_found": "没有找到",
            "out_of_scope": "不在本公示栏范围",
            "not_in_publicity": "不在公示期内",
            "form_used": "表单已提交过",
            "bad_page": "翻页参数无效",
        }.get(e.kind, "请求有误")
        headers = {"retry-after": "30"} if e.status == 503 else None
        return self.message(e.status, heading, e.message, headers=headers)

    def region_nav(self, region: RegionCode | None = None, villages: Iterable[RegionCode] = ()) -> RegionNav:
        """Choosing a region by name (county → townships → villages, :mod:`jsx_board.regions`):
        the way from the board's region down to ``region`` and the regions one level below it.
        Villages on the page that the region list lacks (records under older codes) are
        offered too, under their code, so every line on a page can be narrowed to."""
        here = region or self.config.region
        below = regions.children(here)
        listed = {r.code for r in below}
        if here.level < RegionLevel.VILLAGE:
            for v in villages:
                step: RegionCode | None = v
                while step is not None and step.parent is not None and step.parent != here:
                    step = step.parent
                if step is not None and step != here and here.contains(step) and step.code not in listed:
                    listed.add(step.code)
                    below.append(step)
            below.sort()
        return RegionNav(regions.trail(self.config.region, here), below, regions.children_word(here))

    def region_arg(self, request: Request) -> RegionCode:
        text = unicodedata.normalize("NFKC", request.query_params.get("region", "")).strip()
        if not text:
            return self.config.region
        try:
            region = RegionCode.parse(text)
        except InvalidArgument:
            raise BoardError("refused", "地区代码应为 6 位（县）、9 位（乡镇）或 12 位（村）数字") from None
        if not self.config.region.contains(region):
            raise BoardError("out_of_scope", f"本公示栏只公示{region_label(self.config.region)}范围内的项目")
        return region

    def page_arg(self, request: Request) -> str:
        token = request.query_params.get("page", "")
        if len(token) > _PAGE_TOKEN_MAX:
            raise BoardError("bad_page", "翻页参数无效，请从第一页重新查看")
        return token

    # -- pages

    async def home(self, request: Request) -> Response:
        return self.render("home.html", nav="home", rnav=self.region_nav())

    async def gongshi(self, request: Request) -> Response:
        region = self.region_arg(request)
        token = self.page_arg(request)
        page = await self.gateway.publicity(region, token)
        return self.render(
            "gongshi.html",
            nav="gongshi",
            region=region,
            items=page.items,
            next_token=page.next_token,
            page_token=token,
            base_path="/gongshi",
            rnav=self.region_nav(region, (it.village for it in page.items)),
        )

    async def yifafang(self, request: Request) -> Response:
        region = self.region_arg(request)
        token = self.page_arg(request)
        page = await self.gateway.paid(region, token)
        return self.render(
            "yifafang.html",
            nav="yifafang",
            region=region,
            items=page.items,
            next_token=page.next_token,
            page_token=token,
            base_path="/yifafang",
            rnav=self.region_nav(region, (it.village for it in page.items)),
        )

    async def _item_or_message(self, item_arg: str) -> PublicItem | Response:
        item = await self.gateway.public_item(item_arg) if item_arg else None
        if item is None:
            return self.message(
                404,
                "该项目不在公示期内",
                "没有找到正在公示的这一项：它可能已过公示期、已被撤回或编号有误。请从公示名单中选择要提出异议的项目。",
            )
        return item

    async def yiyi_form(self, request: Request) -> Response:
        got = await self._item_or_message(request.query_params.get("item", ""))
        if isinstance(got, Response):
            return got
        return self.form(got, {}, "")

    def form(self, item: PublicItem, errors: dict[str, str], text: str, status: int = 200) -> Response:
        return self.render(
            "yiyi_form.html",
            status,
            nav="gongshi",
            item=item,
            errors=errors,
            text=text,
            form_token=self.refs.form_token(item.application, now=self.clock()),
            headers={"cache-control": "no-store"},
        )

    async def yiyi_submit(self, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return self.message(415, "无法提交", "请通过异议表单提交。")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return self.message(413, "内容过长", f"异议内容不能超过 {TEXT_MAX} 字。")
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            return self.message(400, "无法提交", "表单内容无法识别，请重新打开异议表单填写。")

        def one(name: str) -> str:
            values = fields.get(name) or [""]
            return unicodedata.normalize("NFC", values[0])

        got = await self._item_or_message(one("item"))
        if isinstance(got, Response):
            return got
        item = got
        text = one("text").strip()
        contact = " ".join(one("contact").split())
        errors: dict[str, str] = {}
        if len(text) < TEXT_MIN:
            errors["text"] = f"请填写异议内容，至少 {TEXT_MIN} 个字"
        elif len(text) > TEXT_MAX:
            errors["text"] = f"异议内容不能超过 {TEXT_MAX} 字（现为 {len(text)} 字）"
        if contact and not 3 <= len(contact) <= CONTACT_MAX:
            errors["contact"] = f"联系方式应为 3 至 {CONTACT_MAX} 个字符，请重新填写"
        request_id = self.refs.request_id(one("form"), item.application, now=self.clock())
        if request_id is None:
            errors["text"] = errors.get("text") or "表单已过期，请核对内容后重新提交"
        if errors:
            # the text comes back masked (身份证, phones), the contact never comes back
            if "contact" not in errors and contact:
                errors["contact"] = "为保护您的联系方式，页面不回显，请重新填写"
            return self.form(item, errors, redact(text)[:TEXT_MAX], 400)
        assert request_id is not None

        address = address_key(client_address(request, self.config.trusted_proxies))
        wait = self.objections.take(address)
        if not wait and contact:
            wait = self.contacts.take(self.contact_keys.key(contact))
        if wait:
            return self.too_many(wait, "异议提交过于频繁")
        objection = await self.gateway.lodge(item.application, text, contact, request_id)
        reference = self.refs.reference(objection)
        log.info("objection lodged", extra={"objection": objection, "application": item.application})
        return self.render(
            "yiyi_done.html", nav="gongshi", item=item, reference=reference, headers={"cache-control": "no-store"}
        )

    async def chaxun(self, request: Request) -> Response:
        raw = request.query_params.get("ref", "")
        if not raw.strip():
            return self.render("chaxun.html", nav="chaxun")
        objection = self.refs.objection(raw)
        outcome = await self.gateway.outcome(objection) if objection else None
        if outcome is None:
            return self.render(
                "chaxun.html",
                404,
                nav="chaxun",
                reference_error="查询编号无效或没有对应的异议",
                headers={"cache-control": "no-store"},
            )
        return self.render(
            "chaxun.html",
            nav="chaxun",
            outcome=outcome,
            reference=self.refs.reference(objection or ""),
            headers={"cache-control": "no-store"},
        )

    async def zhangmu(self, request: Request) -> Response:
        if self.accounts is None:
            return self.message(404, "没有找到", "幸福基金公开账目暂未开放。")
        region = self.region_arg(request)
        got = await self.accounts(self.gateway, region)
        if got is None:
            return self.message(404, "没有找到", f"{region_label(region)}暂无公开的幸福基金账目。")
        template, ctx = got
        return self.render(template, nav="zhangmu", region=region, **ctx)

    async def favicon(self, request: Request) -> Response:
        return Response(status_code=204)

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, request: Request) -> Response:
        ok = await self.gateway.ready()
        return PlainTextResponse("ok" if ok else "funds unavailable", status_code=200 if ok else 503)

    def too_many(self, wait: float, heading: str) -> Response:
        seconds = retry_after_s(wait)
        when = f"{seconds} 秒" if seconds < 120 else f"{(seconds + 59) // 60} 分钟"
        return self.message(
            429, heading, f"请求过于频繁，请 {when}后再试。", kind="bad", headers={"retry-after": str(seconds)}
        )

    # -- middleware: limits, headers, access log

    async def middleware(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        path = request.url.path
        response: Response
        if not path.startswith(_EXEMPT):
            wait = self.pages.take(address_key(client_address(request, self.config.trusted_proxies)))
            response = self.too_many(wait, "访问过于频繁") if wait else await self._guarded(call_next, request)
        else:
            response = await self._guarded(call_next, request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if not path.startswith("/static/"):
            response.headers.setdefault("cache-control", "no-cache")
        access_log.info(
            "%s %s %s",
            request.method,
            path,
            response.status_code,
            extra={"status": response.status_code, "ms": round((time.perf_counter() - started) * 1000, 1)},
        )
        return response

    async def _guarded(self, call_next: RequestResponseEndpoint, request: Request) -> Response:
        try:
            return await call_next(request)
        except BoardError as e:
            return self.error(e)


def create_app(
    config: BoardConfig,
    *,
    gateway: Gateway | None = None,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    accounts: AccountsPage | None = None,
) -> Starlette:
    """The ASGI app. ``gateway`` defaults to one built from ``config`` (closed at shutdown)."""
    regions.warm()  # the region list, read once now rather than on the first page view
    gw = gateway or Gateway(config)
    board = Board(config, gw, clock=clock, monotonic=monotonic, accounts=accounts)

    def handle(method: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await method(request)
            except BoardError as e:
                return board.error(e)

        return endpoint

    async def not_found(request: Request, exc: Exception) -> Response:
        return board.message(404, "没有找到", "您要找的页面不存在。")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return board.message(405, "无法办理", "该页面不支持这种操作。")

    async def server_error(request: Request, exc: Exception) -> Response:
        # the traceback goes to the log (uvicorn logs it, PII filter on); the page says nothing more
        return board.message(500, "系统出错", "公示栏出现了错误，请稍后再试。")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if gateway is None:
                await gw.close()

    routes = [
        Route("/", handle(board.home)),
        Route("/gongshi", handle(board.gongshi)),
        Route("/yiyi", handle(board.yiyi_form), methods=["GET"]),
        Route("/yiyi", handle(board.yiyi_submit), methods=["POST"]),
        Route("/chaxun", handle(board.chaxun)),
        Route("/yifafang", handle(board.yifafang)),
        Route("/zhangmu", handle(board.zhangmu)),
        Route("/healthz", board.healthz),
        Route("/readyz", board.readyz),
        Route("/favicon.ico", board.favicon),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=board.middleware)],
        exception_handlers={404: not_found, 405: not_allowed, Exception: server_error},
        lifespan=lifespan,
    )
    app.state.board = board
    return app


__all__ = [
    "SECURITY_HEADERS",
    "AccountsPage",
    "Board",
    "client_address",
    "cn_date",
    "create_app",
    "days_left_words",
    "period_words",
    "yuan",
]
