"""Sites on the wire: rows → ``jsx.members.v1`` responses and events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from jsx.members.v1 import events_pb2
from jsx.members.v1 import members_pb2 as pb
from jsx_members.adapters.pb import day, enum_out, region
from jsx_members.sites.domain import SIX_HAVES, SixHaves
from jsx_members.sites.tables import SiteRow
from jsxcore import wire

#: ``jsx.members.v1.SixHaves`` fields, in the order of :data:`SIX_HAVES` (场所 标识 制度 计划 活动 管理).
SIX_FIELDS: tuple[str, ...] = ("place", "sign", "rules", "plan", "activities", "management")


def six_haves(checklist: SixHaves) -> pb.SixHaves:
    return pb.SixHaves(**{f: item in checklist.have for f, item in zip(SIX_FIELDS, SIX_HAVES, strict=True)})


def site(x: SiteRow) -> pb.Site:
    return pb.Site(
        name=f"sites/{x.id}",
        display_name=x.name,
        kind=enum_out(pb.SiteKind, "SITE_KIND_", x.kind),
        village=region(x.village),
        address=x.address,
        six_haves=six_haves(SixHaves.stored(x.six_haves)),
        opened_date=day(x.opened_on),
        manager=f"persons/{x.manager_person_id}" if x.manager_person_id else "",
        create_time=wire.ts_to(x.created_at),
        update_time=wire.ts_to(x.updated_at),
        closed_date=day(x.closed_on),
        closed_reason=x.closed_reason or "",
    )


def site_list(rows: Sequence[SiteRow], next_page_token: str) -> pb.ListSitesResponse:
    return pb.ListSitesResponse(sites=[site(x) for x in rows], next_page_token=next_page_token)


def opened(x: SiteRow, opened_on: date) -> events_pb2.SiteOpened:
    return events_pb2.SiteOpened(
        site=f"sites/{x.id}",
        kind=enum_out(pb.SiteKind, "SITE_KIND_", x.kind),
        village=region(x.village),
        opened_date=day(opened_on),
    )


def closed(x: SiteRow, closed_on: date) -> events_pb2.SiteClosed:
    return events_pb2.SiteClosed(
        site=f"sites/{x.id}",
        kind=enum_out(pb.SiteKind, "SITE_KIND_", x.kind),
        village=region(x.village),
        closed_date=day(closed_on),
    )


__all__ = ["SIX_FIELDS", "closed", "opened", "site", "site_list", "six_haves"]
