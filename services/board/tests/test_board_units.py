"""The board's pure parts: configuration, rate limits, references and form tokens,
client addresses, formatting, the public_board role. The pages themselves are
tested in a real browser against a real stack: tests/test_board_browser.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.requests import Request

from jsx.funds.v1 import funds_pb2
from jsx_board.app import Board, client_address, days_left_words, period_words, yuan
from jsx_board.config import BoardConfig, Rate, token_region
from jsx_board.gateway import Gateway, Page, PublicItem, basis_of, parse_application, safe_name
from jsx_board.limits import ContactKeys, RateLimiter, address_key, retry_after_s
from jsx_board.refs import FORM_TTL_S, References
from jsx_board.regions import children, children_word, region_label, short_label, trail
from jsxcore.auth import PAYEES_READ, PII_READ, ROLE_PERMISSIONS, issue_token, roles_grant
from jsxcore.errors import ConfigError
from jsxcore.values import RegionCode

SECRET = "s" * 40


def board_token(region: str = "431281") -> str:
    return issue_token(SECRET, "board", ["public_board"], region)


# ---------------------------------------------------------------- the role


def test_public_board_role_is_narrow() -> None:
    role = ("public_board",)
    for granted in (
        "funds.publicity.read",
        "funds.objections.create",
        "funds.applications.read",
        "funds.programs.read",
        "funds.payments.read",
        "members.persons.read",
    ):
        assert roles_grant(role, granted), granted
    for denied in (
        PII_READ,
        PAYEES_READ,
        "funds.applications.decide",
        "funds.applications.write",
        "funds.objections.resolve",
        "funds.payments.write",
        "funds.ledger.read",
        "funds.ledger.write",
        "members.households.read",
        "members.persons.write",
        "events.visits.read",
        "audit.log.read",
    ):
        assert not roles_grant(role, denied), denied
    assert "public_board" in ROLE_PERMISSIONS


# ---------------------------------------------------------------- configuration


def env(**extra: str) -> dict[str, str]:
    return {
        "JSX_BOARD_FUNDS_ADDR": "127.0.0.1:50052",
        "JSX_BOARD_TOKEN": board_token(),
        "JSX_BOARD_SECRET": "k" * 32,
        **extra,
    }


def test_config_defaults_and_fallbacks() -> None:
    cfg = BoardConfig.from_env(env(JSX_MEMBERS_ADDR="127.0.0.1:50051"))
    assert cfg.funds_addr == "127.0.0.1:50052" and cfg.members_addr == "127.0.0.1:50051"
    assert cfg.region == RegionCode.parse("431281")  # from the token
    assert (cfg.host, cfg.port) == ("127.0.0.1", 8080)
    assert cfg.rate_objections == Rate(5, 3600.0) and cfg.rate_contact == Rate(3, 3600.0)
    assert cfg.rate_pages == Rate(120, 60.0)
    assert "k" * 32 not in repr(cfg) and cfg.token not in repr(cfg)
    # the stack-wide JSX_FUNDS_ADDR serves when the board's own is unset
    cfg = BoardConfig.from_env({**env(), "JSX_BOARD_FUNDS_ADDR": "", "JSX_FUNDS_ADDR": "funds:50051"})
    assert cfg.funds_addr == "funds:50051"


def test_config_token_file_rates_proxies(tmp_path: Path) -> None:
    tok = tmp_path / "token"
    tok.write_text(board_token("431200") + "\n")
    cfg = BoardConfig.from_env(
        {
            **env(),
            "JSX_BOARD_TOKEN": "",
            "JSX_BOARD_TOKEN_FILE": str(tok),
            "JSX_BOARD_REGION": "431281103",
            "JSX_BOARD_RATE_OBJECTIONS": "2/30m",
            "JSX_BOARD_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
            "JSX_BOARD_BIND": "[::]:0",
        }
    )
    assert cfg.region.code == "431281103000" and cfg.rate_objections == Rate(2, 1800.0)
    assert cfg.trusted_proxies == ("10.0.0.0/8", "127.0.0.1/32")
    assert (cfg.host, cfg.port) == ("::", 0)


def test_config_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as e:
        BoardConfig.from_env(
            {
                "JSX_BOARD_SECRET": "short",
                "JSX_BOARD_RATE_PAGES": "lots",
                "JSX_BOARD_BIND": "nowhere",
                "JSX_BOARD_TRUSTED_PROXIES": "proxy.example",
            }
        )
    text = str(e.value)
    for needle in (
        "JSX_BOARD_FUNDS_ADDR",
        "JSX_BOARD_TOKEN",
        "JSX_BOARD_SECRET 至少需要32个字符",
        "JSX_BOARD_RATE_PAGES",
        "JSX_BOARD_BIND",
        "JSX_BOARD_TRUSTED_PROXIES",
    ):
        assert needle in text, needle
    # a region outside the token's scope is refused
    with pytest.raises(ConfigError) as e:
        BoardConfig.from_env(env(JSX_BOARD_REGION="431222"))
    assert "不在令牌的辖区" in str(e.value)


def test_dev_secret_kept_under_data_dir(tmp_path: Path) -> None:
    base = {k: v for k, v in env().items() if k != "JSX_BOARD_SECRET"}
    with pytest.raises(ConfigError):
        BoardConfig.from_env(base)
    one = BoardConfig.from_env({**base, "JSX_DEV": "1", "JSX_DATA_DIR": str(tmp_path)})
    two = BoardConfig.from_env({**base, "JSX_DEV": "1", "JSX_DATA_DIR": str(tmp_path)})
    assert one.secret == two.secret and len(one.secret) >= 32
    assert (tmp_path / "board.key").stat().st_mode & 0o077 == 0


def test_rate_parse() -> None:
    assert Rate.parse("5/h") == Rate(5, 3600.0) and Rate.parse(" 120 / m ") == Rate(120, 60.0)
    assert Rate.parse("3/12h") == Rate(3, 43200.0) and str(Rate.parse("3/12h")) == "3 次/12 小时"
    for bad in ("0/h", "5", "5/w", "-1/m", "x/h"):
        with pytest.raises(ValueError):
            Rate.parse(bad)


def test_token_region_unverified() -> None:
    assert token_region(board_token("431222")) == "431222000000"
    assert token_region("not-a-jwt") is None and token_region("a.b.c") is None


# ---------------------------------------------------------------- limits


def test_token_bucket_refills_evenly_and_is_bounded() -> None:
    now = [1000.0]
    lim = RateLimiter(Rate(3, 3600.0), clock=lambda: now[0], max_keys=100)
    assert [lim.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = lim.take("a")
    assert wait == pytest.approx(1200.0) and retry_after_s(wait) == 1200
    assert lim.take("b") == 0.0  # another key has its own bucket
    now[0] += 1200
    assert lim.take("a") == 0.0 and lim.take("a") > 0
    now[0] += 10 * 3600  # a long pause refills only up to the burst
    assert [lim.take("a") for _ in range(4)][-1] > 0
    for i in range(500):
        lim.take(f"k{i}")
    assert len(lim) == 100  # least recently used keys dropped


def test_address_keys() -> None:
    assert address_key("192.0.2.7") == "addr:192.0.2.7"
    assert address_key("2001:db8:1:2:3:4:5:6") == address_key("2001:db8:1:2:ffff::1") == "addr:2001:db8:1:2::/64"
    assert address_key("::ffff:192.0.2.7") == "addr:192.0.2.7"
    assert address_key("testclient") == "addr:testclient"


def test_contact_keys_normalise_and_reveal_nothing() -> None:
    keys = ContactKeys(b"x" * 32)
    one = keys.key("13907315555")
    assert one == keys.key("139 0731 5555") == keys.key("+86 139-0731-5555") == keys.key("１３９０７３１５５５５")
    assert "13907315555" not in one and one != keys.key("13907315556")
    assert one != ContactKeys(b"y" * 32).key("13907315555")
    assert "x" not in repr(keys)


def _request(peer: str, xff: str = "") -> Request:
    """A Starlette request from ``peer``, with an ``X-Forwarded-For`` header when given."""
    headers = [(b"x-forwarded-for", xff.encode())] if xff else []
    return Request({"type": "http", "method": "GET", "path": "/", "client": (peer, 50000), "headers": headers})


def test_client_address_believes_only_trusted_proxies() -> None:
    trusted = ("10.0.0.0/8",)
    assert client_address(_request("203.0.113.5", "198.51.100.1"), trusted) == "203.0.113.5"  # not a proxy: ignored
    assert client_address(_request("10.1.1.1", "198.51.100.1"), trusted) == "198.51.100.1"
    # a client's own forged hop on the left does not win: the right-most untrusted one does
    assert client_address(_request("10.1.1.1", "6.6.6.6, 198.51.100.1, 10.2.2.2"), trusted) == "198.51.100.1"
    assert client_address(_request("10.1.1.1"), trusted) == "10.1.1.1"
    assert client_address(_request("10.1.1.1", "198.51.100.1"), ()) == "10.1.1.1"


# ---------------------------------------------------------------- references and form tokens


def test_references_are_signed() -> None:
    refs = References(b"r" * 32)
    ref = refs.reference("applications/12/objections/3")
    assert ref.startswith("12-3-") and len(ref) == len("12-3-") + 10
    assert refs.objection(ref) == "applications/12/objections/3"
    assert refs.objection(" " + ref.lower() + " ") == "applications/12/objections/3"  # typed by hand
    assert refs.objection("１２-３-" + ref[5:]) == "applications/12/objections/3"  # full-width digits
    assert refs.objection("12-4-" + ref[5:]) is None  # another objection, same MAC
    assert refs.objection(ref[:-1] + ("A" if ref[-1] != "A" else "B")) is None
    assert References(b"q" * 32).objection(ref) is None  # another board's secret
    for bad in ("", "x", "12-3", "12-3-!!!!!!!!!!"):
        assert refs.objection(bad) is None
    with pytest.raises(ValueError):
        refs.reference("applications/12")


def test_form_tokens() -> None:
    refs = References(b"r" * 32)
    tok = refs.form_token("applications/5", now=1_000_000)
    rid = refs.request_id(tok, "applications/5", now=1_000_010)
    assert rid is not None and len(rid) == 36
    assert refs.request_id(tok, "applications/5", now=1_000_010) == rid  # the same form: the same request id
    assert refs.request_id(tok, "applications/6", now=1_000_010) is None  # bound to its item
    assert refs.request_id(tok, "applications/5", now=1_000_000 + FORM_TTL_S + 1) is None  # expired
    assert refs.request_id(tok.replace(tok.split(".")[1], "1000001"), "applications/5", now=1_000_010) is None
    assert refs.request_id("forged.1.x", "applications/5") is None
    assert refs.form_token("applications/5", now=1) != refs.form_token("applications/5", now=1)


# ---------------------------------------------------------------- formatting and masking


def test_formatting() -> None:
    assert yuan(94000) == "940.00 元" and yuan(123456789) == "1,234,567.89 元" and yuan(5) == "0.05 元"
    assert yuan(-150) == "-1.50 元"
    assert period_words("2022-08") == "2022年8月" and period_words("2022") == "2022年"
    assert period_words("2022-Q3") == "2022年第3季度" and period_words("2022-H1") == "2022年上半年"
    end = datetime(2022, 9, 11, 16, 0, tzinfo=UTC)  # midnight 2022-09-12 in China: the last day is the 11th
    assert days_left_words(end, datetime(2022, 9, 6, 2, tzinfo=UTC)) == "还有 5 天"
    assert days_left_words(end, datetime(2022, 9, 11, 1, tzinfo=UTC)) == "今天截止"
    assert days_left_words(end, datetime(2022, 9, 11, 17, tzinfo=UTC)) == "已截止"


def test_names_and_basis_are_safe() -> None:
    assert safe_name("张*明") == "张*明" and safe_name("张三明") == "张*明" and safe_name("") == ""
    assert parse_application("12") == parse_application("applications/012") == "applications/12"
    assert parse_application("applications/x") is None and parse_application("../etc") is None
    app = funds_pb2.Application()
    p = app.provenance.add(hook="jsx_program_eligibility")
    p.reasons.append("该对象属于计生特殊家庭")
    p = app.provenance.add(hook="jsx_entitlement_amount")
    p.reasons.extend(["洪江市标准 940 元/人/月", "联系人 13907310001，身份证 431281196203120415"])
    basis = basis_of(app)
    assert basis[0] == "洪江市标准 940 元/人/月"
    assert "13907310001" not in basis[1] and "139****0001" in basis[1] and "4312**********0415" in basis[1]


def test_local_stack_env(tmp_path: Path) -> None:
    from jsx_board.local import stack_env

    got = stack_env(
        funds_addr="127.0.0.1:1", members_addr="127.0.0.1:2", auth_secret=SECRET, data_dir=tmp_path, bind="127.0.0.1:0"
    )
    cfg = BoardConfig.from_env(got)
    assert cfg.region.code == "431200000000" and cfg.members_addr == "127.0.0.1:2"
    assert (tmp_path / "board.key").exists()


# ---------------------------------------------------------------- region names and choosing a region


def test_region_names_come_from_the_registry() -> None:
    assert region_label("431281") == "洪江市" and region_label("431200") == "怀化市"
    assert region_label("431281103") == "洪江市托口镇"
    assert region_label("431281103205") == "洪江市托口镇马田村"
    assert short_label("431281103205") == "马田村" and short_label("431281103") == "托口镇"
    # codes the 2023 list lacks (test data, records under older codes) never fail a page
    assert region_label("431281101201") == "洪江市黔城镇 431281101201（村）"
    assert region_label("431222101201") == "沅陵县 431222101201（村）"  # township 101 is not listed either
    assert short_label("431281101201") == "431281101201（村）"
    assert region_label("999999") == "999999（县）"  # not even its province is known
    assert children("431281101201") == [] and children("431281103205") == []


def test_choosing_a_region_walks_county_townships_villages() -> None:
    counties = children("431200")
    assert RegionCode.parse("431281") in counties and len(counties) == 13
    assert children_word("431200") == "县（市、区）" and children_word("431281") == "乡镇（街道）"
    assert children_word("431281103") == "村（社区）" and children_word("431281103205") == ""
    townships = [short_label(r) for r in children("431281")]
    assert townships[:3] == ["黔城镇", "安江镇", "托口镇"] and len(townships) == 20
    assert "马田村" in [short_label(r) for r in children("431281103")]
    home, village = RegionCode.parse("431200"), RegionCode.parse("431281103205")
    assert [r.short for r in trail(home, village)] == ["431200", "431281", "431281103", "431281103205"]
    assert trail(home, home) == [home]
    assert trail(RegionCode.parse("431281"), RegionCode.parse("431222")) == [RegionCode.parse("431281")]


class _Gateway(Gateway):
    """A gateway that answers from memory (the real one is tested against a real stack)."""

    def __init__(self, config: BoardConfig, items: list[PublicItem]) -> None:
        super().__init__(config)
        self.items = items

    async def publicity(self, region: RegionCode, page_token: str = "") -> Page[PublicItem]:
        return Page([it for it in self.items if region.contains(it.village)])


def _item(village: str, n: int) -> PublicItem:
    start = datetime.now(UTC)
    return PublicItem(
        application=f"applications/{n}",
        program="2022年洪江市计生特殊家庭特别扶助",
        village=RegionCode.parse(village),
        name="李*英",
        amount_fen=94000,
        period="2022-08",
        basis=(),
        start=start,
        end=start + timedelta(days=5),
    )


def _page(board: Board, path: str, query: str = "") -> str:
    import asyncio

    request = Request({"type": "http", "method": "GET", "path": path, "query_string": query.encode(), "headers": []})
    handler = board.home if path == "/" else board.gongshi
    response = asyncio.run(handler(request))
    assert response.status_code == 200
    return bytes(response.body).decode()


def test_pages_name_regions_and_link_down_by_name() -> None:
    cfg = BoardConfig.from_env(env(JSX_BOARD_TOKEN=board_token("431200")))
    # 马田村 is listed; 431281101201 (under 黔城镇) is not
    board = Board(cfg, _Gateway(cfg, [_item("431281103205", 1), _item("431281101201", 2)]))

    home = _page(board, "/")
    assert "怀化市计划生育协会" in home and '<h3 id="h-areas">选择县（市、区）</h3>' in home
    assert '<a href="/gongshi?region=431281">洪江市</a>' in home
    assert '<a href="/gongshi?region=431222">沅陵县</a>' in home

    county = _page(board, "/gongshi", "region=431281")
    assert "<h1>洪江市正在公示的项目</h1>" in county and "选择乡镇（街道）" in county
    assert '<a href="/gongshi?region=431281103">托口镇</a>' in county
    assert '<a href="/gongshi?region=431200">怀化市</a>' in county  # the way back up
    assert "洪江市托口镇马田村" in county and "洪江市黔城镇 431281101201（村）" in county  # each card's village

    township = _page(board, "/gongshi", "region=431281101")
    assert "<h1>洪江市黔城镇正在公示的项目</h1>" in township and "选择村（社区）" in township
    assert '<a href="/gongshi?region=431281101002">玉皇阁社区</a>' in township
    # a village on the page the list lacks can still be chosen, by its code
    assert '<a href="/gongshi?region=431281101201">431281101201（村）</a>' in township
    assert 'aria-current="page">黔城镇</a>' in township

    village = _page(board, "/gongshi", "region=431281103205")
    assert "<h1>洪江市托口镇马田村正在公示的项目</h1>" in village and 'id="areas"' not in village
