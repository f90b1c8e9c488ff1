"""Households: exactly one 户主 (a living adult), at most one 配偶, a person
in one household only, and the family-planning situation as a dated history
that is appended, never rewritten. Pure: no I/O."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from jsx_members.labels import fold
from jsxcore.errors import ErrorCollector, FailedPrecondition, InvalidArgument

#: Age from which a person may be 户主 (head of household).
ADULT_AGE = 18


class Relation(str, enum.Enum):
    """与户主关系 (relation to the head of household)."""

    HEAD = "户主"
    SPOUSE = "配偶"
    SON = "子"
    DAUGHTER = "女"
    FATHER = "父亲"
    MOTHER = "母亲"
    GRANDCHILD = "孙子女"
    OTHER = "其他"


class Situation(str, enum.Enum):
    """家庭类型: the household's family-planning situation. ``NONE`` is an
    entry that ends the previous situation (the household is 一般户 again)."""

    NONE = "一般户"
    ONLY_CHILD = "独生子女户"
    TWO_DAUGHTERS = "双女户"
    SPECIAL_BEREAVED = "计生特殊家庭（失独）"
    SPECIAL_DISABLED = "计生特殊家庭（伤残）"

    @property
    def is_special(self) -> bool:
        return self in (Situation.SPECIAL_BEREAVED, Situation.SPECIAL_DISABLED)

    @classmethod
    def parse(cls, text: str, *, field: str = "situation") -> Situation:
        """Accept the label, the enum name and the short forms clerks write (失独, 伤残)."""
        t = fold(text)
        for s in cls:
            if t in (fold(s.value), s.name):  # the labels' full-width brackets fold like the text's
                return s
        short = {
            "失独": cls.SPECIAL_BEREAVED,
            "伤残": cls.SPECIAL_DISABLED,
            "一般": cls.NONE,
            "": cls.NONE,
            "农村双女户": cls.TWO_DAUGHTERS,
        }
        if t in short:
            return short[t]
        raise InvalidArgument.field(
            field, f"家庭类型“{text}”无法识别，应为：{'、'.join(s.value for s in cls)}", reason="INVALID_SITUATION"
        )


#: The situations that call for a pairing (结对联系).
SPECIAL: tuple[Situation, ...] = (Situation.SPECIAL_BEREAVED, Situation.SPECIAL_DISABLED)


# ---------------------------------------------------------------- members and the head


@dataclass(frozen=True)
class HouseholdMemberView:
    """What the household rules need to know about one member."""

    person_id: str
    relation: Relation
    birth_date: date
    deceased: bool = False


def age_on(birth_date: date, on: date) -> int:
    """Full years (周岁) on ``on``."""
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


def check_head(birth_date: date, deceased: bool, *, on: date, field: str = "head") -> None:
    """户主 must be a living adult."""
    if age_on(birth_date, on) < ADULT_AGE:
        raise InvalidArgument.field(
            field, f"户主须年满{ADULT_AGE}周岁，此人未成年，请改由成年家庭成员担任户主", reason="MINOR_AS_HEAD"
        )
    if deceased:
        raise InvalidArgument.field(field, "户主已故，请改由在世的家庭成员担任户主", reason="DECEASED_AS_HEAD")


def check_household_members(members: Sequence[HouseholdMemberView], *, on: date, field: str = "members") -> None:
    """Exactly one 户主, a living adult; at most one 配偶; nobody listed twice."""
    errors = ErrorCollector()
    heads = [m for m in members if m.relation is Relation.HEAD]
    if len(heads) != 1:
        errors.add(field, f"每户必须有且只有一位户主，当前有{len(heads)}位")
    seen: set[str] = set()
    for i, m in enumerate(members):
        if m.person_id in seen:
            errors.add(f"{field}[{i}]", "同一人在本户中重复出现")
        seen.add(m.person_id)
    if sum(m.relation is Relation.SPOUSE for m in members) > 1:
        errors.add(field, "一户只能有一位户主配偶")
    errors.raise_if_any("家庭成员信息有误，请按字段说明修改后重试")
    head = heads[0]
    check_head(head.birth_date, head.deceased, on=on, field=f"{field}[{members.index(head)}]")


def with_head(head_id: str, members: Sequence[tuple[str, Relation]]) -> list[tuple[str, Relation]]:
    """A registration's member list: the head comes first as 户主 when the
    list leaves them out, and a 户主 in the list must be the head."""
    out = list(members)
    if head_id not in {pid for pid, _ in out}:
        out.insert(0, (head_id, Relation.HEAD))
    heads = [pid for pid, rel in out if rel is Relation.HEAD]
    if heads and heads != [head_id]:
        raise InvalidArgument.field("household.head", "户主须是成员列表中关系为“户主”的那个人", reason="HEAD_MISMATCH")
    return out


def check_head_change(
    current_head: str, new_head: str, members: Sequence[tuple[str, Relation]], *, change_head: bool
) -> None:
    """A new member list: keeping the head unless the change asks for another
    one (``head`` in the mask), and the 户主 listed is the head named."""
    heads = [pid for pid, rel in members if rel is Relation.HEAD]
    if not change_head and heads and heads[0] != current_head:
        raise InvalidArgument.field(
            "update_mask",
            "成员列表中的户主与现户主不同；更换户主须在 update_mask 中包含 head 并填写新户主",
            reason="HEAD_CHANGE_NOT_REQUESTED",
        )
    if heads and new_head not in heads:
        raise InvalidArgument.field("household.head", "户主须是成员列表中关系为“户主”的那个人", reason="HEAD_MISMATCH")


def check_update_paths(paths: frozenset[str]) -> None:
    """A 户主 change restates the members (their relations are to the new head)."""
    if "head" in paths and "members" not in paths:
        raise InvalidArgument.field(
            "update_mask",
            "更换户主须同时提交成员列表（与户主关系以新户主为准），即 update_mask 同时包含 head 和 members",
            reason="HEAD_CHANGE_NEEDS_MEMBERS",
        )


def check_address(address: str, *, field: str = "household.address") -> str:
    a = address.strip()
    if len(a) > 200:
        raise InvalidArgument.field(field, "地址不能超过200个字", reason="ADDRESS_TOO_LONG")
    return a


# ---------------------------------------------------------------- situation history


@dataclass(frozen=True)
class SituationRecord:
    """One dated entry in a household's situation history. Entries are only
    ever appended; the situation on a day is the latest entry effective then."""

    situation: Situation
    effective_from: date
    disability_grade: int | None = None
    #: 独生子女父母光荣证 number, when held
    honor_certificate: str = ""
    note: str = ""

    def same_state(self, other: SituationRecord) -> bool:
        """Same situation, grade and certificate (dates and notes aside)."""
        return (self.situation, self.disability_grade or 0, self.honor_certificate) == (
            other.situation,
            other.disability_grade or 0,
            other.honor_certificate,
        )


def validate_situation(
    record: SituationRecord, *, today: date | None = None, field: str = "situation"
) -> SituationRecord:
    errors = ErrorCollector()
    if record.situation is Situation.SPECIAL_DISABLED:
        if record.disability_grade not in (1, 2, 3):
            errors.add(f"{field}.disability_grade", "伤残家庭须填写子女伤残等级（1至3级，一级最重）")
    elif record.disability_grade:
        errors.add(f"{field}.disability_grade", "只有计生特殊家庭（伤残）才填写伤残等级")
    if record.effective_from > (today or date.today()):
        errors.add(f"{field}.effective_from", "生效日期不能晚于今天")
    if len(record.honor_certificate) > 40:
        errors.add(f"{field}.honor_certificate", "光荣证编号最长40字")
    if len(record.note) > 200:
        errors.add(f"{field}.note", "备注最长200字")
    errors.raise_if_any("家庭类型信息有误，请按字段说明修改后重试")
    return record


def append_situation(
    history: Sequence[SituationRecord], record: SituationRecord, *, today: date | None = None
) -> list[SituationRecord]:
    """Return the history with ``record`` appended.

    History is never rewritten: a change must take effect after the latest
    recorded one (a wrong entry is corrected by a newer entry with a note),
    and recording the situation already in force is refused as a no-op.
    """
    validate_situation(record, today=today)
    if history:
        last = max(history, key=lambda r: r.effective_from)
        if record.effective_from <= last.effective_from:
            raise FailedPrecondition(
                f"生效日期须晚于上一次记录的生效日期 {last.effective_from.isoformat()}；"
                "历史记录不可改写，请填写新的变更日期",
                reason="SITUATION_NOT_AFTER_LATEST",
            )
        if last.same_state(record):
            raise FailedPrecondition("家庭类型与当前记录相同，无需变更", reason="SITUATION_UNCHANGED")
    return [*history, record]


def situation_on(history: Iterable[SituationRecord], on: date) -> SituationRecord | None:
    """The entry in force on ``on`` (None before the first entry)."""
    current: SituationRecord | None = None
    for r in history:
        if r.effective_from <= on and (current is None or r.effective_from >= current.effective_from):
            current = r
    return current


def situation_periods(history: Sequence[SituationRecord]) -> Iterator[tuple[SituationRecord, date | None]]:
    """Each situation of a history sorted by date with the last day it was in
    force (the day before the next entry; None while open). 一般户 entries,
    which only end the previous situation, are left out."""
    for i, e in enumerate(history):
        if e.situation is Situation.NONE:
            continue
        yield e, history[i + 1].effective_from - timedelta(days=1) if i + 1 < len(history) else None


def grade_change(previous: SituationRecord | None, record: SituationRecord) -> int | None:
    """The previous grade when ``record`` changes a 伤残 household's disability grade, else None."""
    if (
        previous is not None
        and previous.situation is Situation.SPECIAL_DISABLED
        and record.situation is Situation.SPECIAL_DISABLED
        and previous.disability_grade != record.disability_grade
    ):
        return previous.disability_grade
    return None


