"""Roster files (花名册) in the shape clerks keep them: .xlsx or .csv with
Chinese headers, one person per row. Reading is streaming (openpyxl
read-only), so a 100k-row workbook never sits in memory as cells.

Columns (order free, extra columns ignored; 姓名 and 身份证号 required):
姓名, 身份证号, 联系电话, 所属村, 户籍类型, 户主身份证号, 与户主关系, 家庭类型,
家庭类型生效日期, 伤残等级, 光荣证编号, 一卡通账号.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from jsx_members.households.domain import Relation, Situation
from jsx_members.persons.domain import HukouType
from jsx_members.roster.domain import ERROR_COLUMN
from jsxcore.errors import InvalidArgument

HEADERS: tuple[str, ...] = (
    "姓名",
    "身份证号",
    "联系电话",
    "所属村",
    "户籍类型",
    "户主身份证号",
    "与户主关系",
    "家庭类型",
    "家庭类型生效日期",
    "伤残等级",
    "光荣证编号",
    "一卡通账号",
)
REQUIRED = ("姓名", "身份证号", "所属村")
HELP: tuple[tuple[str, str], ...] = (
    ("姓名", "必填。"),
    (
        "身份证号",
        "必填，18位，最后一位可为X。系统校验出生日期和校验位；请把单元格设为“文本”，以免 Excel 把号码变成科学计数法。",
    ),
    ("联系电话", "选填，11位手机号或带区号的座机（如 0745-1234567）。"),
    ("所属村", "必填，12位村（社区）级行政区划代码，如 431222101201。"),
    ("户籍类型", "选填：" + "、".join(h.value for h in HukouType) + "；不填按农村。"),
    ("户主身份证号", "选填。填写则此人归入该户主的家庭；户主本人这一行也要填自己的号码。"),
    ("与户主关系", "有户主身份证号时必填：" + "、".join(r.value for r in Relation) + "。"),
    ("家庭类型", "只在户主那一行填：" + "、".join(s.value for s in Situation) + "（也可写 失独、伤残）。"),
    ("家庭类型生效日期", "填写家庭类型时必填，如 2022-07-01。"),
    ("伤残等级", "家庭类型为伤残时必填：1、2 或 3（一级最重）。"),
    ("光荣证编号", "选填，独生子女父母光荣证编号。"),
    (
        "一卡通账号",
        "选填，本人的惠民惠农“一卡通”账号（8至30位数字），按人发放的补贴打到此卡；银联卡号（62开头、16至19位）校验末位。"
        "请把单元格设为“文本”。已登记账号的人员如填写不同账号，不会覆盖，请用人员修改功能更正。",
    ),
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        # Excel turned a number-looking code into a float: give back its digits.
        return str(int(value))
    return str(value).strip()


def _dimension_rows(ws: Any) -> int:
    """Data rows by the sheet's stored dimension (0 when it has none)."""
    stored: int | None = getattr(ws, "_max_row", None)
    return max(stored - 1, 0) if stored else 0


