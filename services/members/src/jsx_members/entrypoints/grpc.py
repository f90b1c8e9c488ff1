"""gRPC entrypoint: jsx.members.v1.MembersService over the contexts' use cases.

The runtime's interceptors authenticate the caller, check the permission each
RPC declares in members.proto and map jsxcore errors to rich statuses. Each
RPC below maps its request to the use case's plain arguments with
:mod:`jsxcore.wire` (resource names, enums, dates, regions, page tokens and
field masks — their field violations come from here), builds the AIP-155
:class:`~jsxcore.usecase.Idem` of a mutating call, and passes the caller;
nothing else. ``build_runtime`` wires database, migrations, the outbox relay
and the server; ``main`` is ``python -m jsx_members`` / ``jsx members serve``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from jsx.common.v1 import common_pb2
from jsx.members.v1 import members_pb2 as pb
from jsx.members.v1 import members_pb2_grpc
from jsx_members.adapters.bus import SERVICE
from jsx_members.adapters.pb import enum_in
from jsx_members.households.domain import HouseholdUpdate, NewHousehold, Relation, Situation, SituationRecord
from jsx_members.life.domain import Birth, Move
from jsx_members.migrations import migrate
from jsx_members.network.domain import (
    MemberType,
    MemberUpdate,
    NewMember,
    NewPairing,
    NewVolunteer,
    PairingKind,
    VolunteerUpdate,
)
from jsx_members.persons.domain import HukouType, NewPerson, PersonStatus, PersonUpdate
from jsx_members.service import SERVICE_NAME, MembersService
from jsx_members.sites.domain import SIX_HAVES, NewSite, SiteKind, SiteUpdate
from jsx_members.sites.wire import SIX_FIELDS
from jsxcore import paging, wire
from jsxcore.auth import current_caller
from jsxcore.config import ServiceConfig
from jsxcore.errors import ErrorCollector, FieldViolation, InvalidArgument
from jsxcore.outbox import Relay
from jsxcore.runtime import ServiceRuntime, list_plugins_response, run_service
from jsxcore.usecase import Idem

Context = grpc.aio.ServicerContext
T = TypeVar("T")


# ---------------------------------------------------------------- request mapping


def _idem(rpc: str, request: Any) -> Idem:
    return Idem.of(SERVICE_NAME, rpc, request)


def _page(rpc: str, request: Any, *filters: object) -> paging.Page:
    return paging.page(request.page_size, request.page_token, query=f"{SERVICE_NAME}/{rpc}", filters=filters)


def _paths(
    mask: FieldMask, settable: set[str], *, default: set[str] | None = None, why: dict[str, str] | None = None
) -> frozenset[str]:
    """AIP-134: the paths of ``mask``, checked against what may be changed.

    Unknown or immutable paths are INVALID_ARGUMENT with one field violation
    each (``why`` gives the clerk the reason for known immutable fields); an
    empty mask means ``default``, or is refused when there is none."""
    paths = set(mask.paths)
    if not paths:
        if default is None:
            raise InvalidArgument.field(
                "update_mask", "请在 update_mask 中列出要修改的字段", reason="UPDATE_MASK_REQUIRED"
            )
        return frozenset(default)
    errors = ErrorCollector()
    for path in sorted(paths - settable):
        errors.add(
            "update_mask",
            (why or {}).get(path) or f"字段“{path[:60]}”不存在或不可修改；可修改的字段：{'、'.join(sorted(settable))}",
        )
    errors.raise_if_any("要修改的字段有误，请按字段说明修改后重试", reason="FIELD_NOT_UPDATABLE")
    return frozenset(paths)


def _code(region: Any) -> str:
    return region.code if region is not None else ""


def _name(value: Any) -> str:
    return value.name if value is not None else ""


def _situation(fs: pb.FamilySituation, field: str) -> SituationRecord:
    kind = enum_in(pb.SituationKind, "SITUATION_KIND_", Situation, fs.kind, f"{field}.kind", "家庭类型")
    start = wire.date_from(fs.effective_from, f"{field}.effective_from", required=True)
    assert start is not None
    return SituationRecord(kind, start, fs.disability_grade or None, fs.honor_certificate.strip(), fs.note.strip())


def _members(
    members: Sequence[pb.HouseholdMember], field: str = "household.members"
) -> tuple[tuple[str, Relation], ...]:
    return tuple(
        (
            wire.id_from(m.person, "persons", f"{field}[{i}].person"),
            enum_in(pb.Relation, "RELATION_", Relation, m.relation, f"{field}[{i}].relation", "与户主关系"),
        )
        for i, m in enumerate(members)
    )


def _hukou(p: pb.Person, field: str) -> HukouType:
    return enum_in(pb.HukouType, "HUKOU_TYPE_", HukouType, p.hukou_type, field, "户籍类型", HukouType.RURAL)


def _child(request: pb.RecordBirthRequest) -> str | NewPerson:
    """RecordBirth's child: a registered person's id, or a new person (the household's village is filled in later)."""
    has_new = request.HasField("new_person")
    if request.person.strip() and has_new:
        raise InvalidArgument.field(
            "person", "请只填写 person（已登记的子女）或 new_person（新登记的子女）之一", reason="CHILD_AMBIGUOUS"
        )
    if not has_new:
        if not request.person.strip():
            raise InvalidArgument.field(
                "person", "请填写子女：已登记的填 person，新登记的填 new_person", reason="CHILD_REQUIRED"
            )
        return wire.id_from(request.person, "persons", "person")
    np = request.new_person
    return NewPerson(
        name=np.display_name,
        id_number=np.id_number,
        phone=np.phone,
        village="",
        hukou=_hukou(np, "new_person.hukou_type"),
        card_number=np.card_number,
    )


def _six(six: pb.SixHaves) -> tuple[str, ...]:
    return tuple(item for f, item in zip(SIX_FIELDS, SIX_HAVES, strict=True) if getattr(six, f))


_PERSON_SETTABLE = {"display_name", "phone", "village", "hukou_type", "status", "death_date", "card_number"}
_PERSON_IMMUTABLE = {
    "id_number": "身份证号不可修改（如登记错误，请联系县计生协更正）",
    "sex": "性别由身份证号决定，不可单独修改",
    "birth_date": "出生日期由身份证号决定，不可单独修改",
}
_HOUSEHOLD_IMMUTABLE = {
    "village": "家庭户所属村不可修改；迁户请将成员移出后在新村登记",
    "situations": "家庭类型请用“记录家庭类型变更”（RecordSituation）登记，历史记录不可改写",
    "name": "资源名不可修改",
    "create_time": "登记时间不可修改",
}
_MEMBER_IMMUTABLE = {
    "person": "会员记录的人员不可修改；请为该人员另行办理入会",
    "joined_date": "入会日期不可修改；如登记错误，请退会后重新登记",
    "level": "会员层级由所属协会（association）决定，请修改 association",
}
_VOLUNTEER_IMMUTABLE = {"person": "志愿者对应的人员不可修改", "village": "志愿者服务区域不可修改"}
_SITE_SETTABLE = {"display_name", "address", "six_haves", "manager"}
_SITE_IMMUTABLE = {
    "kind": "场所类型不可修改；如改建为其他类型，请摘牌后重新登记",
    "village": "场所所在村不可修改；如搬迁到其他村，请摘牌后重新登记",
    "opened_date": "挂牌日期不可修改",
    "closed_date": "摘牌请用“摘牌”操作（CloseSite）",
}


class MembersServicer(members_pb2_grpc.MembersServiceServicer):
    """One method per RPC of members.proto: proto → use-case arguments, nothing else."""

    def __init__(self, service: MembersService, plugins: Any = None) -> None:
        self.service = service
        self.plugins = plugins
        self.persons = service.persons
        self.households = service.households
        self.network = service.network
        self.sites = service.sites
        self.life = service.life

    # ---------------------------------------------------------------- persons

    async def CreatePerson(self, request: pb.CreatePersonRequest, context: Context) -> pb.Person:
        p = request.person
        death = wire.date_from(p.death_date, "person.death_date")
        hukou = _hukou(p, "person.hukou_type")
        new = NewPerson(
            name=p.display_name,
            id_number=p.id_number,
            phone=p.phone,
            village=p.village.code,
            hukou=hukou,
            death_date=death,
            card_number=p.card_number,
        )
        return await self.persons.create_person(new, caller=current_caller(), idem=_idem("CreatePerson", request))

    async def GetPerson(self, request: pb.GetPersonRequest, context: Context) -> pb.Person:
        return await self.persons.get_person(
            wire.id_from(request.name, "persons", "name"),
            full=request.view == pb.PERSON_VIEW_FULL,
            caller=current_caller(),
        )

    async def LookupPerson(self, request: pb.LookupPersonRequest, context: Context) -> pb.Person:
        return await self.persons.lookup_person(
            request.id_number, full=request.view == pb.PERSON_VIEW_FULL, caller=current_caller()
        )

    async def ListPersons(self, request: pb.ListPersonsRequest, context: Context) -> pb.ListPersonsResponse:
        region = wire.region_from(request.region, "region", required=False)
        status = (
            enum_in(pb.PersonStatus, "PERSON_STATUS_", PersonStatus, request.status, "status", "状态")
            if request.status
            else None
        )
        page = _page("ListPersons", request, _code(region), _name(status))
        return await self.persons.list_persons(
            region=region, status=status, full=request.view == pb.PERSON_VIEW_FULL, page=page, caller=current_caller()
        )

    async def UpdatePerson(self, request: pb.UpdatePersonRequest, context: Context) -> pb.Person:
        paths = _paths(request.update_mask, _PERSON_SETTABLE, default=_PERSON_SETTABLE, why=_PERSON_IMMUTABLE)
        p = request.person
        person_id = wire.id_from(p.name, "persons", "person.name")
        unreadable: dict[str, list[FieldViolation]] = {}

        def read(path: str, fn: Callable[[], T]) -> T | None:
            try:
                return fn()
            except InvalidArgument as e:
                unreadable[path] = list(e.violations)
                return None

        hukou = status = death = None
        if "hukou_type" in paths:
            hukou = read(
                "hukou_type",
                lambda: enum_in(pb.HukouType, "HUKOU_TYPE_", HukouType, p.hukou_type, "person.hukou_type", "户籍类型"),
            )
        if "status" in paths or "death_date" in paths:
            status = read(
                "status",
                lambda: enum_in(
                    pb.PersonStatus,
                    "PERSON_STATUS_",
                    PersonStatus,
                    p.status,
                    "person.status",
                    "人员状态",
                    PersonStatus.ACTIVE,
                ),
            )
            death = read("death_date", lambda: wire.date_from(p.death_date, "person.death_date"))
        update = PersonUpdate(
            paths=paths,
            name=p.display_name,
            phone=p.phone,
            village=p.village.code,
            hukou=hukou,
            status=status,
            death_date=death,
            card_number=p.card_number,
            unreadable=unreadable,
        )
        return await self.persons.update_person(
            person_id, update, caller=current_caller(), idem=_idem("UpdatePerson", request)
        )

    async def BatchGetPayees(self, request: pb.BatchGetPayeesRequest, context: Context) -> pb.BatchGetPayeesResponse:
        ids = [wire.id_from(n, "persons", f"names[{i}]") for i, n in enumerate(request.names)]
        return await self.persons.batch_get_payees(ids, caller=current_caller())

    async def BatchGetPersons(self, request: pb.BatchGetPersonsRequest, context: Context) -> pb.BatchGetPersonsResponse:
        ids = [wire.id_from(n, "persons", f"names[{i}]") for i, n in enumerate(request.names)]
        return await self.persons.batch_get_persons(ids, caller=current_caller())

    async def RecordDeath(self, request: pb.RecordDeathRequest, context: Context) -> pb.Person:
        return await self.persons.record_death(
            wire.id_from(request.person, "persons", "person"),
            wire.date_from(request.death_date, "death_date"),
            caller=current_caller(),
            idem=_idem("RecordDeath", request),
        )

    async def MovePerson(self, request: pb.MovePersonRequest, context: Context) -> pb.Person:
        move = Move(
            destination=wire.region_from(request.destination, "destination", required=False),
            out_of_province=request.out_of_province,
            moved_date=wire.date_from(request.moved_date, "moved_date"),
            whole_household=request.whole_household,
        )
        return await self.life.move_person(
            wire.id_from(request.person, "persons", "person"),
            move,
            caller=current_caller(),
            idem=_idem("MovePerson", request),
        )

    # ---------------------------------------------------------------- households

    async def CreateHousehold(self, request: pb.CreateHouseholdRequest, context: Context) -> pb.Household:
        hh = request.household
        new = NewHousehold(
            head_id=wire.id_from(hh.head, "persons", "household.head"),
            village=hh.village.code,
            address=hh.address,
            members=_members(hh.members),
            situations=tuple(_situation(fs, f"situations[{i}]") for i, fs in enumerate(request.situations)),
        )
        return await self.households.create_household(
            new, caller=current_caller(), idem=_idem("CreateHousehold", request)
        )

    async def GetHousehold(self, request: pb.GetHouseholdRequest, context: Context) -> pb.Household:
        return await self.households.get_household(
            wire.id_from(request.name, "households", "name"), caller=current_caller()
        )

    async def ListHouseholds(self, request: pb.ListHouseholdsRequest, context: Context) -> pb.ListHouseholdsResponse:
        region = wire.region_from(request.region, "region", required=False)
        situation = (
            enum_in(pb.SituationKind, "SITUATION_KIND_", Situation, request.situation, "situation", "家庭类型")
            if request.situation
            else None
        )
        as_of = wire.date_from(request.as_of, "as_of")
        page = _page(
            "ListHouseholds",
            request,
            _code(region),
            _name(situation),
            as_of.isoformat() if as_of else "",
            request.unpaired,
        )
        return await self.households.list_households(
            region=region,
            situation=situation,
            as_of=as_of,
            unpaired=request.unpaired,
            page=page,
            caller=current_caller(),
        )

    async def RecordSituation(self, request: pb.RecordSituationRequest, context: Context) -> pb.Household:
        household_id = wire.id_from(request.household, "households", "household")
        record = _situation(request.situation, "situation")
        ended = wire.date_from(request.situation.effective_to, "situation.effective_to")
        return await self.households.record_situation(
            household_id, record, ended=ended, caller=current_caller(), idem=_idem("RecordSituation", request)
        )

    async def UpdateHousehold(self, request: pb.UpdateHouseholdRequest, context: Context) -> pb.Household:
        paths = _paths(request.update_mask, {"address", "members", "head"}, why=_HOUSEHOLD_IMMUTABLE)
        hh = request.household
        household_id = wire.id_from(hh.name, "households", "household.name")
        update = HouseholdUpdate(
            paths=paths,
            address=hh.address,
            head_id=wire.id_from(hh.head, "persons", "household.head")
            if "head" in paths and "members" in paths
            else "",
            members=_members(hh.members) if "members" in paths else (),
        )
        return await self.households.update_household(
            household_id, update, caller=current_caller(), idem=_idem("UpdateHousehold", request)
        )

    async def RecordBirth(self, request: pb.RecordBirthRequest, context: Context) -> pb.Household:
        household_id = wire.id_from(request.household, "households", "household")
        child = _child(request)
        birth = Birth(
            relation=enum_in(pb.Relation, "RELATION_", Relation, request.relation, "relation", "与户主关系"),
            adopted=request.adopted,
            adoption_date=wire.date_from(request.adoption_date, "adoption_date"),
        )
        return await self.life.record_birth(
            household_id, child, birth, caller=current_caller(), idem=_idem("RecordBirth", request)
        )

    async def SplitHousehold(self, request: pb.SplitHouseholdRequest, context: Context) -> pb.SplitHouseholdResponse:
        return await self.life.split_household(
            wire.id_from(request.household, "households", "household"),
            _members(request.members, "members"),
            address=request.address,
            split_date=wire.date_from(request.split_date, "split_date"),
            caller=current_caller(),
            idem=_idem("SplitHousehold", request),
        )

    async def MergeHouseholds(self, request: pb.MergeHouseholdsRequest, context: Context) -> pb.Household:
        return await self.life.merge_households(
            wire.id_from(request.household, "households", "household"),
            wire.id_from(request.merged_household, "households", "merged_household"),
            _members(request.members, "members"),
            merge_date=wire.date_from(request.merge_date, "merge_date"),
            caller=current_caller(),
            idem=_idem("MergeHouseholds", request),
        )

    async def RecordRecovery(self, request: pb.RecordRecoveryRequest, context: Context) -> pb.Household:
        return await self.households.record_recovery(
            wire.id_from(request.household, "households", "household"),
            wire.date_from(request.recovered_date, "recovered_date"),
            request.note,
            caller=current_caller(),
            idem=_idem("RecordRecovery", request),
        )

    async def ListUnpairedFamilies(
        self, request: pb.ListUnpairedFamiliesRequest, context: Context
    ) -> pb.ListUnpairedFamiliesResponse:
        region = wire.region_from(request.region, "region", required=False)
        return await self.households.list_unpaired_families(
            region=region, page=_page("ListUnpairedFamilies", request, _code(region)), caller=current_caller()
        )

    # ---------------------------------------------------------------- association members

    async def CreateMember(self, request: pb.CreateMemberRequest, context: Context) -> pb.AssociationMember:
        mem = request.member
        person_id = wire.id_from(mem.person, "persons", "member.person")
        association = wire.region_from(mem.association, "member.association")
        assert association is not None
        new = NewMember(
            person_id=person_id,
            association=association,
            member_type=enum_in(
                pb.MemberType, "MEMBER_TYPE_", MemberType, mem.member_type, "member.member_type", "会员类别"
            ),
            joined_date=wire.date_from(mem.joined_date, "member.joined_date"),
        )
        return await self.network.create_member(new, caller=current_caller(), idem=_idem("CreateMember", request))

    async def GetMember(self, request: pb.GetMemberRequest, context: Context) -> pb.AssociationMember:
        return await self.network.get_member(wire.id_from(request.name, "members", "name"), caller=current_caller())

    async def ListMembers(self, request: pb.ListMembersRequest, context: Context) -> pb.ListMembersResponse:
        region = wire.region_from(request.region, "region", required=False)
        member_type = (
            enum_in(pb.MemberType, "MEMBER_TYPE_", MemberType, request.member_type, "member_type", "会员类别")
            if request.member_type
            else None
        )
        page = _page("ListMembers", request, _code(region), _name(member_type), request.include_ended)
        return await self.network.list_members(
            region=region,
            member_type=member_type,
            include_ended=request.include_ended,
            page=page,
            caller=current_caller(),
        )

    async def EndMembership(self, request: pb.EndMembershipRequest, context: Context) -> pb.AssociationMember:
        return await self.network.end_membership(
            wire.id_from(request.name, "members", "name"),
            left_date=wire.date_from(request.left_date, "left_date"),
            reason=request.reason,
            caller=current_caller(),
            idem=_idem("EndMembership", request),
        )

    async def UpdateMember(self, request: pb.UpdateMemberRequest, context: Context) -> pb.AssociationMember:
        paths = _paths(
            request.update_mask,
            {"member_type", "association", "left_date", "left_reason"},
            default={"member_type", "association"},
            why=_MEMBER_IMMUTABLE,
        )
        mem = request.member
        member_id = wire.id_from(mem.name, "members", "member.name")
        update = MemberUpdate(
            paths=paths,
            member_type=(
                enum_in(pb.MemberType, "MEMBER_TYPE_", MemberType, mem.member_type, "member.member_type", "会员类别")
                if "member_type" in paths
                else None
            ),
            association=wire.region_from(mem.association, "member.association") if "association" in paths else None,
            left_date=wire.date_from(mem.left_date, "member.left_date", required=True)
            if "left_date" in paths
            else None,
            left_reason=mem.left_reason,
        )
        return await self.network.update_member(
            member_id, update, caller=current_caller(), idem=_idem("UpdateMember", request)
        )

    # ---------------------------------------------------------------- volunteers and pairings

    async def CreateVolunteer(self, request: pb.CreateVolunteerRequest, context: Context) -> pb.Volunteer:
        vol = request.volunteer
        new = NewVolunteer(
            person_id=wire.id_from(vol.person, "persons", "volunteer.person"),
            village=wire.region_from(vol.village, "volunteer.village", required=False),
            skills=vol.skills,
        )
        return await self.network.create_volunteer(new, caller=current_caller(), idem=_idem("CreateVolunteer", request))

    async def GetVolunteer(self, request: pb.GetVolunteerRequest, context: Context) -> pb.Volunteer:
        return await self.network.get_volunteer(
            wire.id_from(request.name, "volunteers", "name"), caller=current_caller()
        )

    async def ListVolunteers(self, request: pb.ListVolunteersRequest, context: Context) -> pb.ListVolunteersResponse:
        region = wire.region_from(request.region, "region", required=False)
        return await self.network.list_volunteers(
            region=region, page=_page("ListVolunteers", request, _code(region)), caller=current_caller()
        )

    async def UpdateVolunteer(self, request: pb.UpdateVolunteerRequest, context: Context) -> pb.Volunteer:
        paths = _paths(
            request.update_mask, {"active", "skills"}, default={"active", "skills"}, why=_VOLUNTEER_IMMUTABLE
        )
        vol = request.volunteer
        volunteer_id = wire.id_from(vol.name, "volunteers", "volunteer.name")
        update = VolunteerUpdate(paths=paths, active=vol.active, skills=vol.skills)
        return await self.network.update_volunteer(
            volunteer_id, update, caller=current_caller(), idem=_idem("UpdateVolunteer", request)
        )

    async def PairVolunteer(self, request: pb.PairVolunteerRequest, context: Context) -> pb.Pairing:
        new = NewPairing(
            volunteer_id=wire.id_from(request.volunteer, "volunteers", "volunteer"),
            household_id=wire.id_from(request.household, "households", "household"),
            kind=enum_in(
                pb.PairingKind,
                "PAIRING_KIND_",
                PairingKind,
                request.kind,
                "kind",
                "结对类型",
                PairingKind.MEMBER_CONTACT,
            ),
            start_date=wire.date_from(request.start_date, "start_date"),
        )
        return await self.network.pair_volunteer(new, caller=current_caller(), idem=_idem("PairVolunteer", request))

    async def EndPairing(self, request: pb.EndPairingRequest, context: Context) -> pb.Pairing:
        return await self.network.end_pairing(
            wire.id_from(request.name, "pairings", "name"),
            end_date=wire.date_from(request.end_date, "end_date"),
            reason=request.reason,
            caller=current_caller(),
            idem=_idem("EndPairing", request),
        )

    async def ListPairings(self, request: pb.ListPairingsRequest, context: Context) -> pb.ListPairingsResponse:
        volunteer_id = wire.id_from(request.volunteer, "volunteers", "volunteer", required=False)
        household_id = wire.id_from(request.household, "households", "household", required=False)
        page = _page("ListPairings", request, volunteer_id, household_id, request.include_ended)
        return await self.network.list_pairings(
            volunteer_id=volunteer_id,
            household_id=household_id,
            include_ended=request.include_ended,
            page=page,
            caller=current_caller(),
        )

    # ---------------------------------------------------------------- sites

    async def CreateSite(self, request: pb.CreateSiteRequest, context: Context) -> pb.Site:
        st = request.site
        new = NewSite(
            kind=enum_in(pb.SiteKind, "SITE_KIND_", SiteKind, st.kind, "site.kind", "场所类型"),
            name=st.display_name,
            village=st.village.code,
            address=st.address,
            six_haves=_six(st.six_haves),
            opened_date=wire.date_from(st.opened_date, "site.opened_date"),
            manager_id=wire.id_from(st.manager, "persons", "site.manager", required=False),
        )
        return await self.sites.create_site(new, caller=current_caller(), idem=_idem("CreateSite", request))

    async def GetSite(self, request: pb.GetSiteRequest, context: Context) -> pb.Site:
        return await self.sites.get_site(wire.id_from(request.name, "sites", "name"), caller=current_caller())

    async def ListSites(self, request: pb.ListSitesRequest, context: Context) -> pb.ListSitesResponse:
        region = wire.region_from(request.region, "region", required=False)
        kind = enum_in(pb.SiteKind, "SITE_KIND_", SiteKind, request.kind, "kind", "场所类型") if request.kind else None
        page = _page("ListSites", request, _code(region), _name(kind), request.include_closed)
        return await self.sites.list_sites(
            region=region, kind=kind, include_closed=request.include_closed, page=page, caller=current_caller()
        )

    async def UpdateSite(self, request: pb.UpdateSiteRequest, context: Context) -> pb.Site:
        paths = _paths(request.update_mask, _SITE_SETTABLE, default=_SITE_SETTABLE, why=_SITE_IMMUTABLE)
        st = request.site
        site_id = wire.id_from(st.name, "sites", "site.name")
        update = SiteUpdate(
            paths=paths,
            name=st.display_name,
            address=st.address,
            six_haves=_six(st.six_haves),
            manager_id=wire.id_from(st.manager, "persons", "site.manager", required=False)
            if "manager" in paths
            else "",
        )
        return await self.sites.update_site(site_id, update, caller=current_caller(), idem=_idem("UpdateSite", request))

    async def CloseSite(self, request: pb.CloseSiteRequest, context: Context) -> pb.Site:
        return await self.sites.close_site(
            wire.id_from(request.name, "sites", "name"),
            closed_date=wire.date_from(request.closed_date, "closed_date"),
            reason=request.reason,
            caller=current_caller(),
            idem=_idem("CloseSite", request),
        )

    # ---------------------------------------------------------------- plugins

    async def ListPlugins(
        self, request: common_pb2.ListPluginsRequest, context: Context
    ) -> common_pb2.ListPluginsResponse:
        return list_plugins_response(self.plugins, request)


# Fail at import, not at call time, if the proto gains an RPC nobody serves.
_missing = set(pb.DESCRIPTOR.services_by_name["MembersService"].methods_by_name) - set(vars(MembersServicer))
assert not _missing, f"unbound RPCs: {_missing}"


def build_runtime(config: ServiceConfig, **runtime_kw: Any) -> tuple[ServiceRuntime, MembersService, Relay]:
    """The members process: server, service and outbox relay (not started)."""
    rt = ServiceRuntime(config, **runtime_kw)
    relay = Relay(rt.sessions, config.nats_url, service=SERVICE, replicas=config.stream_replicas)
    service = MembersService(
        rt.sessions, config.field_cipher(), config.blind_index(), on_commit=relay.notify, plugins=rt.plugins
    )
    rt.add_servicer(
        members_pb2_grpc.add_MembersServiceServicer_to_server, MembersServicer(service, rt.plugins), SERVICE_NAME
    )
    rt.add_background("outbox-relay", relay.run)
    rt.on_shutdown(relay.stop)
    return rt, service, relay


def main() -> None:
    run_service(SERVICE, migrate, build_runtime)
