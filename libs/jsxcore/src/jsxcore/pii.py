"""Personal data protection: field encryption, blind index, masking, log redaction.

* :class:`FieldCipher` encrypts a column value with AES-256-GCM. Token layout:
  ``key_id (1 byte) ‖ nonce (12 bytes) ‖ ciphertext+tag``; the key id is also
  authenticated, and old keys stay readable so keys can rotate.
* :class:`BlindIndex` gives a keyed HMAC-SHA256 of a normalised value so rows
  can be found by 身份证/phone equality without storing plaintext.
* ``mask_*`` produce the forms shown to callers who may not see the value.
* :class:`PiiRedactingFilter` masks anything that looks like a 身份证 number or
  mobile number in log records (a safety net; code must not log PII at all).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import unicodedata
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "BlindIndex",
    "FieldCipher",
    "PiiDecryptError",
    "PiiRedactingFilter",
    "decode_key",
    "generate_key",
    "mask_id_number",
    "mask_name",
    "mask_phone",
    "redact",
]

KEY_BYTES = 32
_NONCE_BYTES = 12


class PiiDecryptError(Exception):
    """A stored token cannot be decrypted: unknown key id, wrong key, or the
    data was altered. Never carries the token or any plaintext."""


def generate_key() -> str:
    """A fresh random 32-byte key, standard base64 (for PII_KEY and friends)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def decode_key(text: str) -> bytes:
    """Decode a base64 (standard or url-safe) 32-byte key; ValueError otherwise."""
    cleaned = text.strip()
    try:
        raw = base64.b64decode(cleaned.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("不是有效的 base64 文本") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"解码后为 {len(raw)} 字节，需要 {KEY_BYTES} 字节")
    return raw


class FieldCipher:
    """AES-256-GCM for single fields, with key rotation.

    ``FieldCipher(key)`` uses one key under id 1 (or ``key_id=``);
    ``FieldCipher({1: old, 2: new}, current=2)`` encrypts with key 2 and still
    decrypts tokens made with key 1. Pass the same ``aad`` (e.g. the row's
    table and id) to encrypt and decrypt to bind a token to its row.
    """

    def __init__(self, key: bytes | Mapping[int, bytes], current: int | None = None, *, key_id: int = 1) -> None:
        keys = {key_id: key} if isinstance(key, (bytes, bytearray)) else dict(key)
        if current is None:
            if len(keys) != 1:
                raise ValueError("FieldCipher with several keys needs current=<key id>")
            current = next(iter(keys))
        if current not in keys:
            raise ValueError(f"current key id {current} is not among the keys")
        self._aead: dict[int, AESGCM] = {}
        for kid, raw in keys.items():
            if isinstance(kid, bool) or not isinstance(kid, int) or not 0 <= kid <= 255:
                raise ValueError(f"key id must be an int 0–255, got {kid!r}")
            if len(raw) != KEY_BYTES:
                raise ValueError(f"key {kid} must be {KEY_BYTES} bytes, got {len(raw)}")
            self._aead[kid] = AESGCM(bytes(raw))
        self.current = current

    @classmethod
    def from_base64(cls, key: str | Mapping[int, str], current: int | None = None, *, key_id: int = 1) -> FieldCipher:
        """Build from base64 key text(s) as found in configuration."""
        if isinstance(key, str):
            return cls(decode_key(key), current, key_id=key_id)
        return cls({kid: decode_key(k) for kid, k in key.items()}, current)

    def __repr__(self) -> str:
        return f"FieldCipher(key_ids={sorted(self._aead)}, current={self.current})"

    def encrypt(self, plaintext: str, *, aad: bytes = b"") -> bytes:
        """Encrypt with the current key and a random nonce (same input → different tokens)."""
        header = bytes([self.current])
        nonce = os.urandom(_NONCE_BYTES)
        return header + nonce + self._aead[self.current].encrypt(nonce, plaintext.encode("utf-8"), header + aad)

    def decrypt(self, token: bytes, *, aad: bytes = b"") -> str:
        """Decrypt a token from :meth:`encrypt`; raises PiiDecryptError if it was altered,
        belongs to another row (aad) or its key is unknown."""
        if len(token) < 1 + _NONCE_BYTES + 16:
            raise PiiDecryptError("加密数据长度不对，无法解密（数据可能已损坏）")
        kid = token[0]
        aead = self._aead.get(kid)
        if aead is None:
            raise PiiDecryptError(f"加密数据使用的密钥编号 {kid} 未配置，无法解密（请检查 PII 密钥轮换配置）")
        try:
            data = aead.decrypt(token[1 : 1 + _NONCE_BYTES], bytes(token[1 + _NONCE_BYTES :]), token[:1] + aad)
        except InvalidTag:
            raise PiiDecryptError("加密数据校验失败：数据被篡改、不属于该记录，或密钥不正确") from None
        return data.decode("utf-8")

    def key_id_of(self, token: bytes) -> int:
        """Which key made this token (to find rows that still need re-encrypting)."""
        return token[0]

    def needs_rotation(self, token: bytes) -> bool:
        """True if the token was made with a key other than the current one."""
        return token[0] != self.current


