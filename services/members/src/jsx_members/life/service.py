"""Life-events use cases (户籍变动): a person's 户籍 moves (alone, or with the
household), a child is born into or adopted by a household, part of a
household becomes a household of its own (分户), two households become one
(合户). Each is one transaction through :func:`jsxcore.usecase.mutate`,
all-or-nothing, idempotent by request id, and publishes its fact
(PersonMoved, HouseholdChildAdded, HouseholdSplit, HouseholdMerged) beside
the household events every projection already follows
(HouseholdRegistered, HouseholdMembersChanged, HouseholdSituationChanged).

Persons and households are changed only through their contexts' services;
which region codes exist is the :class:`~jsx_members.life.domain.Places`
given to the constructor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.members.v1 import members_pb2 as pb
from jsx_members.adapters import bus
from jsx_members.households.domain import Relation
from jsx_members.households.service import HouseholdsService
from jsx_members.life import wire
from jsx_members.life.domain import (
    Birth,
    HouseholdPart,
    Move,
    Places,
    check_birth,
    check_merge,
    check_move,
    check_split,
    household_part,
)
from jsx_members.persons.domain import NewPerson, PersonStatus, PersonSummary
from jsx_members.persons.service import PersonsService
from jsxcore.auth import Caller
from jsxcore.errors import FailedPrecondition
from jsxcore.usecase import Idem, mutate
from jsxcore.values import RegionCode


class LifeEventsService:
    """Use cases of the life-events context. ``today`` is injectable for tests."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        persons: PersonsService,
        households: HouseholdsService,
        *,
        places: Places,
        notify: Callable[[], None] | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.sessions = sessions
        self.persons = persons
        self.households = households
        self.places = places
        self.notify = notify
        self.today = today

    # ---------------------------------------------------------------- 户籍 moves

    async def move_person(self, person_id: str, move: Move, *, caller: Caller, idem: Idem | None) -> pb.Person:
        """户口迁移 of a person within the caller's region: to a village of the
        province or out of it. A member leaves the household; the 户主 takes it
        along (asked, or alone in it) — every living member moves then, and
        in the province the household's village changes. PersonMoved for each
        person who moved."""

        async def work(s: AsyncSession) -> pb.Person:
            p = await self.persons.summary(s, person_id, caller=caller)
            checked = check_move(
                move,
                home=RegionCode.parse(p.village),
                birth_date=p.birth_date,
                status=p.status,
                today=self.today(),
                places=self.places,
            )
            hid = await self.households.household_of(s, p.id)
            state = await self.households.state(s, hid, caller=None) if hid is not None else None
            part = household_part(state, p.id, whole_household=checked.whole_household)
            movers: list[PersonSummary] = [p]
            if part is HouseholdPart.LEAVE:
                assert hid is not None
                await self.households.remove_members(s, hid, [p.id])
            elif part is HouseholdPart.ALONG:
                assert state is not None
                others = [await self.persons.summary(s, pid, caller=None) for pid, _ in state.members if pid != p.id]
                movers += [o for o in others if o.status is PersonStatus.ACTIVE]  # the dead stay where they died
            for m in movers:
                await self.persons.move(
                    s, m.id, village=checked.village, moved_to=checked.abroad, moved_on=checked.moved_date
                )
                bus.emit(s, wire.moved(m.id, m.village, checked, hid, part is HouseholdPart.ALONG))
            if part is HouseholdPart.ALONG and checked.village is not None:
                assert hid is not None
                await self.households.relocate(s, hid, checked.village)
            return await self.persons.view(s, p.id, caller=caller)

        return await mutate(self.sessions, idem, pb.Person, work, caller=caller, notify=self.notify)

    # ---------------------------------------------------------------- births and adoptions

    async def record_birth(
        self, household_id: str, child: str | NewPerson, birth: Birth, *, caller: Caller, idem: Idem | None
    ) -> pb.Household:
        """出生/收养登记: ``child`` is a registered person's id or a new person
        (registered in the household's village). HouseholdChildAdded."""

        async def work(s: AsyncSession) -> pb.Household:
            state = await self.households.state(s, household_id, caller=caller)
            if isinstance(child, NewPerson):
                kid = await self.persons.register(
                    s, replace(child, village=state.village), caller=caller, prefix="new_person."
                )
                field = "new_person"
            else:
                kid = await self.persons.summary(s, child, caller=caller)
                field = "person"
            on = check_birth(birth, kid, today=self.today(), child_field=field)
            if state.relation_of(kid.id) is not None:
                raise FailedPrecondition("该子女已是本户成员，无需重复登记", reason="ALREADY_IN_HOUSEHOLD")
            count = await self.households.add_members(s, state.id, [(kid, birth.relation)], field="relation")
            bus.emit(
                s,
                wire.child_added(
                    state.id,
                    state.village,
                    kid.id,
                    birth.relation,
                    adopted=birth.adopted,
                    on=on,
                    head_person_id=state.head_person_id,
                    member_count=count,
                ),
            )
            return await self.households.present(s, state.id)

        return await mutate(self.sessions, idem, pb.Household, work, caller=caller, notify=self.notify)

    # ---------------------------------------------------------------- 分户 and 合户

    async def split_household(
        self,
        household_id: str,
        members: Sequence[tuple[str, Relation]],
        *,
        address: str,
        split_date: date | None,
        caller: Caller,
        idem: Idem | None,
    ) -> pb.SplitHouseholdResponse:
        """分户: ``members`` (never the 户主) leave for a new household of the same
        village, the one with Relation.HEAD as its head. HouseholdSplit."""

        async def work(s: AsyncSession) -> pb.SplitHouseholdResponse:
            state = await self.households.state(s, household_id, caller=caller)
            new_head = check_split(state, members, split_date, today=self.today())
            assert split_date is not None
            people = [(await self.persons.summary(s, pid, caller=None), rel) for pid, rel in members]
            moving = [pid for pid, _ in members]
            left = await self.households.remove_members(s, state.id, moving)
            new_id = await self.households.register(
                s,
                head_id=new_head,
                members=people,
                village=RegionCode.parse(state.village),
                address=address.strip()[:200] or state.address,
                caller=caller,
            )
            bus.emit(s, wire.split(state.id, state.village, new_id, moving, new_head, split_date, left))
            return wire.split_response(
                await self.households.present(s, state.id), await self.households.present(s, new_id)
            )

        return await mutate(self.sessions, idem, pb.SplitHouseholdResponse, work, caller=caller, notify=self.notify)

    async def merge_households(
        self,
        household_id: str,
        merged_id: str,
        members: Sequence[tuple[str, Relation]],
        *,
        merge_date: date | None,
        caller: Caller,
        idem: Idem | None,
    ) -> pb.Household:
        """合户: every member of ``merged_id`` joins ``household_id`` with the
        relation given; ``merged_id`` is closed on ``merge_date`` (its open
        situation ends then). HouseholdMerged."""

        async def work(s: AsyncSession) -> pb.Household:
            keep = await self.households.state(s, household_id, caller=caller)
            gone = await self.households.state(s, merged_id, caller=caller)
            check_merge(keep, gone, members, merge_date, today=self.today())
            assert merge_date is not None
            people = [(await self.persons.summary(s, pid, caller=None), rel) for pid, rel in members]
            await self.households.close_into(s, gone.id, keep.id, merge_date, caller=caller)
            count = await self.households.add_members(s, keep.id, people, field="members")
            bus.emit(s, wire.merged(keep.id, keep.village, gone.id, [pid for pid, _ in members], merge_date, count))
            return await self.households.present(s, keep.id)

        return await mutate(self.sessions, idem, pb.Household, work, caller=caller, notify=self.notify)


__all__ = ["LifeEventsService"]
