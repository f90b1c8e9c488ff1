"""What clerks type, read the same way in every context: NFKC-folded text
and enum members matched by their Chinese label (or name). Pure."""

from __future__ import annotations

import enum
import unicodedata
from typing import TypeVar

from jsxcore.errors import InvalidArgument

E = TypeVar("E", bound=enum.Enum)


def fold(text: str | None) -> str:
    """NFKC (full-width digits, letters and brackets become ASCII), trimmed; ``None`` → ``""``."""
    return unicodedata.normalize("NFKC", text or "").strip()


def parse_enum(enum_cls: type[E], text: str, *, field: str, what: str) -> E:
    """Match a clerk's text against an enum's labels (or names)."""
    t = fold(text)
    for member in enum_cls:
        if t in (fold(str(member.value)), member.name):
            return member
    labels = "、".join(str(m.value) for m in enum_cls)
    raise InvalidArgument.field(
        field, f"{what}“{text}”无法识别，应为：{labels}", reason=f"INVALID_{field.split('.')[-1].upper()}"
    )


__all__ = ["fold", "parse_enum"]
