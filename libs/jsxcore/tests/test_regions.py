"""The region registry (jsxcore.regions): the shipped 2023 Hunan list, lookups, labels,
a newer year's list keeping referenced codes, configuration and the ``jsx regions`` commands."""

from __future__ import annotations

import gzip
import hashlib
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import pytest

from jsxcore import cli, regions
from jsxcore.config import ServiceConfig
from jsxcore.errors import ConfigError, InvalidArgument
from jsxcore.regions import RegionRegistry, read_codes, registry, using
from jsxcore.values import RegionCode, RegionLevel

HEADER = ("code", "name", "parent", "level")
# 洪江市黔城镇 and two of its villages; 安江镇 (431281102) is dropped whole in the "2024" list.
QIANCHENG = "431281101000"
YUHUANGGE = "431281101002"  # 玉皇阁社区
XIAOJIANG = "431281101200"  # 小江村
ANJIANG = "431281102000"


@pytest.fixture
def fresh_process_registry() -> Iterator[None]:
    """Forget the installed registry for one test (as in a new process), then restore it."""
    before = regions._current
    regions._current = None
    try:
        yield
    finally:
        regions._current = before


@pytest.fixture(scope="module")
def reg() -> RegionRegistry:
    return RegionRegistry.builtin()


@pytest.fixture(scope="module")
def hongjiang(reg: RegionRegistry) -> RegionRegistry:
    """The 2023 list cut down to 洪江市 (and the province and city above it): merges on it
    exercise the same code paths as on the whole province, in a fraction of the time."""
    rows = [r for r in _rows(reg) if r[0] in ("430000000000", "431200000000") or r[0].startswith("431281")]
    return RegionRegistry.from_rows([HEADER, *rows], year=2023, source="洪江市 2023")


def _rows(reg: RegionRegistry) -> list[list[str]]:
    return [[r.code.code, r.name, r.parent.code if r.parent else "", r.level.label] for r in reg]


# ---------------------------------------------------------------- the shipped list


def test_builtin_file_is_the_published_list_byte_for_byte() -> None:
    data = resources.files("jsxcore").joinpath("data", "regions", "hunan-2023.csv.gz").read_bytes()
    raw = gzip.decompress(data)
    assert len(raw) == 1_442_293
    assert hashlib.sha256(raw).hexdigest() == "6edb99afb816e95ff70d4fd03ead4d5db1638dd4b3d19db8c3b142bad5235bf4"
    shared = Path(__file__).parents[3] / ".." / "shared" / "data" / "regions" / "hunan-2023.csv"
    if shared.exists():  # beside the checkout on the project's machines
        assert shared.read_bytes() == raw


def test_builtin_counts_as_the_readme_gives(
    reg: RegionRegistry, record_property: Callable[[str, object], None]
) -> None:
    assert len(reg) == 31_691
    assert reg.year == 2023 and "国家统计局" in reg.source
    assert reg.counts() == {
        RegionLevel.PROVINCE: 1,
        RegionLevel.CITY: 14,
        RegionLevel.COUNTY: 134,
        RegionLevel.TOWNSHIP: 2_008,
        RegionLevel.VILLAGE: 29_534,
    }
    assert len(reg.villages("431222")) == 404  # 沅陵县
    assert len(reg.villages("431224")) == 412  # 溆浦县
    assert len(reg.villages("431281")) == 218  # 洪江市
    assert reg.count("431281", RegionLevel.VILLAGE) == 218
    assert reg.count("431281", RegionLevel.TOWNSHIP) == len(reg.children("431281")) == 20
    assert [r.name for r in reg.children("430000")][:2] == ["长沙市", "株洲市"] and len(reg.children("430000")) == 14
    assert not reg.retired
    # load time is reported, not asserted (shared machines): see `jsx regions info`
    record_property("region_registry_load_ms", round(reg.load_seconds * 1000, 1))
    print(f"\nregion registry: {len(reg)} codes loaded in {reg.load_seconds * 1000:.1f} ms")


def test_builtin_passes_the_full_file_checks(reg: RegionRegistry, tmp_path: Path) -> None:
    # The shipped list is read without re-validation; prove once that it would pass
    # (levels and parents agree with the codes, every parent present, no duplicates).
    f = tmp_path / "hunan-2023.csv.gz"
    f.write_bytes(resources.files("jsxcore").joinpath("data", "regions", "hunan-2023.csv.gz").read_bytes())
    checked = RegionRegistry.read(f)
    assert checked.year == 2023 and len(checked) == len(reg)
    assert checked._names == reg._names  # every code and name (compared without building 31k Regions)
    print(f"\nfull validation of the 2023 list: {checked.load_seconds * 1000:.1f} ms")


