"""Who is calling and what they may do.

* A :class:`Caller` has roles and a region scope (a county clerk of 沅陵县
  holds ``431222``). Roles grant permissions through :data:`ROLE_PERMISSIONS`,
  the one table that says who may do what.
* Permissions are ``"<service>.<collection>.<verb>"`` strings declared on each
  RPC with the proto option ``(jsx.common.v1.permission)``; the runtime's auth
  interceptor checks them before the servicer runs and puts the caller where
  :func:`current_caller` finds it. Region scope is checked by the service on
  the resource it loads: ``current_caller().require_region(person.region)``.
* Tokens are JWT (HS256) with claims ``sub``, ``name``, ``roles``, ``region``,
  ``exp``, ``iss="jsx"``; ``jsx token issue`` mints one for a person or an
  integrating system.

Pattern syntax in the table: segments separated by ``.``; ``*`` matches one
segment, a trailing ``*`` matches one or more (``funds.*`` covers
``funds.applications.decide``). Wildcards never grant personal-data
permissions (any segment ``pii``): those are granted by name only, so a broad
grant cannot leak 身份证 numbers by accident; the same holds for segment
``payees`` (full names and 一卡通 card numbers, :data:`PAYEES_READ`).
"""

from __future__ import annotations

import argparse
import contextvars
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import jwt

from jsxcore.errors import ConfigError, InvalidArgument, PermissionDenied, Unauthenticated
from jsxcore.values import RegionCode

ISSUER = "jsx"
ALGORITHM = "HS256"
DEFAULT_TTL_S = 8 * 3600

#: Permission to see personal data (身份证 numbers, phones) unmasked.
PII_READ = "members.pii.read"

#: Permission to read payees' full names and 一卡通 card numbers
#: (MembersService.BatchGetPayees): the bank payment file needs the real card
#: number, so only the roles that produce or process it hold this —
#: ``finance_officer`` and ``system`` — and only by name (like PII_READ, no
#: wildcard grants it; not even ``admin``'s ``*`` or the auditor's ``*.*.read``).
PAYEES_READ = "members.payees.read"

#: Segments that only an exact grant unlocks (see :func:`pattern_grants`).
_NAMED_ONLY = frozenset({"pii", "payees"})

#: Role → granted permission patterns. Keep it readable: this table is what an
#: auditor reads to learn who may do what.
ROLE_PERMISSIONS: Mapping[str, tuple[str, ...]] = {
    # 县计生协 clerk: registers people, households, applications and
    # activities within the county, records objections brought in person;
    # cannot decide applications, move money or see full 身份证.
    "county_clerk": (
        "members.*.read",
        "members.*.write",
        "funds.*.read",
        "funds.applications.write",
        "funds.objections.create",
        "events.*.read",
        "events.*.write",
        "*.plugins.read",
    ),
    # 县 approver: the county step of DecideApplication, creates programs,
    # resolves 公示 objections.
    "county_approver": (
        "members.*.read",
        "funds.*.read",
        "events.*.read",
        "funds.applications.decide",
        "funds.objections.resolve",
        "funds.programs.create",
        "*.plugins.read",
    ),
    # 乡镇 reviewer: the township step of DecideApplication (the service
    # checks the step matches the caller's region level).
    "township_reviewer": (
        "members.*.read",
        "funds.*.read",
        "events.*.read",
        "funds.applications.decide",
        "funds.objections.create",
        "*.plugins.read",
    ),
    # 村 reviewer: the village step of DecideApplication.
    "village_reviewer": (
        "members.*.read",
        "funds.*.read",
        "events.*.read",
        "funds.applications.decide",
        "funds.objections.create",
        "*.plugins.read",
    ),
    # 财务: sources, funds, ledger, payments through 一卡通 and bank
    # results; pays to a person's card, so sees full identity data.
    "finance_officer": (
        "members.*.read",
        "funds.*.read",
        "events.*.read",
        "funds.funds.write",
        "funds.ledger.write",
        "funds.payments.write",
        "funds.bank_results.write",
        PII_READ,
        PAYEES_READ,
        "*.plugins.read",
    ),
    # 审计: reads everything, including personal data (every read audited).
    "auditor": ("*.*.read", "audit.*", PII_READ),
    # Operators: everything.
    "admin": ("*", PII_READ),
    # The public 公示 board (services/board): what is in 公示, paid lists
    # (masked names from members, never PII_READ or PAYEES_READ), objections
    # villagers lodge on it. Nothing else: no decisions, no writes but
    # objections, no households (family situations), no ledger.
    "public_board": (
        "funds.publicity.read",
        "funds.applications.read",
        "funds.programs.read",
        "funds.payments.read",
        "funds.objections.create",
        "members.persons.read",
        "*.plugins.read",
    ),
    # Integrating government systems (民政, 一卡通, 卫健): read, register
    # people and households, report bank results, record activities.
    "system": (
        "*.*.read",
        "members.persons.write",
        "members.households.write",
        "funds.bank_results.write",
        "events.activities.write",
        # The 一卡通 system and the funds service producing a bank file.
        PAYEES_READ,
    ),
}


