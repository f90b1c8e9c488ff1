"""Callers, the role table and tokens."""

from __future__ import annotations

import argparse
import io
import time
from contextlib import redirect_stdout

import jwt
import pytest

from jsxcore import cli_core
from jsxcore.auth import (
    PII_READ,
    ROLE_PERMISSIONS,
    current_caller,
    issue_token,
    pattern_grants,
    reset_caller,
    set_caller,
    verify_token,
)
from jsxcore.errors import InvalidArgument, PermissionDenied, Unauthenticated
from jsxcore.testing.helpers import who
from jsxcore.values import RegionCode

SECRET = "unit-test-secret-" + "s" * 32


def test_wildcards() -> None:
    assert pattern_grants("funds.*", "funds.applications.decide")
    assert pattern_grants("*", "events.activities.write")
    assert pattern_grants("members.*.read", "members.persons.read")
    assert not pattern_grants("members.*.read", "members.persons.write")
    assert not pattern_grants("members.*.read", "funds.persons.read")
    assert not pattern_grants("funds.*", "fundsx.applications.read")
    assert not pattern_grants("funds.applications", "funds.applications.decide")
    # personal data is never granted by a wildcard, only by name
    assert not pattern_grants("*", PII_READ)
    assert not pattern_grants("members.*.read", PII_READ)
    assert pattern_grants(PII_READ, PII_READ)


def test_role_table() -> None:
    clerk = who("u1", "431222", "county_clerk")
    assert clerk.can("members.persons.write") and clerk.can("funds.applications.write")
    assert not clerk.can("funds.applications.decide") and not clerk.can("funds.ledger.write")
    assert not clerk.may_see_pii
    for role in ("village_reviewer", "township_reviewer", "county_approver"):
        assert who("u1", "431222", role).can("funds.applications.decide"), role
    assert who("u1", "431222", "county_approver").can("funds.objections.resolve")
    assert not who("u1", "431222", "village_reviewer").can("funds.objections.resolve")
    assert (
        who("u1", "431222", "finance_officer").can("funds.bank_results.write")
        and who("u1", "431222", "finance_officer").may_see_pii
    )
    auditor = who("u1", "431222", "auditor")
    assert auditor.can("funds.ledger.read") and auditor.may_see_pii and not auditor.can("funds.ledger.write")
    assert who("u1", "431222", "admin").can("funds.applications.decide") and who("u1", "431222", "admin").may_see_pii
    system = who("u1", "431222", "system")
    assert system.can("funds.bank_results.write") and not system.can("funds.applications.decide")
    assert not system.may_see_pii
    assert not who("u1", "431222", "no_such_role").can("members.persons.read")
    for role in ROLE_PERMISSIONS:
        for svc in ("members", "funds", "events"):
            assert who("u1", "431222", role).can(f"{svc}.plugins.read"), role


def test_every_declared_permission_is_granted_to_someone_but_admin() -> None:
    """A permission no working role holds is a typo in a proto or in the table."""
    import importlib
    import pkgutil

    import jsx

    declared: set[str] = set()
    from jsx.common.v1 import annotations_pb2

    for mod in pkgutil.walk_packages(jsx.__path__, "jsx."):
        if mod.name.endswith("_pb2"):
            for service in importlib.import_module(mod.name).DESCRIPTOR.services_by_name.values():
                for m in service.methods:
                    declared.add(m.GetOptions().Extensions[annotations_pb2.permission])
    working = [r for r in ROLE_PERMISSIONS if r != "admin"]
    orphans = sorted(p for p in declared if p and not any(who("u1", "431222", r).can(p) for r in working))
    assert orphans == []


def test_require_and_region() -> None:
    clerk = who("u1", "431222", "county_clerk")
    with pytest.raises(PermissionDenied) as ei:
        clerk.require("funds.applications.decide")
    assert ei.value.reason == "MISSING_PERMISSION" and "funds.applications.decide" in ei.value.message
    clerk.require_region("431222101001")  # a village in 沅陵县
    with pytest.raises(PermissionDenied) as ei:
        clerk.require_region("431281")
    assert ei.value.reason == "OUT_OF_REGION"
    assert ei.value.message == "您只能查看或办理本辖区（沅陵县）的业务，“洪江市”不在您的辖区内"
    who("u1", "431200", "county_clerk").require_region("431281")  # 怀化市 covers 洪江市
    assert not who("u1", "431222101", "county_clerk").in_region("431222")  # a township cannot see its county


def test_token_round_trip() -> None:
    token = issue_token(SECRET, "clerk-7", ["county_clerk", "village_reviewer"], "431222", 60, name="王芳")
    c = verify_token(SECRET, token)
    assert c.subject == "clerk-7" and c.display_name == "王芳"
    assert c.roles == ("county_clerk", "village_reviewer") and c.region == RegionCode.parse("431222")
    assert c.expires_at > time.time()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="jsx")
    assert claims["region"] == "431222000000"


def test_bad_tokens() -> None:
    good = issue_token(SECRET, "x", ["admin"], "430000")
    with pytest.raises(Unauthenticated) as ei:
        verify_token("other-secret-" + "o" * 32, good)
    assert ei.value.reason == "TOKEN_INVALID"
    with pytest.raises(Unauthenticated) as ei:
        verify_token(SECRET, good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"))
    assert ei.value.reason == "TOKEN_INVALID"
    with pytest.raises(Unauthenticated) as ei:
        verify_token(SECRET, issue_token(SECRET, "x", ["admin"], "430000", ttl=-1))
    assert ei.value.reason == "TOKEN_EXPIRED"
    foreign = jwt.encode(
        {"sub": "x", "iss": "other", "exp": int(time.time()) + 60, "roles": ["admin"], "region": "430000"}, SECRET
    )
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, foreign)
    no_region = jwt.encode({"sub": "x", "iss": "jsx", "exp": int(time.time()) + 60, "roles": ["admin"]}, SECRET)
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, no_region)
    none_alg = jwt.encode(
        {"sub": "x", "iss": "jsx", "exp": int(time.time()) + 60, "roles": ["admin"], "region": "430000"},
        None,  # type: ignore[arg-type]  # an unsigned token: the attack under test
        algorithm="none",
    )
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, none_alg)


def test_issue_refuses_unknown_roles() -> None:
    with pytest.raises(InvalidArgument) as ei:
        issue_token(SECRET, "x", ["county_clark"], "431222")
    assert ei.value.reason == "UNKNOWN_ROLE" and "county_clark" in ei.value.message
    with pytest.raises(InvalidArgument):
        issue_token(SECRET, "x", ["admin"], "12")


def test_current_caller_binding() -> None:
    with pytest.raises(Unauthenticated):
        current_caller()
    c = who("u1", "431222", "auditor")
    token = set_caller(c)
    try:
        assert current_caller() is c
    finally:
        reset_caller(token)
    with pytest.raises(Unauthenticated):
        current_caller()


def test_cli_issues_a_verifiable_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JSX_AUTH_SECRET", SECRET)
    out = io.StringIO()
    parser = argparse.ArgumentParser(prog="jsx")
    cli_core.register(parser.add_subparsers(dest="command"))  # the wiring `jsx` itself uses
    args = parser.parse_args(
        ["token", "issue", "--sub", "yikatong", "--role", "system", "--region", "431222", "--ttl", "2h"]
    )
    with redirect_stdout(out):
        rc = args.func(args)
    assert rc == 0
    c = verify_token(SECRET, out.getvalue().strip())
    assert c.subject == "yikatong" and c.roles == ("system",)
    assert 7100 < c.expires_at - time.time() <= 7200
