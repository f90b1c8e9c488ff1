"""计划生育“三结合” for 湖南省 — project types from the seeds, the rest ASSUMED.

What the seed documents give:

- 湖南省计生协 2022 年工作要点 (八、扎实做好惠民项目): 三结合 is a 省级项目
  (so ``jsx_approval_chain`` sends it up to the province).
- 怀化市计生协 2022 年第二十一期简报: 三结合 and 贷款贴息 money “大力扶持农业产业
  发展，先后助力打造了麻阳楠木桥产业园、洪江市蓝莓开发、高山茶叶种植基地及黄岩休闲
  旅游等一批产业品牌……解决了一批计生家庭就业增收” — the project types below
  (种养, 加工, 乡村旅游) and the implementing bodies (households, cooperatives,
  companies in a 公司+农户 scheme, production bases); the report form “惠及计生家庭
  1515 户 4269 人” — households and people helped are what 绩效 counts; and 溆浦县's
  “经费跟着项目走、项目跟着绩效走” — the last tranche waits for a passed 验收.

What nobody published for Hunan, and this module ASSUMES (every line of a
decision says so; 怀化 and the counties override it):

- 帮扶协议 must state 帮扶内容（资金或实物）、受助户义务、预期增收、帮扶期限 — the
  items the issue for this program lists; no term limit and no money cap per
  household are set.
- tranches: 70 % of the base once the 帮扶协议 is signed, 30 % once the 验收
  passed.
- 绩效评价: 帮扶户数完成率 30 分, 受益人数完成率 20 分, 增收目标完成率 50 分
  (each the achieved share of the plan, rounded down), graded by the national
  bands for project 绩效评价 (财政部《项目支出绩效评价管理办法》财预〔2020〕10号:
  90 分以上为优、80–89 分为良、60–79 分为中、60 分以下为差).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from jsxcore.hookspecs import (
    BASIS_POINTS,
    AgreementClause,
    Beneficiary,
    CriterionScore,
    Dated,
    DatedTable,
    Eligibility,
    ImplementerKind,
    PerformanceCriterion,
    PerformanceFacts,
    PerformanceGrade,
    PerformanceResult,
    SanjieheProjectType,
    SanjieheRules,
    Situation,
    TrancheDecision,
    TrancheMilestone,
    TrancheRequest,
)
from jsxcore.values import Money, Period

SEED_SOURCE = "怀化市计生协 2022 年第二十一期简报"
#: Appended to every line that rests on an assumed figure.
ASSUMED_TRANCHE = "（假定标准：湖南省未公布三结合分期拨付比例）"
ASSUMED_SCORE = "（假定标准：湖南省未公布三结合绩效评价细则，等级按财预〔2020〕10号）"
ASSUMED_AGREEMENT = "（假定标准：湖南省未公布三结合帮扶协议范本）"

#: The Beneficiary attributes the generic SANJIEHE eligibility reads (``rule_inputs``).
APPLICATION_KEYS = frozenset({"sanjiehe.project", "sanjiehe.industry", "sanjiehe.agreement_number"})

FAMILY_PLANNING_HOUSEHOLDS = (
    Situation.ONLY_CHILD.value,
    Situation.TWO_DAUGHTERS.value,
    Situation.SPECIAL_BEREAVED.value,
    Situation.SPECIAL_DISABLED.value,
)
_LABELS: Mapping[str, str] = {
    Situation.ONLY_CHILD: "独生子女户",
    Situation.TWO_DAUGHTERS: "双女户",
    Situation.SPECIAL_BEREAVED: "计生特殊家庭（独生子女死亡）",
    Situation.SPECIAL_DISABLED: "计生特殊家庭（独生子女伤残）",
    Situation.OTHER: "非计生家庭",
}
_AFTER = {"AGREEMENT": "签订帮扶协议后", "PROGRESS": "有跟踪记录后", "ACCEPTANCE": "验收合格后"}


def yuan(m: Money) -> str:
    return f"{m.format_yuan()} 元"


def share(bp: int) -> str:
    return f"{bp / 100:.2f}".rstrip("0").rstrip(".") + "%"


@dataclass(frozen=True)
class SanjieheScheme:
    """One row of :data:`SANJIEHE_SCHEMES`: a region's 三结合 figures. A county
    builds its own (its ``source`` and tags without 假定 when published) and
    answers the three hooks with :func:`decide_tranche` and :func:`score`."""

    project_types: tuple[SanjieheProjectType, ...]
    implementers: tuple[ImplementerKind, ...]
    households: tuple[str, ...]
    agreement_clauses: tuple[AgreementClause, ...]
    milestones: tuple[TrancheMilestone, ...]
    criteria: tuple[PerformanceCriterion, ...]
    grades: tuple[PerformanceGrade, ...]
    source: str
    tranche_tag: str
    score_tag: str
    agreement_max_months: int | None = None
    support_cap: Money | None = None

    def rules(self, year: int) -> SanjieheRules:
        return SanjieheRules(
            year=year,
            project_types=self.project_types,
            implementers=self.implementers,
            households=self.households,
            agreement_clauses=self.agreement_clauses,
            milestones=self.milestones,
            criteria=self.criteria,
            grades=self.grades,
            basis=(
                self.source,
                "拨付节点：" + "，".join(f"{m.name} {share(m.share_bp)}" for m in self.milestones) + self.tranche_tag,
                "绩效评价：" + "，".join(f"{c.name} {c.points} 分" for c in self.criteria) + self.score_tag,
            ),
            agreement_max_months=self.agreement_max_months,
            support_cap=self.support_cap,
        )


HUNAN_2022 = SanjieheScheme(
    project_types=(
        SanjieheProjectType(
            "PLANTING_BREEDING",
            "种养",
            f"种植、养殖项目，如洪江市蓝莓开发、高山茶叶种植基地（{SEED_SOURCE}）",
            (
                "种养",
                "种植",
                "养殖",
                "蓝莓",
                "茶叶",
                "茶园",
                "柑橘",
                "果园",
                "蔬菜",
                "药材",
                "养猪",
                "养牛",
                "养鸡",
                "水产",
            ),
        ),
        SanjieheProjectType("PROCESSING", "加工", f"农产品加工项目，带动计生家庭就业增收（{SEED_SOURCE}）", ("加工",)),
        SanjieheProjectType(
            "RURAL_TOURISM",
            "乡村旅游",
            f"乡村（休闲）旅游项目，如黄岩休闲旅游（{SEED_SOURCE}）",
            ("乡村旅游", "旅游", "休闲", "农家乐", "民宿"),
        ),
    ),
    implementers=("HOUSEHOLD", "COOPERATIVE", "COMPANY", "BASE"),
    households=FAMILY_PLANNING_HOUSEHOLDS,
    agreement_clauses=(
        AgreementClause("SUPPORT", "帮扶内容", f"协议须写明帮扶资金或实物的内容、数量和金额{ASSUMED_AGREEMENT}"),
        AgreementClause(
            "OBLIGATIONS", "受助户义务", f"协议须写明受助户承担的义务（参加培训、按计划生产等）{ASSUMED_AGREEMENT}"
        ),
        AgreementClause(
            "EXPECTED_INCOME", "预期增收", f"协议须写明预期增收金额，作为绩效评价的依据{ASSUMED_AGREEMENT}"
        ),
        AgreementClause("TERM", "帮扶期限", f"协议须写明帮扶起止日期{ASSUMED_AGREEMENT}"),
    ),
    milestones=(
        TrancheMilestone("FIRST", "首期", 7000, "AGREEMENT", f"签订帮扶协议后拨付协议金额的 70%{ASSUMED_TRANCHE}"),
        TrancheMilestone(
            "FINAL",
            "尾款",
            3000,
            "ACCEPTANCE",
            f"验收合格后拨付其余 30%（溆浦县“经费跟着项目走、项目跟着绩效走”）{ASSUMED_TRANCHE}",
        ),
    ),
    criteria=(
        PerformanceCriterion("HOUSEHOLDS", "帮扶户数完成率", 30, f"实际帮扶户数 ÷ 计划帮扶户数 × 30 分{ASSUMED_SCORE}"),
        PerformanceCriterion("PEOPLE", "受益人数完成率", 20, f"实际受益人数 ÷ 计划受益人数 × 20 分{ASSUMED_SCORE}"),
        PerformanceCriterion("INCOME_GAIN", "增收目标完成率", 50, f"实测增收 ÷ 协议预期增收 × 50 分{ASSUMED_SCORE}"),
    ),
    grades=(
        PerformanceGrade("优", 90),
        PerformanceGrade("良", 80),
        PerformanceGrade("中", 60),
        PerformanceGrade("差", 0),
    ),
    source=(
        f"项目类型依据{SEED_SOURCE}（种养、加工、乡村旅游，公司+农户）；分期拨付比例与绩效评价权重为假定标准"
        "（湖南省未公布），绩效等级按财政部《项目支出绩效评价管理办法》（财预〔2020〕10号）"
    ),
    tranche_tag=ASSUMED_TRANCHE,
    score_tag=ASSUMED_SCORE,
)

#: 三结合 schemes by the date they apply from; year N uses the row in force on N-01-01.
SANJIEHE_SCHEMES: DatedTable[SanjieheScheme] = DatedTable(
    "计划生育“三结合”项目规则", [Dated(date(2022, 1, 1), HUNAN_2022, HUNAN_2022.source)]
)


def scheme_for(year: int, table: DatedTable[SanjieheScheme] = SANJIEHE_SCHEMES) -> SanjieheScheme:
    return table.at(date(year, 1, 1)).value


def decide_tranche(request: TrancheRequest, scheme: SanjieheScheme) -> TrancheDecision:
    """Whether the milestone may be paid now and how much: its share of the
    base (the last milestone takes what the others' rounding left), never more
    than what is left of the base."""
    tag = scheme.tranche_tag
    opening = (scheme.source,)
    milestone = next((m for m in scheme.milestones if m.code == request.milestone), None)
    no: list[str] = []
    if milestone is None:
        names = "、".join(f"{m.name}（{m.code}）" for m in scheme.milestones)
        no.append(f"拨付节点 {request.milestone!r} 不在本地区三结合拨付节点中：{names}{tag}")
    if not request.agreement_signed:
        no.append(f"帮扶协议尚未签订，不得拨付资金（须先签协议后拨款）{tag}")
    if request.acceptance == "FAILED":
        no.append(f"最近一次验收不合格，须整改后复验合格才能继续拨付{tag}")
    if request.base.fen <= 0:
        no.append(f"拨付基数（协议帮扶资金或实施主体预算）须大于 0 元{tag}")
    if milestone is not None:
        if milestone.code in request.paid_milestones:
            no.append(f"{milestone.name}已拨付，同一节点不能重复拨付{tag}")
        if milestone.after == "PROGRESS" and request.progress_records < 1:
            no.append(f"{milestone.name}须在有跟踪记录后拨付，目前没有跟踪记录{tag}")
        if milestone.after == "ACCEPTANCE" and request.acceptance != "PASSED":
            no.append(f"{milestone.name}须在验收合格后拨付，项目尚未验收合格{tag}")
    if no or milestone is None:
        return TrancheDecision(False, tuple(no), Money(0), opening)

    shares = {m.code: request.base.mul_ratio(m.share_bp, BASIS_POINTS, "ROUND_DOWN") for m in scheme.milestones}
    last = scheme.milestones[-1].code
    shares[last] = request.base - sum((v for k, v in shares.items() if k != last), Money(0))
    due = shares[milestone.code]
    left = max(request.base - request.paid_so_far, Money(0))
    amount = min(due, left)
    basis = [
        *opening,
        (
            f"{milestone.name}：{_AFTER[milestone.after]}拨付基数 {yuan(request.base)}的 {share(milestone.share_bp)}"
            f" = {yuan(due)}{tag}"
        ),
        f"该基数已拨付 {yuan(request.paid_so_far)}，尚余 {yuan(left)}；本次拨付 {yuan(amount)}{tag}",
    ]
    if not amount:
        return TrancheDecision(False, (f"该基数已全部拨付，没有可拨付的金额{tag}",), Money(0), tuple(basis))
    reasons = (f"帮扶协议已签订，{milestone.name}的拨付条件（{_AFTER[milestone.after]}）已满足{tag}",)
    return TrancheDecision(True, reasons, amount, tuple(basis))


def _ratio_points(points: int, got: int, planned: int) -> int:
    if planned <= 0 or got <= 0:
        return 0
    return points * min(got, planned) // planned


def score(facts: PerformanceFacts, scheme: SanjieheScheme) -> PerformanceResult:
    """Each criterion earns its points × the achieved share of the plan
    (capped at 100 %, rounded down); the grade is the first band the total reaches."""
    tag = scheme.score_tag
    lines: list[CriterionScore] = []
    for c in scheme.criteria:
        if c.code == "HOUSEHOLDS":
            got, planned, unit = facts.households_helped, facts.households_planned, "户"
            text = f"帮扶 {got} 户，计划 {planned} 户"
        elif c.code == "PEOPLE":
            got, planned, unit = facts.people_helped, facts.people_planned, "人"
            text = f"受益 {got} 人，计划 {planned} 人"
        elif c.code == "INCOME_GAIN":
            got, planned, unit = facts.income_gain_measured.fen, facts.income_gain_expected.fen, "分"
            text = f"实测增收 {yuan(facts.income_gain_measured)}，协议预期 {yuan(facts.income_gain_expected)}"
        else:
            got, planned, unit = 0, 0, ""
            text = "本插件不认识该指标，计 0 分"
        points = _ratio_points(c.points, got, planned)
        if planned <= 0 and unit:
            text += "（计划为 0，无法计算完成率，计 0 分）"
        lines.append(
            CriterionScore(c.code, c.name, points, c.points, f"{c.name}：{text}，得 {points}/{c.points} 分{tag}")
        )
    total = sum(x.points for x in lines)
    top = sum(c.points for c in scheme.criteria)
    grade = next(g for g in scheme.grades if total >= g.min_score)
    what = "该户" if facts.scope == "HOUSEHOLD" else "该项目"
    bands = "、".join(f"{g.min_score} 分以上为{g.name}" if g.min_score else f"其余为{g.name}" for g in scheme.grades)
    basis = (scheme.source, f"{what}绩效评价得分 {total}/{top} 分，等级“{grade.name}”（{bands}）{tag}")
    return PerformanceResult(total, top, grade.name, tuple(lines), basis)


# --------------------------------------------------------------------------
# The generic application path (jsx_program_eligibility)
# --------------------------------------------------------------------------


def application_eligibility(beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]) -> Eligibility:
    """A 三结合 application (reserved ``sanjiehe.*`` attributes): the household
    must be a 计生家庭, the project of a supported type, the 帮扶协议 signed."""
    raw_year = str(context.get("program_year", "")).strip()
    year = int(raw_year) if raw_year.isdigit() else period.start.year
    scheme = scheme_for(year)
    rules = scheme.rules(year)
    attrs = beneficiary.attributes
    ok: list[str] = []
    no: list[str] = []
    label = _LABELS.get(beneficiary.situation, beneficiary.situation)
    if beneficiary.situation in rules.households:
        ok.append(f"属于{label}，在三结合帮扶对象范围内（{SEED_SOURCE}：惠及计生家庭）")
    else:
        no.append(f"{label}不在三结合帮扶对象范围内（帮扶对象为计生家庭）")
    industry = str(attrs.get("sanjiehe.industry", "")).strip()
    project = str(attrs.get("sanjiehe.project", "")).strip()
    kind = rules.find_type(industry) or rules.find_type(project)
    if kind is None:
        names = "、".join(t.name for t in rules.project_types)
        no.append(f"项目“{industry or project or '（未填写）'}”不属于三结合扶持的项目类型：{names}")
    else:
        ok.append(f"项目类型：{kind.name}（{kind.description}）")
    if str(attrs.get("sanjiehe.agreement_number", "")).strip():
        ok.append(f"已签订帮扶协议，可按协议拨付{ASSUMED_AGREEMENT}")
    else:
        no.append(f"未填写帮扶协议编号：须先签订帮扶协议，再拨付资金{ASSUMED_AGREEMENT}")
    return Eligibility(not no, tuple(no or ok))
