"""Application details (``Application.details``: 贷款, 住院, 三结合, 幸福基金): checked on
submission, stored as plain JSON on the application — health details (住院)
sealed by the PII cipher — and given back on reads.

:func:`parse_details` maps the wire oneof to the stored form (money in 分 as
ints, dates ISO), each problem a field violation; :func:`fill_details` maps it
back. Whether the kind fits the program, and what the rules see of the
details, is :mod:`jsx_funds.programs.domain`.
"""

from __future__ import annotations

import base64
import json
from datetime import date
from typing import Any

from jsx.common.v1 import common_pb2
from jsx.funds.v1 import funds_pb2
from jsx_funds.programs.domain import HAPPINESS_USES, SEALED_DETAILS, hospital_days
from jsxcore import wire
from jsxcore.errors import ErrorCollector, FailedPrecondition, InvalidArgument
from jsxcore.pii import FieldCipher


def _iso(day: date | None) -> str:
    return day.isoformat() if day else ""


def _pb_date(iso: str) -> common_pb2.Date | None:
    if not iso:
        return None
    day = date.fromisoformat(iso)
    return common_pb2.Date(year=day.year, month=day.month, day=day.day)


def parse_details(a: funds_pb2.Application, errs: ErrorCollector) -> dict[str, Any] | None:
    """``a.details`` as stored (plain values, money in 分, dates ISO), or None when unset.

    Each problem becomes a field violation in ``errs`` (the caller raises
    them together with the rest of the request's). Whether the kind fits the
    program is :func:`check_details_kind`, once the program is known.
    """
    kind = a.WhichOneof("details")
    if kind is None:
        return None
    f = f"application.{kind}"

    def text(value: str, name: str, label: str, limit: int, required: bool = True) -> str:
        value = value.strip()
        if required and not value:
            errs.add(f"{f}.{name}", f"请填写{label}")
        elif len(value) > limit:
            errs.add(f"{f}.{name}", f"{label}不能超过 {limit} 个字")
        return value[:limit]

    def day(msg: common_pb2.Date, name: str, label: str) -> date | None:
        try:
            got = wire.date_from(msg, f"{f}.{name}")
        except InvalidArgument as e:
            errs.violations.extend(e.violations)
            return None
        if got is None:
            errs.add(f"{f}.{name}", f"请填写{label}（年、月、日）")
        return got

    if kind == "loan_interest":
        loan = a.loan_interest
        lender = text(loan.lender, "lender", "贷款银行", 100)
        if loan.principal.fen <= 0:
            errs.add(f"{f}.principal", "贷款本金须大于 0 元，请按借款合同填写")
        if not 1 <= loan.annual_rate_bp <= 10000:
            errs.add(
                f"{f}.annual_rate_bp",
                "年利率按基点填写（1 个基点 = 0.01%），须在 1～10000 之间，例如年利率 4.35% 填 435",
            )
        if loan.interest_paid.fen <= 0:
            errs.add(f"{f}.interest_paid", "本期实付利息须大于 0 元，请按银行利息回单填写")
        start = day(loan.loan_start, "loan_start", "贷款起始日")
        end = day(loan.loan_end, "loan_end", "贷款到期日")
        if start and end and end <= start:
            errs.add(f"{f}.loan_end", f"贷款到期日 {end} 须晚于起始日 {start}，请按借款合同填写")
        purpose = text(loan.purpose, "purpose", "贷款用途（例如 柑橘种植、农产品加工）", 200)
        return {
            "kind": kind,
            "lender": lender,
            "principal_fen": loan.principal.fen,
            "annual_rate_bp": loan.annual_rate_bp,
            "interest_paid_fen": loan.interest_paid.fen,
            "loan_start": _iso(start),
            "loan_end": _iso(end),
            "purpose": purpose,
        }
    if kind == "hospital_care":
        stay = a.hospital_care
        hospital = text(stay.hospital, "hospital", "住院医院名称", 100)
        admission = day(stay.admission_date, "admission_date", "入院日期")
        discharge = day(stay.discharge_date, "discharge_date", "出院日期")
        days = stay.days
        if days < 0:
            errs.add(f"{f}.days", "住院天数不能为负数")
        elif admission and discharge:
            if discharge < admission:
                errs.add(f"{f}.discharge_date", f"出院日期 {discharge} 不能早于入院日期 {admission}，请按出院记录填写")
            else:
                want = hospital_days(admission, discharge)
                if days == 0:
                    days = want  # left empty: counted from the dates
                elif days != want:
                    errs.add(
                        f"{f}.days",
                        f"住院天数应为 {want} 天：按“算入不算出”计算，即出院日期减入院日期"
                        f"（{discharge} − {admission}），当天入院当天出院计 1 天；不填则按日期自动计算",
                    )
        return {
            "kind": kind,
            "hospital": hospital,
            "admission": _iso(admission),
            "discharge": _iso(discharge),
            "days": days,
        }
    if kind == "sanjiehe":
        sjh = a.sanjiehe
        project = text(sjh.project, "project", "三结合项目名称（例如 柑橘种植）", 200)
        agreement = text(sjh.agreement_number, "agreement_number", "帮扶协议编号", 64)
        industry = text(sjh.industry, "industry", "产业类别", 64, required=False)
        partner = text(sjh.partner, "partner", "合作企业名称", 200, required=False)
        if sjh.income_gained.fen < 0:
            errs.add(f"{f}.income_gained", "增收金额不能为负数；尚未验收的可不填")
        return {
            "kind": kind,
            "project": project,
            "agreement_number": agreement,
            "industry": industry,
            "partner": partner,
            "income_gained_fen": sjh.income_gained.fen,
        }
    happy = a.happiness_fund
    use = wire.enum_short(funds_pb2.HappinessUse, happy.use, "HAPPINESS_USE_")
    if not use:
        errs.add(f"{f}.use", f"请选择幸福基金用途：{'、'.join(HAPPINESS_USES.values())}之一")
    resolution = text(
        happy.resolution_number, "resolution_number", "村级审议决议编号（幸福基金支出须经村级组织审议通过）", 64
    )
    return {"kind": kind, "use": use, "resolution_number": resolution}


