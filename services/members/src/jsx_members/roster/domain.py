"""Roster (花名册) import rules: what one row must say, how rows form
households, and what an import adds. Pure: no I/O — the service loads
what is registered and hands it in.

A file is all or nothing: every row is checked (its fields, duplicates
within the file, its household, the caller's region, agreement with what
is registered), and if any is wrong nothing is written and the report
names each row's problems.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from jsx_members.households.domain import (
    HouseholdImport,
    HouseholdMemberView,
    Membership,
    Relation,
    Situation,
    SituationRecord,
    check_household_members,
    grade_change,
    validate_situation,
)
from jsx_members.labels import parse_enum
from jsx_members.persons.domain import PersonDraft, RegisteredPerson, normalize_roster_card, validate_person
from jsxcore.errors import FailedPrecondition, InvalidArgument
from jsxcore.pii import mask_name
from jsxcore.values import IdNumber, RegionCode

#: The column of the error workbook that explains each bad row.
ERROR_COLUMN = "错误说明"


@dataclass
class ImportReport:
    """Outcome of a roster import. ``errors`` maps a row's position (0-based,
    header excluded) to the problems found; when it is non-empty nothing was
    written."""

    rows: list[dict[str, str]]
    errors: dict[int, list[str]] = field(default_factory=dict)
    persons_created: int = 0
    households_created: int = 0
    members_added: int = 0
    situations_recorded: int = 0
    unchanged: int = 0
    #: registered persons who had no 一卡通 account and got the file's
    cards_added: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def error_rows(self) -> Iterator[dict[str, str]]:
        """Every original row, with 错误说明 filled for the bad ones (row numbers as in Excel)."""
        for i, r in enumerate(self.rows):
            yield {**r, ERROR_COLUMN: "；".join(self.errors.get(i, []))}

    def add(self, row: int, message: str) -> None:
        self.errors.setdefault(row, []).append(message)


@dataclass(slots=True)
class RosterRow:
    """A row that passed its own checks. The service fills in the blind-index digests."""

    draft: PersonDraft
    head: str | None  # plaintext 身份证 of the head, normalised
    relation: Relation | None
    situation: SituationRecord | None
    card: str = ""  # the 一卡通 account, normalised ("" when the row has none)
    digest: str = ""
    phone_digest: str | None = None

    @property
    def role(self) -> Relation:
        return self.relation or Relation.OTHER


def messages(e: InvalidArgument) -> list[str]:
    return [v.description for v in e.violations] or [e.message]


class RowParser:
    """Checks one row at a time against the field rules and the caller's region."""

    def __init__(self, *, today: date, scope: RegionCode) -> None:
        self.today = today
        self.scope = scope
        # 户主身份证号 repeats on every member's row: parse each number once.
        self._heads: dict[str, str] = {}

    def parse(self, r: Mapping[str, str]) -> tuple[RosterRow | None, list[str]]:
        """The row, or None and the clerk-readable problems."""
        errs: list[str] = []
        draft = None
        try:
            draft = validate_person(
                name=r.get("姓名", ""),
                id_number=r.get("身份证号", ""),
                phone=r.get("联系电话", ""),
                village=r.get("所属村", ""),
                hukou=r.get("户籍类型", ""),
                today=self.today,
            )
        except InvalidArgument as e:
            errs += messages(e)
        card = ""
        try:
            card = normalize_roster_card(r.get("一卡通账号", ""))
        except InvalidArgument as e:
            errs += messages(e)
        head: str | None = None
        relation: Relation | None = None
        situation: SituationRecord | None = None
        head_text = r.get("户主身份证号", "").strip()
        if head_text:
            head = self._heads.get(head_text)
            if head is None and draft is not None and head_text == r.get("身份证号", "").strip():
                head = draft.id_number.value  # the head's own row: already checked
            if head is None:
                try:
                    head = IdNumber.parse(head_text, field="户主身份证号", today=self.today).value
                except InvalidArgument as e:
                    errs += ["户主身份证号：" + m_ for m_ in messages(e)]
            if head is not None:
                if len(self._heads) > 10_000:
                    self._heads.clear()
                self._heads[head_text] = head
            try:
                relation = parse_enum(Relation, r.get("与户主关系", ""), field="与户主关系", what="与户主关系")
            except InvalidArgument as e:
                errs += messages(e)
        elif r.get("与户主关系", "").strip():
            errs.append("填写了与户主关系，但没有填写户主身份证号")
        kind_text = r.get("家庭类型", "").strip()
        if kind_text:
            try:
                situation = self._situation(r, kind_text)
                if relation is not Relation.HEAD:
                    errs.append("家庭类型只在户主那一行填写")
            except InvalidArgument as e:
                errs += messages(e)
        if draft is not None:
            if not self.scope.contains(draft.village):
                errs.append(f"所属村 {draft.village.code} 不在您的辖区（{self.scope.name or self.scope.short}）内")
            if head is not None and relation is Relation.HEAD and head != draft.id_number.value:
                errs.append("与户主关系为“户主”的行，户主身份证号须是本人的号码")
            if head is not None and relation is not Relation.HEAD and head == draft.id_number.value:
                errs.append("户主身份证号是本人号码时，与户主关系应为“户主”")
        if errs or draft is None:
            return None, errs
        return RosterRow(draft, head, relation, situation, card), errs

    def _situation(self, r: Mapping[str, str], kind_text: str) -> SituationRecord:
        kind = Situation.parse(kind_text, field="家庭类型")
        when_text = r.get("家庭类型生效日期", "").strip()
        if not when_text:
            raise InvalidArgument.field("家庭类型生效日期", "填写家庭类型时须填写生效日期，如 2022-07-01")
        try:
            when = date.fromisoformat(when_text.replace("/", "-")[:10])
        except ValueError:
            raise InvalidArgument.field("家庭类型生效日期", f"生效日期“{when_text}”格式不对，应如 2022-07-01") from None
        grade_text = r.get("伤残等级", "").strip()
        grade = int(grade_text) if grade_text.isdigit() else None
        if grade_text and grade is None:
            raise InvalidArgument.field("伤残等级", "伤残等级应为 1、2 或 3")
        return validate_situation(
            SituationRecord(kind, when, grade, r.get("光荣证编号", "").strip()), today=self.today, field="家庭类型"
        )


