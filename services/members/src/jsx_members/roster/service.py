"""Roster import / export use cases (花名册 files, through ``jsx members
import|export``): why they talk to the database and not gRPC, see the README.

Import is all or nothing and streams: one transaction for the whole file.
Persons are validated, checked against the registry and inserted chunk by
chunk while the file is still being read (the xlsx parsing runs in a child
process, see :mod:`jsx_members.adapters.roster`), so the writes overlap the
reading; after the first bad row nothing more is written, the remaining
rows are still checked for the error workbook, and the transaction is
rolled back. Rows that match what is registered are left alone, so
re-importing a file (or an exported one) changes nothing.

Persons and households are written through their contexts' services; the
rules a row and a household must pass are in :mod:`jsx_members.roster.domain`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx_members.adapters import db
from jsx_members.households.domain import Membership, Relation, Situation
from jsx_members.households.service import HouseholdsService
from jsx_members.persons.domain import NewRosterPerson, RegisteredPerson
from jsx_members.persons.service import PersonsService
from jsx_members.roster.domain import (
    ImportReport,
    RosterRow,
    RowParser,
    card_conflict,
    check_households,
    group_households,
    plan_households,
    registered_mismatch,
)
from jsxcore.auth import Caller
from jsxcore.bulk import fewer_collections
from jsxcore.values import RegionCode

audit = logging.getLogger("jsx.audit")

#: Rows validated and written per step while the file is read.
_CHUNK = 2000

Progress = Callable[[int], None]


class RosterService:
    """Roster import and export. ``today`` is injectable for tests."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        persons: PersonsService,
        households: HouseholdsService,
        *,
        notify: Callable[[], None] | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.sessions = sessions
        self.persons = persons
        self.households = households
        self.notify = notify
        self.today = today

    async def import_rows(
        self, rows: Iterable[dict[str, str]], *, caller: Caller, progress: Progress | None = None
    ) -> ImportReport:
        """Import roster rows as ``caller``: validate every row (fields,
        duplicates within the file, households, the caller's region, agreement
        with what is already registered); if any row is wrong, write nothing and
        return the errors; else write everything in one transaction."""
        with fewer_collections():
            return await _Import(self, caller).run(rows, progress)

    async def export_rows(self, region: RegionCode, *, caller: Caller) -> list[dict[str, str]]:
        """All persons in ``region`` as roster rows (same columns as import).
        身份证 numbers and phones are plaintext only for callers who may see
        personal data (then the file re-imports as is); otherwise masked.
        Households first by id, their members in order; persons in no household before them."""
        caller.require_region(region)
        full = caller.may_see_pii
        async with self.sessions() as s:
            people = await self.persons.roster_identities(s, region=region, full=full)
            memberships = await self.households.memberships(s, [p.id for p in people])
            households, latest = await self.households.states(s, [m.household_id for m in memberships.values()])
            known = {p.id: p for p in people}
            outside = [h.head_person_id for h in households.values() if h.head_person_id not in known]
            heads = (
                {p.id: p for p in await self.persons.roster_identities(s, ids=outside, full=full)} if outside else {}
            )
        heads.update(known)

        def order(p_id: str) -> tuple[int, str, int, str]:
            m = memberships.get(p_id)
            return (0, "", 0, p_id) if m is None else (1, m.household_id, m.position, p_id)

        out: list[dict[str, str]] = []
        for p in sorted(people, key=lambda p: order(p.id)):
            row = {
                "姓名": p.name,
                "身份证号": p.id_number,
                "联系电话": p.phone,
                "所属村": p.village,
                "户籍类型": p.hukou.value,
                "一卡通账号": p.card,
            }
            m = memberships.get(p.id)
            if m is not None:
                row["户主身份证号"] = heads[households[m.household_id].head_person_id].id_number
                row["与户主关系"] = m.relation.value
                e = latest.get(m.household_id)
                if m.relation is Relation.HEAD and e is not None and e.situation is not Situation.NONE:
                    row.update(
                        {
                            "家庭类型": e.situation.value,
                            "家庭类型生效日期": e.effective_from.isoformat(),
                            "伤残等级": str(e.disability_grade or ""),
                            "光荣证编号": e.honor_certificate,
                        }
                    )
            out.append(row)
        audit.info(
            "roster.export", extra={"actor": caller.subject, "region": region.code, "rows": len(out), "plaintext": full}
        )
        return out