def test_load_time_of_a_fresh_registry_is_reported() -> None:
    started = time.perf_counter()
    names = regions._trusted_names(
        gzip.decompress(resources.files("jsxcore").joinpath(*regions._BUILTIN_RESOURCE).read_bytes()).decode()
    )
    again = RegionRegistry(names, year=2023, source="again")
    elapsed = time.perf_counter() - started
    assert len(again) == 31_691
    print(f"\nregion registry rebuilt in {elapsed * 1000:.1f} ms")


# ---------------------------------------------------------------- lookups


def test_names_paths_and_labels(reg: RegionRegistry) -> None:
    v = reg.require(YUHUANGGE)
    assert v.name == "玉皇阁社区" and reg.name(YUHUANGGE) == "玉皇阁社区"
    assert v.full_name == "湖南省怀化市洪江市黔城镇玉皇阁社区" == reg.full_name(YUHUANGGE)
    assert v.path == ("湖南省", "怀化市", "洪江市", "黔城镇", "玉皇阁社区")
    assert v.level is RegionLevel.VILLAGE and v.parent == RegionCode(QIANCHENG)
    assert not v.retired and v.last_listed == 2023
    assert v.label == "洪江市黔城镇玉皇阁社区（431281101002）" == reg.label(YUHUANGGE) == str(v)
    assert reg.label(YUHUANGGE, full=True) == "湖南省怀化市洪江市黔城镇玉皇阁社区（431281101002）"
    assert reg.label("431281") == "洪江市（431281）" == reg.label("431281") == reg.label(RegionCode.parse("431281"))
    assert reg.label("431281000000") == "洪江市（431281）"
    assert reg.label("431281101") == "洪江市黔城镇（431281101）"
    assert reg.label("431200") == "怀化市（431200）" and reg.label("430000") == "湖南省（430000）"
    assert [r.name for r in reg.ancestors(YUHUANGGE)] == ["湖南省", "怀化市", "洪江市", "黔城镇", "玉皇阁社区"]
    # published names keep the village committee; labels read as a clerk says them
    yl = reg["431222102204"]
    assert yl.name == "仰溪铺村村委会" and yl.short_name == "仰溪铺村"
    assert yl.full_name == "湖南省怀化市沅陵县麻溪铺镇仰溪铺村村委会"
    assert yl.label == "沅陵县麻溪铺镇仰溪铺村（431222102204）"
    assert reg["430105013011"].short_name == "洪山桥社区"  # …社区居民委员会
    assert reg.label("430223400000") == "攸县工业园（430223400）"  # published as 攸县攸县工业园
    parent = reg.parent(YUHUANGGE)
    assert parent is not None and parent.name == "黔城镇"
    assert reg.parent("430000") is None


def test_unknown_and_malformed_codes_never_break_a_label(reg: RegionRegistry) -> None:
    assert reg.label("431281999999") == "431281999999（代码未收录）"
    assert reg.label("43x") == "43x（代码无效）"
    assert reg.get("431281999999") is None and reg.name("nonsense") is None and reg.full_name("431281999999") is None
    assert "431281999999" not in reg and "431281" in reg and 431281 not in reg
    with pytest.raises(KeyError):
        reg["431281999999"]


def test_six_and_nine_digit_codes_are_padded(reg: RegionRegistry) -> None:
    county = reg.require("431281")
    assert county.code == RegionCode("431281000000") == reg.require(RegionCode.parse("431281000000")).code
    assert reg.require("４３１２８１").code == county.code  # full-width digits from Excel
    assert reg.require(" 431281101 ").name == "黔城镇"
    assert reg["431222"].name == "沅陵县"
    assert len(reg.villages(RegionCode.parse("431222"))) == 404


def test_unknown_code_is_refused_naming_the_field(reg: RegionRegistry) -> None:
    with pytest.raises(InvalidArgument) as e:
        reg.require("431281999999", field="household.village")
    err = e.value
    assert err.reason == "UNKNOWN_REGION_CODE"
    assert err.message.startswith("行政区划代码 431281999999 不存在（2023 年统计用区划代码）")
    assert "洪江市（431281）下没有这个代码" in err.message
    assert [v.field for v in err.violations] == ["household.village"]
    assert err.metadata == {"region_code": "431281999999", "region_list_year": "2023"}
    # a code outside every listed province
    with pytest.raises(InvalidArgument, match="不在本系统收录的区划范围内（湖南省）"):
        reg.require("110101", field="region")


