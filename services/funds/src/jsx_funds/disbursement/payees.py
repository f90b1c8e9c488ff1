"""Who is paid, and their masked names for a 公示 list.

The funds service keeps only resource names (``persons/…``, ``households/…``)
— names, 身份证 and card numbers live in the members service (DESIGN.md §3
rules 1 and 7). Per-person programs pay the person, per-household ones the
household's 户主, taken from the members projection
(:func:`jsx_funds.projections.service.household_heads`;
:func:`jsx_funds.disbursement.domain.payee_of`). Names are fetched from
members at the moment they are shown and never stored or logged here.
"""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx.funds.v1 import funds_pb2
from jsx_funds.adapters.members import MembersClient
from jsx_funds.projections.service import household_heads
from jsxcore.values import RegionCode


async def fill_publicity_names(sessions: async_sessionmaker[AsyncSession], members: MembersClient,
                               resp: funds_pb2.ListPublicityResponse, region: RegionCode | str) -> None:
    """Set each entry's ``beneficiary_display_name`` to the masked name (张*明) of whoever is paid:
    the person, or the household's 户主. A household whose head the projection does not know yet
    keeps an empty name (its members event has not arrived)."""
    households = [e.beneficiary for e in resp.entries if e.beneficiary.startswith("households/")]
    if households:
        async with sessions() as s:
            heads = await household_heads(s, households)
    else:
        heads = {}
    who = {e.application: heads.get(e.beneficiary, "") if e.beneficiary.startswith("households/") else e.beneficiary
           for e in resp.entries}
    persons = await members.batch_get_persons([p for p in who.values() if p], region) if any(who.values()) else {}
    for e in resp.entries:
        person = persons.get(who[e.application])
        if person is not None:
            e.beneficiary_display_name = person.display_name  # masked by members (BatchGetPersons is masked-only)