class _Import:
    """One roster import (see :meth:`RosterService.import_rows`)."""

    def __init__(self, svc: RosterService, caller: Caller) -> None:
        self.svc = svc
        self.persons = svc.persons
        self.households = svc.households
        self.caller = caller
        self.today = svc.today()
        self.parser = RowParser(today=self.today, scope=caller.region)
        # The previous chunk's insert, running while the next chunk is validated.
        self._pending: asyncio.Task[None] | None = None
        self.existing: dict[str, RegisteredPerson] = {}  # blind-index digest → registered person
        self.memberships: dict[str, Membership] = {}  # person id → household
        self.ids: dict[str, str] = {}  # plaintext 身份证 → person id (only in memory, for linking)
        self.cards: list[tuple[str, str]] = []  # (person id, 一卡通) for registered persons who had none

    def parse(self, i: int, r: dict[str, str], report: ImportReport) -> RosterRow | None:
        row, errs = self.parser.parse(r)
        if errs:
            report.errors[i] = errs
            return None
        assert row is not None
        digest = self.persons.digest
        row.digest = digest(row.draft.id_number.value)
        row.phone_digest = digest(row.draft.phone) if row.draft.phone else None
        return row

    async def run(self, rows: Iterable[dict[str, str]], progress: Progress | None) -> ImportReport:
        report = ImportReport(rows=[])
        async with self.svc.sessions() as s, s.begin():
            async with db.large_cache(s):
                try:
                    ok = await self._run(s, report, rows, progress)
                finally:
                    await self._settle()
            if not ok:
                report.persons_created = report.unchanged = 0
                await s.rollback()
                return report
        if self.svc.notify is not None:
            self.svc.notify()
        return report

    async def _run(
        self, s: AsyncSession, report: ImportReport, rows: Iterable[dict[str, str]], progress: Progress | None
    ) -> bool:
        """Validate and write; False (and report.errors) when the file has errors."""
        good: list[tuple[int, RosterRow]] = []
        first_row: dict[str, int] = {}
        chunk: list[tuple[int, RosterRow]] = []
        for i, r in enumerate(rows):
            report.rows.append(r)
            row = self.parse(i, r, report)
            key = "".join(r.get("身份证号", "").split()).upper()
            prev = first_row.setdefault(key, i) if key else i
            if prev != i:
                report.add(i, f"身份证号与第{prev + 2}行重复")
            elif row is not None:
                good.append((i, row))
                chunk.append((i, row))
                if len(chunk) >= _CHUNK:
                    await self._persons(s, report, chunk)
                    chunk = []
            if progress and i % 1000 == 999:
                progress(1000)
            if self._pending is not None and i % 64 == 0:
                # Let the insert task hand its next statement to the database
                # thread, which then runs alongside this validation.
                await asyncio.sleep(0)
        await self._persons(s, report, chunk)
        await self._settle()
        if progress:
            progress(len(report.rows) % 1000)
        by_id = {r.draft.id_number.value: (i, r) for i, r in good}
        groups = group_households(good)
        # Heads named but not in the file must already be registered.
        digest = self.persons.digest
        head_digest = {h: by_id[h][1].digest if h in by_id else digest(h) for h in groups}
        await self._registered(s, [head_digest[h] for h in groups if h not in by_id])
        head_person = {h: self.existing.get(d) for h, d in head_digest.items()}
        known_households = [
            m.household_id
            for p in head_person.values()
            if p is not None
            if (m := self.memberships.get(p.id)) is not None
        ]
        households, latest = await self.households.states(s, known_households)
        check_households(
            report,
            groups,
            by_id,
            head_person=head_person,
            existing=self.existing,
            memberships=self.memberships,
            latest=latest,
            today=self.today,
        )
        if report.errors:
            return False
        head_ids: dict[str, str] = {}
        for h, p in head_person.items():  # every head is in the file or registered by now
            head_ids[h] = self.ids.get(h) or (p.id if p is not None else "")
        plan = plan_households(
            report,
            groups,
            person_ids=self.ids,
            head_ids=head_ids,
            memberships=self.memberships,
            villages={hid: h.village for hid, h in households.items()},
            latest=latest,
            new_id=lambda: db.new_id(),
        )
        await self.households.add_imported(s, plan, recorded_by=self.caller.subject)
        await self.persons.set_cards(s, self.cards)
        report.cards_added = len(self.cards)
        audit.info(
            "roster.import",
            extra={
                "actor": self.caller.subject,
                "persons": report.persons_created,
                "households": report.households_created,
                "cards": report.cards_added,
                "rows": len(report.rows),
            },
        )
        return True

    async def _registered(self, s: AsyncSession, digests: list[str]) -> dict[str, RegisteredPerson]:
        """Look up registered persons (and their households) by digest, remembering them."""
        found = await self.persons.by_digests(s, digests)
        if found:
            self.existing.update(found)
            self.memberships.update(await self.households.memberships(s, [p.id for p in found.values()]))
        return found

    async def _persons(self, s: AsyncSession, report: ImportReport, chunk: list[tuple[int, RosterRow]]) -> None:
        """Check a chunk of valid rows against the registered persons (one
        ``IN`` query) and, while the file has no error yet, insert the new
        ones with their PersonRegistered events."""
        if not chunk:
            return
        await self._settle()
        found = await self._registered(s, [r.digest for _, r in chunk])
        new: list[NewRosterPerson] = []
        for i, r in chunk:
            p = found.get(r.digest)
            if p is not None:
                for problem in (registered_mismatch(p, r), card_conflict(p, r)):
                    if problem:
                        report.add(i, problem)
                self.ids[r.draft.id_number.value] = p.id
                if r.card and not p.card:
                    self.cards.append((p.id, r.card))
                else:
                    report.unchanged += 1
                continue
            if report.errors:
                continue  # the import will be rolled back: only validate from here on
            pid = db.new_id()
            self.ids[r.draft.id_number.value] = pid
            new.append(NewRosterPerson(pid, r.draft, r.digest, r.phone_digest, r.card))
        if new:
            report.persons_created += len(new)
            self._pending = asyncio.create_task(self.persons.insert(s, self.persons.prepare(new)))
            await asyncio.sleep(0)

    async def _settle(self) -> None:
        """Wait for the chunk insert in flight (the session allows one operation at a time)."""
        task, self._pending = self._pending, None
        if task is not None:
            await task


__all__ = ["ImportReport", "RosterService"]
