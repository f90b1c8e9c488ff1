"""Members-wide protobuf details on top of :mod:`jsxcore.wire`, for the
contexts' presenters and the servicer.

* :func:`region` — ``jsx.common.v1.RegionCode`` cached per code: a roster of
  100k people names a few hundred villages, and the import builds an event
  per person. Safe to share because protobuf copies a message when it is
  assigned to a field.
* :func:`day` — a date field left unset (not an all-zero Date) when there is
  no date, as the API has always answered.
* :func:`enum_in` — the members' domain enums carry Chinese labels as values
  (what roster files and clerks write), so the wire enum maps to a domain
  member by *name*: ``HUKOU_TYPE_RURAL`` → ``HukouType.RURAL``.
"""

from __future__ import annotations

import enum
from datetime import date
from functools import lru_cache
from typing import Any, TypeVar

from jsx.common.v1 import common_pb2
from jsxcore import wire
from jsxcore.errors import InvalidArgument

E = TypeVar("E", bound=enum.Enum)


@lru_cache(maxsize=65536)
def region(code: str) -> common_pb2.RegionCode:
    return wire.region_to(code)


def day(value: date | None) -> common_pb2.Date | None:
    return None if value is None else wire.date_to(value)


def enum_in(
    pb_enum: Any, prefix: str, domain: type[E], value: int, field: str, what: str, default: E | None = None
) -> E:
    """A wire enum number → the domain member of the same name; UNSPECIFIED is ``default`` or refused."""
    short = wire.enum_short(pb_enum, value, prefix)
    if not short:
        if value == 0:
            if default is not None:
                return default
            raise InvalidArgument.field(field, f"请选择{what}", reason="ENUM_REQUIRED")
        raise InvalidArgument.field(field, f"{what}取值 {value} 无效", reason="INVALID_ENUM")
    try:
        return domain[short]
    except KeyError:
        raise InvalidArgument.field(field, f"{what}取值 {value} 无效", reason="INVALID_ENUM") from None


def enum_out(pb_enum: Any, prefix: str, member: enum.Enum | str) -> Any:
    """A domain member (or its stored name) → the wire number (an int, typed by
    the stubs as each enum's own ``ValueType``)."""
    return wire.enum_to(pb_enum, prefix, member.name if isinstance(member, enum.Enum) else member)


__all__ = ["day", "enum_in", "enum_out", "region"]
