"""Life events of persons and households (户籍变动): a 户籍 move, a child born
or adopted, 分户 (part of a household becomes its own) and 合户 (two
households become one). Pure: no I/O — the service loads the person and the
households and hands them in. A death is the persons context's (it must
also follow UpdatePerson), a recovery the households context's (it is a
situation change).

Every refusal is a :mod:`jsxcore.errors` error with a Chinese message a
clerk can act on; wrong input is INVALID_ARGUMENT naming the request's
field, a state that does not allow the change FAILED_PRECONDITION.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from jsx_members.households.domain import ADULT_AGE, HouseholdState, Relation, age_on
from jsx_members.persons.domain import PersonStatus, PersonSummary
from jsxcore.errors import ErrorCollector, FailedPrecondition, InvalidArgument
from jsxcore.values import RegionCode, RegionLevel


class Places(Protocol):
    """Which region codes exist (the region registry, or what is known without it)."""

    def known(self, region: RegionCode) -> bool:
        """Whether ``region`` is a division that exists (well-formed is not enough: 431281999999 is not)."""
        ...


# ---------------------------------------------------------------- 户籍 moves


@dataclass(frozen=True)
class Move:
    """MovePerson's input. ``destination`` None only with ``out_of_province``."""

    destination: RegionCode | None
    out_of_province: bool
    moved_date: date | None
    whole_household: bool = False


@dataclass(frozen=True)
class CheckedMove:
    """A move that passed :func:`check_move`: in the province to ``village``, or out of it (to ``abroad``, when known)."""

    village: RegionCode | None
    abroad: RegionCode | None
    moved_date: date
    whole_household: bool

    @property
    def out_of_province(self) -> bool:
        return self.village is None

    @property
    def destination(self) -> RegionCode | None:
        return self.village or self.abroad


def check_move(
    move: Move, *, home: RegionCode, birth_date: date, status: PersonStatus, today: date, places: Places
) -> CheckedMove:
    """户口迁移: a date between birth and today; a destination that exists —
    a village (12 digits) of the home province other than the home village,
    or any region outside the province (the flag alone when the place is not
    known); for a person still registered here."""
    errors = ErrorCollector()
    when = move.moved_date
    if when is None:
        errors.add("moved_date", "请填写迁移日期")
    elif when > today:
        errors.add("moved_date", f"迁移日期 {when.isoformat()} 晚于今天，请核对")
    elif when < birth_date:
        errors.add("moved_date", f"迁移日期 {when.isoformat()} 早于出生日期 {birth_date.isoformat()}，请核对")
    dest = move.destination
    village: RegionCode | None = None
    abroad: RegionCode | None = None
    in_province = dest is not None and dest.code[:2] == home.code[:2]
    if dest is None:
        if not move.out_of_province:
            errors.add(
                "destination",
                "请填写迁往地区：本省请填12位村（社区）级代码，外省可填县级代码；迁往外省且不知具体地点时请选择“迁出省外”",
            )
    elif not places.known(dest):
        errors.add("destination", f"迁往地区代码 {dest.short} 不存在，请核对（本省请填12位村（社区）级代码）")
    elif in_province:
        if move.out_of_province:
            errors.add("out_of_province", f"迁往地区 {dest.short} 在本省内，不能同时选择“迁出省外”")
        elif dest.level is not RegionLevel.VILLAGE:
            errors.add("destination", f"迁往本省请填写12位村（社区）级代码，{dest.short} 不是村级代码")
        elif dest == home:
            errors.add("destination", "迁往地区与现所属村相同，无需迁移")
        else:
            village = dest
    else:
        abroad = dest
    errors.raise_if_any("户籍迁移信息有误，请按字段说明修改后重试", reason="INVALID_MOVE")
    assert when is not None
    if status is PersonStatus.DECEASED:
        raise FailedPrecondition("该人员已登记死亡，不能办理户籍迁移", reason="PERSON_DECEASED")
    if status is PersonStatus.MOVED_OUT:
        raise FailedPrecondition("该人员户籍已迁出本省", reason="PERSON_MOVED_OUT")
    return CheckedMove(village, abroad, when, move.whole_household)


