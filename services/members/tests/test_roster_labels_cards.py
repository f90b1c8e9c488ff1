"""Roster clerk fixes (issue 13), SQLite and PostgreSQL: the 家庭类型 labels
of the template's drop-down import, export and import again (the parser
folds full-width brackets, and so do the labels it compares with); the
一卡通账号 column — validated (Luhn for 银联 card numbers), stored encrypted,
masked, given to a bank file through BatchGetPayees, never overwritten,
never logged."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from jsx_members.adapters import db, roster
from jsx_members.households.domain import Situation
from jsx_members.households.tables import HouseholdRow
from jsx_members.persons.domain import luhn_ok
from jsx_members.persons.tables import PersonRow
from jsx_members.testdata import VILLAGES, clerk, make_id_number
from jsxcore.values import RegionCode

YL = VILLAGES["431222"]


def _card(prefix: str) -> str:
    """A 19-digit 银联 number with a correct Luhn check digit."""
    body = prefix.ljust(18, "0")
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


def _dropdown(path: Path, column: str) -> list[str]:
    ws = load_workbook(path)["花名册"]
    dv = next(v for v in ws.data_validations.dataValidation if str(v.sqref).startswith(f"{column}2"))
    return dv.formula1.strip('"').split(",")


def _household(seq: int, situation: str, **extra: str) -> list[dict[str, str]]:
    head = make_id_number("431222", date(1960, 1, 1), seq)
    wife = make_id_number("431222", date(1962, 1, 1), seq, female=True)
    grade = "2" if "伤残" in situation else ""
    return [
        {
            "姓名": "王大",
            "身份证号": head,
            "所属村": YL,
            "户主身份证号": head,
            "与户主关系": "户主",
            "家庭类型": situation,
            "家庭类型生效日期": "2020-01-01" if situation != "一般户" else "",
            "伤残等级": grade,
            **extra,
        },
        {"姓名": "李二", "身份证号": wife, "所属村": YL, "户主身份证号": head, "与户主关系": "配偶"},
    ]


async def test_template_labels_import_export_and_import_again(env, tmp_path: Path) -> None:
    tpl = tmp_path / "模板.xlsx"
    roster.write_template(tpl)
    labels = _dropdown(tpl, "H")
    assert "计生特殊家庭（失独）" in labels and "计生特殊家庭（伤残）" in labels  # full-width, as offered
    rows = [row for i, label in enumerate(labels) if label != "一般户" for row in _household(10 + i, label)]
    path = tmp_path / "花名册.xlsx"
    roster.write_rows(path, roster.HEADERS, rows)
    _, it, _ = roster.read_rows(path)
    report = await env.service.roster.import_rows(it, caller=clerk())
    assert report.ok, report.errors
    assert report.households_created == len(labels) - 1 and report.situations_recorded == len(labels) - 1
    async with env.service.sessions() as s:
        kinds = sorted((await s.execute(select(HouseholdRow.current_situation))).scalars())
    assert kinds == sorted(s.name for s in Situation if s is not Situation.NONE)

    # export (plaintext: the caller may see personal data) → xlsx → import again: nothing changes
    exported = await env.service.roster.export_rows(RegionCode.parse("431222"), caller=clerk(roles=("admin",)))
    assert {r["家庭类型"] for r in exported if r.get("家庭类型")} == set(labels) - {"一般户"}
    out = tmp_path / "导出.xlsx"
    roster.write_rows(out, roster.HEADERS, exported)
    _, it, _ = roster.read_rows(out)
    again = await env.service.roster.import_rows(it, caller=clerk())
    assert again.ok, again.errors
    assert (again.persons_created, again.situations_recorded, again.unchanged) == (0, 0, len(rows))

    # ASCII brackets and full-width letters a clerk may type read the same
    typed = _household(40, "计生特殊家庭(失独)") + _household(41, "计生特殊家庭（伤残）")
    report = await env.service.roster.import_rows(typed, caller=clerk())
    assert report.ok, report.errors


async def test_card_column_validated_encrypted_masked_and_never_overwritten(
    env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    card_a, card_b, card_c = _card("621700123"), _card("622848001"), _card("621799887")
    wrong = card_a[:-1] + str((int(card_a[-1]) + 1) % 10)  # one digit miscopied
    rows = _household(1, "独生子女户", 一卡通账号=card_a)
    lone = {"姓名": "赵三", "身份证号": make_id_number("431222", date(1975, 5, 5), 3), "所属村": YL}
    caplog.set_level(logging.DEBUG)

    # a bank card number failing its check digit: nothing is imported, the row says why
    report = await env.service.roster.import_rows([*rows, dict(lone, 一卡通账号=wrong)], caller=clerk())
    assert not report.ok and list(report.errors) == [2] and "校验位" in report.errors[2][0]
    async with env.service.sessions() as s:
        assert await db.count(s, PersonRow) == 0

    # full-width digits and spaces fold; a passbook account (not 62…) has no checksum to check
    passbook = "８８０１ ２３４５ ６７８９"
    report = await env.service.roster.import_rows([*rows, dict(lone, 一卡通账号=passbook)], caller=clerk())
    assert report.ok, report.errors
    async with env.service.sessions() as s:
        people = {p.name: p for p in (await s.execute(select(PersonRow))).scalars()}
    head, wife = people["王大"], people["李二"]
    assert head.card_cipher is not None and card_a.encode() not in head.card_cipher and wife.card_cipher is None
    got = await env.service.persons.get_person(head.id, full=False, caller=clerk())
    assert got.card_number_masked == "*" * 15 + card_a[-4:] and got.card_number == ""
    finance = clerk(roles=("finance_officer",))
    payees = await env.service.persons.batch_get_payees([head.id, people["赵三"].id], caller=finance)
    assert [p.card_number for p in payees.payees] == [card_a, "880123456789"]

    # a registered person without a card gets the file's; a different card on file is reported, not overwritten
    rows[1]["一卡通账号"] = card_b
    report = await env.service.roster.import_rows(rows, caller=clerk())
    assert report.ok and report.cards_added == 1 and report.persons_created == 0 and report.unchanged == 1
    rows[0]["一卡通账号"] = card_c
    report = await env.service.roster.import_rows(rows, caller=clerk())
    assert not report.ok and "已登记的一卡通账号与本表不同" in report.errors[0][0] and card_c not in report.errors[0][0]
    payees = await env.service.persons.batch_get_payees([head.id, wife.id], caller=finance)
    assert [p.card_number for p in payees.payees] == [card_a, card_b]

    # export: the card in clear only for a caller who may see personal data, and the template has the column
    full = await env.service.roster.export_rows(RegionCode.parse("431222"), caller=clerk(roles=("admin",)))
    masked = await env.service.roster.export_rows(RegionCode.parse("431222"), caller=clerk())
    assert card_a in {r["一卡通账号"] for r in full} and not {card_a, card_b} & {r["一卡通账号"] for r in masked}
    tpl = tmp_path / "模板.xlsx"
    roster.write_template(tpl)
    header = [c.value for c in load_workbook(tpl)["花名册"][1]]
    assert header[-1] == "一卡通账号"

    # never in a log line
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert caplog.records and not [c for c in (card_a, card_b, card_c, wrong, "880123456789") if c in logged]
