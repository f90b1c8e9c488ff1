"""The region registry: every statistical division (省 → 市 → 县 → 乡 → 村) with its name.

The built-in list is 国家统计局's 2023 统计用区划代码 for 湖南省 (31,691 divisions, shipped as
``jsxcore/data/regions/hunan-2023.csv.gz``; its README gives source and licence). One registry
is loaded per process, on first use of :func:`registry` (or at service start through
:func:`configure`); it never changes afterwards, so every thread may read it freely.

::

    from jsxcore.regions import registry

    reg = registry()
    village = reg.require(request.village, field="household.village")   # InvalidArgument if unknown
    village.full_name        # '湖南省怀化市洪江市黔城镇玉皇阁社区'
    reg.label("431281101002")  # '洪江市黔城镇玉皇阁社区（431281101002）'
    len(reg.villages("431222"))  # 404 villages and communities of 沅陵县

Codes are taken as :class:`jsxcore.values.RegionCode` or as text of 6, 9 or 12 digits
(``"431281"`` is padded to ``431281000000``, as ``RegionCode.parse`` does).

**Newer years.** Region codes change a little every year. :meth:`RegionRegistry.merged` lays a
newer year's list over the current one: codes that disappeared but are still referenced by
existing records (``keep``) stay valid, marked retired with the year they were last listed;
``jsx regions load`` does this for operators and writes the merged file that
``JSX_REGIONS_FILE`` then names (docs/operations.md, *Region codes*).

**File format** (the built-in list, a newer year's list, a merged file): UTF-8 CSV (optionally
gzip-compressed) with the header ``code,name,parent,level`` and an optional ``listed`` column
(the last year whose list had the code; a merged file writes it on every row). ``parent`` and
``level`` must agree with the code's own digits, and every parent must be in the file.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import re
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from jsxcore.errors import ConfigError, FieldViolation, InvalidArgument
from jsxcore.values import RegionCode, RegionLevel

__all__ = [
    "BUILTIN_SOURCE",
    "BUILTIN_YEAR",
    "ENV_VAR",
    "LEVEL_WORDS",
    "Region",
    "RegionRegistry",
    "RegionUpdate",
    "RetiredRegion",
    "configure",
    "load_file",
    "read_codes",
    "register_cli",
    "registry",
    "using",
]

#: Names an operator's registry file that replaces the built-in list (``jsx regions load --out``).
ENV_VAR = "JSX_REGIONS_FILE"
BUILTIN_YEAR = 2023
BUILTIN_SOURCE = "国家统计局 2023 年统计用区划代码（湖南省）"
_BUILTIN_RESOURCE = ("data", "regions", "hunan-2023.csv.gz")

#: How a level is named in messages.
LEVEL_WORDS: dict[RegionLevel, str] = {
    RegionLevel.PROVINCE: "省级",
    RegionLevel.CITY: "市级",
    RegionLevel.COUNTY: "县级",
    RegionLevel.TOWNSHIP: "乡级（乡镇、街道）",
    RegionLevel.VILLAGE: "村级（村、社区）",
}
_LEVEL_BY_LABEL = {level.label: level for level in RegionLevel}
# Significant digits per level (省 2, 市 4, 县 6, 乡 9, 村 12), as in jsxcore.values.
_PREFIX = {
    RegionLevel.PROVINCE: 2,
    RegionLevel.CITY: 4,
    RegionLevel.COUNTY: 6,
    RegionLevel.TOWNSHIP: 9,
    RegionLevel.VILLAGE: 12,
}
_COLUMNS = ("code", "name", "parent", "level", "listed")
_REQUIRED = ("code", "name", "parent", "level")
_HEADER_ALIASES = {
    "代码": "code",
    "区划代码": "code",
    "名称": "name",
    "上级": "parent",
    "上级代码": "parent",
    "级别": "level",
    "层级": "level",
    "年份": "listed",
}
_CODE12 = re.compile(r"[0-9]{12}")
_YEAR_IN_NAME = re.compile(r"(?<![0-9])(19[5-9][0-9]|2[0-9]{3})(?![0-9])")
_MAX_VIOLATIONS = 50
# Every code of a subtree starts with its prefix; ":" sorts right after "9".
_AFTER_DIGITS = ":"


_P, _C, _X, _T, _V = (
    RegionLevel.PROVINCE,
    RegionLevel.CITY,
    RegionLevel.COUNTY,
    RegionLevel.TOWNSHIP,
    RegionLevel.VILLAGE,
)
# Level by the number of trailing zeros of a 12-digit code (as RegionCode.level decides it).
_LEVEL_BY_ZEROS = (_V, _V, _V, _T, _T, _T, _X, _X, _C, _C, _P, _P, _P)
_PARENT_PREFIX = {_C: 2, _X: 4, _T: 6, _V: 9}
_CHAIN_PREFIXES = {lv: tuple(_PREFIX[up] for up in RegionLevel if up <= lv) for lv in RegionLevel}


def _level(code: str) -> RegionLevel:
    """Level of a valid 12-digit code from its trailing zeros (as RegionCode.level)."""
    return _LEVEL_BY_ZEROS[12 - len(code.rstrip("0"))]


def _chain(code: str) -> list[str]:
    """The code's ancestors and itself, province first."""
    return [code[:n].ljust(12, "0") for n in _CHAIN_PREFIXES[_level(code)]]


def _parent(code: str) -> str | None:
    n = _PARENT_PREFIX.get(_level(code))
    return code[:n].ljust(12, "0") if n is not None else None


