"""What every context's use cases read of their caller (passed in as ``caller=``).

``None`` is a trusted in-process caller (a CLI command run by the operator on
the host, an event consumer): no region scope applies and records name
``"system"``.
"""

from __future__ import annotations

from jsxcore.auth import Caller
from jsxcore.usecase import Idem
from jsxcore.values import RegionCode


def actor_of(caller: Caller | None) -> str:
    """Who the records name as the actor (``created_by``, ``actor`` columns)."""
    return caller.subject if caller is not None else "system"


def list_scope(region: RegionCode | None, caller: Caller | None) -> RegionCode | None:
    """The region a list covers: the asked one, which must lie in the caller's scope, else the caller's
    (``None``: every region, for a trusted caller that asked for none)."""
    if region is not None:
        if caller is not None:
            caller.require_region(region)
        return region
    return caller.region if caller is not None else None


def request_id_of(idem: Idem | None) -> str:
    """The AIP-155 ``request_id`` of the call, which journals, steps and withdrawals record ("" without one)."""
    return str(getattr(idem.request, "request_id", "")) if idem is not None else ""
