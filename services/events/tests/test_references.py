"""Every resource an events RPC names is checked against events' own data (issue 16, "Cross-county
links are not checked in events"; issue 13, "validates that each exists"), over real gRPC on
SQLite and PostgreSQL.

* Outside the caller's scope → PERMISSION_DENIED ``OUT_OF_REGION``, ErrorInfo metadata naming the
  field and the resource: a 沅陵 clerk cannot record a visit (with 沅陵 慰问金) for a 洪江 household,
  an award for a 洪江 site or an activity at a 洪江 site.
* Unknown (not in events' member projection or its own tables) → INVALID_ARGUMENT
  ``UNKNOWN_REFERENCE`` with a BadRequest violation per field; a field that does not fit the
  resources (the household's village typed wrong, a nominee outside the awarding association) →
  INVALID_ARGUMENT ``INVALID_REFERENCE``.
* A refused request leaves nothing behind: no row, no outbox event.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import func, select

from jsx.common.v1 import common_pb2 as cpb
from jsx.events.v1 import events_service_pb2 as pb
from jsxcore.outbox import OutboxEvent
from jsxcore.runtime.errors import error_details
from jsxcore.testing.helpers import rid

HJ_VILLAGE = "431281101002"  # 洪江市黔城镇玉皇阁社区
YL_VILLAGE = "431222102204"  # 沅陵县麻溪铺镇仰溪铺村
YL_OTHER = "431222102001"  # 沅陵县麻溪铺镇麻溪铺社区


@pytest.fixture
async def two_counties(events):
    """A household, a volunteer and sites in each county, as the members service published them."""
    m = events.members
    await m.pairing("volunteers/hj-v", "households/hj-hh", HJ_VILLAGE)
    await m.pairing("volunteers/yl-v", "households/yl-hh", YL_VILLAGE)
    await m.site("sites/hj-warm", HJ_VILLAGE)
    await m.site("sites/yl-home", YL_VILLAGE)
    return events


def yl(events) -> list[tuple[str, str]]:
    return events.md(region="431222", subject="clerk-yl")


def hj(events) -> list[tuple[str, str]]:
    return events.md(region="431281", subject="clerk-hj")


def visit(**kw) -> pb.Visit:
    fields = {
        "household": "households/yl-hh",
        "region": cpb.RegionCode(code=YL_VILLAGE),
        "visitor": "volunteers/yl-v",
        "visit_date": cpb.Date(year=2022, month=9, day=10),
        "money": cpb.Money(fen=50000),
        "fund": "funds/7",  # a 沅陵 慰问金 fund (funds checks the fund itself when it books)
    }
    return pb.Visit(**{**fields, **kw})


def activity(**kw) -> pb.Activity:
    fields = {
        "display_name": "仰溪铺村5.29会员活动日",
        "type": pb.ACTIVITY_TYPE_MEMBER_DAY_0529,
        "organiser_region": cpb.RegionCode(code=YL_VILLAGE),
        "state": pb.ACTIVITY_STATE_HELD,
        "held_date": cpb.Date(year=2022, month=5, day=29),
    }
    return pb.Activity(**{**fields, **kw})


def award(**kw) -> pb.Award:
    fields = {
        "kind": "幸福好家庭",
        "nominee": "households/yl-hh",
        "region": cpb.RegionCode(code=YL_VILLAGE),
        "year": 2022,
        "decision": pb.AWARD_DECISION_APPROVED,
    }
    return pb.Award(**{**fields, **kw})


async def refused(call, request, metadata) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call(request, metadata=metadata)
    return e.value


def out_of_region(e: grpc.aio.AioRpcError, field: str) -> str:
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e.details()
    info, _, _ = error_details(e)
    assert info is not None and info.reason == "OUT_OF_REGION"
    assert info.metadata["field"] == field, dict(info.metadata)
    return str(e.details())


def bad_fields(e: grpc.aio.AioRpcError, reason: str = "UNKNOWN_REFERENCE") -> dict[str, str]:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    info, br, _ = error_details(e)
    assert info is not None and info.reason == reason, info
    assert br is not None
    return {v.field: v.description for v in br.field_violations}


async def nothing_written(events) -> None:
    async with events.svc.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(OutboxEvent)) == 0
    for rpc, req, field in (
        ("ListVisits", pb.ListVisitsRequest(region=cpb.RegionCode(code="431222")), "visits"),
        ("ListActivities", pb.ListActivitiesRequest(region=cpb.RegionCode(code="431222")), "activities"),
        ("ListAwards", pb.ListAwardsRequest(region=cpb.RegionCode(code="431222")), "awards"),
        ("ListPlans", pb.ListPlansRequest(region=cpb.RegionCode(code="431222")), "plans"),
    ):
        assert not getattr(await getattr(events.stub, rpc)(req, metadata=yl(events)), field), rpc


async def test_a_clerk_cannot_name_another_countys_household_site_volunteer_or_activity(two_counties) -> None:
    ev, s = two_counties, two_counties.stub
    # A visit with 沅陵 慰问金 for a 洪江 household: the household's village comes from the projection.
    e = await refused(
        s.RecordVisit, pb.RecordVisitRequest(request_id=rid(), visit=visit(household="households/hj-hh")), yl(ev)
    )
    msg = out_of_region(e, "visit.household")
    assert "households/hj-hh" in msg and "洪江市黔城镇玉皇阁社区" in msg and "沅陵县" in msg
    # …typing the 洪江 village instead is refused on the typed region, as before
    e = await refused(
        s.RecordVisit,
        pb.RecordVisitRequest(
            request_id=rid(), visit=visit(household="households/hj-hh", region=cpb.RegionCode(code=HJ_VILLAGE))
        ),
        yl(ev),
    )
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    # A 洪江 volunteer, a 洪江 site on a 沅陵 household's visit.
    e = await refused(
        s.RecordVisit, pb.RecordVisitRequest(request_id=rid(), visit=visit(visitor="volunteers/hj-v")), yl(ev)
    )
    assert "volunteers/hj-v" in out_of_region(e, "visit.visitor")
    e = await refused(s.RecordVisit, pb.RecordVisitRequest(request_id=rid(), visit=visit(site="sites/hj-warm")), yl(ev))
    out_of_region(e, "visit.site")
    # An award for a 洪江 site, an activity at a 洪江 site, a site plan for one.
    e = await refused(
        s.DecideAward, pb.DecideAwardRequest(request_id=rid(), award=award(nominee="sites/hj-warm")), yl(ev)
    )
    out_of_region(e, "award.nominee")
    e = await refused(
        s.CreateActivity, pb.CreateActivityRequest(request_id=rid(), activity=activity(site="sites/hj-warm")), yl(ev)
    )
    out_of_region(e, "activity.site")
    plan = pb.Plan(
        region=cpb.RegionCode(code=YL_VILLAGE),
        site="sites/hj-warm",
        year=2022,
        items=[pb.PlanItem(type=pb.ACTIVITY_TYPE_FREE_CLINIC, count=1)],
    )
    e = await refused(s.CreatePlan, pb.CreatePlanRequest(request_id=rid(), plan=plan), yl(ev))
    out_of_region(e, "plan.site")
    # A 洪江 selection activity on a 沅陵 award (created by the 洪江 clerk).
    hj_act = await s.CreateActivity(
        pb.CreateActivityRequest(
            request_id=rid(),
            activity=activity(organiser_region=cpb.RegionCode(code=HJ_VILLAGE), type=pb.ACTIVITY_TYPE_AWARD_SELECTION),
        ),
        metadata=hj(ev),
    )
    async with ev.svc.sessions() as session:
        for row in await session.scalars(select(OutboxEvent)):  # its ActivityHeld: not the 沅陵 clerk's doing
            await session.delete(row)
        await session.commit()
    e = await refused(s.DecideAward, pb.DecideAwardRequest(request_id=rid(), award=award(activity=hj_act.name)), yl(ev))
    out_of_region(e, "award.activity")
    await nothing_written(ev)

    # The same requests with 沅陵's own resources are accepted.
    v = await s.RecordVisit(pb.RecordVisitRequest(request_id=rid(), visit=visit(site="sites/yl-home")), metadata=yl(ev))
    assert v.state == pb.VISIT_STATE_PENDING and v.household == "households/yl-hh" and v.site == "sites/yl-home"
    a = await s.DecideAward(pb.DecideAwardRequest(request_id=rid(), award=award()), metadata=yl(ev))
    assert a.nominee == "households/yl-hh" and a.nominee_region.code == YL_VILLAGE  # from the projection
    act = await s.CreateActivity(
        pb.CreateActivityRequest(request_id=rid(), activity=activity(site="sites/yl-home")), metadata=yl(ev)
    )
    # …but an own activity cannot be moved to the other county's site.
    e = await refused(
        s.UpdateActivity,
        pb.UpdateActivityRequest(
            request_id=rid(),
            activity=pb.Activity(name=act.name, site="sites/hj-warm"),
            update_mask=FieldMask(paths=["site"]),
        ),
        yl(ev),
    )
    out_of_region(e, "activity.site")
    got = await s.GetActivity(pb.GetActivityRequest(name=act.name), metadata=yl(ev))
    assert got.site == "sites/yl-home"


async def test_unknown_resources_are_invalid_arguments_naming_each_field(two_counties) -> None:
    ev, s = two_counties, two_counties.stub
    md = yl(ev)
    # Unknown household, site and volunteer: one INVALID_ARGUMENT, a violation for each.
    e = await refused(
        s.RecordVisit,
        pb.RecordVisitRequest(
            request_id=rid(),
            visit=visit(household="households/nope", site="sites/nowhere", visitor="volunteers/nobody"),
        ),
        md,
    )
    v = bad_fields(e)
    assert list(v) == ["visit.household", "visit.site", "visit.visitor"]
    assert "households/nope 不存在" in v["visit.household"] and "sites/nowhere 不存在" in v["visit.site"]
    assert "volunteers/nobody 不存在或尚未结对" in v["visit.visitor"]
    # The household's village typed wrong; a visitor that is neither a volunteer nor a person.
    e = await refused(
        s.RecordVisit,
        pb.RecordVisitRequest(request_id=rid(), visit=visit(region=cpb.RegionCode(code=YL_OTHER), visitor="王某")),
        md,
    )
    v = bad_fields(e, "INVALID_REFERENCE")
    assert set(v) == {"visit.region", "visit.visitor"}
    assert "沅陵县麻溪铺镇仰溪铺村" in v["visit.region"] and "volunteers/编号" in v["visit.visitor"]
    # A doubled prefix is a malformed name, as everywhere.
    e = await refused(
        s.RecordVisit, pb.RecordVisitRequest(request_id=rid(), visit=visit(household="households/households/yl-hh")), md
    )
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Activities and plans: an unknown site; a site plan whose site is in another village.
    e = await refused(
        s.CreateActivity, pb.CreateActivityRequest(request_id=rid(), activity=activity(site="sites/nowhere")), md
    )
    assert list(bad_fields(e)) == ["activity.site"]
    items = [pb.PlanItem(type=pb.ACTIVITY_TYPE_FREE_CLINIC, count=1)]
    e = await refused(
        s.CreatePlan,
        pb.CreatePlanRequest(
            request_id=rid(),
            plan=pb.Plan(region=cpb.RegionCode(code=YL_VILLAGE), site="sites/nowhere", year=2022, items=items),
        ),
        md,
    )
    assert list(bad_fields(e)) == ["plan.site"]
    e = await refused(
        s.CreatePlan,
        pb.CreatePlanRequest(
            request_id=rid(),
            plan=pb.Plan(region=cpb.RegionCode(code=YL_OTHER), site="sites/yl-home", year=2022, items=items),
        ),
        md,
    )
    assert "阵地计划请填写阵地所在村" in bad_fields(e, "INVALID_REFERENCE")["plan.site"]
    # Awards: unknown nominee, region and activity; a bare id; a nominee of another association;
    # a nominee region that is not where the household is.
    for nominee in ("households/nope", "regions/431222999999"):
        e = await refused(s.DecideAward, pb.DecideAwardRequest(request_id=rid(), award=award(nominee=nominee)), md)
        assert list(bad_fields(e)) == ["award.nominee"], nominee
    e = await refused(
        s.DecideAward, pb.DecideAwardRequest(request_id=rid(), award=award(activity="activities/nope")), md
    )
    assert list(bad_fields(e)) == ["award.activity"]
    e = await refused(s.DecideAward, pb.DecideAwardRequest(request_id=rid(), award=award(nominee="yl-hh")), md)
    assert "格式不对" in bad_fields(e, "INVALID_REFERENCE")["award.nominee"]
    e = await refused(
        s.DecideAward,
        pb.DecideAwardRequest(request_id=rid(), award=award(region=cpb.RegionCode(code=YL_OTHER))),
        md,
    )
    assert "不在评选单位" in bad_fields(e, "INVALID_REFERENCE")["award.nominee"]
    e = await refused(
        s.DecideAward,
        pb.DecideAwardRequest(request_id=rid(), award=award(nominee_region=cpb.RegionCode(code=YL_OTHER))),
        md,
    )
    assert list(bad_fields(e, "INVALID_REFERENCE")) == ["award.nominee_region"]
    await nothing_written(ev)

    # What events cannot check (persons are not projected) is taken as named; a village nominee
    # is checked against the region registry.
    v = await s.RecordVisit(
        pb.RecordVisitRequest(request_id=rid(), visit=visit(visitor="persons/staff-1", money=cpb.Money())), metadata=md
    )
    assert v.visitor == "persons/staff-1" and v.state == pb.VISIT_STATE_NO_MONEY
    a = await s.DecideAward(
        pb.DecideAwardRequest(request_id=rid(), award=award(nominee=f"regions/{YL_VILLAGE}", kind="健康之星")),
        metadata=md,
    )
    assert a.nominee_region.code == YL_VILLAGE