# The published names of many villages end in their committee (仰溪铺村村委会, 洪山桥社区居民委员会);
# labels drop that part where it is unambiguous. Longest endings first.
_COMMITTEE_ENDINGS = (
    ("社区居民委员会", "社区"),
    ("村村民委员会", "村"),
    ("社区居委会", "社区"),
    ("社区委员会", "社区"),
    ("村民委员会", "村"),
    ("村村委会", "村"),
    ("村委会", "村"),
)


def _short_name(name: str) -> str:
    for ending, replacement in _COMMITTEE_ENDINGS:
        if name.endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)] + replacement
    return name


def _os_reason(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "文件不存在"
    if isinstance(e, PermissionError):
        return "没有读取权限"
    if isinstance(e, IsADirectoryError):
        return "这是目录，不是文件"
    return str(e.strerror or e)


def _trusted_code(code: str) -> RegionCode:
    """A RegionCode for a code the registry already checked (skips the per-object regex)."""
    rc = object.__new__(RegionCode)
    object.__setattr__(rc, "code", code)
    return rc


# ---------------------------------------------------------------- Region


@dataclass(frozen=True, slots=True)
class Region:
    """One division as the registry knows it.

    ``path`` holds the names from the province down to this region (this one last);
    ``last_listed`` is the last year whose official list had the code; ``retired`` is true
    for a code the current list no longer has, kept because records still refer to it.
    """

    code: RegionCode
    name: str
    path: tuple[str, ...]
    last_listed: int
    retired: bool = False

    @property
    def level(self) -> RegionLevel:
        return self.code.level

    @property
    def parent(self) -> RegionCode | None:
        up = _parent(self.code.code)
        return _trusted_code(up) if up is not None else None

    @property
    def full_name(self) -> str:
        """``湖南省怀化市洪江市黔城镇玉皇阁社区``."""
        return "".join(self.path)

    @property
    def short_name(self) -> str:
        """The name without a village committee ending: ``仰溪铺村`` for the published
        ``仰溪铺村村委会``, ``洪山桥社区`` for ``洪山桥社区居民委员会``; else :attr:`name`."""
        return _short_name(self.name)

    @property
    def local_name(self) -> str:
        """The name from the county down (``洪江市黔城镇玉皇阁社区``, the village by its
        :attr:`short_name`); a city or the province by its own name. What a clerk of the
        county reads without ambiguity."""
        if self.level < RegionLevel.COUNTY:
            return self.name
        above = "".join(self.path[RegionLevel.COUNTY - 1 : -1])
        own = self.short_name
        if above and own.startswith(above) and len(own) > len(above):
            own = own[len(above) :]  # a few published names repeat their county (攸县攸县工业园)
        return above + own

    @property
    def label(self) -> str:
        """``洪江市黔城镇玉皇阁社区（431281101002）``: the name to put beside a code in lists,
        files and reports; a retired code says so (``…（431281101201，2023 年后停用）``)."""
        note = f"，{self.last_listed} 年后停用" if self.retired else ""
        return f"{self.local_name}（{self.code.short}{note}）"

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True, slots=True)
class RetiredRegion:
    """A code a newer list dropped, kept because it is still referenced. ``successors``: codes
    of the newer list with the same name under the same parent (a likely re-coding)."""

    region: Region
    successors: tuple[Region, ...] = ()


# ---------------------------------------------------------------- the registry


