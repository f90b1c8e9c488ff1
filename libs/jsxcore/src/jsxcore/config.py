"""Service configuration from environment variables.

``ServiceConfig.from_env("funds")`` reads ``JSX_FUNDS_<NAME>`` first, then
``JSX_<NAME>`` (an empty value counts as unset). Every problem is collected
and reported at once in a :class:`jsxcore.errors.ConfigError` naming the
variable and what it should hold.

Variables (NAME: default):

=================== ==========================================================
DATABASE_URL        ``sqlite:///<DATA_DIR>/<service>.db``; or ``postgresql://…``
DATA_DIR            ``./data``
NATS_URL            ``nats://127.0.0.1:4222`` (comma-separated for a cluster)
GRPC_ADDR           ``127.0.0.1:0`` (port 0: pick a free port)
PII_KEY             base64 of 32 random bytes (``python -m jsxcore.pii`` prints one)
PII_KEY_ID          1 — the id written into new tokens (0–255)
PII_OLD_KEYS        ``id:base64[,id:base64…]`` — retired keys still readable
BLIND_INDEX_KEY     base64 of 32 random bytes
AUTH_SECRET         HS256 secret for caller tokens, at least 32 characters
DEV                 ``1`` lets the three secrets default to keys kept in
                    ``DATA_DIR/keys.json`` (created once, reused across runs)
PLUGINS             ``name=region[+region…],…`` e.g. ``hunan=430000,hongjiang=431281``;
                    empty: every installed plugin for the regions it declares
PLUGIN_TIMEOUT_MS   2000
LOG_LEVEL           INFO
SHUTDOWN_GRACE_S    5
MEMBERS_ADDR, FUNDS_ADDR, EVENTS_ADDR   upstream ``host:port`` (optional)
=================== ==========================================================
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from jsxcore.errors import ConfigError, InvalidArgument
from jsxcore.pii import BlindIndex, FieldCipher, decode_key, generate_key
from jsxcore.values import RegionCode

__all__ = ["DEV_KEYS_FILE", "ServiceConfig", "hide_password", "parse_plugins", "split_host_port"]

DEV_KEYS_FILE = "keys.json"
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
_DB_SCHEMES = ("sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+psycopg")
_NATS_SCHEMES = ("nats", "tls", "ws", "wss")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
T = TypeVar("T")


def split_host_port(addr: str, *, allow_zero: bool = False) -> tuple[str, int]:
    """``"127.0.0.1:50051"`` / ``"[::]:0"`` → (host, port); ValueError if malformed."""
    host, sep, port_text = addr.strip().rpartition(":")
    if not sep or not host or not re.fullmatch(r"[0-9]+", port_text):
        raise ValueError("应写成 主机:端口，例如 127.0.0.1:50051")
    port = int(port_text)
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ValueError(f"端口 {port} 超出范围（{'0' if allow_zero else '1'}–65535）")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError("IPv6 地址要写在方括号里，例如 [::1]:50051")
    return host, port


def parse_plugins(text: str) -> dict[str, tuple[str, ...]]:
    """``"hunan=430000,hongjiang=431281+431222"`` → ``{"hunan": ("430000000000",), …}``.

    Region codes come back as canonical 12-digit strings. Raises ValueError
    listing every bad entry.
    """
    result: dict[str, tuple[str, ...]] = {}
    problems: list[str] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, regions_text = entry.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
            problems.append(f"“{entry}”应写成 插件名=区划代码[+区划代码…]")
            continue
        if name in result:
            problems.append(f"插件 {name} 出现了两次，请合并为一项（多个区划用 + 连接）")
            continue
        codes: list[str] = []
        for part in regions_text.split("+"):
            try:
                code = RegionCode.parse(part.strip()).code
            except InvalidArgument:
                problems.append(f"插件 {name} 的区划代码“{part.strip()}”无效，应为6、9或12位数字")
                continue
            if code not in codes:
                codes.append(code)
        if codes:
            result[name] = tuple(codes)
    if problems:
        raise ValueError("；".join(problems))
    return result


@dataclass(frozen=True)
class ServiceConfig:
    """Everything a service process needs at startup. Secrets are kept out of repr."""

    service: str
    database_url: str
    data_dir: Path
    nats_url: str
    grpc_addr: str
    pii_key: bytes = field(repr=False)
    blind_index_key: bytes = field(repr=False)
    auth_secret: str = field(repr=False)
    pii_key_id: int = 1
    pii_old_keys: dict[int, bytes] = field(default_factory=dict, repr=False)
    plugins: dict[str, tuple[str, ...]] = field(default_factory=dict)
    plugin_timeout_ms: int = 2000
    log_level: str = "INFO"
    shutdown_grace_s: float = 5.0
    #: JetStream replicas for the streams a service's relay creates (3 in production)
    stream_replicas: int = 1
    members_addr: str | None = None
    funds_addr: str | None = None
    events_addr: str | None = None
    dev: bool = False

    def __repr__(self) -> str:
        # Secrets are omitted; URL passwords are masked so the config can be logged at startup.
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        shown["database_url"] = hide_password(self.database_url)
        shown["nats_url"] = hide_password(self.nats_url)
        return f"ServiceConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    # -- derived helpers
    @property
    def grpc_host(self) -> str:
        return split_host_port(self.grpc_addr, allow_zero=True)[0]

    @property
    def grpc_port(self) -> int:
        """0 means: let the OS pick a free port."""
        return split_host_port(self.grpc_addr, allow_zero=True)[1]

    @property
    def nats_servers(self) -> list[str]:
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    def field_cipher(self) -> FieldCipher:
        """The PII cipher: current key plus any retired keys for reading."""
        return FieldCipher({**self.pii_old_keys, self.pii_key_id: self.pii_key}, current=self.pii_key_id)

    def blind_index(self) -> BlindIndex:
        return BlindIndex(self.blind_index_key)

    # -- construction
    @classmethod
    def from_env(cls, service: str, environ: Mapping[str, str] | None = None) -> ServiceConfig:
        """Read and validate the configuration of ``service`` (e.g. ``"funds"``)."""
        env = os.environ if environ is None else environ
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", service or ""):
            raise ConfigError(f"服务名“{service}”无效：只能含字母、数字、下划线和连字符")
        prefix = "JSX_" + service.upper().replace("-", "_") + "_"
        problems: list[str] = []

        def lookup(name: str) -> tuple[str, str | None]:
            """(variable actually used, value or None)."""
            for var in (prefix + name, "JSX_" + name):
                value = env.get(var)
                if value is not None and value.strip() != "":
                    return var, value.strip()
            return "JSX_" + name, None

        def get(name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
            var, raw = lookup(name)
            if raw is None:
                return default
            try:
                return parse(raw)
            except ValueError as e:
                detail = f"（{e}）" if str(e) else ""
                problems.append(f"{var}={_shown(name, raw)}: 应为{expected}{detail}")
                return default

        dev = get("DEV", False, _parse_bool, "1/0、true/false")
        data_dir = get("DATA_DIR", Path("./data"), lambda s: Path(s).expanduser(), "目录路径").absolute()
        default_db = f"sqlite:///{(data_dir / f'{service}.db').as_posix()}"
        database_url = get(
            "DATABASE_URL", default_db, _parse_db_url, "数据库地址，如 sqlite:///data/x.db 或 postgresql://user@host/db"
        )
        nats_url = get(
            "NATS_URL",
            "nats://127.0.0.1:4222",
            _parse_nats_url,
            "NATS 地址，如 nats://127.0.0.1:4222（集群用逗号分隔）",
        )
        grpc_addr = get(
            "GRPC_ADDR", "127.0.0.1:0", lambda s: _addr(s, allow_zero=True), "监听地址 主机:端口（端口 0 表示自动选择）"
        )
        no_plugins: dict[str, tuple[str, ...]] = {}
        plugins = get("PLUGINS", no_plugins, parse_plugins, "插件启用表 插件名=区划代码[+区划代码…]，多项用逗号分隔")
        timeout = get("PLUGIN_TIMEOUT_MS", 2000, lambda s: _int_in(s, 1, 600_000), "1–600000 之间的整数（毫秒）")
        log_level = get("LOG_LEVEL", "INFO", _parse_level, "DEBUG/INFO/WARNING/ERROR/CRITICAL 之一")
        replicas = get("STREAM_REPLICAS", 1, lambda s: _int_in(s, 1, 5), "1–5 之间的整数（生产环境 3）")
        grace = get("SHUTDOWN_GRACE_S", 5.0, lambda s: _float_in(s, 0, 3600), "0–3600 之间的秒数")
        upstream = {
            n: get(f"{n.upper()}_ADDR", None, lambda s: _addr(s, allow_zero=False), "上游服务地址 主机:端口")
            for n in ("members", "funds", "events")
        }
        pii_key_id = get("PII_KEY_ID", 1, lambda s: _int_in(s, 0, 255), "0–255 之间的整数")
        no_old_keys: dict[int, bytes] = {}
        old_keys = get("PII_OLD_KEYS", no_old_keys, _parse_old_keys, "编号:base64密钥，多项用逗号分隔")

        stored: dict[str, str] = {}
        if dev:
            try:
                stored = _dev_keys(data_dir)
            except (OSError, ValueError) as e:
                problems.append(
                    f"{data_dir / DEV_KEYS_FILE}: 开发密钥文件无法读写（{e}），请删除后重试或显式设置密钥变量"
                )

        def secret(name: str, parse: Callable[[str], T], expected: str) -> Any:
            var, raw = lookup(name)
            if raw is None:
                if name.lower() in stored:
                    raw = stored[name.lower()]
                else:
                    problems.append(f"{var}: 必须设置，{expected}（本地开发可设 JSX_DEV=1 自动生成）")
                    return None
            try:
                return parse(raw)
            except ValueError as e:
                problems.append(f"{var}: 应为{expected}（{e}）")
                return None

        b64_expected = "32字节随机数的 base64 编码（可用 python -m jsxcore.pii 生成）"
        pii_key = secret("PII_KEY", decode_key, b64_expected)
        blind_key = secret("BLIND_INDEX_KEY", decode_key, b64_expected)
        auth_secret = secret("AUTH_SECRET", _parse_auth_secret, "至少32个字符的随机字符串")
        if pii_key is not None and blind_key is not None and pii_key == blind_key:
            problems.append("JSX_BLIND_INDEX_KEY: 不能与 JSX_PII_KEY 相同，请分别生成")
        if pii_key_id in old_keys:
            problems.append(f"JSX_PII_OLD_KEYS: 不能包含当前密钥编号 {pii_key_id}（JSX_PII_KEY_ID）")

        if problems:
            raise ConfigError(f"服务 {service} 的配置有误：\n" + "\n".join(f"- {p}" for p in problems), problems)
        return cls(
            service=service,
            database_url=database_url,
            data_dir=data_dir,
            nats_url=nats_url,
            grpc_addr=grpc_addr,
            pii_key=pii_key,
            blind_index_key=blind_key,
            auth_secret=auth_secret,
            pii_key_id=pii_key_id,
            pii_old_keys=old_keys,
            plugins=plugins,
            plugin_timeout_ms=timeout,
            log_level=log_level,
            shutdown_grace_s=grace,
            stream_replicas=replicas,
            members_addr=upstream["members"],
            funds_addr=upstream["funds"],
            events_addr=upstream["events"],
            dev=dev,
        )


# ---------------------------------------------------------------- parsers


def _shown(name: str, raw: str) -> str:
    # Never echo anything that might be a secret into an error message.
    return "<已隐藏>" if "KEY" in name or "SECRET" in name else hide_password(raw)


def hide_password(url: str) -> str:
    """``postgresql://u:pw@h/db`` → ``postgresql://u:***@h/db`` (for logs and errors)."""
    return re.sub(r"(://[^:/@,]*:)[^@/,]*@", r"\1***@", url)


