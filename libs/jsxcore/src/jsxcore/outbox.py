"""Transactional outbox and inbox over NATS JetStream (DESIGN.md §3 rule 2).

Producer side::

    async with transaction(sessions) as s:
        s.add(application)                              # the state change
        add_event(s, "jsx.funds.application.approved", ApplicationApproved(...))
    relay.notify()                                      # wake the relay now

``Relay`` (one per service process, started by the runtime) publishes each
committed row with ``Nats-Msg-Id`` = event id and ``Jsx-Event-Type`` = the
message's full proto name, and marks it published only after JetStream's
PubAck (``duplicate=True`` counts: the stream already holds it).

Consumer side: ``Consumer`` (a durable pull consumer) parses the payload by
``Jsx-Event-Type``, runs ``handler(session, message, meta)`` and records
``(consumer, event id)`` in ``inbox`` in the same transaction, commits, then
acks. A redelivered event whose id is already in the inbox is acked without
running the handler again.

Ordering: rows are published in ``seq`` order. On SQLite (one writer at a
time) that is commit order; on PostgreSQL two transactions may commit out of
``seq`` order, so a consumer that needs order within an entity must compare
versions carried in the payload.

Several relays for one service (replicas): on PostgreSQL each batch is
claimed under a transaction-scoped advisory lock keyed by the service, so
exactly one relay publishes at a time and order is kept; the others wait and
take over as soon as the holder's transaction ends (crash included). On
SQLite, replicas cannot share the file anyway; should two relays run on it,
both may publish a row and JetStream drops the second copy by
``Nats-Msg-Id`` within the stream's duplicate window (and the consumers'
inbox drops it after that).

Fault injection: the environment variable ``JSX_FAULT`` names a point at
which the process dies with ``os._exit(86)`` — ``relay.after_publish``
(PubAcks received, rows not yet marked) and ``consumer.before_ack`` (effect
committed, message not yet acked). Tests use them to prove the crash windows
are safe; never set it in production.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    delete,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as _pg_insert
from sqlalchemy.dialects.sqlite import insert as _sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from jsxcore import errors
from jsxcore.db import CoreBase, rowcount, session_factory

log = logging.getLogger("jsx.outbox")

HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_EVENT_TYPE = "Jsx-Event-Type"
HEADER_EXPECTED_STREAM = api.Header.EXPECTED_STREAM  # the server refuses a message for another stream

_PART = r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*"
SUBJECT_RE = re.compile(rf"^jsx\.({_PART})\.({_PART})\.({_PART})$")
_SERVICE_RE = re.compile(rf"^{_PART}$")


def _now() -> datetime:
    return datetime.now(UTC)


def _fault(point: str) -> None:
    """Die here if ``JSX_FAULT`` names this point (fault-injection tests only)."""
    if os.environ.get("JSX_FAULT") == point:
        log.warning("fault.injected", extra={"fault": point})
        logging.shutdown()
        os._exit(86)


# --------------------------------------------------------------------------- tables

# SQLite only auto-increments an INTEGER PRIMARY KEY, so ``seq`` is the key and
# the event id is a unique column; PostgreSQL gets a BIGINT identity.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")


class OutboxEvent(CoreBase):
    """An event committed with the state change it reports, waiting for the relay."""

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(255))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        # The relay's only query: unpublished rows in seq order; partial so it
        # stays small however long the published history grows.
        Index(
            "ix_outbox_unpublished",
            "seq",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )


class InboxEvent(CoreBase):
    """An event a consumer has applied; its presence makes redelivery a no-op."""

    __tablename__ = "inbox"

    consumer: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


# --------------------------------------------------------------------------- producer


def check_subject(subject: str) -> tuple[str, str, str]:
    """Return (service, entity, event) of ``jsx.<service>.<entity>.<event>``
    or raise InvalidArgument (lowercase snake_case parts only)."""
    m = SUBJECT_RE.match(subject)
    if not m:
        raise errors.InvalidArgument(
            f"事件主题“{subject}”格式不对，应为 jsx.<服务>.<实体>.<事件>，各段为小写字母、数字和下划线",
            reason="INVALID_EVENT_SUBJECT",
        )
    return m.group(1), m.group(2), m.group(3)


def subject_of(message: Message | type[Message]) -> str:
    """The subject declared by the message's ``(jsx.common.v1.event_subject)`` option."""
    from jsx.common.v1 import annotations_pb2

    opts = message.DESCRIPTOR.GetOptions()
    subject = opts.Extensions[annotations_pb2.event_subject] if opts.HasExtension(annotations_pb2.event_subject) else ""
    if not subject:
        raise ValueError(f"{message.DESCRIPTOR.full_name} declares no event_subject option; pass the subject")
    return subject


