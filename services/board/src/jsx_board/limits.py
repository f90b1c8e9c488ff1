"""Rate limits: in-process token buckets keyed by client address or by contact.

Each key owns a bucket of ``rate.count`` tokens refilled evenly over
``rate.per_s`` seconds; a request takes one token or is refused with the time
until the next token. The table is bounded (:data:`MAX_KEYS`, least recently
used keys dropped first), so a flood of new addresses cannot exhaust memory.

In-process means per board process: with N replicas behind a load balancer a
client can get up to N times the limit (the README says so). Contacts are
never kept: a contact's key is an HMAC of its normalised form under a key
made at start-up, so the table holds no phone number or e-mail address.
IPv6 clients are limited per /64, the block one subscriber usually holds.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
import secrets
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from jsx_board.config import Rate

#: Keys kept per limiter; the least recently used go first.
MAX_KEYS = 50_000


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets for one kind of request (page views, objections, …)."""

    def __init__(self, rate: Rate, *, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self._clock = clock
        self._max = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def refill_per_s(self) -> float:
        return self.rate.count / self.rate.per_s

    def take(self, key: str) -> float:
        """Take a token for ``key``: 0.0 when allowed, else the seconds until one is free."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(key, None)
            if bucket is None:
                bucket = _Bucket(float(self.rate.count), now)
            else:
                bucket.tokens = min(float(self.rate.count), bucket.tokens + (now - bucket.stamp) * self.refill_per_s)
                bucket.stamp = now
            self._buckets[key] = bucket  # most recently used last
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.refill_per_s

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_s(wait: float) -> int:
    """Whole seconds for a ``Retry-After`` header (at least 1)."""
    return max(1, math.ceil(wait))


def address_key(host: str) -> str:
    """The limiter key of a client address: IPv4 as is, IPv6 by its /64."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "addr:" + host[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"addr:{ip.ipv4_mapped}"
        return "addr:" + str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return f"addr:{ip}"


_SPACES = re.compile(r"[\s\-()（）]+")


class ContactKeys:
    """Opaque limiter keys for contacts: the same phone written ``138 0000 1234``,
    ``13800001234`` or with full-width digits gives the same key, and the key
    reveals nothing (HMAC-SHA256 under a random key that lives only in memory)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def __repr__(self) -> str:
        return "ContactKeys(<key hidden>)"

    def key(self, contact: str) -> str:
        norm = _SPACES.sub("", unicodedata.normalize("NFKC", contact)).lower()
        if norm.startswith("+86"):
            norm = norm[3:]
        return "contact:" + hmac.new(self._key, norm.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


__all__ = ["MAX_KEYS", "ContactKeys", "RateLimiter", "address_key", "retry_after_s"]
