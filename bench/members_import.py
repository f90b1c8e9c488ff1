#!/usr/bin/env python3
"""Roster import throughput next to a raw openpyxl read of the same file.

    python3 dev.py bench members_import [-n 100000] [--db postgresql://postgres@127.0.0.1:5432/test]

Generates an n-row roster (.xlsx, households of three with 身份证 numbers
carrying correct check characters) and measures in the same run:

* raw read — openpyxl read-only, values only, every row of the same file:
  the floor any xlsx import pays;
* import   — ``jsx members import``'s work: streaming read (a child process
  parses the xlsx while this one validates and writes), validation of
  every row (GB 11643, names, phones, villages, households, scope), blind
  index lookups, AES-GCM encryption of 身份证 and phone, bulk insert of
  persons (chunk by chunk while the file is read), households, members,
  situations and outbox events in one transaction on a fresh SQLite file
  (or a fresh PostgreSQL database).

Goal: import ≤ 2× the raw read time (rate ratio ≥ 50%).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Report, rate, timed
from openpyxl import load_workbook

from jsx_members.adapters import roster
from jsx_members.migrations import migrate
from jsx_members.service import MembersService, import_roster
from jsx_members.testdata import acting, roster_rows
from jsxcore.db import create_engine, session_factory
from jsxcore.pii import BlindIndex, FieldCipher


def raw_read(path: Path) -> int:
    wb = load_workbook(path, read_only=True, data_only=True)
    n = sum(1 for _ in wb.worksheets[0].iter_rows(values_only=True))
    wb.close()
    return n - 1


async def do_import(path: Path, url: str) -> tuple[int, float]:
    await asyncio.to_thread(migrate, url)
    engine = create_engine(url)
    svc = MembersService(session_factory(engine), FieldCipher(os.urandom(32)), BlindIndex(os.urandom(32)))
    try:
        with acting("431222", subject="bench"), timed() as t:
            _, rows, _ = roster.read_rows(path)
            report = await import_roster(svc, rows)
        if not report.ok:
            first = next(iter(report.errors.items()))
            raise SystemExit(f"bench roster has errors, e.g. row {first[0] + 2}: {first[1]}")
        return report.persons_created, t.seconds
    finally:
        await engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100_000, help="rows in the generated roster")
    ap.add_argument("--db", help="PostgreSQL server URL (a fresh database is created and dropped); default: SQLite")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "roster.xlsx"
        with timed() as gen:
            roster.write_rows(path, roster.HEADERS, roster_rows(args.n))
        print(f"generated {args.n:,} rows ({path.stat().st_size / 1e6:.1f} MB) in {gen.seconds:.1f} s", file=sys.stderr)
        load_before = os.getloadavg()[0]
        with timed() as raw:
            assert raw_read(path) == args.n
        if args.db:
            from jsxcore.testing.fixtures import create_postgres_database, drop_postgres_database

            os.environ["JSX_TEST_POSTGRES_URL"] = args.db
            url = create_postgres_database()
        else:
            url = f"sqlite:///{Path(tmp) / 'members.db'}"
        try:
            created, seconds = asyncio.run(do_import(path, url))
        finally:
            if args.db:
                drop_postgres_database(url)
    assert created == args.n
    report = Report(f"members roster import, {args.n:,} rows ({'PostgreSQL' if args.db else 'SQLite'})", unit=" rows/s")
    report.add("raw openpyxl read", rate(args.n, raw.seconds))
    report.add(
        "import (read+validate+encrypt+insert)",
        rate(args.n, seconds),
        rate(args.n, raw.seconds),
        "raw openpyxl read",
        goal=0.5,
    )
    report.notes.append(
        f"raw read {raw.seconds:.2f} s, import {seconds:.2f} s: "
        f"import = {seconds / raw.seconds:.2f}× raw read (goal ≤ 2×)"
    )
    # Other work on the machine skews the two timings differently; say how busy it was.
    report.notes.append(
        f"load average (1 min) {load_before:.2f} before the raw read, "
        f"{os.getloadavg()[0]:.2f} after the import, {os.cpu_count()} cores"
    )
    report.print()


if __name__ == "__main__":
    main()