def read_rows(path: str | Path) -> tuple[list[str], Generator[dict[str, str], None, None], int]:
    """(headers, rows, row count estimate — 0 when the file does not say) of
    the first sheet of an .xlsx, or a .csv (UTF-8, BOM ok).

    Raises InvalidArgument naming missing required headers."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        fh = p.open(newline="", encoding="utf-8-sig")
        reader = csv.reader(fh)
        headers = [h.strip() for h in next(reader, [])]
        total = max(sum(1 for _ in p.open(encoding="utf-8-sig")) - 1, 0)

        def csv_rows() -> Generator[dict[str, str], None, None]:
            with fh:
                for rec in reader:
                    if any(x.strip() for x in rec):
                        yield {h: (rec[i].strip() if i < len(rec) else "") for i, h in enumerate(headers)}

        _check_headers(headers)
        return headers, csv_rows(), total
    if p.suffix.lower() not in (".xlsx", ".xlsm"):
        raise InvalidArgument.field(
            "file", f"不支持的文件类型“{p.suffix}”，请使用 .xlsx 或 .csv", reason="UNSUPPORTED_FILE"
        )
    if p.stat().st_size >= PARALLEL_MIN_BYTES:
        return _read_xlsx_in_worker(p)
    wb = load_workbook(p, read_only=True, data_only=True)
    ws = wb.worksheets[0]
    it = ws.iter_rows(values_only=True)
    headers = [_cell(h) for h in next(it, ())]
    _check_headers(headers)
    # Only trust a stored dimension: asking openpyxl for max_row on a sheet
    # without one parses the whole sheet a second time.
    total = _dimension_rows(ws)

    def xlsx_rows() -> Generator[dict[str, str], None, None]:
        try:
            for rec in it:
                values = [_cell(v) for v in rec]
                if any(values):
                    yield dict(zip(headers, values, strict=False))  # a short row has no trailing cells
        finally:
            wb.close()

    return headers, xlsx_rows(), total


#: Workbooks at least this big are parsed in a child process, so the XML
#: parsing (half of a large import) runs on the other core while this one
#: validates and writes. A plain ``python -c`` child, not multiprocessing's
#: spawn: spawn re-imports the parent's ``__main__`` (the whole service,
#: seconds of CPU) and fork is unsafe in a process holding event-loop and
#: database threads.
PARALLEL_MIN_BYTES = 512 * 1024
_BATCH = 1000


def _xlsx_child() -> None:
    """Child process entry: stream the first sheet of ``sys.argv[1]`` to
    stdout as pickled messages ("total", estimate), ("rows", [[...], ...]) …,
    ("end", 0); or ("error", exception type name)."""
    import pickle
    import sys

    out = sys.stdout.buffer
    try:
        wb = load_workbook(sys.argv[1], read_only=True, data_only=True)
        ws = wb.worksheets[0]
        pickle.dump(("total", _dimension_rows(ws)), out)
        batch: list[list[str]] = []
        for rec in ws.iter_rows(values_only=True):
            batch.append([_cell(v) for v in rec])
            if len(batch) >= _BATCH:
                pickle.dump(("rows", batch), out, protocol=pickle.HIGHEST_PROTOCOL)
                batch = []
        pickle.dump(("rows", batch), out, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(("end", 0), out)
        out.flush()
        wb.close()
    except BrokenPipeError:  # the parent stopped reading (bad headers, failed import): nothing to report
        os._exit(1)
    except Exception as e:  # reported to the parent, which raises a clerk-readable error
        pickle.dump(("error", type(e).__name__), out)
    out.flush()


def _read_xlsx_in_worker(p: Path) -> tuple[list[str], Generator[dict[str, str], None, None], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from jsx_members.adapters.roster import _xlsx_child; _xlsx_child()", str(p)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        bufsize=1 << 20,
    )
    assert proc.stdout is not None
    pipe = proc.stdout
    # A thread drains the pipe as fast as the child writes, so the child never
    # waits while this process is busy validating or inserting a chunk.
    inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    def drain() -> None:
        try:
            while True:
                msg = pickle.load(pipe)
                inbox.put(msg)
                if msg[0] in ("end", "error"):
                    return
        except (EOFError, OSError, ValueError, pickle.UnpicklingError):
            inbox.put(("error", "worker exited"))

    reader = threading.Thread(target=drain, name="roster-xlsx-reader", daemon=True)
    reader.start()

    def batches() -> Generator[list[list[str]], None, None]:
        try:
            while True:
                kind, payload = inbox.get()
                if kind == "rows":
                    yield payload
                elif kind == "total":
                    total[0] = payload
                elif kind == "end":
                    return
                else:
                    raise InvalidArgument.field(
                        "file",
                        f"无法读取该 Excel 文件（{payload}），请确认文件未损坏、是 .xlsx 格式",
                        reason="UNREADABLE_FILE",
                    )
        finally:
            if proc.poll() is None and reader.is_alive():
                proc.kill()  # abandoned early (bad headers, failed import): the rest is not needed
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            reader.join(timeout=5)
            pipe.close()

    total = [0]
    it = batches()
    first = next(it, [])
    headers = [h.strip() for h in first[0]] if first else []
    try:
        _check_headers(headers)
    except InvalidArgument:
        it.close()
        raise

    def xlsx_rows() -> Generator[dict[str, str], None, None]:
        for values in _chain(first[1:], it):
            if any(values):
                yield dict(zip(headers, values, strict=False))  # a short row has no trailing cells

    return headers, xlsx_rows(), total[0]


def _chain(head: list[list[str]], rest: Iterator[list[list[str]]]) -> Iterator[list[str]]:
    yield from head
    for batch in rest:
        yield from batch


def _check_headers(headers: list[str]) -> None:
    missing = [h for h in REQUIRED if h not in headers]
    if missing:
        raise InvalidArgument.field(
            "file",
            f"表头缺少必填列：{'、'.join(missing)}。请使用 jsx members template 生成的模板",
            reason="ROSTER_HEADERS",
        )


def write_rows(
    path: str | Path, headers: Iterable[str], rows: Iterable[dict[str, str]], *, error_column: bool = False
) -> int:
    """Write rows as .xlsx (write-only, streaming) or .csv; returns the row count.

    With ``error_column`` the 错误说明 column is highlighted so a clerk sees
    at once which rows to fix."""
    headers = list(headers) + ([ERROR_COLUMN] if error_column and ERROR_COLUMN not in headers else [])
    p = Path(path)
    n = 0
    if p.suffix.lower() == ".csv":
        with p.open("w", newline="", encoding="utf-8-sig") as fh:
            w = csv.writer(fh)
            w.writerow(headers)
            for r in rows:
                w.writerow([r.get(h, "") for h in headers])
                n += 1
        return n
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("花名册")
    ws.append(headers)
    red = PatternFill("solid", fgColor="FFC7CE")
    from openpyxl.cell import WriteOnlyCell

    for r in rows:
        values: list[Any] = [r.get(h, "") for h in headers]
        if error_column and r.get(ERROR_COLUMN):
            cell = WriteOnlyCell(ws, value=values[-1])
            cell.fill = red
            values[-1] = cell
        ws.append(values)
        n += 1
    wb.save(p)
    return n


def write_template(path: str | Path) -> None:
    """An empty roster with the headers, an example household, text-formatted
    ID columns, drop-downs for the coded columns and a 填写说明 sheet."""
    wb = Workbook()
    ws = wb.active
    assert isinstance(ws, Worksheet)  # a new workbook has one worksheet
    ws.title = "花名册"
    ws.append(list(HEADERS))
    for c in ws[1]:
        c.font = Font(bold=True)
    example = [
        [
            "张三（示例，导入前请删除）",
            "11010519491231002X",
            "13912345678",
            "431222101201",
            "农村",
            "11010519491231002X",
            "户主",
            "独生子女户",
            "2000-01-01",
            "",
            "湘0001",
            "6217000000000000012",
        ],
    ]
    for row in example:
        ws.append(row)
    for col in ("B", "F", "C", "D", "L"):
        ws.column_dimensions[col].width = 22
        for cell in ws[col]:
            cell.number_format = "@"
    choices = {
        "E": [h.value for h in HukouType],
        "G": [r.value for r in Relation],
        "H": [s.value for s in Situation],
        "J": ["1", "2", "3"],
    }
    for col, values in choices.items():
        dv = DataValidation(type="list", formula1='"' + ",".join(values) + '"', allow_blank=True)
        dv.add(f"{col}2:{col}100000")
        ws.add_data_validation(dv)
    help_ws = wb.create_sheet("填写说明")
    help_ws.append(["列", "说明"])
    for item in HELP:
        help_ws.append(list(item))
    help_ws.append(
        [
            "",
            "整表校验：任一行有误则整表不导入，并生成带“错误说明”列的错误表；改正后重新导入即可。同一文件重复导入不会产生重复数据。",
        ]
    )
    help_ws.column_dimensions["B"].width = 100
    wb.save(path)


def csv_text(headers: list[str], rows: Iterable[dict[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(headers)
    for r in rows:
        w.writerow([r.get(h, "") for h in headers])
    return buf.getvalue()


Progress = Callable[[int], None]
