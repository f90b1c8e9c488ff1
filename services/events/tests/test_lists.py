"""Every list RPC pages with jsxcore.paging: a keyset token bound to the RPC and its filter.

A token from another filter (or another list), a forged one, a huge one or an old offset
token is INVALID_ARGUMENT on ``page_token``; walking the pages sees every row once, in order.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from jsx.common.v1 import common_pb2 as cpb
from jsx.events.v1 import events_service_pb2 as pb
from jsxcore.runtime.errors import error_details
from jsxcore.testing.helpers import rid

VILLAGE, OTHER_VILLAGE = "431281101201", "431281101202"
COUNTY = cpb.RegionCode(code="431281")


def day(month: int, d: int) -> cpb.Date:
    return cpb.Date(year=2022, month=month, day=d)


async def seed(s, md, members) -> None:
    """Five held activities (two on one day), five visits, plans for two years and sites, awards for two years."""
    for n in range(5):
        await members.household(f"households/hh-{n}", VILLAGE)
    await members.pairing("volunteers/v1", "households/hh-0", VILLAGE)
    for site in ("sites/warm-1", "sites/warm-2"):
        await members.site(site, VILLAGE)
    for n, (m, d) in enumerate(((3, 1), (5, 9), (5, 9), (7, 2), (9, 30))):
        await s.CreateActivity(
            pb.CreateActivityRequest(
                request_id=rid(),
                activity=pb.Activity(
                    display_name=f"活动{n}",
                    type=pb.ACTIVITY_TYPE_FREE_CLINIC,
                    organiser_region=cpb.RegionCode(code=VILLAGE if n % 2 else OTHER_VILLAGE),
                    state=pb.ACTIVITY_STATE_HELD,
                    held_date=day(m, d),
                ),
            ),
            metadata=md,
        )
        await s.RecordVisit(
            pb.RecordVisitRequest(
                request_id=rid(),
                visit=pb.Visit(
                    household=f"households/hh-{n}",
                    region=cpb.RegionCode(code=VILLAGE),
                    visitor="volunteers/v1",
                    visit_date=day(m, d),
                ),
            ),
            metadata=md,
        )
    for year in (2022, 2023):
        for site in ("", "sites/warm-1", "sites/warm-2"):
            await s.CreatePlan(
                pb.CreatePlanRequest(
                    request_id=rid(),
                    plan=pb.Plan(
                        region=cpb.RegionCode(code=VILLAGE),
                        site=site,
                        year=year,
                        items=[pb.PlanItem(type=pb.ACTIVITY_TYPE_FREE_CLINIC, count=1)],
                    ),
                ),
                metadata=md,
            )
        for nominee in ("households/hh-1", "households/hh-2"):
            await s.DecideAward(
                pb.DecideAwardRequest(
                    request_id=rid(),
                    award=pb.Award(
                        kind="幸福家庭",
                        nominee=nominee,
                        region=cpb.RegionCode(code=VILLAGE),
                        year=year,
                        decision=pb.AWARD_DECISION_APPROVED,
                    ),
                ),
                metadata=md,
            )


#: rpc, its request for the county, the same request with another filter, the repeated field
LISTS: dict[str, tuple[Any, Any, str]] = {
    "ListActivities": (
        pb.ListActivitiesRequest(region=COUNTY),
        pb.ListActivitiesRequest(region=COUNTY, state=pb.ACTIVITY_STATE_HELD),
        "activities",
    ),
    "ListVisits": (
        pb.ListVisitsRequest(region=COUNTY),
        pb.ListVisitsRequest(region=cpb.RegionCode(code=VILLAGE)),
        "visits",
    ),
    "ListPlans": (pb.ListPlansRequest(region=COUNTY), pb.ListPlansRequest(region=COUNTY, year=2022), "plans"),
    "ListAwards": (pb.ListAwardsRequest(region=COUNTY), pb.ListAwardsRequest(region=COUNTY, year=2023), "awards"),
}


async def walk(call: Callable[[Any], Awaitable[Any]], request: Any, field: str, size: int = 2) -> list[Any]:
    """Every page of ``request`` at ``size`` rows per page."""
    out, token = [], ""
    for _ in range(20):
        req = type(request)()
        req.CopyFrom(request)
        req.page_size, req.page_token = size, token
        resp = await call(req)
        page = list(getattr(resp, field))
        assert len(page) <= size
        out += page
        token = resp.next_page_token
        if not token:
            return out
    raise AssertionError("the pages never end")


def refused_token(e: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> str:
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, br, _ = error_details(e.value)
    assert br is not None and [v.field for v in br.field_violations] == ["page_token"]
    assert info is not None
    return str(info.reason)


async def test_pages_see_every_row_once_in_order_and_tokens_are_bound_to_the_query(events) -> None:
    s, md = events.stub, events.md()
    await seed(s, md, events.members)

    acts = await walk(lambda r: s.ListActivities(r, metadata=md), LISTS["ListActivities"][0], "activities")
    assert len({a.name for a in acts}) == len(acts) == 5
    days = [(a.held_date.month, a.held_date.day) for a in acts]
    assert days == sorted(days, reverse=True)  # newest first, as before
    same_day = [a.name for a in acts if (a.held_date.month, a.held_date.day) == (5, 9)]
    assert same_day == sorted(same_day)  # ties by id, so a page boundary between them loses nothing
    one_page = (await s.ListActivities(pb.ListActivitiesRequest(region=COUNTY), metadata=md)).activities
    assert [a.name for a in one_page] == [a.name for a in acts]
    visits = await walk(lambda r: s.ListVisits(r, metadata=md), LISTS["ListVisits"][0], "visits")
    assert len({v.name for v in visits}) == 5
    plans = await walk(lambda r: s.ListPlans(r, metadata=md), LISTS["ListPlans"][0], "plans")
    assert len({p.name for p in plans}) == 6 and [p.year for p in plans] == [2022] * 3 + [2023] * 3
    awards = await walk(lambda r: s.ListAwards(r, metadata=md), LISTS["ListAwards"][0], "awards", size=3)
    assert len({a.name for a in awards}) == 4 and [a.year for a in awards] == [2022, 2022, 2023, 2023]
    # a filter narrows what the pages walk
    held_2022 = await walk(lambda r: s.ListPlans(r, metadata=md), LISTS["ListPlans"][1], "plans")
    assert len(held_2022) == 3

    tokens = {}
    for rpc, (request, other, _) in LISTS.items():
        call = getattr(s, rpc)
        first = type(request)()
        first.CopyFrom(request)
        first.page_size = 1
        token = (await call(first, metadata=md)).next_page_token
        assert token
        tokens[rpc] = token

        # the same token with another filter: refused, not an unrelated page
        moved = type(other)()
        moved.CopyFrom(other)
        moved.page_size, moved.page_token = 1, token
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call(moved, metadata=md)
        assert refused_token(e) == "PAGE_TOKEN_MISMATCH", rpc

        # forged (one character changed), huge, or today's old offset tokens: refused
        flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
        for bad in (flipped, "A" * 100_000, base64.urlsafe_b64encode(b"50").decode(), "not-a-token"):
            req = type(request)()
            req.CopyFrom(request)
            req.page_token = bad
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await call(req, metadata=md)
            assert refused_token(e) == "INVALID_PAGE_TOKEN", (rpc, bad[:20])

    # a token of one list is not a token of another
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.ListVisits(pb.ListVisitsRequest(region=COUNTY, page_token=tokens["ListActivities"]), metadata=md)
    assert refused_token(e) == "PAGE_TOKEN_MISMATCH"
    # the region a token was issued for is part of the filter even when it was the caller's default
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.ListActivities(
            pb.ListActivitiesRequest(page_token=tokens["ListActivities"]),
            metadata=events.md(region=VILLAGE, subject="clerk-2"),
        )
    assert refused_token(e) == "PAGE_TOKEN_MISMATCH"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.ListActivities(pb.ListActivitiesRequest(region=COUNTY, page_size=-1), metadata=md)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
