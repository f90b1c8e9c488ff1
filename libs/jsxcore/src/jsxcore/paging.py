"""One page token for every list RPC (AIP-158): keyset, bound to the query.

A token names the last row of the previous page by its sort key (never an
offset, so rows inserted meanwhile neither repeat nor vanish) and carries a
digest of the query it belongs to (the RPC and every filter field) and an
HMAC over both. A token used with another filter, another RPC, or edited by
hand answers INVALID_ARGUMENT on ``page_token``.

The HMAC key is set once per process by the service runtime from its
configuration (:func:`configure`), so every replica of a service accepts the
others' tokens. Until then a random per-process key is used: tokens still work
within the process, and a stale one after a restart asks the clerk to start
again from the first page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, tuple_

from jsxcore.errors import InvalidArgument

T = TypeVar("T")
KeyPart = str | int
DEFAULT_PAGE = 50
MAX_PAGE = 500
_MAX_TOKEN = 2048

_key: bytes = os.urandom(32)


def configure(key: bytes) -> None:
    """Set the process's token key (the runtime derives it from the service's secrets)."""
    global _key
    _key = hashlib.sha256(b"jsx-page-token\x00" + key).digest()


def _digest(query: str, filters: Sequence[object]) -> str:
    text = json.dumps([query, *[str(f) for f in filters]], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _mac(payload: bytes) -> str:
    return hmac.new(_key, payload, hashlib.sha256).hexdigest()[:24]


def _invalid(message: str, reason: str) -> InvalidArgument:
    return InvalidArgument.field("page_token", message, reason=reason)


@dataclass(frozen=True)
class Page:
    """A parsed page request: how many rows, and after which sort key (``None`` = first page)."""

    size: int
    after: tuple[KeyPart, ...] | None
    bound: str

    def token(self, last: Sequence[KeyPart] | KeyPart) -> str:
        """The next page's token, given the sort key of this page's last row."""
        key = [last] if isinstance(last, (str, int)) else list(last)
        for part in key:
            if isinstance(part, bool) or not isinstance(part, (str, int)):
                raise TypeError(f"page keys are str or int, not {type(part).__name__}")
        payload = json.dumps({"k": key, "q": self.bound}, ensure_ascii=False, separators=(",", ":")).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{_mac(payload)}"

    def cut(self, rows: Sequence[T], key: Callable[[T], Sequence[KeyPart] | KeyPart]) -> tuple[list[T], str]:
        """Rows fetched with ``limit(size + 1)`` → (this page, next token or ``""``)."""
        out = list(rows[: self.size])
        more = len(rows) > self.size and bool(out)
        return out, self.token(key(out[-1])) if more else ""

    def apply(self, query: Select[Any], *columns: Any) -> Select[Any]:
        """Keyset-paginate ``query`` on ``columns`` (unique together, in this order), fetching one extra row."""
        if self.after is not None:
            if len(self.after) != len(columns):
                raise _invalid("翻页令牌无效，请从第一页重新查询", "INVALID_PAGE_TOKEN")
            if len(columns) == 1:
                query = query.where(columns[0] > self.after[0])
            else:
                query = query.where(tuple_(*columns) > tuple_(*self.after))
        return query.order_by(*columns).limit(self.size + 1)


def page(
    page_size: int,
    page_token: str,
    *,
    query: str,
    filters: Sequence[object] = (),
    default: int = DEFAULT_PAGE,
    maximum: int = MAX_PAGE,
) -> Page:
    """Parse ``page_size``/``page_token`` of a list request.

    ``query`` names the RPC (``"jsx.funds.v1.FundsService/ListFunds"``) and ``filters`` are the
    values of every request field that narrows the result (normalised, e.g. a parsed region),
    so a token cannot be replayed against another query.
    """
    if page_size < 0:
        raise InvalidArgument.field("page_size", "每页条数（page_size）不能为负数", reason="INVALID_PAGE_SIZE")
    size = min(page_size or default, maximum)
    bound = _digest(query, filters)
    if not page_token:
        return Page(size, None, bound)
    key = _decode(page_token, bound)
    return Page(size, key, bound)


def _decode(token: str, bound: str) -> tuple[KeyPart, ...]:
    bad = _invalid("翻页令牌（page_token）无效，请从第一页重新查询", "INVALID_PAGE_TOKEN")
    if len(token) > _MAX_TOKEN or token.count(".") != 1:
        raise bad
    body, mac = token.split(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (ValueError, TypeError):
        raise bad from None
    if not hmac.compare_digest(_mac(payload), mac):
        raise bad
    try:
        data = json.loads(payload)
        key, q = data["k"], data["q"]
    except (ValueError, KeyError, TypeError):
        raise bad from None
    if q != bound:
        raise _invalid("翻页令牌与本次查询条件不一致，请从第一页重新查询", "PAGE_TOKEN_MISMATCH")
    if (
        not isinstance(key, list)
        or not key
        or not all(isinstance(p, (str, int)) and not isinstance(p, bool) for p in key)
    ):
        raise bad
    return tuple(key)


__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "Page", "configure", "page"]
