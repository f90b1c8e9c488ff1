"""What the one-command local stack needs to run the board beside the services.

The stack (``dev.py up``, ``tools/jsxdev/src/jsx_dev/stack.py``) starts
``python -m jsx_board`` with :func:`stack_env` merged into its environment,
waits for ``GET /readyz`` to answer 200, prints the URL and stops it first on
Ctrl-C; its log is ``<data>/logs/board.log``::

    env = base_env | stack_env(funds_addr=..., members_addr=..., auth_secret=cfg.auth_secret,
                               data_dir=data_dir, bind=f"127.0.0.1:{free_port()}")
    Child("board", [sys.executable, "-m", "jsx_board"], env, logs / "board.log").start()
"""

from __future__ import annotations

from pathlib import Path

from jsxcore.auth import issue_token

#: The local stack's board posts for 怀化市, which covers every seed county.
LOCAL_REGION = "431200"
#: A local token outlives any dev session; production tokens are issued by an operator.
LOCAL_TTL_S = 30 * 86400


def stack_env(
    *,
    funds_addr: str,
    members_addr: str,
    auth_secret: str,
    data_dir: str | Path,
    bind: str,
    region: str = LOCAL_REGION,
) -> dict[str, str]:
    """Environment for a board process of the local stack: its own ``public_board`` token
    signed with the stack's dev secret, and JSX_DEV=1 so its reference secret is kept in
    ``<data_dir>/board.key``."""
    token = issue_token(auth_secret, "board-local", ["public_board"], region, ttl=LOCAL_TTL_S, name="本地公示栏")
    return {
        "JSX_BOARD_FUNDS_ADDR": funds_addr,
        "JSX_BOARD_MEMBERS_ADDR": members_addr,
        "JSX_BOARD_TOKEN": token,
        "JSX_BOARD_BIND": bind,
        "JSX_BOARD_REGION": region,
        "JSX_DEV": "1",
        "JSX_DATA_DIR": str(data_dir),
    }


__all__ = ["LOCAL_REGION", "stack_env"]
