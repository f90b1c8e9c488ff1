"""Roster import/export: all-or-nothing validation, error workbook, re-import
changes nothing, template, export round trip (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import select

from jsx_members.adapters import db, roster
from jsx_members.households.tables import HouseholdMemberRow, HouseholdRow, SituationRow
from jsx_members.persons.tables import PersonRow
from jsx_members.testdata import clerk, roster_rows
from jsxcore.outbox import OutboxEvent
from jsxcore.values import RegionCode


async def _counts(env) -> dict[str, int]:
    async with env.service.sessions() as s:
        return {
            t.__tablename__: await db.count(s, t) for t in (PersonRow, HouseholdRow, HouseholdMemberRow, SituationRow)
        } | {"outbox": await db.count(s, OutboxEvent)}


async def test_import_all_good_then_reimport_changes_nothing(env, tmp_path: Path) -> None:
    path = tmp_path / "roster.xlsx"
    roster.write_rows(path, roster.HEADERS, roster_rows(30))
    caller = clerk()
    _, rows, total = roster.read_rows(path)
    assert total in (0, 30)  # write-only workbooks carry no dimension: 0 = unknown
    report = await env.service.roster.import_rows(rows, caller=caller)
    assert (
        report.ok
        and report.persons_created == 30
        and report.households_created == 10
        and report.situations_recorded == 10
    )
    first = await _counts(env)
    assert first == {"persons": 30, "households": 10, "household_members": 30, "household_situations": 10, "outbox": 50}
    _, rows, _ = roster.read_rows(path)
    again = await env.service.roster.import_rows(rows, caller=caller)
    assert again.ok and again.persons_created == 0 and again.unchanged == 30 and again.situations_recorded == 0
    assert await _counts(env) == first


async def test_one_bad_row_imports_nothing_and_explains(env, tmp_path: Path) -> None:
    rows = list(roster_rows(9))
    rows[4]["身份证号"] = rows[4]["身份证号"][:-1] + ("0" if rows[4]["身份证号"][-1] != "0" else "1")  # bad checksum
    rows[7]["所属村"] = "431224102203"  # 溆浦: outside a 沅陵 clerk's scope
    rows[8]["身份证号"] = rows[6]["身份证号"]  # duplicate within the file
    path = tmp_path / "bad.csv"
    roster.write_rows(path, roster.HEADERS, rows)
    caller = clerk()
    _, it, _ = roster.read_rows(path)
    report = await env.service.roster.import_rows(it, caller=caller)
    assert not report.ok and set(report.errors) >= {4, 7, 8}
    assert any("校验位" in e for e in report.errors[4]) and any("辖区" in e for e in report.errors[7])
    assert any("重复" in e for e in report.errors[8])
    assert (await _counts(env))["persons"] == 0
    out = tmp_path / "errors.xlsx"
    roster.write_rows(out, roster.HEADERS, report.error_rows(), error_column=True)
    ws = load_workbook(out).active
    assert isinstance(ws, Worksheet)
    header = [c.value for c in ws[1]]
    assert header[-1] == "错误说明" and ws.max_row == 10
    note = ws.cell(row=6, column=len(header)).value
    assert isinstance(note, str) and "校验位" in note and not ws.cell(row=2, column=len(header)).value


async def test_minor_head_and_missing_head_rejected(env) -> None:
    rows = list(roster_rows(3))
    orphan = dict(rows[1], 户主身份证号=rows[2]["身份证号"])  # points at a non-head
    caller = clerk()
    report = await env.service.roster.import_rows([rows[0], orphan], caller=caller)
    assert not report.ok and 1 in report.errors


async def test_template_and_export_round_trip(env, tmp_path: Path) -> None:
    tpl = tmp_path / "template.xlsx"
    roster.write_template(tpl)
    wb = load_workbook(tpl)
    assert [c.value for c in wb["花名册"][1]] == list(roster.HEADERS) and "填写说明" in wb.sheetnames
    rows = list(roster_rows(12))
    caller = clerk()
    assert (await env.service.roster.import_rows(rows, caller=caller)).ok
    masked = await env.service.roster.export_rows(RegionCode.parse("431222"), caller=caller)
    assert len(masked) == 12 and all("*" in r["身份证号"] for r in masked)
    caller = clerk(roles=("auditor",))
    full = await env.service.roster.export_rows(RegionCode.parse("431222"), caller=caller)
    assert sorted(r["身份证号"] for r in full) == sorted(r["身份证号"] for r in rows)
    caller = clerk()
    again = await env.service.roster.import_rows(full, caller=caller)  # the exported file re-imports as is
    assert again.ok and again.persons_created == 0 and again.situations_recorded == 0


async def test_reimport_with_changed_situation(env) -> None:
    rows = list(roster_rows(3))
    caller = clerk()
    assert (await env.service.roster.import_rows(rows, caller=caller)).ok
    backdated = [dict(rows[0], 家庭类型="失独", 家庭类型生效日期="2019-01-01"), *rows[1:]]
    report = await env.service.roster.import_rows(backdated, caller=caller)
    assert not report.ok and "不可改写" in report.errors[0][0]
    later = [dict(rows[0], 家庭类型="伤残", 伤残等级="2", 家庭类型生效日期="2023-05-01"), *rows[1:]]
    report = await env.service.roster.import_rows(later, caller=caller)
    assert report.ok and report.situations_recorded == 1 and report.persons_created == 0
    async with env.service.sessions() as s:
        hh = (await s.execute(select(HouseholdRow))).scalar_one()
        assert hh.current_situation == "SPECIAL_DISABLED" and len(await env.service.households.history(s, hh.id)) == 2


@pytest.mark.slow  # a 2,500-row workbook written and read three times
def test_large_workbook_is_read_in_a_worker_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parallel reader gives the same rows as the in-process one, and a
    broken file is a clear INVALID_ARGUMENT, not a hang or INTERNAL."""
    from jsx_members.adapters import roster as r
    from jsx_members.testdata import roster_rows
    from jsxcore.errors import InvalidArgument

    path = tmp_path / "big.xlsx"
    r.write_rows(path, r.HEADERS, roster_rows(2500))
    _, rows, _ = r.read_rows(path)
    inline = list(rows)
    monkeypatch.setattr(r, "PARALLEL_MIN_BYTES", 0)
    headers, rows, _total = r.read_rows(path)
    assert list(rows) == inline and len(inline) == 2500 and headers[:2] == ["姓名", "身份证号"]
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(b"PK\x03\x04 not really a workbook")

    with pytest.raises(InvalidArgument) as e:
        r.read_rows(bad)
    assert e.value.reason == "UNREADABLE_FILE"
    wrong = tmp_path / "wrong.xlsx"
    r.write_rows(wrong, ["姓名", "备注"], ({"姓名": "某", "备注": "无"} for _ in range(10)))
    with pytest.raises(InvalidArgument) as e:
        r.read_rows(wrong)
    assert e.value.reason == "ROSTER_HEADERS"
    _, rows, _ = r.read_rows(path)
    assert next(rows)["姓名"] == inline[0]["姓名"]
    rows.close()  # abandoned after one row (a failed import): the child is stopped, nothing hangs


