"""Members' household life events are facts events accepts (not "unknown event type")."""

from __future__ import annotations

from typing import Any

import pytest

from jsx.common.v1 import common_pb2
from jsx.members.v1 import events_pb2 as mpb
from jsx_events.adapters import bus
from jsx_events.projections.domain import HouseholdPlaced

LIFE = [
    mpb.HouseholdChildAdded,
    mpb.HouseholdSplit,
    mpb.HouseholdMerged,
    mpb.HouseholdDisabilityGradeChanged,
    mpb.HouseholdDisabilityRecovered,
]


@pytest.mark.parametrize("cls", LIFE, ids=lambda c: c.DESCRIPTOR.name)
def test_household_life_events_place_the_household(cls: Any) -> None:
    assert any(cls is t for t in bus.MEMBER_TYPES)
    msg = cls(household="households/hh-1", village=common_pb2.RegionCode(code="431281103205"))
    fact = bus.member_fact(msg)
    assert isinstance(fact, HouseholdPlaced)
    assert fact.household_id == "hh-1" and fact.region.code == "431281103205"
