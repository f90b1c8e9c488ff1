"""The public 公示 board in a real browser against a real stack (issue 15).

Real parts only: a nats-server with JetStream, ``python -m jsx_members`` and
``python -m jsx_funds`` as child processes (SQLite each), ``python -m
jsx_board`` as a child process holding its own ``public_board`` token, and
headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by
Selenium. Every byte the board sends goes through a recording TCP relay in
this process, so the last test can scan all of it — and the board's log —
for 身份证 numbers, phones, card numbers and the test data's full names.

Flow: persons with real-looking 身份证, phones and 一卡通 cards and their
special families are registered in members; funds gets a fund, a 特别扶助
program and four applications, three approved village → township → county
into 公示 (over gRPC, each step by its own reviewer). The browser opens the
home, 公示, objection form (first sent empty, then filled using the keyboard),
done and lookup pages; funds shows the application OBJECTED. Then the
services restart with the clock 8 days on (libfaketime: 公示 is over): a
payment batch pays only the application nobody objected to, a second batch
finds nothing to pay, the bank confirms, the objection is upheld — and the
board shows the paid list (masked) and the outcome. Screenshots of every page
go to ``$JSX_BOARD_SCREENSHOTS`` when set, else to the test's tmp dir.

Needs (CI installs them): apt ``chromium chromium-driver fonts-noto-cjk
libfaketime``. Missing outside CI: skipped; missing in CI: failed.
"""

from __future__ import annotations

import base64
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the helper is not on sys.path

from _procs import ServiceProc, clean_env, tail

from jsx.common.v1 import common_pb2 as c
from jsx.funds.v1 import funds_pb2 as fpb
from jsx.funds.v1 import funds_pb2_grpc as fgrpc
from jsx.members.v1 import members_pb2 as mpb
from jsx.members.v1 import members_pb2_grpc as mgrpc
from jsx_board.refs import References
from jsxcore.auth import issue_token
from jsxcore.local import free_port
from jsxcore.pii import generate_key
from jsxcore.runtime import error_details
from jsxcore.testing.fixtures import NatsServer
from jsxcore.testing.helpers import rid
from jsxcore.values import id_check_char