@pytest.mark.slow  # 1,800-row imports
async def test_bad_last_row_of_a_large_file_leaves_the_database_untouched(
    env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Persons are inserted chunk by chunk while the file is read; a bad row
    after many chunks were written must still roll everything back, and the
    rows after the first error are still all checked."""
    from jsx_members.roster import service

    monkeypatch.setattr(service, "_CHUNK", 250)
    rows = list(roster_rows(1800))
    caller = clerk()
    assert (await env.service.roster.import_rows(rows[:600], caller=caller)).ok  # some persons already registered
    before = await _counts(env)
    assert before["persons"] == 600 and before["outbox"] == 1000
    rows[-1]["所属村"] = "431224102203"  # last row: outside the clerk's scope
    path = tmp_path / "big.xlsx"
    roster.write_rows(path, roster.HEADERS, rows)
    _, it, _ = roster.read_rows(path)
    report = await env.service.roster.import_rows(it, caller=caller)
    assert not report.ok and set(report.errors) == {len(rows) - 1} and report.persons_created == 0
    assert any("辖区" in e for e in report.errors[len(rows) - 1])
    assert await _counts(env) == before
    rows[0]["姓名"] = rows[0]["姓名"] + "改"  # now the first chunk is wrong: later chunks are still validated
    report = await env.service.roster.import_rows(rows, caller=caller)
    assert set(report.errors) == {0, len(rows) - 1} and "不一致" in report.errors[0][0]
    assert await _counts(env) == before


async def test_import_restores_gc_thresholds(env) -> None:
    """The import collects less often while it runs, and leaves the process's
    collector settings as it found them (also when the file has errors)."""
    import gc

    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []

    def rows() -> Iterator[dict[str, str]]:
        yield from roster_rows(6)
        seen.append(gc.get_threshold())

    caller = clerk()
    assert (await env.service.roster.import_rows(rows(), caller=caller)).ok
    bad = list(roster_rows(3))
    bad[1]["身份证号"] = "123"
    assert not (await env.service.roster.import_rows(bad, caller=caller)).ok
    assert seen[0][0] >= 50_000 and gc.get_threshold() == before