class RegionRegistry:
    """All divisions of one region list, immutable. Build one with :meth:`builtin`,
    :meth:`read` or :meth:`from_rows`; the process-wide one is :func:`registry`."""

    __slots__ = ("_cache", "_codes", "_labels", "_listed", "_names", "load_seconds", "origin", "source", "year")

    def __init__(
        self,
        names: dict[str, str],
        *,
        year: int,
        source: str,
        listed: dict[str, int] | None = None,
        origin: str = "",
        load_seconds: float = 0.0,
    ) -> None:
        # Trusted input (already validated): 12-digit code → name, parents present.
        self._names = names
        #: codes whose last listed year is before ``year`` (the retired ones) → that year
        self._listed = {c: y for c, y in (listed or {}).items() if y < year}
        self._codes = sorted(names)
        self._cache: dict[str, Region] = {}
        self._labels: dict[str, str] = {}
        #: the year of the current list (messages say "2023 年统计用区划代码")
        self.year = year
        #: what the list is (``国家统计局 2023 年统计用区划代码（湖南省）``, a file name)
        self.source = source
        #: where it was read from (the built-in resource or a file path)
        self.origin = origin
        #: seconds spent reading and indexing the list
        self.load_seconds = load_seconds

    # -- construction

    @classmethod
    def builtin(cls) -> RegionRegistry:
        """The shipped 2023 Hunan list (read once per process, then shared)."""
        global _builtin
        with _lock:
            if _builtin is None:
                started = time.perf_counter()
                data = resources.files("jsxcore").joinpath(*_BUILTIN_RESOURCE).read_bytes()
                names = _trusted_names(gzip.decompress(data).decode("utf-8"))
                _builtin = cls(
                    names,
                    year=BUILTIN_YEAR,
                    source=BUILTIN_SOURCE,
                    origin="jsxcore/" + "/".join(_BUILTIN_RESOURCE),
                    load_seconds=time.perf_counter() - started,
                )
            return _builtin

    @classmethod
    def read(cls, path: str | Path, *, year: int | None = None, source: str | None = None) -> RegionRegistry:
        """Read and validate a region file (CSV, or gzip of one). Every problem is reported at
        once in an :class:`InvalidArgument` (reason ``INVALID_REGION_FILE``) whose violations
        name the line (``rows[12].parent``). The year is ``year``, else the ``listed`` column's
        latest year, else a year in the file name (``hunan-2024.csv``)."""
        started = time.perf_counter()
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as e:
            raise InvalidArgument.field(
                "file", f"区划文件 {p} 无法读取（{_os_reason(e)}）", reason="INVALID_REGION_FILE"
            ) from None
        if data[:2] == b"\x1f\x8b":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as e:
                raise InvalidArgument.field(
                    "file", f"区划文件 {p.name} 不是完整的 gzip 文件（{e}）", reason="INVALID_REGION_FILE"
                ) from None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidArgument.field(
                "file",
                f"区划文件 {p.name} 不是 UTF-8 编码；用 Excel 时请“另存为 CSV UTF-8（逗号分隔）”",
                reason="INVALID_REGION_FILE",
            ) from None
        reg = cls._parse(text, file_name=p.name, year=year, source=source or f"区划文件 {p.name}")
        reg.origin = str(p)
        reg.load_seconds = time.perf_counter() - started
        return reg

    @classmethod
    def from_rows(
        cls, rows: Iterable[Sequence[str]], *, year: int | None = None, source: str = "区划数据"
    ) -> RegionRegistry:
        """Validate rows given in code (header first: ``code,name,parent,level[,listed]``)."""
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        return cls._parse(buf.getvalue(), file_name=source, year=year, source=source)

    @classmethod
    def _parse(cls, text: str, *, file_name: str, year: int | None, source: str) -> RegionRegistry:
        problems: list[FieldViolation] = []

        def bad(line: int, column: str, message: str) -> None:
            problems.append(FieldViolation(f"rows[{line}].{column}", f"第 {line} 行：{message}"))

        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        cols = [_HEADER_ALIASES.get(h.strip(), h.strip().lower()) for h in header or []]
        missing = [c for c in _REQUIRED if c not in cols]
        if missing:
            raise InvalidArgument.field(
                "header",
                f"区划文件 {file_name} 的表头应为 code,name,parent,level（可加 listed），缺少 {', '.join(missing)}",
                reason="INVALID_REGION_FILE",
            )
        at = {c: cols.index(c) for c in _COLUMNS if c in cols}
        width = max(at.values()) + 1
        names: dict[str, str] = {}
        listed: dict[str, int] = {}
        lines: dict[str, int] = {}
        parents: list[tuple[str, str]] = []
        i_code, i_name, i_parent, i_level = at["code"], at["name"], at["parent"], at["level"]
        i_listed = at.get("listed")
        for row in reader:
            if len(row) < width:
                if not any(cell.strip() for cell in row):
                    continue  # a blank line
                row = row + [""] * (width - len(row))
            line = reader.line_num
            code = row[i_code].strip()
            if not (_CODE12.fullmatch(code) and not code.startswith("00")):
                try:
                    code = RegionCode.parse(code).code  # 6 or 9 digits, full-width digits
                except InvalidArgument:
                    if any(cell.strip() for cell in row):
                        bad(line, "code", f"区划代码“{row[i_code].strip()}”无效，应为12位数字")
                    continue
            if code in lines:
                bad(line, "code", f"区划代码 {code} 重复（第 {lines[code]} 行已有）")
                continue
            lines[code] = line
            name = row[i_name].strip()
            if not name:
                bad(line, "name", f"区划代码 {code} 没有名称")
            names[code] = name
            level = _LEVEL_BY_ZEROS[12 - len(code.rstrip("0"))]
            level_text = row[i_level].strip()
            if level_text and _LEVEL_BY_LABEL.get(level_text) is not level:
                bad(line, "level", f"级别“{level_text}”与代码 {code} 不符（按代码应为“{level.label}”）")
            n = _PARENT_PREFIX.get(level)
            parent = code[:n].ljust(12, "0") if n is not None else None
            if parent is not None:
                parents.append((code, parent))
            parent_text = row[i_parent].strip()
            if parent_text and parent_text != parent:  # an empty parent (or level) is taken from the code
                try:
                    given: str | None = RegionCode.parse(parent_text).code
                except InvalidArgument:
                    given = None
                if given != parent:
                    expected = f"“{parent}”" if parent else "空（省级没有上级）"
                    bad(line, "parent", f"上级代码“{parent_text}”与代码 {code} 不符（应为{expected}）")
            if i_listed is not None and (listed_text := row[i_listed].strip()):
                if len(listed_text) == 4 and listed_text.isdigit():
                    listed[code] = int(listed_text)
                else:
                    bad(line, "listed", f"年份“{listed_text}”应为4位数字，如 2023")
        if not names and not problems:
            raise InvalidArgument.field("file", f"区划文件 {file_name} 没有数据行", reason="INVALID_REGION_FILE")
        for code, parent in parents:
            if parent not in names:
                bad(lines[code], "parent", f"代码 {code} 的上级 {parent} 不在文件中")
        if year is None:
            if listed:
                year = max(listed.values())
            else:
                found = set(_YEAR_IN_NAME.findall(file_name))
                if len(found) != 1:
                    raise InvalidArgument.field(
                        "year",
                        f"无法确定区划文件 {file_name} 的年份：文件没有 listed 列，文件名里也没有"
                        "（唯一的）年份；请指定年份（jsx regions load … --year 2024）",
                        reason="INVALID_REGION_FILE",
                    )
                year = int(found.pop())
        for code, y in listed.items():
            if y > year:
                bad(lines[code], "listed", f"年份 {y} 晚于这份区划代码的年份 {year}")
        if problems:
            shown = problems[:_MAX_VIOLATIONS]
            more = f"（只列出前 {_MAX_VIOLATIONS} 处）" if len(problems) > _MAX_VIOLATIONS else ""
            raise InvalidArgument(
                f"区划文件 {file_name} 有 {len(problems)} 处错误{more}，未载入；请改正后重试",
                reason="INVALID_REGION_FILE",
                violations=shown,
            )
        return cls(names, year=year, source=source, listed=listed)

    # -- lookups

    def _key(self, code: str | RegionCode) -> str | None:
        if isinstance(code, RegionCode):
            return code.code
        if code in self._names:  # the common case: a canonical 12-digit code
            return code
        try:
            return RegionCode.parse(code).code
        except InvalidArgument:
            return None

    def _region(self, code: str) -> Region:
        # Built on first use and kept: a report labelling a million rows looks up a few
        # hundred villages over and over. (A race builds the same value twice; harmless.)
        region = self._cache.get(code)
        if region is None:
            names = self._names
            path = tuple(names[c] for c in _chain(code))
            last = self._listed.get(code, self.year)
            region = Region(_trusted_code(code), names[code], path, last, last < self.year)
            self._cache[code] = region
        return region

    def get(self, code: str | RegionCode) -> Region | None:
        """The region, or None when the code is unknown or malformed."""
        key = self._key(code)
        return self._region(key) if key is not None and key in self._names else None

    def __getitem__(self, code: str | RegionCode) -> Region:
        region = self.get(code)
        if region is None:
            raise KeyError(code)
        return region

    def __contains__(self, code: object) -> bool:
        if not isinstance(code, (str, RegionCode)):
            return False
        key = self._key(code)
        return key is not None and key in self._names

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[Region]:
        """Every region in code order (retired ones included)."""
        return (self._region(c) for c in self._codes)

    def __repr__(self) -> str:
        return f"<RegionRegistry {self.source}: {len(self)} codes, {len(self._listed)} retired>"

    def require(
        self,
        code: str | RegionCode,
        *,
        field: str = "region_code",
        level: RegionLevel | tuple[RegionLevel, ...] | None = None,
        allow_retired: bool = True,
    ) -> Region:
        """The region, or :class:`InvalidArgument` naming ``field``: a malformed code
        (``INVALID_REGION_CODE``), one the list does not have (``UNKNOWN_REGION_CODE``), one
        of another level than ``level`` (``WRONG_REGION_LEVEL``), or — with
        ``allow_retired=False``, for new records — a retired one (``RETIRED_REGION_CODE``).

        Retired codes are accepted by default: records made before the list changed still
        point to them, and updating such a record must not fail."""
        rc = RegionCode.parse(code, field=field)
        if rc.code not in self._names:
            known = next((c for c in reversed(_chain(rc.code)[:-1]) if c in self._names), None)
            where = (
                f"{self._region(known).label}下没有这个代码"
                if known is not None
                else f"它不在本系统收录的区划范围内（{self._scope_text()}）"
            )
            msg = f"行政区划代码 {rc.code} 不存在（{self.year} 年统计用区划代码），{where}；请核对后重新填写"
            raise self._error(field, msg, "UNKNOWN_REGION_CODE", rc.code)
        region = self._region(rc.code)
        wanted = (level,) if isinstance(level, RegionLevel) else level
        if wanted and region.level not in wanted:
            need = "或".join(LEVEL_WORDS[lv] for lv in wanted)
            msg = f"{region.label}是{LEVEL_WORDS[region.level]}区划，这里应填{need}代码"
            raise self._error(field, msg, "WRONG_REGION_LEVEL", rc.code)
        if region.retired and not allow_retired:
            msg = (
                f"行政区划代码 {rc.code}（{region.full_name}）已停用：最后见于 {region.last_listed} 年"
                f"统计用区划代码，{self.year} 年的代码中已没有，请改用现行代码"
            )
            raise self._error(field, msg, "RETIRED_REGION_CODE", rc.code)
        return region

    def _error(self, field: str, message: str, reason: str, code: str) -> InvalidArgument:
        return InvalidArgument(
            message,
            reason=reason,
            violations=[FieldViolation(field, message)],
            metadata={"region_code": code, "region_list_year": str(self.year)},
        )

    def _scope_text(self) -> str:
        tops = [self._names[c] for c in self._codes if _level(c) is RegionLevel.PROVINCE]
        return "、".join(tops[:3]) + ("等" if len(tops) > 3 else "")

    def name(self, code: str | RegionCode) -> str | None:
        """The region's own name (``玉皇阁社区``), or None when unknown."""
        key = self._key(code)
        return self._names.get(key) if key is not None else None

    def full_name(self, code: str | RegionCode) -> str | None:
        """``湖南省怀化市洪江市黔城镇玉皇阁社区``, or None when unknown."""
        region = self.get(code)
        return region.full_name if region else None

    def label(self, code: str | RegionCode, *, full: bool = False) -> str:
        """Name and code for display: ``洪江市黔城镇玉皇阁社区（431281101002）`` (``full``: from the
        province). Never raises: an unknown code shows as ``431281999999（代码未收录）``, a
        malformed one as given with ``（代码无效）``. Labels of known codes are kept: a payment
        file of a million rows asks for the same few hundred villages again and again."""
        if not full:
            hit = self._labels.get(code.code if isinstance(code, RegionCode) else code)
            if hit is not None:
                return hit
        region = self.get(code)
        if region is None:
            key = self._key(code)
            return f"{key}（代码未收录）" if key is not None else f"{code}（代码无效）"
        if full:
            note = f"，{region.last_listed} 年后停用" if region.retired else ""
            return f"{region.full_name}（{region.code.short}{note}）"
        label = region.label
        self._labels[region.code.code] = label
        if isinstance(code, str) and code != region.code.code and len(code) in (6, 9) and code.isdigit():
            self._labels[code] = label  # the short forms too (431281 → 洪江市（431281）)
        return label

    def ancestors(self, code: str | RegionCode) -> list[Region]:
        """The region and every region above it, province first ([] when unknown)."""
        region = self.get(code)
        return [self._region(c) for c in _chain(region.code.code)] if region else []

    def parent(self, code: str | RegionCode) -> Region | None:
        """The region one level up (None for a province or an unknown code)."""
        key = self._key(code)
        up = _parent(key) if key is not None and key in self._names else None
        return self._region(up) if up is not None else None

    def _subtree(self, key: str) -> Iterator[str]:
        prefix = RegionCode(key).prefix
        codes = self._codes
        lo = bisect_left(codes, prefix)
        hi = bisect_left(codes, prefix + _AFTER_DIGITS, lo)
        return iter(codes[lo:hi])

    def descendants(
        self, code: str | RegionCode, *, level: RegionLevel | None = None, include_retired: bool = False
    ) -> list[Region]:
        """Every region strictly below ``code`` (only those of ``level`` if given), in code
        order; retired ones only with ``include_retired``. [] for an unknown code."""
        key = self._key(code)
        if key is None or key not in self._names:
            return []
        listed = self._listed
        return [
            self._region(c)
            for c in self._subtree(key)
            if c != key and (level is None or _level(c) is level) and (include_retired or c not in listed)
        ]

    def children(self, code: str | RegionCode, *, include_retired: bool = False) -> list[Region]:
        """The regions one level below ``code``, in code order."""
        key = self._key(code)
        if key is None or key not in self._names or _level(key) is RegionLevel.VILLAGE:
            return []
        return self.descendants(key, level=RegionLevel(_level(key) + 1), include_retired=include_retired)

    def villages(self, code: str | RegionCode, *, include_retired: bool = False) -> list[Region]:
        """Every village and community (村级) in ``code``'s area; a village gives itself.
        What "every village of a county" means for cadence targets and coverage reports."""
        key = self._key(code)
        if key is not None and key in self._names and _level(key) is RegionLevel.VILLAGE:
            return [self._region(key)] if include_retired or key not in self._listed else []
        return self.descendants(code, level=RegionLevel.VILLAGE, include_retired=include_retired)

    def count(self, code: str | RegionCode, level: RegionLevel, *, include_retired: bool = False) -> int:
        """How many regions of ``level`` lie below ``code`` (without building them)."""
        key = self._key(code)
        if key is None or key not in self._names:
            return 0
        listed = self._listed
        return sum(
            1 for c in self._subtree(key) if c != key and _level(c) is level and (include_retired or c not in listed)
        )

    def find(
        self,
        text: str,
        *,
        within: str | RegionCode | None = None,
        level: RegionLevel | None = None,
        include_retired: bool = False,
    ) -> list[Region]:
        """Regions whose name contains ``text`` (exact names first, then code order), e.g. a
        roster's 村 column read by name: ``find("玉皇阁", within="431281")``."""
        needle = text.strip()
        if not needle:
            return []
        if within is None:
            pool: Iterable[str] = self._codes
        else:
            key = self._key(within)
            if key is None or key not in self._names:
                return []
            pool = self._subtree(key)
        names, listed = self._names, self._listed
        hits = [
            c
            for c in pool
            if needle in names[c] and (level is None or _level(c) is level) and (include_retired or c not in listed)
        ]
        hits.sort(key=lambda c: (names[c] != needle, c))
        return [self._region(c) for c in hits]

    def counts(self) -> dict[RegionLevel, int]:
        """Codes per level (retired ones included)."""
        out = dict.fromkeys(RegionLevel, 0)
        for c in self._codes:
            out[_level(c)] += 1
        return out

    @property
    def retired(self) -> list[Region]:
        """Every retired code still kept, in code order."""
        return [self._region(c) for c in sorted(self._listed)]

    # -- newer years

    def merged(
        self, newer: RegionRegistry, *, keep: Iterable[str | RegionCode] = (), keep_all: bool = False
    ) -> RegionUpdate:
        """Lay ``newer`` (a later year's list) over this registry.

        The result has every code of ``newer`` (names as ``newer`` gives them), plus each code
        of this registry that ``newer`` dropped but that is in ``keep`` (codes existing records
        still refer to; ``keep_all``: every code of this registry) — kept as retired, with the
        year it was last listed, together with any dropped region above it (so its name path
        still reads). Codes dropped and not kept are gone. The :class:`RegionUpdate` says what
        changed; nothing is installed (see :func:`configure`)."""
        if newer.year < self.year:
            raise InvalidArgument.field(
                "year",
                f"新区划代码是 {newer.year} 年的，早于当前的 {self.year} 年；未合并",
                reason="REGION_LIST_OLDER",
            )
        wanted: set[str] = set()
        bad: list[FieldViolation] = []
        for i, item in enumerate(keep):
            key = self._key(item)
            if key is None:
                bad.append(FieldViolation(f"keep[{i}]", f"“{item}”不是有效的区划代码"))
            else:
                wanted.add(key)
        if bad:
            raise InvalidArgument("仍被引用的代码清单中有无效代码", reason="INVALID_REGION_CODE", violations=bad)
        if keep_all:
            wanted.update(self._names)
        names = dict(newer._names)
        listed = {c: newer._listed.get(c, newer.year) for c in names}
        newly: list[str] = []
        still: list[str] = []
        unknown: list[str] = []
        for code in sorted(wanted):
            if code in names:
                continue
            if code not in self._names:
                unknown.append(code)
                continue
            for c in reversed(_chain(code)):
                if c in names:
                    break
                names[c] = self._names[c]
                listed[c] = self._listed.get(c, self.year)
                (still if c in self._listed else newly).append(c)
        result = RegionRegistry(names, year=newer.year, source=newer.source, listed=listed, origin=newer.origin)
        old = self._names
        added = [c for c in newer._codes if c not in old and c not in newer._listed]
        by_place: dict[tuple[str | None, str], list[str]] = {}
        for c in added:
            by_place.setdefault((_parent(c), newer._names[c]), []).append(c)
        return RegionUpdate(
            registry=result,
            old_year=self.year,
            added=tuple(result._region(c) for c in added),
            renamed=tuple(
                (self._region(c), result._region(c))
                for c in newer._codes
                if c in old and c not in self._listed and old[c] != names[c]
            ),
            retired=tuple(
                RetiredRegion(
                    result._region(c), tuple(result._region(s) for s in by_place.get((_parent(c), old[c]), ()))
                )
                for c in sorted(newly)
            ),
            still_retired=tuple(result._region(c) for c in sorted(still)),
            reinstated=tuple(result._region(c) for c in newer._codes if c in self._listed and c not in newer._listed),
            dropped=tuple(self._region(c) for c in self._codes if c not in names),
            unknown=tuple(unknown),
        )

    # -- writing

    def write(self, path: str | Path) -> Path:
        """Write the registry as a region file (``listed`` on every row; gzip when the name
        ends in ``.gz``), atomically: a reader never sees half a file."""
        p = Path(path)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(_COLUMNS)
        for c in self._codes:
            level = _level(c)
            w.writerow([c, self._names[c], _parent(c) or "", level.label, self._listed.get(c, self.year)])
        data = buf.getvalue().encode("utf-8")
        if p.name.endswith(".gz"):
            data = gzip.compress(data, 9, mtime=0)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        return p