def _compile(pattern: str) -> re.Pattern[str]:
    parts = pattern.split(".")
    out = []
    for i, part in enumerate(parts):
        if part == "*":
            out.append(r"[^.]+(?:\.[^.]+)*" if i == len(parts) - 1 else r"[^.]+")
        else:
            out.append(re.escape(part))
    return re.compile(r"\.".join(out))


@lru_cache(maxsize=4096)
def pattern_grants(pattern: str, permission: str) -> bool:
    """True if ``pattern`` grants ``permission`` (see the module doc for syntax)."""
    if pattern == permission:
        return True
    if "*" not in pattern:
        return False
    if not _NAMED_ONLY.isdisjoint(permission.split(".")):
        return False  # personal data and card numbers only by name
    return _compile(pattern).fullmatch(permission) is not None


@lru_cache(maxsize=4096)
def roles_grant(roles: tuple[str, ...], permission: str) -> bool:
    """True if any of ``roles`` grants ``permission``; unknown roles grant nothing."""
    return any(pattern_grants(p, permission) for r in roles for p in ROLE_PERMISSIONS.get(r, ()))


def _region_label(region: RegionCode) -> str:
    # 沅陵县, 洪江市黔城镇玉皇阁社区 (the region registry); the code when it is not listed
    from jsxcore.regions import registry

    known = registry().get(region)
    return known.local_name if known is not None else region.short


@dataclass(frozen=True)
class Caller:
    """A verified caller: a person or an integrating system."""

    subject: str
    display_name: str
    roles: tuple[str, ...]
    region: RegionCode
    #: token expiry (epoch seconds), for logs and diagnostics
    expires_at: int = 0

    def can(self, permission: str) -> bool:
        """True if the caller's roles grant ``permission`` (region not considered)."""
        return roles_grant(self.roles, permission)

    def require(self, permission: str) -> None:
        """Raise PermissionDenied unless the caller has ``permission``."""
        if not self.can(permission):
            raise PermissionDenied(
                f"您的角色（{'、'.join(self.roles) or '无'}）没有“{permission}”权限，请联系管理员开通",
                reason="MISSING_PERMISSION",
                metadata={"permission": permission},
            )

    def in_region(self, region: RegionCode | str) -> bool:
        return self.region.contains(RegionCode.parse(region))

    def require_region(self, region: RegionCode | str) -> None:
        """Raise PermissionDenied unless ``region`` lies within the caller's scope."""
        target = RegionCode.parse(region)
        if not self.region.contains(target):
            raise PermissionDenied(
                f"您只能查看或办理本辖区（{_region_label(self.region)}）的业务，"
                f"“{_region_label(target)}”不在您的辖区内",
                reason="OUT_OF_REGION",
                metadata={"caller_region": self.region.code, "region": target.code},
            )

    @property
    def may_see_pii(self) -> bool:
        """True if responses may carry unmasked 身份证 numbers and phones."""
        return self.can(PII_READ)


# ---------------------------------------------------------------- tokens