def registered_mismatch(p: RegisteredPerson, r: RosterRow) -> str | None:
    """A row whose 身份证 is registered must agree with the registration (it is reported, never overwritten)."""
    if (p.name, p.village, p.phone_digest, p.hukou) != (
        r.draft.name,
        r.draft.village.code,
        r.phone_digest,
        r.draft.hukou,
    ):
        return (
            f"此身份证号已登记为 {mask_name(p.name)}（persons/{p.id}），但姓名、所属村、电话或户籍类型与系统不一致；"
            "请核对，如需更正请用人员修改功能"
        )
    return None


def card_conflict(p: RegisteredPerson, r: RosterRow) -> str | None:
    """A row's 一卡通 account differing from the one on file is reported, never overwritten."""
    if r.card and p.card and r.card != p.card:
        return (
            f"此人（persons/{p.id}）已登记的一卡通账号与本表不同（尾号 {p.card[-4:]}）；"
            "如需更换账号，请用人员修改功能（UpdatePerson）更正"
        )
    return None


Group = list[tuple[int, RosterRow]]


def group_households(good: Sequence[tuple[int, RosterRow]]) -> dict[str, Group]:
    """Rows naming a 户主, grouped by the head's 身份证 (file order kept)."""
    groups: dict[str, Group] = {}
    for i, r in good:
        if r.head:
            groups.setdefault(r.head, []).append((i, r))
    return groups