def check_recovery(
    current: SituationRecord | None, recovered: date | None, *, today: date
) -> tuple[SituationRecord, date]:
    """康复: a 伤残 household's situation ends the day before ``recovered``
    (not after today). Returns the open 伤残 entry and the situation's last day."""
    if recovered is None:
        raise InvalidArgument.field("recovered_date", "请填写康复（复评）日期", reason="RECOVERED_DATE_REQUIRED")
    if recovered > today:
        raise InvalidArgument.field(
            "recovered_date", f"康复日期 {recovered.isoformat()} 晚于今天，请核对", reason="RECOVERED_DATE_IN_FUTURE"
        )
    if current is None or current.situation is not Situation.SPECIAL_DISABLED:
        now = current.situation.value if current is not None else Situation.NONE.value
        raise FailedPrecondition(
            f"该户当前是“{now}”，不是计生特殊家庭（伤残），无法登记康复", reason="NOT_DISABLED_FAMILY"
        )
    if recovered <= current.effective_from:
        raise FailedPrecondition(
            f"康复日期须晚于伤残家庭的生效日期 {current.effective_from.isoformat()}",
            reason="SITUATION_NOT_AFTER_LATEST",
        )
    return current, recovered - timedelta(days=1)


def close_situation(current: Situation, record: SituationRecord, ended: date, *, today: date) -> SituationRecord:
    """The entry that ends ``record.situation`` on ``ended`` (the household is 一般户 from the next day)."""
    if current is not record.situation:
        raise FailedPrecondition(
            f"该户当前不是“{record.situation.value}”，无法结束该家庭类型", reason="SITUATION_NOT_OPEN"
        )
    if ended > today:
        raise InvalidArgument.field("situation.effective_to", "结束日期不能晚于今天", reason="END_IN_FUTURE")
    return SituationRecord(Situation.NONE, ended + timedelta(days=1), note=record.note)


