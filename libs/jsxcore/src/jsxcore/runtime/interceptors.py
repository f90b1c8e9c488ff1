"""grpc.aio server interceptors: access log, error mapping, authorisation.

Installed outermost first — ``[AccessLogInterceptor, ErrorInterceptor,
AuthInterceptor, …]`` — so an auth denial is turned into a rich status like
any other domain error, and every RPC, denied or not, gets one access line.

Each interceptor wraps the method handler's behaviour once per method (the
wrapped handler is cached) and does its per-call work inside the wrapper;
all four RPC shapes are wrapped, so a streaming RPC cannot slip past auth.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf import descriptor_pool

from jsx.common.v1 import annotations_pb2
from jsxcore.auth import Caller, reset_caller, set_caller, verify_token
from jsxcore.errors import DomainError, PermissionDenied, Unauthenticated
from jsxcore.pii import redact
from jsxcore.runtime.errors import internal_status, new_error_ref, status_for, to_grpc_status
from jsxcore.runtime.logging import RPC, RpcInfo

log = logging.getLogger("jsx.rpc")
access_log = logging.getLogger("jsx.access")

#: Services anyone may call without a token: probes and tooling.
PUBLIC_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

Behavior = Callable[..., Any]
# strings: grpc's classes are generic only in the type stubs, not at run time
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
#: (behavior, request_or_iterator, context, method) -> awaitable result
Around: TypeAlias = "Callable[[Behavior, Any, Context, str], Awaitable[Any]]"
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


def _wrap_behavior(behavior: Behavior, method: str, around: Around) -> Behavior:
    """Wrap a unary-response coroutine or a streaming-response async generator
    so that ``around`` runs per call. For generators, ``around`` receives a
    coroutine function that drains the generator, forwarding messages with
    ``context.write`` (grpc.aio allows mixing both styles per call)."""
    if inspect.isasyncgenfunction(behavior):

        async def drain(req: Any, ctx: Context) -> None:
            async for msg in behavior(req, ctx):
                await ctx.write(msg)

        async def streaming(req: Any, ctx: Context) -> None:
            await around(drain, req, ctx, method)

        return streaming

    async def unary(req: Any, ctx: Context) -> Any:
        return await around(behavior, req, ctx, method)

    return unary


def wrap_handler(handler: Handler, method: str, around: Around) -> Handler:
    """A copy of ``handler`` whose behaviour (whatever its shape) runs inside ``around``."""
    for attr in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        behavior = getattr(handler, attr)
        if behavior is not None:
            # a handler is a namedtuple at run time; the stubs declare an abstract class without _replace
            replace: Any = handler._replace  # type: ignore[attr-defined]  # namedtuple method, not in the stubs
            wrapped: Handler = replace(**{attr: _wrap_behavior(behavior, method, around)})
            return wrapped
    return handler


class _WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Base: wraps each method's handler once with :meth:`around`."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Handler, Handler]] = {}

    def applies(self, method: str) -> bool:
        return True

    async def around(self, behavior: Behavior, request: Any, context: Context, method: str) -> Any:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.applies(method):
            return handler
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = wrap_handler(handler, method, self.around)
        self._cache[method] = (handler, wrapped)
        return wrapped


class ChainInterceptor(grpc.aio.ServerInterceptor):
    """Several wrapping interceptors as one: each method's handler is wrapped
    once (outermost first) and cached, so a call pays one ``intercept_service``
    instead of one per layer — grpc.aio awaits each interceptor separately,
    which on a small read RPC costs as much as the layers' own work."""

    def __init__(self, layers: Iterable[_WrappingInterceptor]) -> None:
        self.layers = tuple(layers)
        self._cache: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = handler
        for layer in reversed(self.layers):  # innermost first, so the first layer ends up outermost
            if layer.applies(method):
                wrapped = wrap_handler(wrapped, method, layer.around)
        self._cache[method] = (handler, wrapped)
        return wrapped


# ---------------------------------------------------------------- access log


def _request_id(request: Any, metadata: Any) -> str:
    """The AIP-155 ``request_id`` of a mutating request, else the client's
    ``x-request-id`` header, else a fresh id (so every log line of a call can
    be tied together). A client's id is masked like any logged text: the
    formatter adds it after the handler's PII filter has run, and a client
    may well send a phone number as its request id."""
    rid = getattr(request, "request_id", None)
    if isinstance(rid, str) and rid:
        return redact(rid[:64])
    for key, value in metadata:
        if key == "x-request-id" and isinstance(value, str):
            return redact(value[:64])
    return f"{_ID_PREFIX}-{next(_ID_SEQ)}"


# Ids for calls without one: unique per process start, cheaper than uuid4 per call.
_ID_PREFIX = uuid.uuid4().hex[:8]
_ID_SEQ = itertools.count(1)


class AccessLogInterceptor(_WrappingInterceptor):
    """One ``jsx.access`` line per RPC: method, code, duration, caller subject.
    Never the request or response body."""

    async def around(self, behavior: Behavior, request: Any, context: Context, method: str) -> Any:
        metadata = context.invocation_metadata() or ()
        info = RpcInfo(method=method, request_id=_request_id(request, metadata), metadata=metadata)
        token = RPC.set(info)
        started = time.perf_counter()
        try:
            result = await behavior(request, context)
        except BaseException:
            if info.code == "OK":
                code = context.code()
                info.code = code.name if isinstance(code, grpc.StatusCode) else "CANCELLED"
            raise
        finally:
            access_log.info(
                "rpc",
                extra={"code": info.code, "duration_ms": round((time.perf_counter() - started) * 1000, 3)},
            )
            RPC.reset(token)
        return result


