"""Domain errors: the one vocabulary every layer raises.

Service code raises these; ``jsxcore.grpcutil.errors`` maps them, in one
place, to gRPC status codes with google.rpc rich details (ErrorInfo with
``reason`` and ``domain``, BadRequest field violations, a zh-CN
LocalizedMessage). Messages are written for a Chinese-speaking clerk: say what
is wrong and what to do, never internals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import grpc

#: ErrorInfo.domain for every error this platform raises.
ERROR_DOMAIN = "jsx.gov.cn"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: ``field`` is the request path (``person.id_number``,
    ``rows[12].身份证号``), ``description`` a Chinese sentence a clerk can act on."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every expected failure.

    ``reason`` is a stable UPPER_SNAKE_CASE identifier integrating systems can
    branch on; ``message`` is the zh-CN text shown to a person; ``metadata``
    goes into ErrorInfo.metadata (never put personal data there).
    """

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.FAILED_PRECONDITION
    default_reason: ClassVar[str] = "FAILED_PRECONDITION"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: Sequence[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.violations = list(violations)
        self.metadata = {k: str(v) for k, v in (metadata or {}).items()}

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"{type(self).__name__}({self.reason}: {self.message})"


class InvalidArgument(DomainError):
    """The request itself is wrong (bad 身份证 checksum, unknown region, …)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    @classmethod
    def field(cls, field: str, description: str, *, reason: str | None = None) -> InvalidArgument:
        """Shorthand for the common single-field case."""
        return cls(description, reason=reason, violations=[FieldViolation(field, description)])


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """The request is well-formed but the system's state forbids it now
    (fund cannot cover it, 公示 not over, objection pending, …)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(DomainError):
    """A concurrency conflict the caller may retry (etag mismatch, lost race)."""

    code = grpc.StatusCode.ABORTED
    default_reason = "ABORTED"


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class Unavailable(DomainError):
    """A dependency (another service, the broker) is down; retry later."""

    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class PluginError(FailedPrecondition):
    """A county rule plugin raised, returned the wrong type or timed out.

    Fails this call only; ``metadata`` names the plugin and hook.
    """

    default_reason = "PLUGIN_FAILED"


class ConfigError(Exception):
    """Bad or missing configuration at startup (not a request error).
    ``problems`` lists each one when several are reported together."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


@dataclass
class ErrorCollector:
    """Collects field violations so a whole request (or roster) is checked
    before anything is written, then raises them together."""

    violations: list[FieldViolation] = field(default_factory=list)

    def add(self, field_: str, description: str) -> None:
        self.violations.append(FieldViolation(field_, description))

    def __bool__(self) -> bool:
        return bool(self.violations)

    def raise_if_any(
        self, message: str = "请求有误，请按字段说明修改后重试", *, reason: str = "INVALID_ARGUMENT"
    ) -> None:
        if self.violations:
            raise InvalidArgument(message, reason=reason, violations=self.violations)
