"""Households use cases: register a household with its members and its
situation history, record a situation change (history is appended, never
rewritten; a 伤残 grade change and a recovery are published as facts of
their own), change address, members and 户主, read and list (also "as of a
day" and "not paired"); and what the other contexts need of a household —
including the in-transaction operations the life-events context composes
(a child added, a member leaving, a household moving, splitting, merging).

Persons are reached through :class:`~jsx_members.persons.service.PersonsService`;
which households have an open pairing is the network context's, given to
the constructor as a :class:`PairingFilter`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, FromClause, Select, SQLColumnExpression, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from jsx.members.v1 import members_pb2 as pb
from jsx_members.adapters import bus, db
from jsx_members.households import wire
from jsx_members.households.domain import (
    SPECIAL,
    HouseholdImport,
    HouseholdMemberView,
    HouseholdState,
    HouseholdSummary,
    HouseholdUpdate,
    Membership,
    NewHousehold,
    Relation,
    Situation,
    SituationRecord,
    append_situation,
    check_address,
    check_head_change,
    check_household_members,
    check_recovery,
    check_update_paths,
    close_situation,
    grade_change,
    situation_on,
    with_head,
)
from jsx_members.households.tables import HouseholdMemberRow, HouseholdRow, SituationRow
from jsx_members.persons.domain import PersonSummary, parse_village
from jsx_members.persons.service import PersonsService
from jsxcore.auth import Caller
from jsxcore.errors import FailedPrecondition, InvalidArgument
from jsxcore.paging import Page
from jsxcore.pii import mask_name
from jsxcore.usecase import Idem, mutate
from jsxcore.values import RegionCode


class PairingFilter(Protocol):
    """Which households have an open pairing (the network context answers)."""

    def open_pairing(self, household_id: SQLColumnExpression[str]) -> ColumnElement[bool]:
        """A SQL condition: the household ``household_id`` has an open pairing."""
        ...


class Memberships:
    """Where persons belong, for the persons context (a
    :class:`~jsx_members.persons.service.MembershipTable`): the household
    members table, whose person_id is unique (one household per person)."""

    def memberships(self) -> FromClause:
        return db.table_of(HouseholdMemberRow)


def _record(e: SituationRow) -> SituationRecord:
    return SituationRecord(Situation[e.situation], e.effective_from, e.disability_grade, e.honor_certificate, e.note)


class HouseholdsService:
    """Use cases of the households context. ``today`` is injectable for tests."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        persons: PersonsService,
        pairings: PairingFilter,
        *,
        notify: Callable[[], None] | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.sessions = sessions
        self.persons = persons
        self.pairings = pairings
        self.notify = notify
        self.today = today

    # ---------------------------------------------------------------- rows

    async def _row(
        self, s: AsyncSession, household_id: str, caller: Caller | None, *, for_change: bool = False
    ) -> HouseholdRow:
        """The household (NOT_FOUND), within the caller's region; with ``for_change``
        a household merged into another is refused (it is kept for the record only)."""
        h = await db.get_or_404(s, HouseholdRow, household_id, "家庭户")
        if caller is not None:
            caller.require_region(h.village)
        if for_change and h.closed_on is not None:
            raise FailedPrecondition(
                f"该户已于 {h.closed_on.isoformat()} 并入 households/{h.merged_into}，不能再变更",
                reason="HOUSEHOLD_CLOSED",
                metadata={"merged_into": f"households/{h.merged_into}"},
            )
        return h

    async def _member_rows(self, s: AsyncSession, household_id: str) -> list[HouseholdMemberRow]:
        q = (
            select(HouseholdMemberRow)
            .where(HouseholdMemberRow.household_id == household_id)
            .order_by(HouseholdMemberRow.position)
        )
        return list((await s.execute(q)).scalars())

    async def _history_rows(self, s: AsyncSession, household_id: str) -> list[SituationRow]:
        q = select(SituationRow).where(SituationRow.household_id == household_id).order_by(SituationRow.effective_from)
        return list((await s.execute(q)).scalars())

    async def _membership_row(self, s: AsyncSession, person_id: str) -> HouseholdMemberRow | None:
        q = select(HouseholdMemberRow).where(HouseholdMemberRow.person_id == person_id)
        return (await s.execute(q)).scalar_one_or_none()

    async def _present(self, s: AsyncSession, h: HouseholdRow) -> pb.Household:
        members = [(m.person_id, Relation[m.relation]) for m in await self._member_rows(s, h.id)]
        return wire.household(h, members, [_record(e) for e in await self._history_rows(s, h.id)])

    async def _append_situation(
        self, s: AsyncSession, h: HouseholdRow, record: SituationRecord, caller: Caller, *, today: date | None = None
    ) -> None:
        """Append ``record`` to the history; a 伤残 grade change also publishes HouseholdDisabilityGradeChanged."""
        history = await self.history(s, h.id)
        append_situation(history, record, today=today or self.today())
        previous = max(history, key=lambda r: r.effective_from) if history else None
        if (grade := grade_change(previous, record)) is not None:
            bus.emit(s, wire.grade_changed(h.id, h.village, grade, record))
        s.add(
            SituationRow(
                household_id=h.id,
                situation=record.situation.name,
                effective_from=record.effective_from,
                disability_grade=record.disability_grade,
                honor_certificate=record.honor_certificate,
                note=record.note,
                recorded_by=caller.subject,
                recorded_at=db.utcnow(),
            )
        )
        h.current_situation = record.situation.name
        h.version += 1
        h.updated_at = db.utcnow()

    def _situation_event(
        self, s: AsyncSession, h: HouseholdRow, rec: SituationRecord, ended: date | None, count: int
    ) -> None:
        bus.emit(
            s, wire.situation_changed(h.id, h.village, rec, ended, head_person_id=h.head_person_id, member_count=count)
        )

    # ---------------------------------------------------------------- use cases

    async def create_household(self, new: NewHousehold, *, caller: Caller, idem: Idem | None) -> pb.Household:
        async def work(s: AsyncSession) -> pb.Household:
            village = parse_village(new.village, field="household.village")
            caller.require_region(village)
            people = {pid: await self.persons.summary(s, pid, caller=caller) for pid, _ in new.members}
            if new.head_id not in people:
                people[new.head_id] = await self.persons.summary(s, new.head_id, caller=caller)
            members = [(people[pid], rel) for pid, rel in with_head(new.head_id, new.members)]
            h = await self._register(
                s,
                head_id=new.head_id,
                members=members,
                village=village,
                address=new.address.strip()[:200],
                situations=new.situations,
                caller=caller,
            )
            return await self._present(s, h)

        return await mutate(self.sessions, idem, pb.Household, work, caller=caller, notify=self.notify)

    async def _register(
        self,
        s: AsyncSession,
        *,
        head_id: str,
        members: Sequence[tuple[PersonSummary, Relation]],
        village: RegionCode,
        address: str,
        situations: Sequence[SituationRecord],
        caller: Caller,
    ) -> HouseholdRow:
        views = [HouseholdMemberView(p.id, rel, p.birth_date, p.deceased) for p, rel in members]
        check_household_members(views, on=self.today(), field="household.members")
        for i, (p, _) in enumerate(members):
            existing = await self._membership_row(s, p.id)
            if existing is not None:
                raise FailedPrecondition(
                    f"{mask_name(p.name)}（{p.id_masked}）已在另一户（households/{existing.household_id}）中，一人只能属于一户",
                    reason="PERSON_IN_OTHER_HOUSEHOLD",
                    metadata={"household": f"households/{existing.household_id}", "member_index": str(i)},
                )
        h = HouseholdRow(
            id=db.new_id(),
            head_person_id=head_id,
            village=village.code,
            address=address,
            current_situation=Situation.NONE.name,
            version=1,
            created_at=db.utcnow(),
            updated_at=db.utcnow(),
        )
        s.add(h)
        await s.flush()
        for i, (p, rel) in enumerate(members):
            s.add(HouseholdMemberRow(household_id=h.id, person_id=p.id, relation=rel.name, position=i))
        bus.emit(s, wire.registered(h.id, h.village, head_id, len(members)))
        await s.flush()
        for rec in sorted(situations, key=lambda r: r.effective_from):
            await self._append_situation(s, h, rec, caller)
            self._situation_event(s, h, rec, None, len(members))
        return h

    async def get_household(self, household_id: str, *, caller: Caller) -> pb.Household:
        async with self.sessions() as s:
            return await self._present(s, await self._row(s, household_id, caller))

    async def record_situation(
        self, household_id: str, record: SituationRecord, *, ended: date | None, caller: Caller, idem: Idem | None
    ) -> pb.Household:
        """Append a situation change; with ``ended``, end the situation in force instead."""

        async def work(s: AsyncSession) -> pb.Household:
            h = await self._row(s, household_id, caller, for_change=True)
            count = len(await self._member_rows(s, h.id))
            if ended is None:
                await self._append_situation(s, h, record, caller)
                self._situation_event(s, h, record, None, count)
            else:
                today = self.today()
                closing = close_situation(Situation[h.current_situation], record, ended, today=today)
                await self._append_situation(s, h, closing, caller, today=today + timedelta(days=1))
                opened = [e for e in await self._history_rows(s, h.id) if e.situation == record.situation.name][-1]
                self._situation_event(
                    s,
                    h,
                    SituationRecord(record.situation, opened.effective_from, opened.disability_grade),
                    ended,
                    count,
                )
            await s.flush()
            return await self._present(s, h)

        return await mutate(self.sessions, idem, pb.Household, work, caller=caller, notify=self.notify)

    async def update_household(
        self, household_id: str, update: HouseholdUpdate, *, caller: Caller, idem: Idem | None
    ) -> pb.Household:
        """Address, members (add/remove, relations) and 户主 change under the
        same rules as registration; members/head changes publish
        HouseholdMembersChanged so projections keep head and size right."""
        check_update_paths(update.paths)

        async def work(s: AsyncSession) -> pb.Household:
            h = await self._row(s, household_id, caller, for_change=True)
            if "address" in update.paths:
                h.address = check_address(update.address)
            if "members" in update.paths:
                await self._replace_members(s, h, update, change_head="head" in update.paths, caller=caller)
            h.version += 1
            h.updated_at = db.utcnow()
            await s.flush()
            return await self._present(s, h)

        return await mutate(self.sessions, idem, pb.Household, work, caller=caller, notify=self.notify)

    async def _replace_members(
        self, s: AsyncSession, h: HouseholdRow, update: HouseholdUpdate, *, change_head: bool, caller: Caller
    ) -> None:
        old_rows = {hm.person_id: hm for hm in await self._member_rows(s, h.id)}
        head_id = update.head_id if change_head else h.head_person_id
        members: list[tuple[PersonSummary, Relation]] = []
        for pid, rel in update.members:
            # People already in the household stay reachable even if they moved
            # village; newcomers must be in the caller's region.
            members.append((await self.persons.summary(s, pid, caller=None if pid in old_rows else caller), rel))
        check_head_change(h.head_person_id, head_id, [(p.id, rel) for p, rel in members], change_head=change_head)
        views = [HouseholdMemberView(p.id, rel, p.birth_date, p.deceased) for p, rel in members]
        check_household_members(views, on=self.today(), field="household.members")
        new_ids = [p.id for p, _ in members]
        for i, (p, _) in enumerate(members):
            if p.id in old_rows:
                continue
            elsewhere = await self._membership_row(s, p.id)
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
                s.add(HouseholdMemberRow(household_id=h.id, person_id=p.id, relation=rel.name, position=pos))
            else:
                row.relation, row.position = rel.name, pos
        previous_head = h.head_person_id
        h.head_person_id = head_id
        if added or removed or previous_head != head_id:
            bus.emit(s, wire.members_changed(h, len(members), added, removed, previous_head))

    def _query(
        self, region: RegionCode, situation: Situation | None, as_of: date | None, unpaired: bool
    ) -> Select[Any]:
        q = select(HouseholdRow).where(HouseholdRow.village.like(region.prefix + "%"))
        # A household merged into another existed until its closing day.
        if as_of is None:
            q = q.where(HouseholdRow.closed_on.is_(None))
        else:
            q = q.where(or_(HouseholdRow.closed_on.is_(None), HouseholdRow.closed_on >= as_of))
        if situation is not None:
            kind = situation.name
            if as_of is None:
                q = q.where(HouseholdRow.current_situation == kind)
            else:
                # The entry in force on as_of is the latest one effective by then.
                e, later = aliased(SituationRow), aliased(SituationRow)
                q = q.where(
                    exists().where(
                        e.household_id == HouseholdRow.id,
                        e.situation == kind,
                        e.effective_from <= as_of,
                        ~exists().where(
                            later.household_id == e.household_id,
                            later.effective_from > e.effective_from,
                            later.effective_from <= as_of,
                        ),
                    )
                )
        if unpaired:
            q = q.where(~self.pairings.open_pairing(HouseholdRow.id))
        return q

    async def _page(self, q: Select[Any], page: Page) -> tuple[list[pb.Household], str]:
        async with self.sessions() as s:
            rows, token = page.cut(
                list((await s.execute(page.apply(q, HouseholdRow.id))).scalars()), key=lambda h: h.id
            )
            return [await self._present(s, h) for h in rows], token

    async def list_households(
        self,
        *,
        region: RegionCode | None,
        situation: Situation | None,
        as_of: date | None,
        unpaired: bool,
        page: Page,
        caller: Caller,
    ) -> pb.ListHouseholdsResponse:
        scope = region or caller.region
        caller.require_region(scope)
        return wire.household_list(*await self._page(self._query(scope, situation, as_of, unpaired), page))

    async def list_unpaired_families(
        self, *, region: RegionCode | None, page: Page, caller: Caller
    ) -> pb.ListUnpairedFamiliesResponse:
        """Special families (失独/伤残) without an open pairing: the gaps to fill."""
        scope = region or caller.region
        caller.require_region(scope)
        q = self._query(scope, None, None, True).where(HouseholdRow.current_situation.in_([k.name for k in SPECIAL]))
        return wire.unpaired_list(*await self._page(q, page))

    # ---------------------------------------------------------------- for the other contexts

    async def summary(
        self, s: AsyncSession, household_id: str, *, caller: Caller, for_change: bool = False
    ) -> HouseholdSummary:
        """A household in ``s``'s transaction: NOT_FOUND, or refused outside the caller's region
        (and, ``for_change``, when it was merged into another)."""
        h = await self._row(s, household_id, caller, for_change=for_change)
        return HouseholdSummary(h.id, h.head_person_id, h.village, Situation[h.current_situation], h.closed_on)

    async def history(self, s: AsyncSession, household_id: str) -> list[SituationRecord]:
        """The household's situation history, oldest first."""
        return [_record(e) for e in await self._history_rows(s, household_id)]

    async def household_of(self, s: AsyncSession, person_id: str) -> str | None:
        """The id of the household ``person_id`` belongs to, if any."""
        hm = await self._membership_row(s, person_id)
        return hm.household_id if hm is not None else None

    async def memberships(self, s: AsyncSession, person_ids: Sequence[str]) -> dict[str, Membership]:
        """Where each of ``person_ids`` is a household member (those who are)."""
        out: dict[str, Membership] = {}
        cols = (
            HouseholdMemberRow.person_id,
            HouseholdMemberRow.household_id,
            HouseholdMemberRow.relation,
            HouseholdMemberRow.position,
        )
        for part in db.chunks(person_ids):
            for hm in await s.execute(select(*cols).where(HouseholdMemberRow.person_id.in_(part))):
                out[hm.person_id] = Membership(hm.household_id, Relation[hm.relation], hm.position)
        return out

    async def states(
        self, s: AsyncSession, household_ids: Sequence[str]
    ) -> tuple[dict[str, HouseholdSummary], dict[str, SituationRecord | None]]:
        """The households of ``household_ids`` and the latest entry of each one's situation history."""
        found: dict[str, HouseholdSummary] = {}
        latest: dict[str, SituationRecord | None] = {}
        ids = list(dict.fromkeys(household_ids))
        for part in db.chunks(ids):
            for h in (await s.execute(select(HouseholdRow).where(HouseholdRow.id.in_(part)))).scalars():
                found[h.id] = HouseholdSummary(h.id, h.head_person_id, h.village, Situation[h.current_situation])
                latest[h.id] = None
            q = select(SituationRow).where(SituationRow.household_id.in_(part)).order_by(SituationRow.effective_from)
            for e in (await s.execute(q)).scalars():
                latest[e.household_id] = _record(e)
        return found, latest

    async def add_imported(self, s: AsyncSession, plan: Sequence[HouseholdImport], *, recorded_by: str) -> None:
        """A roster import's households, members and situation entries, with
        their events in file order (one bulk insert per table)."""
        now = db.utcnow()
        events: list[Any] = []
        hh_rows: list[tuple[str, str, str, str]] = []
        member_rows: list[tuple[str, str, str, int]] = []
        situation_rows: list[tuple[str, str, date, int | None, str]] = []
        updates: list[tuple[str, str]] = []
        for item in plan:
            rec, hid = item.situation, item.household_id
            if item.new:
                hh_rows.append(
                    (hid, item.head_person_id, item.village, rec.situation.name if rec else Situation.NONE.name)
                )
                events.append(wire.registered(hid, item.village, item.head_person_id, item.member_count))
            member_rows += [(hid, pid, rel.name, pos) for pos, (pid, rel) in enumerate(item.members)]
            if rec is not None:
                situation_rows.append(
                    (hid, rec.situation.name, rec.effective_from, rec.disability_grade, rec.honor_certificate)
                )
                if not item.new:
                    updates.append((hid, rec.situation.name))
                events.append(
                    wire.situation_changed(
                        hid, item.village, rec, None, head_person_id=item.head_person_id, member_count=item.member_count
                    )
                )
                if item.previous_grade is not None:
                    events.append(wire.grade_changed(hid, item.village, item.previous_grade, rec))
        await db.insert_rows(
            s,
            db.table_of(HouseholdRow),
            ("id", "head_person_id", "village", "current_situation"),
            hh_rows,
            const={"address": "", "version": 1, "created_at": now, "updated_at": now},
        )
        await db.insert_rows(
            s, db.table_of(HouseholdMemberRow), ("household_id", "person_id", "relation", "position"), member_rows
        )
        await db.insert_rows(
            s,
            db.table_of(SituationRow),
            ("household_id", "situation", "effective_from", "disability_grade", "honor_certificate"),
            situation_rows,
            const={"note": "花名册导入", "recorded_by": recorded_by, "recorded_at": now},
        )
        for hid, kind in updates:
            await s.execute(
                db.table_of(HouseholdRow)
                .update()
                .where(HouseholdRow.id == hid)
                .values(current_situation=kind, updated_at=now)
            )
        await bus.emit_many(s, events)

    # ---------------------------------------------------------------- recovery (康复)

    async def record_recovery(
        self, household_id: str, recovered: date | None, note: str, *, caller: Caller, idem: Idem | None
    ) -> pb.Household:
        """A 伤残 household's child recovered: the situation ends the day before
        ``recovered`` (an entry 一般户 from then, with ``note``). Publishes
        HouseholdSituationChanged and HouseholdDisabilityRecovered."""

        async def work(s: AsyncSession) -> pb.Household:
            if len(note.strip()) > 200:
                raise InvalidArgument.field("note", "备注最长200字", reason="NOTE_TOO_LONG")
            h = await self._row(s, household_id, caller, for_change=True)
            history = await self.history(s, h.id)
            latest = max(history, key=lambda r: r.effective_from) if history else None
            opened, last_day = check_recovery(latest, recovered, today=self.today())
            assert recovered is not None
            await self._append_situation(s, h, SituationRecord(Situation.NONE, recovered, note=note.strip()), caller)
            count = len(await self._member_rows(s, h.id))
            self._situation_event(s, h, opened, last_day, count)
            bus.emit(s, wire.recovered(h.id, h.village, opened.disability_grade or 0, recovered))
            await s.flush()
            return await self._present(s, h)

        return await mutate(self.sessions, idem, pb.Household, work, caller=caller, notify=self.notify)

    # ---------------------------------------------------------------- for the life-events context (in its transaction)

    async def state(self, s: AsyncSession, household_id: str, *, caller: Caller | None) -> HouseholdState:
        """A household about to change: NOT_FOUND, refused outside the caller's region
        (``caller`` None: no check) or when merged into another."""
        h = await self._row(s, household_id, caller, for_change=True)
        members = tuple((m.person_id, Relation[m.relation]) for m in await self._member_rows(s, h.id))
        history = await self.history(s, h.id)
        return HouseholdState(
            h.id, h.head_person_id, h.village, h.address, members, situation_on(history, self.today())
        )

    async def present(self, s: AsyncSession, household_id: str) -> pb.Household:
        """The response for a household in ``s``'s transaction."""
        return await self._present(s, await db.get_or_404(s, HouseholdRow, household_id, "家庭户"))

    async def register(
        self,
        s: AsyncSession,
        *,
        head_id: str,
        members: Sequence[tuple[PersonSummary, Relation]],
        village: RegionCode,
        address: str,
        caller: Caller,
    ) -> str:
        """A new household under the registration rules (HouseholdRegistered); returns its id."""
        h = await self._register(
            s, head_id=head_id, members=members, village=village, address=address, situations=(), caller=caller
        )
        return h.id

    async def remove_members(self, s: AsyncSession, household_id: str, person_ids: Sequence[str]) -> int:
        """Take persons (never the 户主) out of a household; publishes
        HouseholdMembersChanged. Returns the members left."""
        h = await db.get_or_404(s, HouseholdRow, household_id, "家庭户")
        rows = {m.person_id: m for m in await self._member_rows(s, h.id)}
        assert h.head_person_id not in person_ids and all(pid in rows for pid in person_ids)
        for pid in person_ids:
            await s.delete(rows[pid])
        await s.flush()
        left = [m for pid, m in rows.items() if pid not in set(person_ids)]
        for pos, m in enumerate(sorted(left, key=lambda m: m.position)):
            m.position = pos
        self._touch(h)
        bus.emit(s, wire.members_changed(h, len(left), [], list(person_ids), h.head_person_id))
        return len(left)

    async def add_members(
        self, s: AsyncSession, household_id: str, members: Sequence[tuple[PersonSummary, Relation]], *, field: str
    ) -> int:
        """Add persons (in no household yet) after the household's members under
        the household rules (one 户主, at most one 配偶); publishes
        HouseholdMembersChanged. Returns the member count."""
        h = await db.get_or_404(s, HouseholdRow, household_id, "家庭户")
        rows = await self._member_rows(s, h.id)
        people = {p.id: p for p, _ in members}
        existing = [await self.persons.summary(s, m.person_id, caller=None) for m in rows]
        views = [
            *(
                HouseholdMemberView(p.id, Relation[m.relation], p.birth_date, p.deceased)
                for p, m in zip(existing, rows, strict=True)
            ),
            *(HouseholdMemberView(p.id, rel, p.birth_date, p.deceased) for p, rel in members),
        ]
        if any(rel is Relation.HEAD for _, rel in members):
            raise InvalidArgument.field(
                field, "新成员不能是“户主”：与户主关系请填写与现户主的关系", reason="SECOND_HEAD"
            )
        check_household_members(views, on=self.today(), field=field)
        for i, (p, _) in enumerate(members):
            elsewhere = await self._membership_row(s, p.id)
            if elsewhere is not None:
                raise FailedPrecondition(
                    f"{mask_name(people[p.id].name)}（{p.id_masked}）已在另一户（households/{elsewhere.household_id}）中，"
                    "一人只能属于一户；请先从原户移出",
                    reason="PERSON_IN_OTHER_HOUSEHOLD",
                    metadata={"household": f"households/{elsewhere.household_id}", "member_index": str(i)},
                )
        start = max((m.position for m in rows), default=-1) + 1
        for i, (p, rel) in enumerate(members):
            s.add(HouseholdMemberRow(household_id=h.id, person_id=p.id, relation=rel.name, position=start + i))
        await s.flush()
        self._touch(h)
        count = len(rows) + len(members)
        bus.emit(s, wire.members_changed(h, count, [p.id for p, _ in members], [], h.head_person_id))
        return count

    async def relocate(self, s: AsyncSession, household_id: str, village: RegionCode) -> None:
        """The whole household moved to ``village`` (整户迁移); publishes
        HouseholdMembersChanged with the new village (no one added or removed)
        so that projections follow it."""
        h = await db.get_or_404(s, HouseholdRow, household_id, "家庭户")
        h.village = village.code
        self._touch(h)
        bus.emit(s, wire.members_changed(h, len(await self._member_rows(s, h.id)), [], [], h.head_person_id))

    async def close_into(
        self, s: AsyncSession, household_id: str, into: str, last_day: date, *, caller: Caller
    ) -> None:
        """合户: the household's members leave it for ``into`` (the caller adds
        them there); it is closed on ``last_day``, keeping its 户主 for the
        record, and its open situation ends that day (HouseholdSituationChanged).
        A household with an open pairing is refused (end the pairing first)."""
        h = await db.get_or_404(s, HouseholdRow, household_id, "家庭户")
        if (
            await s.execute(select(self.pairings.open_pairing(HouseholdRow.id)).where(HouseholdRow.id == h.id))
        ).scalar():
            raise FailedPrecondition(
                "被合并的户还有未结束的结对联系，请先结束结对（EndPairing）再合户", reason="HOUSEHOLD_HAS_PAIRING"
            )
        for m in await self._member_rows(s, h.id):
            await s.delete(m)
        await s.flush()  # before the members are added to ``into``: a person is in one household
        history = await self.history(s, h.id)
        latest = max(history, key=lambda r: r.effective_from) if history else None
        if latest is not None and latest.situation is not Situation.NONE:
            today = self.today()
            closing = close_situation(Situation[h.current_situation], latest, last_day, today=today)
            await self._append_situation(s, h, closing, caller, today=today + timedelta(days=1))
            self._situation_event(s, h, latest, last_day, 0)
        h.closed_on, h.merged_into = last_day, into
        self._touch(h)

    @staticmethod
    def _touch(h: HouseholdRow) -> None:
        h.version += 1
        h.updated_at = db.utcnow()


__all__ = ["HouseholdsService", "Memberships", "PairingFilter"]