_SPACES = re.compile(r"\s+")


def _normalise(value: str) -> str:
    # Same person, same digest: full-width digits, spaces and a lower-case x
    # must not create a second "identity".
    return _SPACES.sub("", unicodedata.normalize("NFKC", value)).upper()


class BlindIndex:
    """Keyed HMAC-SHA256 over a normalised value, for equality lookup.

    The key must differ from the encryption key; without it the digests
    cannot be brute-forced over the small 身份证/phone space.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError(f"blind index key must be at least {KEY_BYTES} bytes")
        # Keyed once; each digest copies this state. The one-shot
        # hmac.digest re-keys and releases the GIL on every call, which with
        # a database thread busy costs a thread switch per digest (a roster
        # import computes 200k).
        self._mac = hmac.new(bytes(key), digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return "BlindIndex(<key hidden>)"

    def digest(self, value: str) -> str:
        """64 hex chars; inputs differing only by spaces, width or case give the same digest."""
        mac = self._mac.copy()
        mac.update(_normalise(value).encode("utf-8"))
        return mac.hexdigest()


# ---------------------------------------------------------------- masking


def mask_id_number(value: object) -> str:
    """``4312**********1234``: first 4 and last 4 kept (shorter input: all masked)."""
    s = getattr(value, "value", value)
    s = _normalise(str(s))
    if len(s) <= 8:
        return "*" * len(s)
    return s[:4] + "*" * (len(s) - 8) + s[-4:]


def mask_phone(value: str) -> str:
    """``138****5678`` for mobiles; other numbers keep only their last 4 digits."""
    s = re.sub(r"[\s\-]", "", unicodedata.normalize("NFKC", value))
    if len(s) == 11:
        return s[:3] + "****" + s[-4:]
    if len(s) > 4:
        return "*" * (len(s) - 4) + s[-4:]
    return "*" * len(s)


def mask_name(value: str) -> str:
    """``张*`` (2 chars), ``张*明`` (3), ``欧阳**华`` → first + stars + last (4+)."""
    s = value.strip()
    if len(s) <= 1:
        return "*" * len(s)
    if len(s) == 2:
        return s[0] + "*"
    return s[0] + "*" * (len(s) - 2) + s[-1]


# ---------------------------------------------------------------- log redaction

# A plausible birth date keeps long order/snowflake numbers from being masked.
_ID_RE = re.compile(
    r"(?<![0-9A-Za-z])[0-9]{6}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?![0-9A-Za-z])"
)
_PHONE_RE = re.compile(r"(?<![0-9])((?:\+?86[\s-]?)?)(1[3-9][0-9]{9})(?![0-9])")


def redact(text: str) -> str:
    """Mask every 身份证-like and mainland-mobile-like substring of ``text``."""
    text = _ID_RE.sub(lambda m: mask_id_number(m.group(0)), text)
    return _PHONE_RE.sub(lambda m: m.group(1) + mask_phone(m.group(2)), text)


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class PiiRedactingFilter(logging.Filter):
    """Masks 身份证 numbers and mobiles in a record's message, args, ``extra``
    string fields and exception text. Attach to handlers (filters on a handler
    see records from every logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the formatter's problem, not ours
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, name, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


if __name__ == "__main__":  # ``python -m jsxcore.pii`` prints a fresh key for PII_KEY & co.
    print(generate_key())