def issue_token(
    secret: str,
    subject: str,
    roles: Iterable[str],
    region: RegionCode | str,
    ttl: float = DEFAULT_TTL_S,
    *,
    name: str = "",
    now: float | None = None,
) -> str:
    """Mint a signed token. Unknown roles are refused so a typo cannot mint a
    token that silently grants nothing."""
    roles = tuple(roles)
    unknown = [r for r in roles if r not in ROLE_PERMISSIONS]
    if unknown or not roles:
        raise InvalidArgument.field(
            "roles",
            f"未知角色：{'、'.join(unknown) or '（未指定）'}；可用角色：{'、'.join(ROLE_PERMISSIONS)}",
            reason="UNKNOWN_ROLE",
        )
    if not subject:
        raise InvalidArgument.field("sub", "令牌主体（sub）不能为空", reason="MISSING_SUBJECT")
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "name": name or subject,
        "roles": list(roles),
        "region": RegionCode.parse(region, field="region").code,
        "iat": issued,
        "exp": issued + int(ttl),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Caller:
    """Check signature, issuer and expiry; return the Caller or raise Unauthenticated."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "sub", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("登录凭证已过期，请重新登录或申请新的访问令牌", reason="TOKEN_EXPIRED") from None
    except jwt.PyJWTError:
        raise Unauthenticated("访问令牌无效，请重新登录或向管理员申请令牌", reason="TOKEN_INVALID") from None
    roles = claims.get("roles")
    region = claims.get("region")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles) or not isinstance(region, str):
        raise Unauthenticated("访问令牌缺少角色或辖区信息，请向管理员重新申请令牌", reason="TOKEN_INVALID")
    try:
        region_code = RegionCode.parse(region)
    except InvalidArgument:
        raise Unauthenticated("访问令牌中的辖区代码无效，请向管理员重新申请令牌", reason="TOKEN_INVALID") from None
    return Caller(
        subject=str(claims["sub"]),
        display_name=str(claims.get("name") or claims["sub"]),
        roles=tuple(roles),
        region=region_code,
        expires_at=int(claims["exp"]),
    )


# ---------------------------------------------------------------- per-request caller

_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("jsx_caller", default=None)


def current_caller() -> Caller:
    """The verified caller of the RPC being served (set by the auth interceptor)."""
    caller = _CALLER.get()
    if caller is None:
        raise Unauthenticated("未识别调用者身份，请携带访问令牌后重试", reason="NO_CALLER")
    return caller


def set_caller(caller: Caller | None) -> contextvars.Token[Caller | None]:
    """Bind ``caller`` for the current task (the interceptor does this; CLI
    commands that call service code directly use it too)."""
    return _CALLER.set(caller)


def reset_caller(token: contextvars.Token[Caller | None]) -> None:
    _CALLER.reset(token)


# ---------------------------------------------------------------- CLI


def auth_secret() -> str:
    """The token secret: ``JSX_AUTH_SECRET`` when set (an operator minting
    tokens needs nothing else), else the full ServiceConfig (which also
    knows the local stack's dev keys under ``JSX_DEV=1``)."""
    secret = os.environ.get("JSX_AUTH_SECRET", "").strip()
    if secret:
        if len(secret.encode()) < 32:
            raise ConfigError("JSX_AUTH_SECRET 至少需要32个字符")
        return secret
    from jsxcore.config import ServiceConfig

    return ServiceConfig.from_env("token").auth_secret


def _parse_ttl(text: str) -> int:
    m = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"有效期“{text}”无效，例如 3600、30m、8h、7d")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _cmd_issue(args: argparse.Namespace) -> int:
    try:
        token = issue_token(auth_secret(), args.sub, args.role, args.region, args.ttl, name=args.name or "")
    except (ConfigError, InvalidArgument) as e:
        print(f"错误：{e}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _cmd_roles(args: argparse.Namespace) -> int:
    for role, perms in ROLE_PERMISSIONS.items():
        print(f"{role}: {', '.join(perms)}")
    return 0


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``jsx token issue`` / ``jsx token roles``."""
    p = sub.add_parser("token", help="访问令牌：签发、查看角色权限")
    tsub = p.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    issue = tsub.add_parser("issue", help="签发访问令牌（密钥取自 JSX_AUTH_SECRET）")
    issue.add_argument("--sub", required=True, help="主体：工号或系统名，如 clerk-001、yikatong")
    issue.add_argument("--role", action="append", required=True, choices=sorted(ROLE_PERMISSIONS), help="角色，可重复")
    issue.add_argument("--region", required=True, help="辖区代码，如 431222（沅陵县）")
    issue.add_argument("--name", help="显示名称，如 张三")
    issue.add_argument("--ttl", type=_parse_ttl, default=DEFAULT_TTL_S, help="有效期：秒数或 30m/8h/7d（默认 8h）")
    issue.set_defaults(func=_cmd_issue)
    roles = tsub.add_parser("roles", help="列出角色及其权限")
    roles.set_defaults(func=_cmd_roles)


__all__ = [
    "PAYEES_READ",
    "PII_READ",
    "ROLE_PERMISSIONS",
    "Caller",
    "current_caller",
    "issue_token",
    "pattern_grants",
    "register_cli",
    "reset_caller",
    "roles_grant",
    "set_caller",
    "verify_token",
]
