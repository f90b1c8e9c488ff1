"""计生家庭创业贷款贴息 (贷款贴息) for 湖南省 — a baseline of ASSUMED figures.

湖南省 has published no figures for this program: its 2022 plan
(湖南省计划生育协会 2022 年工作要点, 八、扎实做好惠民项目) names 创业贷款贴息 a
省级项目 and says nothing more, and the 怀化 bulletin gives no figure either.
Until the province, 怀化市 or a county configures its own scheme, this module
applies the one 福清市计生协 published (福清新闻网 2018-08-24, 《促进计生户生产发展
计生小额贷款贴息项目工作启动》), and every reason and basis line says so:

- 对象：依法履行计划生育义务的农村独生子女户和二女户；
- 每户贷款额度最高 5 万元，年贴息利率不高于 5%，贷款期限为一年（上年 7 月 1 日至
  当年 6 月 30 日）计算贴息限额；限额内按实际贷款额度、利率和期限予以贴息，超过部分
  不予贴息 — so a larger loan is subsidised on 5 万元 (``over_cap="CAP"``), and
  the 贴息限额 per household and 贴息年度 is 5 万元 × 5% × 1 年 = 2,500 元；
- 每户享受贷款次数最多不超过三次（即不超过三年）；
- 用途：种养业、农产品加工业、休闲农业、乡村旅游、其他促进增收致富的生产经营性项目；
  不得用于子女上学、看病、还债等非生产性支出和赌博、放高利贷等违法活动；
- 村初审并经村两委研究，公示 7 个工作日，乡镇审核，县复核.

Added from the issue that asked for the program: the subsidy is never more
than the interest actually paid. Assumptions of this module beyond the
article: interest days are counted with both ends of a receipt's period, the
daily rate is the annual rate ÷ 360 (the banks' convention for 人民币 loans),
and a receipt counts in the 贴息年度 its payment date falls in.

A county with its own scheme builds a :class:`LoanScheme` with its figures
(and its own ``source``/``tag``, without the word 假定 when they are published),
puts it in a :class:`~jsxcore.hookspecs.DatedTable` and answers the three
loan hooks with :func:`terms_for`, :func:`purposes_for` and :func:`decide`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from jsxcore.errors import FailedPrecondition
from jsxcore.hookspecs import (
    Amount,
    Beneficiary,
    Dated,
    DatedTable,
    Eligibility,
    InterestReceiptFacts,
    LoanClaim,
    LoanFacts,
    LoanPurpose,
    LoanPurposes,
    LoanSubsidyDecision,
    LoanSubsidyTerms,
    OverCap,
    PriorLoanClaim,
    PublicityRule,
    Situation,
)
from jsxcore.values import Money, Period

#: Where the figures come from, as a clerk reads it.
FUQING_SOURCE = "福清市计生协计生小额贷款贴息方案（福清新闻网 2018-08-24）"
#: Said after every reason and basis line this baseline gives.
ASSUMED = "（假定标准：湖南省未公布，参照福清市方案）"

#: The Beneficiary attributes the generic LOAN_INTEREST rules read (``rule_inputs``).
APPLICATION_KEYS = frozenset(
    {
        "loan.lender",
        "loan.principal_fen",
        "loan.annual_rate_bp",
        "loan.interest_paid_fen",
        "loan.start",
        "loan.end",
        "loan.purpose",
        "hukou_type",
        "hukou",
    }
)

SITUATION_LABELS: Mapping[str, str] = {
    Situation.ONLY_CHILD: "独生子女户",
    Situation.TWO_DAUGHTERS: "双女户",
    Situation.SPECIAL_BEREAVED: "计生特殊家庭（独生子女死亡）",
    Situation.SPECIAL_DISABLED: "计生特殊家庭（独生子女伤残）",
    Situation.OTHER: "非计生优待家庭",
}


def yuan(m: Money) -> str:
    """``Money(5000000)`` → ``"50000.00 元"``."""
    return f"{m.format_yuan()} 元"


def wan(m: Money) -> str:
    """Whole 万元 as ``"5 万元"``, anything else as :func:`yuan`."""
    return f"{m.fen // 1_000_000} 万元" if m.fen > 0 and m.fen % 1_000_000 == 0 else yuan(m)


def rate(bp: int) -> str:
    """``435`` → ``"4.35%"``, ``500`` → ``"5%"``."""
    return f"{bp / 100:.2f}".rstrip("0").rstrip(".") + "%"


@dataclass(frozen=True)
class LoanScheme:
    """The figures of one 贷款贴息 scheme: a row of :data:`LOAN_SCHEMES`.

    ``year_starts`` is the (month, day) the 贴息年度 begins: ``(7, 1)`` makes
    program year N run from N−1-07-01 to N-06-30 (福清), ``(1, 1)`` the
    calendar year. ``term_days`` (None: the whole 贴息年度) caps the interest
    days one claim subsidises. ``source`` is the line every decision opens its
    basis with; ``tag`` is appended to every reason and basis line.
    """

    households: tuple[str, ...]
    rural_only: bool
    principal_cap: Money
    over_cap: OverCap
    subsidy_rate_cap_bp: int
    day_count: int
    yearly_cap: Money
    max_claims: int
    year_starts: tuple[int, int]
    publicity_days: int
    publicity_working_days: bool
    source: str
    tag: str
    term_days: int | None = None

    def window(self, program_year: int) -> tuple[date, date]:
        """First and last day of program year ``program_year``'s 贴息年度."""
        month, day = self.year_starts
        start = date(program_year, month, day) if (month, day) == (1, 1) else date(program_year - 1, month, day)
        return start, date(start.year + 1, month, day) - timedelta(days=1)

    def program_year_of(self, day: date) -> int:
        """The program year whose 贴息年度 contains ``day``."""
        if self.year_starts == (1, 1):
            return day.year
        return day.year + 1 if (day.month, day.day) >= self.year_starts else day.year

    def terms(self, program_year: int) -> LoanSubsidyTerms:
        start, end = self.window(program_year)
        labels = "、".join(SITUATION_LABELS.get(s, s) for s in self.households)
        over = "超过部分不予贴息" if self.over_cap == "CAP" else "超过的不予贴息"
        return LoanSubsidyTerms(
            program_year=program_year,
            window_start=start,
            window_end=end,
            households=self.households,
            rural_only=self.rural_only,
            principal_cap=self.principal_cap,
            over_cap=self.over_cap,
            subsidy_rate_cap_bp=self.subsidy_rate_cap_bp,
            day_count=self.day_count,
            term_days=self.term_days or (end - start).days + 1,
            yearly_cap=self.yearly_cap,
            max_claims=self.max_claims,
            basis=(
                self.source,
                f"{program_year} 贴息年度：{start.isoformat()} 至 {end.isoformat()}，利息凭证按付息日计入年度{self.tag}",
                f"贴息对象：{'农村' if self.rural_only else ''}{labels}{self.tag}",
                (
                    f"每户贷款额度最高 {wan(self.principal_cap)}（{over}），年贴息率不高于 {rate(self.subsidy_rate_cap_bp)}，"
                    f"日利率按年利率 ÷ {self.day_count} 计，不超过实付利息{self.tag}"
                ),
                f"每户每个贴息年度贴息不超过 {yuan(self.yearly_cap)}，每户最多享受 {self.max_claims} 次{self.tag}",
            ),
        )


