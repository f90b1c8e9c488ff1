"""Core ``jsx`` sub-commands that belong to no single service
(``jsx plugins …``, ``jsx token …``, ``jsx regions …``, ``jsx migrate …``, ``jsx backup …``, ``jsx restore …``). Each module adding commands here keeps
its own ``register_*`` function; this file only wires them."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for modname in ("jsxcore.plugins", "jsxcore.auth", "jsxcore.regions", "jsxcore.migrations", "jsxcore.backup"):
        try:
            mod = __import__(modname, fromlist=["register_cli"])
        except ImportError:  # module not written yet during bootstrap
            continue
        reg = getattr(mod, "register_cli", None)
        if reg is not None:
            reg(sub)
