"""``python -m jsx_board``: run the public 公示 board (configuration: JSX_BOARD_* environment, see jsx_board.config)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Iterator

import uvicorn

from jsx_board import regions
from jsx_board.app import create_app
from jsx_board.config import BoardConfig
from jsxcore.errors import ConfigError
from jsxcore.runtime.logging import setup_logging

log = logging.getLogger("jsx_board")


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising SIGTERM after a graceful stop: like the
    services, the board drains and exits 0 when an orchestrator stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        sigs = (signal.SIGINT, signal.SIGTERM)
        for sig in sigs:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)  # a second Ctrl-C forces the exit
        try:
            yield
        finally:
            for sig in sigs:
                loop.remove_signal_handler(sig)


async def serve(config: BoardConfig) -> None:
    app = create_app(config)
    sock = _socket(config.host, config.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    server = _Server(
        uvicorn.Config(
            app,
            log_config=None,  # our JSON handler (with the PII filter) gets uvicorn's records
            access_log=False,  # the app logs path and status itself, never query strings
            server_header=False,
            proxy_headers=False,  # X-Forwarded-For is read only from JSX_BOARD_TRUSTED_PROXIES
            timeout_graceful_shutdown=10,
            limit_concurrency=200,
            h11_max_incomplete_event_size=16 * 1024,
        )
    )
    log.info(
        "board listening",
        extra={
            "url": f"http://{shown}:{port}/",
            "funds": config.funds_addr,
            "members": config.members_addr or "",
            "region": config.region.code,
        },
    )
    print(f"公示栏已启动：http://{shown}:{port}/", flush=True)
    await server.serve(sockets=[sock])


def main() -> None:
    try:
        config = BoardConfig.from_env()
        regions.warm()  # JSX_REGIONS_FILE, when set, must be readable: say so at start, not on a page
    except ConfigError as e:
        print(f"jsx-board: {e}", file=sys.stderr)
        sys.exit(2)
    setup_logging("board", config.log_level)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