def _parse_bool(s: str) -> bool:
    v = s.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError("")


def _int_in(s: str, lo: int, hi: int) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", s):
        raise ValueError("不是整数")
    v = int(s)
    if not lo <= v <= hi:
        raise ValueError(f"{v} 超出范围")
    return v


def _float_in(s: str, lo: float, hi: float) -> float:
    if not re.fullmatch(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)", s):
        raise ValueError("不是数字")
    v = float(s)
    if not lo <= v <= hi:
        raise ValueError(f"{s} 超出范围")
    return v


def _parse_level(s: str) -> str:
    v = s.upper()
    v = "WARNING" if v == "WARN" else v
    if v not in _LOG_LEVELS:
        raise ValueError("")
    return v


def _addr(s: str, *, allow_zero: bool) -> str:
    split_host_port(s, allow_zero=allow_zero)
    return s


def _parse_db_url(s: str) -> str:
    scheme, sep, rest = s.partition("://")
    if not sep or scheme not in _DB_SCHEMES or not rest:
        raise ValueError(f"支持的类型：{', '.join(_DB_SCHEMES)}")
    return s


def _parse_nats_url(s: str) -> str:
    urls = [u.strip() for u in s.split(",") if u.strip()]
    for u in urls:
        scheme, sep, rest = u.partition("://")
        if not sep or scheme not in _NATS_SCHEMES or not rest:
            raise ValueError(f"“{u}”不是 nats://、tls://、ws:// 或 wss:// 地址")
    if not urls:
        raise ValueError("")
    return ",".join(urls)