def add_event(
    session: AsyncSession,
    subject: str | None,
    message: Message,
    *,
    event_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """Write an outbox row for ``message`` in the caller's transaction (no commit).

    ``subject=None`` takes it from the message's ``event_subject`` option.
    Fills the message's ``event_id`` field (if it has one and it is empty) and
    its ``occurred_at`` Timestamp (if present and unset) before serialising.
    ``headers`` are extra NATS headers (trace ids; never personal data).
    Returns the event id, which becomes ``Nats-Msg-Id``.
    """
    if subject is None:
        subject = subject_of(message)
    check_subject(subject)
    fields = message.DESCRIPTOR.fields_by_name
    has_id_field = "event_id" in fields and fields["event_id"].type == fields["event_id"].TYPE_STRING
    fields_of: Any = message  # a message of any type: the fields are found by name above
    carried = fields_of.event_id if has_id_field else ""
    if event_id and carried and event_id != carried:
        raise ValueError(f"event_id {event_id!r} differs from the message's own {carried!r}")
    eid = event_id or carried or str(uuid.uuid4())
    if has_id_field and not carried:
        fields_of.event_id = eid
    if (
        "occurred_at" in fields
        and fields["occurred_at"].message_type is not None
        and fields["occurred_at"].message_type.full_name == "google.protobuf.Timestamp"
        and not message.HasField("occurred_at")
    ):
        fields_of.occurred_at.GetCurrentTime()
    session.add(
        OutboxEvent(
            event_id=eid,
            subject=subject,
            event_type=message.DESCRIPTOR.full_name,
            payload=message.SerializeToString(deterministic=True),
            headers=dict(headers or {}),
            attempts=0,
        )
    )
    return eid


async def purge_published(session: AsyncSession, older_than: timedelta) -> int:
    """Delete rows published more than ``older_than`` ago (run from a periodic job)."""
    res = await session.execute(
        delete(OutboxEvent).where(OutboxEvent.published_at.is_not(None), OutboxEvent.published_at < _now() - older_than)
    )
    return rowcount(res)


# --------------------------------------------------------------------------- broker


def stream_name(service: str) -> str:
    """``funds`` → ``JSX_FUNDS``: the stream holding ``jsx.funds.>``."""
    return "JSX_" + service.upper()


def _connection_callbacks(name: str) -> dict[str, Any]:
    """One readable line per state change instead of nats-py's default of a
    traceback at ERROR for every reconnect attempt while the broker is down."""
    state = {"down": False}

    async def error_cb(exc: Exception) -> None:
        if not state["down"]:
            log.warning("nats.error", extra={"connection": name, "error": f"{type(exc).__name__}: {exc}"[:200]})
        state["down"] = True

    async def disconnected_cb() -> None:
        if not state["down"]:
            log.info("nats.disconnected", extra={"connection": name})
        state["down"] = True

    async def reconnected_cb() -> None:
        state["down"] = False
        log.info("nats.reconnected", extra={"connection": name})

    return {"error_cb": error_cb, "disconnected_cb": disconnected_cb, "reconnected_cb": reconnected_cb}


async def connect(url: str, *, name: str) -> NATS:
    """Connect to NATS, retrying until the broker answers, then reconnecting
    forever; callers never see a half-open client."""
    delay = 0.2
    while True:
        try:
            return await nats.connect(
                url,
                name=name,
                connect_timeout=2,
                reconnect_time_wait=0.5,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                **_connection_callbacks(name),
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            log.warning("nats.connect_failed", extra={"error": type(exc).__name__, "retry_in": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _close(nc: NATS | None) -> None:
    if nc is not None and not nc.is_closed:
        try:
            await nc.close()
        except Exception:  # already gone: nothing to release
            pass


async def ensure_stream(
    js: JetStreamContext, service: str, *, duplicate_window: float = 120.0, replicas: int = 1
) -> api.StreamInfo:
    """Create or update the service's stream (file storage, dedupe window)."""
    if not _SERVICE_RE.match(service):
        raise errors.ConfigError(f"服务名“{service}”不合法：只能用小写字母、数字和下划线")
    name = stream_name(service)
    cfg = api.StreamConfig(
        name=name,
        subjects=[f"jsx.{service}.>"],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        duplicate_window=duplicate_window,
        num_replicas=replicas,
    )
    try:
        await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        return await js.add_stream(cfg)
    return await js.update_stream(cfg)


# --------------------------------------------------------------------------- relay


def _sessions(db: AsyncEngine | async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    return session_factory(db) if isinstance(db, AsyncEngine) else db


class _Loop:
    """``run()`` until ``stop()``: the shared lifecycle of the relay and the
    consumer. Subclasses implement ``_run`` (looping while not ``_stopping``)."""

    _stopping = False
    _done: asyncio.Event | None = None

    async def run(self) -> None:
        """Loop until ``stop()``; outages are logged and retried, never raised."""
        self._stopping = False
        self._done = asyncio.Event()
        try:
            await self._run()
        finally:
            self._done.set()

    async def _run(self) -> None:
        raise NotImplementedError

    async def _wait_stopped(self, timeout: float, what: str, **extra: str) -> None:
        """Wait for a running loop to notice ``_stopping`` (bounded; logged if not)."""
        if self._done is None:
            return
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            log.warning(what, extra=extra)


class _Sent:
    """One batch on the wire and the PubAcks that have come back for it.

    Its messages carry reply subjects ``<relay inbox>.<token>`` with
    consecutive tokens from ``first``, so a PubAck finds its row by
    subtraction. Tokens are never reused on a connection, so a late PubAck of
    an abandoned batch can never be taken for another row's."""

    __slots__ = ("acks", "done", "expect", "failed", "first", "got", "owner", "rows")

    def __init__(self, first: int, rows: Sequence[Any]) -> None:
        self.first = first
        self.owner = asyncio.current_task()  # the publish_pending call that sent it
        self.rows = rows
        self.acks: list[Msg | None] = [None] * len(rows)
        self.got = 0
        self.expect = -1  # how many were sent, once the whole batch is queued
        self.done = asyncio.Event()
        self.failed: dict[int, str] = {}


# The relay's statements on PostgreSQL, run on the driver connection of the
# session's transaction: per batch of 1000 they cost a quarter of what the
# ORM select/update did (no Row objects, no JSON decoding of empty headers,
# one array parameter instead of 1000 expanded IN parameters).
_PG_LOCK = "SELECT pg_try_advisory_xact_lock(%s::bigint)"
_PG_READ = (
    "SELECT seq, event_id, subject, event_type, payload,"
    " CASE WHEN headers::text IN ('{}', 'null') THEN NULL ELSE headers::text END"
    " FROM outbox WHERE published_at IS NULL AND seq > %s ORDER BY seq LIMIT %s"
)
_PG_MARK = (
    "UPDATE outbox SET published_at = %s, attempts = attempts + 1, last_error = NULL"
    " WHERE seq = ANY(%s::bigint[]) AND published_at IS NULL"
)
_PG_FAILED = "UPDATE outbox SET attempts = attempts + 1, last_error = %s WHERE seq = %s"
_MIN_SEQ = -(2**63)


class Relay(_Loop):
    """Publishes committed outbox rows to JetStream, in order, at least once.

    ``await relay.run()`` until ``await relay.stop()``; call ``notify()`` after
    committing an outbox row so it is sent without waiting for the next poll.
    Survives broker and database outages: errors are logged and retried with
    backoff; a row is marked published only after its PubAck.
    """

    def __init__(
        self,
        db: AsyncEngine | async_sessionmaker[AsyncSession],
        nats_url: str,
        *,
        service: str,
        batch_size: int = 1000,
        pipeline: int = 8,
        poll_interval: float = 1.0,
        duplicate_window: float = 120.0,
        replicas: int = 1,
        ack_timeout: float = 10.0,
    ) -> None:
        if not _SERVICE_RE.match(service):
            raise errors.ConfigError(f"服务名“{service}”不合法：只能用小写字母、数字和下划线")
        self.sessions = _sessions(db)
        self.nats_url = nats_url
        self.service = service
        self.stream = stream_name(service)
        self.batch_size = batch_size
        self.pipeline = max(1, pipeline)  # batches per claim of the replica lock (PostgreSQL)
        self.poll_interval = poll_interval
        self.duplicate_window = duplicate_window
        self.replicas = replicas
        self.ack_timeout = ack_timeout
        self.published = 0  # rows marked published by this relay (for metrics/tests)
        self._nc: NATS | None = None
        self._js: Any = None
        self._reply_prefix = ""
        self._token = 0
        self._sent: list[_Sent] = []  # batches awaiting PubAcks (two per publish_pending call)
        self._connecting = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = False
        self._idle = asyncio.Event()
        self._lock_key = zlib.crc32(f"jsx.outbox.{service}".encode()) & 0x7FFFFFFF

    def notify(self) -> None:
        """Wake the relay now (call after committing a transaction with events)."""
        self._wake.set()

    async def _connect(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            return
        async with self._connecting:  # run() and a direct publish_pending() may race here
            await self._connect_locked()

    async def _connect_locked(self) -> None:
        if self._nc is None or self._nc.is_closed:
            nc = await connect(self.nats_url, name=f"jsx-relay-{self.service}")
            # PubAcks come back to one wildcard inbox of the relay's own rather
            # than through js.publish_async, whose per-message future,
            # semaphore and token cost as much as the publish itself.
            prefix = nc.new_inbox()
            try:
                await nc.subscribe(prefix + ".*", cb=self._on_ack)
            except BaseException:
                await _close(nc)
                raise
            self._nc, self._js = nc, nc.jetstream()
            self._reply_prefix, self._token, self._sent = prefix, 0, []

    async def ensure_streams(self) -> None:
        """Create or update this service's stream ``JSX_<SERVICE>``."""
        await self._connect()
        await ensure_stream(self._js, self.service, duplicate_window=self.duplicate_window, replicas=self.replicas)

    async def _run(self) -> None:
        delay = 0.2
        ready = False
        while not self._stopping:
            try:
                if not ready:
                    await self.ensure_streams()
                    ready = True
                _sent, full = await self.publish_pending()
                delay = 0.2
                if full:
                    continue
                self._idle.set()
                await self._sleep(self.poll_interval)
                self._idle.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or DB outage: keep the loop alive
                log.warning(
                    "outbox.relay_error",
                    extra={"service": self.service, "error": f"{type(exc).__name__}: {exc}"[:300], "retry_in": delay},
                )
                await self._sleep(delay)
                delay = min(delay * 2, 10.0)
        self._idle.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def publish_pending(self) -> tuple[int, bool]:
        """Publish one batch (SQLite) or up to ``pipeline`` overlapping batches
        (PostgreSQL); return (rows marked published, last batch was full)."""
        await self._connect()
        try:
            marked, ok, failed, rows = await self._publish_pending()
        finally:
            # A batch this call abandoned (an error) stays unpublished; its late
            # PubAcks are ignored. Another call's batches are left alone.
            me = asyncio.current_task()
            self._sent = [b for b in self._sent if b.owner is not me]
        self.published += marked
        if ok:
            log.info("outbox.published", extra={"service": self.service, "count": marked})
        if failed:
            # Surface the outage to run()'s backoff; acked rows are already marked.
            raise errors.Unavailable(f"事件总线暂不可用，{len(failed)} 条事件稍后重发", reason="EVENT_BUS_UNAVAILABLE")
        return marked, len(rows) == self.batch_size

    async def _publish_pending(self) -> tuple[int, list[int], dict[int, str], Sequence[Any]]:
        rows: Sequence[Any]
        async with self.sessions() as session:
            dialect = session.get_bind().dialect
            if dialect.name == "postgresql":
                if dialect.driver != "psycopg":
                    # The relay's statements run on the driver connection (psycopg's %s parameters).
                    raise errors.ConfigError(
                        f"事件转发只支持 psycopg 驱动连接 PostgreSQL（postgresql://…），当前为 {dialect.driver}"
                    )
                # One transaction holds the replica lock from claim to mark.
                async with session.begin():
                    cx: Any = (await (await session.connection()).get_raw_connection()).driver_connection
                    async with cx.cursor() as cur:
                        await cur.execute(_PG_LOCK, (self._lock_key,))
                        got = (await cur.fetchone())[0]
                    if not got:
                        return 0, [], {}, []  # another replica is publishing; keep its order
                    rows = await self._read_pg(cx, _MIN_SEQ)
                    if not rows:
                        return 0, [], {}, []
                    marked, ok, failed, rows = await self._pipeline(cx, rows)
            else:
                # Never hold SQLite's single writer lock while waiting on the broker.
                async with session.begin():
                    rows = await self._read(session)
                if not rows:
                    return 0, [], {}, []
                ok, failed = await self._publish(rows)
                _fault("relay.after_publish")
                async with session.begin():
                    marked = await self._mark(session, ok, failed)
        return marked, ok, failed, rows

    # -- rows: (seq, event_id, subject, event_type, payload, extra headers or empty)

    async def _read(self, session: AsyncSession) -> Sequence[Any]:
        q = select(
            OutboxEvent.seq,
            OutboxEvent.event_id,
            OutboxEvent.subject,
            OutboxEvent.event_type,
            OutboxEvent.payload,
            OutboxEvent.headers,
        ).where(OutboxEvent.published_at.is_(None))
        return (await session.execute(q.order_by(OutboxEvent.seq).limit(self.batch_size))).all()

    async def _read_pg(self, cx: Any, after: int) -> list[tuple[Any, ...]]:
        # Binary results: bytea arrives as bytes without hex decoding.
        async with cx.cursor(binary=True) as cur:
            await cur.execute(_PG_READ, (after, self.batch_size))
            rows: list[tuple[Any, ...]] = await cur.fetchall()
            return rows

    async def _pipeline(self, cx: Any, rows: Sequence[Any]) -> tuple[int, list[int], dict[int, str], Sequence[Any]]:
        """PostgreSQL, under the replica lock: up to ``pipeline`` batches, the
        next one sent (in ``seq`` order on the one connection, so the stream
        order is kept) while the previous one's PubAcks come back and its rows
        are marked. A row is still marked only after its own PubAck. Returns
        (marked, ok, failed, last batch read)."""
        marked, all_ok, all_failed = 0, [], {}
        inflight = await self._send(rows)
        for i in range(self.pipeline):
            nxt: Sequence[Any] = []
            if len(rows) == self.batch_size and not inflight.failed and i + 1 < self.pipeline:
                nxt = await self._read_pg(cx, rows[-1][0])
            following = await self._send(nxt) if nxt else None
            ok, failed = await self._collect(inflight)
            _fault("relay.after_publish")
            marked += await self._mark_pg(cx, ok, failed)
            all_ok += ok
            all_failed.update(failed)
            if following is None:
                break
            if failed:  # the broker is failing: settle what was sent, retry the rest later
                ok, failed = await self._collect(following)
                marked += await self._mark_pg(cx, ok, failed)
                all_ok += ok
                all_failed.update(failed)
                rows = nxt
                break
            rows, inflight = nxt, following
        return marked, all_ok, all_failed, rows

    async def _mark(self, session: AsyncSession, ok: list[int], failed: dict[int, str]) -> int:
        """Mark acked rows published (not already marked by a racing relay); return how many."""
        marked = 0
        if ok:
            res = await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.seq.in_(ok), OutboxEvent.published_at.is_(None))
                .values(published_at=_now(), attempts=OutboxEvent.attempts + 1, last_error=None)
                .execution_options(synchronize_session=False)
            )
            marked = rowcount(res)
        for seq, err in failed.items():
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.seq == seq)
                .values(attempts=OutboxEvent.attempts + 1, last_error=err[:500])
                .execution_options(synchronize_session=False)
            )
        return marked

    async def _mark_pg(self, cx: Any, ok: list[int], failed: dict[int, str]) -> int:
        """``_mark`` on PostgreSQL: one statement for the acked rows of a batch."""
        marked = 0
        async with cx.cursor() as cur:
            if ok:
                await cur.execute(_PG_MARK, (_now(), ok))
                marked = max(cur.rowcount, 0)
            if failed:
                await cur.executemany(_PG_FAILED, [(err[:500], seq) for seq, err in failed.items()])
        return marked

    async def _publish(self, rows: Sequence[Any]) -> tuple[list[int], dict[int, str]]:
        """Send a batch pipelined, then wait for every PubAck (bounded)."""
        return await self._collect(await self._send(rows))

    async def _send(self, rows: Sequence[Any]) -> _Sent:
        """Queue a batch on the connection, each message with its own reply token."""
        nc = self._nc
        assert nc is not None
        batch = _Sent(self._token, rows)
        # Reserve the tokens before anything can yield: tokens are never shared
        # between batches, even of concurrent publish_pending calls.
        self._token += len(rows)
        self._sent.append(batch)
        prefix = self._reply_prefix + "."
        stream = self.stream
        # nc.publish encodes the headers before it can yield, so one dict, with
        # only the event id and type changed, serves every row without extras.
        shared = {HEADER_MSG_ID: "", HEADER_EVENT_TYPE: "", HEADER_EXPECTED_STREAM: stream}
        first, sent = batch.first, len(rows)
        for i, (seq, event_id, subject, event_type, payload, extra) in enumerate(rows):
            if extra:
                headers = dict(json.loads(extra) if isinstance(extra, str) else extra)
                headers.update({HEADER_MSG_ID: event_id, HEADER_EVENT_TYPE: event_type, HEADER_EXPECTED_STREAM: stream})
            else:
                headers = shared
                headers[HEADER_MSG_ID] = event_id
                headers[HEADER_EVENT_TYPE] = event_type
            try:
                # The whole batch is queued without yielding and goes out in a
                # few large writes.
                await nc.publish(subject, payload, reply=prefix + str(first + i), headers=headers)
            except Exception as exc:
                batch.failed[seq] = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "outbox.publish_failed",
                    extra={"event_id": event_id, "subject": subject, "error": batch.failed[seq][:200]},
                )
                sent = i
                break  # the connection is gone; the rest waits for the next round
        if sent < len(rows):
            batch.rows = rows[:sent]
            del batch.acks[sent:]
        batch.expect = sent
        if batch.got >= sent:
            batch.done.set()
        return batch

    async def _on_ack(self, msg: Msg) -> None:
        """The reply subscription's handler: file a PubAck under its row."""
        try:
            token = int(msg.subject[len(self._reply_prefix) + 1 :])
        except ValueError:
            return
        for batch in self._sent:
            i = token - batch.first
            if 0 <= i < len(batch.acks):
                if batch.acks[i] is None:
                    batch.acks[i] = msg
                    batch.got += 1
                    if batch.got == batch.expect:
                        batch.done.set()
                return

    def _ack_error(self, msg: Msg) -> str | None:
        """Why a PubAck does not confirm the row (None: stored, or already held)."""
        if not msg.data:
            # A status reply: 503 when no stream listens on the subject.
            status = (msg.headers or {}).get(api.Header.STATUS, "")
            return f"NoStreamResponseError: status {status or 'empty'}"
        try:
            resp = json.loads(msg.data)
        except ValueError:
            return "unreadable PubAck"
        if not isinstance(resp, dict):
            return "unreadable PubAck"
        err = resp.get("error")
        if err:
            if isinstance(err, dict):
                return f"APIError: {err.get('description', '')} (code {err.get('err_code', err.get('code'))})"
            return f"APIError: {err}"
        if resp.get("stream") != self.stream:
            return f"stored in unexpected stream {resp.get('stream')}"
        return None  # "duplicate": true — the stream already had it — is success too

    async def _collect(self, batch: _Sent) -> tuple[list[int], dict[int, str]]:
        """Wait (bounded) for a sent batch's PubAcks; split into acked and failed rows."""
        if batch.expect and not batch.done.is_set():
            try:
                await asyncio.wait_for(batch.done.wait(), self.ack_timeout)
            except TimeoutError:
                pass  # the rows without a PubAck are retried next round
        if batch in self._sent:
            self._sent.remove(batch)
        ok: list[int] = []
        failed = batch.failed
        for row, msg in zip(batch.rows, batch.acks, strict=True):  # both cut to the published prefix together
            seq = row[0]
            if msg is None:
                failed[seq] = "TimeoutError: no PubAck"
                continue
            err = self._ack_error(msg)
            if err is None:
                ok.append(seq)
                continue
            failed[seq] = err
            log.warning("outbox.publish_failed", extra={"event_id": row[1], "subject": row[2], "error": err[:200]})
        return ok, failed

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until the relay has found nothing left to publish (tests, shutdown)."""
        self._idle.clear()
        self.notify()
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in flight, then close the broker connection.

        Waits for the loop itself rather than draining the client: every
        publish of the last batch has had its PubAck (or its row stays
        unpublished for next time), so nothing is left to flush, and a drain
        can wait out its own 30 s timeout on the ack inbox."""
        self._stopping = True
        self._wake.set()
        await self._wait_stopped(timeout, "outbox.relay_stop_timeout", service=self.service)
        await _close(self._nc)
        self._nc = None


# --------------------------------------------------------------------------- consumer


@dataclass(frozen=True)
class EventMeta:
    """What a handler may know about the delivery besides the payload."""

    event_id: str
    subject: str
    event_type: str
    num_delivered: int
    stream_seq: int
    published_at: datetime | None


Handler = Callable[[AsyncSession, Message, EventMeta], Awaitable[None]]


class _Poison(Exception):
    """A message that can never be processed (bad headers, payload or type)."""


# Retrying these may succeed: the database or broker is briefly away, or a
# concurrent writer won a race.
_TRANSIENT: tuple[type[BaseException], ...] = (
    errors.Unavailable,
    errors.Aborted,
    OperationalError,
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
    OSError,
    nats.errors.Error,
)


def is_transient(exc: BaseException) -> bool:
    """True for failures worth a redelivery (outages, lost races)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _TRANSIENT)


def is_poison(exc: BaseException) -> bool:
    """True for failures that will never succeed: terminate the message."""
    if isinstance(exc, (_Poison, DecodeError)):
        return True
    return isinstance(exc, errors.DomainError) and not isinstance(exc, (errors.Unavailable, errors.Aborted))


class Consumer(_Loop):
    """A durable pull consumer applying events exactly once to a database.

    ``message_types`` maps ``Jsx-Event-Type`` (proto full name) to the
    message class, or is an iterable of classes. Per fetched batch, all
    messages are applied in one transaction (fast path); if any handler
    fails, the batch is rolled back and each message is applied in its own
    transaction so that only the failing one is retried or terminated.

    Failures: poison (bad headers, undecodable payload, unknown type, a
    DomainError other than Unavailable/Aborted) → ``term``; transient (outages,
    Unavailable, Aborted, OperationalError) → ``nak`` with growing delay;
    anything else (a bug) → ``nak`` with delay too, bounded by ``max_deliver``.
    """

    def __init__(
        self,
        nats: str | NATS,
        *,
        stream: str,
        durable: str,
        subjects: str | Sequence[str],
        handler: Handler,
        sessionmaker: AsyncEngine | async_sessionmaker[AsyncSession],
        message_types: Mapping[str, type[Message]] | Iterable[type[Message]],
        batch: int = 100,
        ack_wait: float = 30.0,
        max_deliver: int = 20,
        max_ack_pending: int = 1000,
        fetch_timeout: float = 1.0,
        retry_delays: Sequence[float] = (1.0, 2.0, 5.0, 15.0, 60.0),
        on_commit: Callable[[], None] | None = None,
        linger: float = 0.02,
    ) -> None:
        self.linger = linger
        self._nats = nats
        # Called after a transaction that applied effects commits. Services pass
        # their relay's notify() so an answer event (e.g. a booked 慰问金) goes
        # out at once instead of at the relay's next poll.
        self.on_commit = on_commit
        self.stream = stream
        self.durable = durable
        self.subjects = [subjects] if isinstance(subjects, str) else list(subjects)
        self.handler = handler
        self.sessions = _sessions(sessionmaker)
        if isinstance(message_types, Mapping):
            self.types = dict(message_types)
        else:
            self.types = {t.DESCRIPTOR.full_name: t for t in message_types}
        self.batch = batch
        self.ack_wait = ack_wait
        self.max_deliver = max_deliver
        self.max_ack_pending = max_ack_pending
        self.fetch_timeout = fetch_timeout
        self.retry_delays = list(retry_delays)
        self.applied = 0  # effects committed by this instance
        self.skipped = 0  # redeliveries recognised by the inbox
        self.terminated = 0
        self._nc: NATS | None = None
        self._own_nc = isinstance(nats, str)
        self._sub: Any = None
        self._stopping = False

    async def _subscribe(self) -> None:
        if self._nc is None:
            self._nc = (
                await connect(self._nats, name=f"jsx-consumer-{self.durable}")
                if isinstance(self._nats, str)
                else self._nats
            )
        js = self._nc.jetstream()
        cfg = api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
            deliver_policy=api.DeliverPolicy.ALL,
        )
        if len(self.subjects) == 1:
            cfg.filter_subject = self.subjects[0]
        else:
            cfg.filter_subjects = self.subjects
        # add_consumer is create-or-update for an unchanged durable config.
        await js._jsm.add_consumer(self.stream, config=cfg)
        self._sub = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)

    async def _run(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                if self._sub is None:
                    await self._subscribe()
                try:
                    msgs = await self._sub.fetch(self.batch, timeout=self.fetch_timeout)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue  # nothing new within fetch_timeout: the normal idle case
                msgs = await self._fill(msgs)
                await self.process(msgs)
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    break
                log.warning(
                    "inbox.consumer_error",
                    extra={"consumer": self.durable, "error": f"{type(exc).__name__}: {exc}"[:300], "retry_in": delay},
                )
                if isinstance(exc, nats.js.errors.NotFoundError):
                    self._sub = None  # stream or consumer not there (yet): subscribe again
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _fill(self, msgs: list[Msg]) -> list[Msg]:
        """nats-py's fetch returns as soon as the first messages arrive; under
        load that is a few dozen at a time, and each batch costs a database
        commit. Top the batch up for at most ``linger`` seconds so a backlog is
        applied in large transactions; an idle trickle still goes at once."""
        if self.linger <= 0 or len(msgs) >= self.batch:
            return msgs
        msgs = list(msgs)
        deadline = asyncio.get_running_loop().time() + self.linger
        while len(msgs) < self.batch:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0.001:
                break
            try:
                msgs.extend(await self._sub.fetch(self.batch - len(msgs), timeout=left))
            except (TimeoutError, nats.errors.TimeoutError):
                break
        return msgs

    async def stop(self) -> None:
        """Stop fetching; the batch in hand is finished; close an owned connection."""
        self._stopping = True
        # the loop notices within fetch_timeout; unacked messages are redelivered
        await self._wait_stopped(self.fetch_timeout + 10.0, "inbox.consumer_stop_timeout", consumer=self.durable)
        if self._own_nc:
            await _close(self._nc)
            self._nc = None
        self._sub = None

    # -- applying

    def _parse(self, msg: Msg) -> tuple[Message, EventMeta]:
        headers = msg.headers or {}
        eid = headers.get(HEADER_MSG_ID)
        etype = headers.get(HEADER_EVENT_TYPE)
        if not eid or not etype:
            raise _Poison(f"missing {HEADER_MSG_ID} or {HEADER_EVENT_TYPE} header")
        cls = self.types.get(etype)
        if cls is None:
            raise _Poison(f"unknown event type {etype}")
        proto = cls()
        proto.ParseFromString(msg.data)
        md = msg.metadata
        return proto, EventMeta(
            event_id=eid,
            subject=msg.subject,
            event_type=etype,
            num_delivered=md.num_delivered or 1,
            stream_seq=md.sequence.stream if md.sequence else 0,
            published_at=md.timestamp,
        )

    async def process(self, msgs: Sequence[Msg]) -> None:
        """Apply a fetched batch, then ack/nak/term each message."""
        parsed: list[tuple[Msg, Message, EventMeta]] = []
        for m in msgs:
            try:
                proto, meta = self._parse(m)
            except Exception as exc:
                await self._term(m, exc)
                continue
            parsed.append((m, proto, meta))
        if not parsed:
            return
        try:
            async with self.sessions() as session, session.begin():
                fresh = await self._apply(session, parsed)
        except Exception as exc:
            # Isolate the failing message: one transaction each.
            log.info(
                "inbox.batch_fallback",
                extra={"consumer": self.durable, "count": len(parsed), "error": f"{type(exc).__name__}: {exc}"[:300]},
            )
            for item in parsed:
                await self._process_one(item)
            return
        await self._ack_all(parsed, fresh)

    async def _apply(self, session: AsyncSession, items: Sequence[tuple[Msg, Message, EventMeta]]) -> int:
        # Claim the event ids first: INSERT … ON CONFLICT DO NOTHING RETURNING
        # tells which are new in one statement that walks the primary key, and
        # a concurrent consumer holding the same id makes this wait for its
        # commit. (A pre-check SELECT … IN (…) was planned on PostgreSQL as a
        # scan of the consumer's whole inbox, slower with every event kept.)
        now = _now()
        rows: list[dict[str, Any]] = []
        first: dict[str, tuple[Message, EventMeta]] = {}
        for _, proto, meta in items:
            if meta.event_id not in first:
                first[meta.event_id] = (proto, meta)
                rows.append(
                    {"consumer": self.durable, "event_id": meta.event_id, "subject": meta.subject, "received_at": now}
                )
        insert_ = _pg_insert if session.get_bind().dialect.name == "postgresql" else _sqlite_insert
        stmt = (
            insert_(InboxEvent)
            .on_conflict_do_nothing(index_elements=[InboxEvent.consumer, InboxEvent.event_id])
            .returning(InboxEvent.event_id)
        )
        fresh = set((await session.execute(stmt, rows)).scalars())
        for event_id, (proto, meta) in first.items():
            if event_id in fresh:
                await self.handler(session, proto, meta)
        await session.flush()
        return len(fresh)

    async def _process_one(self, item: tuple[Msg, Message, EventMeta]) -> None:
        msg, _, meta = item
        try:
            async with self.sessions() as session, session.begin():
                fresh = await self._apply(session, [item])
        except IntegrityError as exc:
            # Another instance recorded this event id between our check and insert.
            if await self._in_inbox(meta.event_id):
                fresh = 0
            else:
                await self._fail(msg, meta, exc)
                return
        except Exception as exc:
            await self._fail(msg, meta, exc)
            return
        await self._ack_all([item], fresh)

    async def _in_inbox(self, event_id: str) -> bool:
        try:
            async with self.sessions() as session:
                return (await session.get(InboxEvent, (self.durable, event_id))) is not None
        except Exception:
            return False

    async def _ack_all(self, items: Sequence[tuple[Msg, Message, EventMeta]], fresh: int) -> None:
        self.applied += fresh
        if fresh and self.on_commit is not None:
            self.on_commit()
        self.skipped += len(items) - fresh
        _fault("consumer.before_ack")
        for msg, _, _ in items:
            # If this ack is lost the broker redelivers and the inbox turns it into a no-op.
            await msg.ack()

    async def _fail(self, msg: Msg, meta: EventMeta, exc: BaseException) -> None:
        if is_poison(exc):
            await self._term(msg, exc, meta.event_id)
            return
        n = meta.num_delivered
        delay = self.retry_delays[min(n - 1, len(self.retry_delays) - 1)] if self.retry_delays else 0
        log.warning(
            "inbox.retry",
            extra={
                "consumer": self.durable,
                "event_id": meta.event_id,
                "subject": meta.subject,
                "deliveries": n,
                "delay": delay,
                "transient": is_transient(exc),
                "error": f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"[:300],
            },
            exc_info=not is_transient(exc),
        )
        await msg.nak(delay=delay)

    async def _term(self, msg: Msg, exc: BaseException, event_id: str | None = None) -> None:
        self.terminated += 1
        log.error(
            "inbox.poison",
            extra={
                "consumer": self.durable,
                "event_id": event_id or (msg.headers or {}).get(HEADER_MSG_ID),
                "subject": msg.subject,
                "error": f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"[:300],
            },
        )
        await msg.term()
