"""Persons: the rules a registration or a change must pass before anything
is stored (names, GB 11643 身份证 numbers via :class:`jsxcore.values.IdNumber`,
phones, villages, 一卡通 card numbers, life status). Pure: no I/O.

Every refusal is a :mod:`jsxcore.errors` error with a Chinese message and
field violations a clerk can act on; a registration reports all its
problems at once.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

from jsx_members.labels import fold, parse_enum
from jsxcore.errors import ErrorCollector, FailedPrecondition, FieldViolation, InvalidArgument
from jsxcore.values import IdNumber, RegionCode, RegionLevel

T = TypeVar("T")


class HukouType(str, enum.Enum):
    """户籍类型."""

    RURAL = "农村"
    URBAN = "城镇"
    RESIDENT = "居民"


class PersonStatus(str, enum.Enum):
    ACTIVE = "在册"
    DECEASED = "已故"
    MOVED_OUT = "迁出"


_NAME_RE = re.compile(r"[\u3400-\u9fff·•A-Za-z ]{1,30}")
_MOBILE_RE = re.compile(r"1[3-9]\d{9}")
_LANDLINE_RE = re.compile(r"0\d{2,3}-?\d{7,8}")


def normalize_name(name: str, *, field: str = "name") -> str:
    n = fold(name).replace("•", "·")
    if not n:
        raise InvalidArgument.field(field, "请填写姓名", reason="NAME_REQUIRED")
    if not _NAME_RE.fullmatch(n):
        raise InvalidArgument.field(field, "姓名只能包含汉字、间隔号“·”或字母，最长30个字", reason="NAME_FORMAT")
    return n


def normalize_phone(phone: str | None, *, field: str = "phone") -> str | None:
    """An 11-digit mobile or a landline with area code; empty → None."""
    p = re.sub(r"[\s()（）]", "", fold(phone or ""))
    p = p.removeprefix("+86")
    if not p:
        return None
    if _MOBILE_RE.fullmatch(p) or _LANDLINE_RE.fullmatch(p):
        return p
    raise InvalidArgument.field(
        field, "联系电话应为11位手机号（如 13912345678）或带区号的座机（如 0745-1234567）", reason="PHONE_FORMAT"
    )


def normalize_card(card: str, *, field: str = "person.card_number") -> str:
    """一卡通 (social-security card) account number: 8 to 30 digits, spaces ignored; empty = none on file."""
    c = card.replace(" ", "")
    if c and not (c.isdigit() and 8 <= len(c) <= 30):
        raise InvalidArgument.field(field, "一卡通账号应为8至30位数字", reason="CARD_NUMBER_FORMAT")
    return c


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check every bank card number carries in its last digit."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_bank_card(card: str) -> bool:
    """A 银联 (UnionPay) card number — 62…, 16 to 19 digits — which has a Luhn
    check digit. Other 一卡通 accounts (存折、社保卡金融账户) have no checksum
    a clerk's copy can be checked against."""
    return card.startswith("62") and 16 <= len(card) <= 19


def normalize_roster_card(text: str, *, field: str = "一卡通账号") -> str:
    """A roster file's 一卡通 account number: full-width digits folded, spaces
    ignored, 8 to 30 digits, and for a 银联 card number the Luhn check digit
    (a digit miscopied, or a number Excel rounded to 15 significant digits,
    is caught here instead of by a bank returning the payment). Empty = none."""
    c = re.sub(r"\s", "", fold(text))
    if not c:
        return ""
    c = normalize_card(c, field=field)
    if is_bank_card(c) and not luhn_ok(c):
        raise InvalidArgument.field(
            field,
            "一卡通账号的校验位不对（银联卡号按 Luhn 校验），请核对是否抄错；"
            "在 Excel 中请把该列设为“文本”，以免长号码被改写",
            reason="CARD_NUMBER_CHECKSUM",
        )
    return c


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


