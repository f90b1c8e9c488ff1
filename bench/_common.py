"""Shared bench helpers: time a step, print "figure vs raw limit" tables.

DESIGN.md §5: every figure is printed next to the raw limit of the same
machine measured in the same run, so what matters is the ratio.
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timer:
    seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Timer]:
    """``with timed() as t: ...`` then ``t.seconds``."""
    t = Timer()
    start = time.perf_counter()
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - start


def peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM of its own address space. (``ru_maxrss`` is no use in a
    child: Linux carries the parent's high-water mark across fork and exec, so every child would
    report at least its parent's size.)"""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def one_row(cursor: Any) -> tuple[Any, ...]:
    """The row a query that always returns one gives (``cursor.fetchone()`` typed as maybe None)."""
    row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


@dataclass
class Row:
    name: str
    value: float  # per second
    limit: float | None = None  # the raw limit it compares to, per second
    limit_name: str = ""
    goal: float | None = None  # minimum acceptable value/limit ratio

    @property
    def ratio(self) -> float | None:
        return self.value / self.limit if self.limit else None

    @property
    def verdict(self) -> str:
        if self.goal is None or self.ratio is None:
            return ""
        return "ok" if self.ratio >= self.goal else "BELOW GOAL"


@dataclass
class Report:
    """Rows of (figure, raw limit, ratio, goal) printed as one aligned table."""

    title: str
    unit: str = "/s"
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self, name: str, value: float, limit: float | None = None, limit_name: str = "", goal: float | None = None
    ) -> Row:
        row = Row(name, value, limit, limit_name, goal)
        self.rows.append(row)
        return row

    def print(self) -> None:
        header = ("measure", f"rate{self.unit}", "raw limit", f"limit{self.unit}", "ratio", "goal", "")
        lines = [header]
        for r in self.rows:
            lines.append(
                (
                    r.name,
                    f"{r.value:,.0f}",
                    r.limit_name,
                    f"{r.limit:,.0f}" if r.limit else "",
                    f"{r.ratio:.0%}" if r.ratio is not None else "",
                    f"≥{r.goal:.0%}" if r.goal is not None else "",
                    r.verdict,
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        print(f"\n{self.title}")
        for i, line in enumerate(lines):
            print(
                "  ".join(
                    cell.ljust(w) if j in (0, 2) else cell.rjust(w)
                    for j, (cell, w) in enumerate(zip(line, widths, strict=True))
                ).rstrip()
            )
            if i == 0:
                print("  ".join("-" * w for w in widths))
        for note in self.notes:
            print(f"  * {note}")

    @property
    def ok(self) -> bool:
        return all(r.verdict != "BELOW GOAL" for r in self.rows)