def _trusted_names(text: str) -> dict[str, str]:
    """code → name of the shipped list, without re-validating it (the tests do)."""
    reader = csv.reader(io.StringIO(text))
    next(reader)
    return {row[0]: row[1] for row in reader if row}


@dataclass(frozen=True)
class RegionUpdate:
    """What :meth:`RegionRegistry.merged` built and what changed against the older list."""

    registry: RegionRegistry
    old_year: int
    #: codes new in this list
    added: tuple[Region, ...] = ()
    #: (as before, as now) for codes whose name changed
    renamed: tuple[tuple[Region, Region], ...] = ()
    #: codes this list dropped, kept (retired) because they are referenced
    retired: tuple[RetiredRegion, ...] = ()
    #: codes retired by an earlier list and still kept
    still_retired: tuple[Region, ...] = ()
    #: codes retired earlier that this list has again
    reinstated: tuple[Region, ...] = ()
    #: codes this list dropped that nothing refers to: gone (as they were)
    dropped: tuple[Region, ...] = ()
    #: referenced codes in neither list: the records holding them have a wrong code
    unknown: tuple[str, ...] = ()

    def report(self, *, limit: int = 20) -> list[str]:
        """The changes in Chinese, one line each (at most ``limit`` examples per kind; 0: all)."""
        new = self.registry

        def section(title: str, items: Sequence[str]) -> list[str]:
            if not items:
                return [f"{title}：无"]
            shown = items if limit <= 0 else items[:limit]
            out = [f"{title}：{len(items)} 个"] + [f"  {s}" for s in shown]
            if len(shown) < len(items):
                out.append(f"  ……另有 {len(items) - len(shown)} 个（加 --limit 0 全部列出）")
            return out

        def retired_line(r: RetiredRegion) -> str:
            line = f"{r.region.code.code}  {r.region.full_name}（最后见于 {r.region.last_listed} 年）"
            if r.successors:
                line += "；同一上级下有同名的新代码 " + "、".join(s.code.code for s in r.successors)
            return line

        lines = [
            f"与 {self.old_year} 年区划相比（新区划：{new.source}，{new.year} 年）：",
            *section("新增", [f"{r.code.code}  {r.full_name}" for r in self.added]),
            *section("更名", [f"{n.code.code}  {o.full_name} → {n.full_name}" for o, n in self.renamed]),
            *section("停用但仍被引用（保留为已停用代码，原记录仍然有效）", [retired_line(r) for r in self.retired]),
            *section("早先已停用、仍被引用（继续保留）", [f"{r.code.code}  {r.full_name}" for r in self.still_retired]),
            *section("重新列入（曾停用）", [f"{r.code.code}  {r.full_name}" for r in self.reinstated]),
            *section("停用且无记录引用（移除）", [f"{r.code.code}  {r.full_name}" for r in self.dropped]),
        ]
        if self.unknown:
            lines += section("被引用但新旧区划中都没有的代码（这些记录的区划代码有误，请核对）", list(self.unknown))
        return lines


