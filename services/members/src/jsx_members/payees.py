"""Batch reads of persons for other services (AIP-231): payee details for a
bank payment file, masked views for a 公示 list.

* :meth:`PayeeReads.batch_get_payees` returns full name, full 一卡通 card
  number and village — the one place other services get a card number in
  clear. The RPC's permission ``members.payees.read`` is held by name only
  (finance_officer, system; see :data:`jsxcore.auth.PAYEES_READ`), and every
  call writes an audit line ``payees.read`` (actor, how many persons — never
  names or numbers).
* :meth:`PayeeReads.batch_get_persons` returns the masked view (张*明,
  4312**********1234, 138****1234) whatever the caller may see.

Both refuse the whole call when a person is unknown (NOT_FOUND) or outside
the caller's region (PERMISSION_DENIED), naming every such person, so a
payment file is never produced with holes.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from jsx.members.v1 import members_pb2 as pb
from jsxcore.auth import current_caller
from jsxcore.errors import InvalidArgument, NotFound, PermissionDenied

from jsx_members.adapters import db as m
from jsx_members.service import MembersService, parse_name, region_pb

audit = logging.getLogger("jsx.audit")

#: Most persons one batch call may name (AIP-231 asks for a documented cap).
MAX_BATCH = 1000
#: Persons named in one error message; the rest are counted.
_LIST_IN_MESSAGE = 20


def _listing(names: Sequence[str]) -> str:
    shown = "、".join(names[:_LIST_IN_MESSAGE])
    return shown + (f" 等 {len(names)} 人" if len(names) > _LIST_IN_MESSAGE else "")


class PayeeReads:
    """Batch reads over the members database (read-only; no transaction needed)."""

    def __init__(self, service: MembersService) -> None:
        self.service = service

    async def _load(self, names: Sequence[str], *columns: Any) -> list[Any]:
        """The persons named, in order; all-or-nothing NOT_FOUND / PERMISSION_DENIED. With ``columns``
        (which must include ``id`` and ``village``), rows of just those columns instead of whole entities."""
        if not names:
            raise InvalidArgument.field("names", "请至少指定一个人员（persons/{编号}）", reason="NAMES_REQUIRED")
        if len(names) > MAX_BATCH:
            raise InvalidArgument.field("names", f"一次最多查询 {MAX_BATCH} 人，本次 {len(names)} 人，请分批查询",
                                        reason="TOO_MANY_NAMES")
        ids = [parse_name(n, "persons", f"names[{i}]") for i, n in enumerate(names)]
        async with self.service.sessions() as s:
            result = await s.execute((select(*columns) if columns else select(m.Person)).where(m.Person.id.in_(set(ids))))
            rows = {p.id: p for p in (result.all() if columns else result.scalars())}
        missing = [f"persons/{i}" for i in dict.fromkeys(ids) if i not in rows]
        if missing:
            raise NotFound(f"成员服务中没有以下人员：{_listing(missing)}，请核对编号", reason="PERSONS_NOT_FOUND",
                           metadata={"persons": ",".join(missing[:_LIST_IN_MESSAGE]), "count": str(len(missing))})
        caller = current_caller()
        outside = [f"persons/{i}" for i in dict.fromkeys(ids) if not caller.in_region(rows[i].village)]
        if outside:
            region = caller.region.name or caller.region.short
            raise PermissionDenied(f"以下人员不在您的辖区（{region}）内，不能查询：{_listing(outside)}",
                                   reason="OUT_OF_REGION",
                                   metadata={"persons": ",".join(outside[:_LIST_IN_MESSAGE]), "count": str(len(outside)),
                                             "caller_region": caller.region.code})
        return [rows[i] for i in ids]

    async def batch_get_payees(self, req: pb.BatchGetPayeesRequest) -> pb.BatchGetPayeesResponse:
        """Full name, full card number and village per person (see module doc)."""
        # Only what a payee is: whole entities cost ~9 s of a million payees' ~17 s (bench/bank_file).
        rows = await self._load(req.names, m.Person.id, m.Person.name, m.Person.village, m.Person.card_cipher)
        svc = self.service
        out = pb.BatchGetPayeesResponse(payees=[pb.Payee(
            person=f"persons/{p.id}", display_name=p.name, village=region_pb(p.village),
            card_number=svc.cipher.decrypt(p.card_cipher, aad=svc._aad(p.id, "card")) if p.card_cipher else "",
        ) for p in rows])
        # Who read how many card numbers — the values and the persons stay out of the log.
        audit.info("payees.read", extra={"actor": current_caller().subject, "persons": len(rows)})
        return out

    async def batch_get_persons(self, req: pb.BatchGetPersonsRequest) -> pb.BatchGetPersonsResponse:
        """Masked persons, in request order (see module doc)."""
        rows = await self._load(req.names)
        return pb.BatchGetPersonsResponse(persons=[self.service.person_pb(p, pb.PERSON_VIEW_MASKED) for p in rows])


__all__ = ["MAX_BATCH", "PayeeReads"]
