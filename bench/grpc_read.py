#!/usr/bin/env python3
"""A read RPC through the full jsx runtime, next to a raw gRPC echo.

    python3 dev.py bench grpc_read [--duration 5] [--concurrency 50] [--rounds 3]

Starts, one after the other in this process (pinned to one core):

* raw echo — a bare ``grpc.aio`` server with one generic handler that returns
  the request bytes: no interceptors, no protobuf parsing, no database;
* bare read — a bare ``grpc.aio`` server with the generated MembersService
  servicer doing the same row read as below (no runtime), which separates
  the database's cost from the runtime's;
* jsx read — ``jsxcore.runtime.create_server`` with the access-log, error
  and auth interceptors on (JWT bearer token, permission read from the proto
  option), JSON access logs formatted and PII-filtered (written to
  /dev/null), serving ``jsx.members.v1.MembersService/GetPerson`` from a tiny
  servicer that checks the caller's region and reads one row (a Core
  select of two columns by key) from a SQLite file through
  ``jsxcore.db.read(..., inline=True)`` — a point read on the event loop, as
  services' GetX by key read;
* members GetPerson — the members service's own servicer and use case
  (``jsx_members``) on its migrated SQLite database: a person registered
  through CreatePerson (身份证 and phone encrypted), read back in the masked
  view (two AES-GCM decryptions to mask phone and card), region checked.

Each is driven by a client in a separate process (pinned to the other core)
with ``--concurrency`` requests in flight for ``--duration`` seconds; the
client sends the same serialized GetPersonRequest to all. Figures: requests
per second, p50/p99 latency, server CPU per request, jsx/raw throughput
(goal ≥ 50%) and jsx/bare (what the runtime itself costs). Rounds alternate
the three; the best round of each is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc
from _common import Report
from sqlalchemy import Integer, String, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from jsx.common.v1 import common_pb2
from jsx.members.v1 import members_pb2, members_pb2_grpc
from jsxcore.auth import current_caller, issue_token
from jsxcore.config import ServiceConfig
from jsxcore.db import create_engine, read
from jsxcore.errors import NotFound
from jsxcore.pii import generate_key
from jsxcore.runtime import create_server, setup_logging, start_server

ECHO_METHOD = "/bench.v1.Echo/Echo"
GET_PERSON = "/jsx.members.v1.MembersService/GetPerson"
SECRET = "bench-secret-" + os.urandom(16).hex()


class Base(DeclarativeBase):
    pass


class PersonRow(Base):
    __tablename__ = "bench_persons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    display_name: Mapped[str] = mapped_column(String(50))
    village: Mapped[str] = mapped_column(String(12))


class ReadServicer(members_pb2_grpc.MembersServiceServicer):
    """GetPerson as a real servicer does it: caller region check + one row read."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.query = select(PersonRow.display_name, PersonRow.village).where(PersonRow.id == 1)

    def _load(self, session: Session) -> Any:
        # Core select of two columns on the session's connection: no ORM entity loading
        return session.connection().execute(self.query).first()

    async def GetPerson(self, request: members_pb2.GetPersonRequest, context: Any) -> members_pb2.Person:
        row = await read(self.engine, self._load, inline=True)
        if row is None:
            raise NotFound("未找到该人员", reason="PERSON_NOT_FOUND")
        current_caller().require_region(row.village)
        return members_pb2.Person(name=request.name, display_name=row.display_name)


class BareReadServicer(ReadServicer):
    """The same row read with no runtime around it (no caller, so no region check)."""

    async def GetPerson(self, request: members_pb2.GetPersonRequest, context: Any) -> members_pb2.Person:
        row = await read(self.engine, self._load, inline=True)
        if row is None:
            raise NotFound("未找到该人员", reason="PERSON_NOT_FOUND")
        return members_pb2.Person(name=request.name, display_name=row.display_name)


# ---------------------------------------------------------------- client process