# ---------------------------------------------------------------- the process-wide registry

_lock = threading.RLock()
_builtin: RegionRegistry | None = None
_current: RegionRegistry | None = None
_files: dict[tuple[str, int, int], RegionRegistry] = {}


def load_file(path: str | Path, *, variable: str = ENV_VAR) -> RegionRegistry:
    """Read a registry file named by configuration (cached per file version); any problem
    becomes a :class:`ConfigError` naming ``variable``, its ``problems`` saying what is wrong."""
    p = Path(path).expanduser()

    def fail(*problems: str) -> ConfigError:
        return ConfigError(f"{variable}={p}: " + "；".join(problems), problems)

    try:
        st = p.stat()
    except FileNotFoundError:
        raise fail("区划文件不存在") from None
    except OSError as e:
        raise fail(f"区划文件无法访问（{_os_reason(e)}）") from None
    if not p.is_file():
        raise fail("不是文件；应为 jsx regions load --out 写出的区划文件")
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    with _lock:
        cached = _files.get(key)
        if cached is not None:
            return cached
        try:
            reg = RegionRegistry.read(p)
        except InvalidArgument as e:
            raise fail(e.message, *(v.description for v in e.violations[:5])) from None
        _files[key] = reg
        return reg


def configure(path: str | Path | None = None, *, variable: str = ENV_VAR) -> RegionRegistry:
    """Install the process's registry at start: the file at ``path`` (errors name
    ``variable``), else — when nothing is installed yet — the built-in list. Called by the
    service runtime with ``ServiceConfig.regions_file``; returns what is installed."""
    global _current
    with _lock:
        if path is not None:
            _current = load_file(path, variable=variable)
        elif _current is None:
            _current = RegionRegistry.builtin()
        return _current