def test_malformed_and_wrong_level_codes(reg: RegionRegistry) -> None:
    with pytest.raises(InvalidArgument) as e:
        reg.require("4312", field="site.region")
    assert e.value.reason == "INVALID_REGION_CODE" and e.value.violations[0].field == "site.region"
    with pytest.raises(InvalidArgument) as e:
        reg.require("431281", field="household.village", level=RegionLevel.VILLAGE)
    assert e.value.reason == "WRONG_REGION_LEVEL"
    assert e.value.message == "洪江市（431281）是县级区划，这里应填村级（村、社区）代码"
    assert reg.require(QIANCHENG, level=(RegionLevel.TOWNSHIP, RegionLevel.VILLAGE)).name == "黔城镇"


def test_villages_children_descendants_and_find(reg: RegionRegistry) -> None:
    hj = reg.villages("431281")
    assert all(v.level is RegionLevel.VILLAGE and v.code.code.startswith("431281") for v in hj)
    assert [v.code for v in hj] == sorted(v.code for v in hj)
    town = reg.villages(QIANCHENG)
    assert town and all(v.parent == RegionCode(QIANCHENG) for v in town)
    assert [v.code.code for v in reg.villages(YUHUANGGE)] == [YUHUANGGE]
    assert reg.children(YUHUANGGE) == [] and reg.villages("431281999999") == []
    assert len(reg.descendants("431281")) == 20 + 218
    assert len(reg.descendants("431200", level=RegionLevel.COUNTY)) == len(reg.children("431200"))
    found = reg.find("玉皇阁")
    assert [r.code.code for r in found] == ["430281133235", YUHUANGGE]
    assert [r.code.code for r in reg.find("玉皇阁", within="431281")] == [YUHUANGGE]
    exact = reg.find("黔城镇")
    assert exact[0].name == "黔城镇"
    assert reg.find("  ") == [] and reg.find("x", within="999999") == []


# ---------------------------------------------------------------- a newer year's list


def _newer_2024(reg: RegionRegistry) -> RegionRegistry:
    """The 2023 list with 小江村 and all of 安江镇 gone, 玉皇阁社区 renamed, 小江村 re-coded."""
    rows = [r for r in _rows(reg) if r[0] != XIAOJIANG and not r[0].startswith(ANJIANG[:9])]
    for r in rows:
        if r[0] == YUHUANGGE:
            r[1] = "玉皇阁新社区"
    rows += [["431281101298", "小江村", QIANCHENG, "村"], ["431281101299", "新建村", QIANCHENG, "村"]]
    return RegionRegistry.from_rows([HEADER, *rows], year=2024, source="2024 年统计用区划代码（测试）")


def test_a_newer_list_keeps_referenced_codes_as_retired(reg: RegionRegistry) -> None:
    newer = _newer_2024(reg)
    anjiang_villages = [v.code.code for v in reg.villages(ANJIANG)]
    referenced = [XIAOJIANG, anjiang_villages[0], YUHUANGGE, "431281999999"]
    update = reg.merged(newer, keep=referenced)
    merged = update.registry
    assert merged.year == 2024
    # still valid, marked retired with the year last listed
    old = merged.require(XIAOJIANG, field="household.village")
    assert old.retired and old.last_listed == 2023 and old.name == "小江村"
    assert old.label == "洪江市黔城镇小江村（431281101200，2023 年后停用）"
    # its township dropped too: kept (retired) so the path still reads
    kept = merged.require(anjiang_villages[0])
    assert kept.retired and kept.full_name.startswith("湖南省怀化市洪江市安江镇")
    assert merged.require(ANJIANG).retired
    # new records may insist on current codes
    with pytest.raises(InvalidArgument) as e:
        merged.require(XIAOJIANG, field="household.village", allow_retired=False)
    assert e.value.reason == "RETIRED_REGION_CODE" and "最后见于 2023 年" in e.value.message
    # unreferenced codes that disappeared are gone
    assert anjiang_villages[1] not in merged
    # what "every village" means now: current ones, unless asked
    current = merged.villages("431281")
    assert XIAOJIANG not in {v.code.code for v in current}
    assert XIAOJIANG in {v.code.code for v in merged.villages("431281", include_retired=True)}
    assert len(current) == 218 - 1 - len(anjiang_villages) + 2
    assert merged.name(YUHUANGGE) == "玉皇阁新社区"
    # the changes
    assert [r.code.code for r in update.added] == ["431281101298", "431281101299"]
    assert [(o.name, n.name) for o, n in update.renamed] == [("玉皇阁社区", "玉皇阁新社区")]
    retired = {r.region.code.code: r for r in update.retired}
    assert set(retired) == {XIAOJIANG, ANJIANG, anjiang_villages[0]}
    assert [s.code.code for s in retired[XIAOJIANG].successors] == ["431281101298"]
    assert {r.code.code for r in update.dropped} == set(anjiang_villages[1:])
    assert update.unknown == ("431281999999",)
    text = "\n".join(update.report())
    assert "新增：2 个" in text and "更名：1 个" in text and "玉皇阁社区 → 湖南省怀化市洪江市黔城镇玉皇阁新社区" in text
    assert "同一上级下有同名的新代码 431281101298" in text
    assert "停用但仍被引用（保留为已停用代码，原记录仍然有效）：3 个" in text
    assert "431281999999" in text and "这些记录的区划代码有误" in text


