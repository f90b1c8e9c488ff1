"""The one place where exceptions become gRPC statuses.

Server side: :func:`status_for` turns a :class:`jsxcore.errors.DomainError`
into a ``google.rpc.Status`` carrying ``ErrorInfo`` (reason, domain,
metadata), ``BadRequest`` (field violations, when any) and a zh-CN
``LocalizedMessage``; :func:`internal_status` does the same for an unexpected
exception without revealing anything about it except a reference id that is
also logged next to the traceback.

Client side: :func:`error_details` unpacks those details from a caught
``grpc.RpcError`` (sync or aio), for tests and integrating callers.
"""

from __future__ import annotations

import uuid
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from jsxcore.errors import ERROR_DOMAIN, DomainError

LOCALE = "zh-CN"
INTERNAL_MESSAGE = "系统内部错误，请稍后重试或联系管理员"
INTERNAL_REASON = "INTERNAL"
#: trailing-metadata key the rich status travels in (set by grpcio-status).
_DETAILS_KEY = "grpc-status-details-bin"


def _status(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    metadata: dict[str, str],
    violations: list[error_details_pb2.BadRequest.FieldViolation] | None = None,
) -> status_pb2.Status:
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata))
    if violations:
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=violations))
    status.details.add().Pack(error_details_pb2.LocalizedMessage(locale=LOCALE, message=message))
    return status


def status_for(error: DomainError) -> status_pb2.Status:
    """The rich ``google.rpc.Status`` for a domain error."""
    violations = [
        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description) for v in error.violations
    ]
    return _status(error.code, error.message, error.reason, dict(error.metadata), violations)


def new_error_ref() -> str:
    """A short id a clerk can read out over the phone; it ties the reply to the log line."""
    return uuid.uuid4().hex[:12]


def internal_status(error_ref: str) -> status_pb2.Status:
    """INTERNAL with a generic message: the exception's text never leaves the server."""
    message = f"{INTERNAL_MESSAGE}（错误编号：{error_ref}）"
    return _status(grpc.StatusCode.INTERNAL, message, INTERNAL_REASON, {"error_ref": error_ref})


def to_grpc_status(status: status_pb2.Status) -> grpc.Status:
    """For ``context.abort_with_status``."""
    return rpc_status.to_status(status)


def _trailing(rpc_error: grpc.RpcError) -> tuple[tuple[str, bytes | str], ...]:
    # typed as _Metadatum objects by types-grpcio; a failed call really gives (key, value) pairs
    md: Any = rpc_error.trailing_metadata()
    return tuple(md or ())


def rich_status(rpc_error: grpc.RpcError) -> status_pb2.Status | None:
    """The ``google.rpc.Status`` a server attached to an error, if any.

    Works on both sync ``grpc.RpcError`` and ``grpc.aio.AioRpcError`` (whose
    accessors are plain methods once the call has failed).
    """
    for key, value in _trailing(rpc_error):
        if key == _DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


def error_details(
    rpc_error: grpc.RpcError,
) -> tuple[
    error_details_pb2.ErrorInfo | None,
    error_details_pb2.BadRequest | None,
    error_details_pb2.LocalizedMessage | None,
]:
    """Unpack ``(ErrorInfo, BadRequest, LocalizedMessage)`` from a failed call;
    each is None when the server did not send it."""
    info = bad = loc = None
    status = rich_status(rpc_error)
    if status is not None:
        for any_ in status.details:
            if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                any_.Unpack(info)
            elif any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                any_.Unpack(bad)
            elif any_.Is(error_details_pb2.LocalizedMessage.DESCRIPTOR):
                loc = error_details_pb2.LocalizedMessage()
                any_.Unpack(loc)
    return info, bad, loc


__all__ = [
    "INTERNAL_MESSAGE",
    "LOCALE",
    "error_details",
    "internal_status",
    "new_error_ref",
    "rich_status",
    "status_for",
    "to_grpc_status",
]
