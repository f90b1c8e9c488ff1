"""The gRPC runtime against a real grpc.aio server and client channel.

The test servicer implements a few MembersService RPCs so permissions come
from the real ``(jsx.common.v1.permission)`` options of members.proto.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import logging
import os
import pkgutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import Integer, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import jsx
from jsx.common.v1 import common_pb2
from jsx.members.v1 import members_pb2, members_pb2_grpc
from jsxcore.auth import current_caller, issue_token
from jsxcore.config import ServiceConfig
from jsxcore.db import CoreBase, create_engine, session_factory, transaction
from jsxcore.errors import ErrorCollector, NotFound
from jsxcore.idempotency import run_idempotent
from jsxcore.pii import generate_key
from jsxcore.plugins import PluginHost
from jsxcore.runtime import (
    create_server,
    error_details,
    health_of,
    list_plugins_response,
    method_permission,
    serve_until_signal,
    setup_logging,
    shutdown_server,
    start_server,
)
from jsxcore.runtime.errors import INTERNAL_MESSAGE
from jsxcore.testing.helpers import rid

SERVICE = "jsx.members.v1.MembersService"
SECRET = "test-secret-" + "k" * 32
ID_NUMBER = "11010519491231002X"  # the GB 11643 specimen number


class _Base(DeclarativeBase):
    pass


class PersonRow(_Base):
    __tablename__ = "t_persons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    display_name: Mapped[str] = mapped_column(String(50))


class Servicer(members_pb2_grpc.MembersServiceServicer):
    """A tiny MembersService: just enough behaviour to exercise the runtime."""

    def __init__(self, sessions: Any, plugins: PluginHost) -> None:
        self.sessions = sessions
        self.plugins = plugins
        self.slow_started = asyncio.Event()

    async def GetPerson(self, request: members_pb2.GetPersonRequest, context: Any) -> members_pb2.Person:
        caller = current_caller()
        if request.name == "persons/bad":
            errors = ErrorCollector()
            errors.add("name", "人员编号格式错误，应为 persons/数字")
            errors.add("view", "查看方式无效")
            errors.raise_if_any()
        if request.name == "persons/boom":
            logging.getLogger("test").info("looking up %s", ID_NUMBER)
            raise RuntimeError("connection to db-secret-host:5432 refused")
        if request.name == "persons/slow":
            self.slow_started.set()
            await asyncio.sleep(1.0)
        if request.name == "persons/hongjiang":
            caller.require_region("431281")
        if request.name == "persons/missing":
            raise NotFound("未找到该人员，请核对人员编号", reason="PERSON_NOT_FOUND", metadata={"name": request.name})
        return members_pb2.Person(name=request.name, display_name=caller.display_name)

    async def CreatePerson(self, request: members_pb2.CreatePersonRequest, context: Any) -> members_pb2.Person:
        async with transaction(self.sessions) as s:

            async def create() -> members_pb2.Person:
                row = PersonRow(display_name=request.person.display_name)
                s.add(row)
                await s.flush()
                return members_pb2.Person(name=f"persons/{row.id}", display_name=row.display_name)

            return await run_idempotent(
                s,
                method="/jsx.members.v1.MembersService/CreatePerson",
                request=request,
                response_type=members_pb2.Person,
                handler=create,
            )

    async def ListPlugins(self, request: common_pb2.ListPluginsRequest, context: Any) -> common_pb2.ListPluginsResponse:
        return list_plugins_response(self.plugins, request)


def _config(tmp_path: Path) -> ServiceConfig:
    env = {
        "JSX_DATA_DIR": str(tmp_path),
        "JSX_PII_KEY": generate_key(),
        "JSX_BLIND_INDEX_KEY": generate_key(),
        "JSX_AUTH_SECRET": SECRET,
        "JSX_GRPC_ADDR": "127.0.0.1:0",
    }
    return ServiceConfig.from_env("members", environ=env)


def _undeclared(servicer: Any, server: grpc.aio.Server) -> None:
    """A service absent from the descriptor pool, so it declares no permission."""

    async def do(request: bytes, context: Any) -> bytes:
        return request

    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(do)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("jsx.test.v1.Undeclared", {"Do": handler}),))


class Env:
    def __init__(self, server: grpc.aio.Server, port: int, servicer: Servicer, engine: Any) -> None:
        self.server, self.port, self.servicer, self.engine = server, port, servicer, engine
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = members_pb2_grpc.MembersServiceStub(self.channel)

    @staticmethod
    def auth(
        role: str = "county_clerk", region: str = "431222", sub: str = "clerk-001", name: str = "张三"
    ) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Bearer " + issue_token(SECRET, sub, [role], region, 600, name=name)),)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    config = _config(tmp_path)
    engine = create_engine(config.database_url)
    async with engine.begin() as conn:
        await conn.run_sync(CoreBase.metadata.create_all)
        await conn.run_sync(_Base.metadata.create_all)
    host = PluginHost()
    host.discover()
    servicer = Servicer(session_factory(engine), host)  # type: ignore[abstract]  # only the RPCs the tests call
    server, port = create_server(
        config,
        servicers=[(members_pb2_grpc.add_MembersServiceServicer_to_server, servicer), (_undeclared, None)],
        service_names=[SERVICE],
    )
    await start_server(server)
    e = Env(server, port, servicer, engine)
    yield e
    await e.channel.close()
    await server.stop(None)
    await engine.dispose()


# ---------------------------------------------------------------- errors


async def test_invalid_argument_has_rich_details_in_chinese(env: Env) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await env.stub.GetPerson(members_pb2.GetPersonRequest(name="persons/bad"), metadata=env.auth())
    err = ei.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, bad, loc = error_details(err)
    assert info is not None and info.reason == "INVALID_ARGUMENT" and info.domain == "jsx.gov.cn"
    assert bad is not None
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("name", "人员编号格式错误，应为 persons/数字"),
        ("view", "查看方式无效"),
    ]
    assert (
        loc is not None and loc.locale == "zh-CN" and loc.message == err.details() == "请求有误，请按字段说明修改后重试"
    )


async def test_not_found_carries_reason_and_metadata_without_bad_request(env: Env) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await env.stub.GetPerson(members_pb2.GetPersonRequest(name="persons/missing"), metadata=env.auth())
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    info, bad, loc = error_details(ei.value)
    assert info is not None and info.reason == "PERSON_NOT_FOUND" and dict(info.metadata) == {"name": "persons/missing"}
    assert bad is None
    assert loc is not None and "未找到该人员" in loc.message


async def test_unexpected_exception_is_internal_without_leaking(env: Env) -> None:
    buf = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    setup_logging("members", "INFO", stream=buf)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await env.stub.GetPerson(members_pb2.GetPersonRequest(name="persons/boom"), metadata=env.auth())
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    err = ei.value
    assert err.code() == grpc.StatusCode.INTERNAL
    details = err.details() or ""
    assert "db-secret-host" not in details and "RuntimeError" not in details
    assert details.startswith(INTERNAL_MESSAGE)
    info, _bad, _loc = error_details(err)
    assert info is not None and info.reason == "INTERNAL"
    ref = info.metadata["error_ref"]
    assert ref in details
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    crash = [r for r in lines if r.get("error_ref") == ref]
    assert len(crash) == 1
    assert "db-secret-host" in crash[0]["exc"] and crash[0]["level"] == "ERROR"
    assert crash[0]["method"] == "/jsx.members.v1.MembersService/GetPerson" and crash[0]["caller"] == "clerk-001"
    # personal data logged by mistake is masked
    assert ID_NUMBER not in buf.getvalue()
    assert any(r["msg"].startswith("looking up 1101") for r in lines)
    access = [r for r in lines if r["logger"] == "jsx.access"]
    assert len(access) == 1 and access[0]["code"] == "INTERNAL" and access[0]["duration_ms"] >= 0
    assert access[0]["service"] == "members" and access[0]["caller"] == "clerk-001"


async def test_access_line_carries_the_clients_request_id_masked(env: Env) -> None:
    buf = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    setup_logging("members", "INFO", stream=buf)
    try:
        for given in ("trace-42", "13912345678"):
            with pytest.raises(grpc.aio.AioRpcError):
                await env.stub.GetPerson(
                    members_pb2.GetPersonRequest(name="persons/missing"),
                    metadata=(*env.auth(), ("x-request-id", given)),
                )
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    access = [r for r in map(json.loads, buf.getvalue().splitlines()) if r["logger"] == "jsx.access"]
    assert [(r["request_id"], r["code"]) for r in access] == [("trace-42", "NOT_FOUND"), ("139****5678", "NOT_FOUND")]
    assert "13912345678" not in buf.getvalue()


# ---------------------------------------------------------------- auth


async def test_missing_and_bad_tokens_are_unauthenticated(env: Env) -> None:
    req = members_pb2.GetPersonRequest(name="persons/1")
    cases = [
        ((), "MISSING_TOKEN"),
        ((("authorization", "Basic abc"),), "TOKEN_INVALID"),
        ((("authorization", "Bearer not-a-jwt"),), "TOKEN_INVALID"),
        (
            (("authorization", "Bearer " + issue_token("another-secret-" + "z" * 32, "x", ["admin"], "430000")),),
            "TOKEN_INVALID",
        ),
        ((("authorization", "Bearer " + issue_token(SECRET, "x", ["admin"], "430000", ttl=-10)),), "TOKEN_EXPIRED"),
    ]
    for md, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await env.stub.GetPerson(req, metadata=md)
        assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED, reason
        info, _, loc = error_details(ei.value)
        assert info is not None and info.reason == reason
        assert loc is not None and loc.locale == "zh-CN" and "令牌" in loc.message


async def test_permission_from_proto_option_is_enforced(env: Env) -> None:
    # county_approver may read persons but not create them
    reply = await env.stub.GetPerson(
        members_pb2.GetPersonRequest(name="persons/7"), metadata=env.auth("county_approver", name="李四")
    )
    assert reply.display_name == "李四"  # the servicer saw the verified caller
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await env.stub.CreatePerson(
            members_pb2.CreatePersonRequest(person=members_pb2.Person(display_name="王五"), request_id=rid()),
            metadata=env.auth("county_approver"),
        )
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info, _, loc = error_details(ei.value)
    assert (
        info is not None
        and info.reason == "MISSING_PERMISSION"
        and info.metadata["permission"] == "members.persons.write"
    )
    assert loc is not None and "members.persons.write" in loc.message


async def test_undeclared_method_is_denied_even_for_admin(env: Env) -> None:
    assert method_permission("/jsx.members.v1.MembersService/GetPerson") == "members.persons.read"
    assert method_permission("/jsx.test.v1.Undeclared/Do") is None
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = env.channel.unary_unary("/jsx.test.v1.Undeclared/Do")
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call(b"x", metadata=env.auth("admin", "430000"))
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info, _, _ = error_details(ei.value)
    assert info is not None and info.reason == "PERMISSION_NOT_DECLARED"


def test_every_generated_rpc_declares_a_permission() -> None:
    """Fail-closed is only friendly if nobody forgets: check every service
    generated under protos/python/jsx."""
    checked = 0
    for mod in pkgutil.walk_packages(jsx.__path__, "jsx."):
        if not mod.name.endswith("_pb2"):
            continue
        module = importlib.import_module(mod.name)
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                assert method_permission(f"/{service.full_name}/{m.name}"), f"{service.full_name}.{m.name} 未声明权限"
                checked += 1
    assert checked > 10


async def test_region_scope(env: Env) -> None:
    # a 沅陵县 clerk cannot act on 洪江市; a 怀化市 clerk can
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await env.stub.GetPerson(
            members_pb2.GetPersonRequest(name="persons/hongjiang"), metadata=env.auth(region="431222")
        )
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info, _, loc = error_details(ei.value)
    assert info is not None and info.reason == "OUT_OF_REGION"
    assert loc is not None and "沅陵县" in loc.message and "洪江市" in loc.message
    ok = await env.stub.GetPerson(
        members_pb2.GetPersonRequest(name="persons/hongjiang"), metadata=env.auth(region="431200")
    )
    assert ok.name == "persons/hongjiang"


# ---------------------------------------------------------------- health, reflection, plugins


async def test_health_and_reflection_are_public(env: Env) -> None:
    health: Any = health_pb2_grpc.HealthStub(env.channel)  # the stubs declare it without methods
    for name in ("", SERVICE):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl: Any = reflection_pb2_grpc.ServerReflectionStub(env.channel)  # type: ignore[arg-type]  # aio works too
    call = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = set()
    async for resp in call:
        names = {s.name for s in resp.list_services_response.service}
        break
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_list_plugins_over_grpc(env: Env) -> None:
    resp = await env.stub.ListPlugins(common_pb2.ListPluginsRequest(), metadata=env.auth())
    expected = env.servicer.plugins.list_plugins()
    assert [p.name for p in resp.plugins] == [p.name for p in expected]
    if expected:
        first = resp.plugins[0]
        assert first.version == expected[0].version and list(first.hooks) == list(expected[0].hooks)
        assert all(len(r.code) == 12 for p in resp.plugins for r in p.regions)
    if len(expected) > 1:
        page = await env.stub.ListPlugins(common_pb2.ListPluginsRequest(page_size=1), metadata=env.auth())
        assert len(page.plugins) == 1 and page.next_page_token
        rest = await env.stub.ListPlugins(
            common_pb2.ListPluginsRequest(page_size=1000, page_token=page.next_page_token), metadata=env.auth()
        )
        assert [p.name for p in page.plugins] + [p.name for p in rest.plugins] == [p.name for p in expected]
        assert not rest.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await env.stub.ListPlugins(common_pb2.ListPluginsRequest(page_token="%%%"), metadata=env.auth())
    _, bad, _ = error_details(ei.value)
    assert bad is not None and bad.field_violations[0].field == "page_token"


@pytest.mark.slow
async def test_graceful_shutdown_reports_not_serving_and_finishes_in_flight(env: Env) -> None:
    health: Any = health_pb2_grpc.HealthStub(env.channel)  # the stubs declare it without methods
    watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    slow = asyncio.ensure_future(
        env.stub.GetPerson(members_pb2.GetPersonRequest(name="persons/slow"), metadata=env.auth())
    )
    await asyncio.wait_for(env.servicer.slow_started.wait(), 5)
    closed: list[str] = []

    async def on_stop() -> None:
        closed.append("relay")

    stopping = asyncio.ensure_future(shutdown_server(env.server, 5.0, [on_stop]))
    second = await asyncio.wait_for(watch.read(), 5)
    assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
    reply = await asyncio.wait_for(slow, 5)  # the in-flight call completes within the grace
    assert reply.name == "persons/slow"
    await stopping
    assert closed == ["relay"]
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await env.stub.GetPerson(members_pb2.GetPersonRequest(name="persons/1"), metadata=env.auth(), timeout=2)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_sigterm_stops_gracefully(env: Env) -> None:
    health = health_of(env.server)
    closed: list[str] = []

    async def on_stop() -> None:
        closed.append("engine")

    serving = asyncio.ensure_future(serve_until_signal(env.server, health, 2.0, on_shutdown=[on_stop]))
    await asyncio.sleep(0.1)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(serving, 10)
    assert closed == ["engine"]
    resp = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE), None)  # type: ignore[arg-type]  # reads no context
    assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING


# ---------------------------------------------------------------- idempotency through gRPC


async def test_create_is_idempotent_over_grpc(env: Env) -> None:
    request_id = rid()
    req = members_pb2.CreatePersonRequest(person=members_pb2.Person(display_name="赵六"), request_id=request_id)
    a = await env.stub.CreatePerson(req, metadata=env.auth())
    b = await env.stub.CreatePerson(req, metadata=env.auth())
    assert a == b and a.name.startswith("persons/")
    async with env.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(PersonRow))).scalar_one() == 1
    req.person.display_name = "赵七"
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await env.stub.CreatePerson(req, metadata=env.auth())
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, _, _ = error_details(ei.value)
    assert info is not None and info.reason == "REQUEST_ID_REUSED"
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await env.stub.CreatePerson(members_pb2.CreatePersonRequest(person=req.person), metadata=env.auth())
    _, bad, _ = error_details(ei.value)
    assert bad is not None and bad.field_violations[0].field == "request_id"


# ---------------------------------------------------------------- ServiceRuntime


async def test_service_runtime_lifecycle(tmp_path: Path) -> None:
    from jsxcore.runtime import ServiceRuntime

    rt = ServiceRuntime(_config(tmp_path))
    events: list[str] = []
    ticks = asyncio.Event()
    crashed_once: list[bool] = []

    async def relay() -> None:
        if not crashed_once:  # a crash is restarted, not fatal
            crashed_once.append(True)
            raise ConnectionError("broker gone")
        try:
            while True:
                ticks.set()
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            events.append("relay cancelled")
            raise

    async def flush() -> None:
        events.append("relay flushed")

    rt.add_servicer(members_pb2_grpc.add_MembersServiceServicer_to_server, Servicer(rt.sessions, rt.plugins), SERVICE)  # type: ignore[abstract]  # only the RPCs the tests call
    rt.add_background("relay", relay)
    rt.on_shutdown(flush)
    port = await rt.start()
    assert port > 0
    await asyncio.wait_for(ticks.wait(), 5)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        health: Any = health_pb2_grpc.HealthStub(ch)  # the stubs declare it without methods
        assert (
            await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        ).status == health_pb2.HealthCheckResponse.SERVING
        stub = members_pb2_grpc.MembersServiceStub(ch)
        assert (
            await stub.GetPerson(members_pb2.GetPersonRequest(name="persons/1"), metadata=Env.auth())
        ).name == "persons/1"
    await rt.stop(1.0)
    assert events == ["relay flushed", "relay cancelled"]
