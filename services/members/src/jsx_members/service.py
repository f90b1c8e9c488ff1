"""Members use cases: one transaction each, with their outbox events and
AIP-155 idempotency, and the caller's permissions and region scope applied.

Requests and responses are the jsx.members.v1 protobuf messages (the wire
contract is the use-case contract: idempotency stores the response as sent),
while every rule lives in :mod:`jsx_members.domain`. The caller is
:func:`jsxcore.auth.current_caller` (set by the gRPC auth interceptor, or by
the CLI for direct database work).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from google.protobuf.message import Message
from sqlalchemy import Select, bindparam, exists, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, aliased

from jsx.common.v1 import common_pb2
from jsx.members.v1 import events_pb2
from jsx.members.v1 import members_pb2 as pb
from jsxcore.auth import Caller, current_caller
from jsxcore.bulk import fewer_collections
from jsxcore.errors import Aborted, AlreadyExists, ErrorCollector, FailedPrecondition, InvalidArgument, NotFound
from jsxcore.db import read
from jsxcore.idempotency import run_idempotent
from jsxcore.pii import BlindIndex, FieldCipher, mask_name, mask_phone
from jsxcore.values import IdNumber, RegionCode, RegionLevel

from jsx_members import domain as d
from jsx_members.adapters import bus
from jsx_members.adapters import db as m
from jsx_members.adapters import roster

log = logging.getLogger("jsx.members")
audit = logging.getLogger("jsx.audit")

SERVICE_NAME = "jsx.members.v1.MembersService"
DEFAULT_PAGE = 50
MAX_PAGE = 500
R = TypeVar("R", bound=Message)


# ---------------------------------------------------------------- conversions


def to_date(value: common_pb2.Date, field: str, *, required: bool = False, default: date | None = None) -> date | None:
    if value.year == 0 and value.month == 0 and value.day == 0:
        if required:
            raise InvalidArgument.field(field, "请填写日期", reason="DATE_REQUIRED")
        return default
    try:
        return date(value.year, value.month, value.day)
    except ValueError:
        raise InvalidArgument.field(field, f"日期 {value.year}-{value.month}-{value.day} 无效", reason="INVALID_DATE") from None


def from_date(value: date | None) -> common_pb2.Date | None:
    return None if value is None else common_pb2.Date(year=value.year, month=value.month, day=value.day)


@lru_cache(maxsize=65536)
def region_pb(code: str) -> common_pb2.RegionCode:
    """Cached: a roster of 100k people names a few hundred villages. Safe to
    share because protobuf copies a message when it is assigned to a field."""
    return common_pb2.RegionCode(code=code)


def enum_in(enum_cls: Any, pb_enum: Any, prefix: str, value: int, field: str, what: str, default: Any = None) -> Any:
    """proto enum number → domain enum (same member names after the prefix)."""
    if value == 0:
        if default is not None:
            return default
        raise InvalidArgument.field(field, f"请选择{what}", reason="ENUM_REQUIRED")
    try:
        return enum_cls[pb_enum.Name(value).removeprefix(prefix)]
    except (ValueError, KeyError):
        raise InvalidArgument.field(field, f"{what}取值 {value} 无效", reason="INVALID_ENUM") from None


def enum_out(pb_enum: Any, prefix: str, member: Any) -> int:
    return int(pb_enum.Value(prefix + member.name))


def parse_name(name: str, collection: str, field: str = "name") -> str:
    """``persons/{id}`` → id; anything else is a clear INVALID_ARGUMENT."""
    head, sep, rid = (name or "").partition("/")
    if head != collection or not sep or not rid or "/" in rid or len(rid) > 36:
        raise InvalidArgument.field(field, f"资源名“{name[:80]}”格式不对，应为 {collection}/{{编号}}", reason="INVALID_RESOURCE_NAME")
    return rid


def update_paths(
    mask: Any, settable: set[str], *, default: set[str] | None = None, why: dict[str, str] | None = None
) -> set[str]:
    """AIP-134: the paths of ``mask``, checked against what may be changed.

    Unknown or immutable paths are INVALID_ARGUMENT with one field violation
    each (``why`` gives the clerk the reason for known immutable fields); an
    empty mask means ``default``, or is refused when there is none."""
    paths = set(mask.paths)
    if not paths:
        if default is None:
            raise InvalidArgument.field("update_mask", "请在 update_mask 中列出要修改的字段", reason="UPDATE_MASK_REQUIRED")
        return set(default)
    errors = ErrorCollector()
    for path in sorted(paths - settable):
        errors.add("update_mask", (why or {}).get(path) or f"字段“{path[:60]}”不存在或不可修改；可修改的字段：{'、'.join(sorted(settable))}")
    errors.raise_if_any("要修改的字段有误，请按字段说明修改后重试", reason="FIELD_NOT_UPDATABLE")
    return paths


def _ts(value: datetime) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    t = Timestamp()
    t.FromDatetime(value)
    return t


# ---------------------------------------------------------------- paging


def _filter_hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def _page(page_size: int, page_token: str, fh: str) -> tuple[int, str | None]:
    if page_size < 0:
        raise InvalidArgument.field("page_size", "每页条数不能为负数", reason="INVALID_PAGE_SIZE")
    size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
    if not page_token:
        return size, None
    try:
        data = json.loads(base64.urlsafe_b64decode(page_token.encode()))
        after, h = str(data["a"]), str(data["h"])
    except Exception:
        raise InvalidArgument.field("page_token", "分页令牌无效，请从第一页重新查询", reason="INVALID_PAGE_TOKEN") from None
    if h != fh:
        raise InvalidArgument.field("page_token", "分页令牌与查询条件不一致，请从第一页重新查询", reason="PAGE_TOKEN_MISMATCH")
    return size, after


def _token(after: str, fh: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"a": after, "h": fh}).encode()).decode()


async def _paged(session: AsyncSession, q: Select[Any], key: Any, size: int, after: str | None, fh: str) -> tuple[list[Any], str]:
    if after is not None:
        q = q.where(key > after)
    rows = list((await session.execute(q.order_by(key).limit(size + 1))).scalars())
    more = len(rows) > size
    rows = rows[:size]
    return rows, _token(str(getattr(rows[-1], key.key)), fh) if more and rows else ""


# ---------------------------------------------------------------- the service


class MembersService:
    """Use cases of the members service. ``today`` is injectable for tests."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cipher: FieldCipher,
        blind_index: BlindIndex,
        *,
        on_commit: Callable[[], None] | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.sessions = sessions
        self.cipher = cipher
        self.bidx = blind_index
        self.on_commit = on_commit or (lambda: None)
        self.today = today

    # -- plumbing

    async def _mutate(self, method: str, request: Message, response_type: type[R], handler: Callable[[AsyncSession], Awaitable[R]]) -> R:
        """One transaction: idempotency claim, the change, its outbox rows."""
        try:
            async with self.sessions() as session, session.begin():
                result = await run_idempotent(
                    session,
                    method=f"/{SERVICE_NAME}/{method}",
                    request=request,
                    response_type=response_type,
                    handler=lambda: handler(session),
                )
        except IntegrityError:
            # A concurrent request won a unique constraint between our check and insert.
            raise Aborted("数据已被其他操作同时修改，请刷新后重试", reason="CONCURRENT_MODIFICATION") from None
        self.on_commit()
        return result

    async def _read(self, handler: Callable[[AsyncSession], Awaitable[R]]) -> R:
        async with self.sessions() as session:
            return await handler(session)

    def _scope(self, region: common_pb2.RegionCode, field: str = "region") -> RegionCode:
        caller = current_caller()
        if not region.code:
            return caller.region
        r = RegionCode.parse(region.code, field=field)
        caller.require_region(r)
        return r

    def _aad(self, person_id: str, what: str) -> bytes:
        return f"persons/{person_id}/{what}".encode()

    async def _get(self, session: AsyncSession, model: type[Any], rid: str, what: str) -> Any:
        row = await session.get(model, rid)
        if row is None:
            raise NotFound(f"未找到该{what}（编号 {rid}），请核对后重试", reason=f"{model.__tablename__.upper()}_NOT_FOUND")
        return row

    async def _person(self, session: AsyncSession, name: str, field: str = "person", *, check_region: bool = True) -> m.Person:
        p: m.Person = await self._get(session, m.Person, parse_name(name, "persons", field), "人员")
        if check_region:
            current_caller().require_region(p.village)
        return p

    # -- persons

    def person_pb(self, p: Any, view: int = pb.PERSON_VIEW_MASKED) -> pb.Person:
        """The API view of a person: ``p`` is an ``m.Person`` or a Core row of
        the persons table (same attribute names and types). Phone and card
        are decrypted to mask them: masks are not stored, so a key rotation
        or a masking rule change needs no data migration."""
        caller = current_caller()
        full = view == pb.PERSON_VIEW_FULL and caller.may_see_pii
        out = pb.Person(
            name=f"persons/{p.id}",
            display_name=p.name if full else mask_name(p.name),
            id_number_masked=p.id_masked,
            sex=pb.SEX_MALE if p.sex == "男" else pb.SEX_FEMALE,
            birth_date=from_date(p.birth_date),
            village=region_pb(p.village),
            hukou_type=enum_out(pb.HukouType, "HUKOU_TYPE_", d.HukouType[p.hukou]),
            status=enum_out(pb.PersonStatus, "PERSON_STATUS_", d.PersonStatus[p.status]),
            death_date=from_date(p.death_date),
            create_time=_ts(p.created_at),
            update_time=_ts(p.updated_at),
        )
        phone = self.cipher.decrypt(p.phone_cipher, aad=self._aad(p.id, "phone")) if p.phone_cipher else ""
        card = self.cipher.decrypt(p.card_cipher, aad=self._aad(p.id, "card")) if p.card_cipher else ""
        out.phone_masked = mask_phone(phone) if phone else ""
        out.card_number_masked = ("*" * max(len(card) - 4, 0) + card[-4:]) if card else ""
        if full:
            out.id_number = self.cipher.decrypt(p.id_cipher, aad=self._aad(p.id, "id_number"))
            out.phone, out.card_number = phone, card
            # Every plaintext read is audited: who, which record (never the values).
            audit.info("pii.read", extra={"actor": caller.subject, "resource": out.name})
        return out

    def _person_fields(self, p: pb.Person, prefix: str = "person.") -> d.PersonDraft:
        death = to_date(p.death_date, prefix + "death_date")
        hukou = d.HukouType.RURAL if p.hukou_type == 0 else enum_in(d.HukouType, pb.HukouType, "HUKOU_TYPE_", p.hukou_type, prefix + "hukou_type", "户籍类型")
        draft = d.validate_person(
            name=p.display_name, id_number=p.id_number, phone=p.phone, village=p.village.code,
            hukou=hukou.value, death_date=death, today=self.today(), prefix=prefix,
        )
        return draft

    def _fill_person(self, row: m.Person, draft: d.PersonDraft, card: str) -> None:
        row.name = draft.name
        row.id_cipher = self.cipher.encrypt(draft.id_number.value, aad=self._aad(row.id, "id_number"))
        row.id_bidx = self.bidx.digest(draft.id_number.value)
        row.id_masked = draft.id_number.masked
        row.birth_date = draft.birth_date
        row.sex = draft.sex
        self._set_phone(row, draft.phone)
        self._set_card(row, card)
        row.village = draft.village.code
        row.hukou = draft.hukou.name
        row.status = draft.status.name
        row.death_date = draft.death_date

    def _set_phone(self, row: m.Person, phone: str | None) -> None:
        row.phone_cipher = self.cipher.encrypt(phone, aad=self._aad(row.id, "phone")) if phone else None
        row.phone_bidx = self.bidx.digest(phone) if phone else None

    def _set_card(self, row: m.Person, card: str) -> None:
        card = card.replace(" ", "")
        if card and not (card.isdigit() and 8 <= len(card) <= 30):
            raise InvalidArgument.field("person.card_number", "一卡通账号应为8至30位数字", reason="CARD_NUMBER_FORMAT")
        row.card_cipher = self.cipher.encrypt(card, aad=self._aad(row.id, "card")) if card else None

    async def _refuse_duplicate(self, session: AsyncSession, idn: IdNumber, field: str = "person.id_number") -> None:
        existing = await m.person_by_bidx(session, self.bidx.digest(idn.value))
        if existing is not None:
            raise AlreadyExists(
                f"身份证号 {existing.id_masked} 已登记为 {mask_name(existing.name)}（persons/{existing.id}），请勿重复登记",
                reason="PERSON_ALREADY_EXISTS",
                metadata={"existing": f"persons/{existing.id}", "id_number_masked": existing.id_masked},
            )

    async def create_person(self, req: pb.CreatePersonRequest) -> pb.Person:
        async def run(s: AsyncSession) -> pb.Person:
            draft = self._person_fields(req.person)
            current_caller().require_region(draft.village)
            await self._refuse_duplicate(s, draft.id_number)
            row = m.Person(id=m.new_id(), version=1, created_at=m.utcnow(), updated_at=m.utcnow())
            self._fill_person(row, draft, req.person.card_number)
            s.add(row)
            await s.flush()
            bus.emit(s, events_pb2.PersonRegistered(person=f"persons/{row.id}", village=region_pb(row.village)))
            return self.person_pb(row)

        return await self._mutate("CreatePerson", req, pb.Person, run)

    #: GetPerson's row read: a Core select (the ORM's identity map and
    #: instance building cost ~100 µs a call here, the query itself ~35 µs).
    _PERSON_BY_ID = select(m.Person.__table__).where(m.Person.__table__.c.id == bindparam("pid"))

    async def get_person(self, req: pb.GetPersonRequest) -> pb.Person:
        # The hottest read other systems make: one row by primary key, so an
        # inline point read (on SQLite it runs on the loop, no thread hop;
        # see jsxcore.db.read) instead of an async session's thread hops.
        pid = parse_name(req.name, "persons", "name")

        def load(s: Session) -> pb.Person:
            p = s.connection().execute(self._PERSON_BY_ID, {"pid": pid}).first()
            if p is None:
                raise NotFound(f"未找到该人员（编号 {pid}），请核对后重试", reason="PERSONS_NOT_FOUND")
            current_caller().require_region(p.village)
            return self.person_pb(p, req.view)

        return await read(self.sessions, load, inline=True)

    async def lookup_person(self, req: pb.LookupPersonRequest) -> pb.Person:
        idn = IdNumber.parse(req.id_number, field="id_number", today=self.today())

        async def run(s: AsyncSession) -> pb.Person:
            p = await m.person_by_bidx(s, self.bidx.digest(idn.value))
            if p is None:
                raise NotFound(f"没有登记身份证号为 {idn.masked} 的人员", reason="PERSON_NOT_FOUND")
            current_caller().require_region(p.village)
            return self.person_pb(p, req.view)

        return await self._read(run)

    async def list_persons(self, req: pb.ListPersonsRequest) -> pb.ListPersonsResponse:
        region = self._scope(req.region)
        fh = _filter_hash("persons", region, req.status)
        size, after = _page(req.page_size, req.page_token, fh)

        async def run(s: AsyncSession) -> pb.ListPersonsResponse:
            q = select(m.Person).where(m.Person.village.like(m.region_prefix(region) + "%"))
            if req.status:
                q = q.where(m.Person.status == enum_in(d.PersonStatus, pb.PersonStatus, "PERSON_STATUS_", req.status, "status", "状态").name)
            rows, token = await _paged(s, q, m.Person.id, size, after, fh)
            return pb.ListPersonsResponse(persons=[self.person_pb(p, req.view) for p in rows], next_page_token=token)

        return await self._read(run)

    async def update_person(self, req: pb.UpdatePersonRequest) -> pb.Person:
        settable = {"display_name", "phone", "village", "hukou_type", "status", "death_date", "card_number"}
        paths = update_paths(req.update_mask, settable, default=settable, why={
            "id_number": "身份证号不可修改（如登记错误，请联系县计生协更正）",
            "sex": "性别由身份证号决定，不可单独修改", "birth_date": "出生日期由身份证号决定，不可单独修改"})

        async def run(s: AsyncSession) -> pb.Person:
            row = await self._person(s, req.person.name, "person.name")
            p = req.person
            errors = ErrorCollector()

            def attempt(fn: Callable[[], Any]) -> Any:
                try:
                    return fn()
                except InvalidArgument as e:
                    errors.violations.extend(e.violations)
                    return None

            if "display_name" in paths:
                row.name = attempt(lambda: d.normalize_name(p.display_name, field="person.display_name")) or row.name
            if "phone" in paths:
                phone = attempt(lambda: d.normalize_phone(p.phone, field="person.phone"))
                if not errors:
                    self._set_phone(row, phone)
            if "village" in paths:
                v = attempt(lambda: d.parse_village(p.village.code, field="person.village"))
                if v is not None:
                    current_caller().require_region(v)
                    row.village = v.code
            if "hukou_type" in paths:
                h = attempt(lambda: enum_in(d.HukouType, pb.HukouType, "HUKOU_TYPE_", p.hukou_type, "person.hukou_type", "户籍类型"))
                if h is not None:
                    row.hukou = h.name
            if "status" in paths or "death_date" in paths:
                st = attempt(lambda: enum_in(d.PersonStatus, pb.PersonStatus, "PERSON_STATUS_", p.status, "person.status", "人员状态", d.PersonStatus.ACTIVE))
                death = attempt(lambda: to_date(p.death_date, "person.death_date"))
                if st is d.PersonStatus.DECEASED and death is None:
                    errors.add("person.death_date", "标记为已故时须填写死亡日期")
                if death is not None and st is not d.PersonStatus.DECEASED:
                    errors.add("person.status", "填写了死亡日期，人员状态应为已故")
                if death is not None and (death > self.today() or death < row.birth_date):
                    errors.add("person.death_date", "死亡日期应在出生日期与今天之间")
                if st is not None:
                    row.status, row.death_date = st.name, death
            if "card_number" in paths:
                attempt(lambda: self._set_card(row, p.card_number))
            errors.raise_if_any("人员信息有误，请按字段说明修改后重试")
            row.version += 1
            row.updated_at = m.utcnow()
            await s.flush()
            return self.person_pb(row)

        return await self._mutate("UpdatePerson", req, pb.Person, run)

    # -- households

    async def household_pb(self, s: AsyncSession, h: m.Household) -> pb.Household:
        members = await m.household_members(s, h.id)
        history = await m.situation_history(s, h.id)
        out = pb.Household(
            name=f"households/{h.id}",
            head=f"persons/{h.head_person_id}",
            village=region_pb(h.village),
            address=h.address,
            create_time=_ts(h.created_at),
            update_time=_ts(h.updated_at),
        )
        for hm, _p in members:
            out.members.add(person=f"persons/{hm.person_id}", relation=enum_out(pb.Relation, "RELATION_", d.Relation[hm.relation]))
        for i, e in enumerate(history):
            if e.situation == d.Situation.NONE.name:
                continue
            nxt = history[i + 1].effective_from - timedelta(days=1) if i + 1 < len(history) else None
            out.situations.add(
                kind=enum_out(pb.SituationKind, "SITUATION_KIND_", d.Situation[e.situation]),
                disability_grade=e.disability_grade or 0,
                honor_certificate=e.honor_certificate,
                effective_from=from_date(e.effective_from),
                effective_to=from_date(nxt),
                note=e.note,
            )
        return out

    def _situation_in(self, fs: pb.FamilySituation, field: str) -> d.SituationRecord:
        kind = enum_in(d.Situation, pb.SituationKind, "SITUATION_KIND_", fs.kind, f"{field}.kind", "家庭类型")
        start = to_date(fs.effective_from, f"{field}.effective_from", required=True)
        assert start is not None
        return d.SituationRecord(kind, start, fs.disability_grade or None, fs.honor_certificate.strip(), fs.note.strip())

    async def _append_situation(self, s: AsyncSession, h: m.Household, record: d.SituationRecord, *, today: date | None = None) -> None:
        history = [
            d.SituationRecord(d.Situation[e.situation], e.effective_from, e.disability_grade, e.honor_certificate, e.note)
            for e in await m.situation_history(s, h.id)
        ]
        d.append_situation(history, record, today=today or self.today())
        s.add(m.SituationEntry(
            household_id=h.id, situation=record.situation.name, effective_from=record.effective_from,
            disability_grade=record.disability_grade, honor_certificate=record.honor_certificate, note=record.note,
            recorded_by=current_caller().subject, recorded_at=m.utcnow(),
        ))
        h.current_situation = record.situation.name
        h.version += 1
        h.updated_at = m.utcnow()

    async def register_household(
        self,
        s: AsyncSession,
        *,
        head_id: str,
        members: Sequence[tuple[m.Person, d.Relation]],
        village: RegionCode,
        address: str,
        situations: Sequence[d.SituationRecord],
    ) -> m.Household:
        """Shared by CreateHousehold and roster import; the caller checked scope."""
        views = [d.HouseholdMemberView(p.id, rel, p.birth_date, p.status == d.PersonStatus.DECEASED.name) for p, rel in members]
        d.check_household_members(views, on=self.today(), field="household.members")
        for i, (p, _) in enumerate(members):
            existing = await m.household_of(s, p.id)
            if existing is not None:
                raise FailedPrecondition(
                    f"{mask_name(p.name)}（{p.id_masked}）已在另一户（households/{existing.household_id}）中，一人只能属于一户",
                    reason="PERSON_IN_OTHER_HOUSEHOLD",
                    metadata={"household": f"households/{existing.household_id}", "member_index": str(i)},
                )
        h = m.Household(id=m.new_id(), head_person_id=head_id, village=village.code, address=address,
                        current_situation=d.Situation.NONE.name, version=1, created_at=m.utcnow(), updated_at=m.utcnow())
        s.add(h)
        await s.flush()
        for i, (p, rel) in enumerate(members):
            s.add(m.HouseholdMember(household_id=h.id, person_id=p.id, relation=rel.name, position=i))
        bus.emit(s, events_pb2.HouseholdRegistered(
            household=f"households/{h.id}", village=region_pb(h.village), head_person=f"persons/{head_id}", member_count=len(members)))
        await s.flush()
        for rec in sorted(situations, key=lambda r: r.effective_from):
            await self._append_situation(s, h, rec)
            self._situation_event(s, h, rec, None, len(members))
        return h

    def _situation_event(self, s: AsyncSession, h: m.Household, rec: d.SituationRecord, ended: date | None, count: int) -> None:
        bus.emit(s, events_pb2.HouseholdSituationChanged(
            household=f"households/{h.id}", village=region_pb(h.village),
            kind=enum_out(pb.SituationKind, "SITUATION_KIND_", rec.situation),
            effective_from=from_date(rec.effective_from), effective_to=from_date(ended),
            disability_grade=rec.disability_grade or 0, head_person=f"persons/{h.head_person_id}", member_count=count,
        ))

    async def create_household(self, req: pb.CreateHouseholdRequest) -> pb.Household:
        async def run(s: AsyncSession) -> pb.Household:
            hh = req.household
            village = d.parse_village(hh.village.code, field="household.village")
            current_caller().require_region(village)
            head_id = parse_name(hh.head, "persons", "household.head")
            members: list[tuple[m.Person, d.Relation]] = []
            for i, mem in enumerate(hh.members):
                p = await self._person(s, mem.person, f"household.members[{i}].person")
                rel = enum_in(d.Relation, pb.Relation, "RELATION_", mem.relation, f"household.members[{i}].relation", "与户主关系")
                members.append((p, rel))
            if head_id not in {p.id for p, _ in members}:
                members.insert(0, (await self._person(s, hh.head, "household.head"), d.Relation.HEAD))
            heads = [p.id for p, rel in members if rel is d.Relation.HEAD]
            if heads and heads != [head_id]:
                raise InvalidArgument.field("household.head", "户主须是成员列表中关系为“户主”的那个人", reason="HEAD_MISMATCH")
            records = [self._situation_in(fs, f"situations[{i}]") for i, fs in enumerate(req.situations)]
            h = await self.register_household(s, head_id=head_id, members=members, village=village,
                                              address=hh.address.strip()[:200], situations=records)
            return await self.household_pb(s, h)

        return await self._mutate("CreateHousehold", req, pb.Household, run)

    async def _household(self, s: AsyncSession, name: str, field: str = "name") -> m.Household:
        h: m.Household = await self._get(s, m.Household, parse_name(name, "households", field), "家庭户")
        current_caller().require_region(h.village)
        return h

    async def get_household(self, req: pb.GetHouseholdRequest) -> pb.Household:
        async def run(s: AsyncSession) -> pb.Household:
            return await self.household_pb(s, await self._household(s, req.name))

        return await self._read(run)

    async def record_situation(self, req: pb.RecordSituationRequest) -> pb.Household:
        async def run(s: AsyncSession) -> pb.Household:
            h = await self._household(s, req.household, "household")
            rec = self._situation_in(req.situation, "situation")
            count = len(await m.household_members(s, h.id))
            ended = to_date(req.situation.effective_to, "situation.effective_to")
            if ended is None:
                await self._append_situation(s, h, rec)
                self._situation_event(s, h, rec, None, count)
            else:
                if h.current_situation != rec.situation.name:
                    raise FailedPrecondition(f"该户当前不是“{rec.situation.value}”，无法结束该家庭类型", reason="SITUATION_NOT_OPEN")
                if ended > self.today():
                    raise InvalidArgument.field("situation.effective_to", "结束日期不能晚于今天", reason="END_IN_FUTURE")
                closing = d.SituationRecord(d.Situation.NONE, ended + timedelta(days=1), note=rec.note)
                await self._append_situation(s, h, closing, today=self.today() + timedelta(days=1))
                history = await m.situation_history(s, h.id)
                opened = [e for e in history if e.situation == rec.situation.name][-1]
                self._situation_event(s, h, d.SituationRecord(rec.situation, opened.effective_from, opened.disability_grade), ended, count)
            await s.flush()
            return await self.household_pb(s, h)

        return await self._mutate("RecordSituation", req, pb.Household, run)

    async def update_household(self, req: pb.UpdateHouseholdRequest) -> pb.Household:
        """Address, members (add/remove, relations) and 户主 change under the
        same rules as registration; members/head changes publish
        HouseholdMembersChanged so projections keep head and size right."""
        paths = update_paths(req.update_mask, {"address", "members", "head"}, why={
            "village": "家庭户所属村不可修改；迁户请将成员移出后在新村登记",
            "situations": "家庭类型请用“记录家庭类型变更”（RecordSituation）登记，历史记录不可改写",
            "name": "资源名不可修改", "create_time": "登记时间不可修改"})
        if "head" in paths and "members" not in paths:
            raise InvalidArgument.field("update_mask", "更换户主须同时提交成员列表（与户主关系以新户主为准），即 update_mask 同时包含 head 和 members",
                                        reason="HEAD_CHANGE_NEEDS_MEMBERS")

        async def run(s: AsyncSession) -> pb.Household:
            hh = req.household
            h = await self._household(s, hh.name, "household.name")
            if "address" in paths:
                address = hh.address.strip()
                if len(address) > 200:
                    raise InvalidArgument.field("household.address", "地址不能超过200个字", reason="ADDRESS_TOO_LONG")
                h.address = address
            if "members" in paths:
                await self._replace_members(s, h, hh, change_head="head" in paths)
            h.version += 1
            h.updated_at = m.utcnow()
            await s.flush()
            return await self.household_pb(s, h)

        return await self._mutate("UpdateHousehold", req, pb.Household, run)

    async def _replace_members(self, s: AsyncSession, h: m.Household, hh: pb.Household, *, change_head: bool) -> None:
        old = await m.household_members(s, h.id)
        old_rows = {hm.person_id: hm for hm, _ in old}
        head_id = parse_name(hh.head, "persons", "household.head") if change_head else h.head_person_id
        members: list[tuple[m.Person, d.Relation]] = []
        for i, mem in enumerate(hh.members):
            f = f"household.members[{i}]"
            pid = parse_name(mem.person, "persons", f + ".person")
            # People already in the household stay reachable even if they moved
            # village; newcomers must be in the caller's region.
            p = await self._person(s, mem.person, f + ".person", check_region=pid not in old_rows)
            members.append((p, enum_in(d.Relation, pb.Relation, "RELATION_", mem.relation, f + ".relation", "与户主关系")))
        heads = [p.id for p, rel in members if rel is d.Relation.HEAD]
        if not change_head and heads and heads[0] != h.head_person_id:
            raise InvalidArgument.field("update_mask", "成员列表中的户主与现户主不同；更换户主须在 update_mask 中包含 head 并填写新户主",
                                        reason="HEAD_CHANGE_NOT_REQUESTED")
        if heads and head_id not in heads:
            raise InvalidArgument.field("household.head", "户主须是成员列表中关系为“户主”的那个人", reason="HEAD_MISMATCH")
        views = [d.HouseholdMemberView(p.id, rel, p.birth_date, p.status == d.PersonStatus.DECEASED.name) for p, rel in members]
        d.check_household_members(views, on=self.today(), field="household.members")
        new_ids = [p.id for p, _ in members]
        for i, (p, _) in enumerate(members):
            if p.id in old_rows:
                continue
            elsewhere = await m.household_of(s, p.id)
            if elsewhere is not None:
                raise FailedPrecondition(
                    f"{mask_name(p.name)}（{p.id_masked}）已在另一户（households/{elsewhere.household_id}）中，一人只能属于一户；请先从原户移出",
                    reason="PERSON_IN_OTHER_HOUSEHOLD",
                    metadata={"household": f"households/{elsewhere.household_id}", "member_index": str(i)},
                )
        removed = [pid for pid in old_rows if pid not in set(new_ids)]
        added = [pid for pid in new_ids if pid not in old_rows]
        for pid in removed:
            await s.delete(old_rows[pid])
        await s.flush()  # deletes first: a removed person may be re-added elsewhere in this transaction
        for pos, (p, rel) in enumerate(members):
            row = old_rows.get(p.id)
            if row is None:
                s.add(m.HouseholdMember(household_id=h.id, person_id=p.id, relation=rel.name, position=pos))
            else:
                row.relation, row.position = rel.name, pos
        previous_head = h.head_person_id
        h.head_person_id = head_id
        if added or removed or previous_head != head_id:
            bus.emit(s, events_pb2.HouseholdMembersChanged(
                household=f"households/{h.id}", village=region_pb(h.village), head_person=f"persons/{head_id}",
                member_count=len(members), added_persons=[f"persons/{x}" for x in added],
                removed_persons=[f"persons/{x}" for x in removed],
                previous_head_person=f"persons/{previous_head}" if previous_head != head_id else ""))

    def _households_query(self, region: RegionCode, situation: int, as_of: date | None, unpaired: bool) -> Select[Any]:
        q = select(m.Household).where(m.Household.village.like(m.region_prefix(region) + "%"))
        if situation:
            kind = enum_in(d.Situation, pb.SituationKind, "SITUATION_KIND_", situation, "situation", "家庭类型").name
            if as_of is None:
                q = q.where(m.Household.current_situation == kind)
            else:
                # The entry in force on as_of is the latest one effective by then.
                e, later = aliased(m.SituationEntry), aliased(m.SituationEntry)
                q = q.where(exists().where(
                    e.household_id == m.Household.id, e.situation == kind, e.effective_from <= as_of,
                    ~exists().where(later.household_id == e.household_id, later.effective_from > e.effective_from,
                                    later.effective_from <= as_of),
                ))
        if unpaired:
            q = q.where(~exists().where(m.Pairing.household_id == m.Household.id, m.Pairing.end_date.is_(None)))
        return q

    async def list_households(self, req: pb.ListHouseholdsRequest) -> pb.ListHouseholdsResponse:
        region = self._scope(req.region)
        as_of = to_date(req.as_of, "as_of")
        fh = _filter_hash("households", region, req.situation, as_of, req.unpaired)
        size, after = _page(req.page_size, req.page_token, fh)

        async def run(s: AsyncSession) -> pb.ListHouseholdsResponse:
            q = self._households_query(region, req.situation, as_of, req.unpaired)
            rows, token = await _paged(s, q, m.Household.id, size, after, fh)
            return pb.ListHouseholdsResponse(households=[await self.household_pb(s, h) for h in rows], next_page_token=token)

        return await self._read(run)

    async def list_unpaired_families(self, req: pb.ListUnpairedFamiliesRequest) -> pb.ListUnpairedFamiliesResponse:
        region = self._scope(req.region)
        fh = _filter_hash("unpaired", region)
        size, after = _page(req.page_size, req.page_token, fh)

        async def run(s: AsyncSession) -> pb.ListUnpairedFamiliesResponse:
            q = self._households_query(region, 0, None, True).where(
                m.Household.current_situation.in_([d.Situation.SPECIAL_BEREAVED.name, d.Situation.SPECIAL_DISABLED.name]))
            rows, token = await _paged(s, q, m.Household.id, size, after, fh)
            return pb.ListUnpairedFamiliesResponse(households=[await self.household_pb(s, h) for h in rows], next_page_token=token)

        return await self._read(run)

    # -- association members

    def member_pb(self, a: m.AssociationMember) -> pb.AssociationMember:
        region = RegionCode.parse(a.region)
        return pb.AssociationMember(
            name=f"members/{a.id}", person=f"persons/{a.person_id}", association=region_pb(a.region),
            level=int(region.level), member_type=enum_out(pb.MemberType, "MEMBER_TYPE_", d.MemberType[a.member_type]),
            joined_date=from_date(a.joined_on), left_date=from_date(a.left_on), left_reason=a.left_reason,
            create_time=_ts(a.created_at),
        )

    async def create_member(self, req: pb.CreateMemberRequest) -> pb.AssociationMember:
        async def run(s: AsyncSession) -> pb.AssociationMember:
            mem = req.member
            p = await self._person(s, mem.person, "member.person")
            assoc = RegionCode.parse(mem.association.code, field="member.association")
            current_caller().require_region(assoc)
            if not assoc.contains(RegionCode.parse(p.village)):
                raise InvalidArgument.field("member.association", "只能加入本人所在村或其上级乡镇、县、市、省的计生协", reason="ASSOCIATION_NOT_HOME")
            mtype = enum_in(d.MemberType, pb.MemberType, "MEMBER_TYPE_", mem.member_type, "member.member_type", "会员类别")
            joined = to_date(mem.joined_date, "member.joined_date", default=self.today())
            assert joined is not None
            if joined > self.today() or joined < p.birth_date:
                raise InvalidArgument.field("member.joined_date", "入会日期应在出生日期与今天之间", reason="INVALID_JOINED_DATE")
            if p.status != d.PersonStatus.ACTIVE.name:
                raise FailedPrecondition("该人员已故或已迁出，不能入会", reason="PERSON_NOT_ACTIVE")
            if await m.active_membership(s, p.id) is not None:
                raise FailedPrecondition("该人员已是会员，请先办理退会再重新入会", reason="ALREADY_MEMBER")
            a = m.AssociationMember(id=m.new_id(), person_id=p.id, region=assoc.code, member_type=mtype.name,
                                    joined_on=joined, left_reason="", version=1, created_at=m.utcnow())
            s.add(a)
            await s.flush()
            bus.emit(s, events_pb2.MemberJoined(
                member=f"members/{a.id}", person=f"persons/{p.id}", association=region_pb(a.region),
                member_type=enum_out(pb.MemberType, "MEMBER_TYPE_", mtype), joined_date=from_date(joined)))
            return self.member_pb(a)

        return await self._mutate("CreateMember", req, pb.AssociationMember, run)

    async def _member(self, s: AsyncSession, name: str) -> m.AssociationMember:
        a: m.AssociationMember = await self._get(s, m.AssociationMember, parse_name(name, "members"), "会员记录")
        current_caller().require_region(a.region)
        return a

    async def get_member(self, req: pb.GetMemberRequest) -> pb.AssociationMember:
        async def run(s: AsyncSession) -> pb.AssociationMember:
            return self.member_pb(await self._member(s, req.name))

        return await self._read(run)

    async def end_membership(self, req: pb.EndMembershipRequest) -> pb.AssociationMember:
        async def run(s: AsyncSession) -> pb.AssociationMember:
            a = await self._member(s, req.name)
            left = to_date(req.left_date, "left_date", default=self.today())
            assert left is not None
            if left > self.today():
                raise InvalidArgument.field("left_date", "退会日期不能晚于今天", reason="END_IN_FUTURE")
            t = d.check_end(d.Tenure(a.joined_on, a.left_on), left, field="left_date", what="退会日期")
            a.left_on, a.left_reason = t.end, req.reason.strip()[:200]
            a.version += 1
            bus.emit(s, events_pb2.MemberLeft(member=f"members/{a.id}", person=f"persons/{a.person_id}",
                                              association=region_pb(a.region), left_date=from_date(left)))
            await s.flush()
            return self.member_pb(a)

        return await self._mutate("EndMembership", req, pb.AssociationMember, run)

    async def update_member(self, req: pb.UpdateMemberRequest) -> pb.AssociationMember:
        """Type and association (level) of an open membership, or its end
        (``left_date`` → MemberLeft); an ended one takes only ``left_reason``."""
        paths = update_paths(req.update_mask, {"member_type", "association", "left_date", "left_reason"},
                             default={"member_type", "association"}, why={
                                 "person": "会员记录的人员不可修改；请为该人员另行办理入会",
                                 "joined_date": "入会日期不可修改；如登记错误，请退会后重新登记",
                                 "level": "会员层级由所属协会（association）决定，请修改 association"})

        async def run(s: AsyncSession) -> pb.AssociationMember:
            mem = req.member
            a = await self._member(s, mem.name)
            if a.left_on is not None and paths - {"left_reason"}:
                raise FailedPrecondition(f"该会员已于 {a.left_on.isoformat()} 退会，只能修改退会原因", reason="MEMBERSHIP_ENDED")
            changed = False
            if "member_type" in paths:
                mtype = enum_in(d.MemberType, pb.MemberType, "MEMBER_TYPE_", mem.member_type, "member.member_type", "会员类别")
                changed |= mtype.name != a.member_type
                a.member_type = mtype.name
            if "association" in paths:
                assoc = RegionCode.parse(mem.association.code, field="member.association")
                current_caller().require_region(assoc)
                person = await s.get(m.Person, a.person_id)
                assert person is not None
                if not assoc.contains(RegionCode.parse(person.village)):
                    raise InvalidArgument.field("member.association", "只能加入本人所在村或其上级乡镇、县、市、省的计生协", reason="ASSOCIATION_NOT_HOME")
                changed |= assoc.code != a.region
                a.region = assoc.code
            if "left_reason" in paths:
                a.left_reason = mem.left_reason.strip()[:200]
            if changed:
                bus.emit(s, events_pb2.MemberChanged(
                    member=f"members/{a.id}", person=f"persons/{a.person_id}", association=region_pb(a.region),
                    member_type=enum_out(pb.MemberType, "MEMBER_TYPE_", d.MemberType[a.member_type])))
            if "left_date" in paths:
                left = to_date(mem.left_date, "member.left_date", required=True)
                assert left is not None
                if left > self.today():
                    raise InvalidArgument.field("member.left_date", "退会日期不能晚于今天", reason="END_IN_FUTURE")
                a.left_on = d.check_end(d.Tenure(a.joined_on, None), left, field="member.left_date", what="退会日期").end
                bus.emit(s, events_pb2.MemberLeft(member=f"members/{a.id}", person=f"persons/{a.person_id}",
                                                  association=region_pb(a.region), left_date=from_date(left)))
            a.version += 1
            await s.flush()
            return self.member_pb(a)

        return await self._mutate("UpdateMember", req, pb.AssociationMember, run)

    async def list_members(self, req: pb.ListMembersRequest) -> pb.ListMembersResponse:
        region = self._scope(req.region)
        fh = _filter_hash("members", region, req.member_type, req.include_ended)
        size, after = _page(req.page_size, req.page_token, fh)

        async def run(s: AsyncSession) -> pb.ListMembersResponse:
            q = select(m.AssociationMember).where(m.AssociationMember.region.like(m.region_prefix(region) + "%"))
            if req.member_type:
                q = q.where(m.AssociationMember.member_type == enum_in(
                    d.MemberType, pb.MemberType, "MEMBER_TYPE_", req.member_type, "member_type", "会员类别").name)
            if not req.include_ended:
                q = q.where(m.AssociationMember.left_on.is_(None))
            rows, token = await _paged(s, q, m.AssociationMember.id, size, after, fh)
            return pb.ListMembersResponse(members=[self.member_pb(a) for a in rows], next_page_token=token)

        return await self._read(run)

    # -- volunteers and pairings

    def volunteer_pb(self, v: m.Volunteer) -> pb.Volunteer:
        return pb.Volunteer(name=f"volunteers/{v.id}", person=f"persons/{v.person_id}", village=region_pb(v.region),
                            skills=v.skills, active=v.active, create_time=_ts(v.created_at))

    async def create_volunteer(self, req: pb.CreateVolunteerRequest) -> pb.Volunteer:
        async def run(s: AsyncSession) -> pb.Volunteer:
            vol = req.volunteer
            p = await self._person(s, vol.person, "volunteer.person")
            region = RegionCode.parse(vol.village.code or p.village, field="volunteer.village")
            current_caller().require_region(region)
            if p.status != d.PersonStatus.ACTIVE.name:
                raise FailedPrecondition("该人员已故或已迁出，不能登记为志愿者", reason="PERSON_NOT_ACTIVE")
            if (await s.execute(select(m.Volunteer).where(m.Volunteer.person_id == p.id))).first() is not None:
                raise AlreadyExists("该人员已登记为志愿者", reason="VOLUNTEER_ALREADY_EXISTS")
            v = m.Volunteer(id=m.new_id(), person_id=p.id, region=region.code, skills=vol.skills.strip()[:100],
                            active=True, created_at=m.utcnow())
            s.add(v)
            await s.flush()
            return self.volunteer_pb(v)

        return await self._mutate("CreateVolunteer", req, pb.Volunteer, run)

    async def _volunteer(self, s: AsyncSession, name: str, field: str = "name") -> m.Volunteer:
        v: m.Volunteer = await self._get(s, m.Volunteer, parse_name(name, "volunteers", field), "志愿者")
        current_caller().require_region(v.region)
        return v

    async def get_volunteer(self, req: pb.GetVolunteerRequest) -> pb.Volunteer:
        async def run(s: AsyncSession) -> pb.Volunteer:
            return self.volunteer_pb(await self._volunteer(s, req.name))

        return await self._read(run)

    async def list_volunteers(self, req: pb.ListVolunteersRequest) -> pb.ListVolunteersResponse:
        region = self._scope(req.region)
        fh = _filter_hash("volunteers", region)
        size, after = _page(req.page_size, req.page_token, fh)

        async def run(s: AsyncSession) -> pb.ListVolunteersResponse:
            q = select(m.Volunteer).where(m.Volunteer.region.like(m.region_prefix(region) + "%"))
            rows, token = await _paged(s, q, m.Volunteer.id, size, after, fh)
            return pb.ListVolunteersResponse(volunteers=[self.volunteer_pb(v) for v in rows], next_page_token=token)

        return await self._read(run)

    async def update_volunteer(self, req: pb.UpdateVolunteerRequest) -> pb.Volunteer:
        """``active`` and ``skills``. Deactivating a volunteer who still has an
        open pairing would leave a special family without its contact, so it
        is refused until the pairing ends."""
        paths = update_paths(req.update_mask, {"active", "skills"}, default={"active", "skills"}, why={
            "person": "志愿者对应的人员不可修改", "village": "志愿者服务区域不可修改"})

        async def run(s: AsyncSession) -> pb.Volunteer:
            vol = req.volunteer
            v = await self._volunteer(s, vol.name, "volunteer.name")
            if "skills" in paths:
                skills = vol.skills.strip()
                if len(skills) > 100:
                    raise InvalidArgument.field("volunteer.skills", "特长不能超过100个字", reason="SKILLS_TOO_LONG")
                v.skills = skills
            if "active" in paths and vol.active != v.active:
                if not vol.active and await m.active_pairing(s, volunteer_id=v.id) is not None:
                    raise FailedPrecondition("该志愿者还有未结束的结对，请先结束结对再停用", reason="VOLUNTEER_HAS_PAIRING")
                if vol.active:
                    person = await s.get(m.Person, v.person_id)
                    if person is None or person.status != d.PersonStatus.ACTIVE.name:
                        raise FailedPrecondition("该人员已故或已迁出，不能重新启用为志愿者", reason="PERSON_NOT_ACTIVE")
                v.active = vol.active
            await s.flush()
            return self.volunteer_pb(v)

        return await self._mutate("UpdateVolunteer", req, pb.Volunteer, run)

    def pairing_pb(self, p: m.Pairing) -> pb.Pairing:
        return pb.Pairing(name=f"pairings/{p.id}", volunteer=f"volunteers/{p.volunteer_id}", household=f"households/{p.household_id}",
                          kind=enum_out(pb.PairingKind, "PAIRING_KIND_", d.PairingKind[p.kind]), start_date=from_date(p.start_date),
                          end_date=from_date(p.end_date), end_reason=p.end_reason, create_time=_ts(p.created_at))

    async def pair_volunteer(self, req: pb.PairVolunteerRequest) -> pb.Pairing:
        async def run(s: AsyncSession) -> pb.Pairing:
            v = await self._volunteer(s, req.volunteer, "volunteer")
            h = await self._household(s, req.household, "household")
            kind = enum_in(d.PairingKind, pb.PairingKind, "PAIRING_KIND_", req.kind, "kind", "结对类型", d.PairingKind.MEMBER_CONTACT)
            start = to_date(req.start_date, "start_date", default=self.today())
            assert start is not None
            if start > self.today():
                raise InvalidArgument.field("start_date", "结对开始日期不能晚于今天", reason="START_IN_FUTURE")
            history = [d.SituationRecord(d.Situation[e.situation], e.effective_from) for e in await m.situation_history(s, h.id)]
            person = await s.get(m.Person, v.person_id)
            assert person is not None
            d.check_pairing(
                household_situation=d.situation_on(history, self.today()),
                household_active=await m.active_pairing(s, household_id=h.id, kind=kind.name) is not None,
                volunteer_active=await m.active_pairing(s, volunteer_id=v.id) is not None,
                volunteer_deceased=person.status == d.PersonStatus.DECEASED.name,
                volunteer_in_household=(await m.household_of(s, v.person_id) or m.HouseholdMember()).household_id == h.id,
                volunteer_inactive=not v.active,
            )
            p = m.Pairing(id=m.new_id(), volunteer_id=v.id, household_id=h.id, kind=kind.name, start_date=start,
                          end_reason="", created_at=m.utcnow())
            s.add(p)
            await s.flush()
            bus.emit(s, events_pb2.VolunteerPaired(
                pairing=f"pairings/{p.id}", volunteer=f"volunteers/{v.id}", household=f"households/{h.id}",
                village=region_pb(h.village), kind=enum_out(pb.PairingKind, "PAIRING_KIND_", kind), start_date=from_date(start)))
            return self.pairing_pb(p)

        return await self._mutate("PairVolunteer", req, pb.Pairing, run)

    async def end_pairing(self, req: pb.EndPairingRequest) -> pb.Pairing:
        async def run(s: AsyncSession) -> pb.Pairing:
            p: m.Pairing = await self._get(s, m.Pairing, parse_name(req.name, "pairings"), "结对记录")
            h = await self._household(s, f"households/{p.household_id}")
            end = to_date(req.end_date, "end_date", default=self.today())
            assert end is not None
            if end > self.today():
                raise InvalidArgument.field("end_date", "结束日期不能晚于今天", reason="END_IN_FUTURE")
            t = d.check_end(d.Tenure(p.start_date, p.end_date), end)
            p.end_date, p.end_reason = t.end, req.reason.strip()[:200]
            bus.emit(s, events_pb2.VolunteerUnpaired(
                pairing=f"pairings/{p.id}", volunteer=f"volunteers/{p.volunteer_id}", household=f"households/{h.id}",
                village=region_pb(h.village), end_date=from_date(end)))
            await s.flush()
            return self.pairing_pb(p)

        return await self._mutate("EndPairing", req, pb.Pairing, run)

    async def list_pairings(self, req: pb.ListPairingsRequest) -> pb.ListPairingsResponse:
        if not req.volunteer and not req.household:
            raise InvalidArgument.field("volunteer", "请指定志愿者或家庭户（至少一项）", reason="FILTER_REQUIRED")
        fh = _filter_hash("pairings", req.volunteer, req.household, req.include_ended)
        size, after = _page(req.page_size, req.page_token, fh)

        async def run(s: AsyncSession) -> pb.ListPairingsResponse:
            q = select(m.Pairing)
            if req.volunteer:
                q = q.where(m.Pairing.volunteer_id == (await self._volunteer(s, req.volunteer, "volunteer")).id)
            if req.household:
                q = q.where(m.Pairing.household_id == (await self._household(s, req.household, "household")).id)
            if not req.include_ended:
                q = q.where(m.Pairing.end_date.is_(None))
            rows, token = await _paged(s, q, m.Pairing.id, size, after, fh)
            return pb.ListPairingsResponse(pairings=[self.pairing_pb(p) for p in rows], next_page_token=token)

        return await self._read(run)

    # -- sites

    _SIX = ("place", "sign", "rules", "plan", "activities", "management")

    def site_pb(self, x: m.Site) -> pb.Site:
        have = set(x.six_haves.split("、")) if x.six_haves else set()
        six = pb.SixHaves(**{f: item in have for f, item in zip(self._SIX, d.SIX_HAVES)})
        return pb.Site(name=f"sites/{x.id}", display_name=x.name, kind=enum_out(pb.SiteKind, "SITE_KIND_", d.SiteKind[x.kind]),
                       village=region_pb(x.village), address=x.address, six_haves=six, opened_date=from_date(x.opened_on),
                       manager=f"persons/{x.manager_person_id}" if x.manager_person_id else "",
                       create_time=_ts(x.created_at), update_time=_ts(x.updated_at),
                       closed_date=from_date(x.closed_on), closed_reason=x.closed_reason or "")

    def _six_in(self, six: pb.SixHaves) -> list[str]:
        return [item for f, item in zip(self._SIX, d.SIX_HAVES) if getattr(six, f)]

    async def create_site(self, req: pb.CreateSiteRequest) -> pb.Site:
        async def run(s: AsyncSession) -> pb.Site:
            st = req.site
            kind = enum_in(d.SiteKind, pb.SiteKind, "SITE_KIND_", st.kind, "site.kind", "场所类型")
            name, region, addr, six = d.validate_site(kind=kind, name=st.display_name, village=st.village.code,
                                                      address=st.address, six_haves=self._six_in(st.six_haves))
            current_caller().require_region(region)
            opened = to_date(st.opened_date, "site.opened_date", default=self.today())
            manager = (await self._person(s, st.manager, "site.manager")).id if st.manager else None
            x = m.Site(id=m.new_id(), kind=kind.name, name=name, village=region.code, address=addr, six_haves="、".join(six.ordered()),
                       opened_on=opened, manager_person_id=manager, version=1, created_at=m.utcnow(), updated_at=m.utcnow())
            s.add(x)
            await s.flush()
            bus.emit(s, events_pb2.SiteOpened(site=f"sites/{x.id}", kind=enum_out(pb.SiteKind, "SITE_KIND_", kind),
                                              village=region_pb(x.village), opened_date=from_date(opened)))
            return self.site_pb(x)

        return await self._mutate("CreateSite", req, pb.Site, run)

    async def _site(self, s: AsyncSession, name: str, field: str = "name") -> m.Site:
        x: m.Site = await self._get(s, m.Site, parse_name(name, "sites", field), "场所")
        current_caller().require_region(x.village)
        return x

    async def get_site(self, req: pb.GetSiteRequest) -> pb.Site:
        async def run(s: AsyncSession) -> pb.Site:
            return self.site_pb(await self._site(s, req.name))

        return await self._read(run)

    async def list_sites(self, req: pb.ListSitesRequest) -> pb.ListSitesResponse:
        region = self._scope(req.region)
        fh = _filter_hash("sites", region, req.kind, req.include_closed)
        size, after = _page(req.page_size, req.page_token, fh)

        async def run(s: AsyncSession) -> pb.ListSitesResponse:
            q = select(m.Site).where(m.Site.village.like(m.region_prefix(region) + "%"))
            if req.kind:
                q = q.where(m.Site.kind == enum_in(d.SiteKind, pb.SiteKind, "SITE_KIND_", req.kind, "kind", "场所类型").name)
            if not req.include_closed:
                q = q.where(m.Site.closed_on.is_(None))
            rows, token = await _paged(s, q, m.Site.id, size, after, fh)
            return pb.ListSitesResponse(sites=[self.site_pb(x) for x in rows], next_page_token=token)

        return await self._read(run)

    async def update_site(self, req: pb.UpdateSiteRequest) -> pb.Site:
        settable = {"display_name", "address", "six_haves", "manager"}
        paths = update_paths(req.update_mask, settable, default=settable, why={
            "kind": "场所类型不可修改；如改建为其他类型，请摘牌后重新登记",
            "village": "场所所在村不可修改；如搬迁到其他村，请摘牌后重新登记",
            "opened_date": "挂牌日期不可修改", "closed_date": "摘牌请用“摘牌”操作（CloseSite）"})

        async def run(s: AsyncSession) -> pb.Site:
            x = await self._site(s, req.site.name, "site.name")
            self._require_open(x)
            st = req.site
            merged = {
                "name": st.display_name if "display_name" in paths else x.name,
                "address": st.address if "address" in paths else x.address,
                "six": self._six_in(st.six_haves) if "six_haves" in paths else (x.six_haves.split("、") if x.six_haves else []),
            }
            name, _, addr, six = d.validate_site(kind=d.SiteKind[x.kind], name=merged["name"], village=x.village,
                                                 address=merged["address"], six_haves=merged["six"])
            x.name, x.address, x.six_haves = name, addr, "、".join(six.ordered())
            if "manager" in paths:
                x.manager_person_id = (await self._person(s, st.manager, "site.manager")).id if st.manager else None
            x.version += 1
            x.updated_at = m.utcnow()
            await s.flush()
            return self.site_pb(x)

        return await self._mutate("UpdateSite", req, pb.Site, run)

    def _require_open(self, x: m.Site) -> None:
        if x.closed_on is not None:
            raise FailedPrecondition(f"该场所已于 {x.closed_on.isoformat()} 摘牌，不能再修改", reason="SITE_CLOSED")

    async def close_site(self, req: pb.CloseSiteRequest) -> pb.Site:
        """摘牌: the site stops on ``closed_date`` (default today); kept for history."""
        async def run(s: AsyncSession) -> pb.Site:
            x = await self._site(s, req.name)
            self._require_open(x)
            closed = to_date(req.closed_date, "closed_date", default=self.today())
            assert closed is not None
            if closed > self.today():
                raise InvalidArgument.field("closed_date", "摘牌日期不能晚于今天", reason="END_IN_FUTURE")
            if closed < x.opened_on:
                raise InvalidArgument.field("closed_date", f"摘牌日期不能早于挂牌日期 {x.opened_on.isoformat()}", reason="END_BEFORE_START")
            x.closed_on, x.closed_reason = closed, req.reason.strip()[:200]
            x.version += 1
            x.updated_at = m.utcnow()
            bus.emit(s, events_pb2.SiteClosed(site=f"sites/{x.id}", kind=enum_out(pb.SiteKind, "SITE_KIND_", d.SiteKind[x.kind]),
                                              village=region_pb(x.village), closed_date=from_date(closed)))
            await s.flush()
            return self.site_pb(x)

        return await self._mutate("CloseSite", req, pb.Site, run)





