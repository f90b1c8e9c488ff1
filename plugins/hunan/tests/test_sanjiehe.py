"""湖南 三结合 baseline: project types from the seeds, tranche shares and 绩效 weights assumed."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest

import jsx_plugin_hunan as hunan
from jsxcore.errors import InvalidArgument
from jsxcore.hookspecs import Beneficiary, PerformanceFacts, TrancheRequest
from jsxcore.values import Money, Period, RegionCode

XUPU = RegionCode.parse("431224")


def request(milestone: str = "FIRST", **changes: Any) -> TrancheRequest:
    base = TrancheRequest(
        2022, "PLANTING_BREEDING", milestone, "HOUSEHOLD", Money.yuan(10_000), True, (), Money(0), 0, "NONE"
    )
    return replace(base, **changes)


def facts(**changes: Any) -> PerformanceFacts:
    base = PerformanceFacts(
        2022, "PROJECT", "PLANTING_BREEDING", 10, 10, 30, 30, Money.yuan(50_000), Money.yuan(50_000)
    )
    return replace(base, **changes)


def test_rules_for_2022() -> None:
    r = hunan.jsx_sanjiehe_rules(XUPU, 2022)
    assert [t.name for t in r.project_types] == ["种养", "加工", "乡村旅游"]
    assert r.implementers == ("HOUSEHOLD", "COOPERATIVE", "COMPANY", "BASE")
    assert [c.code for c in r.agreement_clauses] == ["SUPPORT", "OBLIGATIONS", "EXPECTED_INCOME", "TERM"]
    assert [(m.code, m.share_bp, m.after) for m in r.milestones] == [
        ("FIRST", 7000, "AGREEMENT"),
        ("FINAL", 3000, "ACCEPTANCE"),
    ]
    assert [(g.name, g.min_score) for g in r.grades] == [("优", 90), ("良", 80), ("中", 60), ("差", 0)]
    assert (
        r.max_score == 100
        and getattr(r.find_type("柑橘种植"), "code", None) == "PLANTING_BREEDING"
        and getattr(r.find_type("民宿"), "code", None) == "RURAL_TOURISM"
    )
    assert any("假定" in b for b in r.basis) and any("财预〔2020〕10号" in b for b in r.basis)
    with pytest.raises(InvalidArgument):
        hunan.jsx_sanjiehe_rules(XUPU, 2021)  # the seeds are of 2022: no earlier rule is guessed


def test_tranches_by_milestone() -> None:
    first = hunan.jsx_sanjiehe_tranche(request(), XUPU)
    assert first.allowed and first.amount == Money.yuan(7_000) and all("假定" in b for b in first.basis[1:])
    paid = {"paid_milestones": ("FIRST",), "paid_so_far": Money.yuan(7_000)}
    early = hunan.jsx_sanjiehe_tranche(request("FINAL", **paid), XUPU)
    assert not early.allowed and any("验收合格后拨付" in r for r in early.reasons)
    final = hunan.jsx_sanjiehe_tranche(request("FINAL", acceptance="PASSED", **paid), XUPU)
    assert final.allowed and final.amount == Money.yuan(3_000)
    # the last milestone takes what rounding left: 333.33 → 233.33 + 100.00
    odd = Money.yuan("333.33")
    assert hunan.jsx_sanjiehe_tranche(request(base=odd), XUPU).amount == Money.yuan("233.33")
    assert hunan.jsx_sanjiehe_tranche(request("FINAL", base=odd, acceptance="PASSED"), XUPU).amount == Money.yuan(
        "100.00"
    )


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"agreement_signed": False}, "帮扶协议尚未签订"),
        ({"acceptance": "FAILED"}, "验收不合格"),
        ({"paid_milestones": ("FIRST",), "paid_so_far": Money.yuan(7_000)}, "已拨付"),
        ({"milestone": "MIDDLE"}, "不在本地区三结合拨付节点中"),
        ({"paid_so_far": Money.yuan(10_000)}, "已全部拨付"),
    ],
)
def test_tranches_refused(changes: dict[str, Any], words: str) -> None:
    d = hunan.jsx_sanjiehe_tranche(request(**changes), XUPU)
    assert not d.allowed and d.amount == Money(0) and any(words in r for r in d.reasons)


def test_performance_score_and_grade() -> None:
    full = hunan.jsx_sanjiehe_performance(facts(), XUPU)
    assert (full.score, full.max_score, full.grade) == (100, 100, "优")
    assert [(x.code, x.points) for x in full.lines] == [("HOUSEHOLDS", 30), ("PEOPLE", 20), ("INCOME_GAIN", 50)]
    part = hunan.jsx_sanjiehe_performance(
        facts(households_helped=8, people_helped=24, income_gain_measured=Money.yuan(35_000)), XUPU
    )
    assert (part.score, part.grade) == (24 + 16 + 35, "中")
    loss = hunan.jsx_sanjiehe_performance(facts(income_gain_measured=Money.yuan(-500)), XUPU)
    assert (loss.score, loss.grade) == (50, "差")
    over = hunan.jsx_sanjiehe_performance(facts(income_gain_measured=Money.yuan(90_000)), XUPU)
    assert over.score == 100  # capped at the plan
    assert all("假定" in x.basis for x in full.lines)


def ben(situation: str = "TWO_DAUGHTERS", **attrs: str) -> Beneficiary:
    details = {
        "sanjiehe.project": "蓝莓种植",
        "sanjiehe.industry": "种养",
        "sanjiehe.agreement_number": "溆计协帮〔2022〕07号",
    }
    return Beneficiary("P", "H", XUPU, situation, "HOUSEHOLD", None, {**details, **attrs})


def test_an_application_needs_a_family_planning_household_a_supported_type_and_a_signed_agreement() -> None:
    year = Period.year_of(2022)
    ok = hunan.jsx_program_eligibility("SANJIEHE", ben(), year, {})
    assert ok is not None and ok.eligible
    assert hunan.jsx_entitlement_amount("SANJIEHE", ben(), year, {}) is None  # amounts come per tranche
    for b, words in (
        (ben("OTHER"), "不在三结合帮扶对象范围内"),
        (ben(**{"sanjiehe.agreement_number": ""}), "须先签订帮扶协议"),
        (ben(**{"sanjiehe.industry": "房地产", "sanjiehe.project": "商品房"}), "不属于三结合扶持的项目类型"),
    ):
        e = hunan.jsx_program_eligibility("SANJIEHE", b, year, {})
        assert e is not None and not e.eligible and any(words in r for r in e.reasons), e
    assert date(2022, 1, 1) == hunan.sanjiehe.SANJIEHE_SCHEMES.rows[0].since
