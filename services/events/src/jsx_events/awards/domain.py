"""Award decisions (评选表彰). Pure Python, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date

from jsxcore.errors import ErrorCollector
from jsxcore.values import RegionCode, RegionLevel


class AwardKind(enum.StrEnum):
    HAPPY_FAMILY = "HAPPY_FAMILY"
    BEST_MEMBER = "BEST_MEMBER"
    HONEST_HOUSEHOLD = "HONEST_HOUSEHOLD"
    HEALTH_STAR = "HEALTH_STAR"


AWARD_LABELS: dict[str, str] = {
    AwardKind.HAPPY_FAMILY: "幸福家庭",
    AwardKind.BEST_MEMBER: "最美协会人",
    AwardKind.HONEST_HOUSEHOLD: "诚信计生户",
    AwardKind.HEALTH_STAR: "健康之星",
}
_AWARD_ALIASES: dict[str, str] = {v: k for k, v in AWARD_LABELS.items()} | {"幸福好家庭": AwardKind.HAPPY_FAMILY}


def normalize_award_kind(text: str) -> str:
    s = text.strip()
    return _AWARD_ALIASES.get(s, s.upper() if s.isascii() else s)


class AwardDecision(enum.StrEnum):
    AWARDED = "AWARDED"
    NOT_AWARDED = "NOT_AWARDED"


@dataclass(frozen=True)
class Award:
    """评选表彰 decision: ``nominee_id`` (household/person/member id),
    awarded by the association of ``region`` at ``level`` for ``year``."""

    id: str
    kind: str
    nominee_id: str
    region: RegionCode
    level: RegionLevel
    year: int
    decision: AwardDecision
    decided_on: date
    note: str = ""
    title: str = ""
    nominee_region: RegionCode | None = None
    activity_id: str = ""

    def validate(self) -> None:
        errs = ErrorCollector()
        if not self.nominee_id:
            errs.add("nominee_id", "请填写被推荐对象编号")
        if not self.kind:
            errs.add("kind", "请填写表彰类别（如 幸福家庭、最美协会人、诚信计生户、健康之星）")
        if not 1900 <= self.year <= 2999:
            errs.add("year", "评选年度无效")
        errs.raise_if_any("评选表彰信息有误，请按字段说明修改后重试")

    @property
    def label(self) -> str:
        return self.title or AWARD_LABELS.get(self.kind, self.kind)


@dataclass(frozen=True)
class Nomination:
    """What DecideAward asks: the association of ``region`` decides ``kind`` for a nominee and year."""

    kind: str
    nominee_id: str
    region: RegionCode
    year: int
    decision: AwardDecision
    note: str = ""
    title: str = ""
    nominee_region: RegionCode | None = None  # None: the association's own region
    activity_id: str = ""

    def decided(self, id_: str, on: date) -> Award:
        """The decision as recorded on ``on``, validated (the kind as a code: 幸福好家庭 → HAPPY_FAMILY)."""
        a = Award(
            id_,
            normalize_award_kind(self.kind),
            self.nominee_id,
            self.region,
            self.region.level,
            self.year,
            self.decision,
            on,
            self.note,
            title=self.title,
            nominee_region=self.nominee_region or self.region,
            activity_id=self.activity_id,
        )
        a.validate()
        return a