def check_households(
    report: ImportReport,
    groups: Mapping[str, Group],
    by_id: Mapping[str, tuple[int, RosterRow]],
    *,
    head_person: Mapping[str, RegisteredPerson | None],
    existing: Mapping[str, RegisteredPerson],
    memberships: Mapping[str, Membership],
    latest: Mapping[str, SituationRecord | None],
    today: date,
) -> None:
    """Cross-row and registry checks of the file's households (adds to ``report.errors``).

    ``head_person``: each head's registration (None when new), ``existing``:
    registered persons by digest, ``memberships``: their households,
    ``latest``: the latest situation entry of those households."""
    for head, members in groups.items():
        head_row = by_id.get(head)
        head_db = head_person.get(head)
        hh_db = memberships.get(head_db.id) if head_db else None
        if head_row is None and hh_db is None:
            for i, _ in members:
                report.add(i, "户主身份证号在本表和系统中都找不到对应的户主，请先登记户主")
            continue
        heads = [(i, r) for i, r in members if r.relation is Relation.HEAD]
        if head_row is not None and not heads:
            for i, _ in members:
                report.add(i, "户主本人那一行的与户主关系应填“户主”")
            continue
        try:
            views = [HouseholdMemberView(r.draft.id_number.value, r.role, r.draft.birth_date) for _, r in members]
            if hh_db is None:
                check_household_members(views, on=today, field="家庭")
        except InvalidArgument as e:
            for i, _ in heads or members:
                report.errors.setdefault(i, []).extend(messages(e))
        rec = head_row[1].situation if head_row else None
        if head_row is not None and hh_db is not None and rec is not None:
            last = latest.get(hh_db.household_id)
            if last is not None and not last.same_state(rec) and rec.effective_from <= last.effective_from:
                report.add(
                    head_row[0],
                    f"家庭类型与系统中不同，但生效日期不晚于系统中最近一次记录（{last.effective_from.isoformat()}）；"
                    "历史记录不可改写，请填写新的变更日期",
                )
        for i, r in members:
            p = existing.get(r.digest)
            mine = memberships.get(p.id) if p else None
            if mine is not None and (hh_db is None or mine.household_id != hh_db.household_id):
                report.add(i, f"此人已在另一户（households/{mine.household_id}）中，一人只能属于一户")
            elif mine is not None and mine.relation is not r.role:
                report.add(i, "与户主关系与系统中已登记的不一致")


def plan_households(
    report: ImportReport,
    groups: Mapping[str, Group],
    *,
    person_ids: Mapping[str, str],
    head_ids: Mapping[str, str],
    memberships: Mapping[str, Membership],
    villages: Mapping[str, str],
    latest: Mapping[str, SituationRecord | None],
    new_id: Callable[[], str],
) -> list[HouseholdImport]:
    """What a fully valid file adds, household by household in file order
    (persons are registered by then: ``person_ids`` maps each row's 身份证 to
    its person, ``head_ids`` each head's). Counts go to ``report``."""
    plan: list[HouseholdImport] = []
    for head, members in groups.items():
        head_pid = head_ids[head]
        known = memberships.get(head_pid)
        head_row = next((r for _, r in members if r.relation is Relation.HEAD), None)
        if known is None:
            hid = new_id()
            village = head_row.draft.village.code if head_row else members[0][1].draft.village.code
            report.households_created += 1
            current: SituationRecord | None = None
        else:
            hid = known.household_id
            village = villages[hid]
            current = latest.get(hid)
        added: list[tuple[str, Relation]] = []
        for _, r in members:
            pid = person_ids[r.draft.id_number.value]
            if pid in memberships:
                continue
            added.append((pid, r.role))
            if known is not None:
                report.members_added += 1
        rec = head_row.situation if head_row else None
        entry: SituationRecord | None = None
        previous_grade: int | None = None
        if (
            rec is not None
            and rec.situation is not Situation.NONE
            and not (current is not None and current.same_state(rec))
        ):
            if current is not None and rec.effective_from <= current.effective_from:
                masked = head_row.draft.id_number.masked if head_row else ""
                raise FailedPrecondition(
                    f"户主 {masked} 的家庭类型生效日期须晚于系统中最近一次记录（{current.effective_from.isoformat()}）",
                    reason="SITUATION_NOT_AFTER_LATEST",
                )
            entry = rec
            previous_grade = grade_change(current, rec)
            report.situations_recorded += 1
        plan.append(
            HouseholdImport(
                household_id=hid,
                new=known is None,
                head_person_id=head_pid,
                village=village,
                member_count=len(members),
                members=tuple(added),
                situation=entry,
                previous_grade=previous_grade,
            )
        )
    return plan


__all__ = [
    "ERROR_COLUMN",
    "Group",
    "ImportReport",
    "RosterRow",
    "RowParser",
    "card_conflict",
    "check_households",
    "group_households",
    "messages",
    "plan_households",
    "registered_mismatch",
]
