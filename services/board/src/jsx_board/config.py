"""The board's configuration, from environment variables only.

``BoardConfig.from_env()`` reads ``JSX_BOARD_<NAME>`` first and, for the
upstream addresses, the stack-wide ``JSX_<NAME>`` the services use too (an
empty value counts as unset). Every problem is collected and reported at once
in a :class:`jsxcore.errors.ConfigError` naming the variable.

=============================== ==============================================
JSX_BOARD_FUNDS_ADDR            funds gRPC ``host:port`` (else JSX_FUNDS_ADDR); required
JSX_BOARD_MEMBERS_ADDR          members gRPC ``host:port`` (else JSX_MEMBERS_ADDR);
                                optional: without it paid lists show no names
JSX_BOARD_TOKEN                 the board's own token (role ``public_board``),
JSX_BOARD_TOKEN_FILE            … or a file holding it (a mounted secret); one is required
JSX_BOARD_SECRET                at least 32 characters: signs objection references
                                and form tokens (keep it across restarts and replicas)
JSX_BOARD_BIND                  ``127.0.0.1:8080``: where the web app listens
JSX_BOARD_REGION                the region the board posts for, e.g. ``431281``;
                                default: the token's region
JSX_BOARD_TITLE                 ``计生协项目资金公示栏``
JSX_BOARD_GRPC_CA               a PEM CA bundle: gRPC over TLS to the services
                                (default: plaintext, for a local stack or a mesh)
JSX_BOARD_TRUSTED_PROXIES       comma-separated proxy addresses whose
                                ``X-Forwarded-For`` is believed (default: none)
JSX_BOARD_RATE_PAGES            ``120/m``: page views per client address
JSX_BOARD_RATE_OBJECTIONS       ``5/h``: objections per client address
JSX_BOARD_RATE_CONTACT          ``3/h``: objections per contact given
JSX_BOARD_GRPC_TIMEOUT_S        ``5``: per call to a service
JSX_DEV                         ``1``: JSX_BOARD_SECRET may be left out; one is kept
                                in ``JSX_DATA_DIR/board.key`` (created once)
JSX_LOG_LEVEL                   ``INFO``
=============================== ==============================================
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jsxcore.config import split_host_port
from jsxcore.errors import ConfigError, InvalidArgument
from jsxcore.values import RegionCode

DEFAULT_TITLE = "计生协项目资金公示栏"
_RATE_RE = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]*)\s*([smhd])\s*")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Rate:
    """``count`` events per ``per_s`` seconds: a token bucket of that size refilled evenly."""

    count: int
    per_s: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"5/h"``, ``"120/m"``, ``"3/12h"``; ValueError in Chinese when malformed."""
        m = _RATE_RE.fullmatch(text)
        if not m or int(m.group(1)) < 1:
            raise ValueError(f"“{text}”应写成 次数/时间，例如 5/h、120/m、3/12h（s 秒、m 分、h 时、d 天）")
        return cls(int(m.group(1)), float(int(m.group(2) or 1) * _UNIT_S[m.group(3)]))

    def __str__(self) -> str:
        return f"{self.count} 次/{_human(self.per_s)}"