def fill_details(out: funds_pb2.Application, details: dict[str, Any] | None) -> None:
    """Set ``out``'s details oneof from the stored value."""
    if not details:
        return
    kind = details["kind"]
    if kind == "loan_interest":
        out.loan_interest.CopyFrom(
            funds_pb2.LoanInterestDetails(
                lender=details["lender"],
                principal=common_pb2.Money(fen=details["principal_fen"]),
                annual_rate_bp=details["annual_rate_bp"],
                interest_paid=common_pb2.Money(fen=details["interest_paid_fen"]),
                loan_start=_pb_date(details["loan_start"]),
                loan_end=_pb_date(details["loan_end"]),
                purpose=details["purpose"],
            )
        )
    elif kind == "hospital_care":
        out.hospital_care.CopyFrom(
            funds_pb2.HospitalCareDetails(
                hospital=details["hospital"],
                admission_date=_pb_date(details["admission"]),
                discharge_date=_pb_date(details["discharge"]),
                days=details["days"],
            )
        )
    elif kind == "sanjiehe":
        out.sanjiehe.CopyFrom(
            funds_pb2.SanjieheDetails(
                project=details["project"],
                agreement_number=details["agreement_number"],
                industry=details["industry"],
                partner=details["partner"],
                income_gained=common_pb2.Money(fen=details["income_gained_fen"]),
            )
        )
    elif kind == "happiness_fund":
        out.happiness_fund.CopyFrom(
            funds_pb2.HappinessFundDetails(
                use=funds_pb2.HappinessUse.Value("HAPPINESS_USE_" + details["use"]),
                resolution_number=details["resolution_number"],
            )
        )


def _details_aad(program_id: int, beneficiary: str, period: str) -> bytes:
    # Bound to the application's unique key: a sealed value copied to another row does not open.
    return f"applications.details:{program_id}:{beneficiary}:{period}".encode()


def seal(
    cipher: FieldCipher | None, details: dict[str, Any] | None, program_id: int, beneficiary: str, period: str
) -> dict[str, Any] | None:
    """Health details as ``{"kind", "sealed"}`` (AES-GCM, bound to the application's key); others as they are."""
    if not details or details["kind"] not in SEALED_DETAILS:
        return details
    if cipher is None:
        raise FailedPrecondition(
            "本服务未配置个人信息加密密钥，不能保存住院等健康信息，请联系管理员", reason="NO_PII_KEY"
        )
    token = cipher.encrypt(json.dumps(details, ensure_ascii=False), aad=_details_aad(program_id, beneficiary, period))
    return {"kind": details["kind"], "sealed": base64.b64encode(token).decode()}


def unseal(
    cipher: FieldCipher | None, details: dict[str, Any] | None, program_id: int, beneficiary: str, period: str
) -> dict[str, Any] | None:
    """The stored details in the clear (see :func:`seal`)."""
    if not details or "sealed" not in details:
        return details
    if cipher is None:
        raise FailedPrecondition(
            "本服务未配置个人信息加密密钥，无法读取住院等健康信息，请联系管理员", reason="NO_PII_KEY"
        )
    opened: dict[str, Any] = json.loads(
        cipher.decrypt(base64.b64decode(details["sealed"]), aad=_details_aad(program_id, beneficiary, period))
    )
    return opened
