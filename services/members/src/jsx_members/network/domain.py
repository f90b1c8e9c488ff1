"""The association's network: members (会员) of the 计生协 at village,
township, county, city or province level, volunteers (志愿者), and the 1:1
pairing of volunteers with households (结对联系) under the region's pairing
rule (1:1 with special families unless a plugin says otherwise). Pure: no I/O."""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

from jsx_members.households.domain import SituationRecord
from jsxcore.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from jsxcore.hookspecs import PairingRules
from jsxcore.values import RegionCode


class MemberType(str, enum.Enum):
    """会员类型."""

    ORDINARY = "普通会员"
    BACKBONE = "骨干会员"
    COUNCIL = "理事"


class PairingKind(str, enum.Enum):
    """How a volunteer is tied to a special family."""

    MEMBER_CONTACT = "会员联系户"
    DUAL_CONTACT = "双岗联系人"


@dataclass(frozen=True)
class Tenure:
    """A dated membership or pairing: active from ``start`` until ``end`` (both inclusive)."""

    start: date
    end: date | None = None

    def active_on(self, on: date) -> bool:
        return self.start <= on and (self.end is None or on <= self.end)


def check_end(tenure: Tenure, end: date, *, field: str = "end_date", what: str = "结束日期") -> Tenure:
    if tenure.end is not None:
        raise FailedPrecondition(f"已于 {tenure.end.isoformat()} 结束，不能重复结束", reason="ALREADY_ENDED")
    if end < tenure.start:
        raise InvalidArgument.field(
            field, f"{what}不能早于开始日期 {tenure.start.isoformat()}", reason="END_BEFORE_START"
        )
    return Tenure(tenure.start, end)


def check_not_future(day: date, *, today: date, field: str, message: str, reason: str = "END_IN_FUTURE") -> date:
    """Ending (or starting) something is recorded when it happened, not ahead."""
    if day > today:
        raise InvalidArgument.field(field, message, reason=reason)
    return day


# ---------------------------------------------------------------- members


def check_association(association: RegionCode, home_village: str, *, field: str = "member.association") -> None:
    """A person joins the association of their village or one above it."""
    if not association.contains(RegionCode.parse(home_village)):
        raise InvalidArgument.field(
            field, "只能加入本人所在村或其上级乡镇、县、市、省的计生协", reason="ASSOCIATION_NOT_HOME"
        )


def check_join(joined: date, *, birth_date: date, today: date, person_active: bool, already_member: bool) -> None:
    """入会: on a day between birth and today, a person still 在册, one open membership at a time."""
    if joined > today or joined < birth_date:
        raise InvalidArgument.field(
            "member.joined_date", "入会日期应在出生日期与今天之间", reason="INVALID_JOINED_DATE"
        )
    if not person_active:
        raise FailedPrecondition("该人员已故或已迁出，不能入会", reason="PERSON_NOT_ACTIVE")
    if already_member:
        raise FailedPrecondition("该人员已是会员，请先办理退会再重新入会", reason="ALREADY_MEMBER")


def check_member_change(left_on: date | None, paths: frozenset[str]) -> None:
    """An ended membership takes only a (corrected) reason."""
    if left_on is not None and paths - {"left_reason"}:
        raise FailedPrecondition(f"该会员已于 {left_on.isoformat()} 退会，只能修改退会原因", reason="MEMBERSHIP_ENDED")


# ---------------------------------------------------------------- volunteers


def check_new_volunteer(*, person_active: bool, already_volunteer: bool) -> None:
    if not person_active:
        raise FailedPrecondition("该人员已故或已迁出，不能登记为志愿者", reason="PERSON_NOT_ACTIVE")
    if already_volunteer:
        raise AlreadyExists("该人员已登记为志愿者", reason="VOLUNTEER_ALREADY_EXISTS")


def check_skills(skills: str, *, field: str = "volunteer.skills") -> str:
    s = skills.strip()
    if len(s) > 100:
        raise InvalidArgument.field(field, "特长不能超过100个字", reason="SKILLS_TOO_LONG")
    return s


def check_activation(active: bool, *, has_open_pairing: bool, person_active: bool) -> None:
    """Deactivating a volunteer who still has an open pairing would leave a
    special family without its contact; reactivating needs a person still 在册."""
    if not active and has_open_pairing:
        raise FailedPrecondition("该志愿者还有未结束的结对，请先结束结对再停用", reason="VOLUNTEER_HAS_PAIRING")
    if active and not person_active:
        raise FailedPrecondition("该人员已故或已迁出，不能重新启用为志愿者", reason="PERSON_NOT_ACTIVE")


# ---------------------------------------------------------------- pairings