def registry() -> RegionRegistry:
    """The process's registry: loaded on first use from ``JSX_REGIONS_FILE`` when it is set,
    else the built-in list; the same object afterwards. Plugins may call it too (e.g. every
    village of a county for a cadence target): it is plain data, no hook involved."""
    reg = _current
    if reg is not None:
        return reg
    return configure(os.environ.get(ENV_VAR, "").strip() or None)


@contextmanager
def using(reg: RegionRegistry) -> Iterator[RegionRegistry]:
    """Install ``reg`` for the duration of a block (tests: a newer year's merged list)."""
    global _current
    with _lock:
        before, _current = _current, reg
    try:
        yield reg
    finally:
        with _lock:
            _current = before


def read_codes(lines: Iterable[str], *, source: str = "-") -> list[str]:
    """Codes from a text or CSV listing, one per line (the first field; a header line and
    ``#`` comments are skipped): what each service exports as "codes still referenced".
    Every bad line is reported at once (:class:`InvalidArgument`)."""
    codes: list[str] = []
    bad: list[FieldViolation] = []
    for n, raw in enumerate(lines, start=1):
        text = raw.strip().lstrip("\ufeff")
        if not text or text.startswith("#"):
            continue
        first = re.split(r"[,\t; ]", text, maxsplit=1)[0].strip().strip('"')
        try:
            codes.append(RegionCode.parse(first).code)
        except InvalidArgument:
            if n == 1 and not any(ch.isdigit() for ch in first):
                continue  # a header
            bad.append(FieldViolation(f"{source}:{n}", f"{source} 第 {n} 行：“{first}”不是有效的区划代码"))
    if bad:
        raise InvalidArgument(
            f"{source} 中有 {len(bad)} 行不是有效的区划代码", reason="INVALID_REGION_CODE", violations=bad[:50]
        )
    return codes


