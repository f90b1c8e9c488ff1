"""Service runtime: gRPC server with health, reflection, error mapping,
authorisation and JSON logs; graceful shutdown. See ``server.py`` for the
entry points and ``docs/architecture.md`` for where it sits."""

from jsxcore.runtime.errors import error_details, rich_status
from jsxcore.runtime.interceptors import method_permission
from jsxcore.runtime.logging import setup_logging
from jsxcore.runtime.server import (
    ServiceRuntime,
    create_server,
    health_of,
    list_plugins_response,
    run_service,
    serve_until_signal,
    shutdown_server,
    start_server,
)

__all__ = [
    "ServiceRuntime",
    "create_server",
    "error_details",
    "health_of",
    "list_plugins_response",
    "method_permission",
    "rich_status",
    "run_service",
    "serve_until_signal",
    "setup_logging",
    "shutdown_server",
    "start_server",
]