#: The rule when nothing else is known: 1:1, special families only (the built-in default's figures).
ONE_TO_ONE = PairingRules(1, True, ("一名志愿者联系一户计生特殊家庭",))


def check_pairing(
    *,
    household_situation: SituationRecord | None,
    household_active: bool,
    volunteer_open: int,
    volunteer_deceased: bool,
    volunteer_in_household: bool,
    volunteer_inactive: bool = False,
    already_paired_here: bool = False,
    rules: PairingRules = ONE_TO_ONE,
) -> None:
    """The region's pairing rule: a volunteer has at most
    ``rules.max_households_per_volunteer`` open pairings (1: one family at a
    time), only special families are paired when the rule says so, and a
    household has one open pairing of each kind (会员联系户, 双岗联系人)
    whatever the rule. ``household_active`` means: an open pairing of this
    kind; ``volunteer_open``: the volunteer's open pairings of every kind;
    ``already_paired_here``: one of them is with this household."""
    basis = "；".join(rules.basis)
    if rules.special_families_only and (household_situation is None or not household_situation.situation.is_special):
        raise FailedPrecondition(
            "只有计生特殊家庭（失独、伤残）需要结对联系，该户当前不是特殊家庭", reason="NOT_SPECIAL_FAMILY"
        )
    if volunteer_inactive:
        raise FailedPrecondition("该志愿者已停止接受结对，请选择其他志愿者", reason="VOLUNTEER_INACTIVE")
    if volunteer_deceased:
        raise FailedPrecondition("该志愿者已故，不能结对", reason="VOLUNTEER_DECEASED")
    if volunteer_in_household:
        raise FailedPrecondition("志愿者不能与自己所在的家庭结对", reason="VOLUNTEER_OWN_HOUSEHOLD")
    if household_active:
        raise FailedPrecondition(
            "该特殊家庭已有同类结对志愿者，请先解除原结对再重新结对", reason="HOUSEHOLD_ALREADY_PAIRED"
        )
    if already_paired_here:
        raise FailedPrecondition("该志愿者已与该户结对，同一户不能重复结对", reason="VOLUNTEER_ALREADY_PAIRED_HERE")
    limit = rules.max_households_per_volunteer
    if volunteer_open >= limit:
        if limit == 1:
            raise FailedPrecondition(
                "该志愿者已结对一户特殊家庭（一对一），请先解除原结对", reason="VOLUNTEER_ALREADY_PAIRED"
            )
        raise FailedPrecondition(
            f"该志愿者已联系 {volunteer_open} 户，按本地结对规则每名志愿者最多联系 {limit} 户（{basis}），"
            "请先解除其他结对或另选志愿者",
            reason="VOLUNTEER_AT_LIMIT",
            metadata={"limit": str(limit), "open": str(volunteer_open)},
        )


def free_slot(taken: Collection[int]) -> int:
    """The lowest slot number a volunteer's open pairings do not use (the
    database keeps (volunteer, slot) unique among open pairings, so two
    pairings racing for the last place cannot both succeed)."""
    slot = 0
    while slot in taken:
        slot += 1
    return slot


# ---------------------------------------------------------------- use-case inputs


@dataclass(frozen=True)
class NewMember:
    person_id: str
    association: RegionCode
    member_type: MemberType
    joined_date: date | None = None


@dataclass(frozen=True)
class MemberUpdate:
    """UpdateMember's input: ``paths`` ⊆ {member_type, association, left_date, left_reason}."""

    paths: frozenset[str]
    member_type: MemberType | None = None
    association: RegionCode | None = None
    left_date: date | None = None
    left_reason: str = ""


@dataclass(frozen=True)
class NewVolunteer:
    person_id: str
    #: where the volunteer serves; the person's village when not given
    village: RegionCode | None = None
    skills: str = ""


@dataclass(frozen=True)
class VolunteerUpdate:
    """UpdateVolunteer's input: ``paths`` ⊆ {active, skills}."""

    paths: frozenset[str]
    active: bool = True
    skills: str = ""


@dataclass(frozen=True)
class NewPairing:
    volunteer_id: str
    household_id: str
    kind: PairingKind = PairingKind.MEMBER_CONTACT
    start_date: date | None = None


__all__ = [
    "ONE_TO_ONE",
    "MemberType",
    "MemberUpdate",
    "NewMember",
    "NewPairing",
    "NewVolunteer",
    "PairingKind",
    "Tenure",
    "VolunteerUpdate",
    "check_activation",
    "check_association",
    "check_end",
    "check_join",
    "check_member_change",
    "check_new_volunteer",
    "check_not_future",
    "check_pairing",
    "check_skills",
    "free_slot",
]
