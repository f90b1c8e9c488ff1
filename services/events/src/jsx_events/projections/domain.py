"""Member facts as events needs them, and how a members event changes them. Pure Python, no I/O.

The members service publishes sites, households and pairings; events keeps ids,
kinds and region codes (never names of people, never member lists) to know
which sites and villages owe activities and which special families have a
volunteer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from jsxcore.values import RegionCode

SITE_KIND_LABELS: dict[str, str] = {
    "WARM_HOME": "暖心家园",
    "MEMBER_HOME": "会员之家",
    "HEALTH_STATION": "健康驿站",
    "YOUTH_HEALTH_BASE": "青春健康教育基地",
}
# Schools appear in the members registry as 青春健康教育基地 sites.
_SITE_ALIASES = {v: k for k, v in SITE_KIND_LABELS.items()} | {
    "SCHOOL": "YOUTH_HEALTH_BASE",
    "学校": "YOUTH_HEALTH_BASE",
}


def normalize_site_kind(text: str) -> str:
    """A site kind code from a code, an alias (``SCHOOL``) or a Chinese name (``暖心家园``)."""
    s = text.strip()
    return _SITE_ALIASES.get(s) or _SITE_ALIASES.get(s.upper()) or s.upper()


def site_name(site_id: str, kind: str, name: str = "") -> str:
    """How reports name a site: its public name (挂牌), else its kind and id (``暖心家园（warm-1）``)."""
    return name or f"{SITE_KIND_LABELS.get(kind, kind)}（{site_id}）"


@dataclass(frozen=True)
class Site:
    id: str
    kind: str  # WARM_HOME, MEMBER_HOME, SCHOOL, …
    name: str
    region: RegionCode
    opened_on: date | None = None  # None: not known (counted as open from the start)
    closed_on: date | None = None  # the last day it ran; None: still open

    def open_on(self, day: date) -> bool:
        """True if the site ran on ``day`` (opened by then, not closed before)."""
        return (self.opened_on is None or self.opened_on <= day) and (self.closed_on is None or self.closed_on >= day)


@dataclass(frozen=True)
class Family:
    """A household as events needs it: ids only. ``special`` = 计生特殊家庭."""

    household_id: str
    region: RegionCode
    special: bool = False
    site_id: str = ""
    volunteer_ids: tuple[str, ...] = ()


# ------------------------------------------------------------------ facts from members' events


@dataclass(frozen=True)
class SiteOpened:
    site_id: str
    kind: str
    region: RegionCode
    opened_on: date | None = None
    #: the site's public name, when the event carries one (``None``: keep what is known)
    name: str | None = None


@dataclass(frozen=True)
class SiteClosed:
    """The site's last day (``None``: the day the event arrives)."""

    site_id: str
    kind: str
    region: RegionCode
    closed_on: date | None = None


@dataclass(frozen=True)
class HouseholdPlaced:
    """A household registered or its members changed: events keeps only where it is."""

    household_id: str
    region: RegionCode


@dataclass(frozen=True)
class SituationChanged:
    """A household's situation (``SPECIAL_BEREAVED``, ``SPECIAL_DISABLED``, …) began or ended on ``ended``."""

    household_id: str
    region: RegionCode
    kind: str
    ended: date | None = None


@dataclass(frozen=True)
class PairingChanged:
    """A volunteer paired with (``active``) or unpaired from a household."""

    pairing_id: str
    volunteer_id: str
    household_id: str
    region: RegionCode
    active: bool


MemberFact = SiteOpened | SiteClosed | HouseholdPlaced | SituationChanged | PairingChanged


def special_kinds_after(kinds: Iterable[str], change: SituationChanged, today: date) -> list[str]:
    """The household's open special situations after ``change`` (sorted).

    Only ``SPECIAL_*`` situations are kept; one that ended before ``today`` is
    closed, one without an end (or ending later) is open.
    """
    out = set(kinds)
    if change.kind.startswith("SPECIAL_"):
        if change.ended is not None and change.ended < today:
            out.discard(change.kind)
        else:
            out.add(change.kind)
    return sorted(out)
