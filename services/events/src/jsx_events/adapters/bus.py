"""Event messages in and out of the events service.

Published (outbox rows written by the use cases; ids, regions, amounts only — never notes):
ActivityHeld, VisitRecorded, AwardDecided. Consumed: funds' booking results for visits and
members' site/household/pairing facts, each turned into the domain fact its context applies.

Resource names on the wire (``visits/{id}``, ``households/{id}``, ``sites/{id}``,
``funds/{id}``) are stored as bare ids; visitors and participants keep their
full names (``persons/…`` or ``volunteers/…``) because either kind may appear.
"""

from __future__ import annotations

from google.protobuf.message import Message

from jsx.events.v1 import events_pb2 as epb
from jsx.funds.v1 import events_pb2 as fpb
from jsx.members.v1 import events_pb2 as mpb
from jsx.members.v1 import members_pb2 as mmpb
from jsx_events.activities.domain import Activity
from jsx_events.awards.domain import Award
from jsx_events.awards.wire import DECISION_TO
from jsx_events.catalog.wire import type_pb
from jsx_events.projections.domain import (
    HouseholdPlaced,
    MemberFact,
    PairingChanged,
    SiteClosed,
    SiteOpened,
    SituationChanged,
)
from jsx_events.visits.domain import BookingResult, Visit
from jsxcore import wire
from jsxcore.values import RegionCode

#: Subjects consumed from the members and funds streams.
MEMBER_SUBJECTS = ("jsx.members.site.>", "jsx.members.household.>", "jsx.members.pairing.>")
FUNDS_SUBJECTS = ("jsx.funds.visit_expense.>",)
#: Members' household life events events only needs to keep the household's place from.
_HOUSEHOLD_LIFE_EVENTS = (
    mpb.HouseholdChildAdded,
    mpb.HouseholdSplit,
    mpb.HouseholdMerged,
    mpb.HouseholdDisabilityGradeChanged,
    mpb.HouseholdDisabilityRecovered,
)
MEMBER_TYPES = (
    mpb.SiteOpened,
    mpb.SiteClosed,
    mpb.HouseholdRegistered,
    mpb.HouseholdSituationChanged,
    mpb.HouseholdMembersChanged,
    mpb.VolunteerPaired,
    mpb.VolunteerUnpaired,
    *_HOUSEHOLD_LIFE_EVENTS,
)
FUNDS_TYPES = (fpb.VisitExpenseBooked, fpb.VisitExpenseRejected)
_MemberMessage = (
    mpb.SiteOpened
    | mpb.SiteClosed
    | mpb.HouseholdRegistered
    | mpb.HouseholdSituationChanged
    | mpb.HouseholdMembersChanged
    | mpb.VolunteerPaired
    | mpb.VolunteerUnpaired
    | mpb.HouseholdChildAdded
    | mpb.HouseholdSplit
    | mpb.HouseholdMerged
    | mpb.HouseholdDisabilityGradeChanged
    | mpb.HouseholdDisabilityRecovered
)


# ---------------------------------------------------------------- published events


def activity_held_event(a: Activity) -> epb.ActivityHeld:
    t, custom = type_pb(a.type)
    return epb.ActivityHeld(
        activity=wire.name_to("activities", a.id),
        type=t,
        custom_type=custom,
        organiser_region=wire.region_to(a.region),
        site=wire.name_to("sites", a.site_id),
        held_date=wire.date_to(a.start),
        participant_count=a.reached,
    )


def visit_recorded_event(v: Visit) -> epb.VisitRecorded:
    """Ids, region and amount only: never notes (they may mention health or names)."""
    return epb.VisitRecorded(
        visit=wire.name_to("visits", v.id),
        household=wire.name_to("households", v.household_id),
        region=wire.region_to(v.region),
        fund=wire.name_to("funds", v.fund_id),
        money=wire.money_to(v.amount),
        visit_date=wire.date_to(v.visited_on),
    )


def award_decided_event(a: Award) -> epb.AwardDecided:
    return epb.AwardDecided(
        award=wire.name_to("awards", a.id),
        region=wire.region_to(a.region),
        nominee=a.nominee_id,
        nominee_region=wire.region_to(a.nominee_region or a.region),
        year=a.year,
        decision=DECISION_TO[a.decision],
    )


# ---------------------------------------------------------------- consumed events


def booking_result(msg: Message) -> BookingResult:
    """jsx.funds.visit_expense.booked|rejected → funds' answer for the visit."""
    if isinstance(msg, fpb.VisitExpenseBooked):
        return BookingResult(wire.id_from(msg.visit, "visits", "visit"), True, ledger_entry=msg.ledger_entry)
    if isinstance(msg, fpb.VisitExpenseRejected):
        return BookingResult(wire.id_from(msg.visit, "visits", "visit"), False, reason=msg.reason, message=msg.message)
    raise TypeError(f"not a funds booking result: {msg.DESCRIPTOR.full_name}")


def site_kind(value: int) -> str:
    """Site kinds as the members service names them (SiteKind enum without its prefix)."""
    return wire.enum_short(mmpb.SiteKind, value, "SITE_KIND_") or "UNSPECIFIED"


def _village(msg: _MemberMessage) -> RegionCode:
    return RegionCode.parse(msg.village.code)


def member_fact(msg: Message) -> MemberFact:
    """jsx.members.{site,household,pairing}.* → the fact the member projection applies."""
    if isinstance(msg, mpb.SiteOpened):
        # the site's public name (挂牌, not personal data), once members publish one; SiteOpened has none yet
        name = getattr(msg, "display_name", None)
        return SiteOpened(
            wire.id_from(msg.site, "sites", "site"),
            site_kind(msg.kind),
            _village(msg),
            wire.date_from(msg.opened_date, "opened_date"),
            None if name is None else str(name),
        )
    if isinstance(msg, mpb.SiteClosed):
        return SiteClosed(
            wire.id_from(msg.site, "sites", "site"),
            site_kind(msg.kind),
            _village(msg),
            wire.date_from(msg.closed_date, "closed_date"),
        )
    # Members' household life events (births, 分户/合户, 伤残 grade) come with the situation and member
    # events that change what events keeps; of themselves they only confirm where the household is.
    if isinstance(msg, (mpb.HouseholdRegistered, mpb.HouseholdMembersChanged, *_HOUSEHOLD_LIFE_EVENTS)):
        return HouseholdPlaced(wire.id_from(msg.household, "households", "household"), _village(msg))
    if isinstance(msg, mpb.HouseholdSituationChanged):
        return SituationChanged(
            wire.id_from(msg.household, "households", "household"),
            _village(msg),
            mmpb.SituationKind.Name(msg.kind).removeprefix("SITUATION_KIND_"),
            wire.date_from(msg.effective_to, "effective_to"),
        )
    if isinstance(msg, (mpb.VolunteerPaired, mpb.VolunteerUnpaired)):
        return PairingChanged(
            wire.id_from(msg.pairing, "pairings", "pairing"),
            msg.volunteer,
            wire.id_from(msg.household, "households", "household"),
            _village(msg),
            active=isinstance(msg, mpb.VolunteerPaired),
        )
    raise TypeError(f"not a member fact: {msg.DESCRIPTOR.full_name}")
