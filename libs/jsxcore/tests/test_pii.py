from __future__ import annotations

import base64
import hashlib
import hmac
import io
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jsxcore.pii import (
    BlindIndex,
    FieldCipher,
    PiiDecryptError,
    PiiRedactingFilter,
    decode_key,
    generate_key,
    mask_id_number,
    mask_name,
    mask_phone,
    redact,
)
from jsxcore.values import IdNumber

K1, K2, K3 = (bytes([i]) * 32 for i in (1, 2, 3))
ID = "11010519491231002X"


def test_round_trip_with_aad_and_random_nonce() -> None:
    c = FieldCipher(K1)
    t1 = c.encrypt(ID, aad=b"persons:42")
    t2 = c.encrypt(ID, aad=b"persons:42")
    assert t1 != t2 and ID.encode() not in t1
    assert len(t1) == 1 + 12 + len(ID) + 16 and t1[0] == 1
    assert c.decrypt(t1, aad=b"persons:42") == ID
    assert c.decrypt(c.encrypt("张三丰")) == "张三丰"
    assert c.decrypt(c.encrypt("")) == ""


@given(st.text(max_size=200), st.binary(max_size=40))
def test_round_trip_property(text: str, aad: bytes) -> None:
    c = FieldCipher(K1)
    assert c.decrypt(c.encrypt(text, aad=aad), aad=aad) == text


def test_tampering_wrong_aad_wrong_key_are_detected() -> None:
    c = FieldCipher(K1)
    token = c.encrypt(ID, aad=b"persons:42")
    for i in (0 + 13, 5, len(token) - 1):  # ciphertext, nonce, tag
        bad = bytearray(token)
        bad[i] ^= 0x01
        with pytest.raises(PiiDecryptError, match="篡改"):
            c.decrypt(bytes(bad), aad=b"persons:42")
    with pytest.raises(PiiDecryptError):
        c.decrypt(token, aad=b"persons:43")  # copied to another row
    with pytest.raises(PiiDecryptError):
        FieldCipher(K2).decrypt(token, aad=b"persons:42")  # same id, other key
    with pytest.raises(PiiDecryptError, match="长度"):
        c.decrypt(token[:20])
    # rewriting the key id byte must not be accepted even if that key exists
    both = FieldCipher({1: K1, 2: K1}, current=1)
    with pytest.raises(PiiDecryptError):
        both.decrypt(b"\x02" + token[1:], aad=b"persons:42")


def test_key_rotation() -> None:
    old = FieldCipher(K1, key_id=1)
    token = old.encrypt(ID)
    rotated = FieldCipher({1: K1, 2: K2}, current=2)
    assert rotated.decrypt(token) == ID
    assert rotated.needs_rotation(token) and rotated.key_id_of(token) == 1
    fresh = rotated.encrypt(ID)
    assert fresh[0] == 2 and not rotated.needs_rotation(fresh)
    with pytest.raises(PiiDecryptError, match="密钥编号 2"):
        old.decrypt(fresh)


def test_cipher_construction_errors_and_repr() -> None:
    with pytest.raises(ValueError):
        FieldCipher(b"short")
    with pytest.raises(ValueError):
        FieldCipher({1: K1, 2: K2})  # which one is current?
    with pytest.raises(ValueError):
        FieldCipher({1: K1}, current=3)
    with pytest.raises(ValueError):
        FieldCipher(K1, key_id=256)
    r = repr(FieldCipher({1: K1, 2: K2}, current=2))
    assert "current=2" in r and K1.hex() not in r and "\\x01" not in r


def test_base64_keys() -> None:
    k = generate_key()
    raw = base64.b64decode(k)
    assert len(raw) == 32 and generate_key() != k
    assert decode_key(k) == raw
    assert decode_key(base64.urlsafe_b64encode(raw).decode()) == raw
    c = FieldCipher.from_base64(k)
    assert FieldCipher(raw).decrypt(c.encrypt("x")) == "x"
    multi = FieldCipher.from_base64({1: k, 7: generate_key()}, current=7)
    assert multi.encrypt("x")[0] == 7
    for bad in ("not base64!!", base64.b64encode(b"x" * 16).decode()):
        with pytest.raises(ValueError):
            decode_key(bad)


def test_blind_index() -> None:
    idx = BlindIndex(K3)
    d = idx.digest(ID)
    assert len(d) == 64 and int(d, 16) >= 0
    assert idx.digest(" 110105 19491231002x ") == d
    assert idx.digest("１１０１０５１９４９１２３１００２Ｘ") == d
    assert idx.digest("11010519491231002") != d
    assert BlindIndex(K2).digest(ID) != d  # keyed: not a plain hash
    # Stored digests stay valid: exactly HMAC-SHA256(key, normalised value).
    assert d == hmac.new(K3, ID.encode(), hashlib.sha256).hexdigest()
    assert idx.digest("13912345678") == hmac.new(K3, b"13912345678", hashlib.sha256).hexdigest()
    assert ID not in repr(idx) and K3.hex() not in repr(idx)
    with pytest.raises(ValueError):
        BlindIndex(b"short")


def test_masks() -> None:
    assert mask_id_number("431281198001011234") == "4312**********1234"
    assert mask_id_number(IdNumber.parse(ID)) == "1101**********002X"
    assert mask_id_number("12345") == "*****"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("138-1234-5678") == "138****5678"
    assert mask_phone("07451234567") == "074****4567"
    assert mask_phone("2345678") == "***5678"
    assert mask_phone("123") == "***"
    assert mask_name("张明") == "张*"
    assert mask_name("张三明") == "张*明"
    assert mask_name("欧阳修华") == "欧**华"
    assert mask_name("李") == "*" and mask_name("") == ""


def test_redact_text() -> None:
    text = f"身份证 {ID} 手机 13812345678，另 +86 13912345678；订单 202208150000000001234 uuid 3f2a0000000000000000a1"
    out = redact(text)
    assert ID not in out and "1101**********002X" in out
    assert "13812345678" not in out and "138****5678" in out and "+86 139****5678" in out
    assert "202208150000000001234" in out  # 21 digits: not an id number
    assert redact("金额 12345678901") == "金额 12345678901"  # 11 digits not starting 1[3-9]
    assert redact("431281abc") == "431281abc"


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s|%(who)s"))
    handler.addFilter(PiiRedactingFilter())
    logger = logging.getLogger(f"test_pii.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger, stream


def test_filter_redacts_message_args_extra_and_exceptions() -> None:
    logger, stream = _capture()
    logger.info("paid %s phone %s", ID, 13812345678, extra={"who": f"户主{ID}"})
    logger.info("dict args %(id)s", {"id": ID}, extra={"who": "-"})
    try:
        raise ValueError(f"bad person {ID} / 15912345678")
    except ValueError:
        logger.exception("failed %d", 3, extra={"who": "-"})
    out = stream.getvalue()
    assert ID not in out and "13812345678" not in out and "15912345678" not in out
    assert "paid 1101**********002X phone 138****5678|户主1101**********002X" in out
    assert "dict args 1101**********002X" in out
    assert "failed 3" in out and "bad person 1101**********002X / 159****5678" in out
    assert "Traceback" in out


def test_filter_keeps_records_without_pii_and_bad_formats() -> None:
    logger, stream = _capture()
    logger.info("plain 100% ok", extra={"who": "x"})
    logger.info("broken %s %s", "only-one", extra={"who": "x"})
    out = stream.getvalue().splitlines()
    assert out[0] == "plain 100% ok|x"
    assert out[1].startswith("broken %s %s")