def _collect(errors: ErrorCollector, check: Callable[[], T]) -> T | None:
    try:
        return check()
    except InvalidArgument as e:
        errors.violations.extend(e.violations)
        return None


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
    n = _collect(errors, lambda: normalize_name(name, field=prefix + "name"))
    idn = _collect(errors, lambda: IdNumber.parse(id_number, field=prefix + "id_number", today=today))
    tel = _collect(errors, lambda: normalize_phone(phone, field=prefix + "phone"))
    region = _collect(errors, lambda: parse_village(village, field=prefix + "village"))
    h = _collect(
        errors, lambda: parse_enum(HukouType, hukou or HukouType.RURAL.value, field=prefix + "hukou", what="户籍类型")
    )
    if death_date is not None:
        if death_date > (today or date.today()):
            errors.add(prefix + "death_date", "死亡日期不能晚于今天")
        if idn is not None and death_date < idn.birth_date:
            errors.add(prefix + "death_date", "死亡日期不能早于出生日期")
    errors.raise_if_any("人员信息有误，请按字段说明修改后重试")
    assert n is not None and idn is not None and region is not None and h is not None
    return PersonDraft(
        name=n,
        id_number=idn,
        phone=tel,
        village=region,
        hukou=h,
        status=PersonStatus.DECEASED if death_date else PersonStatus.ACTIVE,
        death_date=death_date,
    )


def check_life_status(
    errors: ErrorCollector,
    status: PersonStatus | None,
    death_date: date | None,
    *,
    birth_date: date,
    today: date,
    prefix: str = "person.",
) -> None:
    """A change of status / death date: 已故 needs the date, a date needs 已故,
    and the date lies between birth and today. Adds to ``errors`` (``status``
    None: the request's status was unreadable, already reported)."""
    if status is PersonStatus.DECEASED and death_date is None:
        errors.add(prefix + "death_date", "标记为已故时须填写死亡日期")
    if death_date is not None and status is not PersonStatus.DECEASED:
        errors.add(prefix + "status", "填写了死亡日期，人员状态应为已故")
    if death_date is not None and (death_date > today or death_date < birth_date):
        errors.add(prefix + "death_date", "死亡日期应在出生日期与今天之间")


def check_status_change(
    errors: ErrorCollector, current: PersonStatus, status: PersonStatus | None, *, prefix: str = "person."
) -> None:
    """UpdatePerson changes the life status between 在册 and 已故 only: a 户籍
    move (迁出) needs its date and destination (MovePerson)."""
    if status is PersonStatus.MOVED_OUT and current is not PersonStatus.MOVED_OUT:
        errors.add(prefix + "status", "迁出请用“户籍迁移”（MovePerson）登记迁往地区和迁移日期")
    elif current is PersonStatus.MOVED_OUT and status not in (None, PersonStatus.MOVED_OUT):
        errors.add(prefix + "status", "该人员户籍已迁出本省，状态不能在此修改")


def check_death(
    death_date: date | None, *, status: PersonStatus, birth_date: date, today: date, field: str = "death_date"
) -> date:
    """RecordDeath: a date between birth and today, for a person not already
    recorded as deceased (a wrong date is corrected with UpdatePerson) and
    still registered here."""
    if death_date is None:
        raise InvalidArgument.field(field, "请填写死亡日期", reason="DEATH_DATE_REQUIRED")
    if death_date > today:
        raise InvalidArgument.field(
            field, f"死亡日期 {death_date.isoformat()} 晚于今天，请核对", reason="DEATH_DATE_IN_FUTURE"
        )
    if death_date < birth_date:
        raise InvalidArgument.field(
            field,
            f"死亡日期 {death_date.isoformat()} 早于出生日期 {birth_date.isoformat()}，请核对",
            reason="DEATH_BEFORE_BIRTH",
        )
    if status is PersonStatus.DECEASED:
        raise FailedPrecondition(
            "该人员已登记死亡；如死亡日期有误，请用人员修改功能（UpdatePerson）更正", reason="ALREADY_DECEASED"
        )
    if status is PersonStatus.MOVED_OUT:
        raise FailedPrecondition("该人员户籍已迁出本省，不在本系统登记死亡", reason="PERSON_MOVED_OUT")
    return death_date


