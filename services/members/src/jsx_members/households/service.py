"""Households use cases: register a household with its members and its
situation history, record a situation change (history is appended, never
rewritten), change address, members and 户主, read and list (also "as of a
day" and "not paired"); and what the other contexts need of a household.

Persons are reached through :class:`~jsx_members.persons.service.PersonsService`;
which households have an open pairing is the network context's, given to
the constructor as a :class:`PairingFilter`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Select, SQLColumnExpression, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from jsx.members.v1 import members_pb2 as pb
from jsx_members.adapters import bus, db
from jsx_members.households import wire
from jsx_members.households.domain import (
    SPECIAL,
    HouseholdImport,
    HouseholdMemberView,
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
    check_update_paths,
    close_situation,
    with_head,
)
from jsx_members.households.tables import HouseholdMemberRow, HouseholdRow, SituationRow
from jsx_members.persons.domain import PersonSummary, parse_village
from jsx_members.persons.service import PersonsService
from jsxcore.auth import Caller
from jsxcore.errors import FailedPrecondition
from jsxcore.paging import Page
from jsxcore.pii import mask_name
from jsxcore.usecase import Idem, mutate
from jsxcore.values import RegionCode


class PairingFilter(Protocol):
    """Which households have an open pairing (the network context answers)."""

    def open_pairing(self, household_id: SQLColumnExpression[str]) -> ColumnElement[bool]:
        """A SQL condition: the household ``household_id`` has an open pairing."""
        ...


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

    async def _row(self, s: AsyncSession, household_id: str, caller: Caller) -> HouseholdRow:
        h = await db.get_or_404(s, HouseholdRow, household_id, "家庭户")
        caller.require_region(h.village)
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
        append_situation(await self.history(s, h.id), record, today=today or self.today())
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
            h = await self._row(s, household_id, caller)
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
            h = await self._row(s, household_id, caller)
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

    async def summary(self, s: AsyncSession, household_id: str, *, caller: Caller) -> HouseholdSummary:
        """A household in ``s``'s transaction: NOT_FOUND, or refused outside the caller's region."""
        h = await self._row(s, household_id, caller)
        return HouseholdSummary(h.id, h.head_person_id, h.village, Situation[h.current_situation])

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
                db.table_of(HouseholdRow).update()
                .where(HouseholdRow.id == hid)
                .values(current_situation=kind, updated_at=now)
            )
        await bus.emit_many(s, events)


__all__ = ["HouseholdsService", "PairingFilter"]
