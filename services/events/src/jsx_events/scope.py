"""The region scope a use case checks (DESIGN.md §3.8: a county clerk sees only that county).

Every use case takes ``caller=``: the :class:`~jsxcore.auth.Caller` the servicer
got from ``jsxcore.auth.current_caller()``, or ``None`` for the service's own
work and its operators' CLI on the service's database (no region limit).
"""

from __future__ import annotations

from jsxcore.auth import Caller
from jsxcore.errors import InvalidArgument
from jsxcore.values import RegionCode


def check_region(caller: Caller | None, region: RegionCode) -> None:
    """PermissionDenied (``OUT_OF_REGION``) unless ``region`` lies in the caller's scope."""
    if caller is not None:
        caller.require_region(region)


def region_asked(caller: Caller | None, region: RegionCode | None) -> RegionCode:
    """The region a list or report covers: the one asked for (none: the caller's own), inside the caller's scope."""
    if region is None:
        if caller is None:
            raise InvalidArgument.field(
                "region", "请填写行政区划代码（12位统计用区划代码，例如 431281101201）", reason="MISSING_REGION"
            )
        return caller.region
    check_region(caller, region)
    return region
