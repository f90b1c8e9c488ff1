"""Network use cases: association members (join, change type or
association, leave — the record is kept), volunteers (register, change
skills, deactivate) and their pairing with households under the region's
pairing rule (the ``jsx_pairing_rules`` hook, asked through the plugin host:
1:1 with special families by default; 洪江's 会员联系户 let a member keep
several households). The rule that allowed a pairing is kept with it.

Persons and households are reached through their contexts' services;
:class:`OpenPairings` answers the households context which households have
an open pairing (to list the unpaired ones).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, SQLColumnExpression, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.members.v1 import members_pb2 as pb
from jsx_members.adapters import bus, db
from jsx_members.households.domain import situation_on
from jsx_members.households.service import HouseholdsService
from jsx_members.network import wire
from jsx_members.network.domain import (
    MemberType,
    MemberUpdate,
    NewMember,
    NewPairing,
    NewVolunteer,
    PairingKind,
    Tenure,
    VolunteerUpdate,
    check_activation,
    check_association,
    check_end,
    check_join,
    check_member_change,
    check_new_volunteer,
    check_not_future,
    check_pairing,
    check_skills,
    free_slot,
)
from jsx_members.network.tables import MemberRow, PairingRow, VolunteerRow
from jsx_members.persons.service import PersonsService
from jsxcore.auth import Caller
from jsxcore.errors import InvalidArgument
from jsxcore.hookspecs import PairingRules
from jsxcore.paging import Page
from jsxcore.plugins import Decision, PluginHost
from jsxcore.usecase import Idem, mutate
from jsxcore.values import RegionCode


class OpenPairings:
    """Which households have an open pairing (a :class:`~jsx_members.households.service.PairingFilter`)."""

    def open_pairing(self, household_id: SQLColumnExpression[str]) -> ColumnElement[bool]:
        return exists().where(PairingRow.household_id == household_id, PairingRow.end_date.is_(None))


class NetworkService:
    """Use cases of the network context. ``today`` is injectable for tests."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        persons: PersonsService,
        households: HouseholdsService,
        *,
        plugins: PluginHost | None = None,
        notify: Callable[[], None] | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.sessions = sessions
        self.persons = persons
        self.households = households
        # No host given: the built-in defaults only (the 1:1 rule).
        self.plugins = plugins if plugins is not None else PluginHost()
        self.notify = notify
        self.today = today

    # ---------------------------------------------------------------- members

    async def _member(self, s: AsyncSession, member_id: str, caller: Caller) -> MemberRow:
        a = await db.get_or_404(s, MemberRow, member_id, "会员记录")
        caller.require_region(a.region)
        return a

    async def _open_membership(self, s: AsyncSession, person_id: str) -> MemberRow | None:
        q = select(MemberRow).where(MemberRow.person_id == person_id, MemberRow.left_on.is_(None))
        return (await s.execute(q)).scalar_one_or_none()

    async def create_member(self, new: NewMember, *, caller: Caller, idem: Idem | None) -> pb.AssociationMember:
        async def work(s: AsyncSession) -> pb.AssociationMember:
            p = await self.persons.summary(s, new.person_id, caller=caller)
            caller.require_region(new.association)
            check_association(new.association, p.village)
            joined = new.joined_date or self.today()
            check_join(
                joined,
                birth_date=p.birth_date,
                today=self.today(),
                person_active=p.active,
                already_member=await self._open_membership(s, p.id) is not None,
            )
            a = MemberRow(
                id=db.new_id(),
                person_id=p.id,
                region=new.association.code,
                member_type=new.member_type.name,
                joined_on=joined,
                left_reason="",
                version=1,
                created_at=db.utcnow(),
            )
            s.add(a)
            await s.flush()
            bus.emit(s, wire.joined(a, new.member_type, joined))
            return wire.member(a)

        return await mutate(self.sessions, idem, pb.AssociationMember, work, caller=caller, notify=self.notify)

    async def get_member(self, member_id: str, *, caller: Caller) -> pb.AssociationMember:
        async with self.sessions() as s:
            return wire.member(await self._member(s, member_id, caller))

    async def end_membership(
        self, member_id: str, *, left_date: date | None, reason: str, caller: Caller, idem: Idem | None
    ) -> pb.AssociationMember:
        async def work(s: AsyncSession) -> pb.AssociationMember:
            a = await self._member(s, member_id, caller)
            left = check_not_future(
                left_date or self.today(), today=self.today(), field="left_date", message="退会日期不能晚于今天"
            )
            t = check_end(Tenure(a.joined_on, a.left_on), left, field="left_date", what="退会日期")
            a.left_on, a.left_reason = t.end, reason.strip()[:200]
            a.version += 1
            bus.emit(s, wire.left(a, left))
            await s.flush()
            return wire.member(a)

        return await mutate(self.sessions, idem, pb.AssociationMember, work, caller=caller, notify=self.notify)

    async def update_member(
        self, member_id: str, update: MemberUpdate, *, caller: Caller, idem: Idem | None
    ) -> pb.AssociationMember:
        """Type and association (level) of an open membership, or its end
        (``left_date`` → MemberLeft); an ended one takes only ``left_reason``."""
        paths = update.paths

        async def work(s: AsyncSession) -> pb.AssociationMember:
            a = await self._member(s, member_id, caller)
            check_member_change(a.left_on, paths)
            changed = False
            if "member_type" in paths and update.member_type is not None:
                changed |= update.member_type.name != a.member_type
                a.member_type = update.member_type.name
            if "association" in paths and update.association is not None:
                assoc = update.association
                caller.require_region(assoc)
                check_association(assoc, (await self.persons.summary(s, a.person_id, caller=None)).village)
                changed |= assoc.code != a.region
                a.region = assoc.code
            if "left_reason" in paths:
                a.left_reason = update.left_reason.strip()[:200]
            if changed:
                bus.emit(s, wire.changed(a))
            if "left_date" in paths and update.left_date is not None:
                left = check_not_future(
                    update.left_date, today=self.today(), field="member.left_date", message="退会日期不能晚于今天"
                )
                a.left_on = check_end(Tenure(a.joined_on, None), left, field="member.left_date", what="退会日期").end
                bus.emit(s, wire.left(a, left))
            a.version += 1
            await s.flush()
            return wire.member(a)

        return await mutate(self.sessions, idem, pb.AssociationMember, work, caller=caller, notify=self.notify)

    async def list_members(
        self,
        *,
        region: RegionCode | None,
        member_type: MemberType | None,
        include_ended: bool,
        page: Page,
        caller: Caller,
    ) -> pb.ListMembersResponse:
        scope = region or caller.region
        caller.require_region(scope)
        q = select(MemberRow).where(MemberRow.region.like(scope.prefix + "%"))
        if member_type is not None:
            q = q.where(MemberRow.member_type == member_type.name)
        if not include_ended:
            q = q.where(MemberRow.left_on.is_(None))
        async with self.sessions() as s:
            return wire.member_list(
                *page.cut(list((await s.execute(page.apply(q, MemberRow.id))).scalars()), key=lambda a: a.id)
            )

    # ---------------------------------------------------------------- volunteers

    async def _volunteer(self, s: AsyncSession, volunteer_id: str, caller: Caller) -> VolunteerRow:
        v = await db.get_or_404(s, VolunteerRow, volunteer_id, "志愿者")
        caller.require_region(v.region)
        return v

    async def _open_pairing(
        self,
        s: AsyncSession,
        *,
        volunteer_id: str | None = None,
        household_id: str | None = None,
        kind: str | None = None,
    ) -> PairingRow | None:
        q = select(PairingRow).where(PairingRow.end_date.is_(None))
        if kind:
            q = q.where(PairingRow.kind == kind)
        if volunteer_id:
            q = q.where(PairingRow.volunteer_id == volunteer_id)
        if household_id:
            q = q.where(PairingRow.household_id == household_id)
        return (await s.execute(q)).scalars().first()

    async def create_volunteer(self, new: NewVolunteer, *, caller: Caller, idem: Idem | None) -> pb.Volunteer:
        async def work(s: AsyncSession) -> pb.Volunteer:
            p = await self.persons.summary(s, new.person_id, caller=caller)
            region = new.village or RegionCode.parse(p.village, field="volunteer.village")
            caller.require_region(region)
            already = (
                await s.execute(select(VolunteerRow.id).where(VolunteerRow.person_id == p.id))
            ).first() is not None
            check_new_volunteer(person_active=p.active, already_volunteer=already)
            v = VolunteerRow(
                id=db.new_id(),
                person_id=p.id,
                region=region.code,
                skills=new.skills.strip()[:100],
                active=True,
                created_at=db.utcnow(),
            )
            s.add(v)
            await s.flush()
            return wire.volunteer(v)

        return await mutate(self.sessions, idem, pb.Volunteer, work, caller=caller, notify=self.notify)

    async def get_volunteer(self, volunteer_id: str, *, caller: Caller) -> pb.Volunteer:
        async with self.sessions() as s:
            return wire.volunteer(await self._volunteer(s, volunteer_id, caller))

    async def list_volunteers(
        self, *, region: RegionCode | None, page: Page, caller: Caller
    ) -> pb.ListVolunteersResponse:
        scope = region or caller.region
        caller.require_region(scope)
        q = select(VolunteerRow).where(VolunteerRow.region.like(scope.prefix + "%"))
        async with self.sessions() as s:
            return wire.volunteer_list(
                *page.cut(list((await s.execute(page.apply(q, VolunteerRow.id))).scalars()), key=lambda v: v.id)
            )

    async def update_volunteer(
        self, volunteer_id: str, update: VolunteerUpdate, *, caller: Caller, idem: Idem | None
    ) -> pb.Volunteer:
        """``active`` and ``skills``. A volunteer with an open pairing is not
        deactivated until the pairing ends (see :func:`check_activation`)."""

        async def work(s: AsyncSession) -> pb.Volunteer:
            v = await self._volunteer(s, volunteer_id, caller)
            if "skills" in update.paths:
                v.skills = check_skills(update.skills)
            if "active" in update.paths and update.active != v.active:
                if update.active:
                    person = await self.persons.summary(s, v.person_id, caller=None)
                    check_activation(True, has_open_pairing=False, person_active=person.active)
                else:
                    check_activation(
                        False,
                        has_open_pairing=await self._open_pairing(s, volunteer_id=v.id) is not None,
                        person_active=True,
                    )
                v.active = update.active
            await s.flush()
            return wire.volunteer(v)

        return await mutate(self.sessions, idem, pb.Volunteer, work, caller=caller, notify=self.notify)

    # ---------------------------------------------------------------- pairings

    async def pairing_rules(self, kind: PairingKind, village: str, on: date) -> Decision[PairingRules]:
        """The region's pairing rule for ``kind`` on ``on`` (jsx_pairing_rules, with its provenance)."""
        decision: Decision[Any] = await self.plugins.acall(
            "jsx_pairing_rules", RegionCode.parse(village), kind=kind.name, on=on
        )
        return decision

    async def pair_volunteer(self, new: NewPairing, *, caller: Caller, idem: Idem | None) -> pb.Pairing:
        async def work(s: AsyncSession) -> pb.Pairing:
            v = await self._volunteer(s, new.volunteer_id, caller)
            h = await self.households.summary(s, new.household_id, caller=caller, for_change=True)
            today = self.today()
            start = check_not_future(
                new.start_date or today,
                today=today,
                field="start_date",
                message="结对开始日期不能晚于今天",
                reason="START_IN_FUTURE",
            )
            decision = await self.pairing_rules(new.kind, h.village, start)
            history = await self.households.history(s, h.id)
            person = await self.persons.summary(s, v.person_id, caller=None)
            open_rows = list(
                (
                    await s.execute(
                        select(PairingRow).where(PairingRow.volunteer_id == v.id, PairingRow.end_date.is_(None))
                    )
                ).scalars()
            )
            check_pairing(
                household_situation=situation_on(history, today),
                household_active=await self._open_pairing(s, household_id=h.id, kind=new.kind.name) is not None,
                volunteer_open=len(open_rows),
                volunteer_deceased=person.deceased,
                volunteer_in_household=await self.households.household_of(s, v.person_id) == h.id,
                volunteer_inactive=not v.active,
                already_paired_here=any(p.household_id == h.id for p in open_rows),
                rules=decision.value,
            )
            p = PairingRow(
                id=db.new_id(),
                volunteer_id=v.id,
                household_id=h.id,
                kind=new.kind.name,
                start_date=start,
                end_reason="",
                created_at=db.utcnow(),
                volunteer_slot=free_slot({p.volunteer_slot for p in open_rows}),
                rule_plugin=decision.plugin,
                rule_version=decision.plugin_version,
                rule_basis="\n".join(decision.value.basis)[:2000],
            )
            s.add(p)
            await s.flush()
            bus.emit(s, wire.paired(p, h.village, new.kind))
            return wire.pairing(p)

        return await mutate(self.sessions, idem, pb.Pairing, work, caller=caller, notify=self.notify)

    async def end_pairing(
        self, pairing_id: str, *, end_date: date | None, reason: str, caller: Caller, idem: Idem | None
    ) -> pb.Pairing:
        async def work(s: AsyncSession) -> pb.Pairing:
            p = await db.get_or_404(s, PairingRow, pairing_id, "结对记录")
            h = await self.households.summary(s, p.household_id, caller=caller)
            end = check_not_future(
                end_date or self.today(), today=self.today(), field="end_date", message="结束日期不能晚于今天"
            )
            t = check_end(Tenure(p.start_date, p.end_date), end)
            p.end_date, p.end_reason = t.end, reason.strip()[:200]
            bus.emit(s, wire.unpaired(p, h.village, end))
            await s.flush()
            return wire.pairing(p)

        return await mutate(self.sessions, idem, pb.Pairing, work, caller=caller, notify=self.notify)

    async def list_pairings(
        self, *, volunteer_id: str, household_id: str, include_ended: bool, page: Page, caller: Caller
    ) -> pb.ListPairingsResponse:
        """The pairings of a volunteer and/or a household (at least one is named)."""
        if not volunteer_id and not household_id:
            raise InvalidArgument.field("volunteer", "请指定志愿者或家庭户（至少一项）", reason="FILTER_REQUIRED")
        async with self.sessions() as s:
            q = select(PairingRow)
            if volunteer_id:
                q = q.where(PairingRow.volunteer_id == (await self._volunteer(s, volunteer_id, caller)).id)
            if household_id:
                q = q.where(
                    PairingRow.household_id == (await self.households.summary(s, household_id, caller=caller)).id
                )
            if not include_ended:
                q = q.where(PairingRow.end_date.is_(None))
            return wire.pairing_list(
                *page.cut(list((await s.execute(page.apply(q, PairingRow.id))).scalars()), key=lambda p: p.id)
            )


__all__ = ["NetworkService", "OpenPairings"]