COUNTY, TOWNSHIP, VILLAGE = "431281", "431281103", "431281103205"  # 洪江市 and one of its villages
OTHER_VILLAGE = "431281104201"  # a village of another township
PERIOD = "2022-08"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FAKETIME = next(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"), Path("/usr/lib/faketime/libfaketime.so.1"))
SHIFT_DAYS = 8  # 公示 here is 5 calendar days

#: Every 身份证-like 18 characters, mainland mobile and card-like run of digits.
ID_RE = re.compile(
    rb"(?<![0-9])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?![0-9])"
)
PHONE_RE = re.compile(rb"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
CARD_RE = re.compile(rb"(?<![0-9])[0-9]{16,19}(?![0-9])")


def need(path: str | Path, what: str) -> None:
    if Path(path).exists():
        return
    message = f"{what} not installed ({path}); apt-get install -y chromium chromium-driver fonts-noto-cjk libfaketime"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def reason_of(e: grpc.RpcError) -> str:
    """The google.rpc ErrorInfo reason of a failed call ("" when it carries none)."""
    info = error_details(e)[0]
    return info.reason if info is not None else ""


def id_number(seq: int, birth: date, *, female: bool) -> str:
    s = (seq * 2 + (0 if female else 1)) % 1000
    body = f"{COUNTY}{birth:%Y%m%d}{s:03d}"
    return body + id_check_char(body)


# --------------------------------------------------------------------- the recording relay


class Relay:
    """A TCP relay browser → board that keeps every byte the board sends back."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.served: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="board-relay", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        got = bytearray()
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        pair = {client: upstream, upstream: client}
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select(list(pair), [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    pair[s].sendall(data)
                    if s is upstream:
                        got += data
        except OSError:
            return
        finally:
            with self._lock:
                self.served.append(bytes(got))
            client.close()
            upstream.close()

    def all_bytes(self) -> bytes:
        with self._lock:
            return b"".join(self.served)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(5)


# --------------------------------------------------------------------- the stack


@dataclass
class Stack:
    members: ServiceProc
    funds: ServiceProc
    board: subprocess.Popen[bytes]
    board_log: Path
    relay: Relay
    secret: str
    board_secret: str
    shots: Path
    tokens: dict[str, str]
    people: dict[str, mpb.Person] = field(default_factory=dict)
    raw: dict[str, dict[str, str]] = field(default_factory=dict)  # full name → its id number, phone, card
    apps: dict[str, fpb.Application] = field(default_factory=dict)
    program: str = ""
    contacts: list[str] = field(default_factory=list)  # every contact an objector gave
    references: dict[str, str] = field(default_factory=dict)  # application key → objection reference

    def call(self, service: str, role: str, method: str, req: Any, timeout: float = 15) -> Any:
        proc = self.members if service == "members" else self.funds
        stub_cls = mgrpc.MembersServiceStub if service == "members" else fgrpc.FundsServiceStub
        with grpc.insecure_channel(proc.addr) as ch:
            md = (("authorization", f"Bearer {self.tokens[role]}"),)
            return getattr(stub_cls(ch), method)(req, metadata=md, timeout=timeout)

    def app(self, key: str) -> fpb.Application:
        return self.call("funds", "approver", "GetApplication", fpb.GetApplicationRequest(name=self.apps[key].name))

    def http(
        self,
        path: str,
        data: dict[str, str] | None = None,
        *,
        xff: str = "",
        content_type: str = "application/x-www-form-urlencoded",
    ) -> tuple[int, dict[str, str], str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.relay.url + path, data=body)
        if body is not None:
            req.add_header("Content-Type", content_type)
        if xff:
            req.add_header("X-Forwarded-For", xff)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers.items()), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read().decode()

    def form_token(self, item: str, xff: str) -> str:
        status, _, html = self.http(f"/yiyi?item={item}", xff=xff)
        assert status == 200, html
        m = re.search(r'name="form" value="([^"]+)"', html)
        assert m, html
        return m.group(1)

    def restart_services(
        self, extra: dict[str, str] | None = None, while_down: Callable[[], None] | None = None
    ) -> None:
        for p in (self.funds, self.members):
            p.terminate()
        for p in (self.funds, self.members):
            assert p.stop() == 0, p.explain()
        if while_down is not None:
            while_down()
        for p in (self.members, self.funds):
            p.start(extra)
        for p in (self.members, self.funds):
            p.wait_serving()
        # The board's channels were refused while the services were down and reconnect with backoff:
        # wait until its readiness probe (which asks funds) says it can serve again, as a load balancer would.
        deadline = time.monotonic() + 60
        while self.http("/readyz", xff="198.51.100.61")[0] != 200:
            assert time.monotonic() < deadline, "the board did not become ready after the services restarted"
            time.sleep(0.2)


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"jsx_board exited with {proc.returncode}\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready within {timeout:.0f} s\n{tail(log)}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("board-e2e")
    shots = (
        Path(os.environ["JSX_BOARD_SCREENSHOTS"]) if os.environ.get("JSX_BOARD_SCREENSHOTS") else tmp / "screenshots"
    )
    shots.mkdir(parents=True, exist_ok=True)
    broker = NatsServer(tmp / "nats")
    broker.start()
    secret = generate_key()
    base = clean_env() | {
        "JSX_NATS_URL": broker.url,
        "JSX_DATA_DIR": str(tmp),
        "JSX_LOG_LEVEL": "INFO",
        "JSX_PII_KEY": generate_key(),
        "JSX_BLIND_INDEX_KEY": generate_key(),
        "JSX_AUTH_SECRET": secret,
        "JSX_SHUTDOWN_GRACE_S": "3",
    }
    maddr, faddr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    members = ServiceProc(
        "members",
        base | {"JSX_MEMBERS_DATABASE_URL": f"sqlite:///{tmp / 'members.db'}", "JSX_MEMBERS_GRPC_ADDR": maddr},
        maddr,
        tmp / "logs" / "members.log",
    )
    funds = ServiceProc(
        "funds",
        base
        | {
            "JSX_FUNDS_DATABASE_URL": f"sqlite:///{tmp / 'funds.db'}",
            "JSX_FUNDS_GRPC_ADDR": faddr,
            "JSX_MEMBERS_ADDR": maddr,
        },
        faddr,
        tmp / "logs" / "funds.log",
    )
    day = 86400
    tokens = {
        "clerk": issue_token(secret, "clerk-hj", ["county_clerk"], COUNTY, ttl=30 * day),
        "village": issue_token(secret, "rev-village", ["village_reviewer"], VILLAGE, ttl=30 * day),
        "village2": issue_token(secret, "rev-village2", ["village_reviewer"], OTHER_VILLAGE, ttl=30 * day),
        "township": issue_token(secret, "rev-township", ["township_reviewer"], TOWNSHIP, ttl=30 * day),
        "township2": issue_token(secret, "rev-township2", ["township_reviewer"], OTHER_VILLAGE[:9], ttl=30 * day),
        "approver": issue_token(secret, "appr-hj", ["county_approver"], COUNTY, ttl=30 * day),
        "finance": issue_token(secret, "fin-hj", ["finance_officer"], COUNTY, ttl=30 * day),
        # the board's own identity; its TTL outlives the clock jump of the second half
        "board": issue_token(secret, "board-hj", ["public_board"], COUNTY, ttl=30 * day, name="洪江市公示栏"),
    }
    board_port = free_port()
    board_secret = generate_key()
    board_log = tmp / "logs" / "board.log"
    board_env = clean_env() | {
        "JSX_BOARD_FUNDS_ADDR": faddr,
        "JSX_BOARD_MEMBERS_ADDR": maddr,
        "JSX_BOARD_TOKEN": tokens["board"],
        "JSX_BOARD_SECRET": board_secret,
        "JSX_BOARD_BIND": f"127.0.0.1:{board_port}",
        "JSX_BOARD_TITLE": "洪江市计生协项目资金公示栏",
        # the relay connects from 127.0.0.1: X-Forwarded-For from it stands for other villagers' addresses
        "JSX_BOARD_TRUSTED_PROXIES": "127.0.0.1",
        "JSX_BOARD_RATE_PAGES": "100/m",
        "JSX_BOARD_RATE_OBJECTIONS": "3/h",
        "JSX_BOARD_RATE_CONTACT": "2/h",
        "JSX_LOG_LEVEL": "DEBUG",
    }
    relay: Relay | None = None
    board: subprocess.Popen[bytes] | None = None
    try:
        members.start()
        funds.start()
        members.wait_serving()
        funds.wait_serving()
        board_log.parent.mkdir(parents=True, exist_ok=True)
        with open(board_log, "ab") as log:
            board = subprocess.Popen(
                [sys.executable, "-m", "jsx_board"],
                env=board_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_http(f"http://127.0.0.1:{board_port}/readyz", board, board_log)
        relay = Relay(board_port)
        st = Stack(members, funds, board, board_log, relay, secret, board_secret, shots, tokens)
        seed(st)
        yield st
    finally:
        if relay is not None:
            relay.close()
        if board is not None and board.poll() is None:
            board.terminate()
            try:
                assert board.wait(15) == 0, tail(board_log)
            except subprocess.TimeoutExpired:
                board.kill()
                raise
        for p in (funds, members):
            p.terminate()
        for p in (funds, members):
            p.stop()
        broker.stop()
        print(f"\nboard screenshots: {shots}")


def seed(st: Stack) -> None:
    """Four special families; A, B and C approved into 公示, D only submitted."""
    people = [  # key, full name, head?, village
        ("A-head", "王大明", True, VILLAGE),
        ("A", "李秀英", False, VILLAGE),
        ("B-head", "张建国", True, VILLAGE),
        ("B", "刘桂英", False, VILLAGE),
        ("C-head", "陈志强", True, OTHER_VILLAGE),
        ("C", "赵小红", False, OTHER_VILLAGE),
        ("D-head", "孙德胜", True, VILLAGE),
        ("D", "周玉兰", False, VILLAGE),
    ]
    for i, (key, name, is_head, village) in enumerate(people, start=1):
        birth = date(1960 + i % 3, 1 + i, 10 + i)
        raw = {
            "id": id_number(40 + i, birth, female=not is_head),
            "phone": f"1390731{i:04d}",
            "card": f"62170731000000{i:04d}",
        }
        st.raw[name] = raw
        st.people[key] = st.call(
            "members",
            "clerk",
            "CreatePerson",
            mpb.CreatePersonRequest(
                request_id=rid(),
                person=mpb.Person(
                    display_name=name,
                    id_number=raw["id"],
                    phone=raw["phone"],
                    card_number=raw["card"],
                    village=c.RegionCode(code=village),
                    birth_date=c.Date(year=birth.year, month=birth.month, day=birth.day),
                    hukou_type=mpb.HUKOU_TYPE_RURAL,
                ),
            ),
        )
    households = {}
    for fam in "ABCD":
        head, mother = st.people[f"{fam}-head"], st.people[fam]
        households[fam] = st.call(
            "members",
            "clerk",
            "CreateHousehold",
            mpb.CreateHouseholdRequest(
                request_id=rid(),
                household=mpb.Household(
                    head=head.name,
                    village=head.village,
                    members=[
                        mpb.HouseholdMember(person=head.name, relation=mpb.RELATION_HEAD),
                        mpb.HouseholdMember(person=mother.name, relation=mpb.RELATION_SPOUSE),
                    ],
                ),
                situations=[
                    mpb.FamilySituation(
                        kind=mpb.SITUATION_KIND_SPECIAL_BEREAVED, effective_from=c.Date(year=2021, month=3, day=1)
                    )
                ],
            ),
        )

    src = st.call(
        "funds",
        "finance",
        "CreateFundSource",
        fpb.CreateFundSourceRequest(
            request_id=rid(),
            fund_source=fpb.FundSource(
                display_name="2022年洪江市特别扶助资金",
                kind=fpb.FUND_SOURCE_KIND_COUNTY_FINANCE,
                region=c.RegionCode(code=COUNTY),
            ),
        ),
    )
    fund = st.call(
        "funds",
        "finance",
        "CreateFund",
        fpb.CreateFundRequest(
            request_id=rid(),
            fund=fpb.Fund(
                display_name="洪江市特别扶助资金", kind=fpb.FUND_KIND_PROGRAM, owner_region=c.RegionCode(code=COUNTY)
            ),
        ),
    )
    st.call(
        "funds",
        "finance",
        "PostAllocation",
        fpb.PostAllocationRequest(request_id=rid(), fund=fund.name, source=src.name, amount=c.Money(fen=100_000_00)),
    )
    program = st.call(
        "funds",
        "approver",
        "CreateProgram",
        fpb.CreateProgramRequest(
            request_id=rid(),
            program=fpb.Program(
                display_name="2022年洪江市计生特殊家庭特别扶助",
                type=fpb.PROGRAM_TYPE_SPECIAL_SUPPORT,
                region=c.RegionCode(code=COUNTY),
                fund=fund.name,
                year=2022,
                publicity_days=5,
                approval_levels=[fpb.APPROVAL_LEVEL_VILLAGE, fpb.APPROVAL_LEVEL_TOWNSHIP, fpb.APPROVAL_LEVEL_COUNTY],
            ),
        ),
    )
    st.program = program.name

    for fam in "ABCD":
        mother = st.people[fam]
        born = mother.birth_date
        req = fpb.Application(
            program=program.name,
            household=households[fam].name,
            person=mother.name,
            period=c.Period(code=PERIOD),
            attributes={"birth_date": f"{born.year:04d}-{born.month:02d}-{born.day:02d}"},
        )
        deadline = time.monotonic() + 30
        while True:  # the household reaches funds' projection over NATS
            try:
                st.apps[fam] = st.call(
                    "funds",
                    "clerk",
                    "SubmitApplication",
                    fpb.SubmitApplicationRequest(request_id=rid(), application=req),
                )
                break
            except grpc.RpcError as e:
                info = error_details(e)[0]
                if e.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise AssertionError(f"SubmitApplication {fam}: {e.code()} {info} {e.details()}") from None
                time.sleep(0.2)
    for fam in "ABC":
        other = fam == "C"
        for role in ("village2" if other else "village", "township2" if other else "township", "approver"):
            st.apps[fam] = st.call(
                "funds",
                role,
                "DecideApplication",
                fpb.DecideApplicationRequest(
                    request_id=rid(), name=st.apps[fam].name, decision=fpb.APPROVAL_DECISION_APPROVE, comment="同意"
                ),
            )
        assert st.apps[fam].state == fpb.APPLICATION_STATE_IN_PUBLICITY, st.apps[fam]
    assert st.apps["D"].state == fpb.APPLICATION_STATE_SUBMITTED


def app_id(st: Stack, fam: str) -> str:
    return str(st.apps[fam].name.split("/")[1])


# --------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    need(CHROMIUM, "chromium")
    need(CHROMEDRIVER, "chromium-driver")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--lang=zh-CN",
        "--window-size=390,844",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(
            executable_path=CHROMEDRIVER, log_output=str(tmp_path_factory.mktemp("chromedriver") / "driver.log")
        ),
        options=opts,
    )
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, st: Stack, name: str) -> Path:
    """A full-page PNG of what the browser shows now."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    data = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path = st.shots / f"{name}.png"
    path.write_bytes(base64.b64decode(data["data"]))
    assert path.stat().st_size > 5000, f"screenshot {path} looks empty"
    return path


def check_accessible(driver: Any) -> None:
    """lang, one h1, a label for every field, the skip link first in tab order."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    assert len(driver.find_elements(By.TAG_NAME, "h1")) == 1
    for el in driver.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), textarea, select"):
        fid = el.get_attribute("id")
        assert fid and driver.find_elements(By.CSS_SELECTOR, f"label[for='{fid}']"), f"field without label: {fid}"
    assert not driver.find_elements(By.TAG_NAME, "script")
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert driver.switch_to.active_element.text == "跳到正文"


# --------------------------------------------------------------------- tests


def test_publicity_objection_and_payment_blocked(stack: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    st, d = stack, browser
    base = st.relay.url
    a = app_id(st, "A")

    d.get(base + "/")
    assert "洪江市计生协项目资金公示栏" in d.title
    shot(d, st, "01-home")
    check_accessible(d)

    # choose the county with the region form, as a villager would
    box = d.find_element(By.ID, "region")
    box.clear()
    box.send_keys(COUNTY, Keys.ENTER)
    assert d.current_url.startswith(base + "/gongshi?region=" + COUNTY)
    cards = d.find_elements(By.CSS_SELECTOR, "ol.cards article")
    assert len(cards) == 3
    text = d.find_element(By.TAG_NAME, "main").text
    for masked in ("李*英", "刘*英", "赵*红"):
        assert masked in text
    assert "940.00 元" in text and "2022年8月" in text and "还有 5 天" in text
    assert "洪江市标准 940 元/人/月" in text  # the rule's basis
    shot(d, st, "02-gongshi-county")
    check_accessible(d)

    # a township's 公示 holds only its villages
    d.find_element(By.CSS_SELECTOR, f"nav.areas a[href='/gongshi?region={TOWNSHIP}']").click()
    assert len(d.find_elements(By.CSS_SELECTOR, "ol.cards article")) == 2
    shot(d, st, "03-gongshi-township")

    d.get(base + f"/gongshi?region={VILLAGE}")
    d.find_element(By.CSS_SELECTOR, f"a[href='/yiyi?item={a}']").click()
    assert "对公示项目提出异议" in d.find_element(By.TAG_NAME, "h1").text
    assert "李*英" in d.find_element(By.TAG_NAME, "main").text
    shot(d, st, "04-yiyi-form")
    check_accessible(d)

    # sent empty: the errors come back, named and linked to their fields
    d.find_element(By.CSS_SELECTOR, "form.objection button[type=submit]").send_keys(Keys.ENTER)
    summary = d.find_element(By.CSS_SELECTOR, ".error-summary")
    assert "至少 5 个字" in summary.text
    assert d.find_element(By.ID, "text").get_attribute("aria-invalid") == "true"
    shot(d, st, "05-yiyi-errors")
    assert st.app("A").state == fpb.APPLICATION_STATE_IN_PUBLICITY  # nothing lodged

    # filled with the keyboard only: tab into the fields, type, submit with Enter
    d.find_element(By.ID, "text").send_keys("据了解该户女儿仍健在，今年已外出务工，不属于独生子女死亡家庭，请核查。")
    d.find_element(By.ID, "text").send_keys(Keys.TAB)
    contact = "13800138000"
    st.contacts.append(contact)
    d.switch_to.active_element.send_keys(contact)  # the contact field follows the text in tab order
    assert d.switch_to.active_element.get_attribute("id") == "contact"
    d.switch_to.active_element.send_keys(Keys.TAB)
    assert d.switch_to.active_element.tag_name == "button"
    d.switch_to.active_element.send_keys(Keys.ENTER)
    assert d.find_element(By.TAG_NAME, "h1").text == "异议已提交"
    reference = d.find_element(By.ID, "ref").text
    assert re.fullmatch(rf"{a}-[0-9]+-[A-Z2-7]{{10}}", reference), reference
    assert contact not in d.page_source
    shot(d, st, "06-yiyi-done")

    # funds: the application is OBJECTED, the contact reached the objection
    got = st.app("A")
    assert got.state == fpb.APPLICATION_STATE_OBJECTED
    assert len(got.objections) == 1 and contact in got.objections[0].lodged_by
    assert got.objections[0].reason.startswith("据了解该户女儿仍健在")

    d.get(base + f"/gongshi?region={VILLAGE}")
    flagged = d.find_element(By.CSS_SELECTOR, "article.objected")
    assert "有异议，正在核查，暂停支付" in flagged.text and "李*英" in flagged.text
    shot(d, st, "07-gongshi-objected")

    d.find_element(By.LINK_TEXT, "查询异议结果").click()
    d.find_element(By.ID, "ref").send_keys(reference.lower(), Keys.ENTER)  # typed in lower case: still found
    assert "正在核查（该项目暂停支付）" in d.find_element(By.TAG_NAME, "main").text
    shot(d, st, "08-chaxun-open")
    check_accessible(d)

    d.get(base + f"/yifafang?region={COUNTY}")
    assert "暂无已发放的记录" in d.find_element(By.TAG_NAME, "main").text
    shot(d, st, "09-yifafang-empty")

    assert st.app("B").state == fpb.APPLICATION_STATE_IN_PUBLICITY
    st.references["A"] = reference


def test_objection_limits_and_refusals(stack: Stack) -> None:
    """Flood from one address, one contact from many addresses, double submit, bad input,
    items not in 公示 — each answers the right status in Chinese and lodges nothing extra."""
    st = stack
    c_ = app_id(st, "C")
    text = "该户家庭情况与公示不符，请核查。"

    def lodge(xff: str, contact: str, token: str | None = None, item: str = c_) -> tuple[int, dict[str, str], str]:
        form = {"item": item, "form": token or st.form_token(item, xff), "text": text, "contact": contact}
        return st.http("/yiyi", form, xff=xff)

    # one address: 3 an hour, the 4th is refused with Retry-After, nothing lodged
    flood = "198.51.100.7"
    for i in range(3):
        contact = f"1370731{i:04d}"
        st.contacts.append(contact)
        status, _, html = lodge(flood, contact)
        assert status == 200 and "异议已提交" in html, html
    st.contacts.append("13707319999")
    status, headers, html = lodge(flood, "13707319999")
    assert status == 429 and "异议提交过于频繁" in html
    assert int(headers["retry-after"]) > 0
    assert len(st.app("C").objections) == 3

    # one contact written three ways from three addresses: 2 an hour, then refused
    same = ["139 0731 5555", "+86 13907315555", "13907315555"]
    st.contacts.append("13907315555")
    for i, contact in enumerate(same):
        status, _, html = lodge(f"198.51.100.{20 + i}", contact)
        assert (status, i < 2) in ((200, True), (429, False)), (i, status, html)
    assert len(st.app("C").objections) == 5

    # the same form sent twice (a double click): one objection, the same reference
    token = st.form_token(c_, "198.51.100.30")
    first = lodge("198.51.100.30", "", token)
    again = lodge("198.51.100.30", "", token)
    assert first[0] == again[0] == 200
    ref = re.search(r'<strong id="ref">([^<]+)</strong>', first[2])
    assert ref and ref.group(1) in again[2]
    assert len(st.app("C").objections) == 6

    # bad input: 400, the text echoed masked, the contact never echoed, nothing lodged
    form = {"item": c_, "form": st.form_token(c_, "198.51.100.31"), "text": "差", "contact": "13907316666"}
    st.contacts.append("13907316666")
    status, _, html = st.http("/yiyi", form, xff="198.51.100.31")
    assert status == 400 and "至少 5 个字" in html and "13907316666" not in html and "页面不回显" in html
    leak = st.raw["李秀英"]["id"]
    form = {"item": c_, "form": st.form_token(c_, "198.51.100.31"), "text": f"身份证{leak}" + "长" * 1001}
    status, _, html = st.http("/yiyi", form, xff="198.51.100.31")
    assert status == 400 and "不能超过 1000 字" in html and leak not in html and leak[:4] + "*" * 10 in html
    status, _, html = st.http("/yiyi", {"item": c_, "form": "forged.1.x", "text": text}, xff="198.51.100.31")
    assert status == 400 and "表单已过期" in html
    status, _, html = st.http("/yiyi", {"item": c_, "text": text}, xff="198.51.100.31", content_type="text/plain")
    assert status == 415
    assert len(st.app("C").objections) == 6

    # items not in 公示: D is still in review, 999999 does not exist
    d_ = app_id(st, "D")
    for item in (d_, "999999", "abc"):
        status, _, html = st.http(f"/yiyi?item={item}", xff="198.51.100.32")
        assert status == 404 and "该项目不在公示期内" in html
    forged = References(st.board_secret.encode()).form_token(f"applications/{d_}")
    status, _, html = st.http("/yiyi", {"item": d_, "form": forged, "text": text}, xff="198.51.100.32")
    assert status == 404 and "该项目不在公示期内" in html
    assert st.app("D").objections == [] and st.app("D").state == fpb.APPLICATION_STATE_SUBMITTED
    # …and funds itself refuses the board's token an objection outside 公示
    with pytest.raises(grpc.RpcError) as e:
        st.call(
            "funds",
            "board",
            "LodgeObjection",
            fpb.LodgeObjectionRequest(application=st.apps["D"].name, reason=text, request_id=rid()),
        )
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(e.value) == "NOT_IN_PUBLICITY"

    # regions and pages outside the board, forged references
    status, _, html = st.http("/gongshi?region=431222", xff="198.51.100.33")
    assert status == 404 and "只公示洪江市范围内" in html
    status, _, html = st.http("/gongshi?region=12x", xff="198.51.100.33")
    assert status == 400
    status, _, html = st.http(f"/gongshi?region={COUNTY}&page=bm90LWEtdG9rZW4", xff="198.51.100.33")
    assert status == 400 and "翻页参数无效" in html
    real = st.references["A"]
    for bad in (real[:-1] + ("A" if real[-1] != "A" else "B"), "1-1-AAAAAAAAAA", "x"):
        status, _, html = st.http("/chaxun?" + urllib.parse.urlencode({"ref": bad}), xff="198.51.100.33")
        assert status == 404 and "查询编号无效" in html

    # page views: 100 a minute per address, then 429 (health checks are not counted)
    # (the bucket refills 1.67 a second while the loop runs, so the first 429 may come a little after 100)
    started = time.monotonic()
    codes: list[int] = []
    while len(codes) < 300:
        status, headers, html = st.http("/chaxun", xff="198.51.100.40")
        codes.append(status)
        if status == 429:
            break
    refilled = (time.monotonic() - started) * 100 / 60
    assert set(codes[:100]) == {200} and codes[-1] == 429 and len(codes) <= 101 + refilled + 1, (len(codes), refilled)
    assert "访问过于频繁" in html and int(headers["retry-after"]) >= 1
    assert st.http("/healthz", xff="198.51.100.40")[0] == 200

    # headers: no scripts, no framing, no referrer
    status, headers, _ = st.http("/", xff="198.51.100.41")
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"


def test_after_publicity_only_the_unobjected_item_is_paid(stack: Stack, browser: Any) -> None:
    """The clock moves 8 days on (services restarted under libfaketime): 公示 is over."""
    from selenium.webdriver.common.by import By

    need(FAKETIME, "libfaketime")
    st, d = stack, browser

    def services_down() -> None:
        # the board stays up and says so in Chinese; its readiness probe fails meanwhile
        status, headers, html = st.http(f"/gongshi?region={COUNTY}", xff="198.51.100.60")
        assert status == 503 and "暂时无法访问" in html and headers["retry-after"] == "30", html
        assert st.http("/readyz", xff="198.51.100.60")[0] == 503
        assert st.http("/healthz", xff="198.51.100.60")[0] == 200

    st.restart_services(
        {"LD_PRELOAD": str(FAKETIME), "FAKETIME": f"+{SHIFT_DAYS}d", "FAKETIME_DONT_FAKE_MONOTONIC": "1"},
        while_down=services_down,
    )
    assert st.app("A").state == fpb.APPLICATION_STATE_OBJECTED
    assert st.app("B").state == fpb.APPLICATION_STATE_READY_TO_PAY

    batch_req = fpb.CreatePaymentBatchRequest(
        program=st.program, region=c.RegionCode(code=COUNTY), period=c.Period(code=PERIOD)
    )
    batch_req.request_id = rid()
    batch = st.call("funds", "finance", "CreatePaymentBatch", batch_req)
    assert batch.payment_count == 1 and batch.total.fen == 940_00
    payments = st.call("funds", "finance", "ListPayments", fpb.ListPaymentsRequest(payment_batch=batch.name)).payments
    assert [p.application for p in payments] == [st.apps["B"].name]  # not A: its objection stops it
    batch_req.request_id = rid()
    with pytest.raises(grpc.RpcError) as e:
        st.call("funds", "finance", "CreatePaymentBatch", batch_req)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and reason_of(e.value) == "NOTHING_TO_PAY"
    assert st.app("A").state == fpb.APPLICATION_STATE_OBJECTED and not st.app("A").payment

    st.call(
        "funds",
        "finance",
        "ImportBankResults",
        fpb.ImportBankResultsRequest(
            request_id=rid(),
            payment_batch=batch.name,
            results=[
                fpb.BankResult(
                    payment=payments[0].name,
                    succeeded=True,
                    bank_reference="HJ20220915-0001",
                    paid_date=c.Date(year=2022, month=9, day=15),
                )
            ],
        ),
    )
    assert st.app("B").state == fpb.APPLICATION_STATE_PAID

    objection = st.app("A").objections[0].name
    st.call(
        "funds",
        "approver",
        "ResolveObjection",
        fpb.ResolveObjectionRequest(
            request_id=rid(),
            name=objection,
            upheld=True,
            resolution=f"经村计生专干入户核实，异议属实，取消该户本期特别扶助资格。（核查人电话 {st.raw['王大明']['phone']}）",
        ),
    )
    assert st.app("A").state == fpb.APPLICATION_STATE_REJECTED

    base = st.relay.url
    d.get(base + f"/gongshi?region={COUNTY}")
    assert "目前没有正在公示的项目" in d.find_element(By.TAG_NAME, "main").text
    shot(d, st, "10-gongshi-over")

    d.get(base + f"/yifafang?region={COUNTY}")
    rows = d.find_elements(By.CSS_SELECTOR, "table.paid tbody tr")
    assert len(rows) == 1
    row = rows[0].text
    assert "刘*英" in row and "940.00 元" in row and "特别扶助" in row and "2022年8月" in row
    # the bank's paid date once funds fills Application.payment; until then the day the result was recorded
    assert "2022年9月15日" in row or "（到账登记）" in row, row
    shot(d, st, "11-yifafang")
    d.set_window_size(1280, 900)
    shot(d, st, "12-yifafang-desktop")
    d.set_window_size(390, 844)
    check_accessible(d)

    d.get(base + "/chaxun?ref=" + st.references["A"])
    main = d.find_element(By.TAG_NAME, "main").text
    assert "异议成立：该项目不予支付" in main and "取消该户本期特别扶助资格" in main and "未通过" in main
    assert st.raw["王大明"]["phone"] not in d.page_source  # a phone in staff's words is masked
    shot(d, st, "13-chaxun-upheld")

    st.restart_services()  # back to the real clock for whatever runs next


def test_nothing_unmasked_is_ever_served(stack: Stack) -> None:
    """Every byte the board sent in this module, and its whole log: no 身份证, phone or card
    number, no full name of the test data, no contact an objector gave."""
    st = stack
    for path in (
        "/",
        f"/gongshi?region={COUNTY}",
        f"/yifafang?region={COUNTY}",
        "/chaxun",
        "/static/board.css",
        f"/yiyi?item={app_id(st, 'C')}",
        "/no-such-page",
    ):
        st.http(path, xff="198.51.100.50")
    time.sleep(0.3)  # the relay threads record a closed connection's bytes as they finish
    served = st.relay.all_bytes()
    assert len(served) > 50_000, "the relay recorded too little: were the pages served through it?"
    log = st.board_log.read_bytes()
    for where, data in (("served", served), ("board log", log)):
        assert not ID_RE.findall(data), f"{where}: 身份证-like numbers {ID_RE.findall(data)[:3]}"
        assert not PHONE_RE.findall(data), f"{where}: phone numbers {PHONE_RE.findall(data)[:3]}"
        assert not CARD_RE.findall(data), f"{where}: card-like numbers {CARD_RE.findall(data)[:3]}"
        for name, raw in st.raw.items():
            for value in (name, *raw.values()):
                assert value.encode() not in data, f"{where}: {value!r} of the test data"
        for contact in st.contacts:
            assert contact.encode() not in data and contact.replace(" ", "").encode() not in data, where
    # the masked forms are there, so the scan looked at real pages
    assert "李*英".encode() in served and "刘*英".encode() in served
    # …and the board's log has its access lines without query strings
    assert b'"msg": "GET /gongshi 200"' in log and b"region=" not in log
    shutil.copy(st.board_log, st.shots / "board.log")