# ---------------------------------------------------------------- use-case inputs and what other contexts see


@dataclass(frozen=True)
class NewHousehold:
    """CreateHousehold's input."""

    head_id: str
    village: str
    address: str = ""
    members: tuple[tuple[str, Relation], ...] = ()
    situations: tuple[SituationRecord, ...] = ()


@dataclass(frozen=True)
class HouseholdUpdate:
    """UpdateHousehold's input: ``paths`` ⊆ {address, members, head}."""

    paths: frozenset[str]
    address: str = ""
    head_id: str = ""
    members: tuple[tuple[str, Relation], ...] = ()


@dataclass(frozen=True)
class HouseholdSummary:
    """What other contexts may know of a household."""

    id: str
    head_person_id: str
    village: str
    current_situation: Situation
    #: last day it existed on its own (merged into another), None while it exists
    closed_on: date | None = None


@dataclass(frozen=True)
class HouseholdState:
    """A household as a life event (a birth, a move, 分户, 合户) changes it: its members in order."""

    id: str
    head_person_id: str
    village: str
    address: str
    members: tuple[tuple[str, Relation], ...]
    situation: SituationRecord | None

    def relation_of(self, person_id: str) -> Relation | None:
        return next((rel for pid, rel in self.members if pid == person_id), None)


@dataclass(frozen=True)
class Membership:
    """A person's place in a household."""

    household_id: str
    relation: Relation
    position: int


@dataclass(frozen=True)
class HouseholdImport:
    """What a roster import adds to one household, in file order: the
    household itself when ``new``, members not yet in it, and a situation
    entry when the file's differs from the latest recorded."""

    household_id: str
    new: bool
    head_person_id: str
    village: str
    member_count: int
    members: tuple[tuple[str, Relation], ...] = ()
    situation: SituationRecord | None = None
    #: the grade before, when ``situation`` changes a 伤残 household's grade
    previous_grade: int | None = None


__all__ = [
    "ADULT_AGE",
    "SPECIAL",
    "HouseholdImport",
    "HouseholdMemberView",
    "HouseholdState",
    "HouseholdSummary",
    "HouseholdUpdate",
    "Membership",
    "NewHousehold",
    "Relation",
    "Situation",
    "SituationRecord",
    "age_on",
    "append_situation",
    "check_address",
    "check_head",
    "check_head_change",
    "check_household_members",
    "check_recovery",
    "check_update_paths",
    "close_situation",
    "grade_change",
    "situation_on",
    "situation_periods",
    "validate_situation",
    "with_head",
]
