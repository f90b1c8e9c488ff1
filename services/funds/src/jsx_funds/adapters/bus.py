"""Funds events on the bus: protobuf messages from jsx.funds.v1.events, built
from committed rows. Ids, regions and amounts only — never a donor's or
payee's name, a 身份证 number or a card number."""

from __future__ import annotations

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from jsx.common.v1 import common_pb2
from jsx.events.v1 import events_pb2 as ev_events_pb2
from jsx.funds.v1 import events_pb2, funds_pb2
from jsx.members.v1 import events_pb2 as members_events_pb2
from jsx_funds.ledger.tables import DonationRow, FundRow, JournalRow
from jsx_funds.programs.tables import ApplicationRow, ProgramRow
from jsxcore.outbox import add_event, subject_of


def emit(session: AsyncSession, message: Message) -> str:
    """Write ``message`` to the outbox in the caller's transaction; returns the event id."""
    return add_event(session, subject_of(message), message)


def fund_name(fund_id: int) -> str:
    return f"funds/{fund_id}"


def entry_name(fund_id: int, journal_id: int) -> str:
    return f"funds/{fund_id}/ledgerEntries/{journal_id}"


def donation_name(fund_id: int, journal_id: int) -> str:
    return f"funds/{fund_id}/donations/{journal_id}"


def payment_name(fund_id: int, journal_id: int) -> str:
    return f"funds/{fund_id}/payments/{journal_id}"


def source_name(source_id: int) -> str:
    return f"fundSources/{source_id}"


def fund_opened(fund: FundRow) -> events_pb2.FundOpened:
    return events_pb2.FundOpened(
        fund=fund_name(fund.id),
        owner_region=common_pb2.RegionCode(code=fund.region),
        kind=funds_pb2.FundKind.Value("FUND_KIND_" + fund.kind),
    )


def allocation_posted(fund: FundRow, journal: JournalRow, source_id: int) -> events_pb2.AllocationPosted:
    return events_pb2.AllocationPosted(
        ledger_entry=entry_name(fund.id, journal.id),
        fund=fund_name(fund.id),
        owner_region=common_pb2.RegionCode(code=fund.region),
        source=source_name(source_id),
        amount=common_pb2.Money(fen=journal.amount),
    )


def donation_received(fund: FundRow, donation: DonationRow) -> events_pb2.DonationReceived:
    return events_pb2.DonationReceived(
        donation=donation_name(fund.id, donation.journal_id),
        fund=fund_name(fund.id),
        owner_region=common_pb2.RegionCode(code=fund.region),
        donor_kind=funds_pb2.DonorKind.Value("DONOR_KIND_" + donation.donor_kind),
        amount=common_pb2.Money(fen=donation.amount),
        receipt_number=donation.receipt_no,
    )


def entry_reversed(fund: FundRow, reversal: JournalRow, original: JournalRow) -> events_pb2.LedgerEntryReversed:
    return events_pb2.LedgerEntryReversed(
        ledger_entry=entry_name(fund.id, reversal.id),
        reverses=entry_name(fund.id, original.id),
        fund=fund_name(fund.id),
        owner_region=common_pb2.RegionCode(code=fund.region),
        reversed_kind=funds_pb2.EntryKind.Value("ENTRY_KIND_" + original.kind),
        amount=common_pb2.Money(fen=original.amount),
    )


# ---------------------------------------------------------------- consumed events

#: Visits with 慰问金 from the events service (stream JSX_EVENTS).
VISIT_SUBJECTS = ("jsx.events.visit.recorded",)
#: Household facts from the members service (stream JSX_MEMBERS) for the projection.
MEMBER_SUBJECTS = (
    "jsx.members.household.registered",
    "jsx.members.household.situation_changed",
    "jsx.members.household.members_changed",
)
#: Persons' deaths from the members service (stream JSX_MEMBERS): they stop periodic payments.
DEATH_SUBJECTS = ("jsx.members.person.died", "jsx.members.person.death_corrected")
DEATH_TYPES = (members_events_pb2.PersonDied, members_events_pb2.PersonDeathCorrected)
VISIT_TYPES = (ev_events_pb2.VisitRecorded,)
MEMBER_TYPES = (
    members_events_pb2.HouseholdRegistered,
    members_events_pb2.HouseholdSituationChanged,
    # a new 户主 or member count changes who is paid per-household subsidies
    members_events_pb2.HouseholdMembersChanged,
)


def visit_expense_booked(
    msg: ev_events_pb2.VisitRecorded, fund_id: int, journal_id: int
) -> events_pb2.VisitExpenseBooked:
    return events_pb2.VisitExpenseBooked(
        visit=msg.visit,
        fund=fund_name(fund_id),
        household=msg.household,
        region=common_pb2.RegionCode(code=msg.region.code),
        amount=common_pb2.Money(fen=msg.money.fen),
        ledger_entry=entry_name(fund_id, journal_id),
    )


def visit_expense_rejected(
    msg: ev_events_pb2.VisitRecorded, reason: str, message: str
) -> events_pb2.VisitExpenseRejected:
    return events_pb2.VisitExpenseRejected(
        visit=msg.visit,
        fund=msg.fund,
        household=msg.household,
        region=common_pb2.RegionCode(code=msg.region.code),
        amount=common_pb2.Money(fen=msg.money.fen),
        reason=reason,
        message=message,
    )


# ---------------------------------------------------------------- applications


def program_name(program_id: int) -> str:
    return f"programs/{program_id}"


def application_name(application_id: int) -> str:
    return f"applications/{application_id}"


def objection_name(application_id: int, objection_id: int) -> str:
    return f"applications/{application_id}/objections/{objection_id}"


def application_event(cls: type[Message], app: ApplicationRow, program: ProgramRow, **extra: object) -> Message:
    """One of ApplicationSubmitted/Approved/Rejected/Objected: ids, region, period, amounts — no names."""
    return cls(
        application=application_name(app.id),
        program=program_name(program.id),
        program_type=funds_pb2.ProgramType.Value("PROGRAM_TYPE_" + program.type),
        household=f"households/{app.household_id}",
        person=app.person,
        village=common_pb2.RegionCode(code=app.village),
        period=common_pb2.Period(code=app.period),
        **extra,
    )