def test_a_merged_file_round_trips_and_the_next_year_keeps_what_is_retired(
    hongjiang: RegionRegistry, tmp_path: Path
) -> None:
    reg = hongjiang
    merged = reg.merged(_newer_2024(reg), keep=[XIAOJIANG]).registry
    out = merged.write(tmp_path / "regions-2024.csv.gz")
    back = RegionRegistry.read(out)
    assert back.year == 2024 and len(back) == len(merged)
    assert [(r.code, r.name, r.retired, r.last_listed) for r in back] == [
        (r.code, r.name, r.retired, r.last_listed) for r in merged
    ]
    # 2025: same list as 2024; 小江村 still referenced → still retired (2023), not re-dated
    next_rows = [row for row in _rows(back) if not back[row[0]].retired]
    update = back.merged(RegionRegistry.from_rows([HEADER, *next_rows], year=2025), keep=[XIAOJIANG])
    assert [r.code.code for r in update.still_retired] == [XIAOJIANG] and not update.retired
    assert update.registry[XIAOJIANG].last_listed == 2023
    # 2025 lists 小江村 again: reinstated, current
    again = back.merged(
        RegionRegistry.from_rows([HEADER, *next_rows, [XIAOJIANG, "小江村", QIANCHENG, "村"]], year=2025),
        keep=[XIAOJIANG],
    )
    assert [r.code.code for r in again.reinstated] == [XIAOJIANG]
    assert not again.registry[XIAOJIANG].retired
    # keep_all: nothing is dropped
    assert not reg.merged(_newer_2024(reg), keep_all=True).dropped


def test_an_older_list_or_a_bad_keep_code_is_refused(hongjiang: RegionRegistry) -> None:
    reg = hongjiang
    older = RegionRegistry.from_rows([HEADER, ["430000000000", "湖南省", "", "省"]], year=2022)
    with pytest.raises(InvalidArgument) as e:
        reg.merged(older)
    assert e.value.reason == "REGION_LIST_OLDER"
    with pytest.raises(InvalidArgument) as e:
        reg.merged(_newer_2024(reg), keep=["43x"])
    assert e.value.violations[0].field == "keep[0]"


def test_a_bad_region_file_is_refused_with_every_problem_by_line(tmp_path: Path) -> None:
    f = tmp_path / "regions-2024.csv"
    f.write_text(
        "code,name,parent,level\n"
        "430000000000,湖南省,,省\n"
        "431200000000,怀化市,430000000000,县\n"  # level wrong
        "431281000000,洪江市,431200000000,县\n"
        "431281101000,黔城镇,431200000000,乡\n"  # parent wrong
        "431281101000,黔城镇,431281000000,乡\n"  # duplicate
        "431281101002,,431281101000,村\n"  # no name
        "43128110,某村,431281101000,村\n"  # bad code
        "431222101001,某村,431222101000,村\n",  # parent missing
        encoding="utf-8",
    )
    with pytest.raises(InvalidArgument) as e:
        RegionRegistry.read(f)
    err = e.value
    assert err.reason == "INVALID_REGION_FILE" and "有 6 处错误" in err.message
    fields = [v.field for v in err.violations]
    assert fields == [
        "rows[3].level",
        "rows[5].parent",
        "rows[6].code",
        "rows[7].name",
        "rows[8].code",
        "rows[9].parent",
    ]
    assert "第 3 行：级别“县”与代码 431200000000 不符（按代码应为“市”）" in [v.description for v in err.violations]


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("regions-2024.csv", "名字,上级\n", "缺少 code"),
        ("regions-2024.csv", "code,name,parent,level\n", "没有数据行"),
        ("regions.csv", "code,name,parent,level\n430000000000,湖南省,,省\n", "无法确定区划文件 regions.csv 的年份"),
    ],
)
def test_region_file_shape_errors(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    f = tmp_path / name
    f.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidArgument, match=fragment):
        RegionRegistry.read(f)