class DeathChange(enum.Enum):
    """What a change of status / death date means for the other services."""

    NONE = "none"
    DIED = "died"  # a living person is now recorded as deceased: PersonDied
    CORRECTED = "corrected"  # the date of a recorded death changed: PersonDeathCorrected
    WITHDRAWN = "withdrawn"  # a recorded death was an error: PersonDeathCorrected without a date


def death_change(before: tuple[PersonStatus, date | None], after: tuple[PersonStatus, date | None]) -> DeathChange:
    (old, old_date), (new, new_date) = before, after
    if new is PersonStatus.DECEASED and old is not PersonStatus.DECEASED:
        return DeathChange.DIED
    if old is PersonStatus.DECEASED and new is not PersonStatus.DECEASED:
        return DeathChange.WITHDRAWN
    if old is PersonStatus.DECEASED and old_date != new_date:
        return DeathChange.CORRECTED
    return DeathChange.NONE


# ---------------------------------------------------------------- use-case inputs and what other contexts see


@dataclass(frozen=True)
class NewPerson:
    """CreatePerson's input: the clerk's text, validated by :func:`validate_person`."""

    name: str
    id_number: str
    phone: str
    village: str
    hukou: HukouType = HukouType.RURAL
    death_date: date | None = None
    card_number: str = ""


@dataclass(frozen=True)
class PersonUpdate:
    """UpdatePerson's input: the fields named in ``paths`` are changed, the others ignored.

    ``unreadable`` holds, per path, the violations found while reading the
    request's value for it (an unknown enum number, an impossible date): they
    are reported together with the other fields' problems, once the person
    is found and within the caller's region."""

    paths: frozenset[str]
    name: str = ""
    phone: str = ""
    village: str = ""
    hukou: HukouType | None = None
    status: PersonStatus | None = PersonStatus.ACTIVE
    death_date: date | None = None
    card_number: str = ""
    unreadable: Mapping[str, Sequence[FieldViolation]] = field(default_factory=dict)


@dataclass(frozen=True)
class PersonSummary:
    """What other contexts may know of a registered person (never the 身份证 number or phone)."""

    id: str
    name: str
    id_masked: str
    birth_date: date
    status: PersonStatus
    village: str
    sex: str = ""  # 男 / 女, from the 身份证

    @property
    def deceased(self) -> bool:
        return self.status is PersonStatus.DECEASED

    @property
    def active(self) -> bool:
        return self.status is PersonStatus.ACTIVE


@dataclass(frozen=True)
class RegisteredPerson:
    """A person found by blind index during a roster import: what the file's row is compared with."""

    id: str
    name: str
    village: str
    phone_digest: str | None
    hukou: HukouType
    card: str = ""  # the 一卡通 account on file ("" when none), to compare with the file's


@dataclass(frozen=True)
class NewRosterPerson:
    """A roster row's person to register: the id drawn for it, the validated draft, its blind-index digests
    and its 一卡通 account ("" when the row has none)."""

    id: str
    draft: PersonDraft
    digest: str
    phone_digest: str | None
    card: str = ""


@dataclass(frozen=True)
class RosterIdentity:
    """A person as a roster file shows them: plaintext or masked, as the caller may see."""

    id: str
    name: str
    id_number: str
    phone: str
    village: str
    hukou: HukouType
    card: str = ""


__all__ = [
    "DeathChange",
    "HukouType",
    "NewPerson",
    "NewRosterPerson",
    "PersonDraft",
    "PersonStatus",
    "PersonSummary",
    "PersonUpdate",
    "RegisteredPerson",
    "RosterIdentity",
    "check_death",
    "check_life_status",
    "check_status_change",
    "death_change",
    "is_bank_card",
    "luhn_ok",
    "normalize_card",
    "normalize_name",
    "normalize_phone",
    "normalize_roster_card",
    "parse_village",
    "validate_person",
]