async def _drive(
    port: int, method: str, payload: bytes, token: str, duration: float, concurrency: int
) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        md = (("authorization", "Bearer " + token),) if token else None
        await call(payload, metadata=md, timeout=10)  # warm up + fail fast if misconfigured
        latencies: list[float] = []
        errors = 0
        stop_at = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    await call(payload, metadata=md, timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)
    return {
        "count": n,
        "errors": errors,
        "seconds": elapsed,
        "p50_ms": latencies[n // 2] * 1000 if n else 0.0,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
    }


def client_main(args: argparse.Namespace) -> None:
    _pin(1)
    payload = members_pb2.GetPersonRequest(name=args.person).SerializeToString()
    result = asyncio.run(_drive(args.port, args.method, payload, args.token, args.duration, args.concurrency))
    print(json.dumps(result))


# ---------------------------------------------------------------- servers


def _pin(cpu: int) -> None:
    """Server and client on separate cores when the machine has two or more."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})
    except (AttributeError, OSError):
        pass


async def _run_client(
    port: int, method: str, token: str, args: argparse.Namespace, person: str = "persons/1"
) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client",
        "--port",
        str(port),
        "--method",
        method,
        "--token",
        token,
        "--person",
        person,
        "--duration",
        str(args.duration),
        "--concurrency",
        str(args.concurrency),
        stdout=asyncio.subprocess.PIPE,
    )
    cpu0 = time.process_time()
    out, _ = await proc.communicate()
    cpu = time.process_time() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"client failed with exit code {proc.returncode}")
    result = json.loads(out)
    # Server CPU per request: less sensitive than rps to other load on the machine.
    result["cpu_us"] = cpu / max(result["count"], 1) * 1e6
    return result


async def _raw_round(args: argparse.Namespace) -> dict[str, Any]:
    async def echo(request: bytes, context: Any) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.v1.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        return await _run_client(port, ECHO_METHOD, "", args)
    finally:
        await server.stop(None)


async def _bare_db_round(args: argparse.Namespace, engine: Any) -> dict[str, Any]:
    server = grpc.aio.server()
    members_pb2_grpc.add_MembersServiceServicer_to_server(BareReadServicer(engine), server)  # type: ignore[abstract]  # only reads
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        return await _run_client(port, GET_PERSON, "", args)
    finally:
        await server.stop(None)


async def _jsx_round(args: argparse.Namespace, config: ServiceConfig, engine: Any, token: str) -> dict[str, Any]:
    server, port = create_server(
        config,
        servicers=[(members_pb2_grpc.add_MembersServiceServicer_to_server, ReadServicer(engine))],  # type: ignore[abstract]  # only reads
        service_names=["jsx.members.v1.MembersService"],
    )
    await start_server(server)
    try:
        return await _run_client(port, GET_PERSON, token, args)
    finally:
        await server.stop(None)


async def _members_setup(config: ServiceConfig, tmp: str) -> tuple[Any, Any, str]:
    """The members service's own pieces on a migrated database, one registered person."""
    from jsx_members.entrypoints.grpc import MembersServicer
    from jsx_members.migrations import migrate
    from jsx_members.service import MembersService
    from jsxcore.auth import Caller, reset_caller, set_caller
    from jsxcore.db import session_factory
    from jsxcore.values import RegionCode, id_check_char

    url = f"sqlite:///{tmp}/members.db"
    await asyncio.to_thread(migrate, url)
    engine = create_engine(url)
    service = MembersService(session_factory(engine), config.field_cipher(), config.blind_index())
    body = "43122219600501013"
    token = set_caller(Caller("bench-clerk", "bench", ("county_clerk",), RegionCode.parse("431222")))
    try:
        person = await service.create_person(
            members_pb2.CreatePersonRequest(
                request_id="0b7c1f5e-6c1a-4c55-9d8e-2f0f2b9d3a11",
                person=members_pb2.Person(
                    display_name="张三",
                    id_number=body + id_check_char(body),
                    phone="13900001234",
                    village=common_pb2.RegionCode(code="431222101001"),
                ),
            )
        )
    finally:
        reset_caller(token)
    return engine, MembersServicer(service), person.name  # type: ignore[abstract]  # generated as abstract


async def _members_round(
    args: argparse.Namespace, config: ServiceConfig, servicer: Any, token: str, person: str
) -> dict[str, Any]:
    server, port = create_server(
        config,
        servicers=[(members_pb2_grpc.add_MembersServiceServicer_to_server, servicer)],
        service_names=["jsx.members.v1.MembersService"],
    )
    await start_server(server)
    try:
        return await _run_client(port, GET_PERSON, token, args, person)
    finally:
        await server.stop(None)


async def main(args: argparse.Namespace) -> int:
    _pin(0)
    with tempfile.TemporaryDirectory(prefix="jsx-bench-") as tmp, open(os.devnull, "w") as devnull:
        env = {
            "JSX_DATA_DIR": tmp,
            "JSX_PII_KEY": generate_key(),
            "JSX_BLIND_INDEX_KEY": generate_key(),
            "JSX_AUTH_SECRET": SECRET,
            "JSX_GRPC_ADDR": "127.0.0.1:0",
        }
        config = ServiceConfig.from_env("members", environ=env)
        setup_logging("members", "INFO", stream=devnull)  # access lines formatted, as in production
        engine = create_engine(config.database_url)
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.execute(insert(PersonRow).values(id=1, display_name="张三", village="431222101001"))
        token = issue_token(SECRET, "bench-clerk", ["county_clerk"], "431222", 3600)

        m_engine, m_servicer, m_person = await _members_setup(config, tmp)

        raw: list[dict[str, Any]] = []
        bare: list[dict[str, Any]] = []
        jsx: list[dict[str, Any]] = []
        mem: list[dict[str, Any]] = []
        for _ in range(args.rounds):
            raw.append(await _raw_round(args))
            bare.append(await _bare_db_round(args, engine))
            jsx.append(await _jsx_round(args, config, engine, token))
            mem.append(await _members_round(args, config, m_servicer, token, m_person))
        await engine.dispose()
        await m_engine.dispose()
        logging.getLogger().handlers.clear()

    def best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
        return max(rounds, key=lambda r: r["count"] / r["seconds"])

    b_raw, b_bare, b_jsx, b_mem = best(raw), best(bare), best(jsx), best(mem)
    rps_raw, rps_bare, rps_jsx, rps_mem = (b["count"] / b["seconds"] for b in (b_raw, b_bare, b_jsx, b_mem))
    report = Report(f"gRPC unary read, {args.concurrency} in flight, {args.duration:g} s × {args.rounds} rounds (best)")
    report.add("raw grpc.aio echo (bytes, no interceptors)", rps_raw)
    report.add("bare grpc.aio GetPerson, same SQLite row read", rps_bare, rps_raw, "raw echo")
    report.add("jsx GetPerson (auth+errors+access log, SQLite row)", rps_jsx, rps_raw, "raw echo", goal=0.5)
    report.add("  runtime share: jsx vs bare GetPerson", rps_jsx, rps_bare, "bare GetPerson")
    report.add("members service GetPerson (its own servicer, encrypted row)", rps_mem, rps_raw, "raw echo", goal=0.5)
    report.notes.append(
        f"latency p50/p99: raw {b_raw['p50_ms']:.2f}/{b_raw['p99_ms']:.2f} ms, "
        f"bare {b_bare['p50_ms']:.2f}/{b_bare['p99_ms']:.2f} ms, jsx {b_jsx['p50_ms']:.2f}/{b_jsx['p99_ms']:.2f} ms, "
        f"members {b_mem['p50_ms']:.2f}/{b_mem['p99_ms']:.2f} ms"
    )
    report.notes.append(
        f"server CPU per request: raw {b_raw['cpu_us']:.0f} µs, bare {b_bare['cpu_us']:.0f} µs, "
        f"jsx {b_jsx['cpu_us']:.0f} µs, members {b_mem['cpu_us']:.0f} µs"
    )
    report.notes.append(
        "all rounds rps: "
        + "; ".join(
            f"{k} " + ", ".join(f"{r['count'] / r['seconds']:,.0f}" for r in v)
            for k, v in (("raw", raw), ("bare", bare), ("jsx", jsx), ("members", mem))
        )
    )
    errors = sum(r["errors"] for r in raw + bare + jsx + mem)
    report.notes.append(f"errors: {errors}; server and client each pinned to one core; client is Python grpc.aio")
    report.print()
    return 0 if report.ok and errors == 0 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--token", default="", help=argparse.SUPPRESS)
    parser.add_argument("--person", default="persons/1", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.client:
        client_main(a)
    else:
        sys.exit(asyncio.run(main(a)))