def test_gbk_file_gets_a_save_as_hint_and_chinese_headers_are_read(tmp_path: Path) -> None:
    f = tmp_path / "regions-2024.csv"
    f.write_bytes("code,name,parent,level\n430000000000,湖南省,,省\n".encode("gbk"))
    with pytest.raises(InvalidArgument, match="CSV UTF-8"):
        RegionRegistry.read(f)
    f.write_text("\ufeff代码,名称,上级代码,级别\n430000000000,湖南省,,省\n430100000000,长沙市,,\n", encoding="utf-8")
    reg = RegionRegistry.read(f)
    assert reg.year == 2024 and reg.full_name("430100") == "湖南省长沙市"


def test_read_codes_takes_one_code_per_line() -> None:
    lines = ["region_code\n", "# members, 2024-01-05\n", "431281101200\n", "431281,洪江市\n", "\n"]
    assert read_codes(lines) == ["431281101200", "431281000000"]
    with pytest.raises(InvalidArgument) as e:
        read_codes(["431281\n", "bad\n"], source="funds.txt")
    assert e.value.violations[0].field == "funds.txt:2"


# ---------------------------------------------------------------- configuration


def test_registry_is_loaded_once_and_can_be_replaced_for_a_block(reg: RegionRegistry) -> None:
    assert registry() is registry()
    other = RegionRegistry.from_rows([HEADER, ["430000000000", "湖南省", "", "省"]], year=2024)
    with using(other):
        assert registry() is other
        assert regions.configure() is other  # a runtime without REGIONS_FILE keeps what is installed
    assert registry() is not other


def test_env_var_names_the_registry_file(
    hongjiang: RegionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_process_registry: None
) -> None:
    reg = hongjiang
    f = reg.merged(_newer_2024(reg), keep=[XIAOJIANG]).registry.write(tmp_path / "regions.csv")
    monkeypatch.setenv("JSX_REGIONS_FILE", str(f))
    loaded = registry()
    assert loaded.year == 2024 and loaded.require(XIAOJIANG).retired
    assert registry() is loaded