# ---------------------------------------------------------------- roster import / export


@dataclass
class ImportReport:
    """Outcome of a roster import. ``errors`` maps a row's position (0-based,
    header excluded) to the problems found; when it is non-empty nothing was
    written."""

    rows: list[dict[str, str]]
    errors: dict[int, list[str]] = field(default_factory=dict)
    persons_created: int = 0
    households_created: int = 0
    members_added: int = 0
    situations_recorded: int = 0
    unchanged: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def error_rows(self) -> Iterator[dict[str, str]]:
        """Every original row, with 错误说明 filled for the bad ones (row numbers as in Excel)."""
        for i, r in enumerate(self.rows):
            yield {**r, roster.ERROR_COLUMN: "；".join(self.errors.get(i, []))}


@dataclass
class _Row:
    draft: d.PersonDraft
    digest: str
    phone_digest: str | None
    head: str | None  # plaintext 身份证 of the head, normalised
    relation: d.Relation | None
    situation: d.SituationRecord | None


def _messages(e: InvalidArgument) -> list[str]:
    return [v.description for v in e.violations] or [e.message]


#: Rows validated and written per step while the file is read.
_CHUNK = 2000
#: The per-row columns of an imported person (the rest are the same for all).
_PERSON_COLUMNS = ("id", "name", "id_cipher", "id_bidx", "id_masked", "birth_date", "sex", "phone_cipher", "phone_bidx",
                   "village", "hukou")
