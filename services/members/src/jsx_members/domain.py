"""Members domain: the rules about people, households, members, volunteers
and sites, in pure Python (no I/O).

The service layer loads state, asks these functions whether a change is
allowed, and persists the result. Every refusal is a :mod:`jsxcore.errors`
error with a Chinese message and field violations a clerk can act on.
"""
from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from jsxcore.errors import ErrorCollector, FailedPrecondition, InvalidArgument
from jsxcore.values import IdNumber, RegionCode, RegionLevel

#: Age from which a person may be 户主 (head of household).
ADULT_AGE = 18


class HukouType(str, enum.Enum):
    """户籍类型."""

    RURAL = "农村"
    URBAN = "城镇"
    RESIDENT = "居民"


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
        t = _fold(text)
        for s in cls:
            if t in (s.value, s.name):
                return s
        short = {"失独": cls.SPECIAL_BEREAVED, "伤残": cls.SPECIAL_DISABLED, "一般": cls.NONE, "": cls.NONE, "农村双女户": cls.TWO_DAUGHTERS}
        if t in short:
            return short[t]
        raise InvalidArgument.field(
            field, f"家庭类型“{text}”无法识别，应为：{'、'.join(s.value for s in cls)}", reason="INVALID_SITUATION"
        )


class MemberType(str, enum.Enum):
    """会员类型."""

    ORDINARY = "普通会员"
    BACKBONE = "骨干会员"
    COUNCIL = "理事"


class PairingKind(str, enum.Enum):
    """How a volunteer is tied to a special family."""

    MEMBER_CONTACT = "会员联系户"
    DUAL_CONTACT = "双岗联系人"


class SiteKind(str, enum.Enum):
    MEMBER_HOME = "会员之家"
    WARM_HOME = "暖心家园"
    HEALTH_STATION = "健康驿站"
    YOUTH_HEALTH_BASE = "青春健康教育基地"


class PersonStatus(str, enum.Enum):
    ACTIVE = "在册"
    DECEASED = "已故"
    MOVED_OUT = "迁出"


#: The 六有 checklist every 暖心家园 must satisfy, in the order the
#: associations list it: 有场所 有标识 有制度 有计划 有活动 有管理.
SIX_HAVES: tuple[str, ...] = ("场所", "标识", "制度", "计划", "活动", "管理")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "").strip()


def parse_enum(enum_cls: type[enum.Enum], text: str, *, field: str, what: str) -> enum.Enum:
    """Match a clerk's text against an enum's labels (or names)."""
    t = _fold(text)
    for member in enum_cls:
        if t in (member.value, member.name):
            return member
    labels = "、".join(str(m.value) for m in enum_cls)
    raise InvalidArgument.field(field, f"{what}“{text}”无法识别，应为：{labels}", reason=f"INVALID_{field.split('.')[-1].upper()}")


# ---------------------------------------------------------------- persons

_NAME_RE = re.compile(r"[\u3400-\u9fff·•A-Za-z ]{1,30}")
_MOBILE_RE = re.compile(r"1[3-9]\d{9}")
_LANDLINE_RE = re.compile(r"0\d{2,3}-?\d{7,8}")


def normalize_name(name: str, *, field: str = "name") -> str:
    n = _fold(name).replace("•", "·")
    if not n:
        raise InvalidArgument.field(field, "请填写姓名", reason="NAME_REQUIRED")
    if not _NAME_RE.fullmatch(n):
        raise InvalidArgument.field(field, "姓名只能包含汉字、间隔号“·”或字母，最长30个字", reason="NAME_FORMAT")
    return n


def normalize_phone(phone: str | None, *, field: str = "phone") -> str | None:
    """An 11-digit mobile or a landline with area code; empty → None."""
    p = re.sub(r"[\s()（）]", "", _fold(phone or ""))
    p = p.removeprefix("+86")
    if not p:
        return None
    if _MOBILE_RE.fullmatch(p) or _LANDLINE_RE.fullmatch(p):
        return p
    raise InvalidArgument.field(
        field, "联系电话应为11位手机号（如 13912345678）或带区号的座机（如 0745-1234567）", reason="PHONE_FORMAT"
    )


def parse_village(code: str, *, field: str = "village") -> RegionCode:
    """A person's home, a household's or a site's place must be a village or
    community (12-digit code), so that scope checks and counts are exact."""
    region = RegionCode.parse(code, field=field)
    if region.level is not RegionLevel.VILLAGE:
        raise InvalidArgument.field(
            field, f"所属村“{code}”不是村（社区）级代码，请填写12位村级行政区划代码", reason="VILLAGE_REQUIRED"
        )
    return region


