"""Proto ↔ value mapping, written once for every service.

Servicers turn wire messages into the use cases' plain arguments with the
``*_from`` functions (each raises :class:`~jsxcore.errors.InvalidArgument`
naming the field, in Chinese) and turn values back with the ``*_to``
functions. Nothing here touches a database or a caller.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from jsx.common.v1 import common_pb2
from jsxcore.errors import InvalidArgument
from jsxcore.values import Money, Period, RegionCode

E = TypeVar("E", bound=enum.Enum)

#: The largest id a resource name may carry (int64, as the databases store them).
MAX_ID = 2**63 - 1


# ---------------------------------------------------------------- dates and times


def date_from(msg: common_pb2.Date, field: str, *, required: bool = False, default: date | None = None) -> date | None:
    """A ``jsx.common.v1.Date`` → ``date``; all-zero is "not given" (``default``, or an error if ``required``)."""
    if msg.year == 0 and msg.month == 0 and msg.day == 0:
        if required:
            raise InvalidArgument.field(field, "请填写日期（年、月、日）", reason="MISSING_DATE")
        return default
    try:
        return date(msg.year, msg.month, msg.day)
    except ValueError:
        raise InvalidArgument.field(
            field, f"日期 {msg.year}-{msg.month}-{msg.day} 无效", reason="INVALID_DATE"
        ) from None


def date_to(value: date | None) -> common_pb2.Date:
    """``date`` → ``jsx.common.v1.Date`` (an empty message for ``None``)."""
    if value is None:
        return common_pb2.Date()
    return common_pb2.Date(year=value.year, month=value.month, day=value.day)


def ts_to(value: datetime | None) -> Timestamp:
    """``datetime`` → Timestamp; a naive value is UTC (SQLite returns naive datetimes; we store UTC)."""
    out = Timestamp()
    if value is not None:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        out.FromDatetime(value)
    return out


def ts_from(value: Timestamp, field: str = "time", *, required: bool = False) -> datetime | None:
    """Timestamp → aware UTC ``datetime``; the zero Timestamp is "not given"."""
    if value.seconds == 0 and value.nanos == 0:
        if required:
            raise InvalidArgument.field(field, "请填写时间", reason="MISSING_TIME")
        return None
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument.field(field, "时间超出可表示的范围", reason="INVALID_TIME") from None


# ---------------------------------------------------------------- money


def money_to(value: Money | int) -> common_pb2.Money:
    """Money (or integer 分) → ``jsx.common.v1.Money``."""
    return common_pb2.Money(fen=value.fen if isinstance(value, Money) else int(value))


def money_from(msg: common_pb2.Money, field: str, *, positive: bool = False, allow_zero: bool = True) -> Money:
    """``jsx.common.v1.Money`` → Money; ``positive`` refuses 0 and below, ``allow_zero=False`` refuses 0."""
    fen = msg.fen
    if positive and fen <= 0:
        raise InvalidArgument.field(field, "金额须大于 0 元", reason="AMOUNT_NOT_POSITIVE")
    if not allow_zero and fen == 0:
        raise InvalidArgument.field(field, "请填写金额", reason="MISSING_AMOUNT")
    return Money(fen)


# ---------------------------------------------------------------- enums


def _short(enum_type: Any, value: int, prefix: str) -> str:
    try:
        name = str(enum_type.Name(value))
    except ValueError:
        return ""
    return name[len(prefix) :] if name.startswith(prefix) else ""


def enum_from(enum_type: Any, value: int, prefix: str, domain_enum: type[E], field: str, what: str) -> E:
    """A wire enum number → the domain enum with the same short name.

    UNSPECIFIED, a number the proto does not define, or a name the domain does not know
    → InvalidArgument on ``field`` listing the choices (``what`` is the Chinese noun).
    """
    short = _short(enum_type, value, prefix)
    if short and short != "UNSPECIFIED":
        try:
            return domain_enum(short)
        except ValueError:
            pass
    choices = "、".join(n[len(prefix) :] for n in enum_type.keys() if not n.endswith("UNSPECIFIED"))  # noqa: SIM118  (a protobuf enum wrapper, not a dict)
    raise InvalidArgument.field(field, f"请选择{what}（{choices}）", reason="INVALID_ENUM")


def enum_short(enum_type: Any, value: int, prefix: str) -> str:
    """The short name of a wire enum number (``""`` for UNSPECIFIED or unknown numbers)."""
    short = _short(enum_type, value, prefix)
    return "" if short == "UNSPECIFIED" else short


def enum_to(enum_type: Any, prefix: str, value: enum.Enum | str | None) -> int:
    """A domain enum (or its short name) → the wire number; 0 (UNSPECIFIED) when unknown or ``None``."""
    if value is None:
        return 0
    short = value.value if isinstance(value, enum.Enum) else value
    try:
        return int(enum_type.Value(prefix + str(short)))
    except ValueError:
        return 0


# ---------------------------------------------------------------- regions and periods


def region_from(msg: common_pb2.RegionCode | str, field: str, *, required: bool = True) -> RegionCode | None:
    """``jsx.common.v1.RegionCode`` (or its code) → RegionCode; empty → error if ``required`` else None."""
    code = msg if isinstance(msg, str) else msg.code
    if not code.strip():
        if required:
            raise InvalidArgument.field(
                field, "请填写行政区划代码（12位统计用区划代码，例如 431281101201）", reason="MISSING_REGION"
            )
        return None
    return RegionCode.parse(code, field=field)


def region_to(value: RegionCode | str) -> common_pb2.RegionCode:
    return common_pb2.RegionCode(code=value.code if isinstance(value, RegionCode) else value)


def period_from(msg: common_pb2.Period | str, field: str, *, required: bool = True) -> Period | None:
    """``jsx.common.v1.Period`` → Period (2022, 2022-H1, 2022-Q3, 2022-08)."""
    code = msg if isinstance(msg, str) else msg.code
    if not code.strip():
        if required:
            raise InvalidArgument.field(
                field, "请填写期间，例如 2022、2022-H1、2022-Q3 或 2022-08", reason="MISSING_PERIOD"
            )
        return None
    return Period.parse(code, field=field)


def period_to(value: Period | str) -> common_pb2.Period:
    return common_pb2.Period(code=str(value))


# ---------------------------------------------------------------- resource names (AIP-122)


def name_to(collection: str, id_: object) -> str:
    """``("funds", 12)`` → ``"funds/12"``; an empty id gives ``""``."""
    text = str(id_) if id_ is not None else ""
    return f"{collection}/{text}" if text else ""


def id_from(name: str, collection: str, field: str, *, required: bool = True) -> str:
    """``"households/abc"`` (or the bare ``"abc"``) → ``"abc"``.

    A name of another collection (``persons/abc`` given for a household), a doubled
    prefix (``households/households/abc``) or a tail with a slash → InvalidArgument.
    """
    text = name.strip()
    if not text:
        if required:
            raise InvalidArgument.field(field, f"请填写资源名，例如 {collection}/编号", reason="MISSING_RESOURCE_NAME")
        return ""
    tail = text[len(collection) + 1 :] if text.startswith(collection + "/") else text
    if not tail or "/" in tail:
        raise InvalidArgument.field(
            field, f"资源名“{name[:80]}”格式不对，应写成 {collection}/编号", reason="INVALID_RESOURCE_NAME"
        )
    return tail


def int_id_from(name: str, collection: str, field: str) -> int:
    """``"funds/12"`` (or ``"12"``) → 12; anything else (0, negative, past int64) → InvalidArgument."""
    tail = id_from(name, collection, field)
    if not tail.isascii() or not tail.isdigit() or not 0 < int(tail) <= MAX_ID:
        raise InvalidArgument.field(
            field,
            f"资源名“{name[:80]}”格式不对，应写成 {collection}/编号，例如 {collection}/1",
            reason="INVALID_RESOURCE_NAME",
        )
    return int(tail)


__all__ = [
    "MAX_ID",
    "date_from",
    "date_to",
    "enum_from",
    "enum_short",
    "enum_to",
    "id_from",
    "int_id_from",
    "money_from",
    "money_to",
    "name_to",
    "period_from",
    "period_to",
    "region_from",
    "region_to",
    "ts_from",
    "ts_to",
]
