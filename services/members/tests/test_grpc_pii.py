"""The members service end to end: a real gRPC server with the jsxcore
runtime (auth, errors), a real nats-server receiving the outbox events, and
SQLite/PostgreSQL (the ``stack`` fixture, in conftest.py). Ends with a PII
scan of database, logs and events."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import grpc
import psycopg
import pytest

from jsx.common.v1 import common_pb2 as c
from jsx.members.v1 import events_pb2
from jsx.members.v1 import members_pb2 as pb
from jsx_members.testdata import make_id_number, make_phone, rid
from jsxcore.runtime import error_details
from jsxcore.testing.helpers import pull_messages

YL, XP = "431222101201", "431224102203"


def person(idn: str, village: str, phone: str, name: str = "张三") -> pb.Person:
    return pb.Person(display_name=name, id_number=idn, phone=phone, village=c.RegionCode(code=village))


async def test_scenario_scope_errors_events_and_pii_scan(stack) -> None:
    yl, xp, auditor = stack["clients"]["yl"], stack["clients"]["xp"], stack["clients"]["auditor"]
    ids = [make_id_number("431222", date(1970 + i, 2, 3), 70 + i, female=i == 1) for i in range(3)]
    phones = [make_phone(88_000_000 + i) for i in range(3)]
    xp_id, xp_phone = make_id_number("431224", date(1966, 6, 6), 9), make_phone(77_000_001)

    head = await yl.CreatePerson(pb.CreatePersonRequest(person=person(ids[0], YL, phones[0], "王大"), request_id=rid()))
    wife = await yl.CreatePerson(pb.CreatePersonRequest(person=person(ids[1], YL, phones[1], "李二"), request_id=rid()))
    vol = await yl.CreatePerson(pb.CreatePersonRequest(person=person(ids[2], YL, phones[2], "志愿"), request_id=rid()))
    other = await xp.CreatePerson(pb.CreatePersonRequest(person=person(xp_id, XP, xp_phone, "赵溆"), request_id=rid()))
    assert head.id_number == "" and head.phone == "" and head.phone_masked.startswith(phones[0][:3])

    # Region scope: 沅陵 cannot read or change 溆浦's people.
    for call in (
        yl.GetPerson(pb.GetPersonRequest(name=other.name)),
        yl.LookupPerson(pb.LookupPersonRequest(id_number=xp_id)),
        yl.UpdatePerson(
            pb.UpdatePersonRequest(person=pb.Person(name=other.name, phone="13800000000"), request_id=rid())
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        info = error_details(e.value)[0]
        assert info is not None and info.reason == "OUT_OF_REGION"

    # Duplicate → ALREADY_EXISTS naming the existing person, masked.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await yl.CreatePerson(pb.CreatePersonRequest(person=person(ids[0], YL, phones[0]), request_id=rid()))
    details = e.value.details()
    assert details is not None
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS and head.name in details
    assert ids[0] not in details

    # Bad checksum → INVALID_ARGUMENT with a Chinese field violation.
    bad = ids[0][:-1] + ("0" if ids[0][-1] != "0" else "1")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await yl.CreatePerson(pb.CreatePersonRequest(person=person(bad, YL, "13911112222"), request_id=rid()))
    _info, badreq, _ = error_details(e.value)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert badreq is not None
    assert [v.field for v in badreq.field_violations] == ["person.id_number"] and "校验位" in badreq.field_violations[
        0
    ].description

    # Missing request_id → INVALID_ARGUMENT (AIP-155), nothing written.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await yl.CreateSite(
            pb.CreateSiteRequest(
                site=pb.Site(display_name="x", kind=pb.SITE_KIND_MEMBER_HOME, village=c.RegionCode(code=YL))
            )
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    h = await yl.CreateHousehold(
        pb.CreateHouseholdRequest(
            household=pb.Household(
                head=head.name,
                village=c.RegionCode(code=YL),
                members=[
                    pb.HouseholdMember(person=head.name, relation=pb.RELATION_HEAD),
                    pb.HouseholdMember(person=wife.name, relation=pb.RELATION_SPOUSE),
                ],
            ),
            situations=[
                pb.FamilySituation(
                    kind=pb.SITUATION_KIND_SPECIAL_BEREAVED, effective_from=c.Date(year=2021, month=3, day=1)
                )
            ],
            request_id=rid(),
        )
    )
    v = await yl.CreateVolunteer(pb.CreateVolunteerRequest(volunteer=pb.Volunteer(person=vol.name), request_id=rid()))
    pairing = await yl.PairVolunteer(
        pb.PairVolunteerRequest(volunteer=v.name, household=h.name, kind=pb.PAIRING_KIND_DUAL_CONTACT, request_id=rid())
    )
    mem = await yl.CreateMember(
        pb.CreateMemberRequest(
            member=pb.AssociationMember(
                person=vol.name, association=c.RegionCode(code="431222"), member_type=pb.MEMBER_TYPE_ORDINARY
            ),
            request_id=rid(),
        )
    )
    await yl.CreateSite(
        pb.CreateSiteRequest(
            site=pb.Site(display_name="岩门村暖心家园", kind=pb.SITE_KIND_WARM_HOME, village=c.RegionCode(code=YL)),
            request_id=rid(),
        )
    )
    await yl.EndPairing(pb.EndPairingRequest(name=pairing.name, request_id=rid()))
    await yl.EndMembership(pb.EndMembershipRequest(name=mem.name, request_id=rid()))

    # The auditor (PII permission, city scope) sees plaintext; the read is audited.
    full = await auditor.LookupPerson(pb.LookupPersonRequest(id_number=ids[0], view=pb.PERSON_VIEW_FULL))
    assert full.id_number == ids[0] and full.phone == phones[0]
    plugins = await yl.ListPlugins(c.ListPluginsRequest())
    assert plugins is not None

    # Events: ids and regions only, on jsx.members.<entity>.<event>.
    expected = {
        "jsx.members.person.registered": 4,
        "jsx.members.household.registered": 1,
        "jsx.members.household.situation_changed": 1,
        "jsx.members.pairing.paired": 1,
        "jsx.members.pairing.unpaired": 1,
        "jsx.members.member.joined": 1,
        "jsx.members.member.left": 1,
        "jsx.members.site.opened": 1,
    }
    msgs = await pull_messages(stack["js"], "jsx.members.>", "JSX_MEMBERS", sum(expected.values()))
    counts: dict[str, int] = {}
    for msg in msgs:
        counts[msg.subject] = counts.get(msg.subject, 0) + 1
        assert msg.headers is not None
        assert msg.headers["Nats-Msg-Id"] and msg.headers["Jsx-Event-Type"].startswith("jsx.members.v1.")
    assert counts == expected
    changed = next(m for m in msgs if m.subject.endswith("situation_changed"))
    ev = events_pb2.HouseholdSituationChanged.FromString(changed.data)
    assert ev.household == h.name and ev.kind == pb.SITUATION_KIND_SPECIAL_BEREAVED and ev.effective_from.year == 2021
    assert ev.village.code == YL

    # ---- PII scan: database, logs, event payloads → zero plaintext hits.
    secrets = [*ids, xp_id, *phones, xp_phone]
    needles = [s.encode() for s in secrets] + [s.encode("utf-16-le") for s in secrets]
    haystacks: dict[str, bytes] = {}
    url = stack["url"]
    if url.startswith("sqlite"):
        await stack["rt"].engine.dispose()  # flush WAL pages too
        path = Path(url.split(":///", 1)[1])
        for f in path.parent.glob(path.name + "*"):
            haystacks[f.name] = f.read_bytes()
    else:
        with psycopg.connect(url) as conn:
            tables = [r[0] for r in conn.execute("select tablename from pg_tables where schemaname='public'")]
            for t in tables:
                rows = conn.execute(f'select * from "{t}"').fetchall()
                haystacks[t] = repr(rows).encode() + b"".join(
                    bytes(x) for r in rows for x in r if isinstance(x, (bytes, memoryview))
                )
            assert "persons" in tables
    haystacks["logs"] = stack["logs"].getvalue().encode()
    haystacks["events"] = b"".join(m.data + repr(m.headers).encode() for m in msgs)
    assert b"pii.read" in haystacks["logs"]  # the audited read is logged (without the values)
    # Positive controls: the scan sees real content (masked forms, names of
    # tables' data) and would find plaintext if it were there.
    db_bytes = b"".join(v for k, v in haystacks.items() if k not in ("logs", "events"))
    assert head.id_number_masked.encode() in db_bytes and b"rpc" in haystacks["logs"]
    assert any(n in full.SerializeToString() for n in needles)
    hits = [(where, n) for where, hay in haystacks.items() for n in needles if n in hay]
    assert hits == []
