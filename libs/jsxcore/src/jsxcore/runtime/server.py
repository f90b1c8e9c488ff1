"""Building, starting and stopping a service's gRPC server.

Two levels:

* :func:`create_server` / :func:`start_server` / :func:`serve_until_signal` —
  a grpc.aio server with the access-log, error and auth interceptors, health
  (``grpc.health.v1``) and reflection, bound to ``config.grpc_addr``.
* :class:`ServiceRuntime` — everything a service's ``main`` needs: engine,
  sessions, plugin host, servicers, background tasks (outbox relay, event
  consumers) that start with the server and stop after it, and an ordered
  graceful shutdown on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import signal
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from jsx.common.v1 import common_pb2
from jsxcore import paging
from jsxcore.db import create_engine, session_factory
from jsxcore.errors import InvalidArgument
from jsxcore.runtime.interceptors import AccessLogInterceptor, AuthInterceptor, ChainInterceptor, ErrorInterceptor
from jsxcore.runtime.logging import setup_logging
from jsxcore.values import RegionCode

log = logging.getLogger("jsx.runtime")

#: (add_XServicer_to_server, servicer instance)
ServicerEntry = tuple[Callable[[Any, grpc.aio.Server], None], Any]

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    # Roster imports and list pages can be large; 16 MiB bounds a bad client.
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Detect dead peers behind NAT/load balancers; allow clients to ping every 10 s.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    # Two services must never silently share a port.
    ("grpc.so_reuseport", 0),
)


@dataclass
class _ServerState:
    health: health.aio.HealthServicer
    service_names: tuple[str, ...]


_STATE: weakref.WeakKeyDictionary[grpc.aio.Server, _ServerState] = weakref.WeakKeyDictionary()


def create_server(
    config: Any,
    *,
    servicers: Sequence[ServicerEntry],
    service_names: Sequence[str],
    extra_interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
) -> tuple[grpc.aio.Server, int]:
    """A configured, not yet started server and the port it is bound to
    (``config.grpc_addr`` with port 0 picks a free one).

    ``service_names`` are the full proto names (``jsx.members.v1.MembersService``)
    reported by health and reflection. Interceptor order, outermost first:
    access log, errors, auth, then ``extra_interceptors``.
    """
    layers = [AccessLogInterceptor(), ErrorInterceptor(), AuthInterceptor(config.auth_secret)]
    # the three built-in layers run as one grpc interceptor (see ChainInterceptor)
    interceptors = [ChainInterceptor(layers), *extra_interceptors]
    server = grpc.aio.server(interceptors=interceptors, options=list(SERVER_OPTIONS))
    for add_fn, servicer in servicers:
        add_fn(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = tuple(service_names)
    reflection.enable_server_reflection(
        (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(config.grpc_addr)
    if port == 0:
        raise OSError(f"无法监听 gRPC 地址 {config.grpc_addr}：端口被占用或地址无效")
    _STATE[server] = _ServerState(health_servicer, names)
    return server, port


def health_of(server: grpc.aio.Server) -> health.aio.HealthServicer:
    """The health servicer :func:`create_server` installed on ``server``."""
    return _STATE[server].health


async def start_server(server: grpc.aio.Server) -> None:
    """Start serving, then report SERVING for the server ("") and each service."""
    await server.start()
    state = _STATE[server]
    for name in ("", *state.service_names):
        await state.health.set(name, health_pb2.HealthCheckResponse.SERVING)


async def shutdown_server(
    server: grpc.aio.Server,
    grace: float,
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> None:
    """Graceful stop: health NOT_SERVING (load balancers stop routing), refuse
    new RPCs and give in-flight ones ``grace`` seconds, then run ``on_shutdown``
    callbacks in order (each isolated: one failing does not skip the rest)."""
    state = _STATE.get(server)
    if state is not None:
        await state.health.enter_graceful_shutdown()
    await server.stop(grace)
    for callback in on_shutdown:
        # a callback that hangs (a broker drain waiting on a dead peer) must
        # not keep the process from exiting: the orchestrator would SIGKILL it
        try:
            await asyncio.wait_for(callback(), timeout=max(grace, 1.0))
        except TimeoutError:
            log.error(
                "shutdown callback %s did not finish within %.1f s; continuing",
                getattr(callback, "__qualname__", repr(callback)),
                max(grace, 1.0),
            )
        except Exception:
            log.exception("shutdown callback %r failed", callback)


async def serve_until_signal(
    server: grpc.aio.Server,
    health_servicer: health.aio.HealthServicer | None = None,
    grace: float = 5.0,
    *,
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
) -> None:
    """Serve a started server until SIGINT/SIGTERM, then shut down
    gracefully (see :func:`shutdown_server`)."""
    if health_servicer is not None and server not in _STATE:
        _STATE[server] = _ServerState(health_servicer, ())
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    # Only the signal ends serving: awaiting server.wait_for_termination() here
    # and cancelling it later would cancel grpc's own shutdown future.
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    log.info("shutting down (grace %.1f s)", grace)
    await shutdown_server(server, grace, on_shutdown)
    log.info("stopped")


# ---------------------------------------------------------------- ListPlugins

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_TOKEN_PREFIX = "plugins:"


def list_plugins_response(host: Any, request: common_pb2.ListPluginsRequest) -> common_pb2.ListPluginsResponse:
    """Answer ``ListPlugins`` from a :class:`jsxcore.plugins.PluginHost`:
    optional region filter, name-ordered pages with an opaque token."""
    if request.page_size < 0:
        raise InvalidArgument.field("page_size", "每页条数（page_size）不能为负数", reason="INVALID_PAGE_SIZE")
    size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    after = ""
    if request.page_token:
        try:
            after = base64.b64decode(request.page_token.encode(), altchars=b"-_", validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            after = ""
        if not after.startswith(_TOKEN_PREFIX):
            raise InvalidArgument.field(
                "page_token", "分页令牌（page_token）无效，请从第一页重新查询", reason="INVALID_PAGE_TOKEN"
            )
        after = after[len(_TOKEN_PREFIX) :]
    region = RegionCode.parse(request.region.code, field="region.code") if request.region.code else None
    plugins = [p for p in host.list_plugins(region) if p.name > after]
    page, rest = plugins[:size], plugins[size:]
    response = common_pb2.ListPluginsResponse(
        plugins=[
            common_pb2.PluginInfo(
                name=p.name,
                version=p.version,
                regions=[common_pb2.RegionCode(code=RegionCode.parse(r).code) for r in p.regions],
                hooks=list(p.hooks),
                description=p.description,
            )
            for p in page
        ]
    )
    if rest:
        response.next_page_token = base64.urlsafe_b64encode((_TOKEN_PREFIX + page[-1].name).encode()).decode()
    return response


# ---------------------------------------------------------------- ServiceRuntime


@dataclass
class _Background:
    name: str
    factory: Callable[[], Awaitable[None]]
    task: asyncio.Task[None] | None = None


@dataclass
class ServiceRuntime:
    """One service process: database, plugins, gRPC server, background work.

    ::

        rt = ServiceRuntime(ServiceConfig.from_env("members"))
        rt.add_servicer(members_pb2_grpc.add_MembersServiceServicer_to_server,
                        MembersServicer(rt), "jsx.members.v1.MembersService")
        rt.add_background("outbox-relay", relay.run)
        rt.on_shutdown(relay.stop)
        await rt.run()          # until SIGTERM; or start() / stop() in tests

    Background tasks start after the server and are restarted with backoff
    if they crash (a dead relay would silently stop events). Shutdown order:
    health NOT_SERVING → server stop with grace → ``on_shutdown`` callbacks →
    background tasks cancelled → engine disposed.
    """

    config: Any
    plugins: Any = None
    engine: Any = None
    sessions: Any = None
    server: grpc.aio.Server | None = None
    port: int = 0
    _servicers: list[ServicerEntry] = field(default_factory=list)
    _names: list[str] = field(default_factory=list)
    _background: list[_Background] = field(default_factory=list)
    _on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _extra_interceptors: list[grpc.aio.ServerInterceptor] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Every replica of a service must accept the page tokens the others issued.
        key = getattr(self.config, "blind_index_key", None)
        if key:
            paging.configure(key)
        if self.engine is None:
            self.engine = create_engine(self.config.database_url)
        if self.sessions is None:
            self.sessions = session_factory(self.engine)
        if self.plugins is None:
            from jsxcore.plugins import PluginHost

            self.plugins = PluginHost.from_config(self.config)

    def add_servicer(self, add_fn: Callable[[Any, grpc.aio.Server], None], servicer: Any, service_name: str) -> None:
        self._servicers.append((add_fn, servicer))
        self._names.append(service_name)

    def add_interceptor(self, interceptor: grpc.aio.ServerInterceptor) -> None:
        self._extra_interceptors.append(interceptor)

    def add_background(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run ``factory()`` as a task while the server runs (relay, consumers)."""
        self._background.append(_Background(name, factory))

    def on_shutdown(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await ``callback()`` after the server stopped, before tasks are cancelled."""
        self._on_shutdown.append(callback)

    async def _supervise(self, bg: _Background) -> None:
        delay = 0.5
        while True:
            try:
                await bg.factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "background task %s crashed; restarting in %.1f s", bg.name, delay, extra={"task": bg.name}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def start(self) -> int:
        """Bind, start serving, start background tasks; returns the port."""
        self.server, self.port = create_server(
            self.config,
            servicers=self._servicers,
            service_names=self._names,
            extra_interceptors=self._extra_interceptors,
        )
        await start_server(self.server)
        for bg in self._background:
            bg.task = asyncio.create_task(self._supervise(bg), name=bg.name)
        log.info("serving on port %d", self.port, extra={"services": ",".join(self._names)})
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown in the documented order."""
        grace = self.config.shutdown_grace_s if grace is None else grace
        if self.server is not None:
            await shutdown_server(self.server, grace, self._on_shutdown)
        tasks = [bg.task for bg in self._background if bg.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.engine.dispose()

    async def run(self, *, configure_logging: bool = True) -> None:
        """``main`` of a service: logs, start, serve until SIGTERM/SIGINT, stop."""
        if configure_logging:
            setup_logging(self.config.service, self.config.log_level)
        await self.start()
        assert self.server is not None
        await serve_until_signal(self.server, grace=self.config.shutdown_grace_s, on_shutdown=self._on_shutdown)
        self.server = None  # already stopped by serve_until_signal
        await self.stop()


def run_service(
    service: str,
    migrate: Callable[[str], None],
    build_runtime: Callable[[Any], tuple[Any, ...]],
) -> None:
    """The ``main`` of every service process (``python -m jsx_<service>``):
    configuration from the environment, the service's migrations, then serve
    until SIGTERM/SIGINT. ``build_runtime(config)`` returns the ServiceRuntime first."""
    from jsxcore.config import ServiceConfig

    config = ServiceConfig.from_env(service)
    migrate(config.database_url)  # before the loop starts: Alembic is synchronous
    runtime = build_runtime(config)[0]
    asyncio.run(runtime.run())


__all__ = [
    "SERVER_OPTIONS",
    "ServiceRuntime",
    "create_server",
    "health_of",
    "list_plugins_response",
    "run_service",
    "serve_until_signal",
    "shutdown_server",
    "start_server",
]
