"""JSON-lines logs on stderr, one object per line.

Fields: ``ts`` (ISO 8601, local offset), ``level``, ``service``, ``logger``,
``msg``; while serving an RPC also ``method``, ``request_id`` and ``caller``
(the subject, never a name or 身份证); any ``extra={...}`` fields; ``exc`` with
the traceback. Personal data is masked by :class:`jsxcore.pii.PiiRedactingFilter`
on the handler, so a stray 身份证 number in a message never reaches the log.
Request bodies are never logged.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TextIO

from jsxcore.pii import PiiRedactingFilter


@dataclass(slots=True)
class RpcInfo:
    """What the log needs to know about the RPC being served (one per call)."""

    method: str
    request_id: str = ""
    caller: str = ""
    #: final status code name, set by the error interceptor
    code: str = "OK"
    #: invocation metadata, fetched once per call (never logged)
    metadata: Any = ()


#: set by the access-log interceptor for the duration of one RPC
RPC: ContextVar[RpcInfo | None] = ContextVar("jsx_rpc", default=None)

# LogRecord attributes that are not user ``extra`` fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; non-ASCII kept readable (中文 stays 中文)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    _ts_second = -1
    _ts_prefix = ""
    _ts_zone = ""

    def _ts(self, created: float) -> str:
        # Formatting the date once per second keeps the access log cheap.
        second = int(created)
        if second != self._ts_second:
            t = time.localtime(second)
            z = time.strftime("%z", t)
            self._ts_second, self._ts_prefix, self._ts_zone = (
                second,
                time.strftime("%Y-%m-%dT%H:%M:%S", t),
                f"{z[:3]}:{z[3:]}",
            )
        return f"{self._ts_prefix}.{int((created - second) * 1000):03d}{self._ts_zone}"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self._ts(record.created),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rpc = RPC.get()
        if rpc is not None:
            out["method"] = rpc.method
            if rpc.request_id:
                out["request_id"] = rpc.request_id
            if rpc.caller:
                out["caller"] = rpc.caller
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(service: str, level: str | int = "INFO", *, stream: TextIO | None = None) -> logging.Handler:
    """Route every logger to one JSON handler on stderr (replacing earlier
    handlers, so calling it twice is harmless). Returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(PiiRedactingFilter())
    # The JSON lines carry none of these, so do not gather them per record
    # (the logging HOWTO's "Optimization" knobs): the caller's frame walk,
    # thread and process ids are a third of an access line's cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    return handler


__all__ = ["RPC", "JsonFormatter", "RpcInfo", "setup_logging"]