def _parse_auth_secret(s: str) -> str:
    if len(s.encode("utf-8")) < 32:
        raise ValueError(f"只有 {len(s.encode('utf-8'))} 字节")
    return s


def _parse_old_keys(s: str) -> dict[int, bytes]:
    keys: dict[int, bytes] = {}
    for i, entry in enumerate(p.strip() for p in s.split(",") if p.strip()):
        kid_text, sep, key_text = entry.partition(":")
        if not sep:
            raise ValueError(f"第{i + 1}项缺少“编号:”")
        kid = _int_in(kid_text.strip(), 0, 255)
        if kid in keys:
            raise ValueError(f"密钥编号 {kid} 重复")
        try:
            keys[kid] = decode_key(key_text)
        except ValueError as e:
            raise ValueError(f"密钥 {kid}: {e}") from None
    return keys


def _dev_keys(data_dir: Path) -> dict[str, str]:
    """Load DATA_DIR/keys.json, creating it once with fresh keys.

    Several services of the local stack start at the same moment; the file is
    published with a hard link so exactly one writer wins and everyone reads
    the winner's keys.
    """
    path = data_dir / DEV_KEYS_FILE
    names = ("pii_key", "blind_index_key", "auth_secret")
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".{DEV_KEYS_FILE}.{os.getpid()}.{os.urandom(4).hex()}"
        tmp.write_text(json.dumps({n: generate_key() for n in names}, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # filesystems without hard links: best effort
            if not path.exists():
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or any(not isinstance(data.get(n), str) for n in names):
        raise ValueError(f"缺少 {', '.join(names)} 之一")
    return {n: data[n] for n in names}