# ---------------------------------------------------------------- jsx regions …


def _region_json(r: Region) -> dict[str, object]:
    return {
        "code": r.code.code,
        "name": r.name,
        "full_name": r.full_name,
        "level": r.level.label,
        "parent": r.parent.code if r.parent else None,
        "label": r.label,
        "retired": r.retired,
        "last_listed": r.last_listed,
    }


def _print_json(data: object) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _cmd_show(args: argparse.Namespace) -> int:
    reg = registry()
    r = reg.require(args.code, field="code")
    if args.json:
        data = _region_json(r)
        data["counts"] = {lv.label: reg.count(r.code, lv) for lv in RegionLevel if lv > r.level}
        _print_json(data)
        return 0
    print(r.label)
    print(f"  代码：{r.code.code}")
    print(f"  级别：{LEVEL_WORDS[r.level]}")
    print(f"  全称：{r.full_name}")
    up = reg.parent(r.code)
    print(f"  上级：{up.label if up else '无'}")
    below = [f"{reg.count(r.code, lv)} 个{LEVEL_WORDS[lv]}" for lv in RegionLevel if lv > r.level]
    if below:
        print(f"  下辖：{'，'.join(below)}")
    if r.retired:
        print(f"  状态：已停用（最后见于 {r.last_listed} 年统计用区划代码），因仍有记录引用而保留")
    print(f"  来源：{reg.source}")
    return 0


def _print_list(title: str, regions: Sequence[Region], as_json: bool) -> int:
    if as_json:
        _print_json([_region_json(r) for r in regions])
        return 0
    print(title)
    for r in regions:
        print(f"{r.code.code}  {r.local_name}{'（已停用）' if r.retired else ''}")
    return 0


def _cmd_villages(args: argparse.Namespace) -> int:
    reg = registry()
    r = reg.require(args.code, field="code")
    found = reg.villages(r.code, include_retired=args.include_retired)
    return _print_list(f"{r.label}共有 {len(found)} 个村（社区），据{reg.source}：", found, args.json)


def _cmd_children(args: argparse.Namespace) -> int:
    reg = registry()
    r = reg.require(args.code, field="code")
    found = reg.children(r.code, include_retired=args.include_retired)
    if r.level is RegionLevel.VILLAGE:
        return _print_list(f"{r.label}是村级区划，没有下级", found, args.json)
    words = LEVEL_WORDS[RegionLevel(r.level + 1)]
    return _print_list(f"{r.label}下辖 {len(found)} 个{words}区划，据{reg.source}：", found, args.json)


def _cmd_find(args: argparse.Namespace) -> int:
    reg = registry()
    within = reg.require(args.within, field="within").code if args.within else None
    found = reg.find(args.name, within=within, include_retired=args.include_retired)
    where = f"{reg.label(within)}内" if within else ""
    return _print_list(f"{where}名称含“{args.name}”的区划共 {len(found)} 个：", found, args.json)


