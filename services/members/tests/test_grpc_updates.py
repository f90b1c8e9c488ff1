"""Update RPCs over a real gRPC server: field-mask errors as rich statuses,
idempotent retry, region scope, and the new events on a real nats-server."""

from __future__ import annotations

from datetime import date

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from nats.aio.msg import Msg

from jsx.common.v1 import common_pb2 as c
from jsx.members.v1 import events_pb2
from jsx.members.v1 import members_pb2 as pb
from jsx_members.testdata import make_id_number, rid
from jsxcore.runtime import error_details
from jsxcore.testing.helpers import pull_messages

YL = "431222101201"  # a village of 沅陵 (the "yl" client's county), as in test_grpc_pii


async def test_updates_over_grpc(stack) -> None:
    yl, xp = stack["clients"]["yl"], stack["clients"]["xp"]
    ppl = [
        await yl.CreatePerson(
            pb.CreatePersonRequest(
                person=pb.Person(
                    display_name="赵六",
                    id_number=make_id_number("431222", date(1960 + i, 1, 1), 40 + i),
                    village=c.RegionCode(code=YL),
                ),
                request_id=rid(),
            )
        )
        for i in range(3)
    ]
    h = await yl.CreateHousehold(
        pb.CreateHouseholdRequest(
            household=pb.Household(
                head=ppl[0].name,
                village=c.RegionCode(code=YL),
                members=[pb.HouseholdMember(person=ppl[0].name, relation=pb.RELATION_HEAD)],
            ),
            request_id=rid(),
        )
    )

    # Immutable path → INVALID_ARGUMENT with a Chinese field violation on update_mask.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await yl.UpdateHousehold(
            pb.UpdateHouseholdRequest(
                household=pb.Household(name=h.name), update_mask=FieldMask(paths=["village"]), request_id=rid()
            )
        )
    info, badreq, _ = error_details(e.value)
    assert info is not None and badreq is not None
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and info.reason == "FIELD_NOT_UPDATABLE"
    assert [v.field for v in badreq.field_violations] == ["update_mask"] and "不可修改" in badreq.field_violations[
        0
    ].description

    req = pb.UpdateHouseholdRequest(
        household=pb.Household(
            name=h.name,
            members=[
                pb.HouseholdMember(person=ppl[0].name, relation=pb.RELATION_HEAD),
                pb.HouseholdMember(person=ppl[1].name, relation=pb.RELATION_SPOUSE),
            ],
        ),
        update_mask=FieldMask(paths=["members"]),
        request_id=rid(),
    )
    first = await yl.UpdateHousehold(req)
    assert await yl.UpdateHousehold(req) == first  # idempotent retry: same response, one event
    changed = pb.UpdateHouseholdRequest()
    changed.CopyFrom(req)
    changed.household.address = "另一个地址"
    changed.update_mask.paths.append("address")
    with pytest.raises(grpc.aio.AioRpcError) as e:  # same id, different request
        await yl.UpdateHousehold(changed)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    with pytest.raises(grpc.aio.AioRpcError) as e:
        await xp.UpdateHousehold(
            pb.UpdateHouseholdRequest(
                household=pb.Household(name=h.name, address="x"),
                update_mask=FieldMask(paths=["address"]),
                request_id=rid(),
            )
        )
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED

    site = await yl.CreateSite(
        pb.CreateSiteRequest(
            site=pb.Site(display_name="岩门村会员之家", kind=pb.SITE_KIND_MEMBER_HOME, village=c.RegionCode(code=YL)),
            request_id=rid(),
        )
    )
    closed = await yl.CloseSite(pb.CloseSiteRequest(name=site.name, reason="合并", request_id=rid()))
    assert closed.closed_date.year > 2000
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await yl.CloseSite(pb.CloseSiteRequest(name=site.name, request_id=rid()))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # 3 persons, 1 household registered, 1 members change, 1 site opened, 1 closed.
    msgs = await pull_messages(stack["js"], "jsx.members.>", "JSX_MEMBERS", 7)
    by_subject: dict[str, list[Msg]] = {}
    for msg in msgs:
        by_subject.setdefault(msg.subject, []).append(msg)
    assert len(by_subject["jsx.members.household.members_changed"]) == 1
    ev = events_pb2.HouseholdMembersChanged()
    ev.ParseFromString(by_subject["jsx.members.household.members_changed"][0].data)
    assert list(ev.added_persons) == [ppl[1].name] and ev.member_count == 2 and ev.village.code == YL
    sc = events_pb2.SiteClosed()
    closed_msg = by_subject["jsx.members.site.closed"][0]
    sc.ParseFromString(closed_msg.data)
    assert closed_msg.headers is not None
    assert sc.site == site.name and closed_msg.headers["Jsx-Event-Type"] == "jsx.members.v1.SiteClosed"
