"""Objection references and form tokens, signed with the board's secret (no database).

* A **reference** (查询编号) such as ``12-3-K7F9Q2XW4M`` names objection
  ``applications/12/objections/3`` and carries 50 bits of HMAC-SHA256 over that
  name: whoever lodged the objection can look its outcome up later, and nobody
  can walk the sequential ids to read other people's outcomes (guessing 50 bits
  against the lookup rate limit is hopeless). Any board replica with the same
  secret checks it.
* A **form token** is put in each objection form when it is shown: a fresh
  request id (the AIP-155 ``request_id`` LodgeObjection gets), the time and a
  MAC. Sending the same form twice (a double click, a refresh) lodges one
  objection; a token older than :data:`FORM_TTL_S` or not made by this board is
  refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import unicodedata
import uuid
from dataclasses import dataclass

#: How long an objection form stays valid after it was shown.
FORM_TTL_S = 24 * 3600
_MAC_CHARS = 10  # base32 characters of the reference MAC (50 bits)
_REF_RE = re.compile(r"([0-9]{1,12})-([0-9]{1,12})-([A-Z2-7]{" + str(_MAC_CHARS) + "})")
_OBJECTION_RE = re.compile(r"applications/([0-9]{1,12})/objections/([0-9]{1,12})")


def _mac(secret: bytes, purpose: str, text: str) -> bytes:
    return hmac.new(secret, f"{purpose}\x00{text}".encode(), hashlib.sha256).digest()


def _b32(raw: bytes, n: int) -> str:
    return base64.b32encode(raw).decode("ascii")[:n]


@dataclass(frozen=True)
class References:
    """Signs and checks references and form tokens with ``secret``."""

    secret: bytes

    def __repr__(self) -> str:
        return "References(<secret hidden>)"

    # -- references

    def reference(self, objection: str) -> str:
        """``applications/12/objections/3`` → ``12-3-XXXXXXXXXX``."""
        m = _OBJECTION_RE.fullmatch(objection)
        if m is None:
            raise ValueError(f"not an objection name: {objection!r}")
        return f"{m.group(1)}-{m.group(2)}-{_b32(_mac(self.secret, 'ref', objection), _MAC_CHARS)}"

    def objection(self, reference: str) -> str | None:
        """The objection a reference names, or None if it is malformed or not signed by this board."""
        text = re.sub(r"\s+", "", unicodedata.normalize("NFKC", reference)).upper()
        m = _REF_RE.fullmatch(text)
        if m is None:
            return None
        name = f"applications/{int(m.group(1))}/objections/{int(m.group(2))}"
        want = _b32(_mac(self.secret, "ref", name), _MAC_CHARS)
        return name if hmac.compare_digest(want, m.group(3)) else None

    # -- form tokens

    def form_token(self, application: str, *, now: float | None = None) -> str:
        """A token for one objection form about ``application``."""
        request_id = str(uuid.uuid4())
        stamp = int(time.time() if now is None else now)
        body = f"{request_id}.{stamp}"
        return f"{body}.{_b32(_mac(self.secret, 'form:' + application, body), 26)}"

    def request_id(self, token: str, application: str, *, now: float | None = None) -> str | None:
        """The request id of a valid, unexpired form token for ``application``; else None."""
        parts = token.strip().split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        body = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(_b32(_mac(self.secret, "form:" + application, body), 26), parts[2]):
            return None
        age = (time.time() if now is None else now) - int(parts[1])
        if not -300 <= age <= FORM_TTL_S:
            return None
        try:
            return str(uuid.UUID(parts[0]))
        except ValueError:
            return None


__all__ = ["FORM_TTL_S", "References"]
