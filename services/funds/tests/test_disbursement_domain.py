"""The batch planner's choices, pure (no database) — and, on PostgreSQL, the SQL that computes some of them
in the set-based planner proven equal to the one Python definition."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jsx_funds.disbursement import domain as dd
from jsx_funds.disbursement import payment_file as pf
from jsxcore.errors import ErrorCollector, FailedPrecondition
from jsxcore.hookspecs import BirthDateUse, RuleInputs
from jsxcore.values import Money, Period, RegionCode

AUG = Period.parse("2022-08")

# ---------------------------------------------------------------- who is a candidate


def test_periodic_programs_and_their_states() -> None:
    assert dd.period_kind("SPECIAL_SUPPORT") is AUG.kind and dd.period_kind("SANJIEHE") is None
    assert dd.candidate_states(True) == dd.ENROLLED and "PAID" in dd.ENROLLED
    assert dd.candidate_states(False) == dd.PAYABLE and "PAID" not in dd.PAYABLE
    assert set(dd.TO_ISSUE) <= set(dd.ENROLLED)


def test_enrolled_by_the_periods_first_day() -> None:
    assert dd.enrolled_by("2022-07", AUG) and dd.enrolled_by("2022-08", AUG) and dd.enrolled_by("2022", AUG)
    assert not dd.enrolled_by("2022-09", AUG) and not dd.enrolled_by("2022-Q4", AUG)


def test_the_first_application_of_a_beneficiary_pays() -> None:
    assert dd.first_per_beneficiary([(9, "a"), (3, "a"), (5, "b"), (7, "a")]) == {3, 5}
    assert dd.first_per_beneficiary([]) == set()


def test_situation_special_families_first_latest_disability_grade() -> None:
    assert dd.situation_of([]) == ("OTHER", 0)
    assert dd.situation_of([("ONLY_CHILD", date(2010, 1, 1), 0)]) == ("ONLY_CHILD", 0)
    assert dd.situation_of([("ONLY_CHILD", date(2010, 1, 1), 0), ("SPECIAL_DISABLED", date(2022, 8, 1), 2)]) == (
        "SPECIAL_DISABLED",
        2,
    )
    # 失独 comes before 伤残 whatever the order of the rows; the grade is only the 伤残 one's
    both = [("SPECIAL_DISABLED", date(2019, 1, 1), 1), ("SPECIAL_BEREAVED", date(2021, 1, 1), 0)]
    assert dd.situation_of(both) == dd.situation_of(list(reversed(both))) == ("SPECIAL_BEREAVED", 0)
    # two 伤残 rows: the latest by its start counts, in any order
    grades = [("SPECIAL_DISABLED", date(2021, 6, 1), 3), ("SPECIAL_DISABLED", date(2019, 1, 1), 2)]
    assert dd.situation_of(grades) == ("SPECIAL_DISABLED", 3)
    assert dd.situation_of([("SOMETHING_NEW", date(2020, 1, 1), 0)]) == ("OTHER", 0)
    for s in (*dd.SITUATION_ORDER, "OTHER"):
        assert dd.situation_at(dd.situation_position(s)) == s


def test_payee_the_person_else_the_head_else_the_household() -> None:
    assert dd.payee_of("persons/m", "persons/h", "hh1") == "persons/m"
    assert dd.payee_of("", "persons/h", "hh1") == "persons/h"
    assert dd.payee_of("", "", "hh1") == dd.payee_of("", None, "hh1") == "households/hh1"


# ---------------------------------------------------------------- what the rules read


def test_age_on_the_periods_first_day() -> None:
    start = date(2022, 8, 1)
    assert dd.age_text("1973-08-01", start) == "49"  # the birthday itself: already 49
    assert dd.age_text("1973-08-02", start) == "48"  # one day short
    assert dd.age_text("1973-07-31", start) == "49"
    assert dd.age_text("1964-02-29", date(2023, 2, 28)) == "58" and dd.age_text("1964-02-29", date(2023, 3, 1)) == "59"
    # any other text stands for itself, apart from every age and from a missing date
    assert dd.age_text("19730801", start) == "'19730801'" and dd.age_text(None, start) == "NULL"
    assert dd.age_text("NULL", start) == "'NULL'"


def test_quote_nullable_keeps_values_apart() -> None:
    assert dd.quote_nullable(None) == "NULL" and dd.quote_nullable("") == "''"
    assert dd.quote_nullable("O'Brien") == "'O''Brien'" and dd.quote_nullable("a\\b") == "E'a\\\\b'"
    assert dd.quote_nullable("a,b") != dd.quote_nullable("a") + "," + dd.quote_nullable("b")


def test_declared_input_reads_only_what_the_rules_declare() -> None:
    reads = RuleInputs(frozenset({"hukou_type", "has_living_child"}), BirthDateUse.AGE_ON_PERIOD_START)
    a = {"birth_date": "1966-05-20", "hukou_type": "RURAL", "note": "x"}
    b = {"birth_date": "1966-06-30", "hukou_type": "RURAL", "note": "y"}  # same age on 2022-08-01, other note
    assert dd.declared_input(a, reads, AUG.start) == dd.declared_input(b, reads, AUG.start) == "NULL,'RURAL',56"
    assert dd.declared_input({**a, "has_living_child": ""}, reads, AUG.start) != dd.declared_input(a, reads, AUG.start)
    assert dd.declared_input(a, RuleInputs(frozenset(), BirthDateUse.DATE), AUG.start) == "'1966-05-20'"
    assert dd.declared_input(a, RuleInputs(frozenset(), BirthDateUse.UNUSED), AUG.start) == ""
    assert dd.parse_attributes(None) == {} and dd.parse_attributes('{"a": "1"}') == {"a": "1"}


def test_rule_beneficiary_is_what_the_hooks_see() -> None:
    r = dd.RuleInput(
        person="persons/m1",
        beneficiary="persons/m1",
        household_id="h1",
        village="431281101201",
        attributes='{"birth_date": "1966-05-20"}',
        situation="SPECIAL_DISABLED",
        grade=3,
    )
    b = dd.rule_beneficiary(r)
    assert (b.person_id, b.household_id, b.unit, b.situation, b.birth_date) == (
        "persons/m1",
        "households/h1",
        "PERSON",
        "SPECIAL_DISABLED",
        date(1966, 5, 20),
    )
    assert b.attributes["child_disability_grade"] == "3" and b.region == RegionCode("431281101201")
    h = dd.rule_beneficiary(dd.RuleInput("", "households/h1", "h1", "431281101201", None, "OTHER", 0))
    assert (h.person_id, h.unit, h.birth_date, dict(h.attributes)) == ("households/h1", "HOUSEHOLD", None, {})


def test_rule_keys_equal_for_equal_inputs() -> None:
    k = dd.RuleKey("431281101201", "SPECIAL_BEREAVED", 0, True, "56")
    assert k == dd.RuleKey("431281101201", "SPECIAL_BEREAVED", 0, True, "56") and len({k, k}) == 1
    assert k != dd.RuleKey("431281101201", "SPECIAL_BEREAVED", 0, False, "56")


# ---------------------------------------------------------------- the amount and its basis


def test_amounts_and_their_basis() -> None:
    paid = dd.rule_paid(940_00, ("洪江市标准 940 元/人/月",), "hongjiang", "0.1.0")
    assert paid.pays and paid.basis == ("洪江市标准 940 元/人/月", "规则插件 hongjiang 0.1.0")
    zero = dd.rule_paid(0, ("x",), "p", "1")
    assert not zero.pays and zero.reasons == ("按规则核定金额为 0 元",)
    refused = dd.rule_refused(["未满 49 周岁"])
    assert not refused.pays and refused.reasons == ("未满 49 周岁",)
    assert dd.entitled_rule(3000_00).basis == ("按审批核定金额 3000.00 元",) and not dd.entitled_rule(0).pays


def test_each_basis_numbered_once() -> None:
    bases = dd.Bases()
    assert [bases.no(("a", "b")), bases.no(["c"]), bases.no(["a", "b"])] == [0, 1, 0]
    assert bases.listed == [["a", "b"], ["c"]]


# ---------------------------------------------------------------- payment keys and attempts


def test_payment_keys_and_attempts() -> None:
    key = dd.payment_key(7, "persons/9", AUG)
    assert key == "7/persons/9/2022-08" and dd.periodic_key_affixes(7, AUG) == ("7/", "/2022-08")
    assert dd.attempt_key(key, 1) == key and dd.attempt_key(key, 3) == key + "#3"
    assert dd.business_key(key + "#3") == dd.business_key(key) == key and dd.business_key("a#b") == "a#b"
    assert dd.next_attempt([]) == 1  # never paid
    assert dd.next_attempt([False]) is None and dd.next_attempt([True, False]) is None  # one stands
    assert dd.next_attempt([True]) == 2 and dd.next_attempt([True, True]) == 3  # every attempt failed


# ---------------------------------------------------------------- a batch's refusals, tally, state


def test_refusals() -> None:
    e = dd.nothing_to_pay("2022年洪江市计生特别扶助", RegionCode.parse("431281"), AUG, 2)
    assert e.reason == "NOTHING_TO_PAY" and "另有 2 人经规则核定本期不予发放" in e.message
    assert "另有" not in dd.nothing_to_pay("p", RegionCode.parse("431281"), AUG, 0).message
    dd.check_covered(1, "f", 100, 1, 100, False)
    dd.check_covered(1, "f", 0, 1, 100, True)  # may go below zero
    with pytest.raises(FailedPrecondition) as info:
        dd.check_covered(3, "特别扶助资金", -5, 2, 100_01, False)
    assert (
        info.value.reason == "INSUFFICIENT_FUNDS"
        and "可用 0.00 元" in info.value.message
        and "100.01" in info.value.message
    )


def test_tally_pages_and_skips() -> None:
    t = dd.Tally()
    assert t.page([12, 10, 11], [1, 2, 3]) == 1 and t.page([20], [4]) == 2
    assert (t.count, t.total, t.first_id, t.last_id, t.pages) == (4, 10, 10, 20, 2)
    t.skip("applications/3", ("未满 49 周岁",))
    assert t.skipped == [{"application": "applications/3", "reasons": ["未满 49 周岁"]}]


def test_batch_state_and_unbroken_ids() -> None:
    assert [dd.batch_state(3, 0, 0), dd.batch_state(3, 1, 1), dd.batch_state(3, 2, 1)] == [
        "ISSUED",
        "PARTIALLY_SETTLED",
        "SETTLED",
    ]
    assert dd.unbroken(5, 7, 3) and not dd.unbroken(5, 8, 3) and not dd.unbroken(None, 7, 3)


# ---------------------------------------------------------------- bank results and reconciliation


def test_bank_lines_checked_on_their_own() -> None:
    errs = ErrorCollector()
    wanted = dd.check_bank_lines(
        3,
        [
            dd.BankLine("paymentBatches/3/payments/10", True),
            dd.BankLine("paymentBatches/3/payments/10", True),
            dd.BankLine("paymentBatches/4/payments/11", True),
            dd.BankLine("HJ-1", True),
            dd.BankLine(" paymentBatches/3/payments/12 ", False),
            dd.BankLine("paymentBatches/3/payments/13", True, bad_date="2022-2-30"),
        ],
        errs,
    )
    assert set(wanted) == {10, 12, 13}
    by = {v.field: v.description for v in errs.violations}
    assert set(by) == {
        "results[1].payment",
        "results[2].payment",
        "results[3].payment",
        "results[4].failure_reason",
        "results[5].paid_date",
    }
    assert "与第 1 条重复" in by["results[1].payment"] and "不是本批次" in by["results[2].payment"]
    assert by["results[5].paid_date"] == "日期 2022-2-30 无效"
    empty = ErrorCollector()
    dd.check_bank_lines(3, [], empty)
    assert [v.field for v in empty.violations] == ["results"]


def test_bank_lines_against_what_is_recorded() -> None:
    errs = ErrorCollector()
    line = dd.BankLine("paymentBatches/3/payments/10", False, "户名不符")
    dd.check_against_recorded(0, line, 3, None, None, "", errs)  # unknown payment
    dd.check_against_recorded(1, line, 3, 4, None, "", errs)  # another batch's
    dd.check_against_recorded(2, line, 3, 3, "PAID", "", errs)  # contradicts 成功
    dd.check_against_recorded(3, line, 3, 3, "FAILED", "户名不符", errs)  # the same again: fine
    dd.check_against_recorded(4, dd.BankLine("x", True), 3, 3, None, "", errs)  # nothing yet: fine
    assert [v.field for v in errs.violations] == ["results[0].payment", "results[1].payment", "results[2].payment"]
    assert "没有这笔支付" in errs.violations[0].description and "此前已支付成功" in errs.violations[2].description


def test_reconciliation_arithmetic() -> None:
    rows = [("r1", 940_00, "PAID", False), ("r2", 580_00, "FAILED", True), ("r3", 100_00, "PENDING", False)]
    rec = dd.reconcile(rows, 940_00 + 100_00)
    assert rec.balanced and (rec.issued_count, rec.issued_total) == (3, 1620_00)
    assert rec.summary == (
        "共 3 笔 1620.00 元 = 已支付 1 笔 940.00 元 + 失败退回 1 笔 580.00 元 + 待回盘 1 笔 100.00 元"
    )
    off = dd.reconcile([("r2", 580_00, "FAILED", False)], 580_00)
    assert not off.balanced and off.problems == (
        "r2 记为失败，但没有退回记录",
        "账上净支出 580.00 元 ≠ 已支付 + 待回盘 0.00 元",
    )


# ---------------------------------------------------------------- the payment file's field rules


def test_amounts_as_yuan_as_money_writes_them() -> None:
    for fen in (0, 1, 99, 100, 940_00, 1_234_56, 760_000_000_00, -150):
        assert pf.amount_text(fen) == Money(fen).format_yuan()


def test_the_writer_writes_what_one_csv_writer_writes() -> None:
    out = io.StringIO()
    w = pf.CsvWriter(out.write, pf.BANK)
    rows = [["李秀英", "6217009876543210", "590.00", "paymentBatches/3/payments/17", "a,b", "p", "2022-08", '按"人"']]
    w.add(rows, [590_00])
    w.add_lines(["x,y"], [1])
    w.finish()
    one = io.StringIO()
    csv.writer(one, lineterminator="\r\n").writerows([list(pf.BANK.header), [1, *rows[0]]])
    one.write("2,x,y\r\n")
    csv.writer(one, lineterminator="\r\n").writerow(["合计", "2 笔", "", "590.01", "", "", "", "", ""])
    assert out.getvalue() == "\ufeff" + one.getvalue()


# ---------------------------------------------------------------- the SQL computing them (PostgreSQL)


async def test_declared_input_in_sql_is_the_domain_definition(engine: AsyncEngine) -> None:
    """The set-based planner keys a million candidates by the declared inputs in SQL; it must be byte for byte
    the domain's text for every shape of attributes (missing, empty, quotes, commas, backslashes, no date)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the SQL is PostgreSQL's")
    import json

    from jsx_funds.disbursement.planner_pg import declared_sql

    samples = [
        {},
        {"birth_date": "1973-08-01"},
        {"birth_date": "1973-08-02", "hukou_type": "RURAL"},
        {"birth_date": "19730801"},
        {"birth_date": "", "hukou_type": ""},
        {"hukou": 'O\'Brien, "x" \\ y', "has_living_child": "true", "note": "unread"},
        {"birth_date": "1964-02-29", "child_disability_grade": "3"},
        {"hukou_type": "a,b"},
    ]
    declarations = [
        RuleInputs(frozenset({"hukou_type", "has_living_child", "hukou"}), BirthDateUse.AGE_ON_PERIOD_START),
        RuleInputs(frozenset({"hukou"}), BirthDateUse.DATE),
        RuleInputs(frozenset(), BirthDateUse.UNUSED),
        RuleInputs(frozenset({"child_disability_grade"}), BirthDateUse.AGE_ON_PERIOD_START),
    ]
    async with engine.connect() as conn:
        for reads in declarations:
            for start in (date(2022, 8, 1), date(2023, 3, 1)):
                sql, columns = declared_sql(reads, start)
                for a in samples:
                    got = (
                        await conn.execute(
                            text(
                                f"SELECT {sql} FROM (SELECT CAST(:a AS json) AS attributes) AS c"
                                f" CROSS JOIN LATERAL json_to_record(c.attributes) AS ra({columns})"
                            ),
                            {"a": json.dumps(a)},
                        )
                    ).scalar_one()
                    assert got == dd.declared_input(a, reads, start), (reads, start, a)


async def test_quote_nullable_and_amounts_in_sql_are_the_domain_definitions(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the SQL is PostgreSQL's")
    async with engine.connect() as conn:
        for v in (None, "", "a", "O'Brien", "a\\b", "'\\'", "a,b", "两个 字"):
            assert (
                await conn.execute(text("SELECT quote_nullable(CAST(:v AS text))"), {"v": v})
            ).scalar_one() == dd.quote_nullable(v), v
        for fen in (1, 99, 100, 940_00, 1_234_56, 760_000_000_00):
            got = (
                await conn.execute(
                    text(f"SELECT {pf.amount_sql('a')} FROM (SELECT CAST(:f AS bigint) AS a) x"), {"f": fen}
                )
            ).scalar_one()
            assert got == pf.amount_text(fen), fen
