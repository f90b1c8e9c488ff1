"""The programs context's pure domain (no database): the review chain and maker-checker, 公示 in
calendar and working days, the effective state, objections, withdrawal, budget and details."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from jsx_funds.programs import domain as pd
from jsxcore.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied
from jsxcore.testing.helpers import MONDAY_10H_CST
from jsxcore.values import RegionCode

VILLAGE = "431281101201"
CHAIN = ("VILLAGE", "TOWNSHIP", "COUNTY")


def test_each_level_is_reviewed_by_the_households_ancestor_at_that_level() -> None:
    assert pd.level_region(VILLAGE, "VILLAGE") == RegionCode.parse(VILLAGE)
    assert pd.level_region(VILLAGE, "TOWNSHIP") == RegionCode.parse("431281101")
    assert pd.level_region(VILLAGE, "COUNTY") == RegionCode.parse("431281")
    assert pd.level_region(VILLAGE, "CITY") == RegionCode.parse("431200")
    assert pd.level_region(VILLAGE, "PROVINCE") == RegionCode.parse("430000")
    assert [pd.next_level(CHAIN, n) for n in range(3)] == list(CHAIN)


def test_fixed_review_levels_run_bottom_up_without_repeats() -> None:
    assert pd.check_levels(CHAIN) and pd.check_levels(("VILLAGE", "COUNTY", "PROVINCE")) and pd.check_levels(())
    assert not pd.check_levels(("COUNTY", "VILLAGE"))
    assert not pd.check_levels(("VILLAGE", "VILLAGE"))
    assert not pd.check_levels(("VILLAGE", ""))


def test_maker_checker_and_the_steps_level() -> None:
    def check(reviewer: str, region: str, decided: tuple[str, ...] = (), level: str = "VILLAGE") -> RegionCode:
        return pd.check_reviewer(
            reviewer=reviewer,
            reviewer_region=RegionCode.parse(region),
            submitted_by="clerk",
            decided_by=decided,
            village=VILLAGE,
            level=level,
        )

    assert check("rev-v", VILLAGE) == RegionCode.parse(VILLAGE)
    with pytest.raises(PermissionDenied) as e:
        check("clerk", VILLAGE)  # the clerk who submitted it, even at the right level
    assert e.value.reason == "MAKER_CHECKER"
    with pytest.raises(PermissionDenied) as e:
        check("rev-v", "431281101", decided=("rev-v",), level="TOWNSHIP")  # decided the village step already
    assert e.value.reason == "SAME_REVIEWER"
    with pytest.raises(PermissionDenied) as e:
        check("rev-c", "431281", level="TOWNSHIP")  # a county account for the township step
    assert e.value.reason == "WRONG_APPROVAL_LEVEL"
    assert e.value.metadata == {"level": "TOWNSHIP", "region": "431281101000"}
    assert "待乡镇级审核" in e.value.message


def test_a_decision_moves_the_application_along_the_chain() -> None:
    assert pd.after_decision("APPROVE", 0, CHAIN) == "IN_REVIEW"
    assert pd.after_decision("APPROVE", 1, CHAIN) == "IN_REVIEW"
    assert pd.after_decision("APPROVE", 2, CHAIN) == "IN_PUBLICITY"  # the last approval starts 公示
    assert pd.after_decision("REJECT", 0, CHAIN) == "REJECTED"
    assert pd.after_decision("APPROVE", 0, ("COUNTY",)) == "IN_PUBLICITY"
    pd.check_in_review("SUBMITTED")
    pd.check_in_review("IN_REVIEW")
    with pytest.raises(FailedPrecondition) as e:
        pd.check_in_review("IN_PUBLICITY")
    assert e.value.reason == "NOT_IN_REVIEW" and "公示中" in e.value.message


def test_publicity_runs_full_days_from_the_next_day_in_china() -> None:
    monday = MONDAY_10H_CST  # 2022-09-05, 10:00 in China
    # 7 calendar days: 09-06 … 09-12; over at midnight starting 09-13 (China) = 16:00 UTC on 09-12
    assert pd.publicity_end(monday, 7, False) == datetime(2022, 9, 12, 16, 0, tzinfo=UTC)
    # 5 working days skip the weekend: 09-06 … 09-09, 09-12; over at 09-13 00:00 China
    assert pd.publicity_end(monday, 5, True) == datetime(2022, 9, 12, 16, 0, tzinfo=UTC)
    friday_evening = datetime(2022, 9, 9, 14, 0, tzinfo=UTC)  # 22:00 Friday in China
    assert pd.publicity_end(friday_evening, 1, True) == datetime(2022, 9, 12, 16, 0, tzinfo=UTC)
    assert pd.publicity_end(friday_evening, 1, False) == datetime(2022, 9, 10, 16, 0, tzinfo=UTC)
    # 23:30 UTC is already the next day in China: 公示 starts counting the day after that
    late = datetime(2022, 9, 5, 23, 30, tzinfo=UTC)  # 07:30 Tuesday 09-06 in China
    assert pd.publicity_end(late, 1, False) == datetime(2022, 9, 7, 16, 0, tzinfo=UTC)


def test_the_effective_state_reads_ready_to_pay_once_publicity_is_over() -> None:
    end = datetime(2022, 9, 12, 16, 0, tzinfo=UTC)
    assert pd.effective_state("IN_PUBLICITY", end, end - timedelta(seconds=1)) == "IN_PUBLICITY"
    assert pd.effective_state("IN_PUBLICITY", end, end) == "READY_TO_PAY"
    assert pd.effective_state("OBJECTED", end, end + timedelta(days=9)) == "OBJECTED"  # an objection blocks payment
    assert pd.effective_state("IN_PUBLICITY", None, end) == "IN_PUBLICITY"
    for state in ("SUBMITTED", "PAID", "REJECTED", "WITHDRAWN"):
        assert pd.effective_state(state, end, end) == state


def test_objections_during_publicity_and_their_outcome() -> None:
    end = datetime(2022, 9, 12, 16, 0, tzinfo=UTC)
    pd.check_objection_open("IN_PUBLICITY", end, end - timedelta(hours=1))
    pd.check_objection_open("OBJECTED", end, end - timedelta(hours=1))
    for state, now in (("IN_PUBLICITY", end), ("OBJECTED", end), ("IN_REVIEW", end - timedelta(days=1))):
        with pytest.raises(FailedPrecondition) as e:
            pd.check_objection_open(state, end, now)
        assert e.value.reason == "NOT_IN_PUBLICITY"
    assert pd.after_objection_resolved("OBJECTED", True, 0) == "REJECTED"
    assert pd.after_objection_resolved("OBJECTED", False, 0) == "IN_PUBLICITY"
    assert pd.after_objection_resolved("OBJECTED", False, 1) == "OBJECTED"  # another objection still open
    assert pd.after_objection_resolved("REJECTED", False, 0) == "REJECTED"  # an upheld one already ended it


def test_withdrawal_reasons_and_refusals() -> None:
    assert pd.check_withdraw_reason("  申请人自愿放弃 ") == "申请人自愿放弃"
    with pytest.raises(InvalidArgument) as e:
        pd.check_withdraw_reason(" ")
    assert e.value.reason == "MISSING_REASON"
    with pytest.raises(InvalidArgument) as e:
        pd.check_withdraw_reason("因" * 1001)
    assert e.value.reason == "REASON_TOO_LONG" and "1001" in e.value.violations[0].description
    assert set(pd.WITHDRAWABLE) == {"SUBMITTED", "IN_REVIEW", "APPROVED", "IN_PUBLICITY", "OBJECTED", "READY_TO_PAY"}
    when = datetime(2022, 9, 6, 1, 30, tzinfo=UTC)
    err = pd.not_withdrawable(42, "WITHDRAWN", when)
    assert err.reason == "NOT_WITHDRAWABLE" and err.metadata == {"state": "WITHDRAWN"}
    assert err.message == "申请 applications/42 当前状态为“已撤回”：已于 2022-09-06 09:30 撤回，无需再次撤回"
    assert "款项已发放" in pd.not_withdrawable(42, "PAID", None).message
    assert "银行支付失败" in pd.not_withdrawable(42, "PAYMENT_FAILED", None).message
    paid = pd.paid_not_withdrawable("READY_TO_PAY", "7/persons/9/2022-08")
    assert paid.metadata == {"state": "READY_TO_PAY", "payment": "7/persons/9/2022-08"}


def test_budget_and_duplicates() -> None:
    pd.check_budget(0, 10**9, 10**9)  # 0 = not capped
    pd.check_budget(1000_00, 600_00, 400_00)
    with pytest.raises(FailedPrecondition) as e:
        pd.check_budget(1000_00, 600_00, 400_01)
    assert e.value.reason == "BUDGET_EXCEEDED"
    assert e.value.message == "项目预算不足：预算 1000.00 元，已批准 600.00 元，本申请 400.01 元"
    dup = pd.duplicate(17)
    assert isinstance(dup, AlreadyExists) and dup.reason == "APPLICATION_EXISTS" and "applications/17" in dup.message


def test_rule_vocabulary_and_the_situation_the_rules_see() -> None:
    assert pd.rule_type("SPECIAL_SUPPORT", "") == "SPECIAL_SUPPORT"
    assert pd.rule_type("HOSPITAL_CARE", "") == "NURSING_SUBSIDY"
    assert pd.rule_type("CUSTOM", "县级自定义") == "县级自定义"
    assert pd.default_beneficiary("SPECIAL_SUPPORT") == "PERSON"
    assert pd.default_beneficiary("SANJIEHE") == "HOUSEHOLD"
    assert pd.situation_seen({"ONLY_CHILD", "SPECIAL_DISABLED"}) == "SPECIAL_DISABLED"
    assert pd.situation_seen({"SPECIAL_DISABLED", "SPECIAL_BEREAVED"}) == "SPECIAL_BEREAVED"
    assert pd.situation_seen(()) == "OTHER"


def test_details_kind_and_what_the_rules_see_of_them() -> None:
    pd.check_details_kind("loan_interest", "LOAN_INTEREST_SUBSIDY")
    pd.check_details_kind(None, "SPECIAL_SUPPORT")
    with pytest.raises(InvalidArgument) as e:
        pd.check_details_kind(None, "HOSPITAL_CARE")
    assert e.value.reason == "MISSING_DETAILS" and e.value.violations[0].field == "application.hospital_care"
    with pytest.raises(InvalidArgument) as e:
        pd.check_details_kind("sanjiehe", "SPECIAL_SUPPORT")
    assert e.value.reason == "DETAILS_MISMATCH" and "不需要填写明细" in e.value.message
    assert pd.hospital_days(date(2022, 8, 1), date(2022, 8, 13)) == 12
    assert pd.hospital_days(date(2022, 8, 1), date(2022, 8, 1)) == 1  # 当天入院当天出院计 1 天
    attrs = pd.details_attributes({"kind": "happiness_fund", "use": "VILLAGER_CONDOLENCE", "resolution_number": "决-1"})
    assert attrs == {
        "happiness.use": "村民慰问",
        "happiness.use_code": "VILLAGER_CONDOLENCE",
        "happiness.resolution_number": "决-1",
    }
    assert all(
        k.startswith(pd.RESERVED_ATTRIBUTE_PREFIXES)
        for k in pd.details_attributes(
            {
                "kind": "hospital_care",
                "hospital": "医院",
                "admission": "2022-08-01",
                "discharge": "2022-08-13",
                "days": 12,
            }
        )
    )
    assert pd.details_attributes(None) == {}
