"""UpdateActivity, plan items and half-year summaries over real gRPC (SQLite and PostgreSQL)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import select

from jsx.common.v1 import common_pb2 as cpb
from jsx.events.v1 import events_pb2 as epb
from jsx.events.v1 import events_service_pb2 as pb
from jsxcore.outbox import OutboxEvent
from jsxcore.runtime.errors import error_details
from jsxcore.testing.helpers import rid

VILLAGE, OTHER_VILLAGE = "431281101201", "431281101202"


def planned(region: str = VILLAGE, **kw) -> pb.Activity:
    fields = {
        "display_name": "2022年茶溪村健康大讲堂",
        "type": pb.ACTIVITY_TYPE_HEALTH_LECTURE,
        "organiser_region": cpb.RegionCode(code=region),
        "state": pb.ACTIVITY_STATE_PLANNED,
        "planned_date": cpb.Date(year=2022, month=5, day=10),
    }
    return pb.Activity(**{**fields, **kw})


def violations(e: pytest.ExceptionInfo) -> dict[str, str]:
    _, br, _ = error_details(e.value)
    assert br is not None
    return {v.field: v.description for v in br.field_violations}


async def held_events(events, activity: str) -> list[epb.ActivityHeld]:
    async with events.svc.sessions() as s:
        rows = await s.scalars(select(OutboxEvent).where(OutboxEvent.subject == "jsx.events.activity.held"))
        return [m for m in (epb.ActivityHeld.FromString(r.payload) for r in rows) if m.activity == activity]


async def test_update_activity_mask_held_transition_idempotency_and_scope(events) -> None:
    s, md = events.stub, events.md()
    a = await s.CreateActivity(pb.CreateActivityRequest(activity=planned(), request_id=rid()), metadata=md)
    assert a.state == pb.ACTIVITY_STATE_PLANNED and not await held_events(events, a.name)

    # Refused paths: output-only and unknown fields, each a Chinese violation naming the path.
    bad = pb.UpdateActivityRequest(
        activity=pb.Activity(name=a.name, display_name="x"),
        request_id=rid(),
        update_mask=FieldMask(paths=["display_name", "create_time", "outputs.nope"]),
    )
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.UpdateActivity(bad, metadata=md)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    v = violations(e)
    assert set(v) == {"update_mask.paths[1]", "update_mask.paths[2]"}
    assert "不能修改" in v["update_mask.paths[1]"] and "outputs.nope" in v["update_mask.paths[2]"]
    assert (await s.GetActivity(pb.GetActivityRequest(name=a.name), metadata=md)).display_name == a.display_name

    # Allowed: only the masked fields change; a nested path keeps its siblings.
    req = pb.UpdateActivityRequest(
        activity=pb.Activity(
            name=a.name, display_name="改名", location="不该改", outputs=pb.ActivityOutputs(materials=5)
        ),
        update_mask=FieldMask(paths=["display_name", "outputs.materials"]),
        request_id=rid(),
    )
    got = await s.UpdateActivity(req, metadata=md)
    assert (got.display_name, got.location, got.outputs.materials) == ("改名", "", 5)

    # Planned → held, recording the actual day and outputs: publishes ActivityHeld once.
    held = pb.Activity(
        name=a.name,
        state=pb.ACTIVITY_STATE_HELD,
        held_date=cpb.Date(year=2022, month=5, day=12),
        participant_count=86,
        outputs=pb.ActivityOutputs(materials=300, consultations=40, condolence_money=cpb.Money(fen=20000)),
    )
    hreq = pb.UpdateActivityRequest(
        activity=held,
        update_mask=FieldMask(paths=["state", "held_date", "participant_count", "outputs"]),
        request_id=rid(),
    )
    done = await s.UpdateActivity(hreq, metadata=md)
    assert done.state == pb.ACTIVITY_STATE_HELD and done.held_date.day == 12 and done.participant_count == 86
    assert (done.outputs.materials, done.outputs.consultations, done.outputs.condolence_money.fen) == (300, 40, 20000)
    assert done.display_name == "改名"
    # Same request_id again: the stored response, no second event.
    assert await s.UpdateActivity(hreq, metadata=md) == done
    [ev] = await held_events(events, a.name)
    assert ev.participant_count == 86 and ev.held_date.day == 12
    # A new request keeping it held does not publish again either.
    await s.UpdateActivity(
        pb.UpdateActivityRequest(
            activity=pb.Activity(name=a.name, description="总结"),
            update_mask=FieldMask(paths=["description"]),
            request_id=rid(),
        ),
        metadata=md,
    )
    assert len(await held_events(events, a.name)) == 1

    # Held without a held_date: a field violation in Chinese.
    b = await s.CreateActivity(pb.CreateActivityRequest(activity=planned(), request_id=rid()), metadata=md)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.UpdateActivity(
            pb.UpdateActivityRequest(
                activity=pb.Activity(name=b.name, state=pb.ACTIVITY_STATE_HELD),
                update_mask=FieldMask(paths=["state"]),
                request_id=rid(),
            ),
            metadata=md,
        )
    assert violations(e) == {"activity.held_date": "请填写日期（年、月、日）"}

    # Region scope: another village's clerk cannot touch it, nor move their own activity out of scope.
    other = events.md(region=OTHER_VILLAGE, subject="clerk-2")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.UpdateActivity(
            pb.UpdateActivityRequest(
                activity=pb.Activity(name=a.name, description="x"),
                update_mask=FieldMask(paths=["description"]),
                request_id=rid(),
            ),
            metadata=other,
        )
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    mine = await s.CreateActivity(
        pb.CreateActivityRequest(activity=planned(OTHER_VILLAGE), request_id=rid()), metadata=other
    )
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.UpdateActivity(
            pb.UpdateActivityRequest(
                activity=pb.Activity(name=mine.name, organiser_region=cpb.RegionCode(code=VILLAGE)),
                update_mask=FieldMask(paths=["organiser_region"]),
                request_id=rid(),
            ),
            metadata=other,
        )
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # A cancelled activity cannot be marked held.
    await s.UpdateActivity(
        pb.UpdateActivityRequest(
            activity=pb.Activity(name=b.name, state=pb.ACTIVITY_STATE_CANCELLED),
            update_mask=FieldMask(paths=["state"]),
            request_id=rid(),
        ),
        metadata=md,
    )
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.UpdateActivity(
            pb.UpdateActivityRequest(
                activity=pb.Activity(
                    name=b.name, state=pb.ACTIVITY_STATE_HELD, held_date=cpb.Date(year=2022, month=6, day=1)
                ),
                update_mask=FieldMask(paths=["state", "held_date"]),
                request_id=rid(),
            ),
            metadata=md,
        )
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_plan_items_named_linked_validated_and_fulfilled(events) -> None:
    s, md = events.stub, events.md()
    plan = await s.CreatePlan(
        pb.CreatePlanRequest(
            plan=pb.Plan(
                display_name="2022年茶溪村工作计划",
                region=cpb.RegionCode(code=VILLAGE),
                year=2022,
                items=[
                    pb.PlanItem(type=pb.ACTIVITY_TYPE_HEALTH_LECTURE, count=2, note="健康人生大讲堂"),
                    pb.PlanItem(type=pb.ACTIVITY_TYPE_FREE_CLINIC, count=1),
                ],
            ),
            request_id=rid(),
        ),
        metadata=md,
    )
    lecture, clinic = plan.items
    assert lecture.name.startswith(plan.name + "/items/") and lecture.name != clinic.name
    assert (lecture.held_count, lecture.fulfilled) == (0, False)

    a1 = await s.CreateActivity(
        pb.CreateActivityRequest(activity=planned(plan_item=lecture.name), request_id=rid()), metadata=md
    )
    assert a1.plan_item == lecture.name and a1.plan == plan.name
    held = planned(plan_item=lecture.name, state=pb.ACTIVITY_STATE_HELD, held_date=cpb.Date(year=2022, month=6, day=2))
    a2 = await s.CreateActivity(pb.CreateActivityRequest(activity=held, request_id=rid()), metadata=md)

    got = await s.GetPlan(pb.GetPlanRequest(name=plan.name), metadata=md)
    assert list(got.items[0].fulfilled_by) == [a2.name]
    assert (got.items[0].held_count, got.items[0].scheduled_count, got.items[0].fulfilled) == (1, 1, False)
    # The planned one is held: the item is fulfilled (2 of 2), shown in ListPlans too.
    await s.UpdateActivity(
        pb.UpdateActivityRequest(
            activity=pb.Activity(
                name=a1.name, state=pb.ACTIVITY_STATE_HELD, held_date=cpb.Date(year=2022, month=5, day=10)
            ),
            update_mask=FieldMask(paths=["state", "held_date"]),
            request_id=rid(),
        ),
        metadata=md,
    )
    [listed] = (
        await s.ListPlans(pb.ListPlansRequest(region=cpb.RegionCode(code="431281"), year=2022), metadata=md)
    ).plans
    assert (
        listed.items[0].fulfilled
        and listed.items[0].held_count == 2
        and set(listed.items[0].fulfilled_by) == {a1.name, a2.name}
    )
    assert not listed.items[1].fulfilled and listed.items[1].held_count == 0

    async def refused(activity: pb.Activity, metadata=md) -> str:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await s.CreateActivity(pb.CreateActivityRequest(activity=activity, request_id=rid()), metadata=metadata)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        v = violations(e)
        assert list(v) == ["activity.plan_item"], v
        return v["activity.plan_item"]

    assert "不存在" in await refused(planned(plan_item=plan.name + "/items/nope"))
    assert "格式不对" in await refused(planned(plan_item=plan.name))
    assert "计划的是“义诊”" in await refused(planned(plan_item=clinic.name))
    next_year = planned(plan_item=lecture.name)
    next_year.planned_date.year = 2023
    assert "2022年的计划" in await refused(next_year)
    # Another village's clerk, for an activity of their own village: not their plan.
    assert "不在您的辖区内" in await refused(
        planned(OTHER_VILLAGE, plan_item=lecture.name), events.md(region=OTHER_VILLAGE, subject="clerk-2")
    )
    # A county clerk's activity of another village cannot fulfil this village's plan either.
    assert "不在其范围内" in await refused(planned(OTHER_VILLAGE, plan_item=lecture.name))

    # Changing the type of a linked activity re-checks the link.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.UpdateActivity(
            pb.UpdateActivityRequest(
                activity=pb.Activity(name=a2.name, type=pb.ACTIVITY_TYPE_TRAINING),
                update_mask=FieldMask(paths=["type"]),
                request_id=rid(),
            ),
            metadata=md,
        )
    assert "计划的是“健康大讲堂”" in violations(e)["activity.plan_item"]
    # Unlinking through the mask is allowed.
    out = await s.UpdateActivity(
        pb.UpdateActivityRequest(
            activity=pb.Activity(name=a2.name), update_mask=FieldMask(paths=["plan_item"]), request_id=rid()
        ),
        metadata=md,
    )
    assert out.plan_item == "" and out.plan == ""
    got = await s.GetPlan(pb.GetPlanRequest(name=plan.name), metadata=md)
    assert got.items[0].held_count == 1 and not got.items[0].fulfilled
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.GetPlan(pb.GetPlanRequest(name=plan.name), metadata=events.md(region=OTHER_VILLAGE, subject="clerk-2"))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_summary_for_a_half_year(events) -> None:
    s, md = events.stub, events.md()
    for month in (3, 9):
        act = planned(
            state=pb.ACTIVITY_STATE_HELD, held_date=cpb.Date(year=2022, month=month, day=1), participant_count=10
        )
        await s.CreateActivity(pb.CreateActivityRequest(activity=act, request_id=rid()), metadata=md)
    h1 = await s.GetSummary(
        pb.GetSummaryRequest(region=cpb.RegionCode(code="431281"), period=cpb.Period(code="2022-H1")), metadata=md
    )
    assert (
        h1.period.code == "2022-H1"
        and h1.activities_held == 1
        and h1.text.startswith("2022年上半年共开展各类活动 1 场次")
    )
    h2 = await s.GetSummary(
        pb.GetSummaryRequest(region=cpb.RegionCode(code="431281"), period=cpb.Period(code="2022年下半年")), metadata=md
    )
    assert h2.period.code == "2022-H2" and h2.activities_held == 1
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.GetSummary(
            pb.GetSummaryRequest(region=cpb.RegionCode(code="431281"), period=cpb.Period(code="2022-H3")), metadata=md
        )
    assert "period.code" in violations(e)