def _human(seconds: float) -> str:
    for unit, size in (("天", 86400), ("小时", 3600), ("分钟", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return unit if n == 1 else f"{n} {unit}"
    return f"{seconds:g} 秒"


def token_region(token: str) -> str | None:
    """The ``region`` claim of a JWT, read *without* verifying it (only to pick the
    board's default region; the services verify the token on every call)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    region = claims.get("region") if isinstance(claims, dict) else None
    return region if isinstance(region, str) else None


@dataclass(frozen=True)
class BoardConfig:
    """Everything the board process needs. Secrets stay out of repr."""

    funds_addr: str
    token: str = field(repr=False)
    secret: bytes = field(repr=False)
    region: RegionCode
    members_addr: str | None = None
    bind: str = "127.0.0.1:8080"
    title: str = DEFAULT_TITLE
    grpc_ca: Path | None = None
    trusted_proxies: tuple[str, ...] = ()
    rate_pages: Rate = Rate(120, 60.0)
    rate_objections: Rate = Rate(5, 3600.0)
    rate_contact: Rate = Rate(3, 3600.0)
    grpc_timeout_s: float = 5.0
    log_level: str = "INFO"

    @property
    def host(self) -> str:
        return split_host_port(self.bind, allow_zero=True)[0].strip("[]")

    @property
    def port(self) -> int:
        return split_host_port(self.bind, allow_zero=True)[1]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BoardConfig:
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def get(name: str, *fallbacks: str) -> str:
            for key in (f"JSX_BOARD_{name}", *fallbacks):
                value = env.get(key, "").strip()
                if value:
                    return value
            return ""

        def addr(name: str, required: bool) -> str | None:
            value = get(f"{name}_ADDR", f"JSX_{name}_ADDR")
            if not value:
                if required:
                    problems.append(f"JSX_BOARD_{name}_ADDR（或 JSX_{name}_ADDR）未设置：应为服务的 主机:端口")
                return None
            try:
                split_host_port(value)
            except ValueError as e:
                problems.append(f"JSX_BOARD_{name}_ADDR=“{value}”：{e}")
                return None
            return value

        funds_addr = addr("FUNDS", True)
        members_addr = addr("MEMBERS", False)

        token = get("TOKEN")
        token_file = get("TOKEN_FILE")
        if not token and token_file:
            try:
                token = Path(token_file).read_text(encoding="utf-8").strip()
            except OSError as e:
                problems.append(f"JSX_BOARD_TOKEN_FILE=“{token_file}”无法读取：{e.strerror}")
        if not token and not token_file:
            problems.append(
                "JSX_BOARD_TOKEN（或 JSX_BOARD_TOKEN_FILE）未设置：用 jsx token issue --role public_board 签发"
            )

        dev = env.get("JSX_DEV", "").strip().lower() in _TRUE
        secret_text = get("SECRET")
        secret = b""
        if secret_text:
            if len(secret_text.encode()) < 32:
                problems.append("JSX_BOARD_SECRET 至少需要32个字符")
            secret = secret_text.encode()
        elif dev:
            secret = _dev_secret(Path(env.get("JSX_DATA_DIR", "").strip() or "data"))
        else:
            problems.append("JSX_BOARD_SECRET 未设置：至少32个字符（签发异议查询编号），多副本须相同")

        region_text = get("REGION") or (token_region(token) if token else "") or ""
        region = RegionCode.parse("430000")
        if not region_text:
            if token:
                problems.append("JSX_BOARD_REGION 未设置，且令牌中没有辖区")
        else:
            try:
                region = RegionCode.parse(region_text)
            except InvalidArgument:
                problems.append(f"JSX_BOARD_REGION=“{region_text}”不是有效的行政区划代码（6、9 或 12 位数字）")
            own = token_region(token) if token else None
            if own:
                try:
                    if not RegionCode.parse(own).contains(region):
                        problems.append(f"JSX_BOARD_REGION={region.short} 不在令牌的辖区 {own} 之内")
                except InvalidArgument:
                    pass  # the services reject such a token themselves

        bind = get("BIND") or "127.0.0.1:8080"
        try:
            split_host_port(bind, allow_zero=True)
        except ValueError as e:
            problems.append(f"JSX_BOARD_BIND=“{bind}”：{e}")

        ca_text = get("GRPC_CA")
        grpc_ca = Path(ca_text) if ca_text else None
        if grpc_ca is not None and not grpc_ca.is_file():
            problems.append(f"JSX_BOARD_GRPC_CA=“{ca_text}”不是可读的 PEM 文件")

        proxies: list[str] = []
        for raw in get("TRUSTED_PROXIES").split(","):
            if raw.strip():
                try:
                    proxies.append(str(ipaddress.ip_network(raw.strip(), strict=False)))
                except ValueError:
                    problems.append(f"JSX_BOARD_TRUSTED_PROXIES 中的“{raw.strip()}”不是 IP 地址或网段")

        def rate(name: str, default: Rate) -> Rate:
            text = get(name)
            if not text:
                return default
            try:
                return Rate.parse(text)
            except ValueError as e:
                problems.append(f"JSX_BOARD_{name}：{e}")
                return default

        rates = {
            "rate_pages": rate("RATE_PAGES", cls.rate_pages),
            "rate_objections": rate("RATE_OBJECTIONS", cls.rate_objections),
            "rate_contact": rate("RATE_CONTACT", cls.rate_contact),
        }
        timeout = 5.0
        timeout_text = get("GRPC_TIMEOUT_S")
        if timeout_text:
            try:
                timeout = float(timeout_text)
                if not 0 < timeout <= 120:
                    raise ValueError
            except ValueError:
                problems.append(f"JSX_BOARD_GRPC_TIMEOUT_S=“{timeout_text}”应为 0–120 之间的秒数")
                timeout = 5.0
        level = (env.get("JSX_LOG_LEVEL", "").strip() or "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            problems.append(f"JSX_LOG_LEVEL=“{level}”应为 DEBUG、INFO、WARNING、ERROR 或 CRITICAL")

        if problems:
            raise ConfigError("公示栏的配置有误：\n" + "\n".join(f"- {p}" for p in problems))
        assert funds_addr is not None
        return cls(
            funds_addr=funds_addr,
            members_addr=members_addr,
            token=token,
            secret=secret,
            region=region,
            bind=bind,
            title=get("TITLE") or DEFAULT_TITLE,
            grpc_ca=grpc_ca,
            trusted_proxies=tuple(proxies),
            grpc_timeout_s=timeout,
            log_level=level,
            **rates,
        )


def _dev_secret(data_dir: Path) -> bytes:
    """The local stack's board secret, created once under ``data_dir`` (JSX_DEV=1 only)."""
    path = data_dir / "board.key"
    try:
        return path.read_text(encoding="utf-8").strip().encode()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value)
        return value.encode()


__all__ = ["DEFAULT_TITLE", "BoardConfig", "Rate", "token_region"]