#: 福清's figures (see the module docstring), as the Hunan baseline.
FUQING_2018 = LoanScheme(
    households=(Situation.ONLY_CHILD.value, Situation.TWO_DAUGHTERS.value),
    rural_only=True,
    principal_cap=Money.yuan(50_000),
    over_cap="CAP",
    subsidy_rate_cap_bp=500,
    day_count=360,
    yearly_cap=Money.yuan(2_500),  # 5 万元 × 5% × 1 年: the 贴息限额
    max_claims=3,
    year_starts=(7, 1),
    publicity_days=7,
    publicity_working_days=True,
    source=(
        f"假定标准：湖南省未公布计生家庭创业贷款贴息标准，参照{FUQING_SOURCE}：农村独生子女户和二女户，"
        "每户贷款额度最高 5 万元、年贴息率不高于 5%、按 1 年计算贴息限额，超过部分不予贴息，不超过实付利息，每户最多享受 3 次"
    ),
    tag=ASSUMED,
)

#: 贷款贴息 schemes by the date they apply from; program year N uses the row in force on N-01-01.
LOAN_SCHEMES: DatedTable[LoanScheme] = DatedTable(
    "计生家庭创业贷款贴息标准", [Dated(date(2018, 1, 1), FUQING_2018, FUQING_2018.source)]
)