@dataclass(frozen=True)
class PersonDraft:
    """A validated person, ready to store. ``id_number`` masks itself in str/repr."""

    name: str
    id_number: IdNumber
    phone: str | None
    village: RegionCode
    hukou: HukouType
    status: PersonStatus = PersonStatus.ACTIVE
    death_date: date | None = None

    @property
    def birth_date(self) -> date:
        return self.id_number.birth_date

    @property
    def sex(self) -> str:
        return self.id_number.sex.value


def validate_person(
    *,
    name: str,
    id_number: str,
    phone: str | None,
    village: str,
    hukou: str,
    death_date: date | None = None,
    today: date | None = None,
    prefix: str = "",
) -> PersonDraft:
    """Check every field at once and report all problems together."""
    errors = ErrorCollector()
    values: dict[str, object] = {}
    checks = {
        "name": lambda: normalize_name(name, field=prefix + "name"),
        "id_number": lambda: IdNumber.parse(id_number, field=prefix + "id_number", today=today),
        "phone": lambda: normalize_phone(phone, field=prefix + "phone"),
        "village": lambda: parse_village(village, field=prefix + "village"),
        "hukou": lambda: parse_enum(HukouType, hukou or HukouType.RURAL.value, field=prefix + "hukou", what="户籍类型"),
    }
    for key, check in checks.items():
        try:
            values[key] = check()
        except InvalidArgument as e:
            errors.violations.extend(e.violations)
    if death_date is not None:
        if death_date > (today or date.today()):
            errors.add(prefix + "death_date", "死亡日期不能晚于今天")
        idn = values.get("id_number")
        if isinstance(idn, IdNumber) and death_date < idn.birth_date:
            errors.add(prefix + "death_date", "死亡日期不能早于出生日期")
    errors.raise_if_any("人员信息有误，请按字段说明修改后重试")
    return PersonDraft(
        name=values["name"],  # type: ignore[arg-type]
        id_number=values["id_number"],  # type: ignore[arg-type]
        phone=values["phone"],  # type: ignore[arg-type]
        village=values["village"],  # type: ignore[arg-type]
        hukou=values["hukou"],  # type: ignore[arg-type]
        status=PersonStatus.DECEASED if death_date else PersonStatus.ACTIVE,
        death_date=death_date,
    )


# ---------------------------------------------------------------- households


@dataclass(frozen=True)
class HouseholdMemberView:
    """What the household rules need to know about one member."""

    person_id: str
    relation: Relation
    birth_date: date
    deceased: bool = False


def check_head(birth_date: date, deceased: bool, *, on: date, field: str = "head") -> None:
    """户主 must be a living adult."""
    age = on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
    if age < ADULT_AGE:
        raise InvalidArgument.field(field, f"户主须年满{ADULT_AGE}周岁，此人未成年，请改由成年家庭成员担任户主", reason="MINOR_AS_HEAD")
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


def validate_situation(record: SituationRecord, *, today: date | None = None, field: str = "situation") -> SituationRecord:
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


def append_situation(history: Sequence[SituationRecord], record: SituationRecord, *, today: date | None = None) -> list[SituationRecord]:
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
                f"生效日期须晚于上一次记录的生效日期 {last.effective_from.isoformat()}；历史记录不可改写，请填写新的变更日期",
                reason="SITUATION_NOT_AFTER_LATEST",
            )
        if (last.situation, last.disability_grade or 0, last.honor_certificate) == (
            record.situation,
            record.disability_grade or 0,
            record.honor_certificate,
        ):
            raise FailedPrecondition("家庭类型与当前记录相同，无需变更", reason="SITUATION_UNCHANGED")
    return [*history, record]


def situation_on(history: Iterable[SituationRecord], on: date) -> SituationRecord | None:
    """The entry in force on ``on`` (None before the first entry)."""
    current: SituationRecord | None = None
    for r in history:
        if r.effective_from <= on and (current is None or r.effective_from >= current.effective_from):
            current = r
    return current


# ---------------------------------------------------------------- members, volunteers


