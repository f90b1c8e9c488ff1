"""Sites' pure rules (no database): the 六有 checklist's stored form, closing (摘牌)."""

from __future__ import annotations

from datetime import date

import pytest

from jsx_members.sites import domain as sites
from jsxcore.errors import FailedPrecondition, InvalidArgument

TODAY = date(2024, 6, 1)


def test_six_haves_stored_form_is_canonical() -> None:
    s = sites.SixHaves.of(["活动", "有场所", "管理"])
    assert s.text() == "场所、活动、管理"
    assert sites.SixHaves.stored(s.text()) == s
    assert sites.SixHaves.stored("") == sites.SixHaves() and sites.SixHaves().text() == ""
    assert sites.SixHaves.stored("、".join(sites.SIX_HAVES)).complete


def test_site_fields() -> None:
    name, region, addr, six = sites.validate_site(
        kind=sites.SiteKind.WARM_HOME,
        name=" 岩门村暖心家园 ",
        village="431222101",
        address=" 村部 ",
        six_haves=["场所"],
    )
    assert (name, region.code, addr, six.ordered()) == ("岩门村暖心家园", "431222101000", "村部", ["场所"])
    with pytest.raises(InvalidArgument) as e:
        sites.validate_site(
            kind=sites.SiteKind.MEMBER_HOME, name="会员之家", village="431222101201", address="址" * 201, six_haves=[]
        )
    assert [v.field for v in e.value.violations] == ["site.address"]


def test_closing() -> None:
    sites.require_open(None)
    with pytest.raises(FailedPrecondition) as e:
        sites.require_open(date(2024, 5, 31))
    assert e.value.reason == "SITE_CLOSED"
    assert sites.check_closing(TODAY, opened=date(2022, 3, 1), today=TODAY) == TODAY
    for closed, reason in ((date(2024, 6, 2), "END_IN_FUTURE"), (date(2022, 2, 28), "END_BEFORE_START")):
        with pytest.raises(InvalidArgument) as ia:
            sites.check_closing(closed, opened=date(2022, 3, 1), today=TODAY)
        assert ia.value.reason == reason and ia.value.violations[0].field == "closed_date"