#: 福清's purpose list: what the subsidy is for, and what it may not be used for.
FUQING_PURPOSES: tuple[LoanPurpose, ...] = (
    LoanPurpose(
        "PLANTING",
        "种植",
        True,
        "发展种植业，属于增收致富的生产经营性项目",
        ("种植", "种养", "果园", "茶园", "茶叶", "蔬菜", "蓝莓", "柑橘", "苗木", "药材", "食用菌"),
    ),
    LoanPurpose(
        "BREEDING",
        "养殖",
        True,
        "发展养殖业，属于增收致富的生产经营性项目",
        ("养殖", "养猪", "养牛", "养羊", "养鸡", "养鸭", "养鹅", "养鱼", "养蜂", "水产", "畜牧", "家禽"),
    ),
    LoanPurpose("PROCESSING", "农产品加工", True, "发展农产品加工业，属于生产经营性项目", ("加工",)),
    LoanPurpose(
        "LEISURE_AGRICULTURE", "休闲农业", True, "发展休闲农业，属于生产经营性项目", ("休闲农业", "采摘", "农庄")
    ),
    LoanPurpose(
        "RURAL_TOURISM", "乡村旅游", True, "发展乡村旅游，属于生产经营性项目", ("乡村旅游", "旅游", "农家乐", "民宿")
    ),
    LoanPurpose(
        "OTHER_PRODUCTION",
        "其他增收致富的生产经营性项目",
        True,
        "其他促进增收致富的生产经营性项目可以贴息，须在申请中写明项目内容",
    ),
    LoanPurpose(
        "SCHOOLING", "子女上学", False, "贴息资金不得用于子女上学等非生产性支出", ("上学", "学费", "读书", "升学")
    ),
    LoanPurpose(
        "MEDICAL", "看病", False, "贴息资金不得用于看病等非生产性支出", ("看病", "治病", "医疗", "住院", "医药")
    ),
    LoanPurpose("DEBT", "还债", False, "贴息资金不得用于还债等非生产性支出", ("还债", "偿债", "还款", "还贷")),
    LoanPurpose("GAMBLING", "赌博", False, "贴息资金不得用于赌博等违法活动", ("赌博", "赌")),
    LoanPurpose("USURY", "放高利贷", False, "贴息资金不得用于放高利贷等违法活动", ("高利贷", "放贷")),
)

#: Purpose lists by the date they apply from.
LOAN_PURPOSES: DatedTable[tuple[LoanPurpose, ...]] = DatedTable(
    "计生家庭创业贷款贴息用途目录",
    [Dated(date(2018, 1, 1), FUQING_PURPOSES, f"贷款用途目录：参照{FUQING_SOURCE}{ASSUMED}")],
)


def scheme_for(program_year: int, table: DatedTable[LoanScheme] = LOAN_SCHEMES) -> LoanScheme:
    """The scheme in force on 1 January of ``program_year`` (``NO_RULE_FOR_PERIOD`` before the first)."""
    return table.at(date(program_year, 1, 1)).value


def terms_for(program_year: int, table: DatedTable[LoanScheme] = LOAN_SCHEMES) -> LoanSubsidyTerms:
    """:func:`~jsxcore.hookspecs.jsx_loan_subsidy_terms`'s answer for ``table``."""
    return scheme_for(program_year, table).terms(program_year)


def purposes_for(on: date, table: DatedTable[tuple[LoanPurpose, ...]] = LOAN_PURPOSES) -> LoanPurposes:
    """:func:`~jsxcore.hookspecs.jsx_loan_purposes`'s answer for ``table``."""
    row = table.at(on)
    return LoanPurposes(row.value, (row.source,))


