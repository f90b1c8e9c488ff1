"""EventsService over real gRPC: auth, region scope, rich errors, compliance and summary."""

from __future__ import annotations

import uuid

import grpc
import pytest

from jsx.common.v1 import common_pb2 as cpb
from jsx.events.v1 import events_service_pb2 as pb
from jsxcore.runtime.errors import error_details


@pytest.fixture
async def stub(events):
    # the household and volunteer the visit names, as members published them
    await events.members.pairing("volunteers/v1", "households/hh-9", "431281101201")
    return events.stub, events.md()


async def test_activity_visit_summary_and_errors(stub) -> None:
    s, md = stub
    act = pb.Activity(
        display_name="2022年茶溪村5.29会员活动日",
        type=pb.ACTIVITY_TYPE_MEMBER_DAY_0529,
        organiser_region=cpb.RegionCode(code="431281101201"),
        state=pb.ACTIVITY_STATE_HELD,
        held_date=cpb.Date(year=2022, month=5, day=29),
        participant_count=120,
        outputs=pb.ActivityOutputs(materials=1200, consultations=260),
    )
    created = await s.CreateActivity(pb.CreateActivityRequest(activity=act, request_id=str(uuid.uuid4())), metadata=md)
    assert created.name.startswith("activities/")
    got = await s.GetActivity(pb.GetActivityRequest(name=created.name), metadata=md)
    assert got.outputs.materials == 1200 and got.state == pb.ACTIVITY_STATE_HELD

    visit = pb.Visit(
        household="households/hh-9",
        region=cpb.RegionCode(code="431281101201"),
        visitor="volunteers/v1",
        visit_date=cpb.Date(year=2022, month=6, day=1),
        money=cpb.Money(fen=50000),
        fund="funds/f1",
    )
    v = await s.RecordVisit(pb.RecordVisitRequest(visit=visit, request_id=str(uuid.uuid4())), metadata=md)
    assert v.state == pb.VISIT_STATE_PENDING

    summary = await s.GetSummary(
        pb.GetSummaryRequest(region=cpb.RegionCode(code="431281"), period=cpb.Period(code="2022")), metadata=md
    )
    assert summary.activities_held == 1 and summary.visits_pending == 1 and "发放宣传资料 1200 份" in summary.text

    report = await s.GetComplianceReport(
        pb.GetComplianceReportRequest(region=cpb.RegionCode(code="431281"), period=cpb.Period(code="2022-Q3")),
        metadata=md,
    )
    assert report.region.code == "431281000000"

    # Money without a fund: INVALID_ARGUMENT with a field violation in Chinese.
    bad = pb.Visit(**{**{f.name: getattr(visit, f.name) for f, _ in visit.ListFields()}, "fund": ""})
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.RecordVisit(pb.RecordVisitRequest(visit=bad, request_id=str(uuid.uuid4())), metadata=md)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, br, _ = error_details(e.value)
    assert br is not None and br.field_violations[0].field == "fund_id"

    # Another county is outside a 洪江市 clerk's scope.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.ListVisits(pb.ListVisitsRequest(region=cpb.RegionCode(code="431222")), metadata=md)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
