"""BatchGetPayees / BatchGetPersons at the use-case level, names parsed by
the servicer (SQLite and PostgreSQL): order and duplicates, all-or-nothing NOT_FOUND and region
refusals naming the persons, the masked view, the audit line (who, how
many, never the values) and who holds ``members.payees.read``. The gRPC
path (permission interceptor, a funds client) is tested in
services/funds/tests/test_payment_file.py."""

from __future__ import annotations

import logging
from datetime import date

import pytest

from jsx.members.v1 import members_pb2 as pb
from jsx_members.persons.domain import NewPerson
from jsx_members.persons.service import MAX_BATCH
from jsx_members.service import MembersService
from jsx_members.testdata import VILLAGES, acting, clerk, make_id_number
from jsxcore.auth import PAYEES_READ, ROLE_PERMISSIONS, Caller, roles_grant
from jsxcore.errors import InvalidArgument, NotFound, PermissionDenied
from jsxcore.values import RegionCode

CARD = "6217001234567890123"


async def _register(svc: MembersService, name: str, county: str, seq: int, card: str = "") -> pb.Person:
    return await svc.persons.create_person(
        NewPerson(
            name=name,
            id_number=make_id_number(county, date(1970, 1, 1), seq),
            phone="",
            village=VILLAGES[county],
            card_number=card,
        ),
        caller=clerk(county, ("county_clerk",)),
        idem=None,
    )


def _ids(*names: str) -> list[str]:
    return [n.removeprefix("persons/") for n in names]


def test_only_finance_and_system_hold_payees_read() -> None:
    holders = sorted(r for r in ROLE_PERMISSIONS if roles_grant((r,), PAYEES_READ))
    assert holders == [
        "finance_officer",
        "system",
    ]  # not admin's "*", not the auditor's "*.*.read", not a clerk's "members.*.read"
    assert Caller("c", "c", ("county_clerk",), RegionCode.parse("431222")).can("members.persons.read")


async def test_batch_get_payees_and_persons(env, caplog: pytest.LogCaptureFixture) -> None:
    svc, reads = env.service, env.service.persons
    wang = await _register(svc, "王大明", "431222", 1, CARD)
    li = await _register(svc, "李秀英", "431222", 2)
    xp = await _register(svc, "赵小红", "431224", 3, "6217000000000021")

    caplog.clear()  # registration's own SQL debug lines carry the (plain-column) name; only this read is judged
    with caplog.at_level(logging.DEBUG):
        got = await reads.batch_get_payees(
            _ids(li.name, wang.name, li.name), caller=clerk("431222", ("finance_officer",), "fin-yl")
        )
    assert [(x.person, x.display_name, x.card_number, x.village.code) for x in got.payees] == [
        (li.name, "李秀英", "", VILLAGES["431222"]),
        (wang.name, "王大明", CARD, VILLAGES["431222"]),
        (li.name, "李秀英", "", VILLAGES["431222"]),
    ]
    audit = [r for r in caplog.records if r.getMessage() == "payees.read"]
    assert len(audit) == 1 and audit[0].actor == "fin-yl" and audit[0].persons == 3  # type: ignore[attr-defined]  # LogRecord extras
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert CARD not in logged and "王大明" not in logged and wang.name not in logged

    finance = clerk("431222", ("finance_officer",))
    with pytest.raises(NotFound) as nf:
        await reads.batch_get_payees(_ids(wang.name, "persons/nobody", "persons/ghost"), caller=finance)
    assert nf.value.reason == "PERSONS_NOT_FOUND" and "persons/nobody、persons/ghost" in nf.value.message
    with pytest.raises(PermissionDenied) as pd:
        await reads.batch_get_payees(_ids(wang.name, xp.name), caller=finance)
    assert pd.value.reason == "OUT_OF_REGION" and xp.name in pd.value.message and wang.name not in pd.value.message
    with pytest.raises(InvalidArgument) as ia:
        await reads.batch_get_payees(_ids(*[wang.name] * (MAX_BATCH + 1)), caller=finance)
    assert ia.value.reason == "TOO_MANY_NAMES"
    with acting("431222", ("finance_officer",)), pytest.raises(InvalidArgument):  # names are parsed by the servicer
        await env.api.BatchGetPayees(pb.BatchGetPayeesRequest(names=["households/1"]))

    # Masked whatever the caller may see: the auditor holds members.pii.read, still 王*明.
    persons = (await reads.batch_get_persons(_ids(wang.name, li.name), caller=clerk("431200", ("auditor",)))).persons
    assert [p.display_name for p in persons] == ["王*明", "李*英"]
    assert all(not p.id_number and not p.phone and not p.card_number for p in persons)
    assert persons[0].card_number_masked.endswith(CARD[-4:]) and persons[0].id_number_masked.startswith("4312")
