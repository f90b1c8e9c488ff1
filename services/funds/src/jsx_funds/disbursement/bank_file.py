"""The bank's result file (银行回盘): CSV (UTF-8 or GBK) or xlsx, read into the domain's bank lines.

Columns by header name — 业务参考号 (the payment file's reference,
``paymentBatches/{b}/payments/{p}``), 状态 (成功/失败), 失败原因, optional
银行流水号, 支付日期 (YYYY-MM-DD); blank and 合计 rows are skipped. What the
lines then do is :meth:`DisbursementService.import_bank_results`'s.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from jsx_funds.disbursement.domain import BankLine
from jsxcore.errors import ErrorCollector, InvalidArgument

_PAID_WORDS = {"成功", "已支付", "支付成功", "paid", "success", "succeeded", "ok"}
_FAILED_WORDS = {"失败", "支付失败", "退回", "failed", "failure"}


# ---------------------------------------------------------------- the bank's file


@dataclass(frozen=True)
class FileLine:
    """One result line of a bank file; ``row`` is the spreadsheet row number (header = 1)."""

    row: int
    result: BankLine


_COLUMNS = {
    "payment": ("业务参考号", "参考号", "reference", "payment"),
    "status": ("状态", "支付状态", "处理结果", "结果", "status"),
    "reason": ("失败原因", "原因", "备注", "reason", "failure_reason"),
    "bank_reference": ("银行流水号", "流水号", "bank_reference"),
    "paid_date": ("支付日期", "入账日期", "paid_date"),
}


def _rows(path: Path, data: bytes) -> list[list[str]]:
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            return [
                [
                    "" if v is None else (v.date().isoformat() if isinstance(v, datetime) else str(v)).strip()
                    for v in row
                ]
                for row in wb.worksheets[0].iter_rows(values_only=True)
            ]
        finally:
            wb.close()
    for enc in ("utf-8-sig", "gb18030"):  # banks' exports are often GBK
        try:
            text = data.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise InvalidArgument.field("file", "无法识别文件编码，请另存为 UTF-8 或 GBK 的 CSV", reason="BAD_ENCODING")
    return [[c.strip() for c in row] for row in csv.reader(io.StringIO(text))]


def read_bank_file(path: str | Path) -> list[FileLine]:
    """Parse a bank result file (CSV UTF-8/GBK, or xlsx) into results, by header names.

    Required columns: 业务参考号, 状态 (成功/失败); optional 失败原因, 银行流水号,
    支付日期 (YYYY-MM-DD). Blank rows and a 合计 row are skipped. Problems
    (missing column, unknown status, bad date) raise INVALID_ARGUMENT naming
    the file row.
    """
    p = Path(path)
    rows = _rows(p, p.read_bytes())
    if not rows:
        raise InvalidArgument.field("file", "文件是空的", reason="EMPTY_FILE")
    header = [h.lower() for h in rows[0]]
    cols: dict[str, int] = {}
    for key, names in _COLUMNS.items():
        for name in names:
            if name.lower() in header:
                cols[key] = header.index(name.lower())
                break
    errs = ErrorCollector()
    for key, label in (("payment", "业务参考号"), ("status", "状态")):
        if key not in cols:
            errs.add("file", f"第 1 行表头缺少“{label}”列")
    errs.raise_if_any()
    out: list[FileLine] = []
    for n, row in enumerate(rows[1:], start=2):

        def cell(key: str, row: list[str] = row) -> str:
            i = cols.get(key)
            return row[i] if i is not None and i < len(row) else ""

        if not any(row) or cell("payment") in ("合计", "总计"):
            continue
        status = cell("status").lower()
        if status not in _PAID_WORDS and status not in _FAILED_WORDS:
            errs.add(f"row[{n}].status", f"第 {n} 行：状态“{cell('status')}”无法识别，应为“成功”或“失败”")
            continue
        day: date | None = None
        if cell("paid_date"):
            try:
                day = date.fromisoformat(cell("paid_date")[:10])
            except ValueError:
                errs.add(f"row[{n}].paid_date", f"第 {n} 行：支付日期“{cell('paid_date')}”应写成 2022-08-15")
                continue
        out.append(
            FileLine(
                n,
                BankLine(
                    payment=cell("payment"),
                    succeeded=status in _PAID_WORDS,
                    failure_reason=cell("reason"),
                    bank_reference=cell("bank_reference"),
                    paid_date=day,
                ),
            )
        )
    errs.raise_if_any()
    return out