def _cmd_info(args: argparse.Namespace) -> int:
    reg = registry()
    counts = reg.counts()
    print(f"区划：{reg.source}（{reg.year} 年），共 {len(reg)} 个代码")
    print("  " + "，".join(f"{LEVEL_WORDS[lv]} {n} 个" for lv, n in counts.items()))
    print(f"  已停用仍保留：{len(reg.retired)} 个")
    print(f"  文件：{reg.origin}")
    env = os.environ.get(ENV_VAR, "").strip()
    print(f"  {ENV_VAR}：{env or '未设置（使用内置区划）'}")
    print(f"  载入用时：{reg.load_seconds * 1000:.0f} ms")
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    current = registry()
    if args.out and not (args.keep_from or args.keep_all):
        raise InvalidArgument.field(
            "keep_from",
            "写出新区划文件前须说明哪些旧代码仍被引用：用 --keep-from 指定各服务导出的代码清单"
            "（可重复），或用 --keep-all 保留全部旧代码",
            reason="KEEP_REQUIRED",
        )
    newer = RegionRegistry.read(args.file, year=args.year)
    keep: list[str] = []
    for src in args.keep_from or ():
        if src == "-":
            keep += read_codes(sys.stdin, source="标准输入")
        else:
            try:
                with open(src, encoding="utf-8-sig") as fh:
                    keep += read_codes(fh, source=src)
            except OSError as e:
                raise InvalidArgument.field(
                    "keep_from", f"代码清单 {src} 无法读取（{_os_reason(e)}）", reason="INVALID_ARGUMENT"
                ) from None
    update = current.merged(newer, keep=keep, keep_all=args.keep_all)
    print(f"新区划文件 {args.file}：{newer.year} 年，{len(newer)} 个代码，校验通过")
    print(f"当前区划：{current.source}（{current.year} 年），{len(current)} 个代码")
    if args.keep_from or args.keep_all:
        what = "全部旧代码" if args.keep_all else f"{len(set(keep))} 个仍被引用的代码"
        print(f"保留依据：{what}")
    for line in update.report(limit=args.limit):
        print(line)
    if args.out:
        try:
            out = update.registry.write(args.out)
        except OSError as e:
            raise InvalidArgument.field(
                "out",
                f"无法写出 {args.out}（{'所在目录不存在' if isinstance(e, FileNotFoundError) else _os_reason(e)}）",
                reason="INVALID_ARGUMENT",
            ) from None
        print(
            f"已写出 {out}（{len(update.registry)} 个代码，其中已停用 {len(update.registry.retired)} 个）；"
            f"设置 {ENV_VAR}={out.absolute()} 并重启各服务后生效"
        )
    else:
        print("（只做了校验和比较，未写出文件；加 --out 文件名 写出合并后的区划文件）")
    return 0


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``jsx regions show|villages|children|find|info|load``."""
    p = sub.add_parser("regions", help="行政区划：查询代码和名称，载入新年度的区划代码")
    rsub = p.add_subparsers(dest="regions_command", metavar="ACTION", required=True)
    show = rsub.add_parser("show", help="查看一个区划代码：名称、全称、级别、上级、下辖数量")
    show.add_argument("code", help="区划代码，6、9 或 12 位，如 431281")
    show.add_argument("--json", action="store_true", help="以 JSON 输出")
    show.set_defaults(func=_cmd_show)
    for name, helptext, func in (
        ("villages", "列出一个县或乡镇下的全部村（社区）", _cmd_villages),
        ("children", "列出一个区划的直接下级", _cmd_children),
    ):
        lp = rsub.add_parser(name, help=helptext)
        lp.add_argument("code", help="区划代码，如 431222（沅陵县）")
        lp.add_argument("--include-retired", action="store_true", help="同时列出已停用但仍保留的代码")
        lp.add_argument("--json", action="store_true", help="以 JSON 输出")
        lp.set_defaults(func=func)
    find = rsub.add_parser("find", help="按名称查找区划代码")
    find.add_argument("name", help="名称或其中一部分，如 玉皇阁")
    find.add_argument("--within", help="只在这个区划内查找，如 431281")
    find.add_argument("--include-retired", action="store_true", help="同时查找已停用但仍保留的代码")
    find.add_argument("--json", action="store_true", help="以 JSON 输出")
    find.set_defaults(func=_cmd_find)
    info = rsub.add_parser("info", help="当前使用的区划：来源、年份、数量、载入用时")
    info.set_defaults(func=_cmd_info)
    load = rsub.add_parser(
        "load",
        help="校验新年度的区划文件，报告与当前区划相比的变化（新增、更名、停用），可写出合并后的文件",
    )
    load.add_argument("file", help="新年度区划 CSV（列 code,name,parent,level），可为 .gz")
    load.add_argument("--year", type=int, help="这份区划代码的年份（文件名里有年份时可省略）")
    load.add_argument(
        "--keep-from",
        action="append",
        metavar="FILE",
        help="仍被引用的区划代码清单（每行一个，可为 CSV 的第一列；- 为标准输入），各服务各一份，可重复",
    )
    load.add_argument("--keep-all", action="store_true", help="保留当前区划的全部代码（消失的标为已停用）")
    load.add_argument("--out", help="写出合并后的区划文件（以 .gz 结尾则压缩），供 JSX_REGIONS_FILE 使用")
    load.add_argument("--limit", type=int, default=20, help="每类变化最多列出几个（默认 20，0 为全部）")
    load.set_defaults(func=_cmd_load)