class HouseholdPart(enum.Enum):
    """What a move does to the person's household."""

    NONE = "none"  # in no household
    LEAVE = "leave"  # the person leaves it
    ALONG = "along"  # the household moves with its head


def household_part(state: HouseholdState | None, person_id: str, *, whole_household: bool) -> HouseholdPart:
    """A member leaves; the 户主 takes the household along when asked to (整户迁移)
    or when alone in it, and is refused when others would stay without a head."""
    if state is None:
        if whole_household:
            raise InvalidArgument.field(
                "whole_household", "该人员不在任何家庭户中，不能整户迁移", reason="NOT_IN_HOUSEHOLD"
            )
        return HouseholdPart.NONE
    if state.head_person_id != person_id:
        if whole_household:
            raise InvalidArgument.field("whole_household", "整户迁移须由户主办理，请选择该户户主", reason="NOT_HEAD")
        return HouseholdPart.LEAVE
    if whole_household or len(state.members) == 1:
        return HouseholdPart.ALONG
    raise FailedPrecondition(
        "户主迁出后该户其他成员将没有户主：请先更换户主（UpdateHousehold），或选择整户迁移",
        reason="HEAD_MUST_STAY",
    )


# ---------------------------------------------------------------- births and adoptions


#: The relations a child may have to the head.
CHILD_RELATIONS = (Relation.SON, Relation.DAUGHTER, Relation.GRANDCHILD)


@dataclass(frozen=True)
class Birth:
    """RecordBirth's input besides the child."""

    relation: Relation
    adopted: bool = False
    adoption_date: date | None = None


def check_birth(birth: Birth, child: PersonSummary, *, today: date, child_field: str = "person") -> date:
    """出生/收养: a child (子, 女 as the 身份证's sex says, or 孙子女), a minor —
    on the adoption date for an adoption, today for a birth registration —
    adopted between birth and today. Returns the event's date (birth or
    adoption)."""
    errors = ErrorCollector()
    if birth.relation not in CHILD_RELATIONS:
        errors.add("relation", "出生或收养登记的与户主关系应为：子、女或孙子女")
    elif birth.relation is Relation.SON and child.sex and child.sex != "男":
        errors.add("relation", "身份证显示该子女为女性，与户主关系应为“女”")
    elif birth.relation is Relation.DAUGHTER and child.sex and child.sex != "女":
        errors.add("relation", "身份证显示该子女为男性，与户主关系应为“子”")
    when = child.birth_date
    if birth.adopted:
        adopted_on = birth.adoption_date
        if adopted_on is None:
            errors.add("adoption_date", "收养登记须填写收养日期")
        elif adopted_on > today:
            errors.add("adoption_date", f"收养日期 {adopted_on.isoformat()} 晚于今天，请核对")
        elif adopted_on < child.birth_date:
            errors.add(
                "adoption_date", f"收养日期 {adopted_on.isoformat()} 早于出生日期 {child.birth_date.isoformat()}"
            )
        elif age_on(child.birth_date, adopted_on) >= ADULT_AGE:
            errors.add("adoption_date", f"收养时被收养人已满{ADULT_AGE}周岁，不能登记为收养子女")
        else:
            when = adopted_on
    else:
        if birth.adoption_date is not None:
            errors.add("adoption_date", "出生登记不填收养日期；收养请选择“收养”")
        if age_on(child.birth_date, today) >= ADULT_AGE:
            errors.add(
                child_field,
                f"出生登记只用于未成年子女；已满{ADULT_AGE}周岁的家庭成员请用家庭户修改（UpdateHousehold）加入",
            )
    errors.raise_if_any("出生/收养登记信息有误，请按字段说明修改后重试", reason="INVALID_BIRTH")
    if child.deceased:
        raise FailedPrecondition("该人员已登记死亡，不能登记为新加入的子女", reason="PERSON_DECEASED")
    if child.status is PersonStatus.MOVED_OUT:
        raise FailedPrecondition("该人员户籍已迁出本省", reason="PERSON_MOVED_OUT")
    return when