# ---------------------------------------------------------------- errors


class ErrorInterceptor(_WrappingInterceptor):
    """Domain errors → their status with rich details; anything unexpected →
    INTERNAL with a reference id and a generic Chinese message (the
    exception text stays in the log, never in the reply)."""

    async def around(self, behavior: Behavior, request: Any, context: Context, method: str) -> Any:
        try:
            return await behavior(request, context)
        except DomainError as e:
            _set_code(e.code)
            if e.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                log.warning("denied: %s", e.reason, extra={"reason": e.reason})
            else:
                log.info("domain error: %s", e.reason, extra={"reason": e.reason})
            await context.abort_with_status(to_grpc_status(status_for(e)))
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise  # the servicer aborted on purpose
        except Exception:
            ref = new_error_ref()
            _set_code(grpc.StatusCode.INTERNAL)
            log.exception("unexpected error, ref %s", ref, extra={"error_ref": ref})
            await context.abort_with_status(to_grpc_status(internal_status(ref)))


def _set_code(code: grpc.StatusCode) -> None:
    info = RPC.get()
    if info is not None:
        info.code = code.name


# ---------------------------------------------------------------- auth

_permission_cache: dict[str, str | None] = {}


def method_permission(method: str) -> str | None:
    """The ``(jsx.common.v1.permission)`` declared on ``/pkg.Service/Method``,
    or None when the method is unknown to the descriptor pool or declares none.
    Looked up in the default pool (generated ``_pb2`` modules register there);
    cached once the service is found, so a lookup before the service's module
    is imported is not remembered."""
    if method in _permission_cache:
        return _permission_cache[method]
    try:
        _, service_name, name = method.split("/")
        service = descriptor_pool.Default().FindServiceByName(service_name)
    except (ValueError, KeyError):
        return None
    perm: str | None = None
    md = service.methods_by_name.get(name)
    if md is not None:
        opts = md.GetOptions()
        if opts.HasExtension(annotations_pb2.permission):
            perm = opts.Extensions[annotations_pb2.permission] or None
    _permission_cache[method] = perm
    return perm


class _TokenCache:
    """Verified tokens → Caller until they expire: HS256 verification and
    claim parsing cost more than the rest of the auth check."""

    def __init__(self, size: int = 4096) -> None:
        self._items: OrderedDict[str, Caller] = OrderedDict()
        self._size = size

    def get(self, token: str) -> Caller | None:
        caller = self._items.get(token)
        if caller is not None and caller.expires_at <= time.time():
            del self._items[token]
            return None
        return caller

    def put(self, token: str, caller: Caller) -> None:
        self._items[token] = caller
        if len(self._items) > self._size:
            self._items.popitem(last=False)


class AuthInterceptor(_WrappingInterceptor):
    """Bearer token → :class:`~jsxcore.auth.Caller`; the method's declared
    permission must be granted by the caller's roles. Undeclared methods are
    denied. Health and reflection are public. The caller is bound for
    :func:`jsxcore.auth.current_caller` during the call."""

    def __init__(self, secret: str, public: tuple[str, ...] = PUBLIC_SERVICES) -> None:
        super().__init__()
        if not secret:
            raise ValueError("auth secret must not be empty")
        self._secret = secret
        self._public = public
        self._tokens = _TokenCache()

    def applies(self, method: str) -> bool:
        return not method.startswith(self._public)

    def authenticate(self, metadata: Any) -> Caller:
        header = ""
        for key, value in metadata:
            if key == "authorization":
                header = value if isinstance(value, str) else value.decode()
                break
        scheme, _, token = header.partition(" ")
        if not header:
            raise Unauthenticated(
                "缺少访问令牌：请在请求头 authorization 中携带 “Bearer <令牌>”", reason="MISSING_TOKEN"
            )
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("访问令牌格式错误：请求头 authorization 应为 “Bearer <令牌>”", reason="TOKEN_INVALID")
        token = token.strip()
        caller = self._tokens.get(token)
        if caller is None:
            caller = verify_token(self._secret, token)
            self._tokens.put(token, caller)
        return caller

    async def around(self, behavior: Behavior, request: Any, context: Context, method: str) -> Any:
        info = RPC.get()
        # the access-log layer already fetched the metadata (it is rebuilt on every access)
        metadata = info.metadata if info is not None else (context.invocation_metadata() or ())
        caller = self.authenticate(metadata)
        if info is not None:
            info.caller = caller.subject
        permission = method_permission(method)
        if permission is None:
            raise PermissionDenied(
                "该接口未声明访问权限，已按安全策略拒绝；请联系系统管理员",
                reason="PERMISSION_NOT_DECLARED",
                metadata={"method": method},
            )
        caller.require(permission)
        token = set_caller(caller)
        try:
            return await behavior(request, context)
        finally:
            reset_caller(token)


__all__ = [
    "PUBLIC_SERVICES",
    "AccessLogInterceptor",
    "AuthInterceptor",
    "ChainInterceptor",
    "ErrorInterceptor",
    "method_permission",
    "wrap_handler",
]