#: SQLite page cache for an import, in KiB. The default 2 MiB holds a few
#: thousand index pages: inserting 100k persons with random keys (UUID, blind
#: index) and checking foreign keys against them would then evict and re-read
#: pages on every row.
_IMPORT_CACHE_KIB = 256 * 1024


@asynccontextmanager
async def _import_cache(s: AsyncSession) -> AsyncIterator[None]:
    """A large page cache on this connection for the import, back to what it was afterwards."""
    if s.bind.dialect.name != "sqlite":
        yield
        return
    before = (await s.execute(text("PRAGMA cache_size"))).scalar_one()
    await s.execute(text(f"PRAGMA cache_size=-{_IMPORT_CACHE_KIB}"))
    try:
        yield
    except BaseException:
        # The transaction may be unusable now; the original error matters more
        # than restoring the cache size of a pooled connection.
        with suppress(Exception):
            await s.execute(text(f"PRAGMA cache_size={int(before)}"))
        raise
    await s.execute(text(f"PRAGMA cache_size={int(before)}"))


class RosterImport:
    """All-or-nothing streaming import of a roster (see :meth:`MembersService.import_roster`)."""

    def __init__(self, svc: MembersService, caller: Caller) -> None:
        self.svc = svc
        self.caller = caller
        self.today = svc.today()
        # 户主身份证号 repeats on every member's row: parse each number once.
        self._heads: dict[str, str] = {}
        # The previous chunk's insert, running while the next chunk is validated.
        self._pending: asyncio.Task[None] | None = None

    def parse(self, i: int, r: dict[str, str], report: ImportReport) -> _Row | None:
        errs: list[str] = []
        draft = None
        try:
            draft = d.validate_person(
                name=r.get("姓名", ""), id_number=r.get("身份证号", ""), phone=r.get("联系电话", ""),
                village=r.get("所属村", ""), hukou=r.get("户籍类型", ""), today=self.today,
            )
        except InvalidArgument as e:
            errs += _messages(e)
        head = relation = situation = None
        head_text = r.get("户主身份证号", "").strip()
        if head_text:
            head = self._heads.get(head_text)
            if head is None and draft is not None and head_text == r.get("身份证号", "").strip():
                head = draft.id_number.value  # the head's own row: already checked
            if head is None:
                try:
                    head = IdNumber.parse(head_text, field="户主身份证号", today=self.today).value
                except InvalidArgument as e:
                    errs += ["户主身份证号：" + m_ for m_ in _messages(e)]
            if head is not None:
                if len(self._heads) > 10_000:
                    self._heads.clear()
                self._heads[head_text] = head
            try:
                relation = d.parse_enum(d.Relation, r.get("与户主关系", ""), field="与户主关系", what="与户主关系")  # type: ignore[assignment]
            except InvalidArgument as e:
                errs += _messages(e)
        elif r.get("与户主关系", "").strip():
            errs.append("填写了与户主关系，但没有填写户主身份证号")
        kind_text = r.get("家庭类型", "").strip()
        if kind_text:
            try:
                kind = d.Situation.parse(kind_text, field="家庭类型")
                when_text = r.get("家庭类型生效日期", "").strip()
                if not when_text:
                    raise InvalidArgument.field("家庭类型生效日期", "填写家庭类型时须填写生效日期，如 2022-07-01")
                try:
                    when = date.fromisoformat(when_text.replace("/", "-")[:10])
                except ValueError:
                    raise InvalidArgument.field("家庭类型生效日期", f"生效日期“{when_text}”格式不对，应如 2022-07-01") from None
                grade_text = r.get("伤残等级", "").strip()
                grade = int(grade_text) if grade_text.isdigit() else None
                if grade_text and grade is None:
                    raise InvalidArgument.field("伤残等级", "伤残等级应为 1、2 或 3")
                situation = d.validate_situation(
                    d.SituationRecord(kind, when, grade, r.get("光荣证编号", "").strip()), today=self.today, field="家庭类型")
                if relation is not d.Relation.HEAD:
                    errs.append("家庭类型只在户主那一行填写")
            except InvalidArgument as e:
                errs += _messages(e)
        if draft is not None:
            if not self.caller.in_region(draft.village):
                errs.append(f"所属村 {draft.village.code} 不在您的辖区（{self.caller.region.name or self.caller.region.short}）内")
            if head is not None and relation is d.Relation.HEAD and head != draft.id_number.value:
                errs.append("与户主关系为“户主”的行，户主身份证号须是本人的号码")
            if head is not None and relation is not d.Relation.HEAD and head == draft.id_number.value:
                errs.append("户主身份证号是本人号码时，与户主关系应为“户主”")
        if errs:
            report.errors[i] = errs
            return None
        assert draft is not None
        return _Row(draft, self.svc.bidx.digest(draft.id_number.value),
                    self.svc.bidx.digest(draft.phone) if draft.phone else None, head, relation, situation)

    async def run(self, rows: Iterable[dict[str, str]], progress: Callable[[int], None] | None) -> ImportReport:
        # One transaction for the whole file. Persons are validated, checked
        # against the database and inserted chunk by chunk while the file is
        # still being read, so the write overlaps the xlsx parsing (done in a
        # child process); after the first bad row nothing more is written, the
        # remaining rows are still validated for the error workbook, and the
        # transaction is rolled back: all or nothing.
        report = ImportReport(rows=[])
        with fewer_collections():
            return await self._transaction(report, rows, progress)

    async def _transaction(self, report: ImportReport, rows: Iterable[dict[str, str]],
                           progress: Callable[[int], None] | None) -> ImportReport:
        async with self.svc.sessions() as s, s.begin():
            async with _import_cache(s):
                try:
                    ok = await self._run(s, report, rows, progress)
                finally:
                    await self._settle()
            if not ok:
                report.persons_created = report.unchanged = 0
                await s.rollback()
                return report
        self.svc.on_commit()
        return report

    async def _run(self, s: AsyncSession, report: ImportReport, rows: Iterable[dict[str, str]],
                   progress: Callable[[int], None] | None) -> bool:
        """Validate and write; False (and report.errors) when the file has errors."""
        good: list[tuple[int, _Row]] = []
        first_row: dict[str, int] = {}
        existing: dict[str, m.Person] = {}
        memberships: dict[str, tuple[str, str]] = {}
        ids: dict[str, str] = {}  # plaintext 身份证 → person id (only in memory, for linking)
        chunk: list[tuple[int, _Row]] = []
        for i, r in enumerate(rows):
            report.rows.append(r)
            row = self.parse(i, r, report)
            key = "".join(r.get("身份证号", "").split()).upper()
            prev = first_row.setdefault(key, i) if key else i
            if prev != i:
                report.errors.setdefault(i, []).append(f"身份证号与第{prev + 2}行重复")
            elif row is not None:
                good.append((i, row))
                chunk.append((i, row))
                if len(chunk) >= _CHUNK:
                    await self._persons(s, report, chunk, existing, memberships, ids)
                    chunk = []
            if progress and i % 1000 == 999:
                progress(1000)
            if self._pending is not None and i % 64 == 0:
                # Let the insert task hand its next statement to the database
                # thread, which then runs alongside this validation.
                await asyncio.sleep(0)
        await self._persons(s, report, chunk, existing, memberships, ids)
        await self._settle()
        if progress:
            progress(len(report.rows) % 1000)
        by_id = {r.draft.id_number.value: (i, r) for i, r in good}
        groups: dict[str, list[tuple[int, _Row]]] = {}
        for i, r in good:
            if r.head:
                groups.setdefault(r.head, []).append((i, r))
        # Heads named but not in the file must already be registered.
        outside = [self.svc.bidx.digest(h) for h in groups if h not in by_id]
        found = await m.persons_by_bidx(s, outside)
        existing.update(found)
        memberships.update(await self._memberships(s, [p.id for p in found.values()]))
        # -- cross-row and database checks of households
        for head, members in groups.items():
            head_row = by_id.get(head)
            head_db = existing.get(head_row[1].digest if head_row else self.svc.bidx.digest(head))
            hh_db = memberships.get(head_db.id) if head_db else None
            if head_row is None and hh_db is None:
                for i, _ in members:
                    report.errors.setdefault(i, []).append("户主身份证号在本表和系统中都找不到对应的户主，请先登记户主")
                continue
            heads = [(i, r) for i, r in members if r.relation is d.Relation.HEAD]
            if head_row is not None and not heads:
                for i, _ in members:
                    report.errors.setdefault(i, []).append("户主本人那一行的与户主关系应填“户主”")
                continue
            try:
                views = [d.HouseholdMemberView(r.draft.id_number.value, r.relation or d.Relation.OTHER, r.draft.birth_date)
                         for _, r in members]
                if hh_db is None:
                    d.check_household_members(views, on=self.today, field="家庭")
            except InvalidArgument as e:
                for i, _ in (heads or members):
                    report.errors.setdefault(i, []).extend(_messages(e))
            rec = head_row[1].situation if head_row else None
            if hh_db is not None and rec is not None:
                hist = await m.situation_history(s, hh_db[0])
                last = hist[-1] if hist else None
                if last is not None and (last.situation, last.disability_grade or 0, last.honor_certificate) != (
                        rec.situation.name, rec.disability_grade or 0, rec.honor_certificate) \
                        and rec.effective_from <= last.effective_from:
                    report.errors.setdefault(head_row[0], []).append(
                        f"家庭类型与系统中不同，但生效日期不晚于系统中最近一次记录（{last.effective_from.isoformat()}）；"
                        "历史记录不可改写，请填写新的变更日期")
            for i, r in members:
                p = existing.get(r.digest)
                mine = memberships.get(p.id) if p else None
                if mine is not None and (hh_db is None or mine[0] != hh_db[0]):
                    report.errors.setdefault(i, []).append(f"此人已在另一户（households/{mine[0]}）中，一人只能属于一户")
                elif mine is not None and mine[1] != (r.relation or d.Relation.OTHER).name:
                    report.errors.setdefault(i, []).append("与户主关系与系统中已登记的不一致")
        if report.errors:
            return False
        await self._households(s, report, groups, existing, memberships, ids)
        return True

    async def _persons(self, s: AsyncSession, report: ImportReport, chunk: list[tuple[int, _Row]], existing: dict[str, m.Person],
                       memberships: dict[str, tuple[str, str]], ids: dict[str, str]) -> None:
        """Check a chunk of valid rows against the registered persons (one
        ``IN`` query) and, while the file has no error yet, insert the new
        ones with their PersonRegistered events."""
        if not chunk:
            return
        await self._settle()
        found = await m.persons_by_bidx(s, [r.digest for _, r in chunk])
        if found:
            existing.update(found)
            memberships.update(await self._memberships(s, [p.id for p in found.values()]))
        encrypt, aad = self.svc.cipher.encrypt, self.svc._aad
        person_rows: list[tuple[Any, ...]] = []
        events: list[Message] = []
        for i, r in chunk:
            p = found.get(r.digest)
            if p is not None:
                if (p.name, p.village, p.phone_bidx, p.hukou) != (r.draft.name, r.draft.village.code, r.phone_digest, r.draft.hukou.name):
                    report.errors.setdefault(i, []).append(
                        f"此身份证号已登记为 {mask_name(p.name)}（persons/{p.id}），但姓名、所属村、电话或户籍类型与系统不一致；请核对，如需更正请用人员修改功能")
                ids[r.draft.id_number.value] = p.id
                report.unchanged += 1
                continue
            if report.errors:
                continue  # the import will be rolled back: only validate from here on
            pid = m.new_id()
            draft = r.draft
            idn = draft.id_number
            v = idn.value
            ids[v] = pid
            village = draft.village.code
            person_rows.append((
                pid, draft.name, encrypt(v, aad=aad(pid, "id_number")), r.digest, idn.masked, idn.birth_date,
                draft.sex, encrypt(draft.phone, aad=aad(pid, "phone")) if draft.phone else None,
                r.phone_digest, village, draft.hukou.name,
            ))
            events.append(events_pb2.PersonRegistered(person=f"persons/{pid}", village=region_pb(village)))
        if person_rows:
            report.persons_created += len(person_rows)
            self._pending = asyncio.create_task(self._insert_persons(s, person_rows, events))
            await asyncio.sleep(0)

    async def _insert_persons(self, s: AsyncSession, person_rows: list[tuple[Any, ...]], events: list[Message]) -> None:
        now = m.utcnow()
        await m.insert_rows(s, m.Person.__table__, _PERSON_COLUMNS, person_rows, const={
            "card_cipher": None, "status": d.PersonStatus.ACTIVE.name, "death_date": None, "version": 1,
            "created_at": now, "updated_at": now})
        await bus.emit_many(s, events)

    async def _settle(self) -> None:
        """Wait for the chunk insert in flight (the session allows one operation at a time)."""
        task, self._pending = self._pending, None
        if task is not None:
            await task

    async def _memberships(self, s: AsyncSession, person_ids: list[str]) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        for k in range(0, len(person_ids), 900):
            q = select(m.HouseholdMember).where(m.HouseholdMember.person_id.in_(person_ids[k:k + 900]))
            for hm in (await s.execute(q)).scalars():
                out[hm.person_id] = (hm.household_id, hm.relation)
        return out

    async def _households(self, s: AsyncSession, report: ImportReport, groups: dict[str, list[tuple[int, _Row]]],
                          existing: dict[str, m.Person], memberships: dict[str, tuple[str, str]], ids: dict[str, str]) -> None:
        """Households, members and situations of a fully valid file (persons are already in)."""
        svc, now = self.svc, m.utcnow()
        events: list[Message] = []
        # [id, head, village, current situation]: the situation is set once the head's row is read.
        hh_rows: list[list[Any]] = []
        member_rows: list[tuple[str, str, str, int]] = []
        situation_rows: list[tuple[str, str, date, int | None, str]] = []
        hh_updates: list[tuple[str, str]] = []
        for head, members in groups.items():
            head_pid = ids.get(head) or existing[svc.bidx.digest(head)].id
            known = memberships.get(head_pid)
            head_row = next((r for _, r in members if r.relation is d.Relation.HEAD), None)
            if known is None:
                hid = m.new_id()
                village = head_row.draft.village.code if head_row else members[0][1].draft.village.code
                hh_rows.append([hid, head_pid, village, d.Situation.NONE.name])
                events.append(events_pb2.HouseholdRegistered(household=f"households/{hid}", village=region_pb(village),
                                                             head_person=f"persons/{head_pid}", member_count=len(members)))
                report.households_created += 1
                new_row: list[Any] | None = hh_rows[-1]
                current: d.SituationRecord | None = None
                village_of = village
            else:
                hid, new_row = known[0], None
                hh = await s.get(m.Household, hid)
                assert hh is not None
                village_of = hh.village
                hist = await m.situation_history(s, hid)
                current = (d.SituationRecord(d.Situation[hist[-1].situation], hist[-1].effective_from, hist[-1].disability_grade,
                                             hist[-1].honor_certificate) if hist else None)
            pos = 0
            for _, r in members:
                pid = ids[r.draft.id_number.value]
                if pid in memberships:
                    continue
                member_rows.append((hid, pid, (r.relation or d.Relation.OTHER).name, pos))
                pos += 1
                if known is not None:
                    report.members_added += 1
            rec = head_row.situation if head_row else None
            if rec is not None and rec.situation is not d.Situation.NONE:
                same = current is not None and (current.situation, current.disability_grade or 0, current.honor_certificate) == (
                    rec.situation, rec.disability_grade or 0, rec.honor_certificate)
                if not same:
                    if current is not None and rec.effective_from <= current.effective_from:
                        raise FailedPrecondition(
                            f"户主 {head_row.draft.id_number.masked if head_row else ''} 的家庭类型生效日期须晚于系统中最近一次记录"
                            f"（{current.effective_from.isoformat()}）", reason="SITUATION_NOT_AFTER_LATEST")
                    situation_rows.append((hid, rec.situation.name, rec.effective_from, rec.disability_grade, rec.honor_certificate))
                    if new_row is not None:
                        new_row[3] = rec.situation.name
                    else:
                        hh_updates.append((hid, rec.situation.name))
                    events.append(events_pb2.HouseholdSituationChanged(
                        household=f"households/{hid}", village=region_pb(village_of),
                        kind=enum_out(pb.SituationKind, "SITUATION_KIND_", rec.situation), effective_from=from_date(rec.effective_from),
                        disability_grade=rec.disability_grade or 0, head_person=f"persons/{head_pid}", member_count=len(members)))
                    report.situations_recorded += 1
        await m.insert_rows(s, m.Household.__table__, ("id", "head_person_id", "village", "current_situation"),
                            [tuple(r) for r in hh_rows], const={"address": "", "version": 1, "created_at": now, "updated_at": now})
        await m.insert_rows(s, m.HouseholdMember.__table__, ("household_id", "person_id", "relation", "position"), member_rows)
        await m.insert_rows(s, m.SituationEntry.__table__,
                            ("household_id", "situation", "effective_from", "disability_grade", "honor_certificate"), situation_rows,
                            const={"note": "花名册导入", "recorded_by": self.caller.subject, "recorded_at": now})
        for hid, kind in hh_updates:
            await s.execute(m.Household.__table__.update().where(m.Household.id == hid).values(current_situation=kind, updated_at=now))
        await bus.emit_many(s, events)
        audit.info("roster.import", extra={"actor": self.caller.subject, "persons": report.persons_created,
                                           "households": report.households_created, "rows": len(report.rows)})


