"""Persons use cases: register, read (masked or, for callers holding
``members.pii.read``, in full — audited), look up by 身份证 through the blind
index, list, change; batch reads for other services (payees for a bank file,
masked persons for a 公示 list, with the facts members owns: sex, birth date,
户籍, status and household); record a death (published once, as
PersonDied); and what the other contexts need of a person.

Personal data: 身份证 number, phone and 一卡通 card are stored only as
AES-GCM ciphertext bound to the row (``persons/{id}/id_number`` as AAD);
the 身份证 number and phone also have a keyed blind index. Only this module
encrypts or decrypts them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from sqlalchemy import FromClause, Select, bindparam, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from jsx.members.v1 import members_pb2 as pb
from jsx_members.adapters import bus, db
from jsx_members.persons import wire
from jsx_members.persons.domain import (
    DeathChange,
    HukouType,
    NewPerson,
    NewRosterPerson,
    PersonDraft,
    PersonStatus,
    PersonSummary,
    PersonUpdate,
    RegisteredPerson,
    RosterIdentity,
    check_death,
    check_life_status,
    check_status_change,
    death_change,
    normalize_card,
    normalize_name,
    normalize_phone,
    parse_village,
    validate_person,
)
from jsx_members.persons.tables import PersonRow
from jsxcore.auth import Caller
from jsxcore.db import read
from jsxcore.errors import AlreadyExists, ErrorCollector, InvalidArgument, NotFound, PermissionDenied
from jsxcore.paging import Page
from jsxcore.pii import BlindIndex, FieldCipher, mask_name, mask_phone
from jsxcore.usecase import Idem, mutate
from jsxcore.values import IdNumber, RegionCode, RegionLevel

audit = logging.getLogger("jsx.audit")

#: Most persons one batch call may name (AIP-231 asks for a documented cap).
MAX_BATCH = 1000
#: Persons named in one error message; the rest are counted.
_LIST_IN_MESSAGE = 20
#: The per-row columns of a person registered by a roster import (the rest are the same for all).
_IMPORT_COLUMNS = (
    "id",
    "name",
    "id_cipher",
    "id_bidx",
    "id_masked",
    "birth_date",
    "sex",
    "phone_cipher",
    "phone_bidx",
    "village",
    "hukou",
    "card_cipher",
)

#: A person's household and relation to its head (a Relation name), or (None, None).
Household = tuple[str | None, str | None]
_NO_HOUSEHOLD: Household = (None, None)


class MembershipTable(Protocol):
    """Where persons belong (the households context answers, so that persons
    needs neither its service nor its rows)."""

    def memberships(self) -> FromClause:
        """A selectable with columns ``person_id``, ``household_id`` and ``relation`` (a Relation name)."""
        ...


def _listing(names: Sequence[str]) -> str:
    shown = "、".join(names[:_LIST_IN_MESSAGE])
    return shown + (f" 等 {len(names)} 人" if len(names) > _LIST_IN_MESSAGE else "")


@dataclass(frozen=True)
class PreparedPersons:
    """New persons of a roster chunk, encrypted and with their events, ready to insert."""

    rows: list[tuple[Any, ...]]
    events: list[Any]


class PersonsService:
    """Use cases of the persons context. ``today`` is injectable for tests."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cipher: FieldCipher,
        blind_index: BlindIndex,
        *,
        households: MembershipTable | None = None,
        notify: Callable[[], None] | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.sessions = sessions
        self.cipher = cipher
        self.bidx = blind_index
        self.notify = notify
        self.today = today
        self._members = households.memberships() if households is not None else None
        persons = db.table_of(PersonRow)
        #: GetPerson's row read: a Core select (the ORM's identity map and
        #: instance building cost ~100 µs a call here, the query itself ~35 µs),
        #: with the person's household joined in.
        self._person_by_id = self._with_household(select(persons), persons.c.id).where(persons.c.id == bindparam("pid"))

    # ---------------------------------------------------------------- households (read through the households context)

    def _with_household(self, q: Select[Any], person_id: Any) -> Select[Any]:
        """``q`` with the person's ``household_id`` and ``household_relation`` added (NULL when in none)."""
        m = self._members
        if m is None:
            return q.add_columns(null().label("household_id"), null().label("household_relation"))
        return q.outerjoin(m, m.c.person_id == person_id).add_columns(
            m.c.household_id.label("household_id"), m.c.relation.label("household_relation")
        )

    async def _household_of(self, s: AsyncSession, person_id: str) -> Household:
        m = self._members
        if m is None:
            return _NO_HOUSEHOLD
        found = (await s.execute(select(m.c.household_id, m.c.relation).where(m.c.person_id == person_id))).first()
        return (found[0], found[1]) if found is not None else _NO_HOUSEHOLD

    # ---------------------------------------------------------------- personal data

    @staticmethod
    def _aad(person_id: str, what: str) -> bytes:
        return f"persons/{person_id}/{what}".encode()

    def digest(self, value: str) -> str:
        """The blind-index digest of a normalised 身份证 number or phone."""
        return self.bidx.digest(value)

    def card_cipher(self, person_id: str, card: str) -> bytes | None:
        """A 一卡通 number checked and encrypted for ``persons/{person_id}`` (None when empty)."""
        c = normalize_card(card)
        return self.cipher.encrypt(c, aad=self._aad(person_id, "card")) if c else None

    def _phone(self, p: Any) -> str:
        return self.cipher.decrypt(p.phone_cipher, aad=self._aad(p.id, "phone")) if p.phone_cipher else ""

    def _card(self, p: Any) -> str:
        return self.cipher.decrypt(p.card_cipher, aad=self._aad(p.id, "card")) if p.card_cipher else ""

    def present(self, p: Any, *, full: bool, caller: Caller, household: Household = _NO_HOUSEHOLD) -> pb.Person:
        """The response for a person (a row or a Core row of the persons table)
        in ``household`` (id, relation name). Phone and card are decrypted to
        mask them: masks are not stored, so a key rotation or a masking rule
        change needs no data migration. Plaintext only when ``full`` is asked
        and the caller may see personal data; every such read is audited (who,
        which record — never the values)."""
        hid, relation = household
        if full and caller.may_see_pii:
            out = wire.person(
                p,
                phone=self._phone(p),
                card=self._card(p),
                id_number=self.cipher.decrypt(p.id_cipher, aad=self._aad(p.id, "id_number")),
                household=hid,
                relation=relation,
            )
            audit.info("pii.read", extra={"actor": caller.subject, "resource": out.name})
            return out
        return wire.person(p, phone=self._phone(p), card=self._card(p), household=hid, relation=relation)

    async def view(self, s: AsyncSession, person_id: str, *, caller: Caller) -> pb.Person:
        """The masked response for a person in ``s``'s transaction (for other contexts' use cases)."""
        row = await self._row(s, person_id, None)
        return self.present(row, full=False, caller=caller, household=await self._household_of(s, person_id))

    def _fill(self, row: PersonRow, draft: PersonDraft, card: str) -> None:
        row.name = draft.name
        row.id_cipher = self.cipher.encrypt(draft.id_number.value, aad=self._aad(row.id, "id_number"))
        row.id_bidx = self.bidx.digest(draft.id_number.value)
        row.id_masked = draft.id_number.masked
        row.birth_date = draft.birth_date
        row.sex = draft.sex
        self._set_phone(row, draft.phone)
        row.card_cipher = self.card_cipher(row.id, card)
        row.village = draft.village.code
        row.hukou = draft.hukou.name
        row.status = draft.status.name
        row.death_date = draft.death_date

    def _set_phone(self, row: PersonRow, phone: str | None) -> None:
        row.phone_cipher = self.cipher.encrypt(phone, aad=self._aad(row.id, "phone")) if phone else None
        row.phone_bidx = self.bidx.digest(phone) if phone else None

    async def _by_bidx(self, s: AsyncSession, digest: str) -> PersonRow | None:
        return (await s.execute(select(PersonRow).where(PersonRow.id_bidx == digest))).scalar_one_or_none()

    async def _refuse_duplicate(self, s: AsyncSession, idn: IdNumber) -> None:
        existing = await self._by_bidx(s, self.bidx.digest(idn.value))
        if existing is not None:
            who = f"{mask_name(existing.name)}（persons/{existing.id}）"
            raise AlreadyExists(
                f"身份证号 {existing.id_masked} 已登记为 {who}，请勿重复登记",
                reason="PERSON_ALREADY_EXISTS",
                metadata={"existing": f"persons/{existing.id}", "id_number_masked": existing.id_masked},
            )

    # ---------------------------------------------------------------- use cases

    async def _register(self, s: AsyncSession, new: NewPerson, *, caller: Caller, prefix: str) -> PersonRow:
        draft = validate_person(
            name=new.name,
            id_number=new.id_number,
            phone=new.phone,
            village=new.village,
            hukou=new.hukou.value,
            death_date=new.death_date,
            today=self.today(),
            prefix=prefix,
        )
        caller.require_region(draft.village)
        await self._refuse_duplicate(s, draft.id_number)
        row = PersonRow(id=db.new_id(), version=1, created_at=db.utcnow(), updated_at=db.utcnow())
        try:
            self._fill(row, draft, new.card_number)
        except InvalidArgument as e:  # the card: named under the request's prefix
            raise InvalidArgument.field(prefix + "card_number", e.violations[0].description, reason=e.reason) from None
        s.add(row)
        await s.flush()
        bus.emit(s, wire.registered(row.id, row.village))
        return row

    async def create_person(self, new: NewPerson, *, caller: Caller, idem: Idem | None) -> pb.Person:
        async def work(s: AsyncSession) -> pb.Person:
            row = await self._register(s, new, caller=caller, prefix="person.")
            return self.present(row, full=False, caller=caller)

        return await mutate(self.sessions, idem, pb.Person, work, caller=caller, notify=self.notify)

    async def get_person(self, person_id: str, *, full: bool, caller: Caller) -> pb.Person:
        # The hottest read other systems make: one row by primary key, so an
        # inline point read (on SQLite it runs on the loop, no thread hop;
        # see jsxcore.db.read) instead of an async session's thread hops.
        def load(s: Session) -> pb.Person:
            p = s.connection().execute(self._person_by_id, {"pid": person_id}).first()
            if p is None:
                raise NotFound(f"未找到该人员（编号 {person_id}），请核对后重试", reason="PERSONS_NOT_FOUND")
            caller.require_region(p.village)
            return self.present(p, full=full, caller=caller, household=(p.household_id, p.household_relation))

        return await read(self.sessions, load, inline=True)

    async def lookup_person(self, id_number: str, *, full: bool, caller: Caller) -> pb.Person:
        idn = IdNumber.parse(id_number, field="id_number", today=self.today())
        async with self.sessions() as s:
            p = await self._by_bidx(s, self.bidx.digest(idn.value))
            if p is None:
                raise NotFound(f"没有登记身份证号为 {idn.masked} 的人员", reason="PERSON_NOT_FOUND")
            caller.require_region(p.village)
            return self.present(p, full=full, caller=caller, household=await self._household_of(s, p.id))

    async def list_persons(
        self, *, region: RegionCode | None, status: PersonStatus | None, full: bool, page: Page, caller: Caller
    ) -> pb.ListPersonsResponse:
        scope = region or caller.region
        caller.require_region(scope)
        q = self._with_household(select(PersonRow), PersonRow.id).where(PersonRow.village.like(scope.prefix + "%"))
        if status is not None:
            q = q.where(PersonRow.status == status.name)
        async with self.sessions() as s:
            rows, token = page.cut(list((await s.execute(page.apply(q, PersonRow.id))).all()), key=lambda r: r[0].id)
            return wire.person_list(
                [self.present(p, full=full, caller=caller, household=(hid, rel)) for p, hid, rel in rows], token
            )

    async def update_person(
        self, person_id: str, update: PersonUpdate, *, caller: Caller, idem: Idem | None
    ) -> pb.Person:
        paths = update.paths

        async def work(s: AsyncSession) -> pb.Person:
            row = await self._row(s, person_id, caller)
            before = (PersonStatus[row.status], row.death_date)
            errors = ErrorCollector()

            def attempt(fn: Callable[[], Any]) -> Any:
                try:
                    return fn()
                except InvalidArgument as e:
                    errors.violations.extend(e.violations)
                    return None

            if "display_name" in paths:
                row.name = attempt(lambda: normalize_name(update.name, field="person.display_name")) or row.name
            if "phone" in paths:
                phone = attempt(lambda: normalize_phone(update.phone, field="person.phone"))
                if not errors:
                    self._set_phone(row, phone)
            if "village" in paths:
                v = attempt(lambda: parse_village(update.village, field="person.village"))
                if v is not None:
                    caller.require_region(v)
                    row.village = v.code
            if "hukou_type" in paths:
                errors.violations.extend(update.unreadable.get("hukou_type", ()))
                if update.hukou is not None:
                    row.hukou = update.hukou.name
            if "status" in paths or "death_date" in paths:
                errors.violations.extend(update.unreadable.get("status", ()))
                errors.violations.extend(update.unreadable.get("death_date", ()))
                check_status_change(errors, before[0], update.status)
                check_life_status(
                    errors, update.status, update.death_date, birth_date=row.birth_date, today=self.today()
                )
                if update.status is not None:
                    row.status, row.death_date = update.status.name, update.death_date
            if "card_number" in paths:
                card = attempt(lambda: self.card_cipher(row.id, update.card_number))
                if not errors:
                    row.card_cipher = card
            errors.raise_if_any("人员信息有误，请按字段说明修改后重试")
            row.version += 1
            row.updated_at = db.utcnow()
            await s.flush()
            household = await self._household_of(s, row.id)
            self._publish_death(
                s, row, death_change(before, (PersonStatus[row.status], row.death_date)), before[1], household
            )
            return self.present(row, full=False, caller=caller, household=household)

        return await mutate(self.sessions, idem, pb.Person, work, caller=caller, notify=self.notify)

    def _publish_death(
        self, s: AsyncSession, row: PersonRow, change: DeathChange, previous: date | None, household: Household
    ) -> None:
        """PersonDied once, when a living person becomes deceased; PersonDeathCorrected
        when a recorded death's date changes or the death is withdrawn."""
        if change is DeathChange.DIED:
            assert row.death_date is not None
            bus.emit(s, wire.died(row.id, row.village, row.death_date, *household))
        elif change in (DeathChange.CORRECTED, DeathChange.WITHDRAWN):
            bus.emit(s, wire.death_corrected(row.id, row.village, row.death_date, previous, household[0]))

    async def record_death(
        self, person_id: str, death_date: date | None, *, caller: Caller, idem: Idem | None
    ) -> pb.Person:
        """死亡登记: the date lies between birth and today; a person already
        recorded as deceased is refused. Publishes PersonDied (once: a second
        call with the same request id returns the first answer)."""

        async def work(s: AsyncSession) -> pb.Person:
            row = await self._row(s, person_id, caller)
            before = (PersonStatus[row.status], row.death_date)
            died = check_death(
                death_date, status=before[0], birth_date=row.birth_date, today=self.today(), field="death_date"
            )
            row.status, row.death_date = PersonStatus.DECEASED.name, died
            row.version += 1
            row.updated_at = db.utcnow()
            await s.flush()
            household = await self._household_of(s, row.id)
            self._publish_death(s, row, DeathChange.DIED, before[1], household)
            return self.present(row, full=False, caller=caller, household=household)

        return await mutate(self.sessions, idem, pb.Person, work, caller=caller, notify=self.notify)

    # ---------------------------------------------------------------- batch reads for other services (AIP-231)

    async def _load(
        self, person_ids: Sequence[str], caller: Caller, *columns: Any, households: bool = False
    ) -> list[Any]:
        """The persons named, in order; all-or-nothing NOT_FOUND / PERMISSION_DENIED. With ``columns``
        (which must include ``id`` and ``village``), rows of just those columns instead of whole entities;
        with ``households`` too, each row's ``household_id`` and ``household_relation``."""
        if not person_ids:
            raise InvalidArgument.field("names", "请至少指定一个人员（persons/{编号}）", reason="NAMES_REQUIRED")
        if len(person_ids) > MAX_BATCH:
            raise InvalidArgument.field(
                "names", f"一次最多查询 {MAX_BATCH} 人，本次 {len(person_ids)} 人，请分批查询", reason="TOO_MANY_NAMES"
            )
        q = select(*columns) if columns else select(PersonRow)
        if households:
            q = self._with_household(q, PersonRow.id)
        async with self.sessions() as s:
            result = await s.execute(q.where(PersonRow.id.in_(set(person_ids))))
            rows = {p.id: p for p in (result.all() if columns else result.scalars())}
        missing = [f"persons/{i}" for i in dict.fromkeys(person_ids) if i not in rows]
        if missing:
            raise NotFound(
                f"成员服务中没有以下人员：{_listing(missing)}，请核对编号",
                reason="PERSONS_NOT_FOUND",
                metadata={"persons": ",".join(missing[:_LIST_IN_MESSAGE]), "count": str(len(missing))},
            )
        outside = [f"persons/{i}" for i in dict.fromkeys(person_ids) if not caller.in_region(rows[i].village)]
        if outside:
            region = caller.region.name or caller.region.short
            raise PermissionDenied(
                f"以下人员不在您的辖区（{region}）内，不能查询：{_listing(outside)}",
                reason="OUT_OF_REGION",
                metadata={
                    "persons": ",".join(outside[:_LIST_IN_MESSAGE]),
                    "count": str(len(outside)),
                    "caller_region": caller.region.code,
                },
            )
        return [rows[i] for i in person_ids]

    async def batch_get_payees(self, person_ids: Sequence[str], *, caller: Caller) -> pb.BatchGetPayeesResponse:
        """Full name, full 一卡通 card number and village per person, in request
        order — the one place other services get a card number in clear (for a
        bank payment file). Every call logs ``payees.read``: who, how many."""
        # Only what a payee is: whole entities cost ~9 s of a million payees' ~17 s (bench/bank_file).
        rows = await self._load(
            person_ids, caller, PersonRow.id, PersonRow.name, PersonRow.village, PersonRow.card_cipher
        )
        out = wire.payees(rows, [self._card(p) for p in rows])
        # Who read how many card numbers — the values and the persons stay out of the log.
        audit.info("payees.read", extra={"actor": caller.subject, "persons": len(rows)})
        return out

    async def batch_get_persons(self, person_ids: Sequence[str], *, caller: Caller) -> pb.BatchGetPersonsResponse:
        """Masked persons (张*明, 4312**********1234, 138****1234) in request order, whatever the caller may see,
        with sex, birth date, village, 户籍 type, status (death / move dates) and household: what other
        services read instead of having a clerk type it."""
        rows = await self._load(person_ids, caller, *db.table_of(PersonRow).c, households=True)
        return wire.batch_persons(
            [self.present(p, full=False, caller=caller, household=(p.household_id, p.household_relation)) for p in rows]
        )

    # ---------------------------------------------------------------- for the other contexts

    async def _row(self, s: AsyncSession, person_id: str, caller: Caller | None) -> PersonRow:
        p = await db.get_or_404(s, PersonRow, person_id, "人员")
        if caller is not None:
            caller.require_region(p.village)
        return p

    async def summary(self, s: AsyncSession, person_id: str, *, caller: Caller | None) -> PersonSummary:
        """A registered person in ``s``'s transaction (NOT_FOUND otherwise); with
        ``caller``, also refused when outside the caller's region."""
        p = await self._row(s, person_id, caller)
        return PersonSummary(p.id, p.name, p.id_masked, p.birth_date, PersonStatus[p.status], p.village, p.sex)

    async def register(self, s: AsyncSession, new: NewPerson, *, caller: Caller, prefix: str) -> PersonSummary:
        """Register a person in ``s``'s transaction (as CreatePerson does, PersonRegistered included);
        field violations are named under ``prefix``."""
        p = await self._register(s, new, caller=caller, prefix=prefix)
        return PersonSummary(p.id, p.name, p.id_masked, p.birth_date, PersonStatus[p.status], p.village, p.sex)

    async def move(
        self,
        s: AsyncSession,
        person_id: str,
        *,
        village: RegionCode | None,
        moved_to: RegionCode | None,
        moved_on: date,
    ) -> None:
        """Record a 户籍 move in ``s``'s transaction: to ``village`` (in the
        province: the person's village changes), or out of the province (to
        ``moved_to``, None when not known; the status becomes 迁出). The
        caller's use case checks the move and publishes PersonMoved."""
        row = await self._row(s, person_id, None)
        if village is not None:
            assert village.level is RegionLevel.VILLAGE
            row.village = village.code
        else:
            row.status = PersonStatus.MOVED_OUT.name
            row.moved_to = moved_to.code if moved_to is not None else None
        row.moved_on = moved_on
        row.version += 1
        row.updated_at = db.utcnow()

    async def by_digests(self, s: AsyncSession, digests: Sequence[str]) -> dict[str, RegisteredPerson]:
        """Registered persons by the blind-index digest of their 身份证 number (a roster's rows)."""
        found: dict[str, RegisteredPerson] = {}
        cols = (
            PersonRow.id,
            PersonRow.id_bidx,
            PersonRow.name,
            PersonRow.village,
            PersonRow.phone_bidx,
            PersonRow.hukou,
            PersonRow.card_cipher,
        )
        for part in db.chunks(digests):
            for p in await s.execute(select(*cols).where(PersonRow.id_bidx.in_(part))):
                found[p.id_bidx] = RegisteredPerson(
                    p.id, p.name, p.village, p.phone_bidx, HukouType[p.hukou], self._card(p)
                )
        return found

    async def set_cards(self, s: AsyncSession, cards: Sequence[tuple[str, str]]) -> None:
        """Put a roster's 一卡通 accounts (person id, normalised number) on persons that had none, in
        ``s``'s transaction, encrypted like every card."""
        now = db.utcnow()
        table = db.table_of(PersonRow)
        for pid, card in cards:
            await s.execute(
                update(table)
                .where(table.c.id == pid)
                .values(card_cipher=self.card_cipher(pid, card), version=table.c.version + 1, updated_at=now)
            )

    def prepare(self, new: Sequence[NewRosterPerson]) -> PreparedPersons:
        """Encrypt a chunk of new persons and build their PersonRegistered events (CPU only)."""
        encrypt, aad = self.cipher.encrypt, self._aad
        rows: list[tuple[Any, ...]] = []
        events: list[Any] = []
        for n in new:
            pid, draft = n.id, n.draft
            idn = draft.id_number
            v = idn.value
            village = draft.village.code
            rows.append(
                (
                    pid,
                    draft.name,
                    encrypt(v, aad=aad(pid, "id_number")),
                    n.digest,
                    idn.masked,
                    idn.birth_date,
                    draft.sex,
                    encrypt(draft.phone, aad=aad(pid, "phone")) if draft.phone else None,
                    n.phone_digest,
                    village,
                    draft.hukou.name,
                    encrypt(n.card, aad=aad(pid, "card")) if n.card else None,
                )
            )
            events.append(wire.registered(pid, village))
        return PreparedPersons(rows, events)

    async def insert(self, s: AsyncSession, prepared: PreparedPersons) -> None:
        """Insert prepared persons and their events in ``s``'s transaction (one bulk insert each)."""
        now = db.utcnow()
        await db.insert_rows(
            s,
            db.table_of(PersonRow),
            _IMPORT_COLUMNS,
            prepared.rows,
            const={
                "status": PersonStatus.ACTIVE.name,
                "death_date": None,
                "moved_on": None,
                "moved_to": None,
                "version": 1,
                "created_at": now,
                "updated_at": now,
            },
        )
        await bus.emit_many(s, prepared.events)

    async def roster_identities(
        self, s: AsyncSession, *, region: RegionCode | None = None, ids: Sequence[str] = (), full: bool
    ) -> list[RosterIdentity]:
        """Persons as a roster file shows them — everyone in ``region`` (by id), or
        those of ``ids`` — plaintext when ``full``, else masked."""
        if region is not None:
            q = select(PersonRow).where(PersonRow.village.like(region.prefix + "%")).order_by(PersonRow.id)
            found = list((await s.execute(q)).scalars())
        else:
            found = []
            for part in db.chunks(list(ids)):
                found += (await s.execute(select(PersonRow).where(PersonRow.id.in_(part)))).scalars()
        out: list[RosterIdentity] = []
        for p in found:
            phone, card = self._phone(p), self._card(p)
            if full:
                ident = self.cipher.decrypt(p.id_cipher, aad=self._aad(p.id, "id_number"))
                out.append(RosterIdentity(p.id, p.name, ident, phone, p.village, HukouType[p.hukou], card))
            else:
                out.append(
                    RosterIdentity(
                        p.id,
                        mask_name(p.name),
                        p.id_masked,
                        mask_phone(phone) if phone else "",
                        p.village,
                        HukouType[p.hukou],
                        wire.mask_card(card),
                    )
                )
        return out


__all__ = ["MAX_BATCH", "PersonsService", "PreparedPersons"]