def decide(claim: LoanClaim, scheme: LoanScheme, purposes: LoanPurposes) -> LoanSubsidyDecision:
    """Decide a claim by ``scheme``'s figures and ``purposes``: the refusals
    when anything fails (subsidy 0), else the subsidy receipt by receipt —
    ``min(interest paid, min(principal, cap) × min(rate, rate cap) × days ÷
    day count)``, at most ``term_days`` days — capped by what is left of the
    yearly cap after this 贴息年度's earlier claims."""
    terms = scheme.terms(claim.program_year)
    tag, loan = scheme.tag, claim.loan
    ok: list[str] = []
    no: list[str] = []

    label = SITUATION_LABELS.get(claim.situation, claim.situation)
    if claim.situation in terms.households:
        ok.append(f"属于{label}，在贴息对象范围内{tag}")
    else:
        allowed = "、".join(SITUATION_LABELS.get(s, s) for s in terms.households)
        no.append(f"{label}不在贷款贴息对象范围内（贴息对象：{allowed}）{tag}")
    if terms.rural_only:
        if claim.hukou == "RURAL":
            ok.append(f"农村户籍{tag}")
        elif claim.hukou == "URBAN":
            no.append(f"城镇户籍家庭不在贷款贴息对象范围内（只面向农村计生家庭）{tag}")
        else:
            no.append(f"未登记户籍类型，贷款贴息只面向农村计生家庭，请先登记户籍类型（农村/城镇）{tag}")

    purpose = purposes.find(loan.purpose)
    if purpose is None:
        names = "、".join(p.name for p in purposes.allowed)
        no.append(f"贷款用途“{loan.purpose}”不在贴息用途目录中，请按目录填写：{names}{tag}")
    elif not purpose.allowed:
        no.append(f"贷款用途“{loan.purpose}”属于{purpose.name}：{purpose.reason}{tag}")
    else:
        ok.append(f"贷款用途：{purpose.name}（{purpose.reason}）{tag}")

    if loan.principal.fen <= 0:
        no.append(f"贷款本金须大于 0 元{tag}")
    elif loan.principal > terms.principal_cap and terms.over_cap == "REFUSE":
        no.append(f"贷款本金 {yuan(loan.principal)}超过每户贷款额度上限 {wan(terms.principal_cap)}，不予贴息{tag}")
    if loan.annual_rate_bp <= 0:
        no.append(f"合同年利率须大于 0{tag}")
    if loan.end < loan.start:
        no.append(f"贷款到期日 {loan.end.isoformat()} 早于放款日 {loan.start.isoformat()}{tag}")

    prior = claim.prior_years()
    if len(prior) >= terms.max_claims:
        years = "、".join(str(y) for y in prior)
        no.append(f"已在 {years} 贴息年度享受贴息 {len(prior)} 次，每户最多享受 {terms.max_claims} 次{tag}")
    else:
        ok.append(f"本次为第 {len(prior) + 1} 次享受贴息（每户最多 {terms.max_claims} 次）{tag}")
    done = claim.subsidised_this_year()
    left = max(terms.yearly_cap - done, Money(0))
    if not left:
        no.append(f"本贴息年度已贴息 {yuan(done)}，已达每户每年 {yuan(terms.yearly_cap)}的上限{tag}")

    receipts = sorted(claim.receipts, key=lambda r: (r.period_start, r.period_end, r.number))
    if not receipts:
        no.append(f"未附利息凭证，无法核定实付利息{tag}")
    seen: set[str] = set()
    last: InterestReceiptFacts | None = None
    window = f"{claim.program_year} 贴息年度（{terms.window_start.isoformat()} 至 {terms.window_end.isoformat()}）"
    for r in receipts:
        name = f"利息凭证 {r.number}"
        if r.number in seen:
            no.append(f"{name} 重复，每张凭证只能申请一次{tag}")
        seen.add(r.number)
        if r.period_end < r.period_start:
            no.append(f"{name} 的计息止日早于起日{tag}")
        if not terms.contains(r.paid_on):
            no.append(f"{name} 的付息日 {r.paid_on.isoformat()} 不在 {window}内，应计入其他年度{tag}")
        if r.period_start < loan.start or r.period_end > loan.end:
            no.append(
                f"{name} 的计息期 {r.period_start.isoformat()} 至 {r.period_end.isoformat()} 超出贷款合同期限 "
                f"{loan.start.isoformat()} 至 {loan.end.isoformat()}{tag}"
            )
        if r.interest_paid.fen <= 0:
            no.append(f"{name} 的实付利息须大于 0 元{tag}")
        if last is not None and r.period_start <= last.period_end:
            no.append(f"{name} 的计息期与利息凭证 {last.number} 重叠，同一天的利息只能贴息一次{tag}")
        last = r

    opening = (scheme.source, terms.basis[1])
    if no:
        return LoanSubsidyDecision(False, tuple(no), Money(0), opening)

    basis = list(opening)
    base = min(loan.principal, terms.principal_cap)
    used_rate = min(loan.annual_rate_bp, terms.subsidy_rate_cap_bp)
    if loan.principal > terms.principal_cap:
        basis.append(
            f"贷款本金 {yuan(loan.principal)}超过每户贷款额度 {wan(terms.principal_cap)}，超过部分不予贴息，"
            f"按 {wan(terms.principal_cap)}计算{tag}"
        )
    if loan.annual_rate_bp > terms.subsidy_rate_cap_bp:
        basis.append(
            f"合同年利率 {rate(loan.annual_rate_bp)} 高于年贴息率上限 {rate(terms.subsidy_rate_cap_bp)}，"
            f"按 {rate(terms.subsidy_rate_cap_bp)} 计算{tag}"
        )
    days_left = terms.term_days
    total = Money(0)
    for r in receipts:
        days = min(r.days, days_left)
        days_left -= days
        cap = terms.cap_for(loan.principal, loan.annual_rate_bp, days)
        got = min(cap, r.interest_paid)
        short = "" if days == r.days else f"（每次贴息最长 {terms.term_days} 天，本凭证只计 {days} 天）"
        basis.append(
            f"利息凭证 {r.number}（{r.period_start.isoformat()} 至 {r.period_end.isoformat()}，{r.days} 天）{short}："
            f"实付利息 {yuan(r.interest_paid)}；贴息限额 {wan(base)} × {rate(used_rate)} × {days} 天 ÷ {terms.day_count} "
            f"= {yuan(cap)}；取较小者 {yuan(got)}{tag}"
        )
        total += got
    subsidy = min(total, left)
    basis.append(
        f"每户每个贴息年度贴息不超过 {yuan(terms.yearly_cap)}；本年度已贴息 {yuan(done)}，本次最多 {yuan(left)}{tag}"
    )
    basis.append(f"核定贴息 {yuan(subsidy)}{tag}")
    if not subsidy:
        return LoanSubsidyDecision(False, (f"按规则核定的贴息为 0 元，无需申请{tag}",), Money(0), tuple(basis))
    return LoanSubsidyDecision(True, tuple(ok), subsidy, tuple(basis), tuple(r.number for r in receipts))


