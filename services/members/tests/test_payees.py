"""BatchGetPayees / BatchGetPersons at the use-case level (SQLite and
PostgreSQL): order and duplicates, all-or-nothing NOT_FOUND and region
refusals naming the persons, the masked view, the audit line (who, how
many, never the values) and who holds ``members.payees.read``. The gRPC
path (permission interceptor, a funds client) is tested in
services/funds/tests/test_payment_file.py."""
from __future__ import annotations

import logging
from datetime import date

import pytest

from jsx.common.v1 import common_pb2 as c
from jsx.members.v1 import members_pb2 as pb
from jsxcore.auth import PAYEES_READ, ROLE_PERMISSIONS, Caller, roles_grant
from jsxcore.errors import InvalidArgument, NotFound, PermissionDenied
from jsxcore.values import RegionCode

from jsx_members.payees import MAX_BATCH, PayeeReads
from jsx_members.testdata import VILLAGES, acting, make_id_number, rid

CARD = "6217001234567890123"


async def _register(svc, name: str, county: str, seq: int, card: str = "") -> pb.Person:  # type: ignore[no-untyped-def]
    with acting(county, ("county_clerk",)):
        return await svc.create_person(pb.CreatePersonRequest(request_id=rid(), person=pb.Person(
            display_name=name, id_number=make_id_number(county, date(1970, 1, 1), seq), village=c.RegionCode(code=VILLAGES[county]),
            card_number=card)))


def test_only_finance_and_system_hold_payees_read() -> None:
    holders = sorted(r for r in ROLE_PERMISSIONS if roles_grant((r,), PAYEES_READ))
    assert holders == ["finance_officer", "system"]  # not admin's "*", not the auditor's "*.*.read", not a clerk's "members.*.read"
    assert Caller("c", "c", ("county_clerk",), RegionCode.parse("431222")).can("members.persons.read")


async def test_batch_get_payees_and_persons(env, caplog) -> None:  # type: ignore[no-untyped-def]
    svc, reads = env.service, PayeeReads(env.service)
    wang = await _register(svc, "王大明", "431222", 1, CARD)
    li = await _register(svc, "李秀英", "431222", 2)
    xp = await _register(svc, "赵小红", "431224", 3, "6217000000000021")

    caplog.clear()  # registration's own SQL debug lines carry the (plain-column) name; only this read is judged
    with caplog.at_level(logging.DEBUG), acting("431222", ("finance_officer",), "fin-yl"):
        got = await reads.batch_get_payees(pb.BatchGetPayeesRequest(names=[li.name, wang.name, li.name]))
    assert [(x.person, x.display_name, x.card_number, x.village.code) for x in got.payees] == [
        (li.name, "李秀英", "", VILLAGES["431222"]), (wang.name, "王大明", CARD, VILLAGES["431222"]),
        (li.name, "李秀英", "", VILLAGES["431222"])]
    audit = [r for r in caplog.records if r.getMessage() == "payees.read"]
    assert len(audit) == 1 and audit[0].actor == "fin-yl" and audit[0].persons == 3  # type: ignore[attr-defined]
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert CARD not in logged and "王大明" not in logged and wang.name not in logged

    with acting("431222", ("finance_officer",)):
        with pytest.raises(NotFound) as nf:
            await reads.batch_get_payees(pb.BatchGetPayeesRequest(names=[wang.name, "persons/nobody", "persons/ghost"]))
        assert nf.value.reason == "PERSONS_NOT_FOUND" and "persons/nobody、persons/ghost" in nf.value.message
        with pytest.raises(PermissionDenied) as pd:
            await reads.batch_get_payees(pb.BatchGetPayeesRequest(names=[wang.name, xp.name]))
        assert pd.value.reason == "OUT_OF_REGION" and xp.name in pd.value.message and wang.name not in pd.value.message
        with pytest.raises(InvalidArgument) as ia:
            await reads.batch_get_payees(pb.BatchGetPayeesRequest(names=[wang.name] * (MAX_BATCH + 1)))
        assert ia.value.reason == "TOO_MANY_NAMES"
        with pytest.raises(InvalidArgument):
            await reads.batch_get_payees(pb.BatchGetPayeesRequest(names=["households/1"]))

    # Masked whatever the caller may see: the auditor holds members.pii.read, still 王*明.
    with acting("431200", ("auditor",)):
        persons = (await reads.batch_get_persons(pb.BatchGetPersonsRequest(names=[wang.name, li.name]))).persons
    assert [p.display_name for p in persons] == ["王*明", "李*英"]
    assert all(not p.id_number and not p.phone and not p.card_number for p in persons)
    assert persons[0].card_number_masked.endswith(CARD[-4:]) and persons[0].id_number_masked.startswith("4312")