async def import_roster(svc: MembersService, rows: Iterable[dict[str, str]], *, progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import roster rows as the current caller: validate every row (fields,
    duplicates within the file, households, the caller's region, agreement
    with what is already registered); if any row is wrong, write nothing and
    return the errors; else write everything in one transaction. Rows that
    match what is registered are left alone, so re-importing a file changes
    nothing."""
    return await RosterImport(svc, current_caller()).run(rows, progress)


async def export_roster(svc: MembersService, region: RegionCode) -> list[dict[str, str]]:
    """All persons in ``region`` as roster rows (same columns as import).
    身份证 numbers and phones are plaintext only for callers who may see
    personal data (then the file re-imports as is); otherwise masked."""
    caller = current_caller()
    caller.require_region(region)
    full = caller.may_see_pii
    prefix = m.region_prefix(region)
    async with svc.sessions() as s:
        q = (select(m.Person, m.HouseholdMember, m.Household)
             .outerjoin(m.HouseholdMember, m.HouseholdMember.person_id == m.Person.id)
             .outerjoin(m.Household, m.Household.id == m.HouseholdMember.household_id)
             .where(m.Person.village.like(prefix + "%"))
             .order_by(m.Household.id, m.HouseholdMember.position, m.Person.id))
        result = (await s.execute(q)).all()
        heads = {h.head_person_id for _, _, h in result if h is not None}
        head_people = {p.id: p for p in (await s.execute(select(m.Person).where(m.Person.id.in_(heads)))).scalars()} if heads else {}
        latest: dict[str, m.SituationEntry] = {}
        hids = list({h.id for _, _, h in result if h is not None})
        for k in range(0, len(hids), 900):
            for e in (await s.execute(select(m.SituationEntry).where(m.SituationEntry.household_id.in_(hids[k:k + 900]))
                                      .order_by(m.SituationEntry.effective_from))).scalars():
                latest[e.household_id] = e

    def ident(p: m.Person) -> str:
        return svc.cipher.decrypt(p.id_cipher, aad=svc._aad(p.id, "id_number")) if full else p.id_masked

    rows: list[dict[str, str]] = []
    for p, hm, h in result:
        phone = svc.cipher.decrypt(p.phone_cipher, aad=svc._aad(p.id, "phone")) if p.phone_cipher else ""
        row = {"姓名": p.name if full else mask_name(p.name), "身份证号": ident(p), "联系电话": phone if full else (mask_phone(phone) if phone else ""),
               "所属村": p.village, "户籍类型": d.HukouType[p.hukou].value}
        if hm is not None and h is not None:
            row["户主身份证号"] = ident(head_people[h.head_person_id])
            row["与户主关系"] = d.Relation[hm.relation].value
            e = latest.get(h.id)
            if hm.relation == d.Relation.HEAD.name and e is not None and e.situation != d.Situation.NONE.name:
                row.update({"家庭类型": d.Situation[e.situation].value, "家庭类型生效日期": e.effective_from.isoformat(),
                            "伤残等级": str(e.disability_grade or ""), "光荣证编号": e.honor_certificate})
        rows.append(row)
    audit.info("roster.export", extra={"actor": caller.subject, "region": region.code, "rows": len(rows), "plaintext": full})
    return rows


__all__ = ["ImportReport", "MembersService", "SERVICE_NAME", "export_roster", "import_roster", "parse_name", "to_date", "from_date"]
