"""Persons on the wire: rows → ``jsx.members.v1`` responses and events.

A row is a :class:`~jsx_members.persons.tables.PersonRow` or a Core row of
the persons table (same attribute names and types). Decryption and the
decision whether the caller sees plaintext are the service's; these
functions only shape what they are given.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from jsx.members.v1 import events_pb2
from jsx.members.v1 import members_pb2 as pb
from jsx_members.adapters.pb import day, enum_out, region
from jsxcore import wire
from jsxcore.pii import mask_name, mask_phone


def name(person_id: str) -> str:
    return f"persons/{person_id}"


def mask_card(card: str) -> str:
    return ("*" * max(len(card) - 4, 0) + card[-4:]) if card else ""


def _household(household_id: str | None) -> str:
    return f"households/{household_id}" if household_id else ""


def _relation(relation: str | None) -> Any:
    return enum_out(pb.Relation, "RELATION_", relation) if relation else pb.RELATION_UNSPECIFIED


def person(
    p: Any,
    *,
    phone: str,
    card: str,
    id_number: str | None = None,
    household: str | None = None,
    relation: str | None = None,
) -> pb.Person:
    """The API view of a person in ``household`` (its id, and the relation's name): masked, plus the
    plaintext when ``id_number`` is given (the full view)."""
    full = id_number is not None
    out = pb.Person(
        name=name(p.id),
        display_name=p.name if full else mask_name(p.name),
        id_number_masked=p.id_masked,
        sex=pb.SEX_MALE if p.sex == "男" else pb.SEX_FEMALE,
        birth_date=day(p.birth_date),
        village=region(p.village),
        hukou_type=enum_out(pb.HukouType, "HUKOU_TYPE_", p.hukou),
        status=enum_out(pb.PersonStatus, "PERSON_STATUS_", p.status),
        death_date=day(p.death_date),
        create_time=wire.ts_to(p.created_at),
        update_time=wire.ts_to(p.updated_at),
        phone_masked=mask_phone(phone) if phone else "",
        card_number_masked=mask_card(card),
        household=_household(household),
        household_relation=_relation(relation),
        moved_to=region(p.moved_to) if p.moved_to else None,
        moved_date=day(p.moved_on),
    )
    if id_number is not None:
        out.id_number = id_number
        out.phone, out.card_number = phone, card
    return out


def person_list(persons: Sequence[pb.Person], next_page_token: str) -> pb.ListPersonsResponse:
    return pb.ListPersonsResponse(persons=persons, next_page_token=next_page_token)


def payees(rows: Sequence[Any], cards: Sequence[str]) -> pb.BatchGetPayeesResponse:
    """Full name, full card number and village per person, in request order."""
    return pb.BatchGetPayeesResponse(
        payees=[
            pb.Payee(person=name(p.id), display_name=p.name, village=region(p.village), card_number=card)
            for p, card in zip(rows, cards, strict=True)
        ]
    )


def batch_persons(persons: Sequence[pb.Person]) -> pb.BatchGetPersonsResponse:
    return pb.BatchGetPersonsResponse(persons=persons)


def registered(person_id: str, village: str) -> events_pb2.PersonRegistered:
    return events_pb2.PersonRegistered(person=name(person_id), village=region(village))


def died(
    person_id: str, village: str, death_date: date, household: str | None, relation: str | None
) -> events_pb2.PersonDied:
    return events_pb2.PersonDied(
        person=name(person_id),
        village=region(village),
        death_date=wire.date_to(death_date),
        household=_household(household),
        relation=_relation(relation),
    )


def death_corrected(
    person_id: str, village: str, death_date: date | None, previous: date | None, household: str | None
) -> events_pb2.PersonDeathCorrected:
    return events_pb2.PersonDeathCorrected(
        person=name(person_id),
        village=region(village),
        death_date=day(death_date),
        previous_death_date=day(previous),
        household=_household(household),
    )


__all__ = [
    "batch_persons",
    "death_corrected",
    "died",
    "mask_card",
    "name",
    "payees",
    "person",
    "person_list",
    "registered",
]