def test_service_config_checks_the_regions_file(tmp_path: Path, hongjiang: RegionRegistry) -> None:
    reg = hongjiang
    base = {"JSX_DEV": "1", "JSX_DATA_DIR": str(tmp_path)}
    assert ServiceConfig.from_env("funds", base).regions_file is None
    with pytest.raises(ConfigError) as e:
        ServiceConfig.from_env("funds", {**base, "JSX_FUNDS_REGIONS_FILE": str(tmp_path / "missing.csv")})
    assert "JSX_FUNDS_REGIONS_FILE=" in str(e.value) and "区划文件不存在" in str(e.value)
    bad = tmp_path / "bad-2024.csv"
    bad.write_text("code,name,parent,level\n431281000000,洪江市,431200000000,县\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        ServiceConfig.from_env("funds", {**base, "JSX_REGIONS_FILE": str(bad)})
    assert "JSX_REGIONS_FILE=" in str(e.value) and "上级 431200000000 不在文件中" in str(e.value)
    good = reg.merged(_newer_2024(reg), keep=[XIAOJIANG]).registry.write(tmp_path / "regions-2024.csv")
    cfg = ServiceConfig.from_env("funds", {**base, "JSX_REGIONS_FILE": str(good)})
    assert cfg.regions_file == good.absolute()
    # what the runtime does at start (the file was read once, by the config check)
    before = regions._current
    try:
        installed = regions.configure(cfg.regions_file)
        assert installed.year == 2024 and installed is regions.load_file(good)
    finally:
        regions._current = before


# ---------------------------------------------------------------- jsx regions …


@pytest.fixture(autouse=True)
def _core_commands_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # `jsx` as installed, minus the services' sub-commands (whose imports take seconds);
    # test_cli.py covers that every service command loads.
    monkeypatch.setattr(cli, "entry_points", lambda **_: [])


def _jsx(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = cli.main(["regions", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_show_villages_children_find_info(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _jsx(capsys, "show", "431281")
    assert rc == 0
    assert out.splitlines()[:6] == [
        "洪江市（431281）",
        "  代码：431281000000",
        "  级别：县级",
        "  全称：湖南省怀化市洪江市",
        "  上级：怀化市（431200）",
        "  下辖：20 个乡级（乡镇、街道），218 个村级（村、社区）",
    ]
    rc, out, _ = _jsx(capsys, "villages", "431222")
    lines = out.splitlines()
    assert rc == 0 and lines[0].startswith("沅陵县（431222）共有 404 个村（社区），据国家统计局 2023 年统计用区划代码")
    assert len(lines) == 405 and all(line[:6] == "431222" for line in lines[1:])
    rc, out, _ = _jsx(capsys, "children", "431281101")
    assert rc == 0 and "431281101002  洪江市黔城镇玉皇阁社区" in out.splitlines()
    rc, out, _ = _jsx(capsys, "find", "玉皇阁", "--within", "431281")
    assert out.splitlines() == [
        "洪江市（431281）内名称含“玉皇阁”的区划共 1 个：",
        "431281101002  洪江市黔城镇玉皇阁社区",
    ]
    rc, out, _ = _jsx(capsys, "info")
    assert rc == 0 and "共 31691 个代码" in out and "载入用时" in out
    rc, out, _ = _jsx(capsys, "show", "431281101002", "--json")
    assert '"full_name": "湖南省怀化市洪江市黔城镇玉皇阁社区"' in out


def test_cli_unknown_code_is_a_readable_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _jsx(capsys, "show", "431281999999")
    assert rc == 1 and not out
    assert "行政区划代码 431281999999 不存在（2023 年统计用区划代码）" in err and "Traceback" not in err


def test_cli_load_reports_changes_and_writes_the_merged_file(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    reg: RegionRegistry,
    monkeypatch: pytest.MonkeyPatch,
    fresh_process_registry: None,
) -> None:
    monkeypatch.delenv("JSX_REGIONS_FILE", raising=False)
    newer = tmp_path / "hunan-2024.csv"
    rows = [HEADER, *[r for r in _rows(reg) if r[0] != XIAOJIANG], ["431281101298", "小江村", QIANCHENG, "村"]]
    newer.write_text("\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    refs = tmp_path / "members-codes.txt"
    refs.write_text(f"region_code\n{XIAOJIANG}\n431281999999\n", encoding="utf-8")
    # a dry run: report only
    rc, out, _ = _jsx(capsys, "load", str(newer), "--keep-from", str(refs))
    assert rc == 0
    assert "新区划文件" in out and "2024 年，31691 个代码，校验通过" in out
    assert "新增：1 个" in out and "431281101298  湖南省怀化市洪江市黔城镇小江村" in out
    assert "更名：无" in out
    assert (
        "431281101200  湖南省怀化市洪江市黔城镇小江村（最后见于 2023 年）；同一上级下有同名的新代码 431281101298" in out
    )
    assert "被引用但新旧区划中都没有的代码（这些记录的区划代码有误，请核对）：1 个" in out
    assert "未写出文件" in out
    # --out needs to know what is referenced
    rc, _, err = _jsx(capsys, "load", str(newer), "--out", str(tmp_path / "x.csv"))
    assert rc == 1 and "--keep-from" in err
    # written, then used through JSX_REGIONS_FILE
    merged = tmp_path / "regions-2024.csv.gz"
    rc, out, _ = _jsx(capsys, "load", str(newer), "--keep-from", str(refs), "--out", str(merged))
    assert rc == 0 and f"JSX_REGIONS_FILE={merged}" in out and "其中已停用 1 个" in out
    monkeypatch.setenv("JSX_REGIONS_FILE", str(merged))
    regions._current = None
    rc, out, _ = _jsx(capsys, "show", XIAOJIANG)
    assert rc == 0 and "状态：已停用（最后见于 2023 年统计用区划代码），因仍有记录引用而保留" in out
    rc, out, _ = _jsx(capsys, "villages", QIANCHENG, "--include-retired")
    assert "431281101200  洪江市黔城镇小江村（已停用）" in out


def test_cli_load_refuses_a_bad_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "hunan-2024.csv"
    f.write_text("code,name,parent,level\n431281000000,洪江市,431200000000,县\n", encoding="utf-8")
    rc, _, err = _jsx(capsys, "load", str(f))
    assert rc == 1 and "INVALID_REGION_FILE" in err and "rows[2].parent" in err