def decide_claim(claim: LoanClaim) -> LoanSubsidyDecision:
    """The Hunan baseline's decision (:func:`~jsxcore.hookspecs.jsx_loan_subsidy`)."""
    scheme = scheme_for(claim.program_year)
    start, _ = scheme.window(claim.program_year)
    return decide(claim, scheme, purposes_for(start))


# --------------------------------------------------------------------------
# The generic application path (jsx_program_eligibility / jsx_entitlement_amount)
# --------------------------------------------------------------------------


def _hukou(beneficiary: Beneficiary) -> str:
    raw = beneficiary.attributes.get("hukou_type", beneficiary.attributes.get("hukou", ""))
    return {"农村": "RURAL", "RURAL": "RURAL", "城镇": "URBAN", "URBAN": "URBAN"}.get(str(raw).strip().upper(), "")


def claim_from_application(
    beneficiary: Beneficiary, period: Period, context: Mapping[str, Any], table: DatedTable[LoanScheme] = LOAN_SCHEMES
) -> tuple[LoanClaim | None, list[str]]:
    """A claim from an application's reserved ``loan.*`` attributes (see
    :class:`~jsxcore.hookspecs.Beneficiary`), or the problems that stop it.

    The application stands for the interest paid over the loan's days inside
    the 贴息年度 of ``context["program_year"]`` (else the year containing
    ``period.start``), as one receipt. The household's earlier claims come
    from ``context["loan_claim_years"]`` (the 贴息年度 of its earlier claims
    across programs) and ``context["loan_subsidised_this_year_fen"]`` when the
    service gives them; without them an earlier claim in the same program
    (``claims_so_far``) stops the application, so the yearly cap cannot be
    exceeded unseen."""
    attrs = beneficiary.attributes
    problems: list[str] = []

    def number(key: str, label: str) -> int:
        text = str(attrs.get(key, "")).strip()
        if not text.isdigit():
            problems.append(f"未填写{label}或填写有误（应为整数）{ASSUMED}")
            return 0
        return int(text)

    def day(key: str, label: str) -> date:
        try:
            return date.fromisoformat(str(attrs.get(key, "")).strip())
        except ValueError:
            problems.append(f"未填写{label}或填写有误（应为 YYYY-MM-DD）{ASSUMED}")
            return date.min

    principal = number("loan.principal_fen", "贷款本金")
    bp = number("loan.annual_rate_bp", "合同年利率")
    paid = number("loan.interest_paid_fen", "实付利息")
    start, end = day("loan.start", "放款日"), day("loan.end", "到期日")
    lender = str(attrs.get("loan.lender", "")).strip()
    if not lender:
        problems.append(f"未填写贷款机构{ASSUMED}")
    if problems:
        return None, problems
    raw_year = str(context.get("program_year", "")).strip()
    near = next((row.value for row in reversed(table.rows) if row.since <= period.start), table.rows[0].value)
    year = int(raw_year) if raw_year.isdigit() else near.program_year_of(period.start)
    scheme = scheme_for(year, table)
    window_start, window_end = scheme.window(year)
    begin, finish = max(start, window_start), min(end, window_end)
    if finish < begin:
        return None, [
            (
                f"贷款期限 {start.isoformat()} 至 {end.isoformat()} 与 {year} 贴息年度（{window_start.isoformat()} 至 "
                f"{window_end.isoformat()}）没有重叠，本年度没有可贴息的利息{scheme.tag}"
            )
        ]
    history: list[PriorLoanClaim] = []
    years = context.get("loan_claim_years")
    if years is not None:
        history += [PriorLoanClaim(int(y), "", Money(0)) for y in years]
        this_year = int(context.get("loan_subsidised_this_year_fen", 0) or 0)
        if this_year:
            history.append(PriorLoanClaim(year, "", Money(this_year)))
    elif int(context.get("claims_so_far", 0) or 0) > 0:
        return None, [f"本项目已有该户的贷款贴息申请，同一贴息年度请在一份申请中附齐利息凭证{scheme.tag}"]
    loan = LoanFacts("", lender, "OTHER", Money(principal), bp, start, end, str(attrs.get("loan.purpose", "")))
    receipt = InterestReceiptFacts("（申请所附）", begin, finish, finish, Money(paid))
    claim = LoanClaim(year, beneficiary.situation, _hukou(beneficiary), loan, (receipt,), tuple(history))
    return claim, []


def application_eligibility(beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]) -> Eligibility:
    claim, problems = claim_from_application(beneficiary, period, context)
    if claim is None:
        return Eligibility(False, tuple(problems))
    decision = decide_claim(claim)
    return Eligibility(decision.eligible, decision.reasons)


def application_amount(beneficiary: Beneficiary, period: Period, context: Mapping[str, Any]) -> Amount:
    claim, problems = claim_from_application(beneficiary, period, context)
    decision = decide_claim(claim) if claim is not None else None
    if decision is None or not decision.eligible:
        reasons = problems if decision is None else list(decision.reasons)
        raise FailedPrecondition("不符合贷款贴息条件：" + "；".join(reasons), reason="NOT_ELIGIBLE")
    return Amount(decision.subsidy, decision.basis)


def publicity() -> PublicityRule:
    """公示 for 贷款贴息: the latest scheme's period (福清: 7 个工作日)."""
    scheme = LOAN_SCHEMES.rows[-1].value
    unit = "个工作日" if scheme.publicity_working_days else "天"
    return PublicityRule(
        scheme.publicity_days,
        scheme.publicity_working_days,
        (f"贷款贴息名单公示 {scheme.publicity_days} {unit}{scheme.tag}",),
    )
