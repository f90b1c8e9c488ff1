"""The region scope a use case checks (DESIGN.md §3.8: a county clerk sees only that county),
and the resources a request names, checked against events' own data.

Every use case takes ``caller=``: the :class:`~jsxcore.auth.Caller` the servicer
got from ``jsxcore.auth.current_caller()``, or ``None`` for the service's own
work and its operators' CLI on the service's database (no region limit).

A request that names a household, a site, a volunteer, a plan item or an activity is
checked with :class:`Named`: where the resource is comes from events' own data (its
tables, and the member projection fed by the members service's events), never from a
region the caller typed.
"""

from __future__ import annotations

from collections.abc import Iterable

from jsxcore.auth import Caller
from jsxcore.errors import ErrorCollector, InvalidArgument, PermissionDenied
from jsxcore.regions import registry
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


def place(region: RegionCode) -> str:
    """How a message names a place: ``洪江市托口镇马田村`` (the region registry), else the code."""
    known = registry().get(region)
    return known.local_name if known is not None else (region.name or region.short)


#: Reason of the INVALID_ARGUMENT a request naming an unknown resource gets.
UNKNOWN_REFERENCE = "UNKNOWN_REFERENCE"
#: Reason when every named resource exists but a field does not fit them.
INVALID_REFERENCE = "INVALID_REFERENCE"


class Named:
    """The resources one request names, checked together before anything is written.

    * A resource events does not know (not in its tables or the member projection) is an
      INVALID_ARGUMENT ``UNKNOWN_REFERENCE`` with one field violation per field that names one
      (AIP-193: a create request referring to something that does not exist is a bad
      argument, not a missing target; NOT_FOUND stays for the resource an RPC acts on).
      A field that does not fit the resources it goes with is ``INVALID_REFERENCE``.
    * A resource that lies outside the caller's scope is a PERMISSION_DENIED ``OUT_OF_REGION``
      whose message names the field and the resource (and ErrorInfo metadata ``field``,
      ``resource``, ``region``). Scope is checked first: it is the same answer whether or not
      the request also has other mistakes.
    """

    def __init__(self, caller: Caller | None) -> None:
        self.caller = caller
        self._bad = ErrorCollector()
        self._any_unknown = False
        self._denied: list[tuple[str, str, RegionCode]] = []

    def unknown(self, field: str, message: str) -> None:
        """``field`` names a resource events does not know; ``message`` says which, in Chinese."""
        self._bad.add(field, message)
        self._any_unknown = True

    def mismatch(self, field: str, message: str) -> None:
        """``field`` does not fit what the named resources are (a household's village typed wrong,
        a nominee outside the awarding association …): INVALID_ARGUMENT ``INVALID_REFERENCE``."""
        self._bad.add(field, message)

    def placed(self, field: str, resource: str, regions: Iterable[RegionCode]) -> None:
        """``field`` names ``resource``, which lies in ``regions`` (a volunteer may serve several
        villages): it must be inside the caller's scope — in at least one of them."""
        where = list(regions)
        if self.caller is None or not where:
            return
        if not any(self.caller.region.contains(r) for r in where):
            self._denied.append((field, resource, where[0]))

    def check(self, message: str = "请求中指明的对象有误，请按字段说明修改后重试") -> None:
        """Raise what was found: PERMISSION_DENIED first, then INVALID_ARGUMENT."""
        if self._denied and self.caller is not None:
            field, resource, region = self._denied[0]
            raise PermissionDenied(
                f"{resource}（{field}）属于{place(region)}，不在您的辖区（{place(self.caller.region)}）内，"
                "不能在本辖区的业务中使用",
                reason="OUT_OF_REGION",
                metadata={
                    "field": field,
                    "resource": resource,
                    "region": region.code,
                    "caller_region": self.caller.region.code,
                },
            )
        self._bad.raise_if_any(message, reason=UNKNOWN_REFERENCE if self._any_unknown else INVALID_REFERENCE)
