"""Wire helpers of the funds service before jsxcore.wire and jsxcore.paging existed.

Temporary: only the disbursement modules (``batches.py``, ``bank.py``,
``payment_file.py``) still import these while they move to
``disbursement/`` and the shared plumbing (``jsxcore.wire``: ``int_id_from``,
``enum_from``, ``ts_to``, ``money_to``, ``date_from``; ``jsxcore.paging``;
``RegionCode.prefix``). Delete this module with their last use.
"""
from __future__ import annotations

import base64
import hashlib
from datetime import date, datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from jsx.common.v1 import common_pb2
from jsxcore.errors import InvalidArgument
from jsxcore.values import RegionCode

SERVICE = "/jsx.funds.v1.FundsService/"
DEFAULT_PAGE = 50
MAX_PAGE = 500


def region_prefix(region: RegionCode) -> str:
    return region.prefix


def parse_id(name: str, collection: str, field: str) -> int:
    """``"funds/12"`` → 12 (also accepts the bare id); InvalidArgument otherwise."""
    text = name.strip()
    tail = text[len(collection) + 1:] if text.startswith(collection + "/") else text
    if not tail.isdigit() or int(tail) <= 0 or int(tail) >= 2**63:
        raise InvalidArgument.field(
            field, f"资源名“{name}”格式不对，应写成 {collection}/编号，例如 {collection}/1", reason="INVALID_RESOURCE_NAME"
        )
    return int(tail)


def parse_entry_name(name: str, field: str = "name") -> tuple[int, int]:
    """``"funds/3/ledgerEntries/17"`` → (3, 17)."""
    parts = name.strip().split("/")
    if len(parts) != 4 or parts[0] != "funds" or parts[2] != "ledgerEntries" \
            or not parts[1].isdigit() or not parts[3].isdigit():
        raise InvalidArgument.field(
            field, f"账目资源名“{name}”格式不对，应写成 funds/基金编号/ledgerEntries/账目编号", reason="INVALID_RESOURCE_NAME"
        )
    return int(parts[1]), int(parts[3])


def parse_enum(enum_type, value: int, prefix: str, domain_enum, field: str, what: str):  # type: ignore[no-untyped-def]
    """A wire enum value → the domain enum; UNSPECIFIED or unknown → InvalidArgument."""
    try:
        name = enum_type.Name(value)
    except ValueError:
        name = ""
    short = name[len(prefix):] if name.startswith(prefix) else ""
    try:
        return domain_enum(short)
    except ValueError:
        choices = "、".join(n[len(prefix):] for n in enum_type.keys() if not n.endswith("UNSPECIFIED"))
        raise InvalidArgument.field(field, f"请选择{what}（{choices}）", reason="INVALID_ENUM") from None


def ts(dt: datetime | None) -> Timestamp:
    out = Timestamp()
    if dt is not None:
        if dt.tzinfo is None:  # SQLite returns naive datetimes; we store UTC
            dt = dt.replace(tzinfo=timezone.utc)
        out.FromDatetime(dt)
    return out


def money(fen: int) -> common_pb2.Money:
    return common_pb2.Money(fen=fen)


def page_size(value: int) -> int:
    if value < 0:
        raise InvalidArgument.field("page_size", "每页条数不能为负数", reason="INVALID_PAGE_SIZE")
    return min(value or DEFAULT_PAGE, MAX_PAGE)


def encode_token(last_id: int, filter_key: str) -> str:
    digest = hashlib.sha256(filter_key.encode()).hexdigest()[:12]
    return base64.urlsafe_b64encode(f"{last_id}:{digest}".encode()).decode()


def decode_token(token: str, filter_key: str) -> int:
    """The last id of the previous page (0 for the first page)."""
    if not token:
        return 0
    try:
        last, digest = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        ok = digest == hashlib.sha256(filter_key.encode()).hexdigest()[:12] and last.isdigit()
    except Exception:
        ok = False
    if not ok:
        raise InvalidArgument.field(
            "page_token", "翻页令牌无效或与查询条件不符，请从第一页重新查询", reason="INVALID_PAGE_TOKEN"
        )
    return int(last)


def to_date(msg: common_pb2.Date, field: str) -> date | None:
    if msg.year == 0 and msg.month == 0 and msg.day == 0:
        return None
    try:
        return date(msg.year, msg.month, msg.day)
    except ValueError:
        raise InvalidArgument.field(field, f"日期 {msg.year}-{msg.month}-{msg.day} 无效", reason="INVALID_DATE") from None