@dataclass(frozen=True)
class Tenure:
    """A dated membership or pairing: active from ``start`` until ``end`` (exclusive of nothing; inclusive dates)."""

    start: date
    end: date | None = None

    def active_on(self, on: date) -> bool:
        return self.start <= on and (self.end is None or on <= self.end)


def check_end(tenure: Tenure, end: date, *, field: str = "end_date", what: str = "结束日期") -> Tenure:
    if tenure.end is not None:
        raise FailedPrecondition(f"已于 {tenure.end.isoformat()} 结束，不能重复结束", reason="ALREADY_ENDED")
    if end < tenure.start:
        raise InvalidArgument.field(field, f"{what}不能早于开始日期 {tenure.start.isoformat()}", reason="END_BEFORE_START")
    return Tenure(tenure.start, end)


def check_pairing(
    *,
    household_situation: SituationRecord | None,
    household_active: bool,
    volunteer_active: bool,
    volunteer_deceased: bool,
    volunteer_in_household: bool,
    volunteer_inactive: bool = False,
) -> None:
    """The 1:1 rule: a volunteer pairs with one special family at a time,
    and a special family has one open pairing of each kind (会员联系户,
    双岗联系人). ``household_active`` means: an open pairing of this kind."""
    if household_situation is None or not household_situation.situation.is_special:
        raise FailedPrecondition("只有计生特殊家庭（失独、伤残）需要结对联系，该户当前不是特殊家庭", reason="NOT_SPECIAL_FAMILY")
    if volunteer_inactive:
        raise FailedPrecondition("该志愿者已停止接受结对，请选择其他志愿者", reason="VOLUNTEER_INACTIVE")
    if volunteer_deceased:
        raise FailedPrecondition("该志愿者已故，不能结对", reason="VOLUNTEER_DECEASED")
    if volunteer_in_household:
        raise FailedPrecondition("志愿者不能与自己所在的家庭结对", reason="VOLUNTEER_OWN_HOUSEHOLD")
    if household_active:
        raise FailedPrecondition("该特殊家庭已有同类结对志愿者，请先解除原结对再重新结对", reason="HOUSEHOLD_ALREADY_PAIRED")
    if volunteer_active:
        raise FailedPrecondition("该志愿者已结对一户特殊家庭（一对一），请先解除原结对", reason="VOLUNTEER_ALREADY_PAIRED")


# ---------------------------------------------------------------- sites


@dataclass(frozen=True)
class SixHaves:
    """The 六有 checklist of a 暖心家园: which of 场所 标识 制度 计划 活动 管理 it has."""

    have: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, items: Iterable[str], *, field: str = "six_haves") -> SixHaves:
        got = {_fold(i).removeprefix("有") for i in items if _fold(i)}
        unknown = got - set(SIX_HAVES)
        if unknown:
            raise InvalidArgument.field(
                field, f"六有清单只能包含：{'、'.join(SIX_HAVES)}；无法识别：{'、'.join(sorted(unknown))}", reason="INVALID_SIX_HAVES"
            )
        return cls(frozenset(got))

    @property
    def missing(self) -> list[str]:
        return [i for i in SIX_HAVES if i not in self.have]

    @property
    def complete(self) -> bool:
        return not self.missing

    def ordered(self) -> list[str]:
        return [i for i in SIX_HAVES if i in self.have]


def validate_site(*, kind: SiteKind, name: str, village: str, address: str, six_haves: Iterable[str]) -> tuple[str, RegionCode, str, SixHaves]:
    errors = ErrorCollector()
    n = _fold(name)
    if not n or len(n) > 100:
        errors.add("site.name", "请填写场所名称（最长100字）")
    region: RegionCode | None = None
    try:
        region = RegionCode.parse(village, field="site.village")
        if region.level < RegionLevel.TOWNSHIP:
            errors.add("site.village", "场所所在地应为乡镇或村（社区）级行政区划代码")
    except InvalidArgument as e:
        errors.violations.extend(e.violations)
    addr = _fold(address)
    if len(addr) > 200:
        errors.add("site.address", "地址最长200字")
    checklist = SixHaves()
    items = list(six_haves)
    if items and kind is not SiteKind.WARM_HOME:
        errors.add("site.six_haves", "六有清单只适用于暖心家园")
    else:
        try:
            checklist = SixHaves.of(items, field="site.six_haves")
        except InvalidArgument as e:
            errors.violations.extend(e.violations)
    errors.raise_if_any("场所信息有误，请按字段说明修改后重试")
    assert region is not None
    return n, region, addr, checklist