# ---------------------------------------------------------------- 分户 and 合户


def _date_in_past(errors: ErrorCollector, field: str, when: date | None, what: str, today: date) -> None:
    if when is None:
        errors.add(field, f"请填写{what}")
    elif when > today:
        errors.add(field, f"{what} {when.isoformat()} 晚于今天，请核对")


def check_split(
    state: HouseholdState, members: Sequence[tuple[str, Relation]], split_date: date | None, *, today: date
) -> str:
    """分户: the persons named are members of the household, never its 户主
    (the household stays with the head), and one of them is the new head.
    Returns the new head's id (the household rules — a living adult head, at
    most one 配偶 — are checked when the new household is registered)."""
    errors = ErrorCollector()
    if not members:
        errors.add("members", "请列出分出的成员及其与新户主的关系")
    mine = {pid for pid, _ in state.members}
    for i, (pid, _) in enumerate(members):
        if pid == state.head_person_id:
            errors.add(
                f"members[{i}].person",
                "户主不能分出：原户由户主继续；如由其他成员继续原户，请先更换户主（UpdateHousehold）",
            )
        elif pid not in mine:
            errors.add(f"members[{i}].person", f"persons/{pid} 不是该户成员，不能从该户分出")
    heads = [pid for pid, rel in members if rel is Relation.HEAD]
    if members and len(heads) != 1:
        errors.add("members", f"分出的新户须有且只有一位户主（与户主关系为“户主”），当前有{len(heads)}位")
    _date_in_past(errors, "split_date", split_date, "分户日期", today)
    errors.raise_if_any("分户信息有误，请按字段说明修改后重试", reason="INVALID_SPLIT")
    return heads[0]


def check_merge(
    keep: HouseholdState,
    merged: HouseholdState,
    members: Sequence[tuple[str, Relation]],
    merge_date: date | None,
    *,
    today: date,
) -> None:
    """合户: two different households of one village; every member of the
    merged household is named, with a relation to the staying head (not 户主)."""
    errors = ErrorCollector()
    if keep.id == merged.id:
        errors.add("merged_household", "不能把一户并入它自己")
    elif keep.village != merged.village:
        errors.add(
            "merged_household",
            f"两户不在同一村（{keep.village} 与 {merged.village}），不能合户；请先办理户籍迁移（MovePerson）",
        )
    theirs = {pid for pid, _ in merged.members}
    named: set[str] = set()
    for i, (pid, rel) in enumerate(members):
        if pid not in theirs:
            errors.add(f"members[{i}].person", f"persons/{pid} 不是被合并户的成员")
        elif pid in named:
            errors.add(f"members[{i}].person", "同一人重复出现")
        if rel is Relation.HEAD:
            errors.add(f"members[{i}].relation", "合户后户主不变：请填写与现户主的关系（配偶、子、女、父亲、母亲等）")
        named.add(pid)
    missing = [pid for pid, _ in merged.members if pid not in named]
    if missing:
        shown = "、".join(f"persons/{pid}" for pid in missing[:10])
        errors.add("members", f"被合并户的成员须全部列出并填写与现户主的关系，缺少：{shown}")
    _date_in_past(errors, "merge_date", merge_date, "合户日期", today)
    errors.raise_if_any("合户信息有误，请按字段说明修改后重试", reason="INVALID_MERGE")


__all__ = [
    "CHILD_RELATIONS",
    "Birth",
    "CheckedMove",
    "HouseholdPart",
    "Move",
    "Places",
    "check_birth",
    "check_merge",
    "check_move",
    "check_split",
    "household_part",
]
